#!/usr/bin/env python3
"""Data gravity: a discrete-event model of a cluster whose nodes cache datasets.

Three policies run on one job trace:
  per-user   a node holds a copy per (user, dataset); warm only for the same user
  shared     one copy per node for every user; warm if anyone staged it there
  gravity    shared, and the scheduler takes free nodes that hold the job's
             dataset first (a preference: it never waits for them)

Usage: sim.py [--nodes N] [--jobs J] [--datasets D] [--users U] [--seed S]
              [--json] [--check]
bench/gravity/README gives the model and every assumption."""
import argparse
import bisect
import heapq
import json
import math
import random
import sys
from collections import OrderedDict, deque


# Sizes are in GB (1e9 bytes), bandwidths in GB/s, times in seconds.
POLICIES = ("per-user", "shared", "gravity")


def defaults():
    return dict(
        nodes=1000, jobs=20000, datasets=200, users=100, seed=1,
        zipf_s=1.0,                 # popularity of rank k is 1/k^s
        size_min=10.0, size_max=2000.0,   # GB, log-uniform
        max_log2_nodes=6,           # job size 2^k, k uniform in 0..6
        runtime_mean=4 * 3600.0,    # s, exponential (compute after staging)
        load=0.8,                   # offered load from compute time alone
        cache=7000.0,               # GB of NVMe cache per node
        fs_bw=100.0,                # GB/s shared FS aggregate, fair share
        nic_bw=25.0,                # GB/s per node (200 Gb/s)
        nvme_write=7.0,             # GB/s per node, stage-in write
        nvme_read=14.0,             # GB/s per node, first batch read
        batch=1.0,                  # GB first batch
        zero_stage=False,           # check mode: staging takes no time
    )


def make_trace(p):
    """The job trace, the same for every policy."""
    rng = random.Random(p["seed"])
    lo, hi = math.log(p["size_min"]), math.log(p["size_max"])
    sizes = [math.exp(rng.uniform(lo, hi)) for _ in range(p["datasets"])]
    # Popularity rank is independent of size: rank r -> dataset order[r].
    order = list(range(p["datasets"]))
    rng.shuffle(order)
    w = [1.0 / (k + 1) ** p["zipf_s"] for k in range(p["datasets"])]
    cum = []
    t = 0.0
    for x in w:
        t += x
        cum.append(t)
    kmax = p["max_log2_nodes"]
    mean_nodes = sum(2 ** k for k in range(kmax + 1)) / (kmax + 1)
    rate = p["load"] * p["nodes"] / (mean_nodes * p["runtime_mean"])
    jobs = []
    now = 0.0
    for i in range(p["jobs"]):
        now += rng.expovariate(rate)
        r = bisect.bisect_left(cum, rng.random() * cum[-1])
        n = min(2 ** rng.randint(0, kmax), p["nodes"])
        jobs.append(dict(id=i, submit=now, user=rng.randrange(p["users"]),
                         ds=order[min(r, len(order) - 1)], nodes=n,
                         runtime=rng.expovariate(1.0 / p["runtime_mean"])))
    return sizes, jobs


class Cache:
    """One node's cache: LRU over keys, each key holding one dataset copy."""
    __slots__ = ("cap", "used", "lru")

    def __init__(self, cap):
        self.cap = cap
        self.used = 0.0
        self.lru = OrderedDict()   # key -> size, oldest first

    def hit(self, key):
        if key in self.lru:
            self.lru.move_to_end(key)
            return True
        return False

    def insert(self, key, size, on_evict):
        assert size <= self.cap
        while self.used + size > self.cap:
            k, s = self.lru.popitem(last=False)
            self.used -= s
            on_evict(k)
        self.lru[key] = size
        self.used += size


def simulate(p, sizes, jobs, policy):
    N = p["nodes"]
    caches = [Cache(p["cache"]) for _ in range(N)]
    holders = {}   # key -> set of nodes holding it (for gravity's lookup)
    free = set(range(N))
    queue = deque()
    events = []    # (time, seq, kind, payload)
    seq = 0
    cap = min(p["nic_bw"], p["nvme_write"])
    first_batch = p["batch"] / p["nvme_read"]

    # Fluid model of the shared FS: n concurrent readers each get
    # min(cap, fs_bw / n). All readers have one rate, so track the service
    # S(t) each reader has had since t=0; a read of b GB started at S0 ends
    # when S reaches S0 + b.
    S = 0.0
    S_time = 0.0
    readers = []   # heap of (S_end, seq, job_id, node)

    def rate():
        n = len(readers)
        return min(cap, p["fs_bw"] / n) if n else 0.0

    def advance(t):
        nonlocal S, S_time
        if readers:
            S += (t - S_time) * rate()
        S_time = t

    fs_bytes = 0.0
    warm = 0
    allocs = 0
    state = {}
    res = {}
    waits_ok = True

    def key_of(job):
        return (job["user"], job["ds"]) if policy == "per-user" else job["ds"]

    def on_evict_for(node):
        def f(k):
            s = holders.get(k)
            if s is not None:
                s.discard(node)
        return f

    def choose(job):
        n = job["nodes"]
        if policy == "gravity":
            h = holders.get(key_of(job), ())
            wf = sorted(x for x in h if x in free) if len(h) < len(free) \
                else sorted(x for x in free if x in h)
            chosen = wf[:n]
            if len(chosen) < n:
                got = set(chosen)
                rest = [x for x in sorted(free) if x not in got]
                chosen += rest[:n - len(chosen)]
            return chosen
        return sorted(free)[:n]   # first fit in node order, as Slurm without weights

    def start(job, now):
        nonlocal seq, fs_bytes, warm, allocs
        nodes = choose(job)
        for x in nodes:
            free.discard(x)
        k = key_of(job)
        size = sizes[job["ds"]]
        cold = []
        for x in nodes:
            allocs += 1
            if caches[x].hit(k):
                warm += 1
            else:
                cold.append(x)
                caches[x].insert(k, size, on_evict_for(x))
                holders.setdefault(k, set()).add(x)
        st = dict(job=job, nodes=nodes, alloc=now, pending=len(cold))
        state[job["id"]] = st
        if cold and not p["zero_stage"]:
            advance(now)
            for x in cold:
                fs_bytes += size
                seq += 1
                heapq.heappush(readers, (S + size, seq, job["id"], x))
        else:
            fs_bytes += size * len(cold)
            staged(st, now)

    def staged(st, now):
        nonlocal seq
        job = st["job"]
        ttfb = (st["alloc"] - job["submit"]) + (now - st["alloc"]) + first_batch
        res[job["id"]] = dict(wait=st["alloc"] - job["submit"],
                              stage=now - st["alloc"], ttfb=ttfb)
        seq += 1
        heapq.heappush(events, (now + job["runtime"], seq, "end", job["id"]))

    def schedule(now):
        nonlocal waits_ok
        while queue and len(free) >= queue[0]["nodes"]:
            start(queue.popleft(), now)
        # Invariant: the head never waits while enough nodes are free.
        if queue and len(free) >= queue[0]["nodes"]:
            waits_ok = False

    for j in jobs:
        seq += 1
        heapq.heappush(events, (j["submit"], seq, "submit", j["id"]))

    while events or readers:
        t_ev = events[0][0] if events else math.inf
        t_rd = math.inf
        if readers:
            r = rate()
            t_rd = S_time + (readers[0][0] - S) / r
        if t_rd <= t_ev:
            advance(t_rd)
            _, _, jid, x = heapq.heappop(readers)
            st = state[jid]
            st["pending"] -= 1
            if st["pending"] == 0:
                staged(st, t_rd)
            continue
        now, _, kind, jid = heapq.heappop(events)
        advance(now)
        if kind == "submit":
            queue.append(jobs[jid])
        else:
            st = state.pop(jid)
            for x in st["nodes"]:
                free.add(x)
        schedule(now)

    assert len(res) == len(jobs), "some jobs never ran"
    return dict(fs_bytes=fs_bytes, warm=warm, allocs=allocs, per_job=res,
                waits_ok=waits_ok)


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return 0.0
    i = min(len(xs) - 1, max(0, int(math.ceil(q * len(xs))) - 1))
    return xs[i]


def summarize(r):
    pj = r["per_job"].values()
    tt = [v["ttfb"] for v in pj]
    return dict(
        fs_tb=r["fs_bytes"] / 1000.0,
        hit_rate=r["warm"] / r["allocs"] if r["allocs"] else 0.0,
        ttfb_mean=sum(tt) / len(tt), ttfb_p50=pct(tt, 0.5), ttfb_p95=pct(tt, 0.95),
        wait_mean=sum(v["wait"] for v in pj) / len(tt),
        stage_mean=sum(v["stage"] for v in pj) / len(tt),
    )


def run_all(p):
    sizes, jobs = make_trace(p)
    raw = {pol: simulate(p, sizes, jobs, pol) for pol in POLICIES}
    return sizes, jobs, raw


def check():
    fails = []

    def ok(cond, msg):
        print(("ok   " if cond else "FAIL ") + msg)
        if not cond:
            fails.append(msg)

    base = defaults()
    base.update(nodes=100, jobs=1500, datasets=40, users=10, seed=7)

    # 1. Deterministic for a seed.
    a = run_all(base)[2]
    b = run_all(base)[2]
    ok(all(a[k]["fs_bytes"] == b[k]["fs_bytes"] and a[k]["per_job"] == b[k]["per_job"]
           for k in POLICIES), "same seed, same results")

    # 2. One user: per-user and shared are the same cache, so the same bytes.
    one = dict(base, users=1)
    r1 = run_all(one)[2]
    ok(r1["per-user"]["fs_bytes"] == r1["shared"]["fs_bytes"]
       and r1["per-user"]["per_job"] == r1["shared"]["per_job"],
       "1 user: per-user and shared identical (%.1f TB)" % (r1["shared"]["fs_bytes"] / 1000))

    # 3. Bytes read >= the first touch of every key the policy distinguishes.
    sizes, jobs, raw = run_all(base)
    ft_ds = sum(sizes[d] for d in {j["ds"] for j in jobs})
    ft_ud = sum(sizes[ds] for _, ds in {(j["user"], j["ds"]) for j in jobs})
    for pol in POLICIES:
        need = ft_ud if pol == "per-user" else ft_ds
        ok(raw[pol]["fs_bytes"] >= need - 1e-6,
           "%s: FS bytes %.1f TB >= first touches %.1f TB" % (pol, raw[pol]["fs_bytes"] / 1000, need / 1000))
    ok(raw["shared"]["fs_bytes"] <= raw["per-user"]["fs_bytes"] + 1e-6,
       "shared reads no more than per-user (this seed; not a theorem)")

    # 4. The head of the FIFO queue never waits while enough nodes are free,
    #    under every policy (gravity never waits for warm nodes).
    ok(all(raw[pol]["waits_ok"] for pol in POLICIES), "no head-of-queue wait with enough free nodes")

    # 5. With staging free (no FS time), node choice cannot change timing:
    #    gravity's queue wait equals FIFO-any-node's for every job.
    z = dict(base, zero_stage=True)
    rz = run_all(z)[2]
    ok(all(rz["gravity"]["per_job"][i]["wait"] == rz["shared"]["per_job"][i]["wait"]
           for i in rz["shared"]["per_job"]),
       "zero stage time: gravity waits == FIFO-any-node waits, job by job")
    ok(rz["gravity"]["fs_bytes"] <= rz["shared"]["fs_bytes"] + 1e-6,
       "zero stage time: gravity reads no more than shared (this seed; not a theorem)")

    # 6. Hit counts in range and stage time never negative.
    for pol in POLICIES:
        r = raw[pol]
        ok(0 <= r["warm"] <= r["allocs"] and all(v["stage"] >= 0 and v["wait"] >= 0
                                                 for v in r["per_job"].values()),
           "%s: 0 <= hits <= allocations, waits and stages >= 0" % pol)

    print("check: %d failure(s)" % len(fails))
    return 1 if fails else 0


def main():
    d = defaults()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for k in ("nodes", "jobs", "datasets", "users", "seed"):
        ap.add_argument("--" + k, type=int, default=d[k])
    for k in ("zipf_s", "load", "cache", "fs_bw", "nvme_write"):
        ap.add_argument("--" + k.replace("_", "-"), dest=k, type=float, default=d[k])
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--check", action="store_true", help="assert invariants on small runs")
    a = ap.parse_args()
    if a.check:
        sys.exit(check())
    p = dict(d)
    for k in ("nodes", "jobs", "datasets", "users", "seed", "zipf_s", "load", "cache",
              "fs_bw", "nvme_write"):
        p[k] = getattr(a, k)
    sizes, jobs, raw = run_all(p)
    out = {pol: summarize(raw[pol]) for pol in POLICIES}
    ratio = raw["per-user"]["fs_bytes"] / raw["gravity"]["fs_bytes"] if raw["gravity"]["fs_bytes"] else math.inf
    span = max(j["submit"] for j in jobs)
    if a.json:
        print(json.dumps(dict(params=p, trace_days=span / 86400, policies=out,
                              fs_ratio_per_user_vs_gravity=ratio), indent=1, sort_keys=True))
        return
    print("nodes=%d jobs=%d datasets=%d users=%d seed=%d zipf_s=%g load=%g cache=%gGB "
          "fs=%gGB/s node=%gGB/s trace=%.1f days" % (
              p["nodes"], p["jobs"], p["datasets"], p["users"], p["seed"], p["zipf_s"],
              p["load"], p["cache"], p["fs_bw"], min(p["nic_bw"], p["nvme_write"]), span / 86400))
    print("%-9s %10s %6s %10s %10s %10s %10s %10s" % (
        "policy", "FS read TB", "hit", "TTFB mean", "TTFB p50", "TTFB p95", "wait mean", "stage mean"))
    for pol in POLICIES:
        o = out[pol]
        print("%-9s %10.1f %5.1f%% %9.1fs %9.1fs %9.1fs %9.1fs %9.1fs" % (
            pol, o["fs_tb"], 100 * o["hit_rate"], o["ttfb_mean"], o["ttfb_p50"], o["ttfb_p95"],
            o["wait_mean"], o["stage_mean"]))
    print("shared-FS bytes, per-user / shared+gravity: %.2fx" % ratio)


if __name__ == "__main__":
    main()
