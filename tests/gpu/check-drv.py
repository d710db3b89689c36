#!/usr/bin/env python3
"""Checks the driver measurement programs (tests/gpu/drv-*.c) where no GPU is needed.

  check-drv.py no-driver PROGRAM...   each exits 77 with the one-line message when the
                                      driver cannot be loaded (BS_DRV_LIBCUDA points
                                      at a file that does not exist)
  check-drv.py simulator SIM_DIR PROGRAM ARGS... [--- PROGRAM ARGS...]...
                                      each runs on the simulated driver with small
                                      sizes, prints JSON lines marked simulated, the
                                      rows it promises, and leaves a clean simulator
                                      report (no races, in-use frees or faults)
"""
import json, os, subprocess, sys, tempfile

ROWS = {"drv-bandwidth": "bandwidth", "drv-vmm": "vmm", "drv-unmap-safety": "unmap-safety",
        "drv-map-stall": "map-stall"}


def no_driver(progs):
    ok = True
    env = dict(os.environ, BS_DRV_LIBCUDA="/nonexistent/libcuda.so.1")
    env.pop("LD_LIBRARY_PATH", None)
    for prog in progs:
        p = subprocess.run([prog], capture_output=True, text=True, env=env, timeout=30)
        line = p.stdout.strip()
        good = p.returncode == 77 and "no NVIDIA driver/GPU" in line and len(line.splitlines()) == 1
        print(f"{os.path.basename(prog)}: exit {p.returncode}: {line}")
        ok = ok and good
    return 0 if ok else 1


def simulator(sim_dir, runs):
    ok = True
    for cmd in runs:
        name = os.path.basename(cmd[0])
        fd, rep = tempfile.mkstemp(suffix=".json")
        os.close(fd)
        env = dict(os.environ, LD_LIBRARY_PATH=sim_dir, CUDASIM_REPORT=rep)
        env.pop("LD_PRELOAD", None)
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        with open(rep) as f:
            text = f.read()
        os.unlink(rep)
        report = json.loads(text) if text.strip() else {}
        rows = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
        kinds = [r.get("kind") for r in rows]
        problems = []
        if p.returncode != 0:
            problems.append(f"exit {p.returncode}")
        if not rows or rows[0].get("kind") != "device" or rows[0].get("simulated") is not True:
            problems.append("the first line is not a device line marked simulated")
        if ROWS.get(name) not in kinds:
            problems.append(f"no '{ROWS.get(name)}' row")
        if report.get("errors", 1) != 0:
            problems.append(f"simulator report: {report.get('errors')} errors, first: {report.get('first_error')}")
        for r in rows:
            if r.get("verdict") not in (None, "safe"):
                problems.append(f"verdict {r['verdict']}")
        print(f"{name}: {len(rows)} JSON lines, kinds {sorted(set(kinds))}"
              + (": FAIL: " + "; ".join(problems) if problems else ": ok"))
        if problems:
            sys.stdout.write(p.stdout[-2000:] + p.stderr[-2000:])
            ok = False
    return 0 if ok else 1


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "no-driver":
        return no_driver(sys.argv[2:])
    if len(sys.argv) > 3 and sys.argv[1] == "simulator":
        runs, cur = [], []
        for arg in sys.argv[3:]:
            if arg == "---":
                runs.append(cur)
                cur = []
            else:
                cur.append(arg)
        runs.append(cur)
        return simulator(sys.argv[2], [r for r in runs if r])
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main())
