#!/usr/bin/env bash
# Stage-out on the mini-cluster: beside-then-rename, never replacing DEST, and a failure
# that keeps the local data.
. "$(dirname "$0")/lib.sh"
plan 9
work=$(scratch)
cd "$work"
local_root_n1=${AIHPC_LOCAL_ROOT//%n/n1}

cat >produce.sh <<'JOB'
#!/bin/bash
mkdir -p "$AIHPC_STAGE_DIR/ckpt" && echo "weights of $SLURM_JOB_ID" >"$AIHPC_STAGE_DIR/ckpt/model.pt"
JOB
id=$(as_user sbatch --parsable -w n1 -o out1 --aihpc-stage-out="ckpt:$work/result-%n" produce.sh)
wait_job "$id" >/dev/null
ok "stage-out copies LOCAL to DEST with %n expanded" grep -q "weights of $id" "$work/result-n1/model.pt"

id2=$(as_user sbatch --parsable -w n1 -o out2 --aihpc-stage-out="ckpt:$work/result-%n" produce.sh)
wait_job "$id2" >/dev/null
ok "an existing DEST is never replaced: the copy goes to DEST.<jobid>" \
    bash -c "grep -q 'weights of $id\$' '$work/result-n1/model.pt' && grep -q 'weights of $id2' '$work/result-n1.$id2/model.pt'"
ok "the job's output says the copy went to DEST.<jobid>" grep -q "aihpc: .*already exists, so the copy went to $work/result-n1.$id2" out2

mkdir -p "$work/locked" && chmod 0555 "$work/locked"
id3=$(as_user sbatch --parsable -w n1 -o out3 --aihpc-stage-out="ckpt:$work/locked/result" produce.sh)
state3=$(wait_job_status "$id3")
ok "a stage-out to an unwritable DEST is reported in the job's output, naming the kept data" \
    grep -q "aihpc: stage-out of .*ckpt.* failed: .*the local data is kept in $local_root_n1/jobs/$id3/ckpt" out3
ok "the local data of a failed stage-out is kept after the job ends" \
    bash -c "sleep 2; grep -q 'weights of $id3' '$local_root_n1/jobs/$id3/ckpt/model.pt'"
ok "a batch job whose stage-out delivered nothing is FAILED, not COMPLETED (got: $state3)" test "$state3" = "FAILED 1:0"
ok "the job's stderr says why the job failed" grep -q "aihpc: the task fails because its stage-out did not deliver" out3
ok "the job's AdminComment says what is kept where, and how to deliver it" \
    bash -c "scontrol show job $id3 -o | grep -q \"AdminComment=aihpc: stage-out did not deliver, so $local_root_n1/jobs/$id3 is kept on n1 .*aihpc-stage deliver $id3\""

# An srun step's stage-out failure fails the step: srun exits non-zero.
cat >step.sh <<JOB
#!/bin/bash
srun -n1 --aihpc-stage-out="ckpt:$work/locked/step-result" bash -c 'mkdir -p "\$AIHPC_STAGE_DIR/ckpt" && echo x >"\$AIHPC_STAGE_DIR/ckpt/f"'
echo "srun exit \$?"
JOB
id4=$(as_user sbatch --parsable -w n1 -o out4 step.sh)
wait_job "$id4" >/dev/null
ok "an srun step whose stage-out delivered nothing exits non-zero" grep -q "srun exit 1" out4
finish
