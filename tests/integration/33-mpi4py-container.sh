#!/usr/bin/env bash
# MPI ranks inside a container: aihpc-launch keeps what PMIx and PMI-2 hand a task, so
# that ranks in a charliecloud image wire up. mpi4py ranks started by `srun --mpi=pmix`
# reach the PMIx server in slurmstepd and reduce; ranks started by `srun --mpi=pmi2`
# speak the PMI wire protocol on the socket Slurm passes in PMI_FD (a small client of
# the PMI-1 commands, since Debian's Open MPI 4.1 has no PMI-2 component: its pmix
# framework is ext3x, isolated and flux). The image is a skeleton directory with the
# host's /usr and /etc bound in, so that the host's python3, mpi4py and Open MPI run
# inside it; a marker file that only the image has proves where each rank ran. Needs
# ch-run, mpi4py and Slurm's pmix plugin (contrib/deps-clients); without them the file
# is skipped, saying which is missing.
. "$(dirname "$0")/lib.sh"
python=/usr/bin/python3
command -v ch-run >/dev/null || skip_all "needs ch-run (charliecloud-runtime)"
$python -c 'from mpi4py import MPI' 2>/dev/null ||
    skip_all "mpi4py is not installed (python3-mpi4py; run contrib/deps-clients)"
probe=$(as_user srun -N1 -n1 --mpi=pmix true 2>&1) ||
    skip_all "srun --mpi=pmix cannot start a task here (libpmix2 and libpmix-dev; run contrib/deps-clients): $(head -1 <<<"$probe")"
[ -e /aihpc-mpi-image ] && echo "# warning: the host has /aihpc-mpi-image; the inside/outside checks are void"
plan 6
scratch=$(user_scratch)
cd "$scratch" || exit 1

# The skeleton: the host's /usr and /etc come in by --aihpc-container-bind (ch-run needs
# their mount points), the merged-/usr links make /lib64's loader and /bin resolve, and
# ch-run binds /dev, /proc, /sys and the host's /tmp itself. The rank program lives in
# the image, beside the marker.
img=$scratch/mpi-image
mkdir -p "$img"/{usr,etc,dev,proc,sys,tmp,home,run,var/tmp,mnt/aihpc,opt}
for dir in bin sbin lib lib32 lib64 libx32; do
    [ -L "/$dir" ] && ln -s "usr/$dir" "$img/$dir"
done
for dir in bin sbin lib lib64; do
    [ -e "$img/$dir" ] || [ -L "$img/$dir" ] || mkdir "$img/$dir"
done
# ch-run binds the host's passwd and group files and name service files onto these
# first; the bind of /etc then covers them.
touch "$img"/etc/{passwd,group,hosts,resolv.conf,machine-id}
echo "aihpc mpi image" >"$img/aihpc-mpi-image"
cat >"$img/opt/ranks.py" <<'PY'
import os
from mpi4py import MPI
comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
total = comm.allreduce(rank + 1)
marker = open("/aihpc-mpi-image").read().strip() if os.path.exists("/aihpc-mpi-image") else "host"
print("rank=%d size=%d sum=%d marker=%s" % (rank, size, total, marker), flush=True)
PY
# PMI-1 commands on the socket in PMI_FD (Slurm's mpi/pmi2 serves PMI-1 and PMI-2 on
# it): each rank puts rank+1, all meet at the barrier, each gets every value and sums.
cat >"$img/opt/pmi_fd.py" <<'PY'
import os, socket
fd = int(os.environ["PMI_FD"])
rank, size = int(os.environ["PMI_RANK"]), int(os.environ["PMI_SIZE"])
conn = socket.socket(fileno=fd)
pending = b""
def ask(cmd):
    global pending
    conn.sendall((cmd + "\n").encode())
    while b"\n" not in pending:
        chunk = conn.recv(4096)
        if not chunk:
            raise SystemExit("PMI_FD closed after %r" % cmd)
        pending += chunk
    line, _, pending = pending.partition(b"\n")
    return dict(w.split("=", 1) for w in line.decode().split() if "=" in w)
if ask("cmd=init pmi_version=1 pmi_subversion=1").get("rc") != "0":
    raise SystemExit("PMI init refused")
kvs = ask("cmd=get_my_kvsname")["kvsname"]
if ask("cmd=put kvsname=%s key=rank%d value=%d" % (kvs, rank, rank + 1)).get("rc") != "0":
    raise SystemExit("PMI put refused")
ask("cmd=barrier_in")
total = sum(int(ask("cmd=get kvsname=%s key=rank%d" % (kvs, r))["value"]) for r in range(size))
ask("cmd=finalize")
marker = open("/aihpc-mpi-image").read().strip() if os.path.exists("/aihpc-mpi-image") else "host"
print("rank=%d size=%d sum=%d marker=%s" % (rank, size, total, marker), flush=True)
PY
chmod -R a+rX "$img"
binds=/usr:/usr,/etc:/etc

# ranks_inside FILE N: N lines, ranks 0..N-1, each of size N, the allreduce summed 1..N,
# every one inside the image.
ranks_inside() {
    local file=$1 n=$2
    $python - "$file" "$n" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
n = int(sys.argv[2])
rows = re.findall(r"^rank=(\d+) size=(\d+) sum=(\d+) marker=(.*)$", text, re.M)
ranks = sorted(int(r[0]) for r in rows)
if ranks != list(range(n)):
    sys.exit("ranks %s, not 0..%d:\n%s" % (ranks, n - 1, text[-3000:]))
for rank, size, total, marker in rows:
    if int(size) != n or int(total) != n * (n + 1) // 2:
        sys.exit("rank %s: size %s sum %s" % (rank, size, total))
    if marker != "aihpc mpi image":
        sys.exit("rank %s ran outside the image (marker %r)" % (rank, marker))
PY
}

# The same program on the host: no marker there, so the inside check can fail.
timeout 120 runuser -u "$test_user" -- env SLURM_CONF="$SLURM_CONF" \
    srun -N1 -n2 --mpi=pmix $python "$img/opt/ranks.py" >host.out 2>&1
ok "on the host the same ranks see no marker (the inside check can fail)" \
    bash -c "grep -c 'marker=host\$' host.out | grep -qx 2"

timeout 180 runuser -u "$test_user" -- env SLURM_CONF="$SLURM_CONF" \
    srun -N1 -n2 --mpi=pmix --aihpc-container="$img" --aihpc-container-bind="$binds" \
    env OMPI_MCA_btl_vader_single_copy_mechanism=none $python /opt/ranks.py >pmix.out 2>&1
status=$?
ok "srun --mpi=pmix in a charliecloud image: the step succeeds (exit $status)" test "$status" = 0
ok "srun --mpi=pmix: 2 mpi4py ranks inside the image, size 2, allreduce 3" ranks_inside pmix.out 2

timeout 180 runuser -u "$test_user" -- env SLURM_CONF="$SLURM_CONF" \
    srun -N1 -n2 --mpi=pmi2 --aihpc-container="$img" --aihpc-container-bind="$binds" \
    $python /opt/pmi_fd.py >pmi2.out 2>&1
status=$?
ok "srun --mpi=pmi2 in a charliecloud image: the step succeeds (exit $status)" test "$status" = 0
ok "srun --mpi=pmi2: 2 ranks inside the image put, barrier and get over PMI_FD, sum 3" ranks_inside pmi2.out 2

ok "no node was drained" bash -c '! sinfo -h -N -o "%t" | grep -q -E "drain|down"'
finish
