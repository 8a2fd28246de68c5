#!/usr/bin/env bash
# Stage-in on the mini-cluster: an array over both nodes shares one copy per node, a
# second job hits the cache, a changed source is staged anew.
. "$(dirname "$0")/lib.sh"
# The user's own node cache is what this test is about: its sources would otherwise go to
# the node's shared cache, being world-readable (24-stage-shared.sh tests that one).
export AIHPC_STAGE_MODE=user
plan 9
work=$(scratch)
cd "$work"
local_root_of() { echo "${AIHPC_LOCAL_ROOT//%n/$1}"; }
uid=$(id -u "$test_user")

# A source of a few thousand files, owned by the test user.
as_user python3 "$top_builddir/bench/stage/make_tree.py" "$work/src" 3000
as_user bash -c "cd '$work/src' && find . -type f | sort | xargs sha1sum" >expected.sums

cat >array.sh <<'JOB'
#!/bin/bash
#SBATCH --array=0-7 -N1 -o out.%a
echo "node=$SLURMD_NODENAME"
echo "dir=$AIHPC_STAGE_DIR"
echo "data=$AIHPC_DATA_SET"
echo "manifests=$AIHPC_STAGE_MANIFESTS"
cd "$AIHPC_DATA_SET" && find . -type f | sort | xargs sha1sum >"$SLURM_SUBMIT_DIR/seen.$SLURM_ARRAY_TASK_ID"
stat -L -c %i "$AIHPC_DATA_SET/d000/f00000.bin" >"$SLURM_SUBMIT_DIR/inode.$SLURM_ARRAY_TASK_ID"
sleep 2
JOB
# Spread the tasks: half pinned to each node.
id=$(as_user sbatch --parsable --aihpc-stage="$work/src:set" --array=0-3 -w n1 array.sh)
id2=$(as_user sbatch --parsable --aihpc-stage="$work/src:set" --array=4-7 -w n2 array.sh)
s1=$(wait_job "$id" 180); s2=$(wait_job "$id2" 180)
ok "8 array tasks over both nodes with --aihpc-stage complete" test "$s1/$s2" = COMPLETED/COMPLETED
ok "every task sees identical, complete data" \
    bash -c 'for i in 0 1 2 3 4 5 6 7; do cmp -s expected.sums seen.$i || { echo "task $i differs"; exit 1; }; done'
ok "tasks ran on both nodes" bash -c 'grep -qx node=n1 out.*; grep -qx node=n2 out.*'
ok "AIHPC_DATA_SET is AIHPC_STAGE_DIR/set and AIHPC_STAGE_MANIFESTS names it" \
    bash -c 'for f in out.*; do d=$(sed -n "s/^dir=//p" $f); grep -qx "data=$d/set" $f && grep -q "^manifests=set=[0-9a-f]\{32\}$" $f || exit 1; done'
copied_once_per_node() {
    for node in n1 n2; do
        local log n
        log=$(local_root_of $node)/cache/$uid/log
        n=$(grep -c " miss .* src=$work/src " "$log" 2>/dev/null)
        [ "$n" = 1 ] || { echo "$node: $n copies in $log"; cat "$log"; return 1; }
    done
    # Same inode within a node: the tasks read one copy.
    [ "$(for i in 0 1 2 3; do cat inode.$i; done | sort -u | wc -l)" = 1 ] || return 1
    [ "$(for i in 4 5 6 7; do cat inode.$i; done | sort -u | wc -l)" = 1 ]
}
# A fresh cache per node for this source: earlier runs used other scratch dirs.
ok "the source was copied exactly once per node (cache log and inode identity)" copied_once_per_node
ok "the user's cache dir is 0700 and owned by the user" \
    bash -c "[ \"\$(stat -c %a:%U '$(local_root_of n1)/cache/$uid')\" = 700:$test_user ]"

cat >again.sh <<'JOB'
#!/bin/bash
cat "$AIHPC_DATA_SET/d000/f00000.bin" | sha1sum
JOB
again=$(as_user sbatch --parsable -w n1 -o again.out --aihpc-stage="$work/src:set" --aihpc-verbose again.sh)
wait_job "$again" >/dev/null
ok "a second job staging the unchanged source is a cache hit" \
    bash -c "grep -q 'stage-in set: hit' again.out && [ \"\$(grep -c \" miss .* src=$work/src \" '$(local_root_of n1)/cache/$uid/log')\" = 1 ]"
as_user bash -c "printf changed >'$work/src/d000/f00000.bin'"
sbatch_wait -w n1 -o changed.out --aihpc-stage="$work/src:set" --aihpc-verbose again.sh >/dev/null
ok "after a source file changes, the next job gets the new content" \
    bash -c "grep -q 'stage-in set: miss' changed.out && grep -q \"\$(printf changed | sha1sum | cut -c1-40)\" changed.out"
ok "the job's stage dir is removed at job end" \
    bash -c "sleep 2; ! ls -d '$(local_root_of n1)'/jobs/$again* 2>/dev/null | grep -q ."
finish
