#!/usr/bin/env python3
"""blockswap-report on the committed example trace (tests/trace/example: bench-blocks,
12 WAN-shaped blocks, BLOCKSWAP_VRAM_LIMIT=200M on the simulated driver; the command is
in docs/tracing.md): the table from the text log, from the timeline alone, and both
agree; the SVG plot has the lanes and one slice per block; a PNG when rsvg-convert is
there; bad input is refused with a message and a non-zero status, and what is no trace
at all (a directory, a binary or empty file, a plot without its timeline or tool) in one
line, exit 2, before anything is printed.

usage: check-report.py REPORT EXAMPLE_DIR
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET


def report(tool, *args, ok=True):
    p = subprocess.run([sys.executable, tool, *args], capture_output=True, text=True, timeout=60)
    if ok and p.returncode != 0:
        sys.exit(f"FAIL: blockswap-report {' '.join(args)}: exit {p.returncode}\n{p.stderr}")
    return p


def rows(out):
    """block -> the numbers of its row in the per-block table."""
    table = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\d+)\s+(swapped|resident)\s+(.*)", line)
        if m:
            table[int(m.group(1))] = (m.group(2), [float(x) for x in m.group(3).split()])
    return table


def main():
    tool, ex = sys.argv[1], sys.argv[2]
    log, js = os.path.join(ex, "wan-sim.log"), os.path.join(ex, "wan-sim.json")
    both = report(tool, log, js).stdout
    text = report(tool, log).stdout
    tl = report(tool, js).stdout
    rb, rt, rj = rows(both), rows(text), rows(tl)
    if len(rt) != 12 or rt != rb:
        sys.exit(f"FAIL: per-block table from the text log: {len(rt)} rows\n{text}")
    if set(rj) != set(rt):
        sys.exit(f"FAIL: the timeline alone gives blocks {sorted(rj)}\n{tl}")
    for b in rt:
        kind_t, vt = rt[b]
        kind_j, vj = rj[b]
        # in MiB, in ms, GB/s, compute ms, stall ms, out MiB, out ms: as printed (3 decimals)
        if kind_t != kind_j or any(abs(x - y) > 0.0015 + 0.002 * abs(x) for x, y in zip(vt[:7], vj[:7])):
            sys.exit(f"FAIL: block {b}: text {rt[b]} but timeline {rj[b]}")
    swapped = [b for b in rt if rt[b][0] == "swapped"]
    if swapped != list(range(5, 12)):
        sys.exit(f"FAIL: swapped blocks {swapped}, expected 5..11 (the example swaps 7)")
    steps = re.findall(r"^\s+(\d+)\s+12\s+7\s", both, re.M)
    if steps != ["0", "1", "2"]:
        sys.exit(f"FAIL: step rows {steps}\n{both}")
    one = report(tool, "--step", "2", log).stdout
    if "Per block, step 2" not in one:
        sys.exit(f"FAIL: --step 2:\n{one}")

    with tempfile.TemporaryDirectory() as tmp:
        svg = os.path.join(tmp, "step.svg")
        out = report(tool, "--step", "1", "--plot", svg, js).stdout
        if "plot of step 1" not in out:
            sys.exit(f"FAIL: no plot line:\n{out}")
        root = ET.parse(svg).getroot()
        ns = "{http://www.w3.org/2000/svg}"
        texts = [t.text for t in root.iter(ns + "text")]
        for lane in ("copy in", "compute", "copy out"):
            if lane not in texts:
                sys.exit(f"FAIL: no {lane!r} lane in the plot")
        titles = [t.text for t in root.iter(ns + "title")]
        compute = [t for t in titles if t.startswith("compute block")]
        copies = [t for t in titles if t.startswith("copy_in block")]
        if len(compute) != 12 or len(copies) != 7:
            sys.exit(f"FAIL: {len(compute)} compute and {len(copies)} copy-in slices drawn, "
                     f"expected 12 and 7")
        stalls = [t for t in titles if t.startswith("stall block")]
        fills = {r.get("fill") for r in root.iter(ns + "rect")}
        if stalls and "#e15759" not in fills:
            sys.exit("FAIL: stalls not highlighted")
        if shutil.which("rsvg-convert"):
            png = os.path.join(tmp, "step.png")
            report(tool, "--plot", png, js)
            if open(png, "rb").read(8) != b"\x89PNG\r\n\x1a\n":
                sys.exit("FAIL: the .png plot is not a PNG")
        else:
            print("note: rsvg-convert missing, PNG plot not checked")
        # A timeline cut short (the process died before exit) still reads.
        cut = os.path.join(tmp, "cut.json")
        data = open(js).read()
        open(cut, "w").write(data[:data.rindex("\n]}")])
        if rows(report(tool, cut).stdout).keys() != rj.keys():
            sys.exit("FAIL: a timeline without its closing bracket")
        # Refusals.
        bad = os.path.join(tmp, "bad.log")
        open(bad, "w").write("this is not a trace\n")
        for args, code, want in (([bad], 1, "not a blockswap trace line"),
                                 (["--step", "9", log], 2, "step 9 is not in the trace")):
            p = report(tool, *args, ok=False)
            if p.returncode != code or want not in p.stderr:
                sys.exit(f"FAIL: {args}: exit {p.returncode}, stderr {p.stderr!r}; expected "
                         f"{code} and {want!r}")
        # What is no trace at all, or a plot that cannot be drawn: one line, exit 2, and
        # nothing printed before it.
        binary = os.path.join(tmp, "model.safetensors")
        open(binary, "wb").write(bytes(range(1, 256)) * 16)  # no NUL, not UTF-8
        nuls = os.path.join(tmp, "core")
        open(nuls, "wb").write(b"ELF\0\0\0" * 100)  # UTF-8, but NUL bytes
        empty = os.path.join(tmp, "empty.json")
        open(empty, "w").close()
        blank = os.path.join(tmp, "blank.log")
        open(blank, "w").write("\n \n")
        nobin = os.path.join(tmp, "no-bin")
        os.mkdir(nobin)
        for args, want, path in (
                ([os.path.join(tmp, "none.log")], "none.log: no such file", None),
                ([tmp], f"{tmp}: a directory", None),
                ([binary], "model.safetensors: a binary file, not a blockswap trace", None),
                ([nuls], "core: a binary file", None),
                ([empty], "empty.json: empty: the traced process wrote nothing", None),
                ([blank], "blank.log: empty", None),
                ([log, empty], "empty.json: empty", None),
                (["--plot", svg, log], "--plot needs the .json timeline", None),
                (["--plot", os.path.join(tmp, "x.gif"), js], ".svg or .png", None),
                (["--plot", os.path.join(tmp, "nodir", "x.svg"), js], "does not exist", None),
                (["--plot", os.path.join(tmp, "p.png"), js], "needs rsvg-convert", nobin)):
            env = dict(os.environ, PATH=path) if path else None
            p = subprocess.run([sys.executable, tool, *args], capture_output=True, text=True,
                               timeout=60, env=env)
            lines = p.stderr.splitlines()
            if (p.returncode != 2 or p.stdout or len(lines) != 1 or
                    not lines[0].startswith("blockswap-report: ") or want not in lines[0]):
                sys.exit(f"FAIL: {args}: exit {p.returncode}, stdout {p.stdout[:200]!r}, "
                         f"stderr {p.stderr!r}; expected exit 2, nothing printed, one line "
                         f"with {want!r}")
    print(f"ok: tables agree on {len(rt)} blocks, plot has {len(compute)} compute slices")


if __name__ == "__main__":
    main()
