#!/bin/bash
# Staging from a remote source: aihpc-stage against cp -a, a tar pipe, rclone copy
# (16 transfers, 16 checkers) and fpsync (fpart + rsync, 8 workers), in one run, as
# ratios. The source is the benchmark tree seen through latencyfs (latencyfs.c beside
# this script), a FUSE pass-through where every operation sleeps a set latency, as a
# round trip to an NFS, Lustre or GPFS server would. The file system is mounted afresh
# before every timed run, so no run profits from the client caches of the one before.
#   bench/stage/remote.sh [BUILD_DIR]       (as root: it mounts FUSE)
# Environment: FILES (3000), LATENCIES_US ("0 100 500 2000"), BIG_MB (1024, 0 to skip),
# BIG_LATENCY_US (500), BANDWIDTH_MIB (per read stream for the big files, 200),
# REPEAT (1), SRC_BASE (/var/tmp), DST_BASE (/dev/shm).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$(cd "$here/../.." && pwd)}
stage="$build/tools/aihpc-stage"
files=${FILES:-3000}
latencies=${LATENCIES_US:-0 100 500 2000}
big_mb=${BIG_MB:-1024}
big_latency=${BIG_LATENCY_US:-500}
bandwidth=${BANDWIDTH_MIB:-200}
repeat=${REPEAT:-1}
work=$(mktemp -d "${SRC_BASE:-/var/tmp}/aihpc-bench-remote.XXXXXX")
dst_base=$(mktemp -d "${DST_BASE:-/dev/shm}/aihpc-bench-dst.XXXXXX")
mnt="$work/mnt"
mkdir -p "$mnt"
fs_pid=
unmount() {
  if mountpoint -q "$mnt"; then fusermount3 -u "$mnt" 2>/dev/null || umount -l "$mnt"; fi
  if [ -n "$fs_pid" ]; then wait "$fs_pid" 2>/dev/null || true; fs_pid=; fi
}
cleanup() { unmount; chmod -R u+w "$dst_base" 2>/dev/null || true; rm -rf "$work" "$dst_base"; }
trap cleanup EXIT

cc -O2 -Wall -o "$work/latencyfs" "$here/latencyfs.c" $(pkg-config --cflags --libs fuse3) ||
  { echo "remote bench needs libfuse3-dev and fuse3 (apt-get install libfuse3-dev fuse3)" >&2; exit 1; }

# Mounts $work/src at $mnt with latency $1 (us) and bandwidth $2 (MiB/s per stream).
mount_fs() {
  unmount
  "$work/latencyfs" "$work/src" "$mnt" -f -o "latency_us=$1,bandwidth_mib=$2,max_threads=1024,allow_other" \
    >>"$work/latencyfs.log" 2>&1 </dev/null &
  fs_pid=$!
  for _ in $(seq 100); do mountpoint -q "$mnt" && return 0; sleep 0.05; done
  echo "latencyfs did not mount at $mnt" >&2
  exit 1
}

have() { command -v "$1" >/dev/null 2>&1; }
now() { date +%s.%N; }
ratio() { echo "scale=2; $1 / $2" | bc -l; }
clear_dst() { chmod -R u+w "$dst_base" 2>/dev/null || true; rm -rf "${dst_base:?}"/*; }

# Sets the variable named $1 to the median wall time of $repeat runs of the rest, each
# after a fresh mount and `eval "$reset"`; to 0 if a run fails.
latency=0 bw=0 reset=clear_dst
median() {
  local var=$1 times=() i start
  shift
  for ((i = 0; i < repeat; i++)); do
    eval "$reset"
    mount_fs "$latency" "$bw"
    start=$(now)
    if ! "$@" >/dev/null 2>"$work/err"; then
      echo "# failed: $* : $(tail -3 "$work/err")"
      printf -v "$var" 0
      return
    fi
    times+=("$(echo "$(now) - $start" | bc -l)")
  done
  printf -v "$var" '%s' "$(printf '%s\n' "${times[@]}" | sort -g | sed -n "$(((repeat + 1) / 2))p")"
}

missing=()
have rclone || missing+=("rclone (apt-get install rclone)")
have fpsync || missing+=("fpsync (apt-get install fpart rsync)")
have rsync || missing+=("rsync (apt-get install rsync)")

mkdir -p "$work/src"
python3 "$here/make_tree.py" "$work/src/tree" "$files"
cat $(find "$work/src/tree" -type f) >/dev/null
bytes=$(du -sb "$work/src/tree" | cut -f1)
echo "# aihpc-stage remote benchmark: $files files, $((bytes / 1048576)) MiB, through latencyfs; destination $dst_base (tmpfs); median of $repeat"
echo "# $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for m in "${missing[@]}"; do echo "# not measured, not installed: $m"; done

src="$mnt/tree"
for latency in $latencies; do
  bw=0
  reset=clear_dst
  median t_cp cp -a "$src" "$dst_base/cp"
  median t_tar bash -c "mkdir -p '$dst_base/tar' && tar -C '$src' -cf - . | tar -C '$dst_base/tar' -xf -"
  t_rc=0 t_fp=0
  have rclone && median t_rc rclone copy --config /dev/null --transfers 16 --checkers 16 "$src" "$dst_base/rclone"
  have fpsync && have rsync && median t_fp bash -c "mkdir -p '$dst_base/fpsync' '$work/fptmp' && fpsync -n 8 -t '$work/fptmp' '$src/' '$dst_base/fpsync/'"
  median t_cold "$stage" in "$src:set" --to "$dst_base/job" --cache "$dst_base/cache"
  median t_private "$stage" in "$src:set" --to "$dst_base/job" --mode private
  clear_dst
  mount_fs "$latency" 0
  "$stage" in "$src:set" --to "$dst_base/job0" --cache "$dst_base/cache" >/dev/null
  reset='rm -f "$dst_base/job/set"'
  median t_warm "$stage" in "$src:set" --to "$dst_base/job" --cache "$dst_base/cache"
  mount_fs "$latency" 0
  rm -f "$dst_base/job/set"
  json=$("$stage" in "$src:set" --to "$dst_base/job" --cache "$dst_base/cache" --json)
  clear_dst
  mount_fs "$latency" 0
  json_cold=$("$stage" in "$src:set" --to "$dst_base/job" --cache "$dst_base/cache" --json)
  clear_dst

  vs_rc() { if [ "$t_rc" != 0 ]; then echo ", $(ratio "$t_rc" "$1")x rclone 16/16"; fi; }
  echo "## latency $latency us per operation"
  printf '  cp -a             %8.3fs\n' "$t_cp"
  printf '  tar | tar         %8.3fs   %sx cp -a\n' "$t_tar" "$(ratio "$t_cp" "$t_tar")"
  [ "$t_rc" != 0 ] && printf '  rclone 16/16      %8.3fs   %sx cp -a\n' "$t_rc" "$(ratio "$t_cp" "$t_rc")"
  [ "$t_fp" != 0 ] && printf '  fpsync 8 workers  %8.3fs   %sx cp -a\n' "$t_fp" "$(ratio "$t_cp" "$t_fp")"
  printf '  aihpc cold cache  %8.3fs   %sx cp -a (target >= 10 at 500 us)%s\n' "$t_cold" "$(ratio "$t_cp" "$t_cold")" "$(vs_rc "$t_cold")"
  printf '  aihpc private     %8.3fs   %sx cp -a%s\n' "$t_private" "$(ratio "$t_cp" "$t_private")" "$(vs_rc "$t_private")"
  printf '  aihpc warm hit    %8.3fs   %sx cp -a (target >= 20 at 500 us)\n' "$t_warm" "$(ratio "$t_cp" "$t_warm")"
  echo "  cold --json: $json_cold"
  echo "  hit  --json: $json"
done

# Two large files on a bandwidth-capped source: ranges copied in parallel.
((big_mb > 0)) || exit 0
fusermount3 -u "$mnt" 2>/dev/null || true
rm -rf "$work/src/tree"
mkdir -p "$work/src/big"
for i in 1 2; do head -c $((big_mb * 1048576)) /dev/urandom >"$work/src/big/f$i"; done
latency=$big_latency bw=$bandwidth reset=clear_dst
src="$mnt/big"
median t_bcp cp -a "$src" "$dst_base/cp"
t_brc=0
have rclone && median t_brc rclone copy --config /dev/null --transfers 16 --checkers 16 "$src" "$dst_base/rclone"
median t_bst "$stage" in "$src:set" --to "$dst_base/job" --mode private
echo "## 2 x $big_mb MiB, $big_latency us per operation, $bandwidth MiB/s per read stream"
printf '  cp -a             %8.3fs\n' "$t_bcp"
[ "$t_brc" != 0 ] && printf '  rclone 16/16      %8.3fs   %sx cp -a\n' "$t_brc" "$(ratio "$t_bcp" "$t_brc")"
printf '  aihpc private     %8.3fs   %sx cp -a\n' "$t_bst" "$(ratio "$t_bcp" "$t_bst")"
