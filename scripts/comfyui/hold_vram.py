#!/usr/bin/env python3
"""Holds all of a GPU's memory but FREE_GIB, in a process of its own, so that the
process under test truly has only that much (no setting inside it can lie about what is
free). Prints one line `holding N bytes, free M bytes` when ready, then waits until
stdin closes or it is signalled. Used by scripts/gpu-comfyui."""

import argparse
import signal
import sys


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("free_gib", type=float, help="GiB to leave free")
    ap.add_argument("--device", type=int, default=0)
    a = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("hold_vram: torch is not installed", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("hold_vram: no CUDA GPU", file=sys.stderr)
        return 2
    torch.cuda.set_device(a.device)
    free, total = torch.cuda.mem_get_info()
    want_free = int(a.free_gib * (1 << 30))
    chunk = 256 << 20
    held = []
    # Whole chunks first, then smaller ones to land close to the target; the CUDA
    # context of this process already took its share before mem_get_info.
    while True:
        free, _ = torch.cuda.mem_get_info()
        excess = free - want_free
        if excess < (2 << 20):
            break
        size = chunk if excess >= chunk else (excess // (2 << 20)) * (2 << 20)
        try:
            held.append(torch.empty(size, dtype=torch.uint8, device="cuda"))
        except RuntimeError:
            if chunk <= (2 << 20):
                break
            chunk //= 2
    torch.cuda.synchronize()
    free, total = torch.cuda.mem_get_info()
    print("holding %d bytes, free %d bytes, total %d bytes" % (sum(t.numel() for t in held), free, total),
          flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        sys.stdin.read()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
