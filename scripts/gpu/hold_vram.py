#!/usr/bin/env python3
"""Takes all but KEEP of GPU 0's free memory and holds it until killed: the second
process of issue 7's run (c), which leaves the workload truly less VRAM.

usage: hold_vram.py KEEP_SIZE        (e.g. 12G, 8192M)

Allocates with cuMemAlloc in 1 GiB pieces, then smaller ones, until free memory is at
most KEEP, prints one line `hold_vram: holding N bytes, free M bytes` and sleeps until
SIGTERM or SIGINT. Needs only the NVIDIA driver (ctypes, no PyTorch). Exits 2 with one
line where there is no GPU."""
import ctypes, signal, sys, time

GiB = 1 << 30


def parse_size(s):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    s = s.strip().upper().rstrip("B").rstrip("I")
    if s and s[-1] in mult:
        return int(float(s[:-1]) * mult[s[-1]])
    return int(s)


def main():
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if len(sys.argv) == 2 else 2
    keep = parse_size(sys.argv[1])
    try:
        cu = ctypes.CDLL("libcuda.so.1")
    except OSError as e:
        print(f"hold_vram: no NVIDIA driver/GPU: {e}")
        return 2
    dev, ctx = ctypes.c_int(), ctypes.c_void_p()
    n = ctypes.c_int(0)
    if cu.cuInit(0) != 0 or cu.cuDeviceGetCount(ctypes.byref(n)) != 0 or n.value < 1:
        print("hold_vram: no NVIDIA driver/GPU: the driver found no GPU")
        return 2
    cu.cuDeviceGet(ctypes.byref(dev), 0)
    if cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) != 0 or cu.cuCtxSetCurrent(ctx) != 0:
        print("hold_vram: cannot make a context on GPU 0")
        return 1
    free, total = ctypes.c_size_t(), ctypes.c_size_t()
    held, ptrs = 0, []
    piece = GiB
    while piece >= (2 << 20):
        cu.cuMemGetInfo_v2(ctypes.byref(free), ctypes.byref(total))
        if free.value <= keep:
            break
        want = min(piece, free.value - keep)
        want -= want % (2 << 20)
        if want < (2 << 20):
            break
        p = ctypes.c_uint64()
        if cu.cuMemAlloc_v2(ctypes.byref(p), ctypes.c_size_t(want)) == 0:
            ptrs.append(p.value)
            held += want
        else:
            piece //= 2
    cu.cuMemGetInfo_v2(ctypes.byref(free), ctypes.byref(total))
    print(f"hold_vram: holding {held} bytes, free {free.value} bytes of {total.value}", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    signal.signal(signal.SIGINT, lambda *a: stop.append(1))
    while not stop:
        time.sleep(0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
