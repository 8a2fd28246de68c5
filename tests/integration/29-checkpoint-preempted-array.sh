#!/usr/bin/env bash
# A preempted array task is requeued and resumes from its checkpoint; the other tasks of
# the array are untouched. The mini-cluster's urgent partition preempts the default one
# (preempt/partition_prio, PreemptMode=REQUEUE); Slurm sends the task SIGTERM, which
# reaches the application through the task wrapper, and requeues the task itself.
. "$(dirname "$0")/lib.sh"
[ -n "$(sinfo -h -p urgent -o %P 2>/dev/null)" ] || skip_all "the mini-cluster has no urgent partition"
plan 7
work=$(scratch)
cd "$work"
# Job ids start again with each new mini-cluster, while the test user's home stays: a
# checkpoint an earlier run left under the same job id would be resumed from.
rm -rf "$(getent passwd "$test_user" | cut -d: -f6)/.aihpc/checkpoints"

cat >task.sh <<'JOB'
#!/bin/bash
echo "task $SLURM_ARRAY_TASK_ID start restart=$AIHPC_RESTART_COUNT on $SLURMD_NODENAME"
step=0
[ -f "$AIHPC_CHECKPOINT_DIR/step" ] && step=$(cat "$AIHPC_CHECKPOINT_DIR/step") && echo "resumed at step $step"
trap 'echo $step >"$AIHPC_CHECKPOINT_DIR/step"; echo "checkpoint at step $step on SIGTERM"; exit 0' TERM
touch "$1/running.$SLURM_ARRAY_TASK_ID.$AIHPC_RESTART_COUNT"
while [ $step -lt 40 ]; do step=$((step + 1)); sleep 0.5; done
echo "task $SLURM_ARRAY_TASK_ID finished at step $step, restart $AIHPC_RESTART_COUNT"
JOB
chmod +x task.sh

# Two tasks, each a whole node: one runs on n1, the other on n2.
array=$(as_user sbatch --parsable -a 0-1 -N1 -c2 -o "$work/out.%a" --open-mode=append \
    --aihpc-checkpoint "$work/task.sh" "$work")
for _ in $(seq 300); do [ -e running.0.0 ] && [ -e running.1.0 ] && break; sleep 0.1; done
victim=$(for t in 0 1; do
    [ "$(squeue -h -j "${array}_$t" -o %N)" = n1 ] && echo "$t"
done)
other=$((1 - ${victim:-0}))
ok "both array tasks run, one of them on n1 (task ${victim:-none})" test -n "$victim"
victim_id=$(squeue -h -j "${array}_$victim" -o %A)

urgent=$(as_user sbatch --parsable -p urgent -w n1 -N1 -c2 -o /dev/null --wrap 'sleep 3')
# The preempted task is requeued; Slurm holds it for CredExpire, and the site's admin
# releases it at once, as this test does to stay quick.
for _ in $(seq 300); do [ "$(job_field "$victim_id" Restarts)" = 1 ] && break; sleep 0.1; done
release_requeued "$victim_id"
wait_job "$urgent" 60 >/dev/null
state=$(wait_job "$array" 240)
ok "the urgent job preempted task $victim, which was requeued" test "$(job_field "$victim_id" Restarts)" = 1
ok "the preempted task got SIGTERM and wrote its checkpoint" grep -q "checkpoint at step [1-9]" "out.$victim"
ok "it came back with AIHPC_RESTART_COUNT=1 and resumed from its checkpoint" \
    bash -c "grep -q 'start restart=1' out.$victim && grep -q 'resumed at step [1-9]' out.$victim"
ok "it finished (array state $state)" grep -q "task $victim finished at step 40, restart 1" "out.$victim"
ok "the other task ran once, untouched" \
    bash -c "[ \$(grep -c ' start ' out.$other) = 1 ] && grep -q 'task $other finished at step 40, restart 0' out.$other"
other_id=$(sacct -n -X -j "${array}_$other" -o JobID%30,JobIDRaw%20 2>/dev/null | awk '{print $2}' | head -1)
home=$(getent passwd "$test_user" | cut -d: -f6)
ok "the checkpoint is in the preempted task's own dir, keyed by its job id" \
    bash -c "[ -f '$home/.aihpc/checkpoints/$victim_id/step' ] && [ ! -e '$home/.aihpc/checkpoints/${other_id:-none}/step' ]"
finish
