#!/usr/bin/env python3
"""Runs a paging test program through run.py under a BLOCKSWAP_VRAM_LIMIT computed
from the sizes the program itself reports (PROGRAM ARGS --print-sizes), and requires
the simulator's peak device memory under blockswap to stay within that limit.

usage: limit.py RUN_PY LEVEL [run.py options ...] -- PROGRAM [ARGS ...]

LEVEL (U = unmanaged bytes rounded up to 2 MiB, plus 2 MiB of slack):
  twice      2 x model + U       everything fits twice over
  fits       model + U           everything fits exactly
  half       model / 2 + U       half the model
  blocks:K   K x block + U       K blocks (with every managed allocation in whole
                                 2 MiB pages)
The limit is rounded up to a whole number of MiB (an even one) and given as NNNM.
"""
import subprocess, sys

MiB = 1 << 20


def up(n, a):
    return (n + a - 1) // a * a


def sizes(prog):
    out = subprocess.run(prog + ["--print-sizes"], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        if line.startswith("sizes "):
            return {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
    raise SystemExit(f"no sizes line from {prog}: {out!r}")


def limit_for(level, s):
    u = up(s["unmanaged"], 2 * MiB) + 2 * MiB
    if level == "twice":
        n = 2 * s["model_paged"] + u
    elif level == "fits":
        n = s["model_paged"] + u
    elif level == "half":
        n = s["model_paged"] // 2 + u
    elif level.startswith("blocks:"):
        n = int(level.split(":", 1)[1]) * s["block_paged"] + u
    else:
        raise SystemExit(f"unknown level {level}")
    return up(n, 2 * MiB)


def main():
    if len(sys.argv) < 4 or "--" not in sys.argv[3:]:
        raise SystemExit(__doc__)
    run_py, level = sys.argv[1], sys.argv[2]
    rest = sys.argv[3:]
    cut = rest.index("--")
    opts, prog = rest[:cut], rest[cut + 1:]
    s = sizes(prog)
    lim = limit_for(level, s)
    print(f"level {level}: {s} -> BLOCKSWAP_VRAM_LIMIT={lim // MiB}M ({lim} bytes)", flush=True)
    cmd = [sys.executable, run_py] + opts + [
        "--shim-env", f"BLOCKSWAP_VRAM_LIMIT={lim // MiB}M",
        "--max-peak", str(lim), "--"] + prog
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(main())
