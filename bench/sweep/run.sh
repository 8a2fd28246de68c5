#!/bin/bash
# Sweep expansion and lookup against the baseline a user would otherwise write.
#   1. expand a 1,000,000-task grid (6 axes of 10): aihpc-sweep vs bench/sweep/reference.py
#      (itertools.product + json), wall time and peak RSS (/usr/bin/time -v);
#   2. aihpc-sweep params --index 999999 vs --index 0 (O(1) lookup), whole process.
# Usage: bench/sweep/run.sh [BUILD_DIR]   (default: the source tree)
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$here}
tool=$build/tools/aihpc-sweep
[ -x "$tool" ] || { echo "bench/sweep: build tools/aihpc-sweep first" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench/sweep: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
work=$(mktemp -d /tmp/aihpc-bench-sweep.XXXXXX)
trap 'rm -rf "$work"' EXIT

params=(
  'lr=1e-5,3e-5,1e-4,3e-4,1e-3,3e-3,1e-2,3e-2,0.1,0.3'
  'bs=range(16,161,16)'
  'opt=sgd,adam,adamw,lamb,lion,rmsprop,adagrad,nadam,radam,sophia'
  'wd=0,0.01,0.02,0.03,0.04,0.05,0.06,0.07,0.08,0.09'
  'drop=0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9'
  'warmup=range(0,1000,100)'
)

# seconds and peak KiB of one command, best of N runs
measure() {
  local n=$1; shift
  local best_s= best_kb= s kb
  for ((r = 0; r < n; r++)); do
    rm -rf "$work/out"
    local t0 t1
    t0=$(date +%s%N)
    /usr/bin/time -f '%M' -o "$work/time" "$@" >/dev/null
    t1=$(date +%s%N)
    s=$(awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.3f", ns / 1e9 }')
    read -r kb <"$work/time"
    if [ -z "$best_s" ] || awk "BEGIN{exit !($s < $best_s)}"; then best_s=$s; best_kb=$kb; fi
  done
  echo "$best_s $best_kb"
}

read -r c_s c_kb < <(measure 3 "$tool" expand "${params[@]}" -o "$work/out" -- true)
lines=$("$tool" expand "${params[@]}" -o "$work/check" -- true | awk '{print $1}')
read -r p_s p_kb < <(measure 1 python3 "$here/bench/sweep/reference.py" "$work/out")
echo "expand 1,000,000 tasks (6 axes): aihpc-sweep ${c_s}s ${c_kb} KiB peak, python reference ${p_s}s ${p_kb} KiB peak"
[ "$lines" = 1000000 ] || { echo "FAIL: expanded $lines tasks, not 1000000"; exit 1; }
awk -v c="$c_s" -v p="$p_s" 'BEGIN { if (c < 0.01) c = 0.01; printf "  speedup: %.1fx (target >= 30x)\n", p / c }'
awk -v kb="$c_kb" 'BEGIN { printf "  peak memory: %.1f MiB (target < 64 MiB)\n", kb / 1024 }'

# lookup: whole-process time over many calls, so that the clock's resolution does not matter
lookup() {
  local index=$1 calls=200 t0 t1
  t0=$(date +%s%N)
  for ((k = 0; k < calls; k++)); do "$tool" params "$work/check" --index "$index" >/dev/null; done
  t1=$(date +%s%N)
  echo $(( (t1 - t0) / calls / 1000 ))
}
first_us=$(lookup 0)
last_us=$(lookup 999999)
echo "params --index 0: ${first_us} us per process, --index 999999: ${last_us} us per process"
awk -v a="$first_us" -v b="$last_us" 'BEGIN { printf "  ratio last/first: %.2f (target <= 2), whole process %.2f ms (target < 10 ms)\n", b / a, b / 1000 }'
