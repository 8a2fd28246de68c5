#!/usr/bin/env bash
# The leases of a running step on its cache entries are flocks on lock files in the
# user's cache dir, which the user can write. slurmstepd must hold no descriptor there:
# a process of the user's own holds them, and slurmstepd only a pipe and a pidfd of it.
# The user stops that process (SIGSTOP) and cancels the job: the step's end kills it
# through the pidfd, the node is idle again, and the lease is free.
. "$(dirname "$0")/lib.sh"
# The user's own node cache is what this test is about: its sources would otherwise go to
# the node's shared cache, being world-readable (24-stage-shared.sh tests that one).
export AIHPC_STAGE_MODE=user
plan 7
work=$(scratch)
cd "$work"
chmod 0777 "$work"
uid=$(id -u "$test_user")
local_root_n1=${AIHPC_LOCAL_ROOT//%n/n1}
mkdir -p data && echo "payload" >data/f && chmod -R a+rX data

id=$(as_user sbatch --parsable -w n1 -o "$work/out" --aihpc-stage="$work/data:data" --wrap "echo started; sleep 120")
for _ in $(seq 300); do grep -q started out 2>/dev/null && break; sleep 0.2; done
# slurmstepd's title is cut short on some releases: it is found as the parent of a task.
# The job may have more than one (24.11 runs an extern step beside the batch step): the
# batch step's is the one whose task is the batch script.
stepd=
for environ in /proc/[0-9]*/environ; do
    pid=${environ#/proc/}
    pid=${pid%/environ}
    { tr '\0' '\n' <"$environ"; } 2>/dev/null | grep -qx "SLURM_JOB_ID=$id" || continue
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "job$id/slurm_script" || continue
    parent=$(awk '/^PPid:/ {print $2}' /proc/"$pid"/status 2>/dev/null)
    [ "$(cat /proc/"$parent"/comm 2>/dev/null)" = slurmstepd ] && stepd=$parent && break
done
ok "the job's batch step runs with its stage-in done (slurmstepd ${stepd:-not found})" \
    bash -c "grep -q started out && [ -n '$stepd' ]"
ok "slurmstepd holds no descriptor on anything in the user's cache dir" \
    bash -c "! ls -l /proc/$stepd/fd | grep -q '$local_root_n1/cache/$uid'"
# A pidfd's fdinfo names its process. slurmstepd may hold pidfds of its own (of a child
# it reaped, shown as -1): the holder is the live one whose process is the user's.
pidfds=$(grep -h '^Pid:' /proc/"$stepd"/fdinfo/* 2>/dev/null | awk '{print $2}' | tr '\n' ' ')
holder=
for pid in $pidfds; do
    [ "$pid" -gt 0 ] 2>/dev/null && [ "$(stat -c %U /proc/"$pid" 2>/dev/null)" = "$test_user" ] && holder=$pid && break
done
ok "slurmstepd holds a pidfd of the lease holder, a process of the user's (pid ${holder:-none}; pidfds: ${pidfds:-none})" \
    bash -c "[ -n '$holder' ] && [ \"\$(stat -c %U /proc/$holder)\" = '$test_user' ]"
lock=$(ls -l /proc/"$holder"/fd 2>/dev/null | grep -o "$local_root_n1/cache/$uid/locks/[^ ]*\.lock" | head -1)
ok "the lease holder keeps the entry's lease ($lock)" \
    bash -c "[ -n '$lock' ] && ! flock -n -x '$lock' true"

# The user stops their lease holder, then cancels the job.
[ -n "$holder" ] && as_user kill -STOP "$holder"
scancel "$id"
wait_job "$id" 60 >/dev/null
ok "the node is idle within 30 s of the cancel" wait_nodes_idle 30
# Dead, if not yet reaped by whoever inherited it (a zombie holds nothing).
ok "the stopped lease holder is gone" \
    bash -c "! kill -0 '$holder' 2>/dev/null || grep -q '^State:.*Z' /proc/$holder/status"
ok "the entry's lease is free again" flock -n -x "$lock" true
finish
