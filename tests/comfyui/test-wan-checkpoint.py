#!/usr/bin/env python3
"""The random-weight WAN checkpoint writer (scripts/comfyui/write_wan_checkpoint.py) makes
a safetensors file that ComfyUI would take for WAN: the key set and shapes of ComfyUI's
WanModel (comfy/ldm/wan/model.py) written out here by hand, head.modulation present
(comfy/model_detection.py's WAN test), a layout the safetensors format accepts, finite
small values, and the same bytes for the same seed. Standard library only; no torch."""

import math
import os
import struct
import subprocess
import sys
import tempfile

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(TOP, "scripts", "comfyui"))
import read_safetensors as rs  # noqa: E402

WRITER = os.path.join(TOP, "scripts", "comfyui", "write_wan_checkpoint.py")
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL: " + what)


def expected_t2v(d, f, blocks, in_dim=16, out_dim=16, i2v=False):
    """name -> shape, from ComfyUI's WanModel: what its load_state_dict expects."""
    e = {
        "patch_embedding.weight": [d, in_dim, 1, 2, 2], "patch_embedding.bias": [d],
        "text_embedding.0.weight": [d, 4096], "text_embedding.0.bias": [d],
        "text_embedding.2.weight": [d, d], "text_embedding.2.bias": [d],
        "time_embedding.0.weight": [d, 256], "time_embedding.0.bias": [d],
        "time_embedding.2.weight": [d, d], "time_embedding.2.bias": [d],
        "time_projection.1.weight": [6 * d, d], "time_projection.1.bias": [6 * d],
        "head.head.weight": [4 * out_dim, d], "head.head.bias": [4 * out_dim],
        "head.modulation": [1, 2, d],
    }
    for i in range(blocks):
        b = "blocks.%d." % i
        for attn in ("self_attn", "cross_attn"):
            for p in "qkvo":
                e[b + attn + "." + p + ".weight"] = [d, d]
                e[b + attn + "." + p + ".bias"] = [d]
            e[b + attn + ".norm_q.weight"] = [d]
            e[b + attn + ".norm_k.weight"] = [d]
        if i2v:
            for p in ("k_img", "v_img"):
                e[b + "cross_attn." + p + ".weight"] = [d, d]
                e[b + "cross_attn." + p + ".bias"] = [d]
            e[b + "cross_attn.norm_k_img.weight"] = [d]
        e[b + "norm3.weight"] = [d]
        e[b + "norm3.bias"] = [d]
        e[b + "ffn.0.weight"] = [f, d]
        e[b + "ffn.0.bias"] = [f]
        e[b + "ffn.2.weight"] = [d, f]
        e[b + "ffn.2.bias"] = [d]
        e[b + "modulation"] = [1, 6, d]
    if i2v:
        e.update({"img_emb.proj.0.weight": [1280], "img_emb.proj.0.bias": [1280],
                  "img_emb.proj.1.weight": [1280, 1280], "img_emb.proj.1.bias": [1280],
                  "img_emb.proj.3.weight": [d, 1280], "img_emb.proj.3.bias": [d],
                  "img_emb.proj.4.weight": [d], "img_emb.proj.4.bias": [d]})
    return e


def write(path, *args):
    r = subprocess.run([sys.executable, WRITER, path, "--generator", "stdlib", "--quiet"] + list(args),
                       capture_output=True, text=True)
    check(r.returncode == 0, "writer %s exits 0 (%s)" % (" ".join(args), r.stderr.strip()[-300:]))
    return r


def check_file(path, expect, st_dtype, size):
    header, meta, start, fsize = rs.read_header(path)
    try:
        rs.check_layout(header, start, fsize)
    except rs.FormatError as e:
        check(False, "layout: %s" % e)
    check(start % 8 == 0, "data starts 8-byte aligned")
    check(set(header) == set(expect), "key set: extra %s, missing %s" % (
        sorted(set(header) - set(expect))[:5], sorted(set(expect) - set(header))[:5]))
    for name, shape in expect.items():
        t = header.get(name)
        if t is None:
            continue
        check(t["shape"] == shape, "%s shape %s, expected %s" % (name, t["shape"], shape))
        check(t["dtype"] == st_dtype, "%s dtype %s" % (name, t["dtype"]))
    total = sum(math.prod(s) for s in expect.values()) * size
    check(fsize == start + total, "file size %d = header + %d data bytes" % (fsize, total))
    check("config" not in meta, "no 'config' metadata (ComfyUI 0.33 would read a model config from it)")
    check(meta.get("format") == "pt", "metadata format=pt")
    return header, start


def main():
    tmp = tempfile.mkdtemp(prefix="wan-ckpt-test-")
    d, f, blocks = 128, 256, 2

    # bf16, t2v: the shape ComfyUI detects as WAN 2.1 t2v.
    p = os.path.join(tmp, "a.safetensors")
    write(p, "--dim", str(d), "--ffn", str(f), "--blocks", str(blocks), "--seed", "7")
    exp = expected_t2v(d, f, blocks)
    header, start = check_file(p, exp, "BF16", 2)
    check("head.modulation" in header, "head.modulation present (ComfyUI's WAN detection key)")
    check(header["head.head.weight"]["shape"][0] // 4 == 16, "out_dim 16 from head.head")
    check(header["patch_embedding.weight"]["shape"][1] == 16, "in_dim 16 from patch_embedding (t2v)")
    check(not any(k.startswith("img_emb.") for k in header), "no img_emb: ComfyUI calls it t2v")

    # Values: finite, bf16 of small magnitude; norm weights in [1, 2).
    big = 0.0
    for name, t in header.items():
        vals = rs.bf16_values(rs.read_raw(p, name, header, start))
        check(all(math.isfinite(v) for v in vals), "%s: all finite" % name)
        if name.endswith(("norm_q.weight", "norm_k.weight", "norm3.weight")):
            check(all(1.0 <= v < 2.0 for v in vals), "%s: norm weights in [1, 2)" % name)
        else:
            m = max(abs(v) for v in vals)
            big = max(big, m)
            check(m > 0, "%s: not all zero" % name)
            pos = sum(1 for v in vals if v > 0)
            check(0.3 < pos / len(vals) < 0.7 or len(vals) < 64, "%s: both signs" % name)
    check(big < 1.0, "largest weight magnitude %.3g below 1" % big)
    q = rs.bf16_values(rs.read_raw(p, "blocks.0.self_attn.q.weight", header, start))
    check(max(abs(v) for v in q) <= 1 / math.sqrt(d), "q.weight below 1/sqrt(fan_in)")

    # Deterministic for a seed; another seed gives other values; blocks do not depend on
    # how many blocks the file has.
    p2 = os.path.join(tmp, "b.safetensors")
    write(p2, "--dim", str(d), "--ffn", str(f), "--blocks", str(blocks), "--seed", "7")
    with open(p, "rb") as fa, open(p2, "rb") as fb:
        check(fa.read() == fb.read(), "same seed: same bytes")
    p3 = os.path.join(tmp, "c.safetensors")
    write(p3, "--dim", str(d), "--ffn", str(f), "--blocks", "3", "--seed", "8")
    h3, s3 = rs.read_header(p3)[0], rs.read_header(p3)[2]
    check(rs.read_raw(p3, "blocks.0.ffn.0.weight", h3, s3) != rs.read_raw(p, "blocks.0.ffn.0.weight", header, start),
          "another seed: other values")
    p4 = os.path.join(tmp, "d.safetensors")
    write(p4, "--dim", str(d), "--ffn", str(f), "--blocks", "3", "--seed", "7")
    h4, s4 = rs.read_header(p4)[0], rs.read_header(p4)[2]
    check(rs.read_raw(p4, "blocks.1.ffn.2.weight", h4, s4) == rs.read_raw(p, "blocks.1.ffn.2.weight", header, start),
          "a block's values do not depend on the block count")
    check_file(p4, expected_t2v(d, f, 3), "BF16", 2)

    # fp32 holds the bf16 values exactly; fp16 is their rounding.
    p5 = os.path.join(tmp, "e.safetensors")
    write(p5, "--dim", str(d), "--ffn", str(f), "--blocks", str(blocks), "--seed", "7", "--dtype", "fp32")
    h5, s5 = check_file(p5, exp, "F32", 4)
    a = rs.bf16_values(rs.read_raw(p, "blocks.1.modulation", header, start))
    b = rs.values(rs.read_raw(p5, "blocks.1.modulation", h5, s5), "F32")
    check(list(a) == list(b), "fp32 file holds the bf16 values exactly")
    p6 = os.path.join(tmp, "f.safetensors")
    write(p6, "--dim", str(d), "--ffn", str(f), "--blocks", "1", "--dtype", "fp16")
    h6, s6 = check_file(p6, expected_t2v(d, f, 1), "F16", 2)
    v6 = rs.values(rs.read_raw(p6, "blocks.0.ffn.0.weight", h6, s6), "F16")
    check(all(math.isfinite(v) for v in v6), "fp16 values finite")

    # i2v: the extra keys ComfyUI keys on (img_emb.proj.0.bias => i2v, in_dim 36).
    p7 = os.path.join(tmp, "g.safetensors")
    write(p7, "--dim", str(d), "--ffn", str(f), "--blocks", "1", "--model-type", "i2v")
    check_file(p7, expected_t2v(d, f, 1, in_dim=36, i2v=True), "BF16", 2)

    # 14B: the per-block size DESIGN.md quotes (about 670 MiB at 16-bit), without writing.
    sys.path.insert(0, os.path.dirname(WRITER))
    import write_wan_checkpoint as w
    bb = w.block_bytes(5120, 13824)
    check(669 << 20 < bb < 671 << 20, "14B block is %.1f MiB" % (bb / (1 << 20)))
    full = sum(math.prod(s) for s in expected_t2v(5120, 13824, 40).values()) * 2
    listed = sum(math.prod(s) for _, s, _ in w.wan_tensors(5120, 13824, 40)) * 2
    check(full == listed, "14B key shapes agree with the hand-written set (%d bytes)" % full)

    # Refusals: dim not a multiple of 128 (ComfyUI takes heads = dim // 128).
    r = subprocess.run([sys.executable, WRITER, os.path.join(tmp, "x.safetensors"), "--dim", "200"],
                       capture_output=True, text=True)
    check(r.returncode == 2 and "multiple of 128" in r.stderr, "--dim 200 refused with a reason")
    check(not os.path.exists(os.path.join(tmp, "x.safetensors")), "nothing written when refused")

    for n in os.listdir(tmp):
        os.unlink(os.path.join(tmp, n))
    os.rmdir(tmp)
    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
