#!/usr/bin/env python3
"""Runs random.c for many seeds through run.py (each seed's output under blockswap
compared with the plain run) and reports every failing seed with the command that
reproduces it.

usage: random.py RUN_PY FIRST_SEED COUNT [run.py options ...] -- PROGRAM [ARGS ...]
Each run is PROGRAM SEED ARGS.
"""
import subprocess, sys, time


def main():
    if len(sys.argv) < 5 or "--" not in sys.argv[4:]:
        raise SystemExit(__doc__)
    run_py, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rest = sys.argv[4:]
    cut = rest.index("--")
    opts, prog = rest[:cut], rest[cut + 1:]
    failed = []
    t0 = time.monotonic()
    for seed in range(first, first + count):
        cmd = [sys.executable, run_py] + opts + ["--", prog[0], str(seed)] + prog[1:]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            failed.append(seed)
            sys.stdout.write(f"---- seed {seed} FAILED: {' '.join(cmd)}\n")
            sys.stdout.write(p.stderr[-4000:])
            sys.stdout.write("\n")
    took = time.monotonic() - t0
    print(f"{count - len(failed)}/{count} seeds passed in {took:.1f} s"
          + (f"; failing seeds: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
