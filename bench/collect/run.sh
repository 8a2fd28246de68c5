#!/bin/bash
# Collecting 100,000 and 1,000,000 results: aihpc-collect against
# bench/collect/reference.py (tasks.jsonl plus json.load of every result file, one CSV row
# per task), in the same run, on the same files (warm page cache for both: the first run
# of each is not timed). For each size:
#   1. the whole table as CSV, and the peak memory of each;
#   2. --sort loss --top 10 (the question a user asks most);
#   3. --failed (the result scan alone).
# The goals: at 100,000 results, 10x the reference's speed in under 64 MiB; at 1,000,000,
# under 256 MiB.
# Usage: bench/collect/run.sh [BUILD_DIR] [SIZES]   (default: the source tree, "100000 1000000")
# A million result files take about 4 GB of disk (a block each) while they are measured.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$here}
sizes=${2:-100000 1000000}
sweep_tool=$build/tools/aihpc-sweep
collect_tool=$build/tools/aihpc-collect
for t in "$sweep_tool" "$collect_tool"; do
  [ -x "$t" ] || { echo "bench/collect: build $(basename "$t") first" >&2; exit 1; }
done
work=$(mktemp -d /tmp/aihpc-bench-collect.XXXXXX)
trap 'rm -rf "$work"' EXIT

# Realistic result files, as aihpc-sweep run writes them (one task in 97 fails), written
# by as many processes as there are cores.
make_results() {
  local tasks=$1
  rm -rf "$work/s"
  "$sweep_tool" expand "a=range(0,$tasks)" 'lr=1e-4,1e-3' 'opt=sgd' -o "$work/s" -- true >/dev/null
  python3 - "$work/s" "$tasks" <<'PY'
import json, multiprocessing, os, sys
sweep, n = sys.argv[1], int(sys.argv[2])

def write(line):
    t = json.loads(line)
    i = t["index"]
    r = {"index": i, "phase": "main", "params": t["params"], "task_seed": t["task_seed"],
         "exit_code": 1 if i % 97 == 5 else 0, "start": "2024-06-11T12:00:00+00:00",
         "end": "2024-06-11T12:01:00+00:00", "elapsed_s": 60.125, "node": "n%d" % (i % 2 + 1),
         "job_id": 1000 + i, "array_job_id": 999, "array_task_id": i % 1001, "command": ["python", "train.py"],
         "metrics": {"loss": (i * 7919 % 10007) / 10007.0, "acc": 1 - (i % 1000) / 1000.0, "epoch": 10},
         "provenance": {"spec_hash": "0123456789abcdef", "git_commit": None, "container": None,
                        "container_digest": None, "staged": [], "binding": {"cpus": "0-3", "mems": "0", "gpus": None}}}
    with open(os.path.join(sweep, "results", "%d.json" % i), "w") as out:
        out.write(json.dumps(r, separators=(",", ":")) + "\n")

with open(os.path.join(sweep, "tasks.jsonl")) as f, multiprocessing.Pool() as pool:
    for _ in pool.imap_unordered(write, (line for _, line in zip(range(n), f)), chunksize=1000):
        pass
PY
}

# best wall seconds of N runs of a command (after one untimed warm-up, unless warm=0:
# the runs before it have read the same files)
best_of() {
  local n=$1; shift
  [ "${warm:-1}" = 0 ] || "$@" >/dev/null
  local best= t0 t1 s
  for ((r = 0; r < n; r++)); do
    t0=$(date +%s%N)
    "$@" >/dev/null
    t1=$(date +%s%N)
    s=$(awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.3f", ns / 1e9 }')
    if [ -z "$best" ] || awk "BEGIN{exit !($s < $best)}"; then best=$s; fi
  done
  echo "$best"
}
ratio() { awk -v c="$1" -v p="$2" 'BEGIN { if (c < 0.001) c = 0.001; printf "%.1fx", p / c }'; }
# Peak memory of one full pass (ru_maxrss of the child, in KiB).
peak_kib() { python3 -c 'import resource, subprocess, sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "$@"; }

summary=()
for tasks in $sizes; do
  make_results "$tasks"
  sync  # the results just written go to disk now, not during the first timed runs
  results=$(ls "$work/s/results" | wc -l)
  # A million results: fewer timed runs of the reference, which takes minutes.
  runs_p=2
  [ "$tasks" -ge 1000000 ] && runs_p=1
  echo "collect $results results ($(du -sh "$work/s/results" | cut -f1) on disk, $(nproc) cores), best of 3 (python: best of $runs_p$([ $runs_p = 1 ] && echo ", no warm-up run: aihpc-collect's runs read the same files just before"))"

  c=$(best_of 3 "$collect_tool" "$work/s" --format csv -o "$work/c.csv")
  p=$(warm=$((runs_p > 1)) best_of $runs_p python3 "$here/bench/collect/reference.py" "$work/s" "$work/p.csv")
  rows_c=$(($(wc -l <"$work/c.csv") - 1))
  rows_p=$(($(wc -l <"$work/p.csv") - 1))
  echo "  csv of every row:       aihpc-collect ${c}s, python reference ${p}s: $(ratio "$c" "$p") faster"
  [ "$rows_c" = "$results" ] && [ "$rows_p" = "$results" ] || { echo "FAIL: rows $rows_c (aihpc-collect) and $rows_p (reference), not $results"; exit 1; }
  # Both wrote the same table (columns index,status,a,lr,opt,loss,acc,epoch,exit_code,
  # elapsed_s,node), numbers compared as numbers: the tools may spell them differently.
  awk -F, 'NR == FNR { row[FNR] = $0; next }
           { split(row[FNR], c, ","); for (k = 1; k <= 11; k++) if (c[k] != $k && (c[k] + 0 != $k + 0 || k == 2 || k == 5 || k == 11)) {
               print "FAIL: line " FNR " column " k ": " c[k] " (aihpc-collect) vs " $k " (reference)"; exit 1 } }' \
      "$work/c.csv" "$work/p.csv" || exit 1

  mc=$(peak_kib "$collect_tool" "$work/s" --format csv -o "$work/c.csv")
  mp=$(peak_kib python3 "$here/bench/collect/reference.py" "$work/s" "$work/p.csv")
  echo "  peak memory (csv):      aihpc-collect $((mc / 1024)) MiB, python reference $((mp / 1024)) MiB"
  mt=$(peak_kib "$collect_tool" "$work/s" --sort loss --top 10)
  echo "  peak memory (--top 10): aihpc-collect $((mt / 1024)) MiB"
  ms=$(peak_kib "$collect_tool" "$work/s" --sort loss --format csv -o "$work/c.csv")
  echo "  peak memory (--sort loss, every row): aihpc-collect $((ms / 1024)) MiB"

  t=$(best_of 3 "$collect_tool" "$work/s" --sort loss --top 10)
  echo "  --sort loss --top 10:   aihpc-collect ${t}s, $(ratio "$t" "$p") faster than the reference's full pass"
  f=$(best_of 3 "$collect_tool" "$work/s" --failed)
  echo "  --failed:               aihpc-collect ${f}s ($("$collect_tool" "$work/s" --failed | tr ',' '\n' | wc -l) ranges)"
  summary+=("$tasks results: $(ratio "$c" "$p") the reference's speed (csv), peak $((mc / 1024)) MiB (csv), $((ms / 1024)) MiB (full sort), $((mt / 1024)) MiB (--top 10)")
  rm -rf "$work/s" "$work/c.csv" "$work/p.csv"
done
echo "summary (goals: 10x and under 64 MiB at 100000, under 256 MiB at 1000000):"
printf '  %s\n' "${summary[@]}"
