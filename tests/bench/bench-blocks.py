#!/usr/bin/env python3
"""Block-swapping benchmark: runs bench-blocks (a WAN-shaped 40-block stack) several
times under LD_PRELOAD=libblockswap.so on the simulated driver and compares each run
with the all-resident run (k = 0) of the same invocation.

For every compute/transfer ratio R (one block's compute time over its fill time at the
simulated PCIe bandwidth), every k (blocks swapped, BLOCKSWAP_BLOCKS_TO_SWAP) and both
policies (the default, and BLOCKSWAP_POLICY=sync), it reports the steady step time
(virtual, from events around each step, step 0 excluded), its ratio to k = 0, the bytes
paged in and written back per step, the time the compute engine waited for copies, the
physical bound max(compute, k blocks / bandwidth) + one block's fill and the ratio to it,
and the peak device memory against the predicted (N - k + prefetch + 1) blocks + the rest
(the window of swapped blocks in VRAM is BLOCKSWAP_PREFETCH + 1).

--emulate-k-with-limit: for shims without BLOCKSWAP_BLOCKS_TO_SWAP, emulate k by
BLOCKSWAP_VRAM_LIMIT = min(N, N - k + prefetch + 1) paged blocks + the rest (unmanaged).

--sources pinned,heap,file: where the program loads the weights from (bench-blocks
--source; default pinned). Every source runs every k; a memory table follows with the
process's RssAnon, RssFile, RssShmem and VmLck (/proc/self/status) after loading and
after the last step, the simulator's pinned bytes, and host anon = RssAnon less the
simulated VRAM that is anonymous memory (on the simulator, device memory is the
process's memory: cuMemAlloc's in RssAnon, blockswap's cuMemCreate pages in RssShmem).

usage: bench-blocks.py [PROG SIM_DIR SHIM] [--build DIR] [--quick] [--emulate-k-with-limit]
                       [--ratios 0.5,1,3] [--ks 0,10,20,30,40] [--policies default,sync]
                       [--steps 4] [--prefetch 1] [--placement spread|last] [--gbps 25]
                       [--async] [--sources pinned,heap,file] [--jobs N] [--sim-env CUDASIM_X=V ...]
                       [--json FILE|-] [--keep DIR] [-- PROGRAM ARGS...]
All times are virtual (the simulator's timeline), not wall-clock."""
import argparse, concurrent.futures, json, os, re, shutil, subprocess, sys, tempfile, time

MiB = 1024 * 1024


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="*", help="PROG SIM_DIR SHIM (as meson passes them)")
    ap.add_argument("--build", default=None, help="build directory (default: build-bench-dev, then build)")
    ap.add_argument("--quick", action="store_true", help="ratios 1; k 0,20,40; 3 steps")
    ap.add_argument("--emulate-k-with-limit", action="store_true",
                    help="set BLOCKSWAP_VRAM_LIMIT = (N-k+prefetch+1) blocks + rest instead of BLOCKS_TO_SWAP")
    ap.add_argument("--ratios", default=None, help="compute/transfer ratios (default 0.5,1,3)")
    ap.add_argument("--ks", default=None, help="blocks to swap (default 0,10,20,30,40; 0 is always run)")
    ap.add_argument("--policies", default="default,sync")
    ap.add_argument("--steps", type=int, default=None, help="steps per run (default 4; step 0 excluded)")
    ap.add_argument("--prefetch", type=int, default=1,
                    help="BLOCKSWAP_PREFETCH: blocks copied ahead; the window is one more (default 1)")
    ap.add_argument("--placement", default=None, choices=["spread", "last"],
                    help="BLOCKSWAP_SWAP_PLACEMENT (default: the shim's, spread)")
    ap.add_argument("--gbps", type=float, default=25.0, help="CUDASIM_PCIE_GBPS (default 25)")
    ap.add_argument("--vram", default="16G", help="CUDASIM_VRAM (default 16G, must hold the model)")
    ap.add_argument("--async", dest="async_", action="store_true", help="weights by cuMemAllocAsync")
    ap.add_argument("--sources", default="pinned",
                    help="where the weights are loaded from: pinned, heap, file, comma-separated (default pinned)")
    ap.add_argument("--racecheck", default="1", choices=["0", "1"], help="CUDASIM_RACECHECK (default 1)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="runs at once")
    ap.add_argument("--sim-env", action="append", default=[], metavar="CUDASIM_X=V",
                    help="a simulator setting for every run, e.g. CUDASIM_COSTS=0 (host costs off); repeatable")
    ap.add_argument("--json", default=None, help="also write all results as JSON to FILE ('-': stdout)")
    ap.add_argument("--keep", default=None, help="keep each run's report and output in DIR")
    argv = sys.argv[1:]
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    a = ap.parse_args(argv)
    a.extra = extra
    for kv in a.sim_env:
        if not re.fullmatch(r"CUDASIM_[A-Z0-9_]+=.*", kv):
            ap.error("--sim-env takes CUDASIM_NAME=VALUE, not %r" % kv)
    if a.quick:
        a.ratios = a.ratios or "1"
        a.ks = a.ks or "0,20,40"
        a.steps = a.steps or 3
    a.ratios = [float(x) for x in (a.ratios or "0.5,1,3").split(",")]
    a.ks = sorted(set(int(x) for x in (a.ks or "0,10,20,30,40").split(",")) | {0})
    a.policies = [p for p in a.policies.split(",") if p]
    a.sources = [x for x in a.sources.split(",") if x]
    if not a.sources or any(x not in ("pinned", "heap", "file") for x in a.sources):
        ap.error("--sources takes pinned, heap and/or file, comma-separated")
    a.steps = a.steps or 4
    if a.steps < 2:
        ap.error("--steps must be at least 2 (step 0 is excluded)")
    return a


def locate(a):
    if a.paths:
        if len(a.paths) != 3:
            sys.exit("positional arguments: PROG SIM_DIR SHIM")
        return a.paths
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    builds = [a.build] if a.build else [os.path.join(root, "build-bench-dev"), os.path.join(root, "build")]
    for b in builds:
        for prog in (os.path.join(b, "tests", "bench-blocks"), os.path.join(b, "bench-blocks")):
            if os.path.exists(prog):
                return prog, os.path.join(b, "src", "sim"), os.path.join(b, "src", "libblockswap.so")
    sys.exit("bench-blocks not found in %s; build it or pass PROG SIM_DIR SHIM" % " or ".join(builds))


def kv(line):
    return {k: v for k, v in re.findall(r"(\w+)=(\S+)", line)}


def sizes(prog, sim_dir, a):
    env = dict(os.environ, LD_LIBRARY_PATH=sim_dir)
    env.pop("LD_PRELOAD", None)
    out = subprocess.run([prog, "--print-sizes", "--gbps", str(a.gbps)] + a.extra, env=env,
                         check=True, capture_output=True, text=True).stdout
    s = {}
    for line in out.splitlines():
        if line.startswith("sizes ") or line.startswith("config "):
            s.update({k: (int(v) if re.fullmatch(r"\d+", v) else v) for k, v in kv(line).items()})
    return s


def run_one(prog, sim_dir, shim, a, S, ratio, k, policy, source, tmp):
    N = S["blocks"]
    name = "r%g-k%d-%s" % (ratio, k, policy) + ("" if source == "pinned" else "-" + source)
    report = os.path.join(tmp, name + ".json")
    env = {key: v for key, v in os.environ.items()
           if not key.startswith("BLOCKSWAP_") and not key.startswith("CUDASIM_")}
    env.update(LD_LIBRARY_PATH=sim_dir, LD_PRELOAD=shim, CUDASIM_REPORT=report, CUDASIM_VRAM=a.vram,
               CUDASIM_PCIE_GBPS=repr(a.gbps), CUDASIM_RACECHECK=a.racecheck, BLOCKSWAP_LOG_LEVEL="warn")
    env.update(kv.split("=", 1) for kv in a.sim_env)
    limit = None
    if k == 0:
        # All-resident: a limit far above the model (the simulated VRAM holds it).
        env["BLOCKSWAP_VRAM_LIMIT"] = a.vram
        if not a.emulate_k_with_limit:
            env["BLOCKSWAP_BLOCKS_TO_SWAP"] = "0"
    elif a.emulate_k_with_limit:
        limit = min(N, N - k + a.prefetch + 1) * S["block_paged"] + S["rest_bytes"]
        env["BLOCKSWAP_VRAM_LIMIT"] = str(limit)
    else:
        env["BLOCKSWAP_BLOCKS_TO_SWAP"] = str(k)
        env["BLOCKSWAP_PREFETCH"] = str(a.prefetch)
        if a.placement:
            env["BLOCKSWAP_SWAP_PLACEMENT"] = a.placement
    if policy != "default":
        env["BLOCKSWAP_POLICY"] = policy
    cmd = [prog, "--ratio", repr(ratio), "--steps", str(a.steps), "--gbps", repr(a.gbps)]
    if source != "pinned":
        cmd += ["--source", source]
    if a.async_:
        cmd.append("--async")
    cmd += a.extra
    t0 = time.monotonic()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if a.keep:
        os.makedirs(a.keep, exist_ok=True)
        with open(os.path.join(a.keep, name + ".out"), "w") as fh:
            fh.write("$ " + " ".join("%s=%s" % (x, env[x]) for x in sorted(env)
                                     if x.startswith(("BLOCKSWAP_", "CUDASIM_"))) + " " + " ".join(cmd) + "\n")
            fh.write(p.stdout + p.stderr)
        if os.path.exists(report):
            shutil.copy(report, os.path.join(a.keep, name + ".json"))
    if p.returncode != 0:
        raise RuntimeError("%s failed (exit %d):\n%s%s" % (name, p.returncode, p.stdout[-2000:], p.stderr[-2000:]))
    steps, checksum, mem = [], None, {}
    for line in p.stdout.splitlines():
        if line.startswith("mem "):
            d = kv(line)
            when = d.pop("when")
            mem[when] = {x: int(v) for x, v in d.items()}
        if line.startswith("step "):
            d = kv(line)
            steps.append({"ms": float(d["ms"]), "page_in_bytes": int(d["page_in_bytes"]),
                          "writeback_bytes": int(d["writeback_bytes"]), "page_ins": int(d["page_ins"]),
                          "evictions": int(d["evictions"])})
        elif line.startswith("checksum="):
            checksum = kv(line)["checksum"]
            shim_stats = kv(line)["shim_stats"] == "1"
    with open(report) as fh:
        rep = json.load(fh)
    ignored = sorted(set(re.findall(r"unknown variable (BLOCKSWAP_\w+)", p.stderr)))
    return dict(name=name, ratio=ratio, k=k, policy=policy, source=source, mem=mem, limit=limit, steps=steps,
                checksum=checksum,
                shim_stats=shim_stats, report=rep, ignored=ignored, wall_s=wall,
                stderr=[l for l in p.stderr.splitlines() if "warning" in l or "error" in l][:5])


def analyse(r, S, a, ref):
    N, steps = S["blocks"], a.steps
    bw = a.gbps  # bytes per ns
    steady = r["steps"][1:]
    step_ns = sum(s["ms"] for s in steady) / len(steady) * 1e6
    rep = r["report"]
    compute_ns = rep["compute_busy_ns"] / steps  # every step launches the same kernels
    h2d = sum(s["page_in_bytes"] for s in steady) / len(steady)
    d2h = sum(s["writeback_bytes"] for s in steady) / len(steady)
    Bm = S["block_managed"]
    k = r["k"]
    fill_ns = Bm / bw
    bound_ns = max(compute_ns, k * Bm / bw) + (fill_ns if k else 0)
    pred_blocks = N if k == 0 else min(N, N - k + a.prefetch + 1)
    pred_peak = pred_blocks * S["block_paged"] + S["rest_bytes"]
    return dict(step_ms=step_ns / 1e6, step_ms_each=[s["ms"] for s in r["steps"]],
                vs_k0=step_ns / (ref["step_ms"] * 1e6) if ref else 1.0,
                compute_ms=compute_ns / 1e6,
                # events are float ms: differences below ~10 ns are rounding, not stalls
                stall_ms=(step_ns - compute_ns) / 1e6 if abs(step_ns - compute_ns) > 10 else 0.0,
                h2d_bytes_per_step=h2d, d2h_bytes_per_step=d2h, blocks_streamed=h2d / Bm,
                bound_ms=bound_ns / 1e6, vs_bound=step_ns / bound_ns,
                peak_device_bytes=rep["peak_device_bytes"], predicted_peak_bytes=pred_peak,
                peak_vs_predicted=rep["peak_device_bytes"] / pred_peak)


def print_memory(results, a, ks):
    """The process's memory after loading and after the last step, per source and k (the
    default policy at the first ratio: the weights' host side does not depend on either)."""
    ratio = a.ratios[0]
    print()
    print("memory (MiB; /proc/self/status, and the simulator's counters): load = after loading, "
          "end = after the last step;")
    print("  host anon = RssAnon - simulated VRAM in anonymous memory (cuMemAlloc); blockswap's paged VRAM "
          "(cuMemCreate, a memfd) is in RssShmem while mapped;")
    print("  pinned = the simulator's pinned + registered host bytes (now, and peak over the run); "
          "VmLck is 0 on the simulator (it locks nothing)")
    def mib(m, key):
        return "%.1f" % (m[key] / MiB) if key in m else "-"
    row = "  %-7s %3s %-6s %9s %9s %9s %9s %7s %9s %9s %9s"
    print(row % ("source", "k", "when", "RssAnon", "host anon", "RssFile", "RssShmem", "VmLck", "pinned",
                 "pinned pk", "sim VRAM"))
    for src in a.sources:
        for k in ks:
            r = results.get((ratio, k, "default", src)) or results.get((ratio, k, a.policies[0], src))
            for when in ("mapped", "load", "end"):
                m = r["mem"].get(when) if r else None
                if m:
                    print(row % (src, k, when, mib(m, "rss_anon"), mib(m, "host_anon"), mib(m, "rss_file"),
                                 mib(m, "rss_shmem"), mib(m, "vm_lck"), mib(m, "sim_pinned"),
                                 mib(m, "sim_peak_pinned"), mib(m, "sim_device")))
    if not any("bs_host_backing" in m for r in results.values() for m in r["mem"].values()):
        return
    print()
    print("blockswap's host memory (MiB; blockswap_get_stats at the same points): backing = host backing "
          "(pk: its peak), of it pinned (pk);")
    print("  file = bytes backed by the file they were loaded from (no memory held), read = bytes read back "
          "from files so far, ring = the pinned staging ring,")
    print("  direct = bytes loaded straight into VRAM; shim host = backing + ring (what blockswap holds), "
          "peak VRAM = blockswap's peak")
    row = "  %-7s %3s %-6s %8s %8s %8s %8s %8s %9s %6s %8s %9s %9s"
    print(row % ("source", "k", "when", "backing", "bk pk", "pinned", "pin pk", "file", "read", "ring", "direct",
                 "shim host", "peak VRAM"))
    for src in a.sources:
        for k in ks:
            r = results.get((ratio, k, "default", src)) or results.get((ratio, k, a.policies[0], src))
            for when in ("load", "end"):
                m = r["mem"].get(when) if r else None
                if m and "bs_host_backing" in m:
                    m = dict(m, bs_shim_host=m["bs_peak_host_backing"] + m["bs_host_staging"])
                    print(row % (src, k, when, mib(m, "bs_host_backing"), mib(m, "bs_peak_host_backing"),
                                 mib(m, "bs_host_pinned"), mib(m, "bs_peak_host_pinned"),
                                 mib(m, "bs_host_file_backed"), mib(m, "bs_file_read"), mib(m, "bs_host_staging"),
                                 mib(m, "bs_load_direct"), mib(m, "bs_shim_host"), mib(m, "bs_peak_vram")))


def main():
    a = parse_args()
    prog, sim_dir, shim = locate(a)
    for p in (prog, shim, os.path.join(sim_dir, "libcuda.so.1")):
        if not os.path.exists(p):
            sys.exit("missing: " + p)
    S = sizes(prog, sim_dir, a)
    N = S["blocks"]
    ks = [k for k in a.ks if 0 <= k <= N]
    jobs = [(ratio, 0, "default", src) for src in a.sources for ratio in a.ratios]
    jobs += [(ratio, k, pol, src) for src in a.sources for pol in a.policies for ratio in a.ratios for k in ks
             if not (k == 0 and pol == "default")]
    t0 = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="bench-blocks.")
    results = {}
    try:
        with concurrent.futures.ThreadPoolExecutor(max(1, a.jobs)) as ex:
            futs = {ex.submit(run_one, prog, sim_dir, shim, a, S, *j, tmp): j for j in jobs}
            for fut in concurrent.futures.as_completed(futs):
                results[futs[fut]] = fut.result()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    wall = time.monotonic() - t0

    for src in a.sources:
        for ratio in a.ratios:
            ref = analyse(results[(ratio, 0, "default", src)], S, a, None)
            results[(ratio, 0, "default", src)]["m"] = ref
            for j, r in results.items():
                if j[0] == ratio and j[3] == src and j != (ratio, 0, "default", src):
                    r["m"] = analyse(r, S, a, ref)

    problems = []
    sums = {r["checksum"] for r in results.values()}
    if len(sums) != 1:
        problems.append("final activations differ between runs: %s" % sorted(sums))
    for r in results.values():
        rep = r["report"]
        if rep["errors"] or rep["illegal_address"]:
            problems.append("%s: simulator reported %d errors: %s" % (r["name"], rep["errors"], rep["first_error"]))
        if not r["shim_stats"]:
            problems.append("%s: blockswap_get_stats not found: is the shim preloaded?" % r["name"])
        if r["k"] == 0 and r["m"]["h2d_bytes_per_step"] > 0:
            problems.append("%s: k = 0 is not all-resident (%.1f MiB paged in per step)"
                            % (r["name"], r["m"]["h2d_bytes_per_step"] / MiB))
    ignored = sorted({v for r in results.values() for v in r["ignored"]})

    mode = ("emulated k: BLOCKSWAP_VRAM_LIMIT = min(N, N-k+%d) paged blocks + rest" % (a.prefetch + 1)
            if a.emulate_k_with_limit else
            "BLOCKSWAP_BLOCKS_TO_SWAP=k, BLOCKSWAP_PREFETCH=%d" % a.prefetch)
    mode += ", BLOCKSWAP_SWAP_PLACEMENT=%s" % (a.placement or "default (spread)")
    print("bench-blocks: WAN-shaped stack, simulated driver, VIRTUAL time (not wall-clock)")
    print("  %d blocks, d=%d f=%d, %d-byte elements, %d tensors/block (%d matrices); block %.2f MiB "
          "(%.2f MiB paged in 2 MiB pages, %.2f MiB managed), rest %.2f MiB unmanaged"
          % (N, S["d"], S["f"], S["elem_bytes"], S["tensors_per_block"], S["matrices_per_block"],
             S["block_bytes"] / MiB, S["block_paged"] / MiB, S["block_managed"] / MiB, S["rest_bytes"] / MiB))
    print("  PCIe %g GB/s per direction: one block's fill %.3f ms; %d steps per run, step 0 excluded; %s%s"
          % (a.gbps, S["block_managed"] / a.gbps / 1e6, a.steps, mode, ", weights by cuMemAllocAsync" if a.async_ else ""))
    print("  weights loaded from: %s" % ", ".join(a.sources))
    print("  simulator: %s" % (", ".join(a.sim_env) if a.sim_env else
                               "default settings, host costs on (docs/simulator.md, Host costs)"))
    print("  columns: step = mean virtual step time; x k=0 = ratio to the all-resident run at the same ratio;")
    print("  H2D/D2H = MiB paged in / written back per step (blocks = H2D / one block); stall = step - compute busy;")
    print("  bound = max(compute, k blocks / bandwidth) + one block's fill (k > 0); pred = (N-k+prefetch+1) blocks + rest")
    for src, pol, ratio in [(s_, p_, r_) for s_ in a.sources for p_ in a.policies for r_ in a.ratios]:
        ref = results[(ratio, 0, "default", src)]["m"]
        print()
        print("%spolicy %s, compute/transfer %g: compute %.3f ms/step (%.3f ms/block)"
              % ("" if a.sources == ["pinned"] else "source %s, " % src, pol, ratio, ref["compute_ms"],
                 ref["compute_ms"] / N))
        print("  %3s %9s %7s %9s %9s %7s %9s %9s %7s %9s %9s %6s"
              % ("k", "step ms", "x k=0", "H2D MiB", "D2H MiB", "blocks", "stall ms", "bound ms",
                 "x bound", "peak MiB", "pred MiB", "x pred"))
        for k in ks:
            key = (ratio, k, pol, src) if (ratio, k, pol, src) in results else (ratio, k, "default", src)
            if key not in results:
                continue
            m = results[key]["m"]
            tag = "" if key[2] == pol else "  (default-policy reference)"
            print("  %3d %9.3f %7.3f %9.1f %9.1f %7.2f %9.3f %9.3f %7.3f %9.1f %9.1f %6.3f%s"
                  % (k, m["step_ms"], m["vs_k0"], m["h2d_bytes_per_step"] / MiB, m["d2h_bytes_per_step"] / MiB,
                     m["blocks_streamed"], m["stall_ms"], m["bound_ms"], m["vs_bound"],
                     m["peak_device_bytes"] / MiB, m["predicted_peak_bytes"] / MiB, m["peak_vs_predicted"], tag))
    print_memory(results, a, ks)
    print()
    print("%d runs in %.1f s wall (%d at once); final activations %s in every run"
          % (len(results), wall, a.jobs, "identical" if len(sums) == 1 else "DIFFER"))
    if ignored and a.emulate_k_with_limit:
        print("note: the shim ignored %s (unknown variable): rows differing only in those settings are "
              "the same run" % ", ".join(ignored))
    elif ignored:
        problems.append("the shim ignored %s (unknown variable): these rows do not measure k; "
                        "use --emulate-k-with-limit until they are implemented" % ", ".join(ignored))
    for p in problems:
        print("PROBLEM: " + p)

    if a.json:
        out = dict(mode="emulate-k-with-limit" if a.emulate_k_with_limit else "blocks-to-swap",
                   time="virtual", driver="simulated", gbps=a.gbps, steps=a.steps, prefetch=a.prefetch,
                   placement=a.placement or "default",
                   sizes=S, wall_s=wall, ignored_variables=ignored, problems=problems,
                   sources=a.sources,
                   runs=[dict({x: r[x] for x in ("ratio", "k", "policy", "source", "limit", "checksum", "steps",
                                                 "mem", "report")},
                              **r["m"]) for _, r in sorted(results.items())])
        if a.json == "-":
            json.dump(out, sys.stdout, indent=1)
            print()
        else:
            with open(a.json, "w") as fh:
                json.dump(out, fh, indent=1)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
