#!/usr/bin/env python3
"""Installs the build into a temporary DESTDIR (`meson install --destdir`) and runs
from there: the installed launcher's --version and --check against the simulated
driver, a driver-API program under it (identical output, the shim active), a
program compiled against the installed header and pkg-config file (also with
--define-prefix, as for a moved tree), the --help of blockswapctl and blockswap-report,
and the four man pages (blockswap-run, blockswapctl, blockswap-report, blockswap(7)),
which render without a warning.

usage: test-install.py --meson MESON --build DIR --sim DIR --transformer PROG --cc CC
"""
import argparse, glob, os, re, shutil, subprocess, sys, tempfile

failures = []


def expect(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL: " + msg, file=sys.stderr)
    return cond


def run(cmd, env=None, **kw):
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, **kw)
    print(f"$ {' '.join(cmd)}  -> {p.returncode}\n{p.stdout}{p.stderr}", end="")
    return p


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BLOCKSWAP_", "LD_PRELOAD", "LD_LIBRARY_PATH", "PKG_CONFIG"))}
    env.update(extra)
    return env


def one(pattern):
    found = sorted(set(glob.glob(pattern, recursive=True)))
    expect(len(found) == 1, f"one {pattern} installed (found {found})")
    return found[0] if found else "/nonexistent"


def main():
    ap = argparse.ArgumentParser()
    for opt in ["meson", "build", "sim", "transformer", "cc"]:
        ap.add_argument("--" + opt, required=True)
    a = ap.parse_args()

    with tempfile.TemporaryDirectory() as dest:
        p = run([a.meson, "install", "-C", a.build, "--no-rebuild", "--destdir", dest],
                env=clean_env())
        if not expect(p.returncode == 0, "meson install succeeds"):
            return 1

        launcher = one(f"{dest}/**/bin/blockswap-run")
        lib = one(f"{dest}/**/lib*/**/libblockswap.so")
        probe = one(f"{dest}/**/libexec/blockswap/blockswap-probe")
        header = one(f"{dest}/**/include/blockswap.h")
        pc = one(f"{dest}/**/pkgconfig/blockswap.pc")
        ctl = one(f"{dest}/**/bin/blockswapctl")
        report = one(f"{dest}/**/bin/blockswap-report")
        pages = [one(f"{dest}/**/share/man/man1/{m}.1")
                 for m in ("blockswap-run", "blockswapctl", "blockswap-report")]
        pages.append(one(f"{dest}/**/share/man/man7/blockswap.7"))
        man = shutil.which("man")
        for page in pages:
            if man:  # each page renders without a warning, and names its command
                p = run([man, "--warnings", "-l", page],
                        env=clean_env(MANWIDTH="80", MANPAGER="cat", PAGER="cat", LC_ALL="C.UTF-8"))
                name = os.path.basename(page).rsplit(".", 1)[0]
                expect(p.returncode == 0 and not p.stderr.strip() and name in p.stdout,
                       f"man {page} renders without a warning")
        expect(os.access(launcher, os.X_OK) and os.access(probe, os.X_OK),
               "launcher and probe are executable")
        prefix = os.path.dirname(os.path.dirname(launcher))
        for tool in (ctl, report):
            p = run([tool, "--help"], env=clean_env())
            expect(p.returncode == 0 and "usage:" in p.stdout, f"{tool} --help works")

        p = run([launcher, "--version"], env=clean_env())
        expect(p.returncode == 0 and f"library: {lib} (installed in {prefix})" in p.stdout,
               "the installed launcher finds the installed library under the DESTDIR")

        sim = clean_env(LD_LIBRARY_PATH=a.sim)
        p = run([launcher, "--check", "--vram-limit", "1G"], env=sim)
        expect(p.returncode == 0, "--check passes against the simulated driver")
        expect(f"library:  {lib} (installed in {prefix})" in p.stdout, "with that library")
        expect("device 0: blockswap simulated GPU" in p.stdout, "and names the device")

        prog = [a.transformer, "6", "1024", "2"]
        ref = run(prog, env=sim)
        p = run([launcher, "--vram-limit", "12M", "--"] + prog, env=sim)
        expect(ref.returncode == 0 and p.returncode == 0, "the program runs both ways")
        expect(p.stdout == ref.stdout, "with identical output under the installed launcher")
        expect(re.search(r"^blockswap: blockswap \S+ active", p.stderr, re.M),
               "the installed library was active")

        # The header and pkg-config file: a program that links the installed library.
        pkg = shutil.which("pkg-config") or shutil.which("pkgconf")
        if not pkg:
            print("no pkg-config here: the compile-and-link part is skipped")
        else:
            # The .pc file names the configured prefix; the sysroot puts DESTDIR before it.
            pcenv = clean_env(PKG_CONFIG_PATH=os.path.dirname(pc), PKG_CONFIG_SYSROOT_DIR=dest)
            p = run([pkg, "--cflags", "--libs", "blockswap"], env=pcenv)
            flags = p.stdout.split()
            expect(p.returncode == 0 and f"-I{os.path.dirname(header)}" in flags and
                   "-lblockswap" in flags, "pkg-config gives the installed paths")
            # A tree moved elsewhere: --define-prefix derives the prefix from where the
            # .pc file lies, also with a multiarch libdir (lib/x86_64-linux-gnu).
            p = run([pkg, "--define-prefix", "--cflags", "--libs", "blockswap"],
                    env=clean_env(PKG_CONFIG_PATH=os.path.dirname(pc)))
            moved = p.stdout.split()
            expect(p.returncode == 0 and f"-I{os.path.dirname(header)}" in moved and
                   f"-L{os.path.dirname(lib)}" in moved,
                   f"pkg-config --define-prefix gives the installed paths: {moved}")
            src = os.path.join(dest, "use.c")
            with open(src, "w") as f:
                f.write('#include <blockswap.h>\n#include <stdio.h>\n'
                        'int main(void) { printf("%s %d\\n", blockswap_version(), '
                        'BLOCKSWAP_VERSION_MAJOR); return 0; }\n')
            exe = os.path.join(dest, "use")
            p = run([a.cc, src, "-o", exe] + flags, env=pcenv)
            if expect(p.returncode == 0, "a program builds against the installed header"):
                p = run([exe], env=clean_env(LD_LIBRARY_PATH=os.path.dirname(lib)))
                expect(p.returncode == 0 and re.match(r"\d+\.\d+\.\d+ \d+\n", p.stdout),
                       "and runs against the installed library")

    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
