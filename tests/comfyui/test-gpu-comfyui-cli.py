#!/usr/bin/env python3
"""scripts/gpu-comfyui without a GPU: a run exits 2 at once with one clear message (it
finds no nvidia-smi on a PATH that has none); --dry-run, --list and the usage errors
work on any machine. Needs no torch, no ComfyUI and no built library."""

import os
import subprocess
import sys
import tempfile

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(TOP, "scripts", "gpu-comfyui")
failures = []


def run(args, path=None):
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = path
    return subprocess.run([sys.executable, SCRIPT] + args, capture_output=True, text=True,
                          env=env, timeout=120)


def check(cond, what, r=None):
    if not cond:
        failures.append(what)
        print("FAIL: %s%s" % (what, "\n  rc=%s\n  stderr: %s" % (r.returncode, r.stderr[-800:]) if r else ""))


def main():
    empty = tempfile.mkdtemp(prefix="no-gpu-path-")
    r = run(["--out", os.path.join(empty, "out"), "--work", os.path.join(empty, "w")], path=empty)
    check(r.returncode == 2, "no GPU: exit 2", r)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    check(len(lines) == 1 and "no CUDA GPU here" in lines[0] and "nvidia-smi" in lines[0],
          "no GPU: one line saying so and why", r)
    check(not os.path.exists(os.path.join(empty, "w")), "no GPU: no checkpoint written", r)

    r = run(["--dry-run", "--runs", "reference,blockswap-20,node-30"])
    check(r.returncode == 0, "--dry-run exits 0 without a GPU", r)
    check("dry run: 3 run(s) planned" in r.stderr, "--dry-run says what it planned", r)
    check("26.6 GiB" in r.stderr, "--dry-run gives the 14B checkpoint size (40 blocks, 26.6 GiB)", r)

    r = run(["--list"])
    names = [l.split()[0] for l in r.stdout.splitlines() if l.strip()]
    for want in ("reference", "blockswap-20", "blockswap-30", "blockswap-auto", "reference-pair",
                 "blockswap-pair", "node-20", "node-30", "comfyui-0.11.1-partial",
                 "reference-current", "comfyui-dynamic-vram", "blockswap-trace"):
        check(want in names, "--list names %s" % want, r)
    r = run(["--list", "--blocks", "8", "--swap", "3,5"])
    check("blockswap-3" in r.stdout and "node-5" in r.stdout, "--swap sets the block counts", r)

    r = run(["--runs", "no-such-run"], path=empty)
    check(r.returncode == 2 and "unknown run" in r.stderr, "an unknown run name: exit 2", r)
    r = run(["--dry-run", empty])
    check(r.returncode == 1 and "not a ComfyUI checkout" in r.stderr,
          "--dry-run with a folder that is not ComfyUI: exit 1 and why", r)
    r = run(["--dim", "100", "--dry-run"])
    check(r.returncode == 2, "--dim not a multiple of 128: usage error", r)

    os.rmdir(empty)
    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
