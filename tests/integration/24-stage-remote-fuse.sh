#!/usr/bin/env bash
# Stage-in from a remote source: the source is seen through latencyfs (the FUSE
# pass-through of bench/stage, where every operation sleeps 0.5 ms as a round trip to a
# network file system would), local_root is on tmpfs. Jobs must see exactly the source's
# data, hit the cache when nothing changed, and stage anew a file changed with its size
# and mtime put back.
. "$(dirname "$0")/lib.sh"
# The user's own node cache is what this test is about: its sources would otherwise go to
# the node's shared cache, being world-readable (24-stage-shared.sh tests that one).
export AIHPC_STAGE_MODE=user
command -v fusermount3 >/dev/null && [ -c /dev/fuse ] || skip_all "needs FUSE (apt-get install fuse3) and /dev/fuse"
pkg-config --exists fuse3 || skip_all "needs libfuse3-dev to build bench/stage/latencyfs.c"
plan 7
work=$(scratch)
cd "$work"
uid=$(id -u "$test_user")

cc -O2 -Wall -o "$work/latencyfs" "$top_builddir/bench/stage/latencyfs.c" $(pkg-config --cflags --libs fuse3)

# local_root on a tmpfs of its own, below the mini-cluster's root-owned state dir.
state_dir=$(dirname "$SLURM_CONF")
[ "$(basename "$state_dir")" = etc ] && state_dir=$(dirname "$state_dir")
tmpfs_root=$(mktemp -d "$state_dir/tmpfs-local.XXXXXX")
chmod 0755 "$tmpfs_root"
mount -t tmpfs -o size=512m,mode=0755 aihpc-test "$tmpfs_root"
remote="$work/remote"
mkdir -p "$remote"
cleanup_remote() {
    mountpoint -q "$remote" && { fusermount3 -u "$remote" || umount -l "$remote"; }
    mountpoint -q "$tmpfs_root" && umount -l "$tmpfs_root"
    rmdir "$tmpfs_root" 2>/dev/null || true
}
trap 'restore_site_keys; cleanup_remote; remove_scratch' EXIT
[ -f "$plugstack.orig" ] || cp "$plugstack" "$plugstack.orig"
sed "s|local_root=[^ ]*|local_root=$tmpfs_root/%n|" "$plugstack.orig" >"$plugstack.new"
mv "$plugstack.new" "$plugstack"

# The source: a few thousand small files and a symlink, owned by the test user, served
# through latencyfs at 0.5 ms per operation.
as_user mkdir "$work/src"
as_user python3 "$top_builddir/bench/stage/make_tree.py" "$work/src/tree" 2000
as_user ln -s d000/f00000.bin "$work/src/tree/first"
"$work/latencyfs" "$work/src" "$remote" -o latency_us=500,max_threads=1024,allow_other
as_user bash -c "cd '$work/src/tree' && find . -type f | sort | xargs sha1sum" >expected.sums

cat >job.sh <<'JOB'
#!/bin/bash
cd "$AIHPC_DATA_SET" && find . -type f | sort | xargs sha1sum >"$SLURM_SUBMIT_DIR/seen.$SLURM_JOB_ID"
readlink first >"$SLURM_SUBMIT_DIR/link.$SLURM_JOB_ID"
stat -f -c %T "$(readlink -f "$AIHPC_DATA_SET")" >"$SLURM_SUBMIT_DIR/fs.$SLURM_JOB_ID"
JOB

id=$(as_user sbatch --parsable -w n1 -o first.out --aihpc-verbose --aihpc-stage="$remote/tree:set" job.sh)
state=$(wait_job "$id" 300)
ok "a job staging a tree from the latency file system completes" test "$state" = COMPLETED
ok "the job sees exactly the source's files and symlink" \
    bash -c "cmp expected.sums seen.$id && [ \"\$(cat link.$id)\" = d000/f00000.bin ]"
ok "the staged data lies on the tmpfs local_root" \
    bash -c "[ \"\$(cat fs.$id)\" = tmpfs ] && grep -q 'stage-in set: miss' first.out"

id2=$(as_user sbatch --parsable -w n1 -o second.out --aihpc-verbose --aihpc-stage="$remote/tree:set" job.sh)
wait_job "$id2" 300 >/dev/null
ok "a second job on the unchanged remote source hits the cache and sees the same data" \
    bash -c "grep -q 'stage-in set: hit' second.out && cmp expected.sums seen.$id2"

id3=$(as_user sbatch --parsable -w n1 -o private.out --aihpc-stage-mode=private --aihpc-stage="$remote/tree:set" job.sh)
state3=$(wait_job "$id3" 300)
ok "a private copy through the latency file system is identical too" \
    bash -c "[ '$state3' = COMPLETED ] && cmp expected.sums seen.$id3"

# Same size, mtime put back: only the ctime (and the content) moved.
f="$work/src/tree/d001/f00100.bin"
old_mtime=$(stat -c %y "$f")
size=$(stat -c %s "$f")
as_user bash -c "head -c $size /dev/zero | tr '\\0' z >'$f' && touch -d '$old_mtime' '$f'"
as_user bash -c "cd '$work/src/tree' && find . -type f | sort | xargs sha1sum" >expected2.sums
sleep 1.5  # past latencyfs's 1 s attribute cache, as past an NFS client's
id4=$(as_user sbatch --parsable -w n1 -o changed.out --aihpc-verbose --aihpc-stage="$remote/tree:set" job.sh)
wait_job "$id4" 300 >/dev/null
ok "a file changed with its size and mtime put back is staged anew" \
    bash -c "grep -q 'stage-in set: miss' changed.out && cmp expected2.sums seen.$id4"
ok "the cache holds the entry on tmpfs, owned by the user" \
    bash -c "[ \"\$(stat -c %U '$tmpfs_root/n1/cache/$uid')\" = '$test_user' ]"
finish
