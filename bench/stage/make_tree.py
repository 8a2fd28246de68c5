#!/usr/bin/env python3
"""Writes the staging benchmark's source tree: N files of 2-20 KB in 100-file dirs."""
import os
import random
import sys

root, count = sys.argv[1], int(sys.argv[2])
rng = random.Random(20240611)
pool = os.urandom(1 << 20)
for i in range(count):
    d = os.path.join(root, "d%03d" % (i // 100))
    if i % 100 == 0:
        os.makedirs(d, exist_ok=True)
    size = rng.randint(2048, 20480)
    start = rng.randint(0, len(pool) - size)
    with open(os.path.join(d, "f%05d.bin" % i), "wb") as f:
        f.write(pool[start:start + size])
