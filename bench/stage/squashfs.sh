#!/bin/bash
# A dataset of many small files staged as one squashfs image and mounted, against the
# extracted tree staged with the engine, both from a remote source: latencyfs (beside
# this script), where every operation sleeps LATENCY_US as a round trip to a network
# file system would. Reports, in one run, as ratios:
#   - stage-in: `aihpc-stage in TREE` (cold cache) against `aihpc-stage in IMAGE.sqsh`
#     (cold cache, then mounted with squashfuse);
#   - first epoch: every file read once (sha1sum of each, in a sorted walk) from the
#     staged tree and from the mounted image;
#   - bytes the source served for each, counted by latencyfs.
#   bench/stage/squashfs.sh [BUILD_DIR]       (as root: it mounts FUSE)
# Environment: FILES (100000), LATENCY_US (500), SRC_BASE (/var/tmp), DST_BASE (/dev/shm).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$(cd "$here/../.." && pwd)}
stage="$build/tools/aihpc-stage"
files=${FILES:-100000}
latency=${LATENCY_US:-500}
work=$(mktemp -d "${SRC_BASE:-/var/tmp}/aihpc-bench-sqsh.XXXXXX")
dst=$(mktemp -d "${DST_BASE:-/dev/shm}/aihpc-bench-sqsh.XXXXXX")
mnt="$work/mnt"
mkdir -p "$mnt" "$work/src"
fs_pid=
unmount_all() {
  if mountpoint -q "$dst/job/set" 2>/dev/null; then fusermount3 -u "$dst/job/set" 2>/dev/null || umount -l "$dst/job/set"; fi
  if mountpoint -q "$mnt"; then fusermount3 -u "$mnt" 2>/dev/null || umount -l "$mnt"; fi
  if [ -n "$fs_pid" ]; then wait "$fs_pid" 2>/dev/null || true; fs_pid=; fi
}
cleanup() { unmount_all; chmod -R u+w "$dst" 2>/dev/null || true; rm -rf "$work" "$dst"; }
trap cleanup EXIT
for tool in squashfuse_ll mksquashfs unsquashfs; do
  command -v "$tool" >/dev/null || { echo "the squashfs bench needs $tool (apt-get install squashfuse squashfs-tools)" >&2; exit 1; }
done
cc -O2 -Wall -o "$work/latencyfs" "$here/latencyfs.c" $(pkg-config --cflags --libs fuse3) ||
  { echo "the squashfs bench needs libfuse3-dev and fuse3" >&2; exit 1; }

# Mounts the source afresh (no client cache carried over) and zeroes its read counter.
mount_src() {
  unmount_all
  "$work/latencyfs" "$work/src" "$mnt" -f -o "latency_us=$latency,max_threads=1024,allow_other,stats=$work/stats" \
    >>"$work/latencyfs.log" 2>&1 </dev/null &
  fs_pid=$!
  for _ in $(seq 100); do mountpoint -q "$mnt" && return 0; sleep 0.05; done
  echo "latencyfs did not mount at $mnt" >&2
  exit 1
}
# Bytes latencyfs served since it was mounted (its stats file, written on unmount).
served() { unmount_all; sed -n 's/^read_bytes //p' "$work/stats" 2>/dev/null || echo 0; }
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc -l; }
ratio() { echo "scale=2; $1 / $2" | bc -l | sed "s/^\./0./"; }
epoch() { (cd "$1" && find . -type f | sort | xargs -d '\n' sha1sum) | sha1sum | cut -c1-16; }

python3 "$here/make_tree.py" "$work/src/tree" "$files"
"$stage" pack "$work/src/tree" "$work/src/set.sqsh" >/dev/null
bytes=$(du -sb "$work/src/tree" | cut -f1)
echo "# squashfs bench: $files files, $((bytes / 1048576)) MiB; image $(($(stat -c %s "$work/src/set.sqsh") / 1048576)) MiB; source latency ${latency} us; destination tmpfs"
echo "# $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"

mount_src
start=$(now)
"$stage" in "$mnt/tree:set" --to "$dst/job" --cache "$dst/cache" >/dev/null
t_tree=$(since "$start")
src_tree=$(served)
start=$(now)
sum_tree=$(epoch "$dst/job/set")
e_tree=$(since "$start")
rm -rf "$dst/job"; chmod -R u+w "$dst/cache"; rm -rf "$dst/cache"

mount_src
start=$(now)
"$stage" in "$mnt/set.sqsh:set" --to "$dst/job" --cache "$dst/cache" >/dev/null
t_image=$(since "$start")
start=$(now)
sum_image=$(epoch "$dst/job/set")
e_image=$(since "$start")
src_image=$(served)

[ "$sum_tree" = "$sum_image" ] || { echo "the mounted image does not read as the tree ($sum_image, not $sum_tree)" >&2; exit 1; }
printf '%-34s %10s %10s %8s\n' "" "tree" "image" "ratio"
printf '%-34s %9.2fs %9.2fs %7sx\n' "stage-in from the source" "$t_tree" "$t_image" "$(ratio "$t_tree" "$t_image")"
printf '%-34s %9.2fs %9.2fs %7sx\n' "first epoch (read every file)" "$e_tree" "$e_image" "$(ratio "$e_tree" "$e_image")"
printf '%-34s %9.2fs %9.2fs %7sx\n' "stage-in + first epoch" "$(echo "$t_tree + $e_tree" | bc -l)" \
  "$(echo "$t_image + $e_image" | bc -l)" "$(ratio "$(echo "$t_tree + $e_tree" | bc -l)" "$(echo "$t_image + $e_image" | bc -l)")"
printf '%-34s %10s %10s\n' "bytes the source served" "$src_tree" "$src_image"
echo "# every file of the mounted image reads as in the tree (checksum of the sorted walk: $sum_image)"
