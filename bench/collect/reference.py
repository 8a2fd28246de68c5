#!/usr/bin/env python3
"""The collection script a user would otherwise write: read tasks.jsonl for the
parameters, json.load every results/<i>.json, and write one CSV row per task.
Usage: reference.py SWEEP OUT.csv"""
import csv
import json
import os
import sys


def main():
    sweep, out = sys.argv[1], sys.argv[2]
    params = {}
    with open(os.path.join(sweep, "tasks.jsonl")) as f:
        for line in f:
            t = json.loads(line)
            params[t["index"]] = t["params"]
    rows = []
    metric_names = []
    seen = set()
    results = os.path.join(sweep, "results")
    for name in os.listdir(results):
        if not name.endswith(".json"):
            continue
        try:
            index = int(name[:-5])
        except ValueError:
            continue
        with open(os.path.join(results, name)) as f:
            r = json.load(f)
        rows.append((index, r))
    rows.sort(key=lambda x: x[0])
    for _, r in rows:
        for m in r.get("metrics", {}):
            if m not in seen:
                seen.add(m)
                metric_names.append(m)
    param_names = list(params[0].keys()) if params else []
    with open(out, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["index", "status"] + param_names + metric_names + ["exit_code", "elapsed_s", "node"])
        for index, r in rows:
            p = params[index]
            m = r.get("metrics", {})
            w.writerow([index, "done" if r["exit_code"] == 0 else "failed"]
                       + [p.get(k, "") for k in param_names]
                       + [m.get(k, "") for k in metric_names]
                       + [r["exit_code"], "%.3f" % r["elapsed_s"], r.get("node") or ""])


if __name__ == "__main__":
    main()
