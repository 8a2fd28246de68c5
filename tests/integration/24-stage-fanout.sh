#!/usr/bin/env bash
# Read once per job (stage_fanout=auto): a step over both nodes stages a tree, an
# archive and a squashfs image from a counting source (latencyfs, bench/stage, whose stats= option
# counts the bytes it served, with direct I/O). The tree travels as a tar. The two nodes of the mini-cluster share
# one host, whose page cache may serve one node's read of the source from the other's,
# so the counts prove a single read, and the nodes' own words say which node read. Node 0 reads each source and sends it on with sbcast;
# the other node reads nothing of it. Both nodes hold identical data. A node that
# already holds a source warm reads nothing; a transfer that fails on its way leaves
# the other node to read the source itself, and the step still runs with identical data.
. "$(dirname "$0")/lib.sh"
command -v fusermount3 >/dev/null && [ -c /dev/fuse ] || skip_all "needs FUSE (apt-get install fuse3) and /dev/fuse"
pkg-config --exists fuse3 || skip_all "needs libfuse3-dev to build bench/stage/latencyfs.c"
command -v sbcast >/dev/null || skip_all "needs sbcast (slurm-client)"
plan 8
work=$(user_scratch)
cd "$work" || exit 1
cc -O2 -Wall -o "$work/latencyfs" "$top_builddir/bench/stage/latencyfs.c" $(pkg-config --cflags --libs fuse3)
mkdir -p "$work/src" "$work/remote" "$work/out"
chown "$test_user" "$work/out"
fs_pid=
unmount_remote() {
    if mountpoint -q "$work/remote"; then fusermount3 -u "$work/remote" 2>/dev/null || umount -l "$work/remote"; fi
    if [ -n "$fs_pid" ]; then wait "$fs_pid" 2>/dev/null || true; fs_pid=; fi
}
trap "unmount_remote; [ -n \"${KEEP:-}\" ] || remove_scratch" EXIT
# mount_remote: latencyfs afresh, its counts from zero.
mount_remote() {
    unmount_remote
    rm -f "$work/stats"
    "$work/latencyfs" "$work/src" "$work/remote" -f -o latency_us=200,max_threads=256,allow_other,uncached,stats="$work/stats" \
        >>"$work/latencyfs.log" 2>&1 </dev/null &
    fs_pid=$!
    for _ in $(seq 100); do mountpoint -q "$work/remote" && return 0; sleep 0.05; done
    return 1
}
served() { unmount_remote; sed -n 's/^read_bytes //p' "$work/stats"; }

python3 "$top_builddir/bench/stage/make_tree.py" "$work/src/tree" 3000 >/dev/null
tar -C "$work/src/tree" -cf "$work/src/set.tar" .
"$top_builddir/tools/aihpc-stage" pack "$work/src/tree" "$work/src/set.sqsh" >/dev/null
chown -R "$test_user" "$work/src"
(cd "$work/src/tree" && find . -type f | sort | xargs md5sum | md5sum | cut -c1-32) >expected
archive_bytes=$(stat -c %s "$work/src/set.tar")
image_bytes=$(stat -c %s "$work/src/set.sqsh")
tree_bytes=$(find "$work/src/tree" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
sizes=$((archive_bytes + image_bytes + tree_bytes))

cat >step.sh <<'JOB'
#!/bin/bash
sum() { (cd "$1" && find . -type f | sort | xargs md5sum | md5sum | cut -c1-32); }
echo "$SLURMD_NODENAME $(sum "$AIHPC_DATA_ARC") $(sum "$AIHPC_DATA_IMG") $(sum "$AIHPC_DATA_TRE")" >"$OUT/sums.$SLURMD_NODENAME"
JOB
chmod 0755 step.sh
# run_step NAME [SRUN OPTIONS]: one step over both nodes staging the three sources.
run_step() {
    local name=$1 id
    shift
    rm -f out/sums.*
    id=$(as_user sbatch --parsable -N2 -w n1,n2 -o "out/$name.out" --export=ALL,OUT="$work/out" --wrap \
        "srun -N2 -n2 $* --aihpc-verbose --aihpc-stage=$work/remote/set.tar:arc,$work/remote/set.sqsh:img,$work/remote/tree:tre $work/step.sh")
    wait_job "$id" 300
}
identical() {
    local want
    want=$(cat expected)
    [ "$(cat out/sums.n1 2>/dev/null)" = "n1 $want $want $want" ] && [ "$(cat out/sums.n2 2>/dev/null)" = "n2 $want $want $want" ] && return 0
    echo "want $want; n1: $(cat out/sums.n1 2>&1); n2: $(cat out/sums.n2 2>&1)"
    return 1
}

mount_remote
state=$(run_step cold)
read=$(served)
ok "a two-node step staging a tree, an archive and an image completes, identical on both nodes" \
    bash -c "[ '$state' = COMPLETED ] && $(declare -f identical); cd '$work'; identical"
ok "the source is read once, not once per node ($read bytes for $sizes)" \
    test "$read" -ge "$sizes" -a "$read" -lt $((sizes + sizes / 10))
ok "node 0 says it read and sent each, the other that it received each" bash -c "
    [ \$(grep -c 'sent to 1 other node through sbcast; this node read the source' out/cold.out) = 3 ] &&
    [ \$(grep -c 'received from n1 through sbcast; the source was not read here' out/cold.out) = 3 ]"

# warm_only NODE: a new version of the image, staged on NODE alone; the source then
# counts from zero again.
warm_only() {
    local id
    touch "$work/src/set.sqsh"
    mount_remote
    id=$(as_user sbatch --parsable -w "$1" -o "out/warm-$1.out" --wrap "srun -N1 --aihpc-stage=$work/remote/set.sqsh:img true")
    wait_job "$id" 300 >/dev/null
    served >/dev/null
    mount_remote
}

# Warm on node 0 only: it sends from its cache, and the source serves nothing.
warm_only n1
state=$(run_step warm)
read=$(served)
ok "with the image warm on node 0, the step reads only metadata from the source ($read bytes, image $image_bytes)" \
    bash -c "[ '$state' = COMPLETED ] && [ $read -lt $((image_bytes / 10)) ] && grep -q 'img: sent to 1 other node through sbcast, from this node.s cache' out/warm.out"
ok "the data is identical on both nodes" bash -c "$(declare -f identical); cd '$work'; identical"

# Warm on the other node only: it reads nothing, node 0 reads once.
warm_only n2
state=$(run_step warm2)
read=$(served)
ok "with the image warm on the other node, it hits and the source serves the image once" \
    bash -c "[ '$state' = COMPLETED ] && [ $read -lt $((image_bytes + image_bytes / 10)) ] && grep -q 'stage-in img: hit' out/warm2.out"

# The transfer of the image refused on its way: the file sbcast must write is root's
# and read-only, made in the job's dir before the job runs. The other node reads the
# source itself and the step runs.
touch "$work/src/set.sqsh"
mount_remote
rm -f out/sums.*
id=$(as_user sbatch --parsable --hold -N2 -w n1,n2 -o out/killed.out --export=ALL,OUT="$work/out" --wrap \
    "srun -N2 -n2 --aihpc-verbose --aihpc-stage=$work/remote/set.tar:arc,$work/remote/set.sqsh:img,$work/remote/tree:tre $work/step.sh")
meta="${AIHPC_LOCAL_ROOT//%n/n1}/jobs/$id.aihpc"
mkdir -p "$meta" && chown "$test_user" "$meta" && chmod 0700 "$meta"
: >"$meta/fanout.0.1" && chmod 0444 "$meta/fanout.0.1"
scontrol release "$id"
state=$(wait_job "$id" 300)
read=$(served)
ok "a refused transfer fails nothing: the step completes with identical data" \
    bash -c "[ '$state' = COMPLETED ] && $(declare -f identical); cd '$work'; identical"
ok "the other node read the image from the source, saying why" \
    grep -q 'stage-in img: read from the source here, since n1 sent nothing for it' out/killed.out
finish
