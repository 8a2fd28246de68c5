#!/bin/bash
# Durability benchmark: flushing a freshly written 20,000-file tree with fsync of its own
# files and directories, in parallel (what a cache publish and a stage-out do), against
# syncfs of the whole file system (what they did before), in one run, as ratios.
#   bench/stage/fsync.sh [BUILD_DIR]
# Runs as root: a real ext4 file system is made on a file (mkfs.ext4), attached to a
# loop device (losetup) and mounted. Each round writes the tree afresh (cp -a from a
# source outside the loop file system), then flushes it one way; the order alternates.
# Two cases: the tree alone, and the tree beside OTHER_MB of another job's dirty data on
# the same file system, which syncfs must flush too and fsync leaves alone. Then the
# same two cases for a whole cache publish, the engine's own copy included (scan, copy,
# flush), which is what a job waits for.
# The loop device's write requests are counted (/sys/block/LOOP/stat) and printed per
# round: syncfs writes the whole file system back in one pass that merges neighbouring
# files into large requests, where a file's own writeback is one request of its own.
# Environment: FILES (20000), REPEAT (5), THREADS (32), OTHER_MB (512), IMAGE_MB (4096),
# IMAGE_BASE (/var/tmp).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$(cd "$here/../.." && pwd)}
files=${FILES:-20000}
repeat=${REPEAT:-5}
threads=${THREADS:-32}
other_mb=${OTHER_MB:-512}
image_mb=${IMAGE_MB:-4096}
[ "$(id -u)" = 0 ] || { echo "fsync.sh: run as root (it makes and mounts a loop file system)" >&2; exit 1; }
for tool in mkfs.ext4 losetup mount umount python3 bc; do
  command -v "$tool" >/dev/null || { echo "fsync.sh: $tool is missing" >&2; exit 1; }
done
make -C "$build" -s bench/stage/aihpc-bench-fsync >/dev/null
flush="$build/bench/stage/aihpc-bench-fsync"

work=$(mktemp -d "${IMAGE_BASE:-/var/tmp}/aihpc-bench-fsync.XXXXXX")
loop=""
cleanup() {
  mountpoint -q "$work/mnt" 2>/dev/null && umount "$work/mnt"
  [ -n "$loop" ] && losetup -d "$loop" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

python3 "$here/make_tree.py" "$work/src" "$files"
truncate -s "${image_mb}M" "$work/ext4.img"
mkfs.ext4 -q -F "$work/ext4.img"
loop=$(losetup -f --show "$work/ext4.img")
mkdir "$work/mnt"
mount -t ext4 "$loop" "$work/mnt"
bytes=$(du -sb "$work/src" | cut -f1)
echo "# fsync of the tree's files and dirs ($threads threads) vs syncfs: $files files, $((bytes / 1048576)) MiB, ext4 on $loop, $repeat rounds"

median() { sort -g | sed -n "$(((repeat + 1) / 2))p"; }
ratio() { echo "scale=2; $1 / $2" | bc -l; }

loop_writes() { awk '{print $5}' "/sys/block/$(basename "$loop")/stat"; }
requests_fsync=0 requests_syncfs=0

# One flush of a fresh tree: prints its seconds. $1 = fsync|syncfs, $2 = MiB of other
# dirty data, $3 = flush (of a tree cp -a wrote) or publish (copy and flush). Adds the
# loop device's write requests to requests_$1.
one_round() {
  local mode=$1 other=$2 what=$3 dir="$work/mnt/tree.$RANDOM$RANDOM" before seconds
  rm -rf "$work/mnt"/tree.* "$work/mnt/other"
  sync
  [ "$what" = flush ] && cp -a "$work/src" "$dir"
  if [ "$other" -gt 0 ]; then dd if=/dev/zero of="$work/mnt/other" bs=1M count="$other" status=none; fi
  before=$(loop_writes)
  if [ "$what" = flush ]; then
    seconds=$("$flush" "$mode" "$dir" "$threads")
  else
    seconds=$("$flush" "publish-$mode" "$work/src" "$dir" "$threads")
  fi
  eval "requests_$mode=\$((requests_$mode + $(loop_writes) - before))"
  echo "$seconds"
}

for what in flush publish; do
  for other in 0 "$other_mb"; do
    fs_times=() sf_times=() requests_fsync=0 requests_syncfs=0
    for ((i = 0; i < repeat; i++)); do
      # Not in a subshell: the request counts are kept.
      if ((i % 2 == 0)); then
        one_round fsync "$other" "$what" >"$work/t"; fs_times+=("$(cat "$work/t")")
        one_round syncfs "$other" "$what" >"$work/t"; sf_times+=("$(cat "$work/t")")
      else
        one_round syncfs "$other" "$what" >"$work/t"; sf_times+=("$(cat "$work/t")")
        one_round fsync "$other" "$what" >"$work/t"; fs_times+=("$(cat "$work/t")")
      fi
    done
    fs=$(printf '%s\n' "${fs_times[@]}" | median)
    sf=$(printf '%s\n' "${sf_times[@]}" | median)
    label="$what, the tree alone"
    [ "$other" -gt 0 ] && label="$what, with $other MiB of other dirty data"
    printf '%-46s fsync %7.3f s   syncfs %7.3f s   syncfs/fsync %4sx   write requests per round: fsync %d, syncfs %d\n' \
      "$label:" "$fs" "$sf" "$(ratio "$sf" "$fs")" $((requests_fsync / repeat)) $((requests_syncfs / repeat))
  done
done
