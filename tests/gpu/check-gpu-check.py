#!/usr/bin/env python3
"""scripts/gpu-check without a driver (BS_DRV_LIBCUDA names a missing file, so this
holds on a GPU machine too): exit status 2 within seconds, one line that says the GPU
machine is needed, and no results written.
usage: check-gpu-check.py GPU_CHECK"""
import os, subprocess, sys, tempfile, time

with tempfile.TemporaryDirectory() as out:
    env = dict(os.environ, BS_DRV_LIBCUDA="/nonexistent/libcuda.so.1")
    t = time.monotonic()
    p = subprocess.run([sys.executable, sys.argv[1], out], capture_output=True, text=True, env=env,
                       timeout=60)
    took = time.monotonic() - t
    print(f"exit {p.returncode} in {took:.1f} s: {p.stdout.strip()}")
    ok = (p.returncode == 2 and p.stdout.count("\n") == 1
          and p.stdout.startswith("gpu-check: no NVIDIA driver/GPU: gpu-check needs the GPU machine")
          and not os.listdir(out) and took < 20)
    sys.exit(0 if ok else 1)
