#!/usr/bin/env python3
"""Reads a safetensors file's header and tensors with the standard library alone, and
checks the layout (what the safetensors library would refuse): used by the tests of the
checkpoint writer and by scripts/gpu-comfyui to describe a checkpoint it reuses."""

import json
import math
import struct
import sys

SIZES = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
         "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


class FormatError(ValueError):
    pass


def read_header(path):
    """(header dict without __metadata__, metadata dict, data start offset, file size)."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise FormatError("%s: shorter than 8 bytes" % path)
        (n,) = struct.unpack("<Q", head)
        if n > 100 << 20:
            raise FormatError("%s: header of %d bytes" % (path, n))
        raw = f.read(n)
        f.seek(0, 2)
        size = f.tell()
    if len(raw) != n:
        raise FormatError("%s: header cut short" % path)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise FormatError("%s: header is not JSON: %s" % (path, e))
    meta = header.pop("__metadata__", {}) or {}
    return header, meta, 8 + n, size


def check_layout(header, data_start, size):
    """Raises FormatError unless tensors tile the data area exactly, in offset order."""
    spans = []
    for name, t in header.items():
        if t.get("dtype") not in SIZES:
            raise FormatError("%s: dtype %r" % (name, t.get("dtype")))
        begin, end = t["data_offsets"]
        want = math.prod(t["shape"]) * SIZES[t["dtype"]]
        if end - begin != want:
            raise FormatError("%s: %d bytes for shape %s %s" % (name, end - begin, t["shape"], t["dtype"]))
        spans.append((begin, end, name))
    spans.sort()
    pos = 0
    for begin, end, name in spans:
        if begin != pos:
            raise FormatError("%s: starts at %d, expected %d" % (name, begin, pos))
        pos = end
    if data_start + pos != size:
        raise FormatError("data ends at %d, file has %d bytes" % (data_start + pos, size))


def read_raw(path, name, header=None, data_start=None):
    """The bytes of one tensor."""
    if header is None:
        header, _, data_start, _ = read_header(path)
    begin, end = header[name]["data_offsets"]
    with open(path, "rb") as f:
        f.seek(data_start + begin)
        return f.read(end - begin)


def bf16_values(raw):
    """bf16 bytes -> Python floats (exact: bf16 is the upper half of an fp32)."""
    n = len(raw) // 2
    wide = bytearray(4 * n)
    wide[2::4] = raw[0::2]
    wide[3::4] = raw[1::2]
    return struct.unpack("<%df" % n, wide)


def values(raw, dtype):
    if dtype == "BF16":
        return bf16_values(raw)
    if dtype == "F16":
        return struct.unpack("<%de" % (len(raw) // 2), raw)
    if dtype == "F32":
        return struct.unpack("<%df" % (len(raw) // 4), raw)
    raise FormatError("dtype %s not decoded here" % dtype)


def main(argv):
    if len(argv) != 2:
        print("usage: read_safetensors.py FILE", file=sys.stderr)
        return 2
    header, meta, start, size = read_header(argv[1])
    check_layout(header, start, size)
    for k, v in sorted(meta.items()):
        print("# %s = %s" % (k, v))
    for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        print("%-40s %-5s %s" % (name, t["dtype"], t["shape"]))
    print("# %d tensors, %d bytes" % (len(header), size))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
