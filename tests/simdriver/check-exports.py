#!/usr/bin/env python3
"""The simulator exports exactly the symbols listed in exports.def, all named cu*,
and binds every reference to them inside itself locally.

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
# The simulator never calls its own exports through the dynamic linker: a preloaded
# shim defining the same names must not receive the simulator's internal calls.
relocs = subprocess.run(['readelf', '-rW', lib], check=True, capture_output=True, text=True).stdout
for line in relocs.splitlines():
    fields = line.split()
    if len(fields) >= 5 and fields[4].split('@')[0].startswith('cu'):
        print(f'dynamic relocation against an export (not bound locally): {line.strip()}')
        ok = False
print(f'{len(exported)} symbols exported')
sys.exit(0 if ok else 1)
