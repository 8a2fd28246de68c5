#!/usr/bin/env bash
# A job's end keeps its results: a stage-out cut short by scancel or the time limit
# leaves DEST whole or absent, never partial; the stage dir is kept, counted, listed by
# `aihpc-stage kept` and finished by `aihpc-stage deliver` in a later job, or by the
# job's epilog within epilog_deliver_timeout; the task's command sees its signals, with
# all of its KillWait, before the stage-out.
. "$(dirname "$0")/lib.sh"
work=$(scratch)
cd "$work"
local_root_n1=${AIHPC_LOCAL_ROOT//%n/n1}
stage_tool=$top_builddir/tools/aihpc-stage
# Large enough that the copy and its flush outlast the moment it takes to cut them, as
# the acceptance names; both outcomes of a cut copy are checked anyway.
out_mb=${AIHPC_TEST_STAGE_OUT_MB:-3000}
head -c "${out_mb}M" /dev/urandom >"$work/weights"
md5sum <"$work/weights" >"$work/weights.md5"
chmod a+r "$work/weights"
test_uid=$(id -u "$test_user")
mkdir -p small && echo x >small/f && chmod -R a+rX small

# A temporary copy beside DEST, under its hidden name: the stage-out of job $1 is running.
wait_copy_in_flight() {
    local deadline=$((SECONDS + 120))
    while [ $SECONDS -lt $deadline ]; do
        compgen -G "$work/.$2.aihpc-out.$1.*" >/dev/null && return 0
        [ -z "$(squeue -h -j "$1" -o %i 2>/dev/null)" ] && return 1
        sleep 0.05
    done
    return 1
}

cat >produce.sh <<JOB
#!/bin/bash
mkdir -p "\$AIHPC_STAGE_DIR/out"
cp "$work/weights" "\$AIHPC_STAGE_DIR/out/weights"
JOB
chmod +x produce.sh

# cut_stage_out HOW DEST: a batch job whose stage-out to DEST is cut short by HOW:
# scancel; kill -9 of slurmstepd, then scancel; kill -9 of the task wrapper and scancel.
# Prints the job id.
cut_stage_out() {
    local how=$1 dest=$2 id pid
    id=$(as_user sbatch --parsable -w n1 -o "$work/out-$dest" --aihpc-stage-out="out:$work/$dest" "$work/produce.sh")
    wait_copy_in_flight "$id" "$dest" || echo "# the stage-out of job $id was not seen copying" >&2
    case $how in
    scancel) scancel "$id" ;;
    kill-slurmstepd)
        # The step's processes die with it, as on a node that lost the step: a wrapper
        # left orphaned would go on copying, and deliver on its own.
        # The copy is stopped first, so that it cannot finish between the two kills.
        cluster_pkill STOP -u "$test_user" -f "aihpc-node run-task"
        pid=$(pgrep -f "slurmstepd: \[$id\.")
        [ -n "$pid" ] && kill -9 $pid
        cluster_pkill 9 -u "$test_user" -f "aihpc-node run-task"
        scancel "$id" ;;
    kill-wrapper)
        pid=$(live_pids "$test_user" "aihpc-node run-task")
        [ -n "$pid" ] && kill -9 $pid
        scancel "$id" ;;
    esac
    wait_job "$id" >/dev/null
    echo "$id"
}

# check_cut_stage_out HOW ID DEST [kept]: whatever cut the stage-out, DEST is whole or
# absent; when absent, the stage dir is kept, counted, listed, and `aihpc-stage
# deliver` in a later job completes it byte for byte. With "kept", DEST must be absent.
check_cut_stage_out() {
    local how=$1 id=$2 dest=$3 must_keep=${4:-}
    local state
    state=$(job_field "$id" JobState)
    ok "$how: the job is not COMPLETED (got $state)" test "$state" != COMPLETED
    if [ -e "$work/$dest" ] && [ -z "$must_keep" ]; then
        ok "$how: DEST is whole" bash -c "md5sum <'$work/$dest/weights' | cmp - '$work/weights.md5'"
        ok "$how: what was delivered is not kept" \
            bash -c "for i in \$(seq 50); do [ ! -e '$local_root_n1/kept/$id' ] && exit 0; sleep 0.2; done; exit 1"
        return
    fi
    ok "$how: DEST is untouched" test ! -e "$work/$dest"
    ok "$how: root keeps kept/$id, naming DEST" \
        bash -c "[ \$(stat -c %u '$local_root_n1/kept/$id') = 0 ] && grep -q 'deliver=.* $work/$dest' '$local_root_n1/kept/$id'"
    ok "$how: the stage dir is kept with the whole output" \
        bash -c "md5sum <'$local_root_n1/jobs/$id/out/weights' | cmp - '$work/weights.md5'"
    # Root's ledger is brought up to date by the next cache-mode stage on the node.
    as_user srun -w n1 --aihpc-stage="$work/small:small" true
    ok "$how: the cache ledger counts the kept stage dir against the user" \
        bash -c "awk '\$1 == \"k\" && \$2 == $test_uid && \$NF == \"$id\" && \$6 > $((out_mb * 900000))' '$local_root_n1/cache/ledger' | grep -q ."
    ok "$how: aihpc-stage kept lists it, with the command that finishes it" \
        bash -c "runuser -u $test_user -- env SLURM_CONF=$SLURM_CONF srun -w n1 '$stage_tool' kept | grep -q 'aihpc-stage deliver $id'"
    ok "$how: another user is shown nothing of it, and cannot deliver it" \
        bash -c "! runuser -u $other_user -- env SLURM_CONF=$SLURM_CONF srun -w n1 '$stage_tool' kept | grep -q 'job $id ' &&
                 runuser -u $other_user -- env SLURM_CONF=$SLURM_CONF srun -w n1 '$stage_tool' deliver $id 2>&1 | grep -q 'not yours'"
    ok "$how: aihpc-stage deliver in a later job on the node completes it" as_user srun -w n1 "$stage_tool" deliver "$id"
    ok "$how: the delivered DEST is byte for byte what the job wrote" \
        bash -c "md5sum <'$work/$dest/weights' | cmp - '$work/weights.md5'"
    ok "$how: no hidden partial copy is left beside DEST" bash -c "! compgen -G '$work/.$dest.aihpc-out.*' >/dev/null"
    ok "$how: the epilog of the job that delivered releases the kept stage dir" \
        bash -c "for i in \$(seq 50); do [ ! -e '$local_root_n1/kept/$id' ] && [ ! -e '$local_root_n1/jobs/$id' ] && exit 0; sleep 0.2; done; exit 1"
}

# The epilog's own delivery is off at first, so that what it leaves kept is seen.
with_site_keys epilog_deliver_timeout=0
id=$(cut_stage_out scancel res1)
check_cut_stage_out scancel "$id" res1
id=$(cut_stage_out kill-slurmstepd res2)
check_cut_stage_out "kill -9 of slurmstepd" "$id" res2 kept
# The wrapper killed and the job cancelled: slurmstepd starts the copy again once the
# task died, and stops it once it sees the job cancelled; either way DEST is whole or
# untouched. (Without slurmstepd, above, the stage dir is always kept.)
id=$(cut_stage_out kill-wrapper res3)
check_cut_stage_out "kill -9 of the task wrapper" "$id" res3

# ---- the epilog finishes what the job's end cut short (epilog_deliver_timeout, 60 s by
# default), as the job's user. Here the node loses the step before its stage-out even
# began: slurmstepd and every process of the job are killed while the application
# still runs, so no one but the epilog can deliver.
restore_site_keys
cat >hang.sh <<JOB
#!/bin/bash
"$work/produce.sh"
touch "$work/produced.\$SLURM_JOB_ID"
exec sleep 1000
JOB
chmod +x hang.sh
id=$(as_user sbatch --parsable -w n1 -o "$work/out-res6" --aihpc-stage-out="out:$work/res6" "$work/hang.sh")
for _ in $(seq 1200); do [ -e "$work/produced.$id" ] && break; sleep 0.1; done
pid=$(pgrep -f "slurmstepd: \[$id\.")
[ -n "$pid" ] && kill -9 $pid
kill_job_processes "$id"
scancel "$id"
wait_job "$id" >/dev/null
ok "the step was lost before its stage-out began" test -e "$work/produced.$id"
ok "the epilog delivered the output: DEST is byte for byte what the job wrote" \
    bash -c "md5sum <'$work/res6/weights' | cmp - '$work/weights.md5'"
ok "the epilog released the kept stage dir once it delivered" \
    bash -c "for i in \$(seq 50); do [ ! -e '$local_root_n1/kept/$id' ] && [ ! -e '$local_root_n1/jobs/$id' ] && exit 0; sleep 0.2; done; exit 1"
ok "the epilog's delivery left no hidden partial copy beside DEST" bash -c "! compgen -G '$work/.res6.aihpc-out.*' >/dev/null"
ok "the delivered DEST belongs to the job's user" test "$(stat -c %u "$work/res6/weights")" = "$test_uid"
ok "n1 is idle again after the epilog's delivery" \
    bash -c "for i in \$(seq 50); do sinfo -h -n n1 -o %T | grep -qx idle && exit 0; sleep 0.2; done; exit 1"

# ---- the time limit during the stage-out: SIGTERM, then KillWait, then SIGKILL
# The application writes its output, then runs into the time limit: SIGTERM ends it, and
# the stage-out has what is left of KillWait before SIGKILL.
cat >late.sh <<JOB
#!/bin/bash
"$work/produce.sh"
exec sleep 1000
JOB
chmod +x late.sh
id=$(as_user sbatch --parsable -w n1 -t 1 -o out-timeout --aihpc-stage-out="out:$work/res4" late.sh)
state=$(wait_job "$id" 180)
ok "a job over its time limit is TIMEOUT (got $state)" test "$state" = TIMEOUT
if [ -e "$work/res4" ]; then
    ok "DEST after the time limit is whole" bash -c "md5sum <'$work/res4/weights' | cmp - '$work/weights.md5'"
    ok "a delivered stage-out is not kept" bash -c "sleep 2; [ ! -e '$local_root_n1/kept/$id' ]"
else
    pass "DEST after the time limit is absent, never partial"
    ok "the stage dir is kept, and deliver completes it" \
        bash -c "[ -f '$local_root_n1/kept/$id' ] && runuser -u $test_user -- env SLURM_CONF=$SLURM_CONF srun -w n1 '$stage_tool' deliver $id && md5sum <'$work/res4/weights' | cmp - '$work/weights.md5'"
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
id=$(as_user sbatch --parsable -w n1 -o out-signals --wrap "srun -n1 --aihpc-stage-out=out:$work/res5 $work/trap.sh $work")
for _ in $(seq 300); do [ -e "$work/ready.$id" ] && break; sleep 0.1; done
scancel -s USR1 "$id"
sleep 1
scancel "$id"
wait_job "$id" >/dev/null
ok "the command caught SIGTERM and wrote its checkpoint within KillWait; the stage-out delivered it" \
    grep -q "checkpoint after TERM" "$work/res5/ckpt"
ok "a signal Slurm sends reaches the command exactly once" grep -q "USR1 seen 1 times" "$work/res5/ckpt"
echo "1..$tap_count"
finish
