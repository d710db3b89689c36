#!/usr/bin/env python3
"""The setup scripts a fresh machine runs first: scripts/find-cuda-include finds NVIDIA's
default install (/usr/local/cuda) when nvcc is not on PATH and CUDA_HOME is unset (on a
copy whose default points at a toolkit made here), and scripts/ensure-tools asks for the
sanitizer runtimes of the installed gcc's own version (a fake gcc 14 and 13 here).

usage: test-setup-scripts.py SCRIPTS_DIR
"""
import os, stat, subprocess, sys, tempfile

failures = []


def expect(cond, msg):
    print(("ok: " if cond else "FAIL: ") + msg, file=sys.stdout if cond else sys.stderr)
    if not cond:
        failures.append(msg)
    return cond


def executable(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)


def main():
    scripts = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        # A PATH without nvcc: a directory holding only what the script needs.
        bin_ = os.path.join(tmp, "bin")
        os.mkdir(bin_)
        for tool in ["dirname", "readlink", "uname", "cut", "sh"]:
            for d in ["/usr/bin", "/bin"]:
                if os.path.exists(os.path.join(d, tool)):
                    os.symlink(os.path.join(d, tool), os.path.join(bin_, tool))
                    break
        cuda = os.path.join(tmp, "usr-local-cuda")
        find = os.path.join(tmp, "find-cuda-include")
        with open(os.path.join(scripts, "find-cuda-include")) as f:
            text = f.read()
        expect("default=/usr/local/cuda\n" in text, "the default is /usr/local/cuda")
        executable(find, text.replace("default=/usr/local/cuda\n", f"default={cuda}\n"))
        env = {"PATH": bin_}
        p = subprocess.run([find], env=env, capture_output=True, text=True)
        expect(p.returncode == 1 and "nvcc is not on PATH, CUDA_HOME is unset and "
               f"{cuda} has no include/cuda.h" in p.stderr, "nothing anywhere: said")
        os.makedirs(os.path.join(cuda, "include"))
        open(os.path.join(cuda, "include", "cuda.h"), "w").close()
        p = subprocess.run([find], env=env, capture_output=True, text=True)
        expect(p.returncode == 0 and p.stdout == os.path.join(cuda, "include") + "\n",
               f"the default install is found: {p.stdout.strip()} {p.stderr.strip()}")
        p = subprocess.run([find], env=dict(env, CUDA_HOME=tmp), capture_output=True, text=True)
        expect(p.returncode == 1 and "CUDA_HOME" in p.stderr, "CUDA_HOME still comes first")

        # ensure-tools --print with a gcc that lacks its sanitizer runtimes. A script
        # without --print would install: not run then.
        with open(os.path.join(scripts, "ensure-tools")) as f:
            if not expect('"${1:-}" = --print' in f.read(), "ensure-tools has --print"):
                return 1
        for major in ["14", "13"]:
            executable(os.path.join(bin_, "gcc"),
                       '#!/bin/sh\ncase $1 in\n-dumpversion) echo %s.2.0 ;;\n'
                       '-print-file-name=*) echo "${1#-print-file-name=}" ;;\nesac\n' % major)
            p = subprocess.run(["sh", os.path.join(scripts, "ensure-tools"), "--print"],
                               env={"PATH": bin_ + ":/usr/bin:/bin"},
                               capture_output=True, text=True)
            words = p.stdout.split()
            expect(p.returncode == 0 and f"libgcc-{major}-dev" in words and
                   not [w for w in words if w.startswith("libgcc-") and w != f"libgcc-{major}-dev"],
                   f"gcc {major}: libgcc-{major}-dev ({p.stdout.strip()} {p.stderr.strip()})")
    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
