#!/usr/bin/env python3
"""blockswapctl against a running program under blockswap (the simulated driver).

usage: test-control.py --ctl BLOCKSWAPCTL --shim LIB SCENARIO -- PROGRAM

Scenarios (each a meson test): commands, malformed, other-user, symlink, fallback,
disabled, client (what a person types and reads). The program (ctl-model.c) reads commands on stdin; every checksum it prints
under blockswap, with blockswapctl acting on it, must equal the plain run's."""
import argparse, json, os, re, shutil, socket, stat, subprocess, sys, tempfile, time

MiB = 1 << 20
SKIP = 77


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)
    print("ok:", what)


class Prog:
    """The test program, driven line by line."""

    def __init__(self, a, xdg, shim=True, env=None, args=(), report_dir=None):
        self.tmp = tempfile.mkdtemp(prefix="bs-ctl-prog-")
        os.chmod(self.tmp, 0o755)
        e = dict(os.environ)
        e.pop("LD_PRELOAD", None)
        e.pop("XDG_RUNTIME_DIR", None)
        if shim:
            e["LD_PRELOAD"] = a.shim
            self.report = os.path.join(report_dir or self.tmp, "report.json")
            e["CUDASIM_REPORT"] = self.report
        else:
            self.report = None
        if xdg:
            e["XDG_RUNTIME_DIR"] = xdg
        e.setdefault("BLOCKSWAP_VRAM_LIMIT", "150M")
        e.setdefault("BLOCKSWAP_BLOCKS_TO_SWAP", "4")
        e.update(env or {})
        self.errpath = os.path.join(self.tmp, "stderr")
        self.err = open(self.errpath, "w")
        self.p = subprocess.Popen([a.prog, *args], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=self.err, text=True, env=e)
        self.pid = self.p.pid
        self.outputs = []
        line = self.p.stdout.readline()
        if line.strip() != "ready":
            raise Fail("the program did not start: %r\n%s" % (line, self.stderr()))

    def cmd(self, c):
        self.p.stdin.write(c + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline().strip()
        if not line:
            raise Fail("the program died at %r:\n%s" % (c, self.stderr()))
        if not c.startswith("stats"):
            self.outputs.append(line)
        return line

    def stats(self):
        f = self.cmd("stats").split()
        return dict(zip(f[1::2], (int(v) for v in f[2::2])))

    def stderr(self):
        with open(self.errpath) as f:
            return f.read()

    def quit(self):
        self.p.stdin.write("quit\n")
        self.p.stdin.close()
        rc = self.p.wait(timeout=60)
        self.err.close()
        sys.stderr.write(self.stderr())
        rep = None
        if self.report and os.path.exists(self.report):
            with open(self.report) as f:
                text = f.read()
            rep = json.loads(text) if text.strip() else None
        shutil.rmtree(self.tmp, ignore_errors=True)
        return rc, rep

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def ctl(a, *args, xdg=None, ok=True, json_status=True):
    """Runs blockswapctl; returns (exit status, JSON answer or None, stderr). status is
    asked for as JSON (--json) unless json_status is False; then the answer is the text."""
    if json_status and "status" in args:
        args = ("--json",) + args
    e = dict(os.environ)
    e.pop("LD_PRELOAD", None)
    e.pop("XDG_RUNTIME_DIR", None)
    if xdg:
        e["XDG_RUNTIME_DIR"] = xdg
    r = subprocess.run([sys.executable, a.ctl, *args], capture_output=True, text=True,
                       env=e, timeout=120)
    ans = None
    try:
        ans = json.loads(r.stdout) if r.stdout.strip().startswith("{") else None
    except ValueError:
        pass
    print("$ blockswapctl %s -> %d %s %s" % (" ".join(args), r.returncode, r.stdout.strip()[:400],
                                              r.stderr.strip()))
    if not json_status:
        return r.returncode, r.stdout, r.stderr
    if ok and (r.returncode != 0 or not ans or not ans.get("ok")):
        raise Fail("blockswapctl %s failed: %s %s" % (" ".join(args), r.stdout, r.stderr))
    return r.returncode, ans, r.stderr


def raw(path, data, shut=True, timeout=30):
    """Sends raw bytes on the control socket; returns the answer's bytes."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    try:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed before reading it all
    out = b""
    try:
        while True:
            c = s.recv(65536)
            if not c:
                break
            out += c
    except ConnectionResetError:
        pass
    s.close()
    return out


def reference(a, script):
    """The same commands without blockswap: what every output must equal."""
    p = Prog(a, None, shim=False)
    for c in script:
        p.cmd(c)
    rc, _ = p.quit()
    if rc != 0:
        raise Fail("the plain run failed")
    return p.outputs


def finish(a, p, script, max_peak=None):
    rc, rep = p.quit()
    check(rc == 0, "the program exits 0 under blockswap")
    check(rep is not None and rep.get("errors", 1) == 0,
          "the simulator reports no errors (races, in-use frees, illegal addresses)")
    if max_peak:
        check(rep["peak_device_bytes"] <= max_peak,
              "peak VRAM %d within the limit %d" % (rep["peak_device_bytes"], max_peak))
    ref = reference(a, script)
    check(p.outputs == ref, "every checksum equals the run without blockswap:\n  %s\n  %s"
          % (p.outputs, ref))


def blocks_of(st):
    stacks = [s for s in st["stacks"] if s["active"]]
    return stacks[0] if stacks else None


def scenario_commands(a, xdg):
    script = []
    p = Prog(a, xdg)
    try:
        def run(c):
            script.append(c)
            return p.cmd(c)

        run("steps 2")
        d = os.path.join(xdg, "blockswap")
        sock = os.path.join(d, "%d.sock" % p.pid)
        ds, ss = os.lstat(d), os.lstat(sock)
        check(stat.S_ISDIR(ds.st_mode) and stat.S_IMODE(ds.st_mode) == 0o700 and
              ds.st_uid == os.geteuid(), "the socket directory is ours, mode 0700")
        check(stat.S_ISSOCK(ss.st_mode) and stat.S_IMODE(ss.st_mode) == 0o600 and
              ss.st_uid == os.geteuid(), "the socket is ours, mode 0600")

        rc, _, _ = ctl(a, "--version", ok=False)
        check(rc == 0, "--version")
        r = subprocess.run([sys.executable, a.ctl, "list"], capture_output=True, text=True,
                           env=dict(os.environ, XDG_RUNTIME_DIR=xdg))
        check(r.returncode == 0 and str(p.pid) in r.stdout, "list names the process")
        # A stale socket of a process that is gone is cleaned by the client.
        dead = subprocess.Popen(["true"])
        dead.wait()
        stale = os.path.join(d, "%d.sock" % dead.pid)
        s = socket.socket(socket.AF_UNIX)
        s.bind(stale)
        s.close()

        _, st, _ = ctl(a, "status", xdg=xdg)  # found alone, without --pid
        check(not os.path.exists(stale), "the stale socket of a dead pid was removed")
        check(st["pid"] == p.pid, "status without --pid finds the one process")
        check(st["blocks"] == 8 and st["blocks_swapped"] == 4, "8 blocks, 4 swapped")
        check(st["vram"]["limit"] == 150 * MiB, "the VRAM limit")
        check(st["managed"]["allocations"] == 35, "35 managed allocations")
        check(st["traced"] is False and st["stall_ms"] is None,
              "stall time is null without BLOCKSWAP_TRACE")
        check(st["moved"]["page_in_bytes"] > 0, "bytes moved are reported")
        bl = blocks_of(st)
        check(bl and bl["blocks"] == 8 and len(bl["per_block"]) == 8 and
              bl["blocks_swapped"] == 4 and bl["window"] == 2, "the active stack")
        # BLOCKSWAP_SWAP_PLACEMENT=spread (the default): one block in two.
        check(all(b["resident"] and not b["swapped"] for b in bl["per_block"][0::2]),
              "blocks 0, 2, 4, 6 are kept resident")
        check(all(b["swapped"] for b in bl["per_block"][1::2]), "blocks 1, 3, 5, 7 are swapped")
        check(st["vram"]["resident"] > 0 and st["host"]["backing"] > 0, "memory in use")

        # trim: resident memory that stays resident gives its host copy up.
        _, t, _ = ctl(a, "--pid", str(p.pid), "trim", xdg=xdg)
        check(t["host_freed_bytes"] > 0 and
              t["host_backing_bytes"] == st["host"]["backing"] - t["host_freed_bytes"],
              "trim freed %d bytes of host backing" % t["host_freed_bytes"])
        # Swapped blocks reuse each other's physical memory: what is pooled between
        # steps, trim gives back.
        check(t["vram_returned_bytes"] == st["vram"]["pooled"],
              "trim gave back the %d pooled bytes" % st["vram"]["pooled"])
        _, t2, _ = ctl(a, "--pid", str(p.pid), "trim", xdg=xdg)
        check(t2["vram_returned_bytes"] == 0, "a second trim finds the pool empty")
        _, st2, _ = ctl(a, "--pid", str(p.pid), "status", xdg=xdg)
        check(st2["host"]["backing"] == t["host_backing_bytes"], "status shows less host backing")
        run("verify")

        # evict: everything but the pinned buffer leaves VRAM; trimmed weights are
        # copied back first (their host copies are gone), changed ones too.
        _, e, _ = ctl(a, "--pid", str(p.pid), "evict", xdg=xdg)
        check(e["pinned"] == 1 and e["pinned_bytes"] == 2 * MiB and "pinned_reason" in e,
              "evict leaves the pinned buffer and says why")
        check(e["evicted"] > 0 and e["failed"] == 0, "evict moved %d allocations" % e["evicted"])
        check(e["resident_bytes"] == 2 * MiB, "only pinned memory stays resident")
        _, st3, _ = ctl(a, "--pid", str(p.pid), "status", xdg=xdg)
        check(st3["vram"]["resident"] == 2 * MiB, "status: resident is the pinned 2 MiB")
        check(st3["vram"]["pooled"] == 0, "evict gives the VRAM back to the driver, not the pool")
        check(all(not b["resident"] and b["resident_bytes"] == 0
                  for b in blocks_of(st3)["per_block"]), "no block is resident")
        check(st3["host"]["backing"] >= st["host"]["backing"] - 2 * MiB,
              "evicted contents are in host backing")
        run("steps 2")
        run("verify")

        # set blocks-to-swap: waits for the next step.
        _, s6, _ = ctl(a, "--pid", str(p.pid), "set", "blocks-to-swap", "6", xdg=xdg)
        check(s6["blocks_to_swap"] == 6 and s6["applies"] == "next step", "set 6 is pending")
        _, st4, _ = ctl(a, "--pid", str(p.pid), "status", xdg=xdg)
        check(st4["blocks_to_swap_pending"] == 6 and st4["blocks_swapped"] == 4,
              "status shows it pending, 4 still swapped")
        check(p.stats()["swapped"] == 4, "no step yet: 4 swapped")
        run("steps 1")
        check(p.stats()["swapped"] == 6, "the next step swaps 6")
        _, st5, _ = ctl(a, "--pid", str(p.pid), "status", xdg=xdg)
        bl = blocks_of(st5)
        check(st5["blocks_swapped"] == 6 and st5["blocks_to_swap_pending"] is None and
              [b["swapped"] for b in bl["per_block"]] == ([False] + [True] * 3) * 2,
              "status: 6 swapped, spread: all but blocks 0 and 4")
        check(re.search(r"blockswapctl set blocks-to-swap, from this step: stack 0: 8 blocks .*"
                        r"swapping 6 spread evenly", p.stderr()), "the log says so")

        # A k that does not fit gets the nearest that does, with choose_k's warning.
        ctl(a, "--pid", str(p.pid), "set", "blocks-to-swap", "1", xdg=xdg)
        run("steps 1")
        check(p.stats()["swapped"] == 3, "1 does not fit 150M: 3 swapped")
        check(re.search(r"warning: BLOCKSWAP_BLOCKS_TO_SWAP=1 needs 160.0 MiB of VRAM for "
                        r"weights, but the limit leaves .* using 3, the nearest that fits",
                        p.stderr()), "the nearest-that-fits warning")
        _, sa, _ = ctl(a, "--pid", str(p.pid), "set", "blocks-to-swap", "auto", xdg=xdg)
        check(sa["blocks_to_swap"] == "auto", "set auto")
        run("steps 1")
        _, st6, _ = ctl(a, "--pid", str(p.pid), "status", xdg=xdg)
        check(st6["blocks_swapped"] == 3 and st6["blocks_to_swap_setting"] == "auto",
              "auto: the fewest that fit, 3")
        check(st6["prefetch_setting"] == 1 and blocks_of(st6)["window"] == 2,
              "prefetch 1 by default: a window of 2")

        # set prefetch: blocks ahead, from the next step, like blocks-to-swap.
        _, sp, _ = ctl(a, "--pid", str(p.pid), "set", "prefetch", "0", xdg=xdg)
        check(sp["prefetch"] == 0 and sp["window"] == 1 and sp["applies"] == "next step",
              "set prefetch 0 is pending")
        _, st7, _ = ctl(a, "--pid", str(p.pid), "status", xdg=xdg)
        check(st7["prefetch_pending"] == 0 and blocks_of(st7)["window"] == 2,
              "status shows it pending, the window still 2")
        run("steps 1")
        _, st8, _ = ctl(a, "--pid", str(p.pid), "status", xdg=xdg)
        check(st8["prefetch_setting"] == 0 and st8["prefetch_pending"] is None and
              blocks_of(st8)["window"] == 1, "the next step has a window of 1")
        check(re.search(r"blockswapctl set prefetch, from this step: stack 0: 8 blocks .*window 1 "
                        r"\(0 blocks ahead\)", p.stderr()), "the log says so")
        run("verify")
        ctl(a, "--pid", str(p.pid), "set", "prefetch", "1", xdg=xdg)
        run("steps 1")

        # set vram-limit: now; a lower limit evicts what no longer fits at once, and the
        # next step chooses k again (auto: more blocks swapped).
        _, st9, _ = ctl(a, "--pid", str(p.pid), "status", xdg=xdg)
        used = st9["vram"]["used"]
        check(used > 110 * MiB, "%d bytes in VRAM before" % used)
        _, sl, _ = ctl(a, "--pid", str(p.pid), "set", "vram-limit", "110M", xdg=xdg)
        check(sl["vram_limit"] == 110 * MiB and sl["old_limit"] == 150 * MiB and
              sl["applies"] == "now", "set vram-limit 110M: now")
        check(sl["evicted"] > 0 and sl["evicted_bytes"] + sl["pool_released_bytes"] >=
              used - 110 * MiB and sl["used_bytes"] <= 110 * MiB,
              "it evicted %d bytes at once" % sl["evicted_bytes"])
        _, st10, _ = ctl(a, "--pid", str(p.pid), "status", xdg=xdg)
        check(st10["vram"]["limit"] == 110 * MiB and st10["vram"]["used"] <= 110 * MiB,
              "status: the new limit, and within it")
        check(re.search(r"blockswapctl set vram-limit 110M: the limit is 110.0 MiB \(was "
                        r"150.0 MiB\); [1-9]\d* allocations \(.*\) evicted", p.stderr()),
              "the log says what was evicted")
        run("steps 1")
        _, st11, _ = ctl(a, "--pid", str(p.pid), "status", xdg=xdg)
        check(st11["blocks_swapped"] > 3, "the next step swaps more: %d" % st11["blocks_swapped"])
        check(re.search(r"blockswapctl set vram-limit, from this step: stack 0: 8 blocks", p.stderr()),
              "k chosen again against the new limit")
        run("verify")
        # Refused: 0, and below what cannot be evicted (the pinned 2 MiB and what
        # blockswap does not manage); the limit stays.
        for v, why in [("0", "vram-limit 0 leaves no VRAM at all"),
                       ("2M", "that cannot be evicted (2.0 MiB pinned, "),
                       ("2M", "the limit stays 110.0 MiB"),
                       ("12X", "bad value for vram-limit")]:
            rc, _, err = ctl(a, "--pid", str(p.pid), "set", "vram-limit", v, xdg=xdg, ok=False)
            check(rc == 1 and why in err, "vram-limit %s refused: %s" % (v, err.strip()))
        _, st12, _ = ctl(a, "--pid", str(p.pid), "status", xdg=xdg)
        check(st12["vram"]["limit"] == 110 * MiB, "the limit stays 110M")
        ctl(a, "--pid", str(p.pid), "set", "vram-limit", "150M", xdg=xdg)

        # A forked child's exit leaves the parent's socket alone.
        run("fork")
        check(os.path.exists(sock), "the socket survives a child's exit")
        ctl(a, "--pid", str(p.pid), "status", xdg=xdg)
        run("steps 1")
        run("verify")
        finish(a, p, script, max_peak=150 * MiB)
        check(not os.path.exists(sock), "the socket is removed at exit")
    finally:
        p.kill()


def scenario_malformed(a, xdg):
    script = ["steps 1"]
    p = Prog(a, xdg)
    try:
        p.cmd("steps 1")
        sock = os.path.join(xdg, "blockswap", "%d.sock" % p.pid)
        # The pager may still be moving the window after the step (slowly under a
        # sanitizer): the baseline is taken once two statuses agree.
        _, before, _ = ctl(a, "--pid", str(p.pid), "status", xdg=xdg)
        for _ in range(50):
            time.sleep(0.1)
            _, again, _ = ctl(a, "--pid", str(p.pid), "status", xdg=xdg)
            if again["moved"] == before["moved"] and \
                    again["vram"]["resident"] == before["vram"]["resident"]:
                break
            before = again
        bad = [
            (b"\x00\xff\x01status\n", "printable ASCII"),
            (b"status\r\n", "printable ASCII"),
            (b"evict\x00\n", "printable ASCII"),
            (b"a" * 300 + b"\n", "too long"),
            (b"b" * 100000, "too long"),
            (b"\n", "empty"),
            (b"      \n", "empty"),
            (b"", "empty"),
            (b"status please\n", "unknown request"),
            (b"reboot\n", "unknown request"),
            (b"set blocks-to-swap\n", "unknown request"),
            (b"set blocks-to-swap -1\n", "bad value"),
            (b"set blocks-to-swap 100001\n", "bad value"),
            (b"set blocks-to-swap 99999999999999999999999999\n", "bad value"),
            (b"set blocks-to-swap 3x\n", "bad value"),
            (b"set window 3\n", "unknown setting"),
            (b"a b c d e f\n", "too many words"),
            (b'"}{\\\n', "unknown request"),
        ]
        for data, why in bad:
            out = raw(sock, data)
            try:
                ans = json.loads(out)
            except ValueError:
                raise Fail("answer to %r is not JSON: %r" % (data[:40], out))
            check(ans.get("ok") is False and why in ans.get("error", ""),
                  "%r refused: %s" % (data[:40], ans.get("error")))
            check(out.count(b"\n") == 1 and out.endswith(b"\n"), "one line")
        # A client that connects and sends nothing does not stop the server.
        idle = socket.socket(socket.AF_UNIX)
        idle.connect(sock)
        ctl(a, "--pid", str(p.pid), "status", xdg=xdg)
        idle.settimeout(30)
        late = idle.recv(4096)
        idle.close()
        check(late == b"" or b"no request line" in late, "the idle client was timed out")
        # Anything after the first line is ignored; the first line is served.
        ans = json.loads(raw(sock, b"ping\nevict\n"))
        check(ans["ok"] and ans["command"] == "ping", "only the first line counts")
        _, after, _ = ctl(a, "--pid", str(p.pid), "status", xdg=xdg)
        check(after["blocks_swapped"] == 4 and after["blocks_to_swap_pending"] is None and
              after["moved"] == before["moved"] and
              after["vram"]["resident"] == before["vram"]["resident"],
              "nothing else happened: same k, nothing moved")
        rc, _, err = ctl(a, "--pid", str(p.pid), "frobnicate", xdg=xdg, ok=False)
        check(rc == 2 and "unknown command" in err, "the client refuses unknown commands")
        rc, _, err = ctl(a, "--pid", "1", "status", xdg=xdg, ok=False)
        check(rc == 1 and "no blockswap process 1" in err, "a pid without a socket is named")
        script.append("steps 1")
        p.cmd("steps 1")
        finish(a, p, script)
    finally:
        p.kill()


def drop_to(uid):
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def scenario_other_user(a, xdg):
    if os.geteuid() != 0:
        print("SKIP: creating another user's process needs root")
        return SKIP
    nobody = 65534
    # 1. Another user cannot reach this user's socket.
    p = Prog(a, xdg)
    try:
        p.cmd("steps 1")
        sock = os.path.join(xdg, "blockswap", "%d.sock" % p.pid)
        pid = os.fork()
        if pid == 0:
            code = 3
            try:
                drop_to(nobody)
                try:
                    out = raw(sock, b"evict\n")
                    code = 1 if b'"ok":true' in out else 0
                except PermissionError:
                    code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        check(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0,
              "uid %d cannot use this user's socket" % nobody)
        check(p.stats()["resident"] > 0, "nothing was evicted")
        rc, _ = p.quit()
        check(rc == 0, "the program exits 0")
    finally:
        p.kill()

    # 2. A process of another user: its socket refuses this user by peer credentials
    # (root passes the directory's permissions, not the check of SO_PEERCRED).
    other = tempfile.mkdtemp(prefix="bs-ctl-nobody-")
    os.chown(other, nobody, nobody)
    os.chmod(other, 0o700)
    p = Prog(a, other, args=["--setuid", str(nobody)], report_dir=other)
    try:
        p.cmd("steps 1")
        sock = os.path.join(other, "blockswap", "%d.sock" % p.pid)
        check(os.lstat(sock).st_uid == nobody, "the socket belongs to uid %d" % nobody)
        ans = json.loads(raw(sock, b"evict\n"))
        check(ans["ok"] is False and "permission denied" in ans["error"],
              "the connection of uid 0 is refused: %s" % ans["error"])
        check(p.stats()["resident"] > 0, "nothing was evicted")
        check(re.search(r"blockswap: warning: control socket: refused a connection from uid 0 "
                        r"\(pid \d+\): only uid %d may control this process" % nobody,
                        p.stderr()), "the refusal is logged")
        rc, _, err = ctl(a, "--pid", str(p.pid), "status", xdg=other, ok=False)
        check(rc == 1 and "must belong to uid 0" in err,
              "blockswapctl refuses another user's directory")
        # Its own user is served.
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                drop_to(nobody)
                os.write(w, raw(sock, b"status\n"))
            finally:
                os._exit(0)
        os.close(w)
        out = b""
        while True:
            c = os.read(r, 65536)
            if not c:
                break
            out += c
        os.close(r)
        os.waitpid(pid, 0)
        check(json.loads(out)["ok"] is True, "uid %d itself is served" % nobody)
        rc, _ = p.quit()
        check(rc == 0, "the program exits 0")
    finally:
        p.kill()
        shutil.rmtree(other, ignore_errors=True)
    return 0


def scenario_symlink(a, xdg):
    script = ["steps 1", "verify"]
    # A symlink planted where the directory goes, to a directory of ours.
    elsewhere = os.path.join(xdg, "elsewhere")
    os.mkdir(elsewhere, 0o700)
    os.symlink(elsewhere, os.path.join(xdg, "blockswap"))
    p = Prog(a, xdg)
    try:
        for c in script:
            p.cmd(c)
        check(re.search(r"blockswap: warning: control socket disabled: .*/blockswap is a symlink "
                        r"or not a directory; it must be a directory of uid \d+ with mode 0700",
                        p.stderr()), "the symlinked directory is refused, in one line")
        check(os.listdir(elsewhere) == [], "nothing was created through the symlink")
        rc, _, err = ctl(a, "status", xdg=xdg, ok=False)
        check(rc == 1 and "a symlink" in err, "blockswapctl refuses it too")
        rc, _, err = ctl(a, "--pid", str(p.pid), "status", xdg=xdg, ok=False)
        check(rc == 1 and "a symlink" in err, "also when it looks for one pid")
        finish(a, p, script)
    finally:
        p.kill()
    # A directory with a mode other than 0700.
    loose = tempfile.mkdtemp(prefix="bs-ctl-loose-")
    os.mkdir(os.path.join(loose, "blockswap"), 0o755)
    os.chmod(os.path.join(loose, "blockswap"), 0o755)
    p = Prog(a, loose)
    try:
        for c in script:
            p.cmd(c)
        check(re.search(r"control socket disabled: .*/blockswap is not mode 0700", p.stderr()),
              "a directory of mode 0755 is refused")
        check(os.listdir(os.path.join(loose, "blockswap")) == [], "no socket in it")
        finish(a, p, script)
    finally:
        p.kill()
        shutil.rmtree(loose, ignore_errors=True)
    return 0


def scenario_fallback(a, xdg):
    """Without XDG_RUNTIME_DIR the socket is in /tmp/blockswap-<uid>. With tracing on,
    status gives the times measured (numbers, not null)."""
    p = Prog(a, None, env={"BLOCKSWAP_TRACE": os.path.join(xdg, "trace.txt")})
    try:
        p.cmd("steps 2")
        d = "/tmp/blockswap-%d" % os.geteuid()
        sock = os.path.join(d, "%d.sock" % p.pid)
        ds = os.lstat(d)
        check(stat.S_ISDIR(ds.st_mode) and stat.S_IMODE(ds.st_mode) == 0o700,
              "%s is a directory of mode 0700" % d)
        check(stat.S_IMODE(os.lstat(sock).st_mode) == 0o600, "the socket has mode 0600")
        _, st, _ = ctl(a, "--pid", str(p.pid), "status")
        check(st["pid"] == p.pid, "blockswapctl finds it there")
        check(st["traced"] is True and isinstance(st["stall_ms"], (int, float)) and
              isinstance(st["transfer_in_ms"], (int, float)),
              "with BLOCKSWAP_TRACE, stall and transfer times are numbers")
        rc, _ = p.quit()
        check(rc == 0 and not os.path.exists(sock), "removed at exit")
    finally:
        p.kill()
    return 0


def scenario_disabled(a, xdg):
    p = Prog(a, xdg, env={"BLOCKSWAP_CONTROL": "0"})
    try:
        p.cmd("steps 1")
        check(not os.path.exists(os.path.join(xdg, "blockswap")),
              "BLOCKSWAP_CONTROL=0: no directory, no socket")
        # With --pid: without it, processes of parallel tests in /tmp/blockswap-<uid>
        # (where blockswapctl looks too) would be found.
        rc, _, err = ctl(a, "--pid", str(p.pid), "status", xdg=xdg, ok=False)
        check(rc == 1 and "no blockswap process %d" % p.pid in err, "blockswapctl says none found")
        rc, _ = p.quit()
        check(rc == 0, "the program exits 0")
    finally:
        p.kill()
    return 0


def scenario_client(a, xdg):
    """What a person types and reads: the variable's spelling, a missing value, a k above
    the model's blocks, the readable status, and a process whose socket is in the /tmp
    fallback found from a shell that has XDG_RUNTIME_DIR."""
    # The process without XDG_RUNTIME_DIR (a service), the client with it (a login shell).
    p = Prog(a, None, env={"BLOCKSWAP_TRACE": os.path.join(xdg, "trace.txt")})
    try:
        p.cmd("steps 2")
        # --pid: other tests' processes may share /tmp/blockswap-<uid>.
        pid = ("--pid", str(p.pid))
        rc, text, err = ctl(a, *pid, "status", xdg=xdg, json_status=False)
        check(rc == 0, "status finds the process in /tmp/blockswap-<uid> though "
              "XDG_RUNTIME_DIR is set: %s" % err.strip())
        _, st, _ = ctl(a, "--pid", str(p.pid), "status", xdg=xdg)
        check(st["pid"] == p.pid and st["blocks"] == 8, "--json: the process's JSON")
        # The readable default.
        check(not text.lstrip().startswith("{"), "status is not JSON by default")
        check(re.search(r"^VRAM: +[\d.]+ MiB used of the 150\.0 MiB limit", text, re.M),
              "VRAM used of the limit")
        check(re.search(r"^blocks: 4 swapped of 8 found", text, re.M), "blocks swapped of found")
        check(re.search(r"^stall: +[\d.]+ ms per step over [1-9]\d* traced steps?", text, re.M),
              "stall per step, traced")
        check(re.search(r"^host: +\S+ \S+ of backing in memory: \S+ \S+ pinned, \S+ \S+ "
                        r"pageable \(peak .*\); \S+ \S+ backed by \d+ files? \(\S+ \S+ read "
                        r"back\); staging ring \S+", text, re.M), "host memory by kind: %s" % text)
        # set: the variable's spelling; a missing value; a k above the blocks found.
        for spelling in ["blocks_to_swap", "blocks-to-swap"]:
            _, s6, err = ctl(a, *pid, "set", spelling, "6", xdg=xdg)
            check(s6["blocks_to_swap"] == 6 and "capped" not in err, "set %s 6" % spelling)
        for args, want in [(["set", "blocks-to-swap"],
                            "blockswapctl: set blocks-to-swap needs a value: N (0 to 100000) or auto"),
                           (["set", "blocks_to_swap"],
                            "blockswapctl: set blocks-to-swap needs a value: N (0 to 100000) or auto"),
                           (["set"], "blockswapctl: set needs a setting and a value"),
                           (["set", "window", "3"], "blockswapctl: set window: unknown setting"),
                           (["frobnicate"], "blockswapctl: unknown command: frobnicate")]:
            rc, _, err = ctl(a, *pid, *args, xdg=xdg, ok=False)
            check(rc == 2 and len(err.splitlines()) == 1 and err.startswith(want),
                  "%s: one line: %s" % (" ".join(args), err.strip()))
        _, s99, err = ctl(a, *pid, "set", "blocks-to-swap", "99", xdg=xdg)
        check(s99["blocks_to_swap"] == 99, "99 is accepted")
        check("the model has 8 blocks: blocks-to-swap 99 is capped at that" in err,
              "and said to be capped: %s" % err.strip())
        p.cmd("steps 1")
        _, st, _ = ctl(a, *pid, "status", xdg=xdg)
        check(st["blocks_swapped"] == 8, "all 8 swapped")
        # --stack S: one model's stack only, by its index in the log ("stack 0: detected").
        check(re.search(r"^blockswap: stack 0: detected 8 blocks", p.stderr(), re.M),
              "the log names the stack with its index")
        _, s1, _ = ctl(a, *pid, "set", "blocks-to-swap", "2", "--stack", "1", xdg=xdg)
        check(s1["stack"] == 1 and s1["applies"] == "when that stack is found",
              "--stack 1 waits for stack 1 to be found")
        _, st, _ = ctl(a, *pid, "status", xdg=xdg)
        s0 = st["stacks"][0]
        check(s0["stack"] == 0 and s0["blocks_to_swap_setting"] == 99 and not s0["pending"] and
              st["blocks_to_swap_pending"] is None and st["blocks_to_swap_setting"] == 2,
              "stack 0 keeps 99; stack 1, found next, will get 2")
        p.cmd("steps 1")
        _, st, _ = ctl(a, *pid, "status", xdg=xdg)
        check(st["blocks_swapped"] == 8, "stack 0 still swaps all 8")
        _, s0a, _ = ctl(a, *pid, "set", "blocks-to-swap", "6", "--stack", "0", xdg=xdg)
        check(s0a["stack"] == 0 and s0a["applies"] == "next step", "--stack 0: next step")
        _, st, _ = ctl(a, *pid, "status", xdg=xdg)
        check(st["stacks"][0]["pending"] and st["blocks_to_swap_pending"] == 6,
              "status: 6 pending for stack 0")
        p.cmd("steps 1")
        _, st, _ = ctl(a, *pid, "status", xdg=xdg)
        check(st["blocks_swapped"] == 6 and not st["stacks"][0]["pending"], "stack 0 swaps 6")
        check("blockswapctl set blocks-to-swap 6 --stack 0: applied at the start of the next step"
              in p.stderr(), "the log names the stack")
        text = ctl(a, *pid, "status", xdg=xdg, json_status=False)[1]
        check(re.search(r"^ +stack 0 \(in use\): 8 blocks", text, re.M), "status names stack 0")
        for args, want in [(["set", "blocks-to-swap", "3", "--stack", "x"],
                            "blockswapctl: bad --stack value 'x'"),
                           (["set", "prefetch", "1", "--stack", "0"],
                            "blockswapctl: --stack applies to set blocks-to-swap only")]:
            rc, _, err = ctl(a, *pid, *args, xdg=xdg, ok=False)
            check(rc == 2 and err.startswith(want), "%s: %s" % (" ".join(args), err.strip()))
        rc, _ = p.quit()
        check(rc == 0, "the program exits 0")
    finally:
        p.kill()
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario")
    ap.add_argument("--ctl", required=True)
    ap.add_argument("--shim", required=True)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    a.prog = os.path.abspath(a.cmd[1] if a.cmd and a.cmd[0] == "--" else a.cmd[0])
    xdg = tempfile.mkdtemp(prefix="bs-ctl-xdg-")
    try:
        rc = globals()["scenario_" + a.scenario.replace("-", "_")](a, xdg)
        return rc or 0
    except Fail as e:
        print("FAIL: %s" % e, file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(xdg, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
