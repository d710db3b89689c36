#!/usr/bin/env python3
"""The simulator exports exactly the symbols listed in exports.def, all named cu*.

usage: check-exports.py LIBCUDA EXPORTS_DEF
"""
import re
import subprocess
import sys

lib, spec = sys.argv[1], sys.argv[2]
out = subprocess.run(['nm', '-D', '--defined-only', lib], check=True, capture_output=True, text=True).stdout
exported = {line.split()[-1] for line in out.splitlines() if line.strip()}
listed = set(re.findall(r'^SIM_API\(\s*\w+\s*,\s*\d+\s*,\s*(\w+)\s*,', open(spec).read(), re.M))
ok = True
for name in sorted(exported - listed):
    print(f'exported but not in exports.def: {name}')
    ok = False
for name in sorted(listed - exported):
    print(f'in exports.def but not exported: {name}')
    ok = False
for name in sorted(n for n in exported if not n.startswith('cu')):
    print(f'non-cu symbol exported: {name}')
    ok = False
print(f'{len(exported)} symbols exported')
sys.exit(0 if ok else 1)
