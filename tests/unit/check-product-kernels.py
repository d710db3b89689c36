#!/usr/bin/env python3
"""Only product code in the product: libblockswap.so must carry the PTX of its own
kernels (src/kernels/bs_fingerprint_ptx.h) and not one test kernel
(tests/kernels/bs_kernels_ptx.h).

usage: check-product-kernels.py LIBRARY PRODUCT_PTX_H TEST_PTX_H

The entry names come from the committed headers, so a kernel added to either side is
covered without touching this script. Every product entry must appear in the library
as `.entry NAME(` (its PTX is embedded, not merely its name); no test-only entry name
may appear anywhere in the library's bytes."""
import re
import sys

ENTRY = re.compile(r"\.entry\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(")


def entries(header):
    with open(header) as f:
        names = set(ENTRY.findall(f.read()))
    if not names:
        sys.exit(f"check-product-kernels: no `.entry NAME(` in {header}")
    return names


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__.split("\n\n")[1])
    lib, product_h, test_h = sys.argv[1:]
    product = entries(product_h)
    test_only = entries(test_h) - product
    if not test_only:
        sys.exit(f"check-product-kernels: {test_h} has no entry that {product_h} lacks")
    with open(lib, "rb") as f:
        data = f.read()

    bad = []
    for name in sorted(product):
        if not re.search(rb"\.entry\s+" + re.escape(name.encode()) + rb"\s*\(", data):
            bad.append(f"product kernel {name}: no `.entry {name}(` in {lib}")
    for name in sorted(test_only):
        hits = [m.start() for m in re.finditer(
            rb"(?<![A-Za-z0-9_])" + re.escape(name.encode()) + rb"(?![A-Za-z0-9_])", data)]
        if hits:
            bad.append(f"test kernel {name} in {lib} ({len(hits)} times, first at byte "
                       f"{hits[0]}): is a test kernels header included in src/?")
    for line in bad:
        print(line, file=sys.stderr)
    if bad:
        return 1
    print(f"{lib}: product kernels {', '.join(sorted(product))} present; none of the "
          f"{len(test_only)} test kernels ({', '.join(sorted(test_only))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
