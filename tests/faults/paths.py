#!/usr/bin/env python3
"""BLOCKSWAP_LOG_FILE pointed at what an attacker (or an accident) can put in a shared
directory: the application still runs to the same output, within a time limit, and
the log goes to stderr with one warning. Cases: a FIFO with no reader and one with a
reader that never reads (either would block open() or write() for good), a
directory, a symlink to a file that does not exist yet (it must not be created),
and the normal case: a new file, created 0600 under umask 0, that gets the lines.

usage: paths.py SHIM PROGRAM [ARGS...]
"""
import os, stat, subprocess, sys, tempfile

TIMEOUT = 60


def run(cmd, env_extra):
    env = dict(os.environ, **env_extra)
    env.pop("LD_PRELOAD", None)
    if "LD_PRELOAD" in env_extra:
        env["LD_PRELOAD"] = env_extra["LD_PRELOAD"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT,
                          preexec_fn=lambda: os.umask(0))


def main():
    shim, cmd = sys.argv[1], sys.argv[2:]
    ref = run(cmd, {})
    if ref.returncode != 0:
        sys.exit(f"FAIL: the program fails without blockswap:\n{ref.stderr}")
    failures = 0
    with tempfile.TemporaryDirectory() as d:
        fifo = os.path.join(d, "fifo")
        os.mkfifo(fifo)
        fifo_read = os.path.join(d, "fifo-read")
        os.mkfifo(fifo_read)
        reader = os.open(fifo_read, os.O_RDONLY | os.O_NONBLOCK)  # opened, never read
        target = os.path.join(d, "planted-target")
        link = os.path.join(d, "link")
        os.symlink(target, link)
        new = os.path.join(d, "new.log")
        cases = [("fifo-without-reader", fifo, False), ("fifo-with-idle-reader", fifo_read, False),
                 ("directory", d, False), ("dangling-symlink", link, False), ("new-file", new, True)]
        for name, path, usable in cases:
            try:
                p = run(cmd, {"LD_PRELOAD": shim, "BLOCKSWAP_LOG_FILE": path})
            except subprocess.TimeoutExpired:
                print(f"FAIL {name}: the application hung for {TIMEOUT} s")
                failures += 1
                continue
            ok = p.returncode == 0 and p.stdout == ref.stdout
            warned = "cannot open BLOCKSWAP_LOG_FILE" in p.stderr
            if usable:
                mode = stat.S_IMODE(os.stat(path).st_mode)
                with open(path) as f:
                    lines = f.read()
                ok = ok and not warned and mode == 0o600 and "blockswap: " in lines
                detail = f"mode {oct(mode)}, {lines.count(chr(10))} lines in the file"
            else:
                ok = ok and warned and "blockswap: " in p.stderr and not os.path.exists(target)
                detail = "refused, logged to stderr" if ok else p.stderr[-2000:]
            print(f"{'ok' if ok else 'FAIL'} {name}: exit {p.returncode}, {detail}")
            failures += not ok
        os.close(reader)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
