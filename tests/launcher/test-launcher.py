#!/usr/bin/env python3
"""Tests of blockswap-run: option mapping, LD_PRELOAD, --check on the simulated driver
and without any driver, the ComfyUI additions (on a fake ComfyUI tree made here), and
the unconfigured launcher of a source tree. One CASE per meson test.

usage: test-launcher.py CASE --launcher PATH --source-launcher PATH --lib PATH
                        --probe PATH --sim DIR --transformer PATH
"""
import argparse, json, os, re, shutil, subprocess, sys, tempfile, time

SKIP = 77
A = None  # parsed arguments
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg, file=sys.stderr)


def expect(cond, msg):
    if not cond:
        fail(msg)
    return cond


def base_env(**extra):
    """The test's environment without anything that would change the launcher's
    behaviour, plus extra (None removes a variable)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BLOCKSWAP_", "PYTORCH_", "LD_PRELOAD", "LD_LIBRARY_PATH"))}
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def run(args, env=None, cwd=None, launcher=None):
    cmd = [launcher or A.launcher] + args
    p = subprocess.run(cmd, env=env if env is not None else base_env(), cwd=cwd,
                       capture_output=True, text=True, timeout=120)
    print(f"$ {' '.join(cmd)}  -> {p.returncode}\n{p.stdout}{p.stderr}", end="")
    return p


# A program that prints what it was given: argv and the variables the launcher sets.
SHOW = r"""
import json, os, sys
keys = ("BLOCKSWAP_", "PYTORCH_", "LD_PRELOAD")
print(json.dumps({"argv": sys.argv[1:],
                  "env": {k: v for k, v in os.environ.items() if k.startswith(keys)}}))
"""


def shown(p):
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            return json.loads(line)
    fail("the command printed no JSON")
    return {"argv": [], "env": {}}


def show_cmd(tmp):
    path = os.path.join(tmp, "show.py")
    with open(path, "w") as f:
        f.write(SHOW)
    return [sys.executable, path]


# ---- cases ----

def case_help_and_version(tmp):
    p = run(["--help"])
    expect(p.returncode == 0, "--help exits 0")
    for opt in ["--blocks-to-swap", "--vram-limit", "--prefetch", "--trace", "--log-level",
                "--check", "--version", "--library", "--dry-run", "--no-comfyui-flags"]:
        expect(opt in p.stdout, f"--help mentions {opt}")
    p = run(["--version"])
    expect(p.returncode == 0, "--version exits 0")
    expect(re.match(r"blockswap-run \d+\.\d+\.\d+\n", p.stdout), "--version names the version")
    expect(f"library: {A.lib} (build tree)" in p.stdout, "--version names the library")


def case_options_set_variables(tmp):
    trace = os.path.join(tmp, "trace.json")
    log = os.path.join(tmp, "bs.log")
    p = run(["--blocks-to-swap", "20", "--vram-limit", "11500M", "--prefetch=3",
             "--trace", trace, "--log-level=debug", "--log-file", log, "--"]
            + show_cmd(tmp) + ["--blocks-to-swap", "x"],
            env=base_env(BLOCKSWAP_RESERVE="1G", BLOCKSWAP_PREFETCH="5",
                         BLOCKSWAP_LIBRARY=A.lib))
    expect(p.returncode == 0, "the command ran")
    got = shown(p)
    want = {"BLOCKSWAP_BLOCKS_TO_SWAP": "20", "BLOCKSWAP_VRAM_LIMIT": "11500M",
            "BLOCKSWAP_PREFETCH": "3", "BLOCKSWAP_TRACE": trace,
            "BLOCKSWAP_LOG_LEVEL": "debug", "BLOCKSWAP_LOG_FILE": log,
            "BLOCKSWAP_RESERVE": "1G", "LD_PRELOAD": A.lib}
    expect(got["env"] == want, f"environment {got['env']} == {want}")
    expect(got["argv"] == ["--blocks-to-swap", "x"], "arguments after the command are its own")
    p = run(["--blocks-to-swap", "auto", "--vram-limit", "auto"] + show_cmd(tmp))
    got = shown(p)
    expect(got["env"].get("BLOCKSWAP_BLOCKS_TO_SWAP") == "auto" and
           got["env"].get("BLOCKSWAP_VRAM_LIMIT") == "auto", "auto accepted")
    p = run(["--blocks-to-swap", "26,auto,30"] + show_cmd(tmp))
    expect(p.returncode == 0 and shown(p)["env"].get("BLOCKSWAP_BLOCKS_TO_SWAP") == "26,auto,30",
           "a list, one per model, accepted")
    p = run(["--vram-limit", "24GiB"] + show_cmd(tmp) + ["a b", "it's"])
    got = shown(p)
    expect(got["argv"] == ["a b", "it's"], "arguments pass through unchanged")
    p = run(["-n", "--vram-limit", "8G", "printf", "%s\\n", "a b"])
    expect(p.returncode == 0 and "BLOCKSWAP_VRAM_LIMIT=8G\n" in p.stdout and
           f"LD_PRELOAD={A.lib}\n" in p.stdout and
           "exec printf '%s\\n' 'a b'\n" in p.stdout, "--dry-run prints and runs nothing")


def case_ld_preload_appended_once(tmp):
    other = "/usr/lib/nonexistent-preload.so"
    p = run(show_cmd(tmp), env=base_env(LD_PRELOAD=other))
    expect(shown(p)["env"]["LD_PRELOAD"] == f"{other}:{A.lib}", "appended after ':'")
    for existing in [A.lib, f"{other}:{A.lib}", f"{A.lib} {other}"]:
        p = run(show_cmd(tmp), env=base_env(LD_PRELOAD=existing))
        expect(shown(p)["env"]["LD_PRELOAD"] == existing, f"{existing!r} kept, not doubled")
    copy = os.path.join(tmp, "libblockswap.so")
    shutil.copy(A.lib, copy)
    p = run(show_cmd(tmp), env=base_env(LD_PRELOAD=copy))
    expect(p.returncode == 2 and "{" not in p.stdout, "a second libblockswap is refused")
    expect(f"blockswap-run: LD_PRELOAD already holds another libblockswap.so ({copy})"
           in p.stderr, "the refusal names it")


def case_bad_values_rejected(tmp):
    marker = os.path.join(tmp, "ran")
    bad = [
        (["--blocks-to-swap", "-1"], "--blocks-to-swap -1: accepted: auto or a whole number from 0 to 100000"),
        (["--blocks-to-swap", "100001"], "--blocks-to-swap 100001: accepted:"),
        (["--blocks-to-swap", "10,x"], '--blocks-to-swap 10,x: item 2 ("x"): accepted: auto or a whole number from 0 to 100000'),
        (["--blocks-to-swap", "10,,3"], "--blocks-to-swap 10,,3: item 2 (empty): accepted:"),
        (["--blocks-to-swap", "4,100001"], '--blocks-to-swap 4,100001: item 2 ("100001"): accepted:'),
        (["--blocks-to-swap", ",".join(["1"] * 17)],
         "--blocks-to-swap " + ",".join(["1"] * 17) + ": accepted: at most 16 values"),
        (["--vram-limit", "12X"], "--vram-limit 12X: accepted: auto or a size from 2M to 1024T bytes"),
        (["--vram-limit", "1M"], "--vram-limit 1M: accepted:"),
        (["--vram-limit", "2048T"], "--vram-limit 2048T: accepted:"),
        (["--vram-limit", "1.5G"], "--vram-limit 1.5G: accepted:"),
        (["--prefetch", "-1"], "--prefetch -1: accepted: a whole number from 0 to 63"),
        (["--prefetch", "64"], "--prefetch 64: accepted:"),
        (["--log-level", "loud"], "--log-level loud: accepted: error, warn, info, debug"),
        (["--trace", "/nonexistent/dir/t.json"], "--trace /nonexistent/dir/t.json: the directory /nonexistent/dir does not exist"),
        (["--library", "/nonexistent/libblockswap.so"], "--library /nonexistent/libblockswap.so: no such file"),
        (["--prefetch"], "--prefetch needs a value"),
        (["--frobnicate"], "unknown option --frobnicate"),
        ([], "no command given"),
    ]
    for args, msg in bad:
        cmd = ["touch", marker] if args and args != ["--prefetch"] else []
        p = run(args + cmd)
        expect(p.returncode == 2, f"{args}: exit status 2")
        lines = p.stderr.splitlines()
        expect(len(lines) == 1 and lines[0].startswith("blockswap-run: " + msg),
               f"{args}: one line starting 'blockswap-run: {msg}'")
        expect(not os.path.exists(marker), f"{args}: the command did not run")


def sim_env(**extra):
    return base_env(LD_LIBRARY_PATH=A.sim, **extra)


def case_check_ok_on_simulated_driver(tmp):
    p = run(["--check", "--vram-limit", "4G", "--blocks-to-swap", "auto"], env=sim_env())
    expect(p.returncode == 0, "--check exits 0")
    for rx in [r"^blockswap-run \d+\.\d+\.\d+$",
               rf"^library:  {re.escape(A.lib)} \(build tree\)$",
               r"^driver:   \S*libcuda\.so\.1, CUDA 13\.0$",
               r"^device 0: blockswap simulated GPU, compute capability 9\.0, 8\.0 GiB total, [\d.]+ GiB free$",
               r"^config:   BLOCKSWAP_BLOCKS_TO_SWAP=auto BLOCKSWAP_VRAM_LIMIT=4G$",
               r"^library:  loaded, blockswap \d+\.\d+\.\d+$",
               r"^config:   valid: blockswap is active$",
               r"^check:    ok: blockswap would work here$"]:
        expect(re.search(rx, p.stdout, re.M), f"stdout has /{rx}/")
    p = run(["--check"], env=sim_env())
    expect(p.returncode == 0 and "config:   defaults (no BLOCKSWAP_* variable set)" in p.stdout,
           "--check with the defaults")


def case_check_fails_on_bad_config(tmp):
    p = run(["--check"], env=sim_env(BLOCKSWAP_PREFETCH="64"))
    expect(p.returncode == 1, "a bad value: exit 1")
    expect("blockswap: error: BLOCKSWAP_PREFETCH=64 is not valid; accepted: a whole number from 0 to 63"
           in p.stderr, "the shim's line names the variable")
    expect(re.search(r"^config:   not valid: ", p.stdout, re.M), "config: not valid")
    expect(re.search(r"^check:    blockswap would not work here", p.stdout, re.M), "verdict")
    p = run(["--check"], env=sim_env(BLOCKSWAP_DISABLE="1"))
    expect(p.returncode == 1 and "config:   BLOCKSWAP_DISABLE=1: blockswap would pass every call through"
           in p.stdout, "BLOCKSWAP_DISABLE=1: exit 1, said")
    p = run(["--check"], env=sim_env(BLOCKSWAP_LIBRARY="/nonexistent/libblockswap.so"))
    expect(p.returncode == 1 and
           "library:  not found: /nonexistent/libblockswap.so (BLOCKSWAP_LIBRARY)" in p.stdout,
           "a missing library: exit 1, said")


def case_check_without_driver(tmp):
    probe = subprocess.run([A.probe, "driver"], env=base_env(), capture_output=True, text=True)
    if "no NVIDIA driver" not in probe.stdout:
        print("this machine has a CUDA driver (" + probe.stdout.strip() + "): skipped")
        return SKIP
    p = run(["--check"], env=base_env())
    expect(p.returncode == 1, "no driver: exit 1")
    expect("driver:   no NVIDIA driver (libcuda.so.1 not found)\n" in p.stdout, "said")
    # One thing said: no driver. Not what the shim would add without one.
    out = p.stdout + p.stderr
    for contradiction in ["update the NVIDIA driver", "driver API 0.0", "active", "cuInit"]:
        expect(contradiction not in out, f"nothing says {contradiction!r}")
    expect("config:   valid\n" in p.stdout, "the configuration is judged on its own")
    expect(p.stdout.endswith("check:    blockswap would not work here: no NVIDIA driver\n"),
           "the verdict names the reason")
    p = run(["--check"], env=base_env(BLOCKSWAP_PREFETCH="64"))
    expect(p.returncode == 1 and
           "blockswap: error: BLOCKSWAP_PREFETCH=64 is not valid" in p.stderr and
           "config:   not valid" in p.stdout and "active" not in p.stdout + p.stderr,
           "a bad value is still named without a driver")


def case_check_vram_limit(tmp):
    p = run(["--check"], env=sim_env())
    expect(p.returncode == 0 and re.search(
        r"^limit:    device 0: [\d.]+ GiB \(BLOCKSWAP_VRAM_LIMIT=auto: [\d.]+ GiB free minus "
        r"BLOCKSWAP_RESERVE=512M\)$", p.stdout, re.M), "the automatic limit is printed")
    p = run(["--check", "--vram-limit", "4G"], env=sim_env())
    expect(p.returncode == 0 and
           "limit:    device 0: 4.0 GiB (BLOCKSWAP_VRAM_LIMIT=4G)\n" in p.stdout,
           "a set limit is printed")
    p = run(["--check", "--vram-limit", "100G"], env=sim_env())
    expect(p.returncode == 1, "a limit above the device's memory: exit 1")
    expect(re.search(r"^problem:  BLOCKSWAP_VRAM_LIMIT=100G is more than device 0 has "
                     r"\(8\.0 GiB in all\)", p.stdout, re.M), "said, naming the variable")
    expect("check:    blockswap would not work here" in p.stdout, "verdict")
    # 400 MiB free minus the default 512 MiB reserve: nothing left.
    p = run(["--check"], env=sim_env(CUDASIM_VRAM="400M"))
    expect(p.returncode == 1 and re.search(
        r"^problem:  device 0: the automatic VRAM limit comes out 0: \d+ MiB free minus "
        r"BLOCKSWAP_RESERVE=512M", p.stdout, re.M), "an automatic limit of 0 is refused")
    p = run(["--check"], env=sim_env(CUDASIM_VRAM="400M", BLOCKSWAP_RESERVE="64M"))
    expect(p.returncode == 0 and "BLOCKSWAP_RESERVE=64M)" in p.stdout,
           "and passes with a smaller reserve")


# ---- --check --model: model files written here, small on disk (sparse past the header) ----

MiB = 1 << 20


def wan_tensors(blocks=40, d=1024, f=4096, prefix=""):
    """A WAN-shaped model: (name, shape, bytes) at bf16, norms at fp32."""
    t = [(prefix + "patch_embedding.weight", [d, 16, 1, 2, 2], d * 64 * 2),
         (prefix + "text_embedding.0.weight", [d, 4096], d * 4096 * 2)]
    for b in range(blocks):
        for p in "qkvo":
            t.append((f"{prefix}blocks.{b}.self_attn.{p}.weight", [d, d], d * d * 2))
        t.append((f"{prefix}blocks.{b}.ffn.0.weight", [f, d], f * d * 2))
        t.append((f"{prefix}blocks.{b}.ffn.2.weight", [d, f], d * f * 2))
        t.append((f"{prefix}blocks.{b}.norm3.bias", [d], d * 4))
    t.append((prefix + "head.head.weight", [64, d], 64 * d * 2))
    return t


def write_safetensors(path, tensors):
    import struct
    header, off = {"__metadata__": {"format": "pt", "note": "a \"quoted\" {brace}"}}, 0
    for name, shape, n in tensors:
        elements = 1
        for x in shape:
            elements *= x
        header[name] = {"dtype": "F32" if n == 4 * elements else "BF16", "shape": shape,
                        "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        f.truncate(8 + len(h) + off)
    return off


def write_gguf(path, tensors):
    """GGUF version 3 (its specification): magic, version, counts, metadata (a string, an
    array of strings, an array of uint32, general.alignment), tensor infos (dimensions
    fastest first), the data section at the next multiple of the alignment."""
    import struct

    def s(x):
        b = x.encode()
        return struct.pack("<Q", len(b)) + b
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), 4))
    out += s("general.architecture") + struct.pack("<I", 8) + s("wan")
    out += s("tokenizer.tokens") + struct.pack("<IIQ", 9, 8, 2) + s("a") + s("bc")
    out += s("some.ints") + struct.pack("<IIQ", 9, 4, 3) + struct.pack("<III", 1, 2, 3)
    out += s("general.alignment") + struct.pack("<II", 4, 64)
    off = 0
    for name, shape, n in tensors:
        dims = list(reversed(shape))
        out += s(name) + struct.pack("<I", len(dims))
        out += b"".join(struct.pack("<Q", x) for x in dims) + struct.pack("<IQ", 30, off)
        off += (n + 63) // 64 * 64
    out += b"\0" * ((-len(out)) % 64)
    with open(path, "wb") as f:
        f.write(out)
        f.truncate(len(out) + off)
    return off


def suggested_k(limit, n, block, outside, act, d):
    """The README's arithmetic: (n - k + d) blocks + outside + activations fit the limit."""
    if limit <= outside + act:
        return None
    slots = (limit - outside - act) // block
    if slots >= n:
        return 0
    k = n + d - slots
    if k > n:
        return n if slots >= min(d, n) else None
    return k


def human(b):
    return "%.1f GiB" % (b / (1 << 30)) if b >= 1 << 30 else "%.0f MiB" % (b / MiB)


def case_check_model(tmp):
    tensors = wan_tensors()
    block = 4 * 1024 * 1024 * 2 + 2 * 4096 * 1024 * 2 + 1024 * 4
    outside = 1024 * 64 * 2 + 1024 * 4096 * 2 + 64 * 1024 * 2
    total = 40 * block + outside
    act = (3 << 30) // 5120 * 1024  # 3 GiB at width 5120, scaled to width 1024
    st = os.path.join(tmp, "wan small.safetensors")
    expect(write_safetensors(st, tensors) == total, "the safetensors file holds the model")
    gg = os.path.join(tmp, "wan.gguf")
    write_gguf(gg, tensors)
    for path, fmt in [(st, "safetensors"), (gg, "GGUF")]:
        p = run(["--check", "--vram-limit", "1G", "--model", path], env=sim_env())
        expect(p.returncode == 0, f"{fmt}: --check --model exits 0")
        expect(f"model:    {path}: {fmt}, {human(total)} ({len(tensors)} tensors, width 1024)\n"
               in p.stdout, f"{fmt}: its size, from the header only")
        expect(f"blocks:   40 transformer blocks (blocks.N.) of up to {human(block)}, "
               f"{human(outside)} outside them\n" in p.stdout, f"{fmt}: its blocks")
        expect(re.search(r"^host RAM: no copy of this model when its weights are uploaded "
                         r"straight from this file .* through a 128M pinned staging ring", p.stdout,
                         re.M) and
               re.search(r"^host RAM: up to " + re.escape(human(total)) + r" for this model "
                         r"without file backing: a host copy of each swapped weight, at most the "
                         r"model's size; BLOCKSWAP_HOST_LIMIT=auto allows ", p.stdout, re.M),
               f"{fmt}: the host RAM it needs, with and without file backing, and why")
        k1 = suggested_k(1 << 30, 40, block, outside, act, 2)
        expect(k1 is not None and 0 < k1 < 40, "the model does not fit 1G: some blocks swapped")
        expect(f"suggest:  BLOCKSWAP_BLOCKS_TO_SWAP={k1} for this model on device 0 with CFG 1 "
               f"(with CFG above 1, which doubles the activations: it does not fit): (40 - k + 2)"
               in p.stdout, f"{fmt}: the suggested k, {k1}")
    # BLOCKSWAP_PREFETCH widens the window: one more block in VRAM, one more swapped.
    p = run(["--check", "--vram-limit", "2G", "--prefetch", "3", "--model", st], env=sim_env())
    k1 = suggested_k(2 << 30, 40, block, outside, act, 4)
    k2 = suggested_k(2 << 30, 40, block, outside, 2 * act, 4)
    expect(p.returncode == 0 and
           f"BLOCKSWAP_BLOCKS_TO_SWAP={k1} for this model on device 0 with CFG 1 (with CFG "
           f"above 1, which doubles the activations: {k2}): (40 - k + 4)" in p.stdout,
           f"2G, prefetch 3: {k1}, and {k2} with CFG above 1")
    # Without --model: the README's reference, WAN 14B at bf16.
    p = run(["--check", "--vram-limit", "7G"], env=sim_env())
    k1 = suggested_k(7 << 30, 40, 670 * MiB, 444 * MiB, 3 << 30, 2)
    expect(p.returncode == 0 and k1 == 37 and
           f"suggest:  BLOCKSWAP_BLOCKS_TO_SWAP={k1} for WAN 14B at bf16" in p.stdout,
           "without --model: the reference model's k, 37")
    # Names: blocks.N. starts the name or follows a dot; vace_blocks.N. is not a block.
    odd = os.path.join(tmp, "odd.safetensors")
    t = wan_tensors(blocks=3, prefix="model.diffusion_model.")
    t += [("vace_blocks.%d.proj.weight" % i, [1024, 1024], 2 * MiB) for i in range(5)]
    write_safetensors(odd, t)
    p = run(["--check", "--vram-limit", "1G", "--model", odd], env=sim_env())
    expect(re.search(r"^blocks:   3 transformer blocks \(blocks\.N\.\) of up to 24 MiB, 18 MiB "
                     r"outside them$", p.stdout, re.M), "prefixed names counted, vace_blocks not")
    # More than the host may hold without file backing: said, exit 1; with file backing
    # (the default) the file stands for the copy: no problem.
    p = run(["--check", "--vram-limit", "1G", "--model", st],
            env=sim_env(BLOCKSWAP_HOST_LIMIT="512M"))
    expect(p.returncode == 0 and "problem:" not in p.stdout,
           "a small host limit is no problem when the file backs the weights")
    p = run(["--check", "--vram-limit", "1G", "--model", st],
            env=sim_env(BLOCKSWAP_HOST_LIMIT="512M", BLOCKSWAP_FILE_BACKING="0"))
    expect(p.returncode == 1 and "BLOCKSWAP_HOST_LIMIT=512M allows 512 MiB" in p.stdout and
           re.search(r"^problem:  the model needs more pinned host memory than "
                     r"BLOCKSWAP_HOST_LIMIT allows", p.stdout, re.M), "a host limit too small")
    # Not a model file; a cut header; --model without --check.
    junk = os.path.join(tmp, "junk.bin")
    with open(junk, "wb") as f:
        f.write(b"\xff" * 64)
    cut = os.path.join(tmp, "cut.safetensors")
    with open(st, "rb") as f, open(cut, "wb") as g:
        g.write(f.read(4000))
    badjson = os.path.join(tmp, "bad.safetensors")
    with open(badjson, "wb") as f:
        f.write((12).to_bytes(8, "little") + b'{"a": {"da' + b" " * 100)
    for path, why in [(junk, "not a safetensors file"), (cut, "not a safetensors file"),
                      (badjson, "its safetensors header is not the JSON expected")]:
        p = run(["--check", "--vram-limit", "1G", "--model", path], env=sim_env())
        expect(p.returncode == 1 and f"problem:  --model {path}: {why}" in p.stdout,
               f"{os.path.basename(path)}: {why}")
    with open(gg, "rb") as f, open(cut, "wb") as g:
        g.write(f.read(3000))
    p = run(["--check", "--vram-limit", "1G", "--model", cut], env=sim_env())
    expect(p.returncode == 1 and "its GGUF header is not what the GGUF specification describes"
           in p.stdout, "a cut GGUF header")
    p = run(["--model", st, "true"])
    expect(p.returncode == 2 and p.stderr.startswith("blockswap-run: --model goes with --check"),
           "--model without --check")
    p = run(["--check", "--model", os.path.join(tmp, "none.gguf")])
    expect(p.returncode == 2 and "no such readable file" in p.stderr, "a missing model file")


def case_config_validated_before_run(tmp):
    root = comfy_tree(tmp, NEW)
    marker = os.path.join(tmp, "ran")
    log = os.path.join(tmp, "bs.log")
    cmd = ["sh", "-c", 'touch "$0"; exec "$@"', marker, sys.executable,
           os.path.join(root, "main.py")]
    for env in [base_env(), sim_env()]:  # without a driver, and with one
        env.update(BLOCKSWAP_BLOCKS_TO_SWAP="abc", BLOCKSWAP_PREFETCH="1000",
                   BLOCKSWAP_LOG_FILE=log)
        p = run(cmd, env=env)
        expect(p.returncode == 2, "bad values: exit 2")
        expect(p.stderr.splitlines() == [
            "blockswap-run: BLOCKSWAP_BLOCKS_TO_SWAP=abc is not valid; accepted: auto or a "
            "whole number from 0 to 100000",
            "blockswap-run: BLOCKSWAP_PREFETCH=1000 is not valid; accepted: a whole number "
            "from 0 to 63"], "one line per bad variable, naming it, nothing else")
        expect(not os.path.exists(marker), "the command did not run")
        expect(not os.path.exists(log), "the check created no log file")
    for var, val in [("BLOCKSWAP_SWAP_PLACEMENT", "first"), ("BLOCKSWAP_LOG_LEVEL", "loud"),
                     ("BLOCKSWAP_DISABLE", "maybe"), ("BLOCKSWAP_TRACE", "a.json,b.json")]:
        p = run(cmd, env=sim_env(**{var: val}))
        lines = p.stderr.splitlines()
        expect(p.returncode == 2 and len(lines) == 1 and
               lines[0].startswith(f"blockswap-run: {var}={val} is not valid; accepted: "),
               f"{var}={val}: one line naming it")
        expect(not os.path.exists(marker), f"{var}={val}: the command did not run")
    # BLOCKSWAP_DISABLE=1: blockswap passes everything through, so ComfyUI keeps its own
    # VRAM management: nothing is added that only makes sense with the shim active.
    p = run(show_cmd(tmp)[:1] + [os.path.join(root, "main.py")],
            env=sim_env(BLOCKSWAP_DISABLE="1"))
    got = shown(p)
    expect(p.returncode == 0 and got["argv"] == [], f"nothing added: {got['argv']}")
    expect("PYTORCH_CUDA_ALLOC_CONF" not in got["env"], "no allocator setting")
    expect([l for l in added_lines(p) if "adding" in l or "setting" in l] == [] and
           "blockswap-run: ComfyUI: BLOCKSWAP_DISABLE=1: blockswap passes every call through"
           in p.stderr, "and it says why")
    p = run(show_cmd(tmp)[:1] + [os.path.join(root, "main.py")], env=sim_env())
    expect(shown(p)["argv"] == ALL_ADDED, "enabled: the flags are added")


def case_edge_cases(tmp):
    marker = os.path.join(tmp, "ran")
    touch = ["touch", marker]
    # Two .json paths: the library takes one text and one .json path.
    for args, env in [(["--trace", f"{tmp}/a.json,{tmp}/b.json"], base_env()),
                      ([], base_env(BLOCKSWAP_TRACE=f"{tmp}/a.json,{tmp}/b.json")),
                      (["--trace", f"{tmp}/a,{tmp}/b,{tmp}/c.json"], base_env())]:
        p = run(args + touch, env=env)
        lines = p.stderr.splitlines()
        expect(p.returncode == 2 and len(lines) == 1 and
               "accepted: one path, or a text path and a .json path separated by a comma"
               in lines[0], f"{args or 'BLOCKSWAP_TRACE'}: refused up front, in one line")
        expect(not os.path.exists(marker), "the command did not run")
    p = run(["--trace", f"{tmp}/t.log,{tmp}/t.json", "-n", "true"])
    expect(p.returncode == 0, "a text and a .json path are accepted")
    # `--` ends the options; it is no value.
    for opt in ["--blocks-to-swap", "--vram-limit", "--prefetch", "--trace", "--log-file"]:
        p = run([opt, "--"] + touch)
        expect(p.returncode == 2 and p.stderr.splitlines() ==
               [f"blockswap-run: {opt} needs a value before -- (see blockswap-run --help)"],
               f"{opt} --: refused, -- not taken as the value")
        expect(not os.path.exists(marker), "the command did not run")
    # A mistyped command: one line, exit 127, not a shell's error.
    for cmd, msg in [(["pyhton3", "main.py"], "pyhton3: command not found"),
                     ([f"{tmp}/nope/python", "x"], f"{tmp}/nope/python: no such executable file"),
                     ([tmp], f"{tmp}: no such executable file")]:
        p = run(cmd)
        expect(p.returncode == 127 and len(p.stderr.splitlines()) == 1 and
               p.stderr.startswith("blockswap-run: " + msg), f"{cmd[0]}: one clear line")
    # The missing-library hint, by cause.
    p = run(["true"], env=base_env(BLOCKSWAP_LIBRARY=f"{tmp}/libblockswap.so"))
    expect(p.returncode == 2 and "BLOCKSWAP_LIBRARY names no file" in p.stderr and
           "ninja" not in p.stderr, "a bad BLOCKSWAP_LIBRARY is named, no build advice")
    tree = os.path.join(tmp, "never-configured", "scripts")
    os.makedirs(tree)
    shutil.copy(A.source_launcher, tree)
    launcher = os.path.join(tree, "blockswap-run")
    p = run(["true"], launcher=launcher)
    expect(p.returncode == 2 and "never configured" in p.stderr and
           "meson setup build && ninja -C build" in p.stderr,
           "a tree never configured: meson setup, then ninja")
    os.makedirs(os.path.join(tmp, "never-configured", "build"))
    open(os.path.join(tmp, "never-configured", "build", "build.ninja"), "w").close()
    p = run(["true"], launcher=launcher)
    expect(p.returncode == 2 and "meson setup" not in p.stderr and
           f"ninja -C {os.path.join(tmp, 'never-configured')}/build" in p.stderr,
           "a configured tree not built: ninja only")


def case_runs_program_under_shim(tmp):
    prog = [A.transformer, "6", "1024", "2"]  # 6 weights of 4 MiB, 12 MiB of VRAM
    ref = subprocess.run(prog, env=sim_env(), capture_output=True, text=True, timeout=120)
    expect(ref.returncode == 0, "the program runs without the shim")
    p = run(["--vram-limit", "12M", "--log-level", "info", "--"] + prog, env=sim_env())
    expect(p.returncode == 0, "and under the launcher")
    expect(p.stdout == ref.stdout, "with identical output")
    expect(re.search(r"^blockswap: blockswap \S+ active", p.stderr, re.M), "the shim was active")
    expect(re.search(r"^blockswap: exit: [1-9]\d* page-ins", p.stderr, re.M), "and paged")


# ---- ComfyUI ----

def comfy_tree(tmp, flags, name="ComfyUI"):
    root = os.path.join(tmp, name)
    os.makedirs(os.path.join(root, "comfy"), exist_ok=True)
    with open(os.path.join(root, "main.py"), "w") as f:
        f.write(SHOW)
    if flags is not None:
        with open(os.path.join(root, "comfy", "cli_args.py"), "w") as f:
            f.write("import argparse\nparser = argparse.ArgumentParser()\n")
            for fl in flags:
                f.write(f'parser.add_argument("{fl}", action="store_true")\n')
    return root


NEW = ["--disable-cuda-malloc", "--cuda-malloc", "--gpu-only", "--highvram", "--normalvram",
       "--lowvram", "--novram", "--cpu", "--disable-dynamic-vram", "--enable-dynamic-vram",
       "--disable-cuda-graphs"]
ALL_ADDED = ["--disable-dynamic-vram", "--highvram", "--disable-cuda-malloc",
             "--disable-cuda-graphs"]
VRAM_GROUP = ["--gpu-only", "--highvram", "--normalvram", "--lowvram", "--novram", "--cpu"]


def added_lines(p):
    return [l for l in p.stderr.splitlines() if l.startswith("blockswap-run: ComfyUI: ")]


def case_comfyui_gets_flags(tmp):
    root = comfy_tree(tmp, NEW)
    for cmd, cwd in [([sys.executable, "main.py", "--listen", "0.0.0.0"], root),
                     ([sys.executable, "-u", "-X", "utf8", os.path.join(root, "main.py")], tmp)]:
        p = run(["--vram-limit", "12G"] + cmd, cwd=cwd)
        got = shown(p)
        expect(got["argv"][-4:] == ALL_ADDED, f"flags appended: {got['argv']}")
        expect(got["env"].get("PYTORCH_CUDA_ALLOC_CONF") == "expandable_segments:False",
               "the caching allocator without expandable segments")
        lines = added_lines(p)
        expect(len(lines) == 5, "one line per addition")
        for what in ALL_ADDED + ["PYTORCH_CUDA_ALLOC_CONF=expandable_segments:False"]:
            expect(any(re.match(rf"blockswap-run: ComfyUI: (adding|setting) {what}: \S", l)
                       for l in lines), f"{what} is said, with why")


def case_comfyui_respects_user_choices(tmp):
    root = comfy_tree(tmp, NEW)
    main = os.path.join(root, "main.py")
    py = sys.executable

    def argv_env(args, env=None):
        p = run(args, env=env)
        expect(p.returncode == 0, f"{args}: ran")
        got = shown(p)
        return got["argv"], got["env"], p

    for choice in ["--gpu-only", "--highvram", "--novram", "--disable-dynamic-vram"]:
        argv, _, p = argv_env([py, main, choice])
        expect("--disable-dynamic-vram" not in argv[1:] or choice == "--disable-dynamic-vram",
               f"{choice}: no --disable-dynamic-vram added")
        expect(argv.count("--disable-dynamic-vram") <= 1, f"{choice}: never twice")
        expect(f"blockswap-run: ComfyUI: {choice} already keeps ComfyUI's dynamic VRAM off"
               in p.stderr, f"{choice}: said")
    argv, _, _ = argv_env([py, main, "--lowvram"])
    expect("--disable-dynamic-vram" in argv, "--lowvram does not turn dynamic VRAM off")
    argv, _, p = argv_env([py, main, "--enable-dynamic-vram"])
    expect("--disable-dynamic-vram" not in argv, "--enable-dynamic-vram is respected")
    expect("blockswap-run: warning: ComfyUI: --enable-dynamic-vram turns on comfy-aimdo"
           in p.stderr, "with a warning")
    argv, env, _ = argv_env([py, main, "--cuda-malloc"])
    expect("--disable-cuda-malloc" not in argv and "PYTORCH_CUDA_ALLOC_CONF" not in env,
           "--cuda-malloc is respected")
    argv, env, p = argv_env([py, main], env=base_env(PYTORCH_CUDA_ALLOC_CONF="backend:cudaMallocAsync"))
    expect("--disable-cuda-malloc" not in argv and
           env["PYTORCH_CUDA_ALLOC_CONF"] == "backend:cudaMallocAsync",
           "a backend in PYTORCH_CUDA_ALLOC_CONF is respected")
    argv, env, _ = argv_env([py, main], env=base_env(PYTORCH_ALLOC_CONF="garbage_collection_threshold:0.8"))
    expect("--disable-cuda-malloc" in argv and "PYTORCH_CUDA_ALLOC_CONF" not in env and
           env["PYTORCH_ALLOC_CONF"] == "garbage_collection_threshold:0.8",
           "PYTORCH_ALLOC_CONF kept; no second variable set")
    argv, _, p = argv_env([py, main, "--disable-cuda-graphs", "--disable-cuda-malloc"])
    expect(argv.count("--disable-cuda-graphs") == 1 and argv.count("--disable-cuda-malloc") == 1,
           "flags the user gave are not repeated")
    argv, env, p = argv_env(["--no-comfyui-flags", py, main, "--port", "8189"])
    expect(argv == ["--port", "8189"] and "PYTORCH_CUDA_ALLOC_CONF" not in env and
           not added_lines(p), "--no-comfyui-flags adds nothing")


# A ComfyUI whose main.py parses its arguments as ComfyUI's cli_args.py does: the VRAM
# flags in one mutually exclusive group, so a flag added next to a conflicting one makes
# it exit 2, as the real one would.
PARSING_CLI_ARGS = """import argparse
parser = argparse.ArgumentParser()
parser.add_argument("--listen", action="store_true")
parser.add_argument("--disable-dynamic-vram", action="store_true")
parser.add_argument("--enable-dynamic-vram", action="store_true")
parser.add_argument("--disable-cuda-malloc", action="store_true")
vram_group = parser.add_mutually_exclusive_group()
for flag in %r:
    vram_group.add_argument(flag, action="store_true")
""" % (VRAM_GROUP,)
PARSING_MAIN = SHOW.replace("import json, os, sys", "import json, os, sys\n"
                            "sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))\n"
                            "from comfy.cli_args import parser\n"
                            "parser.parse_args()")


def case_comfyui_highvram_added_unless_a_vram_flag_is_chosen(tmp):
    root = comfy_tree(tmp, [], "parsing")
    with open(os.path.join(root, "comfy", "cli_args.py"), "w") as f:
        f.write(PARSING_CLI_ARGS)
    with open(os.path.join(root, "main.py"), "w") as f:
        f.write(PARSING_MAIN)
    main = os.path.join(root, "main.py")
    py = sys.executable
    # Added, with its reason, and accepted by the parser.
    p = run([py, main, "--listen"], env=sim_env())
    got = shown(p)
    expect(p.returncode == 0 and got["argv"].count("--highvram") == 1,
           f"--highvram added once: {got['argv']}")
    expect(any(re.match(r"blockswap-run: ComfyUI: adding --highvram: the GPU becomes ComfyUI's "
                        r"offload device, so the diffusion model goes from its file straight "
                        r"to VRAM", l) for l in added_lines(p)), "and said, with why")
    # Not added next to a flag of the same group (argparse would refuse both).
    for choice in VRAM_GROUP:
        p = run([py, main, choice], env=sim_env())
        got = shown(p)
        expect(p.returncode == 0, f"{choice}: ComfyUI's parser accepted the command line")
        expect(got["argv"].count("--highvram") == (1 if choice == "--highvram" else 0),
               f"{choice}: no --highvram added: {got['argv']}")
        said = "\n".join(added_lines(p)) + p.stderr
        if choice in ("--gpu-only", "--highvram"):
            expect(f"blockswap-run: ComfyUI: {choice} already makes the GPU ComfyUI's offload "
                   f"device" in said, f"{choice}: said")
        elif choice != "--cpu":
            expect(f"blockswap-run: note: ComfyUI: {choice} keeps the CPU as ComfyUI's offload "
                   f"device" in said, f"{choice}: the RAM it costs is said")
    # Nor when ComfyUI's own paging is asked for (blockswap stands aside).
    p = run([py, main, "--enable-dynamic-vram"], env=sim_env())
    expect(p.returncode == 0 and "--highvram" not in shown(p)["argv"],
           "--enable-dynamic-vram: no --highvram")
    # Nor under BLOCKSWAP_DISABLE=1: ComfyUI then manages VRAM as without blockswap.
    p = run([py, main], env=sim_env(BLOCKSWAP_DISABLE="1"))
    expect(p.returncode == 0 and "--highvram" not in shown(p)["argv"] and
           "adding --highvram" not in p.stderr, "BLOCKSWAP_DISABLE=1: no --highvram")
    # Nor to a ComfyUI that does not know the flag.
    old = comfy_tree(tmp, ["--disable-cuda-malloc"], "no-highvram")
    p = run([py, os.path.join(old, "main.py")], env=sim_env())
    expect(shown(p)["argv"] == ["--disable-cuda-malloc"], "a ComfyUI without --highvram: not added")


def case_comfyui_old_version_gets_no_unknown_flags(tmp):
    old = comfy_tree(tmp, ["--disable-cuda-malloc", "--cuda-malloc", "--gpu-only"], "old")
    p = run([sys.executable, os.path.join(old, "main.py")])
    got = shown(p)
    expect(got["argv"] == ["--disable-cuda-malloc"],
           f"a ComfyUI without dynamic VRAM or graph flags gets only what it knows: {got['argv']}")
    not_comfy = comfy_tree(tmp, None, "not-comfy")  # a main.py, but no comfy/cli_args.py
    for cmd in [[sys.executable, os.path.join(not_comfy, "main.py")],
                [sys.executable, "-c", SHOW, os.path.join(old, "main.py")]]:
        p = run(cmd)
        expect(shown(p)["argv"] in ([], [os.path.join(old, "main.py")]) and not added_lines(p),
               f"{cmd[:2]}: not ComfyUI, nothing added")


def case_source_tree_finds_newest_build(tmp):
    src = os.path.join(tmp, "src-tree")
    os.makedirs(os.path.join(src, "scripts"))
    shutil.copy(A.source_launcher, os.path.join(src, "scripts", "blockswap-run"))
    with open(os.path.join(src, "meson.build"), "w") as f:
        f.write("project('blockswap', 'c',\n  version : '9.8.7',\n)\n")
    libs = {}
    for b in ["build", "build-new"]:
        d = os.path.join(src, b, "src")
        os.makedirs(os.path.join(d, "tools"))
        libs[b] = os.path.join(d, "libblockswap.so")
        shutil.copy(A.lib, libs[b])
        shutil.copy(A.probe, os.path.join(d, "tools", "blockswap-probe"))
    old = time.time() - 3600
    os.utime(libs["build"], (old, old))
    launcher = os.path.join(src, "scripts", "blockswap-run")
    p = run(["--version"], launcher=launcher)
    expect(p.stdout.startswith("blockswap-run 9.8.7\n"), "version read from meson.build")
    expect(f"library: {libs['build-new']} (source tree, newest build:" in p.stdout,
           "the most recently built build*/ is used")
    p = run(show_cmd(tmp), launcher=launcher)
    expect(shown(p)["env"]["LD_PRELOAD"] == libs["build-new"], "and preloaded")
    p = run(["--library", libs["build"]] + show_cmd(tmp), launcher=launcher)
    expect(shown(p)["env"]["LD_PRELOAD"] == libs["build"], "--library wins")
    # A library named in a build tree is checked with that tree's probe, not the newest
    # tree's (built with other sanitizers, that one may refuse the library).
    newest_probe = os.path.join(src, "build-new", "src", "tools", "blockswap-probe")
    os.replace(newest_probe, newest_probe + ".real")
    with open(newest_probe, "w") as f:
        f.write("#!/bin/sh\necho 'the newest tree\'s probe' >&2\nexit 1\n")
    os.chmod(newest_probe, 0o755)
    p = run(["--library", libs["build"]] + show_cmd(tmp), launcher=launcher)
    expect(p.returncode == 0 and shown(p)["env"]["LD_PRELOAD"] == libs["build"] and
           "newest tree" not in p.stderr, "--library brings its own tree's probe")
    os.replace(newest_probe + ".real", newest_probe)
    p = run(["--check"], env=sim_env(), launcher=launcher)
    expect(p.returncode == 0, "--check works from the source tree")
    empty = os.path.join(tmp, "empty-tree", "scripts")
    os.makedirs(empty)
    shutil.copy(A.source_launcher, empty)
    p = run(["true"], launcher=os.path.join(empty, "blockswap-run"))
    expect(p.returncode == 2 and "libblockswap.so not found" in p.stderr and
           "source tree, not built" in p.stderr, "an unbuilt source tree says so")


def main():
    global A
    ap = argparse.ArgumentParser()
    ap.add_argument("case")
    for opt in ["launcher", "source-launcher", "lib", "probe", "sim", "transformer"]:
        ap.add_argument("--" + opt, required=True)
    A = ap.parse_args()
    A.lib = os.path.realpath(A.lib)
    fn = globals().get("case_" + A.case.replace("-", "_"))
    if not fn:
        print(f"unknown case {A.case}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        r = fn(tmp)
    if r == SKIP:
        return SKIP
    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
