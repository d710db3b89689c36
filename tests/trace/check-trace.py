#!/usr/bin/env python3
"""Tracing tests: trace-prog under blockswap on the simulated driver, whose timeline is
known, judged by what BLOCKSWAP_TRACE wrote.

usage: check-trace.py CASE PROG SHIM SIMDIR
CASE: timeline   text log matches the simulator (transfer = bytes / CUDASIM_PCIE_GBPS,
                 compute = the kernels' times, no stall once prefetching), write-back
                 of the one changed weight and elision of the others, summary lines
      json       the Chrome trace parses and holds the lanes and slices expected
      stall      transfers that cannot be hidden show as stall, and the summary says so
      badpath    an unwritable path, a symlink and a bad value: one message each, the
                 program runs on with the same result
"""
import json
import os
import re
import stat
import subprocess
import sys
import tempfile

GBPS, HBM = 25.0, 20.0  # GB/s: each swapped block copies in faster than it computes
MIB = 4
WEIGHTS = 2
BLOCKS = 8
SWAP = 4
# BLOCKSWAP_SWAP_PLACEMENT=spread, the default: block b is swapped when b*k/N passes a
# whole number within it (here the odd blocks).
SWAPPED = {b for b in range(BLOCKS) if (b + 1) * SWAP // BLOCKS != b * SWAP // BLOCKS}
STEPS = 5


UNIT = MIB << 20
WEIGHT_BYTES = [UNIT * (j + 1) for j in range(WEIGHTS)]  # as trace-prog lays them out
BLOCK_BYTES = sum(WEIGHT_BYTES)


def run(prog, shim, simdir, env_extra, args=(), preload=True):
    env = dict(os.environ)
    # The simulator charges no host cost for driver calls (CUDASIM_COSTS=0): what the
    # tracer reports is compared with the device timeline exactly, so nothing but the
    # device may move it. Its per-thread clocks make that timeline the same whenever the
    # pager thread runs; only case_timeline moves the window on the launching thread.
    env.update({"LD_LIBRARY_PATH": simdir, "CUDASIM_VRAM": "4G",
                "CUDASIM_COSTS": "0",
                "CUDASIM_PCIE_GBPS": str(GBPS), "CUDASIM_HBM_GBPS": str(HBM),
                "CUDASIM_RACECHECK": "1"})
    if preload:
        env["LD_PRELOAD"] = shim
    env.update(env_extra)
    p = subprocess.run([prog, "--blocks", str(BLOCKS), "--weights", str(WEIGHTS),
                        "--mib", str(MIB), "--steps", str(STEPS)] + list(args),
                       env=env, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        sys.exit(f"FAIL: exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


def checksum(out):
    m = re.search(r"^checksum=(\S+)", out, re.M)
    if not m:
        sys.exit("FAIL: no checksum line")
    return m.group(1)


def parse_text(path):
    blocks, steps = [], []
    for line in open(path):
        if line.startswith("#"):
            continue
        m = re.match(r"(Block|Step) (\d+): (.*)", line)
        if not m:
            sys.exit(f"FAIL: unexpected trace line {line!r}")
        kv = {"index": int(m.group(2))}
        for tok in m.group(3).split():
            if "=" in tok:
                k, v = tok.split("=", 1)
                kv[k] = float(v.rstrip("%"))
            else:
                kv["kind"] = tok
        (blocks if m.group(1) == "Block" else steps).append(kv)
    return blocks, steps


def near(got, want, rel, what):
    if abs(got - want) > rel * want:
        sys.exit(f"FAIL: {what}: got {got}, expected {want} within {rel * 100:.1f}%")


def case_timeline(prog, shim, simdir, tmp):
    text = os.path.join(tmp, "t.txt")
    # The launching thread moves the window itself (BLOCKSWAP_PAGER_THREAD=0): with
    # trace-prog's tiny compute the pager and the launching thread's late path would
    # race for the copy engine, and the expectations below are the one-thread schedule.
    env = {"BLOCKSWAP_TRACE": text, "BLOCKSWAP_BLOCKS_TO_SWAP": str(SWAP),
           "BLOCKSWAP_PAGER_THREAD": "0"}
    traced = run(prog, shim, simdir, env, ["--write", "5", "--summary"])
    plain = run(prog, shim, simdir, {}, ["--write", "5"], preload=False)
    if checksum(traced.stdout) != checksum(plain.stdout):
        sys.exit("FAIL: the traced run's checksum differs from the plain driver's")
    mode = stat.S_IMODE(os.stat(text).st_mode)
    if mode != 0o600:
        sys.exit(f"FAIL: trace file mode {mode:o}, expected 600")
    blocks, steps = parse_text(text)
    if len(steps) != STEPS or len(blocks) != STEPS * BLOCKS:
        sys.exit(f"FAIL: {len(steps)} step lines and {len(blocks)} block lines, expected "
                 f"{STEPS} and {STEPS * BLOCKS}")
    wbytes = WEIGHT_BYTES[0]  # --write changes weight 0 of block 5
    block_bytes = BLOCK_BYTES
    # One checksum (or fingerprint) of each weight of a block.
    kernel_ms = sum((b + 8) / (HBM * 1e6) for b in WEIGHT_BYTES)
    swapped = [b for b in blocks if b["kind"] == "swapped"]
    if {b["index"] for b in swapped} != SWAPPED:
        sys.exit(f"FAIL: swapped blocks {sorted({b['index'] for b in swapped})}, expected "
                 f"{sorted(SWAPPED)}")
    for b in blocks:
        where = f"step {int(b['step'])} block {b['index']}"
        if b["step"] >= 1 and b["kind"] == "swapped":
            if b["in_bytes"] != block_bytes:
                sys.exit(f"FAIL: {where}: in_bytes {b['in_bytes']}, expected {block_bytes}")
            near(b["transfer_ms"], block_bytes / (GBPS * 1e6), 0.005, where + " transfer_ms")
            near(b["in_gbps"], GBPS, 0.005, where + " in_gbps")
        if b["step"] >= 1 and b["kind"] == "resident" and b["in_bytes"]:
            sys.exit(f"FAIL: {where}: a resident block was copied in again")
        # Compute: the block's checksums only; blockswap's page-in fingerprints run on its
        # own stream, after the copy, long before the block (the window fetched it one
        # swapped block ahead). Stall: entering a swapped block, the launching thread
        # evicts the block that left the window and waits for its eviction fingerprint,
        # which starts when that block's kernels end, so the stream idles for one
        # fingerprint of a block's weights; a resident block never waits.
        if b["step"] >= 2:
            near(b["compute_ms"], kernel_ms, 0.005, where + " compute_ms")
            if b["kind"] == "resident":
                if b["stall_ms"] > 0.001:
                    sys.exit(f"FAIL: {where}: stall {b['stall_ms']} ms in a resident block")
            else:
                near(b["stall_ms"], kernel_ms, 0.005, where + " stall_ms")
        if b["kind"] == "swapped" and b["step"] < STEPS - 1 and b["evicted"] != WEIGHTS:
            sys.exit(f"FAIL: {where}: evicted {b['evicted']}, expected {WEIGHTS}")
        changed = b["step"] == 1 and b["index"] == 5
        if b["kind"] == "swapped" and 1 <= b["step"] < STEPS - 1:
            want_out = wbytes if changed else 0
            want_skip = block_bytes - want_out
            if b["out_bytes"] != want_out or b["skipped_bytes"] != want_skip:
                sys.exit(f"FAIL: {where}: out_bytes {b['out_bytes']} skipped "
                         f"{b['skipped_bytes']}, expected {want_out} and {want_skip}")
            if changed:
                near(b["to_cpu_ms"], wbytes / (GBPS * 1e6), 0.005, where + " to_cpu_ms")
    # Steps: one stream, no gaps: the span is the blocks' compute and stall.
    for s in steps:
        if s["index"] >= 1:
            near(s["step_ms"], s["compute_ms"] + s["stall_ms"], 0.005, f"step {s['index']} step_ms")
    for want in ("summary: %d blocks of %.1f MiB found, %d swapped (spread evenly)"
                 % (BLOCKS, BLOCK_BYTES / 1048576, SWAP),
                 "traced steps, per step:", "of transfer time hidden behind compute",
                 "summary: peak VRAM", "hint: "):
        if want not in traced.stderr:
            sys.exit(f"FAIL: no {want!r} in the log:\n{traced.stderr}")
    # One rule with blockswap-report: the first step, which loads, is left out of the
    # summary's per-step figures (its stall is paging on demand, not streaming).
    # (the last summary: the program also asks for one part way)
    ms = re.findall(r"summary: (\d+) traced steps, .*?stalled ([\d.]+) ms", traced.stderr)
    m = ms[-1] if ms else None
    later = [s for s in steps if s["index"] >= 1]
    if not m or int(m[0]) != len(later):
        sys.exit(f"FAIL: the summary should count the {len(later)} steps after the first:\n"
                 f"{traced.stderr}")
    want_stall = sum(s["stall_ms"] for s in later) / len(later)
    if abs(float(m[1]) - want_stall) > 0.051:
        sys.exit(f"FAIL: summary stall {m[1]} ms per step, steps 1.. stall "
                 f"{want_stall:.3f} ms per step")
    print(f"ok: {len(blocks)} block lines; transfer {block_bytes / (GBPS * 1e6):.4f} ms, "
          f"compute {kernel_ms:.4f} ms per resident block")


def case_json(prog, shim, simdir, tmp):
    js, text = os.path.join(tmp, "t.json"), os.path.join(tmp, "t.log")
    run(prog, shim, simdir, {"BLOCKSWAP_TRACE": f"{text},{js}",
                             "BLOCKSWAP_BLOCKS_TO_SWAP": str(SWAP)}, ["--write", "5"])
    if not os.path.exists(text):
        sys.exit("FAIL: the text path of a two-path BLOCKSWAP_TRACE was not written")
    doc = json.load(open(js))
    ev = doc["traceEvents"]
    lanes = {e["tid"]: e["args"]["name"] for e in ev
             if e.get("ph") == "M" and e.get("name") == "thread_name"}
    want = {0: "steps", 1: "compute", 2: "copy in (host to device)",
            3: "copy out (device to host)"}
    if lanes != want:
        sys.exit(f"FAIL: lanes {lanes}, expected {want}")
    x = [e for e in ev if e.get("ph") == "X"]
    for e in x:
        if e["ts"] < 0 or e["dur"] < 0 or "step" not in e["args"]:
            sys.exit(f"FAIL: bad slice {e}")
        if e["tid"] != 0 and (str(e["args"]["block"]) not in e["name"]):
            sys.exit(f"FAIL: slice without its block index in the name: {e}")
    by = lambda tid: [e for e in x if e["tid"] == tid]
    compute = [e for e in by(1) if e["cat"] == "compute"]
    if len(compute) != STEPS * BLOCKS:
        sys.exit(f"FAIL: {len(compute)} compute slices, expected {STEPS * BLOCKS}")
    if len(by(0)) != STEPS:
        sys.exit(f"FAIL: {len(by(0))} step slices, expected {STEPS}")
    ins = by(2)
    if not ins or any(e["args"]["bytes"] <= 0 for e in ins):
        sys.exit("FAIL: no copy-in slices with bytes")
    # Each page-in says where it read from; this program's backing is all pinned.
    for e in ins:
        f = e["args"].get("from", {})
        if sum(f.get(k, 0) for k in ("pinned", "pageable", "file")) != e["args"]["bytes"] \
                or f.get("pinned", 0) != e["args"]["bytes"]:
            sys.exit(f"FAIL: copy-in slice without where it read from: {e}")
    # Step 0 copies the swapped blocks loaded straight to VRAM back once; after it,
    # only block 5's patched weight changed.
    outs = [e for e in by(3) if e["args"]["step"] > 0]
    if len(outs) != 1 or outs[0]["args"]["block"] != 5:
        sys.exit(f"FAIL: copy-out slices after step 0 {outs}, expected one, of block 5")
    evicts = [e for e in ev if e.get("ph") == "i" and e.get("cat") == "evict"]
    if not evicts:
        sys.exit("FAIL: no eviction marks")
    # Compute slices of one stream never overlap: the lane reads as a timeline.
    compute.sort(key=lambda e: e["ts"])
    for a, b in zip(compute, compute[1:]):
        if a["ts"] + a["dur"] > b["ts"] + 2e-3:
            sys.exit(f"FAIL: overlapping compute slices {a} and {b}")
    print(f"ok: {len(x)} slices, {len(evicts)} eviction marks")


def case_stall(prog, shim, simdir, tmp):
    global HBM
    HBM = 3000.0  # compute far shorter than the copies: they cannot be hidden
    text = os.path.join(tmp, "t.txt")
    p = run(prog, shim, simdir, {"BLOCKSWAP_TRACE": text, "BLOCKSWAP_BLOCKS_TO_SWAP": str(SWAP)})
    blocks, steps = parse_text(text)
    last = [b for b in blocks if b["step"] == STEPS - 1 and b["kind"] == "swapped"]
    total_stall = sum(b["stall_ms"] for b in blocks if b["step"] == STEPS - 1)
    # A step lasts at least its transfers; what compute did not cover is stall.
    transfer, compute = steps[-1]["transfer_ms"], steps[-1]["compute_ms"]
    near(transfer, SWAP * BLOCK_BYTES / (GBPS * 1e6), 0.005, "last step transfer_ms")
    if total_stall < 0.95 * (transfer - compute):
        sys.exit(f"FAIL: stall {total_stall:.4f} ms in the last step, expected at least "
                 f"0.95 x {transfer - compute:.4f} (transfers minus compute)")
    if steps[-1]["overlap"] > 60:
        sys.exit(f"FAIL: overlap {steps[-1]['overlap']}% where transfers cannot be hidden")
    if "hint: transfers are not hidden" not in p.stderr:
        sys.exit(f"FAIL: no hint about unhidden transfers:\n{p.stderr}")
    print(f"ok: stall {total_stall:.4f} ms in the last step, overlap {steps[-1]['overlap']}%")


def case_badpath(prog, shim, simdir, tmp):
    ref = checksum(run(prog, shim, simdir, {}, preload=False).stdout)
    # A directory that does not exist.
    p = run(prog, shim, simdir, {"BLOCKSWAP_TRACE": os.path.join(tmp, "no/such/dir/t.txt")})
    if p.stderr.count("cannot write the trace file") != 1 or checksum(p.stdout) != ref:
        sys.exit(f"FAIL: unwritable path:\n{p.stderr}")
    # A symlink planted where the trace goes: refused, its target untouched.
    target, link = os.path.join(tmp, "precious"), os.path.join(tmp, "t.json")
    open(target, "w").write("keep\n")
    os.symlink(target, link)
    p = run(prog, shim, simdir, {"BLOCKSWAP_TRACE": link})
    if "cannot write the trace file" not in p.stderr or open(target).read() != "keep\n":
        sys.exit(f"FAIL: symlink followed or not reported:\n{p.stderr}")
    if checksum(p.stdout) != ref:
        sys.exit("FAIL: checksum changed")
    # A FIFO (nobody reading it) planted where the trace goes: refused at once, no hang.
    fifo = os.path.join(tmp, "fifo.log")
    os.mkfifo(fifo)
    p = run(prog, shim, simdir, {"BLOCKSWAP_TRACE": fifo})
    if "cannot write the trace file" not in p.stderr or checksum(p.stdout) != ref:
        sys.exit(f"FAIL: FIFO not refused:\n{p.stderr}")
    # Two timelines: not a valid value; tracing off, paging on.
    p = run(prog, shim, simdir, {"BLOCKSWAP_TRACE": "a.json,b.json"})
    if "BLOCKSWAP_TRACE=a.json,b.json is not valid" not in p.stderr or checksum(p.stdout) != ref:
        sys.exit(f"FAIL: bad value:\n{p.stderr}")
    if os.path.exists("a.json"):
        sys.exit("FAIL: a file was written for an invalid value")
    print("ok: unwritable path, symlink, FIFO and bad value each reported once; results unchanged")


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    case = sys.argv[1]
    prog, shim, simdir = (os.path.abspath(a) for a in sys.argv[2:])
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        {"timeline": case_timeline, "json": case_json, "stall": case_stall,
         "badpath": case_badpath}[case](prog, shim, simdir, tmp)


if __name__ == "__main__":
    main()
