#!/usr/bin/env python3
"""Runs bench-launch-sim on the simulated driver without and with blockswap and prints
both. usage: bench-launch-sim.py PROGRAM SIM_DIR SHIM [ITERATIONS]"""
import os, subprocess, sys

prog, sim_dir, shim = sys.argv[1:4]
iters = sys.argv[4] if len(sys.argv) > 4 else "200000"
env = dict(os.environ, LD_LIBRARY_PATH=sim_dir, CUDASIM_RACECHECK="0")
env.pop("LD_PRELOAD", None)
print("launch path on the simulated driver (host CPU time, race checker off)")
print("-- without blockswap")
sys.stdout.flush()
subprocess.run([prog, iters], env=env, check=True)
print("-- with blockswap")
sys.stdout.flush()
subprocess.run([prog, iters], env=dict(env, LD_PRELOAD=shim, BLOCKSWAP_LOG_LEVEL="warn"), check=True)
