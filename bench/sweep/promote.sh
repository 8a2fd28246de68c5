#!/bin/bash
# Promotion over one rung of 10,000 results: the time `aihpc-sweep advance` takes to read
# the rung's result files, rank them and write the next rung (successive halving with
# min 1, max 10000, eta 100, so that the first rung has 10,000 configurations and
# promotes 100). sbatch is a stand-in that prints job ids: nothing is queued. There is no
# baseline to compare with; the target is under 1 s.
# Usage: bench/sweep/promote.sh [BUILD_DIR]   (default: the source tree)
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$here}
tool=$build/tools/aihpc-sweep
[ -x "$tool" ] || { echo "bench/sweep: build tools/aihpc-sweep first" >&2; exit 1; }
work=$(mktemp -d /tmp/aihpc-bench-promote.XXXXXX)
trap 'rm -rf "$work"' EXIT

mkdir "$work/bin"
cat >"$work/bin/sbatch" <<'SH'
#!/bin/sh
n=$(cat "$0.count" 2>/dev/null || echo 1000)
echo $((n + 1)) >"$0.count"
echo "$n"
SH
chmod +x "$work/bin/sbatch"
export PATH="$work/bin:$PATH"

cat >"$work/spec.json" <<'JSON'
{"name": "promote-bench", "axes": [{"param": "x", "range": [0, 10000]}],
 "command": "true {x} {epochs}",
 "schedule": {"type": "sha", "resource": "epochs", "min": 1, "max": 10000, "eta": 100,
              "metric": "val_loss", "mode": "min"}}
JSON
"$tool" expand "$work/spec.json" -o "$work/sweep" >/dev/null
"$tool" submit "$work/sweep" --max-array-size 1001 >/dev/null

# 10,000 results as the runner writes them, a few of them failed or NaN.
python3 - "$work/sweep" <<'PY'
import json, os, random, sys
sweep = sys.argv[1]
rung = os.path.join(sweep, "rungs", "b2.r0")
os.makedirs(rung, exist_ok=True)
rng = random.Random(7)
for i in range(10000):
    metric = rng.random()
    code = 1 if i % 97 == 0 else 0
    r = {"index": i, "exit_code": code, "phase": "main", "params": {"x": i, "epochs": 1}, "task_seed": i,
         "bracket": 2, "rung": 0, "budget": 1, "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:00:01Z",
         "elapsed_s": 1.0, "node": "n1", "job_id": 1, "array_job_id": 1, "array_task_id": i, "command": ["true"],
         "metrics": {"val_loss": metric, "step": 100},
         "provenance": {"spec_hash": "0", "git_commit": None, "container": None, "container_digest": None,
                        "staged": [], "binding": {"cpus": "0", "mems": "0", "gpus": None}}}
    text = json.dumps(r)
    if i % 89 == 0:
        text = text.replace('"val_loss": %r' % metric, '"val_loss": NaN')
    with open(os.path.join(rung, "%d.json" % i), "w") as f:
        f.write(text + "\n")
PY

best=
for run in 1 2 3; do
    t0=$(date +%s%N)
    "$tool" advance "$work/sweep" --bracket 2 --rung 0 --arrays-ended --dry-run >"$work/out"
    t1=$(date +%s%N)
    s=$(awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.3f", ns / 1e9 }')
    if [ -z "$best" ] || awk "BEGIN{exit !($s < $best)}"; then best=$s; fi
done
grep -q "promoted 100 of 10000" "$work/out" || { echo "FAIL: advance did not promote 100 of 10000:"; cat "$work/out"; exit 1; }
t0=$(date +%s%N)
"$tool" advance "$work/sweep" --bracket 2 --rung 0 --arrays-ended >/dev/null
t1=$(date +%s%N)
real=$(awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.3f", ns / 1e9 }')
echo "promotion over 10,000 results: ${best}s to decide (best of 3, --dry-run), ${real}s to decide, record and submit the next rung (target < 1 s)"
