# Shared by the integration tests: TAP output, the mini-cluster's environment, running
# commands as the test users, waiting for jobs, and temporary site keys.
# Run as root from a built tree with the mini-cluster up (contrib/minicluster up).
set -u

top_builddir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
eval "$("$top_builddir/contrib/minicluster" env)"
export SLURM_CONF
test_user=aihpc-test
other_user=aihpc-test2
plugstack=$(dirname "$SLURM_CONF")/plugstack.conf
plugin_so=$top_builddir/plugin/.libs/aihpc.so

tap_count=0
tap_failed=0

plan() { echo "1..$1"; }

# ok DESCRIPTION CMD...: one TAP line for the command's success.
ok() {
    local description=$1
    shift
    tap_count=$((tap_count + 1))
    local output
    if output=$("$@" 2>&1); then
        echo "ok $tap_count - $description"
    else
        tap_failed=$((tap_failed + 1))
        echo "not ok $tap_count - $description"
        printf '%s\n' "$output" | sed 's/^/#   /' | head -40
    fi
}

skip() { tap_count=$((tap_count + 1)); echo "ok $tap_count - $1 # SKIP $2"; }

# Scratch directories carry this test's pid in their names, so that the test removes
# them at exit even though each is made in a subshell: work=$(scratch).
scratch_prefix=/tmp/aihpc-it.$$
off_tmp_prefix=/var/tmp/aihpc-it.$$
remove_scratch() { rm -rf "$scratch_prefix".* "$off_tmp_prefix".*; }

# scratch: a scratch directory that every test user can write (0777).
scratch() {
    local dir
    dir=$(mktemp -d "$scratch_prefix.XXXXXX")
    chmod 0777 "$dir"
    echo "$dir"
}

# user_scratch [PREFIX]: a scratch directory that the test user owns and only they may
# write (0755), as a user's own image and job files are.
user_scratch() {
    local dir
    dir=$(mktemp -d "${1:-$scratch_prefix}.XXXXXX")
    chmod 0755 "$dir"
    chown "$test_user" "$dir"
    echo "$dir"
}

# user_scratch_off_tmp: the same, outside /tmp, which ch-run shows inside every image at
# /tmp: what lies there is in a container only when it is bound.
user_scratch_off_tmp() { user_scratch "$off_tmp_prefix"; }

as_user() { runuser -u "$test_user" -- env SLURM_CONF="$SLURM_CONF" "$@"; }
as_other_user() { runuser -u "$other_user" -- env SLURM_CONF="$SLURM_CONF" "$@"; }

# Jobs of the test user now in the queue.
queued_jobs() { squeue -h -u "$test_user" -o %i | wc -l; }

# Whether the cluster keeps job accounting (slurmdbd): the mini-cluster runs without it
# where Debian's slurmdbd cannot use Debian's MariaDB. Releases print "none" or "(null)".
keeps_accounting() { scontrol show config | grep -q "^AccountingStorageType *= *accounting_storage/slurmdbd"; }

# release_requeued JOBID: Slurm holds a requeued job for CredExpire (120 s); the site's
# admin may let it start at once, as the tests do to stay quick. The controller refuses
# while the job is still completing, so this asks again until the job runs or ended.
# Released only once no node is still completing the run that was requeued (Slurm 24.11
# lets that run's late completion fail a job released before it arrives), and two
# seconds after that: slurmd revokes the old run's credential with a time in whole
# seconds, and a new run's credential made within that second is refused as revoked
# ("Job credential revoked"), which fails the job.
release_requeued() {
    local state settled_since=
    for _ in $(seq 160); do
        state=$(job_field "$1" JobState)
        case $state in RUNNING | COMPLETED | FAILED | CANCELLED | TIMEOUT) return 0 ;; esac
        # squeue names the completing flag (COMPLETING) where scontrol says PENDING.
        if [ "$state" = PENDING ] && [ "$(squeue -h -j "$1" -o %T 2>/dev/null)" = PENDING ] &&
            ! sinfo -h -o %t | grep -q '^comp'; then
            settled_since=${settled_since:-$SECONDS}
            [ $((SECONDS - settled_since)) -ge 2 ] && scontrol update JobId="$1" StartTime=now >/dev/null 2>&1
        else
            settled_since=
        fi
        sleep 0.5
    done
    return 1
}

# kill_job_processes JOBID: SIGKILL to every process whose environment names the job,
# as on a node that lost it; other clusters' and other jobs' processes are left alone.
kill_job_processes() {
    local environ pid
    for environ in /proc/[0-9]*/environ; do
        pid=${environ#/proc/}
        pid=${pid%/environ}
        { tr '\0' '\n' <"$environ"; } 2>/dev/null | grep -qx "SLURM_JOB_ID=$1" && kill -9 "$pid" 2>/dev/null
    done
    return 0
}

# cluster_pgrep PGREP-ARGS...: what pgrep finds, less the processes of other clusters.
# Clusters of other Slurm releases may run on this machine at the same time (.ci/run),
# each in a mount namespace of its own (contrib/minicluster), with the same test users;
# job ids differ between clusters, process names and users do not.
cluster_pgrep() {
    local ns pid
    ns=$(readlink /proc/self/ns/mnt)
    for pid in $(pgrep "$@"); do
        [ "$(readlink "/proc/$pid/ns/mnt" 2>/dev/null)" = "$ns" ] && echo "$pid"
    done
    return 0
}

# cluster_pkill SIGNAL PGREP-ARGS...: sends SIGNAL to what cluster_pgrep finds; true
# when it found any.
cluster_pkill() {
    local signal=$1 pid found=1
    shift
    for pid in $(cluster_pgrep "$@"); do kill "-$signal" "$pid" 2>/dev/null && found=0; done
    return $found
}

# live_pids USER PATTERN: the pids pgrep -u USER -f PATTERN finds in this cluster, less
# zombies. A cache
# lease holder killed at its step's end is inherited by the machine's init, which in a
# container may never reap it; a zombie holds nothing, and pgrep matches it by its bare
# name.
live_pids() {
    local pid
    for pid in $(cluster_pgrep -u "$1" -f "$2"); do
        grep -q '^State:[[:space:]]*Z' /proc/"$pid"/status 2>/dev/null || echo "$pid"
    done
}

# wait_nodes_idle SECONDS: true once every node is idle again; else shows sinfo.
nodes_idle() { [ "$(sinfo -h -N -o %t | sort -u | tr '\n' ' ')" = "idle " ]; }
wait_nodes_idle() {
    local deadline=$((SECONDS + $1))
    while [ $SECONDS -lt $deadline ]; do nodes_idle && return 0; sleep 0.5; done
    sinfo -N
    return 1
}

# job_field JOBID FIELD: one field of `scontrol show job` (JobState, ExitCode, ...).
job_field() { scontrol show job "$1" -o 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }

# wait_job JOBID [SECONDS]: until the job (all array tasks) has ended; prints its state.
wait_job() {
    local id=$1 limit=${2:-120} deadline
    deadline=$((SECONDS + limit))
    while [ $SECONDS -lt $deadline ]; do
        if [ -z "$(squeue -h -j "$id" -o %i 2>/dev/null)" ]; then
            job_field "$id" JobState
            return 0
        fi
        sleep 0.3
    done
    echo TIMEOUT
    return 1
}

# sbatch_wait ARGS...: submits as the test user, waits, prints the final state.
sbatch_wait() {
    local id
    id=$(as_user sbatch --parsable "$@") || return 1
    wait_job "${id%%;*}"
}

# with_site_keys KEY=VALUE...: the plugin runs with these site keys until restore_site_keys
# (also run at exit). slurmstepd and the clients read plugstack.conf anew for each command.
with_site_keys() {
    [ -f "$plugstack.orig" ] || cp "$plugstack" "$plugstack.orig"
    sed "s|^\(required [^ ]*aihpc.so .*\)$|\1 $*|" "$plugstack.orig" >"$plugstack.new"
    mv "$plugstack.new" "$plugstack"
}
restore_site_keys() { if [ -f "$plugstack.orig" ]; then mv "$plugstack.orig" "$plugstack"; fi; }

finish() {
    restore_site_keys
    [ $tap_failed -eq 0 ]
}
trap 'restore_site_keys; remove_scratch' EXIT

# pass DESCRIPTION / fail DESCRIPTION [DETAIL...]: a TAP line for a check made by hand.
pass() { tap_count=$((tap_count + 1)); echo "ok $tap_count - $1"; }
fail() {
    tap_count=$((tap_count + 1))
    tap_failed=$((tap_failed + 1))
    echo "not ok $tap_count - $1"
    shift
    local line
    for line in "$@"; do printf '%s\n' "$line" | sed 's/^/#   /' | head -40; done
}

# skip_all REASON: the whole file is skipped (a missing tool on this machine).
skip_all() { echo "1..0 # SKIP $1"; exit 0; }

# wait_job_status JOBID [SECONDS]: "STATE EXITCODE" once the job has ended.
wait_job_status() {
    local state
    state=$(wait_job "$@") || { echo "TIMEOUT ?"; return 0; }
    echo "$state $(job_field "$1" ExitCode)"
}
