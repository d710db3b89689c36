#!/usr/bin/env python3
"""Runs a libFuzzer target for a bounded time on a copy of its committed seed corpus
(the corpus in the tree is never written) and prints its figures: executions, time,
corpus size, coverage. A crash fails the test; the input is kept in the build
directory and the message says where to commit it (tests/fuzz/crashes/NAME/) so that
it stays a regression test.

usage: run-fuzzer.py FUZZER SEED_CORPUS SECONDS
"""
import os, re, shutil, subprocess, sys, tempfile, time


def main():
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    fuzzer, seeds, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    name = os.path.basename(fuzzer).removeprefix("fuzz-")
    artifacts = os.path.join(os.path.dirname(os.path.abspath(fuzzer)), "fuzz-artifacts")
    os.makedirs(artifacts, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{name}-") as work:
        corpus = os.path.join(work, "corpus")
        shutil.copytree(seeds, corpus)
        nseeds = len(os.listdir(corpus))
        cmd = [fuzzer, f"-max_total_time={seconds}", "-print_final_stats=1", "-timeout=10",
               "-rss_limit_mb=2048", "-max_len=4096", f"-artifact_prefix={artifacts}/{name}-",
               corpus]
        t0 = time.monotonic()
        p = subprocess.run(cmd, capture_output=True, text=True,
                           env=dict(os.environ, ASAN_OPTIONS="detect_leaks=1"))
        took = time.monotonic() - t0
        ncorpus = len(os.listdir(corpus))
    out = p.stderr
    stats = dict(re.findall(r"^stat::(\w+):\s*(\d+)", out, re.M))
    cov = re.findall(r"cov: (\d+) ft: (\d+)", out)
    print(f"{name}: {stats.get('number_of_executed_units', '?')} executions in {took:.0f} s "
          f"({stats.get('average_exec_per_sec', '?')}/s), seed corpus {nseeds} inputs, "
          f"{ncorpus} after, coverage {cov[-1][0] if cov else '?'} edges, "
          f"peak RSS {stats.get('peak_rss_mb', '?')} MB")
    if p.returncode != 0:
        sys.stdout.write(out[-6000:])
        crash = re.findall(r"Test unit written to (\S+)", out)
        print(f"FAIL: {name} crashed (exit {p.returncode}); input: {crash[-1] if crash else '?'}; "
              f"fix it and commit the input under tests/fuzz/crashes/{name}/")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
