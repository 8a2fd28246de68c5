#!/usr/bin/env bash
# The plugin's option surface on a real Slurm: registration, submit-time validation,
# forwarding to steps, and the site config.
. "$(dirname "$0")/lib.sh"
plan 16
work=$(scratch)
cd "$work"

options=(aihpc-stage aihpc-stage-out aihpc-stage-mode aihpc-stage-verify aihpc-container
         aihpc-container-scope aihpc-container-bind aihpc-bind aihpc-dist aihpc-verbose)

lists_every_option() {
    local help
    help=$(as_user "$@" --help 2>&1)
    for o in "${options[@]}"; do grep -q -- "--$o" <<<"$help" || { echo "missing --$o"; return 1; }; done
}
ok "sbatch --help lists every --aihpc-* option" lists_every_option sbatch
ok "srun --help lists every --aihpc-* option" lists_every_option srun

refused_at_submit() {  # EXPECTED-TEXT SBATCH-ARGS...
    local expected=$1 before out
    shift
    before=$(queued_jobs)
    if out=$(as_user sbatch "$@" --wrap=true 2>&1); then echo "accepted: $out"; return 1; fi
    grep -q "aihpc: .*$expected" <<<"$out" || { echo "message lacks '$expected': $out"; return 1; }
    [ "$(queued_jobs)" = "$before" ] || { echo "a job was queued"; return 1; }
}
ok "sbatch --aihpc-bind=bogus is refused at submit with an aihpc: message, nothing queued" \
    refused_at_submit "--aihpc-bind: unknown mode 'bogus'" --aihpc-bind=bogus
ok "--aihpc-stage NAME with .. is refused at submit" \
    refused_at_submit "one path component" --aihpc-stage=/etc/hostname:../x
ok "--aihpc-dist=mpi is refused at submit" refused_at_submit "unknown kind 'mpi'" --aihpc-dist=mpi
ok "a bad #SBATCH option line is refused at submit" \
    bash -c 'printf "#!/bin/sh\n#SBATCH --aihpc-container-scope=sometimes\ntrue\n" >bad.sh; ! out=$(runuser -u '"$test_user"' -- env SLURM_CONF='"$SLURM_CONF"' sbatch bad.sh 2>&1) && grep -q "aihpc: --aihpc-container-scope" <<<"$out"'
ok "a bad AIHPC_BIND variable is refused at submit" \
    bash -c '! out=$(runuser -u '"$test_user"' -- env SLURM_CONF='"$SLURM_CONF"' AIHPC_BIND=sideways sbatch --wrap=true 2>&1) && grep -q "aihpc: --aihpc-bind: unknown mode .sideways." <<<"$out"'
ok "srun refuses a bad option before launching anything" \
    bash -c '! out=$(runuser -u '"$test_user"' -- env SLURM_CONF='"$SLURM_CONF"' srun --aihpc-stage-mode=shared true 2>&1) && grep -q "aihpc: --aihpc-stage-mode" <<<"$out"'

ok "srun -N2 refuses a stage-out DEST without %n before any task starts" \
    bash -c '! out=$(runuser -u '"$test_user"' -- env SLURM_CONF='"$SLURM_CONF"' srun -N2 --aihpc-stage-out=out:/tmp/aihpc-collide bash -c "echo ran" 2>&1) && grep -q "aihpc: --aihpc-stage-out: .*add %n" <<<"$out" && ! grep -q ran <<<"$out"'

cat >job.sh <<'JOB'
#!/bin/bash
#SBATCH -N2 --aihpc-verbose --aihpc-dist=torch
srun -N2 -l bash -c 'echo "node=$SLURMD_NODENAME"'
srun -N2 --aihpc-dist=none true
JOB
state=$(sbatch_wait -o job.out job.sh)
ok "a job with valid options completes" test "$state" = COMPLETED
ok "its srun -N2 step runs on both nodes" bash -c 'grep -q "node=n1" job.out && grep -q "node=n2" job.out'
ok "the srun step inside the batch job sees the job's options on each node" \
    bash -c '[ "$(grep -c "step [0-9]*\.0 on n[12], options:.*--aihpc-dist=torch.*--aihpc-verbose" job.out)" = 2 ]'
ok "a step's own option overrides what it inherits" \
    bash -c '[ "$(grep -c "step [0-9]*\.1 on n[12], options:.*--aihpc-dist=none" job.out)" = 2 ]'

state=$(sbatch_wait -N2 -o quiet.out --wrap 'srun -N2 true; echo done')
ok "without --aihpc-verbose a successful job has no aihpc line" \
    bash -c '[ "'"$state"'" = COMPLETED ] && grep -q done quiet.out && ! grep -q aihpc quiet.out'

refuses_to_load() {
    with_site_keys cache_size=10G
    local out rc=0
    out=$(as_user sbatch --wrap=true 2>&1) && rc=1
    restore_site_keys
    grep -q "aihpc: .*unknown site key 'cache_size'" <<<"$out" || { echo "$out"; rc=1; }
    return $rc
}
ok "a bad site key makes the plugin refuse to load, naming the key" refuses_to_load

bad_key_on_node_fails_job_not_node() {
    local id state
    id=$(as_user sbatch --parsable -H -o held.out --wrap 'echo ran') || return 1
    with_site_keys stage_threads=lots
    scontrol release "$id"
    state=$(wait_job "$id")
    restore_site_keys
    [ "$state" = FAILED ] || { echo "state $state"; return 1; }
    # From Slurm 25.05 the plugin's init fails the job at once (init_failure_mode), before
    # the batch step opens its output; before, the message waits for the task's stderr.
    local version
    version=$(sinfo -V | awk '{print $2}')
    if [ "$(printf '%s\n25.05\n' "$version" | sort -V | head -1)" = 25.05 ] && [ ! -e held.out ]; then
        :
    else
        grep -q "aihpc: plugstack.conf: site key stage_threads" held.out || { cat held.out; return 1; }
    fi
    ! grep -qs ran held.out || { echo "the task ran"; return 1; }
    sinfo -h -N -o '%t' | grep -qv -E 'drain|down' || { sinfo -N; return 1; }
    ! sinfo -h -N -o '%t' | grep -q -E 'drain|down'
}
ok "a site error on the node fails the job with its message and never drains the node" bad_key_on_node_fails_job_not_node

rm -rf "$work"
finish
