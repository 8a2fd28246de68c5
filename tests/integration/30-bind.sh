#!/usr/bin/env bash
# --aihpc-bind and --aihpc-dist on a real Slurm: per-task CPUs, OMP variables, memory
# policy, verbose lines, the torch variables, the topology cache and the site default.
# The two nodes share this host: each node's tasks are checked against each other.
. "$(dirname "$0")/lib.sh"
plan 17
work=$(scratch)
cd "$work"
bind_tool=$top_builddir/tools/aihpc-bind

# Each task writes one line: node rank local-rank cpus omp-threads omp-places omp-bind
# RANK WORLD_SIZE LOCAL_RANK LOCAL_WORLD_SIZE NODE_RANK MASTER_ADDR MASTER_PORT policy
cat >task.sh <<TASK
#!/bin/bash
cpus=\$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status)
policy=\$($bind_tool show | sed 's/.*mempolicy //; s/ /:/g')
echo "\$SLURMD_NODENAME \$SLURM_PROCID \$SLURM_LOCALID \$cpus \${OMP_NUM_THREADS:--} \${OMP_PLACES:--} \${OMP_PROC_BIND:--} \${RANK:--} \${WORLD_SIZE:--} \${LOCAL_RANK:--} \${LOCAL_WORLD_SIZE:--} \${NODE_RANK:--} \${MASTER_ADDR:--} \${MASTER_PORT:--} \$policy" >"$work/\$1.task.\$SLURM_PROCID"
TASK
chmod 0755 task.sh

node_cpus=$(scontrol show node n1 | sed -n 's/.*CPUTot=\([0-9]*\).*/\1/p')

# Stale values in the submitting environment must not survive into the tasks.
as_user env OMP_NUM_THREADS=99 RANK=77 srun -N2 -n4 --cpu-bind=none --aihpc-bind=cores,verbose --aihpc-dist \
    ./task.sh main >main.out 2>main.err
rows() { cat "$work"/main.task.* 2>/dev/null | grep -v '^$' | grep '^n'; }

ok "the step's four tasks ran and reported" test "$(rows | wc -l)" = 4

disjoint_per_node() {
    local node
    for node in n1 n2; do
        local a b
        read -r a b < <(rows | awk -v n=$node '$1 == n { printf "%s ", $4 }')
        [ -n "$a" ] && [ -n "$b" ] || { rows; return 1; }
        python3 -c 'import sys
def ids(t):
    out=set()
    for p in t.split(","):
        lo,_,hi=p.partition("-"); out.update(range(int(lo),int(hi or lo)+1))
    return out
a,b=ids(sys.argv[1]),ids(sys.argv[2]); sys.exit(0 if a and b and not a&b else 1)' "$a" "$b" || { echo "$node: $a / $b"; return 1; }
    done
}
if [ "${node_cpus:-0}" -ge 2 ] && [ "$(nproc --all)" -ge 2 ]; then
    ok "each node's two tasks have disjoint Cpus_allowed_list" disjoint_per_node
else
    skip "each node's two tasks have disjoint Cpus_allowed_list" "nodes have fewer than 2 CPUs"
fi

omp_matches() {
    rows | while read -r node rank lr cpus threads places bind _; do
        # OMP_PLACES holds exactly the task's CPUs, one place per core; no SMT here, so
        # OMP_NUM_THREADS (cores) is the number of CPUs.
        local from_places
        from_places=$(tr -d '{}' <<<"$places" | tr ',' '\n' | sort -n | paste -sd,)
        local expanded
        expanded=$(python3 -c 'import sys
out=[]
for p in sys.argv[1].split(","):
    lo,_,hi=p.partition("-"); out+=range(int(lo),int(hi or lo)+1)
print(",".join(map(str,sorted(out))))' "$cpus")
        [ "$from_places" = "$expanded" ] || { echo "rank $rank: places $places cpus $cpus"; exit 1; }
        [ "$threads" = "$(tr ',' '\n' <<<"$expanded" | wc -l)" ] || { echo "rank $rank: threads $threads cpus $cpus"; exit 1; }
        [ "$bind" = close ] || { echo "rank $rank: OMP_PROC_BIND=$bind"; exit 1; }
    done
}
ok "OMP_PLACES, OMP_NUM_THREADS and OMP_PROC_BIND match each task's CPUs (stale 99 overwritten)" omp_matches

verbose_lines() {
    [ "$(grep -c '^aihpc: rank [0-3] cpus ' main.err)" = 4 ] || { cat main.err; return 1; }
    local r
    for r in 0 1 2 3; do
        local cpus
        cpus=$(awk -v r=$r '$2 == r { print $4 }' < <(rows))
        grep -q "^aihpc: rank $r cpus $cpus mems " main.err || { echo "rank $r ($cpus):"; cat main.err; return 1; }
    done
}
ok "verbose prints one line per task with its rank and CPUs" verbose_lines

ok "the memory policy prefers the task's NUMA node" \
    bash -c '[ "$(cat '"$work"'/main.task.* | awk "{print \$15}" | grep -c -E "^preferred(-many)?:0$")" = 4 ]'

ok "RANK is 0-3 (stale 77 overwritten) and WORLD_SIZE 4 in every task" \
    bash -c '[ "$(cat '"$work"'/main.task.* | awk "{print \$8}" | sort -n | paste -sd,)" = 0,1,2,3 ] && [ "$(cat '"$work"'/main.task.* | awk "{print \$9}" | sort -u)" = 4 ]'
ok "LOCAL_RANK is 0-1 on each node, LOCAL_WORLD_SIZE 2, NODE_RANK the node's index" \
    bash -c 'cat '"$work"'/main.task.* | awk "{ if (\$10 != \$3 || \$11 != 2 || \$12 != (\$1 == \"n1\" ? 0 : 1)) bad=1 } END { exit bad }"'
ok "one MASTER_ADDR:MASTER_PORT for the step, the NodeAddr of its first node (127.0.0.1)" \
    bash -c '[ "$(cat '"$work"'/main.task.* | awk "{print \$13\":\"\$14}" | sort -u | wc -l)" = 1 ] && [ "$(cat '"$work"'/main.task.* | awk "{print \$13}" | sort -u)" = 127.0.0.1 ]'

concurrent_ports() {
    as_user srun -N1 -n1 --aihpc-dist ./task.sh one &
    as_user srun -N1 -n1 --aihpc-dist ./task.sh two &
    wait
    local p1 p2
    p1=$(awk '{print $14}' one.task.0) p2=$(awk '{print $14}' two.task.0)
    [ -n "$p1" ] && [ -n "$p2" ] && [ "$p1" != "$p2" ] && [ "$p1" -ge 20000 ] && [ "$p1" -lt 40000 ] || { echo "$p1 $p2"; return 1; }
}
ok "a concurrent job gets a different MASTER_PORT" concurrent_ports

as_user srun -N1 -n2 --cpu-bind=none --aihpc-bind=cores,nomem ./task.sh nomem >nomem.out 2>&1
ok "nomem leaves the memory policy alone" \
    bash -c '[ "$(cat '"$work"'/nomem.task.* | awk "{print \$15}" | sort -u)" = default ]'
ok "without verbose a bound step prints no aihpc line" bash -c '! grep -q aihpc nomem.out'

cat >batch.sh <<JOB
#!/bin/bash
#SBATCH -N2 -n4 --aihpc-bind=cores --aihpc-dist
srun --cpu-bind=none ./task.sh batch
JOB
state=$(sbatch_wait -o batch.out batch.sh)
ok "a batch job's srun step sets its own per-task values, not the batch step's" \
    bash -c '[ "'"$state"'" = COMPLETED ] && [ "$(cat '"$work"'/batch.task.* | awk "{print \$8}" | sort -n | paste -sd,)" = 0,1,2,3 ] && [ "$(cat '"$work"'/batch.task.* | awk "{print \$9}" | sort -u)" = 4 ]'

cat >unbound.sh <<JOB
#!/bin/bash
#SBATCH -N1 -n2 --aihpc-bind=cores --aihpc-dist
srun -n2 --cpu-bind=none --aihpc-bind=none --aihpc-dist=none ./task.sh unbound
JOB
state=$(sbatch_wait -o unbound.out unbound.sh)
ok "a step that neither binds nor asks for the training variables drops the batch step's" \
    bash -c '[ "'"$state"'" = COMPLETED ] && [ "$(cat '"$work"'/unbound.task.* | awk "{print \$5 \$6 \$7 \$8 \$9 \$13}" | sort -u)" = ------ ]'

topology_cache() {
    local node file
    for node in n1 n2; do
        file=${AIHPC_LOCAL_ROOT//%n/$node}/topology.xml
        [ -f "$file" ] || { echo "no $file"; return 1; }
        [ "$(stat -c '%U %a' "$file")" = "root 644" ] || { stat "$file"; return 1; }
        grep -q '<topology' "$file" || return 1
    done
}
ok "the topology is cached as root-owned 0644 XML under each node's local_root" topology_cache

tool_in_step() {
    local out shown planned
    out=$(as_user srun -N1 -n1 --cpu-bind=none --aihpc-bind=cores \
        bash -c "$bind_tool show; $bind_tool plan --tasks 1 --mode cores --json") || return 1
    shown=$(sed -n 's/^cpus \([^ ]*\) .*/\1/p' <<<"$out")
    # Inside a bound task, the tool plans within the task's own CPUs.
    grep -q "\"cpus\": \"$shown\"" <<<"$out" || { echo "$out"; return 1; }
}
ok "aihpc-bind show and plan inside a bound task see the task's CPUs" tool_in_step

site_default() {
    with_site_keys bind_default=auto
    as_user srun -N1 -n2 --cpu-bind=none ./task.sh default >/dev/null 2>&1
    local rc=$?
    restore_site_keys
    [ $rc = 0 ] || return 1
    [ "$(cat "$work"/default.task.* | awk '{print $5}' | sort -u)" != - ] || { cat "$work"/default.task.*; return 1; }
}
ok "bind_default=auto binds steps that give no --aihpc-bind" site_default

ok "no node was drained" bash -c '! sinfo -h -N -o "%t" | grep -q -E "drain|down"'

rm -rf "$work"
finish
