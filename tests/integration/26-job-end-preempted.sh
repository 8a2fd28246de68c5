#!/usr/bin/env bash
# Preemption during a 3 GB stage-out: the urgent partition takes the node while the job
# copies its output to DEST (held stopped until then). Slurm signals the job, waits KillWait, kills it and requeues
# it. DEST is whole or absent, never partial, at every moment; what the cut run left is
# delivered by its epilog; the requeued run, released at once, completes and delivers
# its own output beside DEST, since an existing DEST is never replaced.
. "$(dirname "$0")/lib.sh"
[ -n "$(sinfo -h -p urgent -o %P 2>/dev/null)" ] || skip_all "the mini-cluster has no urgent partition"
plan 7
work=$(scratch)
cd "$work"
local_root_n1=${AIHPC_LOCAL_ROOT//%n/n1}
out_mb=${AIHPC_TEST_STAGE_OUT_MB:-3000}
head -c "${out_mb}M" /dev/urandom >"$work/weights"
md5sum <"$work/weights" >"$work/weights.md5"
chmod a+r "$work/weights"

cat >produce.sh <<JOB
#!/bin/bash
mkdir -p "\$AIHPC_STAGE_DIR/out"
cp "$work/weights" "\$AIHPC_STAGE_DIR/out/weights"
echo "run \$SLURM_RESTART_COUNT" >"\$AIHPC_STAGE_DIR/out/run"
JOB
chmod +x produce.sh

# The whole node, so that the urgent job must preempt it.
id=$(as_user sbatch --parsable -w n1 -N1 -c2 -o "$work/out" --open-mode=append --aihpc-stage-out="out:$work/res" "$work/produce.sh")
in_flight=
for _ in $(seq 2400); do
    compgen -G "$work/.res.aihpc-out.$id.*" >/dev/null && in_flight=1 && break
    [ -z "$(squeue -h -j "$id" -o %i 2>/dev/null)" ] && break
    sleep 0.05
done
ok "the stage-out was copying when the urgent job came" test -n "$in_flight"
# The copy is held until the preemption takes the job: the scheduler may take longer to
# preempt than the copy takes to finish. Slurm's SIGCONT, then SIGTERM and SIGKILL after
# KillWait, end it wherever it is.
cluster_pkill STOP -u "$test_user" -f "aihpc-node run-task"
urgent=$(as_user sbatch --parsable -p urgent -w n1 -N1 -c2 -o /dev/null --wrap 'sleep 1')
# Whatever is at DEST while the preemption cuts the copy is whole.
partial=
for _ in $(seq 200); do
    if [ -e "$work/res/weights" ] && ! md5sum <"$work/res/weights" | cmp -s - "$work/weights.md5"; then
        # A file being renamed into place is whole already; one seen short is partial.
        [ "$(stat -c %s "$work/res/weights")" != "$(stat -c %s "$work/weights")" ] && partial=1
    fi
    [ "$(job_field "$id" Restarts)" = 1 ] && break
    sleep 0.1
done
ok "the job was preempted and requeued" test "$(job_field "$id" Restarts)" = 1
release_requeued "$id"
wait_job "$urgent" 60 >/dev/null
state=$(wait_job "$id" 300)
ok "DEST was never seen partial" test -z "$partial"
ok "DEST holds the output, byte for byte" bash -c "md5sum <'$work/res/weights' | cmp - '$work/weights.md5'"
ok "the requeued run completed (got $state) and delivered its own output beside DEST" \
    bash -c "[ '$state' = COMPLETED ] && grep -qx 'run 1' '$work/res.$id/run' && md5sum <'$work/res.$id/weights' | cmp - '$work/weights.md5'"
ok "no hidden partial copy is left beside DEST" bash -c "! compgen -G '$work/.res*.aihpc-out.*' >/dev/null"
ok "nothing of the job is kept on n1 once both runs delivered" \
    bash -c "for i in \$(seq 50); do [ ! -e '$local_root_n1/kept/$id' ] && [ ! -e '$local_root_n1/jobs/$id' ] && exit 0; sleep 0.2; done; exit 1"
finish
