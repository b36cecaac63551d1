#!/usr/bin/env python3
"""Writes a valid canister module of about SIZE bytes: an active data segment of random
(incompressible) bytes, a memory large enough for it and one query method. For install-time
benchmarks. Usage: make-big-module.py OUT SIZE"""
import os, sys

def leb(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)

def section(sid, payload):
    return bytes([sid]) + leb(len(payload)) + payload

def name(s):
    return leb(len(s)) + s.encode()

out, size = sys.argv[1], int(sys.argv[2])
data = os.urandom(size)
pages = size // 65536 + 2
module = b"\0asm" + (1).to_bytes(4, "little")
module += section(1, leb(1) + b"\x60\x00\x00")                       # type: () -> ()
module += section(3, leb(1) + leb(0))                                 # one function
module += section(5, leb(1) + b"\x00" + leb(pages))                   # memory, min pages
module += section(7, leb(1) + name("canister_query noop") + b"\x00" + leb(0))
module += section(10, leb(1) + leb(2) + b"\x00\x0b")                  # empty body
segment = b"\x00" + b"\x41\x00\x0b" + leb(len(data)) + data           # active, offset i32.const 0
module += section(11, leb(1) + segment)
with open(out, "wb") as f:
    f.write(module)
print(f"{out}: {len(module)} bytes")
