#!/usr/bin/env python3
"""gpu: tests/paging/random.c on the real driver, or exit 77 when the probe finds no GPU.

For each seed:
1. random.c on the GPU with and without blockswap (run.py --compare, the shim under
   BLOCKSWAP_VRAM_LIMIT): identical output, as on the simulator;
2. random-exact.c on the GPU and on the simulated driver: identical output, line for
   line (the simulator computes on the CPU with the arithmetic the CUDA kernels use).

usage: run-random-gpu.py --probe PROBE --run-py RUN_PY --shim LIB --gpu-random PROG
           --gpu-exact PROG --sim-exact PROG --sim-dir DIR [--first N] [--seeds N]
           [--ops N] [--limit SIZE] [--json FILE] [--allow-simulated]
The GPU runs never see SIM_DIR in LD_LIBRARY_PATH (meson puts it there for the
simulator's program); --allow-simulated keeps it, so that CI can run the whole
harness with the simulated driver standing in for the GPU.
Prints one line per seed and check, then a JSON summary (also written to --json).
"""
import argparse, json, os, subprocess, sys, time


def first_difference(a, b):
    la, lb = a.splitlines(), b.splitlines()
    for i, (x, y) in enumerate(zip(la, lb)):
        if x != y:
            return i + 1, x, y
    if len(la) != len(lb):
        n = min(len(la), len(lb))
        return n + 1, la[n] if n < len(la) else "<end>", lb[n] if n < len(lb) else "<end>"
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in ("probe", "run-py", "shim", "gpu-random", "gpu-exact", "sim-exact", "sim-dir"):
        ap.add_argument("--" + name, required=True)
    ap.add_argument("--first", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--ops", type=int, default=300)
    ap.add_argument("--limit", default="28M", help="BLOCKSWAP_VRAM_LIMIT of the shim's runs")
    ap.add_argument("--json")
    ap.add_argument("--allow-simulated", action="store_true")
    a = ap.parse_args()

    gpu_env = dict(os.environ)
    if not a.allow_simulated:
        sim = os.path.realpath(a.sim_dir)
        keep = [d for d in gpu_env.get("LD_LIBRARY_PATH", "").split(":")
                if d and os.path.realpath(d) != sim]
        gpu_env["LD_LIBRARY_PATH"] = ":".join(keep)
    p = subprocess.run([a.probe], capture_output=True, text=True, env=gpu_env)
    print(p.stdout, end="")
    if p.returncode != 0:
        return 77
    t0 = time.monotonic()
    seeds, failed = [], 0
    for seed in range(a.first, a.first + a.seeds):
        res = {"seed": seed}
        cmd = [sys.executable, a.run_py, "--shim", a.shim, "--compare",
               "--shim-env", "BLOCKSWAP_VRAM_LIMIT=" + a.limit, "--",
               a.gpu_random, str(seed), str(a.ops)]
        q = subprocess.run(cmd, capture_output=True, text=True, env=gpu_env)
        res["shim_identical"] = q.returncode == 0
        if q.returncode != 0:
            print(f"seed {seed}: FAIL: output under blockswap differs on the GPU: {' '.join(cmd)}")
            print(q.stderr[-3000:])
        gpu = subprocess.run([a.gpu_exact, str(seed), str(a.ops)], capture_output=True, text=True,
                             env=gpu_env)
        env = dict(os.environ, LD_LIBRARY_PATH=a.sim_dir)
        env.pop("LD_PRELOAD", None)
        sim = subprocess.run([a.sim_exact, str(seed), str(a.ops)], capture_output=True, text=True,
                             env=env)
        res["gpu_exit"], res["sim_exit"] = gpu.returncode, sim.returncode
        diff = first_difference(gpu.stdout, sim.stdout)
        res["sim_identical"] = gpu.returncode == 0 and sim.returncode == 0 and diff is None
        res["lines"] = len(gpu.stdout.splitlines())
        if not res["sim_identical"]:
            if diff:
                res["first_difference"] = {"line": diff[0], "gpu": diff[1], "sim": diff[2]}
            print(f"seed {seed}: FAIL: GPU and simulator differ (exit {gpu.returncode}/{sim.returncode})"
                  + (f" first at line {diff[0]}:\n  gpu: {diff[1]}\n  sim: {diff[2]}" if diff else "")
                  + "\n  (a NaN from random.c's raw byte patterns is one known cause: a GPU and a"
                  " CPU may write different NaN bits)")
            print(gpu.stderr[-1500:] + sim.stderr[-1500:])
        if res["shim_identical"] and res["sim_identical"]:
            print(f"seed {seed}: identical with and without blockswap on the GPU, and to the "
                  f"simulator ({res['lines']} lines)")
        else:
            failed += 1
        seeds.append(res)
    summary = {"kind": "random-on-gpu", "seeds": len(seeds), "failed": failed, "ops": a.ops,
               "limit": a.limit, "seconds": round(time.monotonic() - t0, 1), "results": seeds}
    print(json.dumps({k: v for k, v in summary.items() if k != "results"}))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(summary, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
