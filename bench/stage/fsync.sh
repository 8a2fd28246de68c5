#!/bin/bash
# Durability benchmark: flushing a freshly written 20,000-file tree with fsync of its own
# files and directories, in parallel (what a cache publish and a stage-out do), against
# syncfs of the whole file system (what they did before), in one run, as ratios.
#   bench/stage/fsync.sh [BUILD_DIR]
# Runs as root: a real ext4 file system is made on a file (mkfs.ext4), attached to a
# loop device (losetup) and mounted. Each round writes the tree afresh (cp -a from a
# source outside the loop file system), then flushes it one way; the order alternates.
# Two cases: the tree alone, and the tree beside OTHER_MB of another job's dirty data on
# the same file system, which syncfs must flush too and fsync leaves alone.
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

# One flush of a fresh tree: prints its seconds. $1 = fsync|syncfs, $2 = MiB of other dirty data.
one_round() {
  local mode=$1 other=$2 dir="$work/mnt/tree.$RANDOM$RANDOM"
  rm -rf "$work/mnt"/tree.* "$work/mnt/other"
  sync
  cp -a "$work/src" "$dir"
  if [ "$other" -gt 0 ]; then dd if=/dev/zero of="$work/mnt/other" bs=1M count="$other" status=none; fi
  "$flush" "$mode" "$dir" "$threads"
}

for other in 0 "$other_mb"; do
  fs_times=() sf_times=()
  for ((i = 0; i < repeat; i++)); do
    if ((i % 2 == 0)); then
      fs_times+=("$(one_round fsync "$other")"); sf_times+=("$(one_round syncfs "$other")")
    else
      sf_times+=("$(one_round syncfs "$other")"); fs_times+=("$(one_round fsync "$other")")
    fi
  done
  fs=$(printf '%s\n' "${fs_times[@]}" | median)
  sf=$(printf '%s\n' "${sf_times[@]}" | median)
  label="the tree alone"
  [ "$other" -gt 0 ] && label="with $other MiB of other dirty data"
  printf '%-40s fsync %8.3f s   syncfs %8.3f s   syncfs/fsync %sx\n' "$label:" "$fs" "$sf" "$(ratio "$sf" "$fs")"
done
