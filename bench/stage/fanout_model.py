#!/usr/bin/env python3
"""Read once per job: time to stage one dataset onto N nodes, and the bytes read
from the shared file system, for three ways of doing it:

  (i)   every node reads the dataset from the shared FS;
  (ii)  one node reads it and a tree of width W forwards it, pipelined per block
        (the best a block-wise tree can do);
  (iii) sbcast as Slurm 22.05 codes it: tree width min(8, --fanout), and each
        block goes down the whole tree and its replies come back before the
        next block is sent (stop-and-wait per block).

Analytic, no simulation. bench/stage/README ("Read once per job") states every
assumption. Usage: fanout_model.py [--size-gb 500] [--width 16] [--json] ..."""
import argparse
import json
import math

NODES = (1, 2, 4, 8, 16, 64, 256, 1000)


def depth(n, w):
    """Hops from the sender to the farthest of n nodes in Slurm's forwarding
    tree: the sender sends to up to w nodes, each forwards to up to w more, so
    d hops reach w + w^2 + ... + w^d nodes (= ceil(log_w n) for these n)."""
    d, reach, level = 0, 0, 1
    while reach < n:
        d += 1
        level *= w
        reach += level
    return max(d, 1)


def all_from_fs(p, n):
    rate = min(p["node_bw"], p["fs_bw"] / n)
    return p["size_gb"] / rate, n * p["size_gb"]


def wire_and_cpu(p, lz4):
    ratio = p["lz4_ratio"] if lz4 else 1.0
    cpu = p["lz4_gbs"] if lz4 else math.inf   # one sender thread compresses
    return ratio, cpu


def tree_pipelined(p, n, lz4):
    w = p["width"]
    ratio, cpu = wire_and_cpu(p, lz4)
    b = p["block_mb"] / 1000.0                 # GB of data per block
    nblocks = math.ceil(p["size_gb"] / b)
    copies = min(w, n)                          # busiest sender's egress copies
    stage = max(b / p["fs_client_bw"],          # source reads the block
                b / cpu,                        # source compresses it
                copies * (b / ratio) / p["nic_bw"],  # sender's NIC
                b / p["nvme_write"])            # a receiver writes it
    hop = p["hop_ms"] / 1000.0 + (b / ratio) / p["nic_bw"]
    d = depth(n, w)
    return d * hop + (nblocks - 1) * stage + b / p["nvme_write"], p["size_gb"]


def sbcast_coded(p, n, lz4):
    w = min(8, p["sbcast_fanout"])
    ratio, cpu = wire_and_cpu(p, lz4)
    wire = p["sbcast_block_kib"] * 1024 / 1e9  # GB on the wire per block
    data = wire * min(ratio, 10.0)              # lz4 packs up to 10x into a block
    nblocks = math.ceil(p["size_gb"] / data)
    d = depth(n, w)
    copies = min(w, n)
    per_block = (data / p["fs_client_bw"] + data / cpu      # read + compress
                 + d * (p["hop_ms"] / 1000.0 + copies * wire / p["nic_bw"])  # down
                 + data / p["nvme_write"]                    # leaf writes
                 + d * p["hop_ms"] / 1000.0)                 # replies up
    return nblocks * per_block, p["size_gb"]


def fmt_t(s):
    if s < 120:
        return "%.0f s" % s
    if s < 7200:
        return "%.1f min" % (s / 60)
    return "%.1f h" % (s / 3600)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-gb", type=float, default=500.0)
    ap.add_argument("--fs-bw", type=float, default=100.0, help="shared FS aggregate GB/s")
    ap.add_argument("--fs-client-bw", type=float, default=25.0, help="one client's FS read GB/s")
    ap.add_argument("--nic-bw", type=float, default=25.0, help="per-node NIC GB/s (200 Gb/s)")
    ap.add_argument("--nvme-write", type=float, default=7.0, help="per-node cache write GB/s")
    ap.add_argument("--width", type=int, default=16, help="tree width for (ii)")
    ap.add_argument("--block-mb", type=float, default=8.0, help="block for (ii), MB")
    ap.add_argument("--hop-ms", type=float, default=1.0, help="per hop, per message: connect+auth")
    ap.add_argument("--lz4-ratio", type=float, default=2.0)
    ap.add_argument("--lz4-gbs", type=float, default=0.7, help="lz4 compression, one thread, GB/s")
    ap.add_argument("--sbcast-fanout", type=int, default=8)
    ap.add_argument("--sbcast-block-kib", type=float, default=512.0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    p = vars(a).copy()
    p.pop("json")
    p["node_bw"] = min(p["nic_bw"], p["nvme_write"])
    rows = []
    for n in NODES:
        t1, b1 = all_from_fs(p, n)
        t2, b2 = tree_pipelined(p, n, False)
        t2z, _ = tree_pipelined(p, n, True)
        t3, b3 = sbcast_coded(p, n, False)
        t3z, _ = sbcast_coded(p, n, True)
        rows.append(dict(n=n, depth_w=depth(n, p["width"]), depth_sbcast=depth(n, min(8, p["sbcast_fanout"])),
                         fs_all_s=t1, fs_all_gb=b1, tree_s=t2, tree_lz4_s=t2z,
                         sbcast_s=t3, sbcast_lz4_s=t3z, tree_fs_gb=b2))
    if a.json:
        print(json.dumps(dict(params=p, rows=rows), indent=1, sort_keys=True))
        return
    print("dataset %g GB; FS %g GB/s aggregate; node ingest min(NIC %g, NVMe %g) GB/s; hop %g ms;"
          " lz4 %gx at %g GB/s" % (p["size_gb"], p["fs_bw"], p["nic_bw"], p["nvme_write"],
                                  p["hop_ms"], p["lz4_ratio"], p["lz4_gbs"]))
    print("%5s | %-22s | %-31s | %-31s | %s" % (
        "", "(i) all read the FS", "(ii) tree W=%d, pipelined %gMB" % (p["width"], p["block_mb"]),
        "(iii) sbcast W=%d, %gKiB s&w" % (min(8, p["sbcast_fanout"]), p["sbcast_block_kib"]), ""))
    print("%5s | %10s %11s | %5s %12s %12s | %5s %12s %12s | %s" % (
        "N", "time", "FS read", "depth", "time", "time lz4", "depth", "time", "time lz4", "FS read"))
    for r in rows:
        print("%5d | %10s %8.0f GB | %5d %12s %12s | %5d %12s %12s | %.0f GB" % (
            r["n"], fmt_t(r["fs_all_s"]), r["fs_all_gb"], r["depth_w"], fmt_t(r["tree_s"]),
            fmt_t(r["tree_lz4_s"]), r["depth_sbcast"], fmt_t(r["sbcast_s"]), fmt_t(r["sbcast_lz4_s"]),
            r["tree_fs_gb"]))


if __name__ == "__main__":
    main()
