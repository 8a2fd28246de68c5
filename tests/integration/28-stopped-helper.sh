#!/usr/bin/env bash
# A user who stops their own node helper (SIGSTOP) during a stage-in and cancels the job
# does not hold the node: slurmstepd watches the job itself and kills the helper's
# process group, stopped or not. The helper cannot be traced or have its descriptors
# taken by the user while it holds slurmstepd's channel.
. "$(dirname "$0")/lib.sh"
plan 5
work=$(scratch)
cd "$work"
mkdir -p big
head -c 1500M /dev/urandom >big/blob
chmod -R a+rX big

id=$(as_user sbatch --parsable -w n1 -o out --aihpc-stage-mode=private --aihpc-stage="$work/big:big" --wrap 'sleep 600')
helper=
for _ in $(seq 200); do
    helper=$(live_pids "$test_user" 'aihpc-node prepare-stage-in' | head -1)
    [ -n "$helper" ] && break
    sleep 0.05
done
if [ -z "$helper" ]; then
    fail "the stage-in helper of job $id was seen running" "$(cat out 2>/dev/null)"
    scancel "$id"
    finish
    exit
fi
pass "the stage-in helper of job $id runs as the user (pid $helper)"
ok "the user cannot look into the helper's descriptors" bash -c "! runuser -u $test_user -- ls /proc/$helper/fd >/dev/null 2>&1"
kill -STOP "$helper"
scancel "$id"
start=$SECONDS
ok "the node is idle again within 30 s of scancel, though the helper was stopped" wait_nodes_idle 30
echo "# idle after $((SECONDS - start)) s"
ok "no helper of the job is left" test -z "$(live_pids "$test_user" aihpc-node)"
ok "the job did not complete" bash -c "[ \"\$(wait_job() { :; }; scontrol show job $id -o 2>/dev/null | tr ' ' '\n' | sed -n 's/^JobState=//p')\" != COMPLETED ]"
finish
