#!/usr/bin/env bash
# Launch overhead of --aihpc-container against running ch-run by hand, in the same run:
#   A: srun -n2 --aihpc-container=DIR true
#   B: srun -n2 ch-run DIR -- true
# Runs interleaved (A B A B ...), RUNS times each (default 15), and prints the median
# wall time of each and the ratio A/B (target: at most 1.10).
# Run as root with the mini-cluster up; the jobs run as $AIHPC_TEST_USER (aihpc-test).
set -euo pipefail
tree=$(cd "$(dirname "$0")/../.." && pwd)
runs=${RUNS:-15}
user=${AIHPC_TEST_USER:-aihpc-test}
: "${SLURM_CONF:=$("$tree/contrib/minicluster" env | sed -n 's/^export SLURM_CONF=//p')}"
export SLURM_CONF
work=$(mktemp -d /tmp/aihpc-bench-container.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 0755 "$work"
img=$work/busybox
"$tree/contrib/examples/container-image.sh" "$img" >/dev/null
cd "$work"

wall() {  # seconds, as a float, that "$@" takes as the test user
    local t0 t1
    t0=$(date +%s.%N)
    runuser -u "$user" -- "$@" >/dev/null
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f\n", b - a }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# Warm both paths once (page cache, slurmd connections).
runuser -u "$user" -- srun -n2 --aihpc-container="$img" true
runuser -u "$user" -- srun -n2 ch-run "$img" -- true
: >"$work/a"; : >"$work/b"
for _ in $(seq "$runs"); do
    wall srun -n2 --aihpc-container="$img" true >>"$work/a"
    wall srun -n2 ch-run "$img" -- true >>"$work/b"
done
a=$(median <"$work/a"); b=$(median <"$work/b")
printf 'container launch, %d runs each, srun -n2 on a busybox directory image\n' "$runs"
printf '  srun --aihpc-container=DIR true   median %.3f s\n' "$a"
printf '  srun ch-run DIR -- true           median %.3f s\n' "$b"
awk -v a="$a" -v b="$b" 'BEGIN { printf "  ratio %.3f (target <= 1.10)\n", a / b }'
