#!/usr/bin/env python3
"""What a new user reads first says what is true (issue 17):
- placement: README, blockswap(7) and docs/tracing.md do not say that the first blocks
  stay and the last k stream as if that were the default (it is spread), and every
  trace sample that shows "the last ones" says that its run used placement last;
- README says what scripts/test runs, how long it took, and the quick path;
- docs/comfyui.md maps every knob of the block-swap nodes, and covers a workflow that
  has one, --reserve-vram, and launching from the portable build, comfy-cli, Desktop.

usage: check-docs-new-user.py SOURCE_ROOT
"""
import os, re, sys

failures = []


def expect(cond, msg):
    print(("ok: " if cond else "FAIL: ") + msg, file=sys.stdout if cond else sys.stderr)
    if not cond:
        failures.append(msg)


def flat(text):
    """Words only: roff requests and markup, backquotes and line breaks removed."""
    text = re.sub(r"^\.[A-Z]+ ?", "", text, flags=re.M)
    text = text.replace("\\fR", "").replace("\\fB", "").replace("\\-", "-").replace("`", "")
    return re.sub(r"\s+", " ", text)


def main():
    root = sys.argv[1]
    read = lambda p: open(os.path.join(root, p)).read()

    # Item 5: the default placement.
    wrong = [r"keeps the first ones in VRAM and streams the last",
             r"under a VRAM budget: the last BLOCKSWAP_BLOCKS_TO_SWAP blocks stream",
             r"the first blocks stay"]
    for doc in ["README.md", "docs/man/blockswap.7.in", "docs/tracing.md"]:
        text = flat(read(doc))
        for w in wrong:
            expect(not re.search(w, text, re.I), f"{doc} does not say {w!r}")
    for doc in ["README.md", "docs/man/blockswap.7.in"]:
        text = flat(read(doc))
        expect(re.search(r"spread evenly through the stack by default|by default spread",
                         text), f"{doc} says the default placement is spread")
    lines = read("docs/tracing.md").splitlines()
    for i, line in enumerate(lines):
        if "(the last ones)" in line:
            before = " ".join(lines[max(0, i - 6):i])
            expect("BLOCKSWAP_SWAP_PLACEMENT=last" in before,
                   f"docs/tracing.md:{i + 1}: the sample says its run used placement last")

    # Item 11: README on scripts/test.
    readme = flat(read("README.md"))
    for want in ["four builds", "installs clang", "550 s on 2 cores",
                 "BLOCKSWAP_TEST_STAGES=normal scripts/test"]:
        expect(want in readme, f"README says {want!r}")

    # Item 14: docs/comfyui.md, coming from the block-swap nodes.
    comfy = read("docs/comfyui.md")
    m = re.search(r"^## Coming from the block-swap nodes\n(.*?)(?=^## )", comfy, re.M | re.S)
    expect(m is not None, "docs/comfyui.md has 'Coming from the block-swap nodes'")
    sec = m.group(1) if m else ""
    for knob in ["Patcher", "Combo Patcher", "HIGH then LOW", "Cleanup", "Reposition",
                 "Full Cleanup", "blocks_to_swap", "prefetch_blocks", "use_non_blocking",
                 "offload_img_emb", "offload_txt_emb", "vace_blocks_to_swap",
                 "block_swap_debug"]:
        expect(re.search(r"^\| [^|]*" + re.escape(knob), sec, re.M),
               f"a table row maps {knob}")
    for want in ["prefetch_blocks=1` (one block ahead) is `BLOCKSWAP_PREFETCH=1`",
                 "already has a block-swap node", "Bypass", "--reserve-vram",
                 "BLOCKSWAP_RESERVE", "BLOCKSWAP_VRAM_LIMIT", "portable", "comfy-cli",
                 "ComfyUI Desktop", "Not verified"]:
        expect(want in sec, f"the section covers {want!r}")

    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
