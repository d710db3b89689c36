#!/usr/bin/env python3
"""Makes every driver call of a program fail, one at a time, with blockswap preloaded,
and checks what the application sees each time.

A run without blockswap gives the reference output; a run under blockswap without
faults must match it and, through the simulator's report, lists how often each entry
point was used: every (call, n) with n up to that count is a failure point. With
--persistent, each call also fails from its first use on and from the middle on
("call:n+", a driver that has run out). Every failure point is one run with
CUDASIM_FAIL=call:n, and passes when

  - it ends within --timeout seconds (no hang) and by exit, not by a signal (no crash);
  - exit 0 with output identical to the reference (blockswap absorbed the failure or
    the failure point was not reached), or exit 2 (the program's "a CUDA call failed,
    I cleaned up") with output a line-wise prefix of the reference;
  - the simulator's report has no errors (no race, no in-use free, no illegal
    address) and no "cudasim: error" or sanitizer report is on stderr;
  - device and pinned host memory at exit are no more than in the run without faults
    (blockswap's own fixed buffers), unless the failed call was itself one that
    releases memory (then the driver kept what it refused to free).

usage: sweep.py --shim LIB [--env K=V ...] [--timeout S] [--jobs N] [--persistent]
                [--only CALL ...] -- PROGRAM [ARGS...]
"""
import argparse, concurrent.futures, json, os, re, signal, subprocess, sys, tempfile, time

RELEASES = re.compile(r"^cu(MemFree|MemRelease|MemUnmap|MemAddressFree|EventDestroy|"
                      r"StreamDestroy|ModuleUnload|CtxDestroy|DevicePrimaryCtxRelease|"
                      r"MemHostUnregister|MemPoolDestroy|GraphDestroy|GraphExecDestroy)")
SANITIZER = re.compile(r"^(==\d+==ERROR|SUMMARY: \w+Sanitizer|WARNING: ThreadSanitizer|"
                       r".*runtime error:)", re.M)


def run(cmd, env, timeout):
    """(returncode or None on timeout, stdout, stderr, report dict or None)."""
    fd, rep = tempfile.mkstemp(prefix="sweep-", suffix=".json")
    os.close(fd)
    os.unlink(rep)  # written only by a simulator that initialised
    env = dict(env, CUDASIM_REPORT=rep)
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        rc = None
    data = None
    try:
        with open(rep) as f:
            data = json.load(f)
        os.unlink(rep)
    except (OSError, ValueError):
        pass
    return rc, out, err, data


def judge(spec, call, res, ref_out, base):
    """Returns (outcome, problem or None)."""
    rc, out, err, rep = res
    if rc is None:
        return "hang", "did not end in time"
    if rc < 0:
        return "crash", f"killed by signal {-rc}"
    m = SANITIZER.search(err)
    if m:
        return "sanitizer", m.group(0)
    if re.search(r"^cudasim: error", err, re.M):
        return "driver-error", "simulator reported an error"
    if rep and rep.get("errors", 0):
        return "driver-error", f"report: {rep.get('first_error')}"
    if rc == 0:
        if out != ref_out:
            return "wrong", "exit 0 with output that differs from the reference"
        outcome = "absorbed" if rep and rep.get("injected_failures") else "not-reached"
    elif rc == 2:
        lines, ref = out.splitlines(), ref_out.splitlines()
        if lines != ref[:len(lines)]:
            return "wrong", "output before the error differs from the reference"
        if not re.search(r"^model: .* failed: ", err, re.M) and "failed" not in err:
            return "wrong", "exit 2 without saying which call failed"
        outcome = "handled"
    else:
        return "crash", f"exit status {rc}"
    if rep and not RELEASES.match(call):
        for key in ("device_bytes", "pinned_host_bytes"):
            if rep.get(key, 0) > base[key]:
                return "leak", f"{key} {rep[key]} at exit, {base[key]} without faults"
    return outcome, None


def main():
    ap = argparse.ArgumentParser(usage=__doc__)
    ap.add_argument("--shim", required=True)
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--persistent", action="store_true")
    ap.add_argument("--only", action="append", default=[])
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if not cmd:
        raise SystemExit(__doc__)
    base_env = dict(os.environ)
    base_env.pop("LD_PRELOAD", None)
    base_env.pop("CUDASIM_FAIL", None)
    # The program frees everything: leaks are worth finding here, unlike in the suites.
    if "ASAN_OPTIONS" in base_env:
        base_env["ASAN_OPTIONS"] = base_env["ASAN_OPTIONS"].replace("detect_leaks=0", "detect_leaks=1")
    base_env.update(kv.split("=", 1) for kv in a.env)
    shim_env = dict(base_env, LD_PRELOAD=a.shim)

    t0 = time.monotonic()
    rc, ref_out, err, _ = run(cmd, base_env, a.timeout)
    if rc != 0:
        print(f"FAIL: the program fails without blockswap (exit {rc}):\n{err}")
        return 1
    res = run(cmd, shim_env, a.timeout)
    rc, out, err, rep = res
    if rc != 0 or out != ref_out or not rep or rep.get("errors") or SANITIZER.search(err):
        print(f"FAIL: the run under blockswap without faults is not clean (exit {rc}):\n{err}\n{rep}")
        return 1
    base = {k: rep[k] for k in ("device_bytes", "pinned_host_bytes")}
    calls = {c: n for c, n in rep["calls"].items() if not a.only or c in a.only}
    points = [(f"{c}:{n}", c) for c, total in sorted(calls.items()) for n in range(1, total + 1)]
    if a.persistent:
        for c, total in sorted(calls.items()):
            for n in sorted({1, max(1, total // 2)}):
                points.append((f"{c}:{n}+", c))
    print(f"{len(points)} failure points in {len(calls)} entry points "
          f"({sum(calls.values())} calls without faults); at exit without faults: "
          f"{base['device_bytes']} device bytes, {base['pinned_host_bytes']} pinned bytes")

    def one(point):
        spec, call = point
        env = dict(shim_env, CUDASIM_FAIL=spec)
        # A driver that refused to free something leaves it allocated: that leak is
        # the expected outcome, not LeakSanitizer's business.
        if RELEASES.match(call) and "ASAN_OPTIONS" in env:
            env["ASAN_OPTIONS"] = env["ASAN_OPTIONS"].replace("detect_leaks=1", "detect_leaks=0")
        r = run(cmd, env, a.timeout)
        return spec, call, r, judge(spec, call, r, ref_out, base)

    counts, per_call, problems = {}, {}, []
    with concurrent.futures.ThreadPoolExecutor(max_workers=a.jobs) as ex:
        for spec, call, r, (outcome, problem) in ex.map(one, points):
            counts[outcome] = counts.get(outcome, 0) + 1
            per_call.setdefault(call, {}).setdefault(outcome, 0)
            per_call[call][outcome] += 1
            if problem:
                problems.append((spec, outcome, problem, r))
    took = time.monotonic() - t0

    print(f"{'entry point':32} {'uses':>5} {'absorbed':>9} {'handled':>8} {'not reached':>12} {'failed':>7}")
    for c in sorted(per_call):
        o = per_call[c]
        bad = sum(v for k, v in o.items() if k not in ("absorbed", "handled", "not-reached"))
        print(f"{c:32} {calls[c]:5} {o.get('absorbed', 0):9} {o.get('handled', 0):8} "
              f"{o.get('not-reached', 0):12} {bad:7}")
    for spec, outcome, problem, (rc, out, err, rep) in problems[:20]:
        print(f"---- CUDASIM_FAIL={spec}: {outcome}: {problem}\n"
              f"reproduce: CUDASIM_FAIL={spec} LD_PRELOAD={a.shim} "
              f"{' '.join(a.env)} {' '.join(cmd)}\n{err[-3000:]}")
    if problems:
        print("failing points: " + " ".join(f"{spec}({outcome})" for spec, outcome, _, _ in problems))
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    print(f"swept {len(points)} failure points in {took:.1f} s with {a.jobs} jobs: {summary}; "
          f"{len(problems)} failed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
