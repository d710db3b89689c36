#!/usr/bin/env python3
"""gpu: runs PROGRAM on the real driver with and without the shim (via run.py),
or exits 77 when the probe finds no GPU. usage: run-gpu.py PROBE RUN_PY SHIM PROGRAM"""
import subprocess, sys

probe, run_py, shim, prog = sys.argv[1:5]
p = subprocess.run([probe], capture_output=True, text=True)
print(p.stdout, end="")
if p.returncode != 0:
    sys.exit(77)
sys.exit(subprocess.run([sys.executable, run_py, "--shim", shim, "--compare", "--",
                         prog, "16", "1024", "4"]).returncode)
