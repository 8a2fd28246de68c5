#!/bin/bash
# The node's shared cache with two users, on the mini-cluster's n1:
#   user A stages a world-readable tree of SIZE_MB (default 2048) in files of 1 MiB:
#   it is read once, as shared_user, into local_root/shared;
#   user B then stages the same source: a hit there, with one copy on the node's disk.
# Reports A's stage (the wall time of its step), B's stage (a step with it less the
# same step without it, and the stage-in's own time as --aihpc-verbose reports it),
# `cp -a` of the same tree to the same disk with the page cache dropped first, the ratio
# cp -a / B (target: at least 20), and the bytes on disk of the shared entry against the
# tree's.
# Usage: bench/stage/shared.sh [SIZE_MB]   (as root, mini-cluster up)
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
size_mb=${1:-2048}
"$top/contrib/minicluster" status >/dev/null 2>&1 || { echo "shared cache: skipped (mini-cluster not up)"; exit 0; }
eval "$("$top/contrib/minicluster" env)"
export SLURM_CONF
local_root=${AIHPC_LOCAL_ROOT//%n/n1}

work=$(mktemp -d /var/tmp/aihpc-bench-shared.XXXXXX)
chmod 0755 "$work"
trap 'rm -rf "$work"' EXIT
python3 - "$work/tree" "$size_mb" <<'PY'
import os, sys
root, mb = sys.argv[1], int(sys.argv[2])
block = os.urandom(1 << 20)
for i in range(mb):
    d = os.path.join(root, "d%03d" % (i // 100))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%05d.bin" % i), "wb") as f:
        f.write(block[i % 4096:] + block[:i % 4096])
PY
chmod -R a+rX "$work"
sync
rm -rf "$local_root/shared"

run_as() {  # USER ARGS...: wall seconds of one step on n1
    local user=$1 start end
    shift
    start=$(date +%s.%N)
    runuser -u "$user" -- env SLURM_CONF="$SLURM_CONF" srun -n1 -w n1 "$@" >/dev/null
    end=$(date +%s.%N)
    echo "$end - $start" | bc
}
median() { sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
a=$(run_as aihpc-test --aihpc-stage="$work/tree:set" true)
# B's stage: a step with it less the same step without it, median of 5 each, interleaved;
# and the stage-in's own time, as --aihpc-verbose reports it.
with=() without=()
for _ in 1 2 3 4 5; do
    with+=("$(run_as aihpc-test2 --aihpc-stage="$work/tree:set" true)")
    without+=("$(run_as aihpc-test2 true)")
done
b_step=$(echo "$(printf '%s\n' "${with[@]}" | median) - $(printf '%s\n' "${without[@]}" | median)" | bc)
b_own=$(runuser -u aihpc-test2 -- env SLURM_CONF="$SLURM_CONF" srun -n1 -w n1 --aihpc-verbose \
    --aihpc-stage="$work/tree:set" true 2>&1 | sed -n 's/.*stage-in set: hit, .* \([0-9.]*\)s, in the shared cache.*/\1/p')
# cp -a from the disk, not from the page cache the tree was just written through.
sync
echo 3 >/proc/sys/vm/drop_caches
start=$(date +%s.%N)
cp -a "$work/tree" "$work/copy"
sync -f "$work/copy"
end=$(date +%s.%N)
cp_s=$(echo "$end - $start" | bc)
b=$(echo "if ($b_step > $b_own) $b_step else $b_own" | bc)
entries=$(find "$local_root/shared/entries" -mindepth 1 -maxdepth 1 -name '[0-9a-f]*' | wc -l)
shared_kb=$(du -sk "$local_root/shared/entries" | cut -f1)
tree_kb=$(du -sk "$work/tree" | cut -f1)
echo "# shared cache: a ${size_mb} MiB world-readable tree, user A then user B on n1"
printf 'A (read as shared_user into the shared cache): %.2f s\n' "$a"
printf 'B (hit in the shared cache): %.3f s more than the same step without staging; %.3f s by its own report\n' "$b_step" "$b_own"
printf 'cp -a of the tree (caches dropped first): %.2f s\n' "$cp_s"
printf 'ratio cp -a / B (the larger of the two): %.1f (target >= 20) %s\n' "$(echo "$cp_s / $b" | bc -l)" \
    "$( [ "$(echo "$cp_s / $b >= 20" | bc -l)" = 1 ] && echo ok || echo SLOW)"
echo "shared entries: $entries; on disk: ${shared_kb} KiB for a tree of ${tree_kb} KiB"
