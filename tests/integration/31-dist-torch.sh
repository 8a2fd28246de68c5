#!/usr/bin/env bash
# --aihpc-dist with a real client: Debian's PyTorch (gloo) trains a small DDP model on
# 2 nodes x 2 tasks from nothing but the option, in a step, in an array and bound with
# --aihpc-bind=cores; the batch step is a world of one; MASTER_PORT stays outside the
# kernel's ephemeral range. PyTorch comes from contrib/deps-clients; without it the
# file is skipped, saying so.
. "$(dirname "$0")/lib.sh"
# Debian's own interpreter: the packages are installed for it, whatever python3 PATH finds.
python=/usr/bin/python3
$python -c 'import torch.distributed as d; assert d.is_available() and d.is_gloo_available()' 2>/dev/null ||
    skip_all "PyTorch with gloo is not installed (python3-torch; run contrib/deps-clients)"
plan 12
work=$(scratch)
cd "$work"

# Each rank: joins the group from the environment alone, all_reduces rank+1, runs a few
# DDP steps on rank-dependent data, and checks that every rank ends with the same
# parameters. One line per rank: rank world local_rank local_world node_rank sum
# params_equal torch_threads omp_threads cpus master_port group_rank role_world_size
cat >ddp.py <<'PY'
import datetime, os, sys
import torch
import torch.distributed as dist

tag = sys.argv[1]
dist.init_process_group("gloo", init_method="env://", timeout=datetime.timedelta(seconds=60))
rank, world = dist.get_rank(), dist.get_world_size()
assert rank == int(os.environ["RANK"]) and world == int(os.environ["WORLD_SIZE"])
total = torch.tensor([float(rank + 1)])
dist.all_reduce(total)
torch.manual_seed(0)
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(8, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
gen = torch.Generator().manual_seed(100 + rank)
for _ in range(5):
    x = torch.randn(16, 8, generator=gen)
    loss = (model(x) - x.sum(dim=1, keepdim=True)).pow(2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
gathered = [torch.zeros_like(flat) for _ in range(world)]
dist.all_gather(gathered, flat)
equal = all(torch.equal(g, gathered[0]) for g in gathered)
cpus = sorted(os.sched_getaffinity(0))
env = os.environ
with open("%s.rank.%d" % (tag, rank), "w") as out:
    out.write("%d %d %s %s %s %g %s %d %s %s %s %s %s\n" % (
        rank, world, env["LOCAL_RANK"], env["LOCAL_WORLD_SIZE"], env["NODE_RANK"], total.item(), int(equal),
        torch.get_num_threads(), env.get("OMP_NUM_THREADS", "-"), ",".join(map(str, cpus)), env["MASTER_PORT"],
        env.get("GROUP_RANK", "-"), env.get("ROLE_WORLD_SIZE", "-")))
dist.destroy_process_group()
PY
chmod 0644 ddp.py

rows() { cat "$work"/"$1".rank.* 2>/dev/null; }

# ddp_ran TAG RANKS: every rank reported, the all_reduce summed 1..RANKS, and the
# parameters agree on every rank.
ddp_ran() {
    local tag=$1 n=$2 want
    want=$((n * (n + 1) / 2))
    [ "$(rows "$tag" | wc -l)" = "$n" ] || { echo "$(rows "$tag" | wc -l) of $n ranks reported"; cat "$tag".out 2>/dev/null | tail -20; return 1; }
    [ "$(rows "$tag" | awk '{print $1}' | sort -n | paste -sd,)" = "$(seq -s, 0 $((n - 1)))" ] || { rows "$tag"; return 1; }
    [ "$(rows "$tag" | awk '{print $2 " " $6 " " $7}' | sort -u)" = "$n $want 1" ] || { rows "$tag"; return 1; }
}

timeout 300 runuser -u "$test_user" -- env SLURM_CONF="$SLURM_CONF" \
    srun -N2 -n4 --cpu-bind=none --aihpc-dist $python ddp.py step >step.out 2>&1
ok "DDP in a step of 2 nodes x 2 tasks: ranks 0-3, all_reduce 10, equal parameters" ddp_ran step 4
ok "LOCAL_RANK, LOCAL_WORLD_SIZE and NODE_RANK describe 2 tasks on each of 2 nodes" \
    bash -c '[ "$(cat '"$work"'/step.rank.* | awk "{print \$3 \$4 \$5}" | sort | paste -sd,)" = 020,021,120,121 ]'
ok "torchrun's GROUP_RANK and ROLE_WORLD_SIZE are set" \
    bash -c '[ "$(cat '"$work"'/step.rank.* | awk "{print \$12 \$13}" | sort | paste -sd,)" = 04,04,14,14 ]'

outside_ephemeral() {
    local port low high
    read -r low high </proc/sys/net/ipv4/ip_local_port_range
    port=$(rows step | awk '{print $11}' | sort -u)
    [ "$(wc -w <<<"$port")" = 1 ] || { echo "ports: $port"; return 1; }
    [ "$port" -lt "$low" ] || [ "$port" -gt "$high" ] || { echo "MASTER_PORT $port inside $low-$high"; return 1; }
    ! grep -E -q "^(SlurmctldPort|SlurmdPort)=$port\$" "$SLURM_CONF"
}
ok "MASTER_PORT lies outside ip_local_port_range and Slurm's ports" outside_ephemeral

timeout 300 runuser -u "$test_user" -- env SLURM_CONF="$SLURM_CONF" \
    srun -N2 -n4 --cpu-bind=none --aihpc-bind=cores --aihpc-dist $python ddp.py cores >cores.out 2>&1
ok "DDP with --aihpc-bind=cores: ranks 0-3, all_reduce 10, equal parameters" ddp_ran cores 4

bound_threads() {
    # On each node the two ranks' CPUs are disjoint; PyTorch's intra-op threads follow
    # OMP_NUM_THREADS, which is the rank's own CPU count (no SMT on these nodes).
    rows cores | while read -r rank _ _ _ node _ _ torch_threads omp cpus _; do
        [ "$torch_threads" = "$omp" ] || { echo "rank $rank: torch $torch_threads, OMP $omp"; exit 1; }
        [ "$omp" = "$(tr ',' '\n' <<<"$cpus" | wc -l)" ] || { echo "rank $rank: OMP $omp for CPUs $cpus"; exit 1; }
    done || return 1
    local node
    for node in 0 1; do
        $python - "$node" $(rows cores | awk -v n=$node '$5 == n {print $10}') <<'PY' || return 1
import sys
node, sets = sys.argv[1], [set(s.split(",")) for s in sys.argv[2:]]
if len(sets) != 2 or sets[0] & sets[1]:
    sys.exit("node %s: %s" % (node, sys.argv[2:]))
PY
    done
}
if [ "$(nproc --all)" -ge 2 ]; then
    ok "bound ranks have disjoint CPUs and as many torch threads as CPUs" bound_threads
else
    skip "bound ranks have disjoint CPUs and as many torch threads as CPUs" "fewer than 2 CPUs"
fi

# An array: each element runs its own 2 x 2 DDP step, one element after the other.
cat >array.sh <<'JOB'
#!/bin/bash
#SBATCH -N2 -n4 --aihpc-dist
srun --cpu-bind=none /usr/bin/python3 ddp.py array$SLURM_ARRAY_TASK_ID
JOB
id=$(as_user sbatch --parsable --array=0-1%1 -o array.%a.out array.sh)
state=$(wait_job "${id%%;*}" 600)
ok "an array's two elements ran" test "$state" = COMPLETED
ok "DDP in array element 0: ranks 0-3, all_reduce 10, equal parameters" ddp_ran array0 4
ok "DDP in array element 1: ranks 0-3, all_reduce 10, equal parameters" ddp_ran array1 4
ok "the array's elements use different MASTER_PORTs" \
    bash -c '[ "$(cat '"$work"'/array0.rank.0 | awk "{print \$11}")" != "$(cat '"$work"'/array1.rank.0 | awk "{print \$11}")" ]'

# The batch step of a 4-task job runs one process: a world of one, so that a script run
# there directly neither waits for ranks that never come nor claims the job's size.
cat >batch.sh <<'JOB'
#!/bin/bash
#SBATCH -N2 -n4 --aihpc-dist
echo "WORLD_SIZE=$WORLD_SIZE RANK=$RANK"
timeout 120 /usr/bin/python3 ddp.py batch
JOB
state=$(sbatch_wait -o batch.out batch.sh)
ok "in the batch step WORLD_SIZE=1 and RANK=0, and init_process_group returns" \
    bash -c '[ "'"$state"'" = COMPLETED ] && grep -q "^WORLD_SIZE=1 RANK=0$" '"$work"'/batch.out && [ "$(cat '"$work"'/batch.rank.0 | awk "{print \$1 \$2 \$6 \$7}")" = 0111 ]'

ok "no node was drained" bash -c '! sinfo -h -N -o "%t" | grep -q -E "drain|down"'

rm -rf "$work"
finish
