#!/usr/bin/env bash
# A task inside a container gets the same setup as one outside: resource limits,
# TMPDIR, the variables of a task prolog, and its CPU binding.
# Run as root on a machine with the mini-cluster up; jobs run as the test user.
set -u
here=$(cd "$(dirname "$0")" && pwd)
tree=$(cd "$here/../.." && pwd)
[ -f "$here/lib.sh" ] && . "$here/lib.sh"
: "${SLURM_CONF:=$("$tree/contrib/minicluster" env 2>/dev/null | sed -n 's/^export SLURM_CONF=//p')}"
export SLURM_CONF
test_user=${AIHPC_TEST_USER:-aihpc-test}
if [ -z "$SLURM_CONF" ] || ! sinfo -h >/dev/null 2>&1 || ! command -v ch-run >/dev/null; then
    echo "1..0 # SKIP needs the mini-cluster (contrib/minicluster up) and ch-run (charliecloud-runtime)"
    exit 0
fi
as_user() { runuser -u "$test_user" -- "$@"; }
n=0
t_ok() { n=$((n + 1)); echo "ok $n - $1"; }
t_not_ok() { n=$((n + 1)); echo "not ok $n - $1"; shift; for l in "$@"; do echo "# $l"; done; }
t_skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
check() { local what=$1; shift; if "$@"; then t_ok "$what"; else t_not_ok "$what" "failed: $*"; fi; }
wait_job() {  # prints "STATE EXITCODE" once the job has ended
    local line
    for _ in $(seq 240); do
        line=$(scontrol show job "$1" -o 2>/dev/null)
        case $line in *JobState=COMPLETED*|*JobState=FAILED*|*JobState=CANCELLED*|*JobState=TIMEOUT*|*JobState=NODE_FAIL*|*JobState=OUT_OF_MEMORY*)
            echo "$(sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' <<<"$line") $(sed -n 's/.* ExitCode=\([0-9:]*\).*/\1/p' <<<"$line")"
            return ;;
        esac
        sleep 0.25
    done
    echo "TIMEOUT ?"
}


echo "1..6"
scratch=$(mktemp -d /tmp/aihpc-it-container-setup.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
chmod 0755 "$scratch"
chown "$test_user" "$scratch"
cd "$scratch" || exit 1
img=$scratch/busybox
"$tree/contrib/examples/container-image.sh" "$img" >/dev/null || { echo "Bail out! cannot build the image"; exit 1; }
# Runs CMD (a shell line) in one task, outside and then inside the image, with the
# submit shell's extra setup SETUP; prints "outside|inside".
both() {
    local setup=$1 opts=$2 cmd=$3 out in
    out=$(as_user sh -c "$setup srun -Q -n1 $opts sh -c '$cmd'" 2>&1)
    in=$(as_user sh -c "$setup srun -Q -n1 $opts --aihpc-container=$img sh -c '$cmd'" 2>&1)
    echo "$out|$in"
}

r=$(both "ulimit -Sn 777;" "--propagate=NOFILE" 'ulimit -n')
check "the propagated open-files limit is the same inside as outside ($r)" test "$r" = "777|777"

r=$(both "ulimit -Ss 4321;" "--propagate=STACK" 'ulimit -s')
check "the propagated stack limit is the same inside as outside ($r)" test "$r" = "4321|4321"

# TMPDIR: Slurm creates it for the task; inside, charliecloud shows it at /tmp.
mkdir -p "$scratch/tmp" && chown "$test_user" "$scratch/tmp"
as_user env TMPDIR="$scratch/tmp/outside" srun -Q -n1 sh -c 'echo out >"$TMPDIR/mark"'
as_user env TMPDIR="$scratch/tmp/inside" srun -Q -n1 --aihpc-container="$img" sh -c 'echo in >"$TMPDIR/mark"'
check "Slurm makes TMPDIR for a task inside, and the task writes to that host directory" \
    sh -c "test \"\$(cat '$scratch/tmp/outside/mark' '$scratch/tmp/inside/mark' 2>/dev/null | tr '\n' ' ')\" = 'out in '"

# A task prolog's exported variables reach the task inside.
printf '#!/bin/sh\necho "export FROM_TASK_PROLOG=rank$SLURM_PROCID"\n' >"$scratch/prolog.sh"
chmod 0755 "$scratch/prolog.sh"
r=$(both "" "--task-prolog=$scratch/prolog.sh" 'echo $FROM_TASK_PROLOG')
check "a task prolog's variables reach the task inside as outside ($r)" test "$r" = "rank0|rank0"

# CPU binding: an explicit plan, then --aihpc-bind=cores, compared inside and outside.
cpus_cmd='echo $SLURM_PROCID:$(grep Cpus_allowed_list /proc/self/status | cut -f2)'
if [ "$(nproc)" -ge 2 ]; then
    out=$(as_user srun -Q -n2 --cpu-bind=map_cpu:1,0 --aihpc-container="$img" sh -c "$cpus_cmd" 2>&1 | sort | tr '\n' ' ')
    check "the CPU binding Slurm applies survives into the container ($out)" test "$out" = "0:1 1:0 "
else
    t_skip "the CPU binding Slurm applies survives into the container" "needs two CPUs"
fi
outside=$(as_user srun -Q -n2 --aihpc-bind=cores sh -c "$cpus_cmd" 2>&1 | sort | tr '\n' ' ')
inside=$(as_user srun -Q -n2 --aihpc-bind=cores --aihpc-container="$img" sh -c "$cpus_cmd" 2>&1 | sort | tr '\n' ' ')
check "with --aihpc-bind=cores each task's CPUs inside equal the plan outside ($inside)" test "$outside" = "$inside"
