#!/usr/bin/env python3
"""Writes a random-weight WAN 2.1/2.2 diffusion checkpoint (safetensors) with the key
names and shapes ComfyUI's loader expects, so ComfyUI detects it as WAN and samples with
it. Used by scripts/gpu-comfyui to compare blockswap with its peers without downloading
a real model; the weights are noise, so only speed, memory and bit-equality mean anything.

Tensors are generated and written one at a time (large ones in chunks), so a 28 GB
14B-shaped file needs little memory. Two generators give the same value distribution:
torch (fast, on the GPU if there is one) and a pure-stdlib one for small files on
machines without torch. Each is deterministic for a seed; they differ from each other.
"""

import argparse
import hashlib
import json
import math
import os
import random
import struct
import sys
import time

# WAN 2.1 text-to-video 14B (DESIGN.md section 5). ComfyUI derives the rest from shapes:
# heads = dim // 128, in_dim from patch_embedding, out_dim from head.head.
GEOMETRY_14B = {"dim": 5120, "ffn": 13824, "blocks": 40}
TEXT_DIM = 4096  # umt5-xxl hidden size: text_embedding.0 input
FREQ_DIM = 256  # sinusoidal time embedding: time_embedding.0 input
PATCH = (1, 2, 2)  # patch_embedding kernel (t, h, w)
IMG_DIM = 1280  # CLIP vision features: img_emb (i2v only)

DTYPES = {  # name: (safetensors dtype, bytes per element)
    "bf16": ("BF16", 2),
    "fp16": ("F16", 2),
    "fp32": ("F32", 4),
}

CHUNK_ELEMENTS = 1 << 22  # elements generated at once (8 MiB of bf16)


def wan_tensors(dim, ffn, blocks, model_type="t2v", in_dim=None, out_dim=16):
    """[(name, shape, init)] in ComfyUI's WanModel naming (comfy/ldm/wan/model.py).

    init: ("uniform", bound) for values of magnitude below bound with random sign, or
    ("one", None) for norm weights in [1, 2).
    """
    if in_dim is None:
        in_dim = 36 if model_type == "i2v" else 16
    patch_out = out_dim * PATCH[0] * PATCH[1] * PATCH[2]

    def lin(prefix, fan_out, fan_in):
        b = 1.0 / math.sqrt(fan_in)
        return [(prefix + ".weight", [fan_out, fan_in], ("uniform", b)),
                (prefix + ".bias", [fan_out], ("uniform", b))]

    def norm(name, n):
        return [(name, [n], ("one", None))]

    def layernorm(prefix, n):
        return norm(prefix + ".weight", n) + [(prefix + ".bias", [n], ("uniform", 0.02))]

    conv_fan_in = in_dim * PATCH[0] * PATCH[1] * PATCH[2]
    t = [("patch_embedding.weight", [dim, in_dim] + list(PATCH),
          ("uniform", 1.0 / math.sqrt(conv_fan_in))),
         ("patch_embedding.bias", [dim], ("uniform", 1.0 / math.sqrt(conv_fan_in)))]
    t += lin("text_embedding.0", dim, TEXT_DIM) + lin("text_embedding.2", dim, dim)
    t += lin("time_embedding.0", dim, FREQ_DIM) + lin("time_embedding.2", dim, dim)
    t += lin("time_projection.1", dim * 6, dim)
    for i in range(blocks):
        p = "blocks.%d." % i
        for attn in ("self_attn", "cross_attn"):
            for proj in ("q", "k", "v", "o"):
                t += lin(p + attn + "." + proj, dim, dim)
            t += norm(p + attn + ".norm_q.weight", dim) + norm(p + attn + ".norm_k.weight", dim)
            if attn == "cross_attn" and model_type == "i2v":
                t += lin(p + attn + ".k_img", dim, dim) + lin(p + attn + ".v_img", dim, dim)
                t += norm(p + attn + ".norm_k_img.weight", dim)
        t += layernorm(p + "norm3", dim)
        t += lin(p + "ffn.0", ffn, dim) + lin(p + "ffn.2", dim, ffn)
        t.append((p + "modulation", [1, 6, dim], ("uniform", 1.0 / math.sqrt(dim))))
    t += lin("head.head", patch_out, dim)
    # head.modulation is the key ComfyUI's detect_unet_config looks for to call it WAN.
    t.append(("head.modulation", [1, 2, dim], ("uniform", 1.0 / math.sqrt(dim))))
    if model_type == "i2v":
        t += layernorm("img_emb.proj.0", IMG_DIM) + lin("img_emb.proj.1", IMG_DIM, IMG_DIM)
        t += lin("img_emb.proj.3", dim, IMG_DIM) + layernorm("img_emb.proj.4", dim)
    return t


def numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def tensor_seed(seed, name):
    """Each tensor's stream depends on the seed and its name only, so blocks.0 is the
    same whether the file has 2 blocks or 40."""
    h = hashlib.blake2b(("%d/%s" % (seed, name)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


def bf16_tables(init):
    """Byte tables that turn two random bytes into one bf16 value (little-endian: low
    byte = exponent LSB + 7 mantissa bits, high byte = sign + exponent's upper 7 bits).

    uniform: the exponent's upper bits step down from the bound by a geometric number of
    factor-4 steps (half the values within [bound/4, bound), a quarter within the next
    band, ...), as a uniform draw has; signs random. one: [1, 2), positive.
    Returns (low_table, high_table) for bytes.translate; None means the byte as drawn.
    """
    kind, bound = init
    if kind == "one":
        low = bytes(0x80 | (r & 0x7F) for r in range(256))  # biased exponent 127
        high = bytes([0x3F] * 256)
        return low, high
    # Largest even biased exponent E with 2^(E+2-127) <= bound: values < bound.
    e_top = math.floor(math.log2(bound)) + 127 - 2
    h_top = e_top >> 1
    high = bytearray(256)
    for r in range(256):
        steps = 0
        g = r >> 1
        while g & 1 and steps < 7:
            steps += 1
            g >>= 1
        h = max(h_top - steps, 1)
        high[r] = ((r & 1) << 7) | h
    return None, bytes(high)


class StdlibGen:
    """Random bytes from Python's Mersenne Twister, seeded per tensor."""

    name = "stdlib"
    chunk = CHUNK_ELEMENTS

    def __init__(self, seed):
        self.rng = random.Random(seed)

    def bf16(self, n, tables):
        low_t, high_t = tables
        lo = self.rng.randbytes(n)
        hi = self.rng.randbytes(n)
        out = bytearray(2 * n)
        out[0::2] = lo if low_t is None else lo.translate(low_t)
        out[1::2] = hi.translate(high_t)
        return bytes(out)

    @staticmethod
    def convert(raw, dtype):
        if dtype == "bf16":
            return raw
        n = len(raw) // 2
        out = bytearray(4 * n)  # fp32: the bf16 bits are its upper half, exactly
        out[2::4] = raw[0::2]
        out[3::4] = raw[1::2]
        if dtype == "fp32":
            return bytes(out)
        vals = struct.unpack("<%df" % n, out)
        return struct.pack("<%de" % n, *vals)


class TorchGen:
    """The same construction with torch tensors; on the GPU when there is one."""

    name = "torch"

    def __init__(self, seed, torch, device):
        self.torch = torch
        self.device = device
        # On a GPU, big chunks: each costs a few launches and one copy to the host.
        self.chunk = CHUNK_ELEMENTS * (8 if device == "cuda" else 1)
        self.g = torch.Generator(device=device)
        self.g.manual_seed(seed)

    def bf16(self, n, tables):
        torch = self.torch
        low_t, high_t = tables
        r = torch.randint(0, 256, (2, n), dtype=torch.uint8, generator=self.g,
                          device=self.device)
        lo, hi = r[0], r[1]
        if low_t is not None:
            lo = torch.frombuffer(bytearray(low_t), dtype=torch.uint8).to(self.device)[lo.long()]
        hi = torch.frombuffer(bytearray(high_t), dtype=torch.uint8).to(self.device)[hi.long()]
        pair = torch.stack((lo, hi), dim=1).contiguous()  # [n, 2] little-endian
        return pair.view(torch.bfloat16).reshape(n)

    def convert(self, t, dtype):
        torch = self.torch
        if dtype == "fp16":
            t = t.to(torch.float16)
        elif dtype == "fp32":
            t = t.to(torch.float32)
        return t.cpu().view(torch.uint8).numpy().tobytes()


def pick_generator(kind):
    """(factory(seed) -> generator, description)."""
    if kind in ("auto", "torch"):
        try:
            import torch  # noqa: F401
        except ImportError:
            if kind == "torch":
                sys.exit("write_wan_checkpoint: --generator torch: torch is not installed")
        else:
            device = "cuda" if torch.cuda.is_available() else "cpu"
            return (lambda s: TorchGen(s, torch, device)), "torch %s on %s" % (torch.__version__, device)
    return (lambda s: StdlibGen(s)), "stdlib (Python %s random)" % sys.version.split()[0]


def build_header(tensors, dtype, metadata):
    st_dtype, size = DTYPES[dtype]
    header = {"__metadata__": metadata}
    offset = 0
    for name, shape, _ in tensors:
        nbytes = numel(shape) * size
        header[name] = {"dtype": st_dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # data starts 8-byte aligned, as safetensors writes it
    return raw, offset


def write_checkpoint(path, dim, ffn, blocks, dtype="bf16", seed=0, model_type="t2v",
                     in_dim=None, out_dim=16, generator="auto", progress=None):
    """Writes the file; returns a dict describing it (path, bytes, tensors, seconds)."""
    if dim % 128:
        raise ValueError("dim %d: ComfyUI takes heads = dim // 128, so dim must be a multiple of 128" % dim)
    tensors = wan_tensors(dim, ffn, blocks, model_type, in_dim, out_dim)
    factory, gen_desc = pick_generator(generator)
    geometry = {"dim": dim, "ffn": ffn, "blocks": blocks, "heads": dim // 128,
                "model_type": model_type, "in_dim": in_dim or (36 if model_type == "i2v" else 16),
                "out_dim": out_dim, "dtype": dtype}
    # No "config" key: ComfyUI 0.33's detection reads one from the metadata.
    metadata = {"format": "pt", "blockswap.purpose": "random-weight WAN test checkpoint",
                "blockswap.geometry": json.dumps(geometry, sort_keys=True),
                "blockswap.seed": str(seed), "blockswap.generator": gen_desc.split(" on ")[0]}
    header, data_bytes = build_header(tensors, dtype, metadata)
    size = DTYPES[dtype][1]
    start = time.monotonic()
    tmp = path + ".part"
    written = 0
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(header)))
        f.write(header)
        for name, shape, init in tensors:
            tables = bf16_tables(init)
            gen = factory(tensor_seed(seed, name))
            left = numel(shape)
            while left:
                n = min(left, gen.chunk)
                f.write(gen.convert(gen.bf16(n, tables), dtype))
                left -= n
                written += n * size
            if progress:
                progress(written, data_bytes)
    os.replace(tmp, path)
    return {"path": path, "bytes": 8 + len(header) + data_bytes, "tensors": len(tensors),
            "geometry": geometry, "seed": seed, "generator": gen_desc,
            "seconds": round(time.monotonic() - start, 3)}


def block_bytes(dim, ffn, dtype="bf16"):
    """Bytes of one transformer block (t2v): what blockswap pages per block."""
    t = wan_tensors(dim, ffn, 1)
    return sum(numel(s) for n, s, _ in t if n.startswith("blocks.0.")) * DTYPES[dtype][1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("output", help="the .safetensors file to write")
    ap.add_argument("--dim", type=int, default=GEOMETRY_14B["dim"], help="hidden size (default 5120, 14B)")
    ap.add_argument("--ffn", type=int, default=GEOMETRY_14B["ffn"], help="FFN size (default 13824)")
    ap.add_argument("--blocks", type=int, default=GEOMETRY_14B["blocks"], help="transformer blocks (default 40)")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model-type", choices=("t2v", "i2v"), default="t2v")
    ap.add_argument("--in-dim", type=int, default=None, help="latent channels in (16 t2v, 36 i2v)")
    ap.add_argument("--out-dim", type=int, default=16, help="latent channels out (16; WAN 2.2 5B: 48)")
    ap.add_argument("--generator", choices=("auto", "torch", "stdlib"), default="auto",
                    help="auto: torch when importable, else stdlib (slow: about 0.1 GB/s)")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    if a.blocks < 1 or a.dim < 128 or a.ffn < 1:
        ap.error("--blocks must be at least 1, --dim at least 128, --ffn at least 1")
    if a.dim % 128:
        ap.error("--dim %d: ComfyUI takes heads = dim // 128; give a multiple of 128" % a.dim)

    last = [0.0]

    def progress(done, total):
        now = time.monotonic()
        if not a.quiet and (now - last[0] > 5 or done == total):
            last[0] = now
            print("write_wan_checkpoint: %.1f / %.1f GB" % (done / 1e9, total / 1e9), file=sys.stderr)

    info = write_checkpoint(a.output, a.dim, a.ffn, a.blocks, a.dtype, a.seed, a.model_type,
                            a.in_dim, a.out_dim, a.generator, progress)
    info["block_bytes"] = block_bytes(a.dim, a.ffn, a.dtype)
    print(json.dumps(info, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
