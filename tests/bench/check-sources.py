#!/usr/bin/env python3
"""bench-blocks loads the same weights from each --source: pinned, heap and file give
the same final checksum, alone on the simulated driver and with blockswap preloaded
(all four blocks swapped, so weights page in and out every step), and each run prints its memory lines with the
simulator's counters. Behaviour, not timing: a test, though bench-blocks is a benchmark.

usage: check-sources.py PROG SIM_DIR SHIM"""
import os, re, subprocess, sys

prog, sim_dir, shim = sys.argv[1:4]
sums = {}
for preload in (False, True):
    for source in ("pinned", "heap", "file"):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BLOCKSWAP_", "CUDASIM_"))}
        env.update(LD_LIBRARY_PATH=sim_dir, CUDASIM_VRAM="1G")
        if preload:
            env.update(LD_PRELOAD=shim, BLOCKSWAP_BLOCKS_TO_SWAP="4", BLOCKSWAP_LOG_LEVEL="warn")
        p = subprocess.run([prog, "--blocks", "4", "--d", "1024", "--steps", "2", "--source", source],
                           env=env, capture_output=True, text=True)
        name = "%s%s" % (source, " under blockswap" if preload else "")
        if p.returncode != 0:
            sys.exit("%s: exit %d\n%s%s" % (name, p.returncode, p.stdout, p.stderr))
        m = re.search(r"^checksum=(0x[0-9a-f]+)", p.stdout, re.M)
        mem = re.findall(r"^mem when=(\w+) .*sim_pinned=\d+", p.stdout, re.M)
        want = ["mapped", "load", "end"] if source == "file" else ["load", "end"]
        if not m or mem != want:
            sys.exit("%s: no checksum or memory lines %s (got %s):\n%s" % (name, want, mem, p.stdout))
        if preload and ("shim_stats=1" not in p.stdout or
                        not re.search(r"^step 1 .*evictions=[1-9]", p.stdout, re.M)):
            sys.exit("%s: blockswap is not preloaded, or paged nothing out:\n%s" % (name, p.stdout))
        sums[name] = m.group(1)
        print("%-26s checksum %s" % (name, m.group(1)))
if len(set(sums.values())) != 1:
    sys.exit("checksums differ between sources: %s" % sums)
