#!/bin/bash
# Read once per job: the bytes a source serves when a step over the mini-cluster's two
# nodes stages it, against staging it node by node (the same source staged on n1, then
# on n2, as each node did before stage_fanout). The source is latencyfs (beside this
# script) with direct I/O, counting the bytes it served; each case starts cold.
#   bench/stage/fanout.sh [BUILD_DIR]      (as root, with contrib/minicluster up)
# Environment: MB (256), LATENCY_US (500), the mini-cluster's SLURM_CONF.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$(cd "$here/../.." && pwd)}
mb=${MB:-256}
latency=${LATENCY_US:-500}
user=aihpc-test
top=$(cd "$here/../.." && pwd)
"$top/contrib/minicluster" status >/dev/null 2>&1 || { echo "fanout: skipped (mini-cluster not up)"; exit 0; }
eval "$("$top/contrib/minicluster" env)"
export SLURM_CONF
work=$(mktemp -d /var/tmp/aihpc-bench-fanout.XXXXXX)
chmod 0755 "$work"
mkdir -p "$work/src/tree" "$work/mnt"
fs_pid=
unmount() {
  if mountpoint -q "$work/mnt"; then fusermount3 -u "$work/mnt" 2>/dev/null || umount -l "$work/mnt"; fi
  if [ -n "$fs_pid" ]; then wait "$fs_pid" 2>/dev/null || true; fs_pid=; fi
}
trap 'unmount; rm -rf "$work"' EXIT
cc -O2 -Wall -o "$work/latencyfs" "$here/latencyfs.c" $(pkg-config --cflags --libs fuse3)
mount_src() {
  unmount
  rm -f "$work/stats"
  "$work/latencyfs" "$work/src" "$work/mnt" -f -o "latency_us=$latency,max_threads=256,allow_other,uncached,stats=$work/stats" \
    >>"$work/latencyfs.log" 2>&1 </dev/null &
  fs_pid=$!
  for _ in $(seq 100); do mountpoint -q "$work/mnt" && return 0; sleep 0.05; done
  exit 1
}
served() { unmount; sed -n 's/^read_bytes //p' "$work/stats"; }
job() {  # job SBATCH-ARGS... : runs it, waits, prints its wall seconds
  local id start
  start=$(date +%s.%N)
  id=$(runuser -u "$user" -- env SLURM_CONF="$SLURM_CONF" sbatch --parsable -o /dev/null "$@")
  while squeue -h -j "$id" 2>/dev/null | grep -q .; do sleep 0.2; done
  echo "$(date +%s.%N) - $start" | bc -l
}

head -c $((mb << 20)) /dev/urandom >"$work/src/tree/bulk.bin"
"$build/tools/aihpc-stage" pack "$work/src/tree" "$work/src/set.sqsh" >/dev/null
chown -R "$user" "$work/src"
bytes=$(stat -c %s "$work/src/set.sqsh")
echo "# fan-out bench: a $((bytes >> 20)) MiB squashfs image from latencyfs (${latency} us), two nodes; $(nproc) CPUs"

touch "$work/src/set.sqsh"
mount_src
t1=$(job -w n1 --wrap "srun -N1 --aihpc-stage=$work/mnt/set.sqsh:img true")
t2=$(job -w n2 --wrap "srun -N1 --aihpc-stage=$work/mnt/set.sqsh:img true")
node_by_node=$(served)

touch "$work/src/set.sqsh"
mount_src
tf=$(job -N2 -w n1,n2 --wrap "srun -N2 -n2 --aihpc-stage=$work/mnt/set.sqsh:img true")
fanned=$(served)

printf '%-28s %14s %10s %12s\n' "" "source bytes" "x image" "job seconds"
printf '%-28s %14s %10s %12s\n' "node by node (n1, then n2)" "$node_by_node" "$(echo "scale=2; $node_by_node / $bytes" | bc)" \
  "$(echo "$t1 + $t2" | bc -l | cut -c1-6)"
printf '%-28s %14s %10s %12s\n' "one step, stage_fanout=auto" "$fanned" "$(echo "scale=2; $fanned / $bytes" | bc)" "${tf:0:6}"
echo "ratio of source bytes, node by node / fanned out: $(echo "scale=2; $node_by_node / $fanned" | bc)"
