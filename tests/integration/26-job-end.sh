#!/usr/bin/env bash
# A job's end keeps its results: a stage-out cut short by scancel or the time limit
# leaves DEST whole or absent, never partial; the stage dir is kept, counted, listed by
# `aihpc-stage kept` and finished by `aihpc-stage deliver` in a later job; the task's
# command sees its signals, with all of its KillWait, before the stage-out.
. "$(dirname "$0")/lib.sh"
plan 19
work=$(scratch)
cd "$work"
local_root_n1=${AIHPC_LOCAL_ROOT//%n/n1}
stage_tool=$top_builddir/tools/aihpc-stage
# Large enough that the copy and its flush take a few seconds here.
out_mb=${AIHPC_TEST_STAGE_OUT_MB:-1200}

# A temporary copy beside DEST, under its hidden name: the stage-out of job $1 is running.
copy_in_flight() { compgen -G "$work/.res$2.aihpc-out.$1.*" >/dev/null; }
wait_copy_in_flight() {
    local deadline=$((SECONDS + 120))
    while [ $SECONDS -lt $deadline ]; do
        copy_in_flight "$1" "$2" && return 0
        [ -z "$(squeue -h -j "$1" -o %i 2>/dev/null)" ] && return 1
        sleep 0.1
    done
    return 1
}

cat >produce.sh <<JOB
#!/bin/bash
mkdir -p "\$AIHPC_STAGE_DIR/out"
head -c ${out_mb}M /dev/urandom >"\$AIHPC_STAGE_DIR/out/weights"
md5sum <"\$AIHPC_STAGE_DIR/out/weights" >"$work/sum.\$SLURM_JOB_ID"
JOB
chmod +x produce.sh

# ---- scancel while the stage-out copies
id=$(as_user sbatch --parsable -w n1 -o out-cancel --aihpc-stage-out="out:$work/res1" produce.sh)
if wait_copy_in_flight "$id" 1; then
    scancel "$id"
    state=$(wait_job "$id")
    pass "scancel reached job $id while its stage-out was copying"
else
    state=$(wait_job "$id")
    fail "the stage-out of job $id was seen copying before it ended" "state: $state" "$(cat out-cancel)"
fi
ok "a cancelled job is not COMPLETED (got $state)" test "$state" = CANCELLED
if [ -e "$work/res1" ]; then
    ok "DEST of a cut stage-out is either whole" bash -c "md5sum <'$work/res1/weights' | cmp - '$work/sum.$id'"
else
    pass "DEST of a cut stage-out is either whole or absent (absent)"
fi
ok "root keeps kept/$id after the job ended" test -f "$local_root_n1/kept/$id"
ok "the kept record is root's and names DEST" bash -c "[ \$(stat -c %u '$local_root_n1/kept/$id') = 0 ] && grep -q 'deliver=.* $work/res1' '$local_root_n1/kept/$id'"
ok "the stage dir is kept with the whole output" bash -c "md5sum <'$local_root_n1/jobs/$id/out/weights' | cmp - '$work/sum.$id'"
# Root's ledger is brought up to date by the next cache-mode stage on the node.
mkdir -p small && echo x >small/f && chmod -R a+rX small
as_user srun -w n1 --aihpc-stage="$work/small:small" true
test_uid=$(id -u "$test_user")
ok "the cache ledger counts the kept stage dir against the user" \
    bash -c "awk '\$1 == \"k\" && \$2 == $test_uid && \$9 == \"$id\" && \$6 > 1000000000' '$local_root_n1/cache/ledger' | grep -q ."
ok "aihpc-stage kept lists it, with the command that finishes it" \
    bash -c "as() { runuser -u $test_user -- env SLURM_CONF=$SLURM_CONF \"\$@\"; }; as srun -w n1 '$stage_tool' kept | grep -q 'aihpc-stage deliver $id'"
ok "another user is shown nothing of it" \
    bash -c "! runuser -u $other_user -- env SLURM_CONF=$SLURM_CONF srun -w n1 '$stage_tool' kept | grep -q 'job $id '"
ok "another user cannot deliver it" \
    bash -c "runuser -u $other_user -- env SLURM_CONF=$SLURM_CONF srun -w n1 '$stage_tool' deliver $id 2>&1 | grep -q 'not yours'"
ok "aihpc-stage deliver in a later job on the node completes it" as_user srun -w n1 "$stage_tool" deliver "$id"
ok "the delivered DEST is byte for byte what the job wrote" \
    bash -c "md5sum <'$work/res1/weights' | cmp - '$work/sum.$id'"
ok "no hidden partial copy is left beside DEST" bash -c "! compgen -G '$work/.res1.aihpc-out.*' >/dev/null"
ok "the epilog of the job that delivered releases the kept stage dir" \
    bash -c "for i in \$(seq 50); do [ ! -e '$local_root_n1/kept/$id' ] && [ ! -e '$local_root_n1/jobs/$id' ] && exit 0; sleep 0.2; done; exit 1"

# ---- the time limit during the stage-out: SIGTERM, then KillWait, then SIGKILL
cat >late.sh <<JOB
#!/bin/bash
sleep 50
exec "$work/produce.sh"
JOB
chmod +x late.sh
id=$(as_user sbatch --parsable -w n1 -t 1 -o out-timeout --aihpc-stage-out="out:$work/res2" late.sh)
state=$(wait_job "$id" 180)
ok "a job over its time limit is TIMEOUT (got $state)" test "$state" = TIMEOUT
if [ -e "$work/res2" ]; then
    ok "DEST after the time limit is whole" bash -c "md5sum <'$work/res2/weights' | cmp - '$work/sum.$id'"
    ok "a delivered stage-out is not kept" bash -c "sleep 2; [ ! -e '$local_root_n1/kept/$id' ]"
else
    pass "DEST after the time limit is absent, never partial"
    ok "the stage dir is kept, and deliver completes it" \
        bash -c "[ -f '$local_root_n1/kept/$id' ] && runuser -u $test_user -- env SLURM_CONF=$SLURM_CONF srun -w n1 '$stage_tool' deliver $id && md5sum <'$work/res2/weights' | cmp - '$work/sum.$id'"
fi

# ---- signals reach the command, once, and the stage-out runs after it
cat >trap.sh <<'JOB'
#!/bin/bash
mkdir -p "$AIHPC_STAGE_DIR/out"
usr1=0
trap 'usr1=$((usr1 + 1))' USR1
trap 'sleep 2; echo "checkpoint after TERM, USR1 seen $usr1 times" >"$AIHPC_STAGE_DIR/out/ckpt"; exit 0' TERM
echo ready >"$AIHPC_STAGE_DIR/out/ready"
cp "$AIHPC_STAGE_DIR/out/ready" "$1/ready.$SLURM_JOB_ID"
while :; do sleep 0.2; done
JOB
chmod +x trap.sh
id=$(as_user sbatch --parsable -w n1 -o out-signals --wrap "srun -n1 --aihpc-stage-out=out:$work/res3 $work/trap.sh $work")
for _ in $(seq 300); do [ -e "$work/ready.$id" ] && break; sleep 0.1; done
scancel -s USR1 "$id"
sleep 1
scancel "$id"
wait_job "$id" >/dev/null
ok "the command caught SIGTERM and wrote its checkpoint within KillWait; the stage-out delivered it" \
    grep -q "checkpoint after TERM" "$work/res3/ckpt"
ok "a signal Slurm sends reaches the command exactly once" grep -q "USR1 seen 1 times" "$work/res3/ckpt"
finish
