#!/usr/bin/env python3
"""The baseline a user would otherwise write: itertools.product + json, one line per
task, plus a byte-offset index, for the same 6-axis grid that run.sh expands."""
import itertools
import json
import os
import struct
import sys
import zlib

AXES = [
    ("lr", [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3]),
    ("bs", [16, 32, 48, 64, 80, 96, 112, 128, 144, 160]),
    ("opt", ["sgd", "adam", "adamw", "lamb", "lion", "rmsprop", "adagrad", "nadam", "radam", "sophia"]),
    ("wd", [0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09]),
    ("drop", [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]),
    ("warmup", [0, 100, 200, 300, 400, 500, 600, 700, 800, 900]),
]


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    names = [name for name, _ in AXES]
    offset = 0
    with open(os.path.join(out, "tasks.jsonl"), "w") as lines, open(os.path.join(out, "tasks.idx"), "wb") as idx:
        for index, values in enumerate(itertools.product(*(v for _, v in AXES))):
            params = json.dumps(dict(zip(names, values)), separators=(",", ":"))
            seed = zlib.crc32(params.encode())
            line = '{"index":%d,"params":%s,"task_seed":%d}\n' % (index, params, seed)
            idx.write(struct.pack("<Q", offset))
            lines.write(line)
            offset += len(line)


if __name__ == "__main__":
    main()
