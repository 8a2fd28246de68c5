#!/usr/bin/env bash
# --aihpc-bind with real MPI clients: mpi4py ranks started by `srun --mpi=pmix` on one
# node get disjoint CPUs and OMP_NUM_THREADS of their own; ranks that Open MPI's mpirun
# starts inside a job are bound by `aihpc-bind exec`, which reads the launcher's local
# rank. mpi4py, Open MPI and PMIx come from contrib/deps-clients; without them the file
# is skipped, saying which is missing.
. "$(dirname "$0")/lib.sh"
# Debian's own interpreter: the packages are installed for it, whatever python3 PATH finds.
python=/usr/bin/python3
$python -c 'from mpi4py import MPI' 2>/dev/null ||
    skip_all "mpi4py is not installed (python3-mpi4py; run contrib/deps-clients)"
probe=$(as_user srun -N1 -n1 --mpi=pmix true 2>&1) ||
    skip_all "srun --mpi=pmix cannot start a task here (libpmix2 and libpmix-dev; run contrib/deps-clients): $(head -1 <<<"$probe")"
[ "$(nproc --all)" -ge 2 ] || skip_all "disjoint bindings need at least 2 CPUs"
plan 6
work=$(scratch)
cd "$work"
bind_tool=$top_builddir/tools/aihpc-bind

# Each rank: an allreduce over MPI, then its own CPUs and OMP_NUM_THREADS gathered on
# rank 0, which writes one line per rank: rank size sum omp cpus.
cat >ranks.py <<'PY'
import os, sys
from mpi4py import MPI
comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
total = comm.allreduce(rank + 1)
mine = (rank, size, total, os.environ.get("OMP_NUM_THREADS", "-"), ",".join(map(str, sorted(os.sched_getaffinity(0)))))
rows = comm.gather(mine, root=0)
if rank == 0:
    with open(sys.argv[1], "w") as out:
        for row in rows:
            out.write("%d %d %d %s %s\n" % row)
PY
chmod 0644 ranks.py

# disjoint FILE N: N ranks reported, the allreduce summed 1..N, each rank's CPUs are
# its own and OMP_NUM_THREADS counts them (no SMT on these nodes).
disjoint() {
    local file=$1 n=$2
    [ -s "$file" ] || { echo "no $file"; cat "${file%.txt}.out" 2>/dev/null | tail -20; return 1; }
    $python - "$file" "$n" <<'PY'
import sys
rows = [line.split() for line in open(sys.argv[1])]
n = int(sys.argv[2])
if len(rows) != n:
    sys.exit("%d of %d ranks: %s" % (len(rows), n, rows))
seen = set()
for rank, size, total, omp, cpus in rows:
    cpus = set(cpus.split(","))
    if int(size) != n or int(total) != n * (n + 1) // 2:
        sys.exit("rank %s: size %s sum %s" % (rank, size, total))
    if seen & cpus:
        sys.exit("rank %s shares CPUs %s" % (rank, sorted(seen & cpus)))
    if omp != str(len(cpus)):
        sys.exit("rank %s: OMP_NUM_THREADS=%s for CPUs %s" % (rank, omp, sorted(cpus)))
    seen |= cpus
PY
}

timeout 120 runuser -u "$test_user" -- env SLURM_CONF="$SLURM_CONF" \
    srun -N1 -n2 --mpi=pmix --cpu-bind=none --aihpc-bind=cores $python ranks.py pmix.txt >pmix.out 2>&1
ok "srun --mpi=pmix: 2 mpi4py ranks on one node, allreduce 3, disjoint CPUs, OMP_NUM_THREADS their own" \
    disjoint pmix.txt 2

timeout 120 runuser -u "$test_user" -- env SLURM_CONF="$SLURM_CONF" \
    srun -N1 -n2 --mpi=pmix --cpu-bind=none $python ranks.py unbound.txt >unbound.out 2>&1
overlapping() { [ -s "$1" ] && ! disjoint "$1" 2 >/dev/null; }
ok "without --aihpc-bind the same ranks share their CPUs (the check can fail)" overlapping unbound.txt

# mpirun inside a job: the batch step holds the job's CPUs, mpirun starts the ranks
# without Slurm's help, and aihpc-bind exec binds each one to its share of them.
have_mpirun=$(command -v mpirun || true)
if [ -n "$have_mpirun" ]; then
    cat >mpirun.sh <<JOB
#!/bin/bash
#SBATCH -N1 -n2
export OMP_NUM_THREADS=99   # what a whole-allocation setting would leave
# mpirun starts its ranks itself (plm isolated), on this node (ras ^slurm: the job's
# node names are the mini-cluster's, not host names).
mpirun -np 2 --oversubscribe --bind-to none --mca ras ^slurm --mca plm isolated --mca btl self,vader \
    $bind_tool exec --mode cores -- $python ranks.py $work/mpirun.txt
mpirun -np 2 --oversubscribe --bind-to none --mca ras ^slurm --mca plm isolated --mca btl self,vader \
    $python ranks.py $work/mpirun-plain.txt
JOB
    state=$(sbatch_wait -o mpirun.out mpirun.sh)
    ok "the mpirun job completed" test "$state" = COMPLETED
    ok "mpirun + aihpc-bind exec: disjoint CPUs, OMP_NUM_THREADS from each rank's own CPUs" disjoint mpirun.txt 2
    ok "mpirun alone leaves every rank on all CPUs with the job's OMP_NUM_THREADS (the test can fail)" \
        bash -c '[ -s '"$work"'/mpirun-plain.txt ] && [ "$(awk "{print \$4}" '"$work"'/mpirun-plain.txt | sort -u)" = 99 ]'
else
    skip "the mpirun job completed" "no mpirun (openmpi-bin)"
    skip "mpirun + aihpc-bind exec: disjoint CPUs, OMP_NUM_THREADS from each rank's own CPUs" "no mpirun"
    skip "mpirun alone leaves every rank on all CPUs" "no mpirun"
fi

ok "no node was drained" bash -c '! sinfo -h -N -o "%t" | grep -q -E "drain|down"'

rm -rf "$work"
finish
