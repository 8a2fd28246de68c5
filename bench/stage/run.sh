#!/bin/bash
# Staging benchmark: aihpc-stage against cp -a and a tar pipe, in one run, as ratios.
#   bench/stage/run.sh [BUILD_DIR]
#   bench/stage/run.sh remote [BUILD_DIR]   (remote.sh: a source with a latency per operation)
# Source on the local disk (read once first, so it is in the page cache), destination
# on tmpfs (/dev/shm). Environment: FILES (20000), BIG_MB (1024, 0 to skip), REPEAT (3),
# SRC_BASE (/var/tmp), DST_BASE (/dev/shm).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# `run.sh remote [BUILD_DIR]`: the same trees from a source with a latency per operation.
if [ "${1:-}" = remote ]; then shift; exec "$here/remote.sh" "$@"; fi
build=${1:-$(cd "$here/../.." && pwd)}
stage="$build/tools/aihpc-stage"
files=${FILES:-20000}
big_mb=${BIG_MB:-1024}
repeat=${REPEAT:-3}
src_base=$(mktemp -d "${SRC_BASE:-/var/tmp}/aihpc-bench-src.XXXXXX")
dst_base=$(mktemp -d "${DST_BASE:-/dev/shm}/aihpc-bench-dst.XXXXXX")
cleanup() { chmod -R u+w "$dst_base" 2>/dev/null || true; rm -rf "$src_base" "$dst_base"; }
trap cleanup EXIT

now() { date +%s.%N; }
# Median wall time of $repeat runs of "$@"; before each run, $reset is evaluated.
median() {
  local times=() i start
  for ((i = 0; i < repeat; i++)); do
    eval "$reset"
    start=$(now)
    "$@" >/dev/null
    times+=("$(echo "$(now) - $start" | bc -l)")
  done
  printf '%s\n' "${times[@]}" | sort -g | sed -n "$(((repeat + 1) / 2))p"
}
ratio() { echo "scale=2; $1 / $2" | bc -l; }
clear_dst() { chmod -R u+w "$dst_base" 2>/dev/null || true; rm -rf "${dst_base:?}"/*; }

echo "# aihpc-stage benchmark: $files small files, 2 x $big_mb MiB; source $src_base (page cache), destination $dst_base (tmpfs)"
python3 "$here/make_tree.py" "$src_base/tree" "$files"
cat $(find "$src_base/tree" -type f) >/dev/null
bytes=$(du -sb "$src_base/tree" | cut -f1)
echo "tree: $files files, $((bytes / 1048576)) MiB"

reset=clear_dst
t_cp=$(median cp -a "$src_base/tree" "$dst_base/cp")
t_tar=$(median bash -c "mkdir -p '$dst_base/tar' && tar -C '$src_base/tree' -cf - . | tar -C '$dst_base/tar' -xf -")
t_cold=$(median "$stage" in "$src_base/tree:set" --to "$dst_base/job" --cache "$dst_base/cache")
t_private=$(median "$stage" in "$src_base/tree:set" --to "$dst_base/job" --mode private)
clear_dst
"$stage" in "$src_base/tree:set" --to "$dst_base/job0" --cache "$dst_base/cache" >/dev/null
reset='rm -f "$dst_base/job/set"'
t_warm=$(median "$stage" in "$src_base/tree:set" --to "$dst_base/job" --cache "$dst_base/cache")
grep -c ' hit ' "$dst_base/cache/log" >/dev/null

printf 'cold  cp -a          %8.3fs\n' "$t_cp"
printf 'cold  tar | tar      %8.3fs\n' "$t_tar"
printf 'cold  aihpc cache    %8.3fs   %sx faster than cp -a (target >= 2), %sx tar pipe (target > 1)\n' \
  "$t_cold" "$(ratio "$t_cp" "$t_cold")" "$(ratio "$t_tar" "$t_cold")"
printf 'cold  aihpc private  %8.3fs   %sx faster than cp -a\n' "$t_private" "$(ratio "$t_cp" "$t_private")"
printf 'warm  aihpc hit      %8.3fs   %sx faster than cp -a (target >= 20)\n' "$t_warm" "$(ratio "$t_cp" "$t_warm")"

# Eight stagers of one source at once on one node: one copy, seven hits.
clear_dst
start=$(now)
for i in 1 2 3 4 5 6 7 8; do
  "$stage" in "$src_base/tree:set" --to "$dst_base/con$i" --cache "$dst_base/cache" >/dev/null &
done
wait
t_con=$(echo "$(now) - $start" | bc -l)
misses=$(grep -c ' miss ' "$dst_base/cache/log")
hits=$(grep -c ' hit ' "$dst_base/cache/log")
printf 'conc  8 stagers      %8.3fs   copies made: %s (target 1), cache hits: %s\n' "$t_con" "$misses" "$hits"
clear_dst
rm -rf "$src_base/tree"

# Two large files (BIG_MB=0 skips them).
((big_mb > 0)) || exit 0
mkdir -p "$src_base/big"
for i in 1 2; do head -c $((big_mb * 1048576)) /dev/urandom >"$src_base/big/f$i"; done
cat "$src_base/big/"* >/dev/null
reset=clear_dst
t_bcp=$(median cp -a "$src_base/big" "$dst_base/cp")
t_bst=$(median "$stage" in "$src_base/big:set" --to "$dst_base/job" --mode private)
printf 'big   cp -a          %8.3fs\n' "$t_bcp"
printf 'big   aihpc private  %8.3fs   %sx cp -a (target >= 1)\n' "$t_bst" "$(ratio "$t_bcp" "$t_bst")"
