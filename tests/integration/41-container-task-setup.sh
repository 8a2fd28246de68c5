#!/usr/bin/env bash
# A task inside a container gets the same setup as one outside: resource limits,
# TMPDIR, the variables of a task prolog, and its CPU binding.
# Run as root on a machine with the mini-cluster up; jobs run as the test user.
. "$(dirname "$0")/lib.sh"
command -v ch-run >/dev/null || skip_all "needs ch-run (charliecloud-runtime)"
here=$top_builddir/tests/integration
tree=$top_builddir

plan 6
scratch=$(user_scratch)
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
ok "the propagated open-files limit is the same inside as outside ($r)" test "$r" = "777|777"

r=$(both "ulimit -Ss 4321;" "--propagate=STACK" 'ulimit -s')
ok "the propagated stack limit is the same inside as outside ($r)" test "$r" = "4321|4321"

# TMPDIR: Slurm creates it for the task; inside, charliecloud shows it at /tmp.
mkdir -p "$scratch/tmp" && chown "$test_user" "$scratch/tmp"
as_user env TMPDIR="$scratch/tmp/outside" srun -Q -n1 sh -c 'echo out >"$TMPDIR/mark"'
as_user env TMPDIR="$scratch/tmp/inside" srun -Q -n1 --aihpc-container="$img" sh -c 'echo in >"$TMPDIR/mark"'
ok "Slurm makes TMPDIR for a task inside, and the task writes to that host directory" \
    sh -c "test \"\$(cat '$scratch/tmp/outside/mark' '$scratch/tmp/inside/mark' 2>/dev/null | tr '\n' ' ')\" = 'out in '"

# A task prolog's exported variables reach the task inside.
printf '#!/bin/sh\necho "export FROM_TASK_PROLOG=rank$SLURM_PROCID"\n' >"$scratch/prolog.sh"
chmod 0755 "$scratch/prolog.sh"
r=$(both "" "--task-prolog=$scratch/prolog.sh" 'echo $FROM_TASK_PROLOG')
ok "a task prolog's variables reach the task inside as outside ($r)" test "$r" = "rank0|rank0"

# CPU binding: an explicit plan, then --aihpc-bind=cores, compared inside and outside.
cpus_cmd='echo $SLURM_PROCID:$(grep Cpus_allowed_list /proc/self/status | cut -f2)'
if [ "$(nproc)" -ge 2 ]; then
    out=$(as_user srun -Q -n2 --cpu-bind=map_cpu:1,0 --aihpc-container="$img" sh -c "$cpus_cmd" 2>&1 | sort | tr '\n' ' ')
    ok "the CPU binding Slurm applies survives into the container ($out)" test "$out" = "0:1 1:0 "
else
    skip "the CPU binding Slurm applies survives into the container" "needs two CPUs"
fi
outside=$(as_user srun -Q -n2 --aihpc-bind=cores sh -c "$cpus_cmd" 2>&1 | sort | tr '\n' ' ')
inside=$(as_user srun -Q -n2 --aihpc-bind=cores --aihpc-container="$img" sh -c "$cpus_cmd" 2>&1 | sort | tr '\n' ' ')
ok "with --aihpc-bind=cores each task's CPUs inside equal the plan outside ($inside)" test "$outside" = "$inside"
finish
