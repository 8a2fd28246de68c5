#!/usr/bin/env bash
# --aihpc-checkpoint: an application that traps the checkpoint signal writes its state to
# AIHPC_CHECKPOINT_DIR and exits 75; the job is requeued, starts again with
# AIHPC_RESTART_COUNT=1 and a cache hit for its stage-in, resumes from its checkpoint and
# finishes. No line of the application knows about Slurm.
. "$(dirname "$0")/lib.sh"
plan 11
work=$(scratch)
cd "$work"
mkdir -p data && echo "dataset" >data/f && chmod -R a+rX data
home=$(getent passwd "$test_user" | cut -d: -f6)
# Job ids start again with each new mini-cluster, while the test user's home stays: a
# checkpoint an earlier run left under the same job id would be resumed from.
rm -rf "$(getent passwd "$test_user" | cut -d: -f6)/.aihpc/checkpoints"

cat >train.sh <<'JOB'
#!/bin/bash
echo "start restart=$AIHPC_RESTART_COUNT checkpoint_dir=$AIHPC_CHECKPOINT_DIR"
epoch=0
[ -f "$AIHPC_CHECKPOINT_DIR/epoch" ] && epoch=$(cat "$AIHPC_CHECKPOINT_DIR/epoch") && echo "resumed at epoch $epoch"
trap 'echo $epoch >"$AIHPC_CHECKPOINT_DIR/epoch"; echo "checkpoint at epoch $epoch"
      mkdir -p "$AIHPC_STAGE_DIR/out" && echo "run $AIHPC_RESTART_COUNT at epoch $epoch" >"$AIHPC_STAGE_DIR/out/model"
      exit 75' USR1
while [ $epoch -lt 1000 ]; do
    epoch=$((epoch + 1))
    # A resumed run finishes at once: this test is about the restart, not the training.
    [ "$AIHPC_RESTART_COUNT" -ge 1 ] && epoch=1000
    sleep 0.5
done
echo "finished at epoch $epoch, restart $AIHPC_RESTART_COUNT"
mkdir -p "$AIHPC_STAGE_DIR/out" && echo "run $AIHPC_RESTART_COUNT at epoch $epoch" >"$AIHPC_STAGE_DIR/out/model"
JOB
chmod +x train.sh

# A 1-minute limit and the signal 50 s before it: the signal comes about 10 s in.
id=$(as_user sbatch --parsable -w n1 -t 1 -o "$work/out" --open-mode=append --aihpc-verbose \
    --aihpc-stage="$work/data:data" --aihpc-stage-out="out:$work/result" --aihpc-checkpoint=USR1@50 "$work/train.sh")
requeued=
for _ in $(seq 600); do
    [ "$(job_field "$id" Restarts)" = 1 ] && requeued=1 && break
    sleep 0.1
done
ok "the job was requeued after its checkpoint" test -n "$requeued"
# Slurm holds a requeued job for CredExpire (120 s by default); the site's admin may
# release it at once, as this test does to stay quick.
release_requeued "$id"
state=$(wait_job "$id" 120)
ok "the requeued job finishes COMPLETED (got $state)" \
    bash -c "test '$state' = COMPLETED || { scontrol show job $id; cat '$work/out'; false; }"
ok "the first run got the checkpoint signal from aihpc and wrote its state" grep -q "checkpoint at epoch" out
ok "the wrapper said the job is requeued" grep -q "aihpc: the task exited 75 after its checkpoint: job $id is requeued" out
ok "the second run saw AIHPC_RESTART_COUNT=1" grep -q "start restart=1" out
ok "AIHPC_CHECKPOINT_DIR is \$HOME/.aihpc/checkpoints/<jobid> in both runs" \
    test "$(grep -c "checkpoint_dir=$home/.aihpc/checkpoints/$id\$" out)" = 2
ok "the second run resumed from the checkpoint" bash -c "grep -q 'resumed at epoch [1-9]' out && grep -q 'finished at epoch 1000, restart 1' out"
ok "each run's stage-out delivered its own output: the first to DEST, the second beside it" \
    bash -c "grep -q 'run 0 at epoch' '$work/result/model' && grep -q 'run 1 at epoch 1000' '$work/result.$id/model'"
ok "the requeue waited for the first run's stage-out and root's record of it" \
    bash -c "grep -q 'is requeued once its stage-out is recorded' out && ! grep -q 'ended without finishing' out && ! grep -q 'stage-out did not deliver' out"
ok "its stage-in on restart is a cache hit" bash -c "grep 'stage-in data:' out | tail -1 | grep -q 'hit'"
ok "a bad checkpoint signal is refused at submit" \
    bash -c "! runuser -u $test_user -- env SLURM_CONF=$SLURM_CONF sbatch --aihpc-checkpoint=BOGUS@10 --wrap true 2>'$work/bad' && grep -q 'aihpc: --aihpc-checkpoint: unknown signal' '$work/bad'"
finish
