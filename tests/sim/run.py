#!/usr/bin/env python3
"""Runs a test program with and without libblockswap.so preloaded and checks what a
user would: identical stdout, exit status, and the expected lines on stderr.

usage: run.py --shim LIB [--compare] [--env K=V ...] [--shim-env K=V ...]
              [--expect-stderr RE ...] [--forbid-stderr RE ...] [--report]
              [--max-peak BYTES] -- PROGRAM [ARGS...]

--env applies to both runs, --shim-env only to the run under blockswap (for example a
BLOCKSWAP_VRAM_LIMIT or a CUDASIM_VRAM that the plain run would not fit in).
--max-peak fails when the simulator's peak_device_bytes under blockswap exceeds BYTES.
"""
import argparse, json, os, re, subprocess, sys, tempfile


def run(cmd, shim, env_extra, report):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if shim:
        env["LD_PRELOAD"] = shim
    env.update(env_extra)
    rep = None
    if report:
        fd, rep = tempfile.mkstemp(suffix=".json")
        os.close(fd)
        env["CUDASIM_REPORT"] = rep
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    data = None
    if rep:
        with open(rep) as f:
            text = f.read()
        os.unlink(rep)
        data = json.loads(text) if text.strip() else None
    return p, data


def name_count(spec):
    name, sep, most = spec.partition("=")
    if not name or not sep or not most.isdigit():
        raise argparse.ArgumentTypeError(f"{spec!r}: expected NAME=N, e.g. cuCtxSynchronize=1")
    return name, int(most)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shim", required=True)
    ap.add_argument("--compare", action="store_true")
    ap.add_argument("--report", action="store_true", help="require a clean CUDASIM_REPORT")
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--shim-env", action="append", default=[])
    ap.add_argument("--max-peak", type=int)
    ap.add_argument("--max-d2h", type=int, help="fail when the simulator's d2h_bytes exceed this")
    ap.add_argument("--max-pinned", type=int,
                    help="fail when the simulator's peak_pinned_host_bytes exceed this")
    ap.add_argument("--max-calls", action="append", default=[], type=name_count,
                    help="NAME=N: fail when the simulator counted more than N calls of NAME")
    ap.add_argument("--expect-stderr", action="append", default=[])
    ap.add_argument("--forbid-stderr", action="append", default=[])
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    env_extra = dict(kv.split("=", 1) for kv in a.env)
    shim_env = dict(env_extra, **dict(kv.split("=", 1) for kv in a.shim_env))
    ok = True

    p, rep = run(cmd, a.shim, shim_env,
                 a.report or a.max_peak is not None or a.max_d2h is not None or
                 a.max_pinned is not None or
                 bool(a.max_calls))
    sys.stdout.write(p.stdout)
    sys.stderr.write(p.stderr)
    if p.returncode != 0:
        print(f"FAIL: exit status {p.returncode} under blockswap", file=sys.stderr)
        ok = False
    for rx in a.expect_stderr:
        if not re.search(rx, p.stderr, re.M):
            print(f"FAIL: stderr lacks /{rx}/", file=sys.stderr)
            ok = False
    for rx in a.forbid_stderr + [r"^cudasim: error"]:
        if re.search(rx, p.stderr, re.M):
            print(f"FAIL: stderr has /{rx}/", file=sys.stderr)
            ok = False
    if a.report:
        if not rep or rep.get("errors", 1) != 0:
            print(f"FAIL: simulator report: {rep}", file=sys.stderr)
            ok = False
    if a.max_peak is not None:
        peak = rep.get("peak_device_bytes") if rep else None
        if peak is None or peak > a.max_peak:
            print(f"FAIL: peak_device_bytes {peak} exceeds {a.max_peak}", file=sys.stderr)
            ok = False
        else:
            print(f"peak_device_bytes {peak} <= {a.max_peak}")
    if a.max_d2h is not None:
        d2h = rep.get("d2h_bytes") if rep else None
        if d2h is None or d2h > a.max_d2h:
            print(f"FAIL: d2h_bytes {d2h} exceeds {a.max_d2h}", file=sys.stderr)
            ok = False
        else:
            print(f"d2h_bytes {d2h} <= {a.max_d2h}")
    if a.max_pinned is not None:
        pinned = rep.get("peak_pinned_host_bytes") if rep else None
        if pinned is None or pinned > a.max_pinned:
            print(f"FAIL: peak_pinned_host_bytes {pinned} exceeds {a.max_pinned}", file=sys.stderr)
            ok = False
        else:
            print(f"peak_pinned_host_bytes {pinned} <= {a.max_pinned}")
    for name, most in a.max_calls:
        got = (rep or {}).get("calls", {}).get(name, 0)
        if got > most:
            print(f"FAIL: {got} calls of {name}, at most {most} expected", file=sys.stderr)
            ok = False
        else:
            print(f"{got} calls of {name} <= {most}")
    if a.compare:
        q, _ = run(cmd, None, env_extra, False)
        if q.returncode != 0 or q.stdout != p.stdout:
            print("FAIL: output differs without blockswap:\n" + q.stdout + q.stderr,
                  file=sys.stderr)
            ok = False
        else:
            print("identical output with and without blockswap")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
