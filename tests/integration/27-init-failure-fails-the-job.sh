#!/usr/bin/env bash
# Slurm 25.05 and later read slurm_spank_init_failure_mode: a plugin whose init fails on
# one node (here a broken site key in n2's plugstack.conf) fails the job at once, and the
# node is not drained. Before 25.05 the error waits for task_init (tested elsewhere).
. "$(dirname "$0")/lib.sh"
version=$(sinfo -V | awk '{print $2}')
if [ "$(printf '%s\n25.05\n' "$version" | sort -V | head -1)" != 25.05 ]; then
    skip_all "Slurm $version reads no slurm_spank_init_failure_mode (25.05 and later do)"
fi
plan 5
work=$(scratch)
cd "$work"
etc=$(dirname "$SLURM_CONF")
state_dir=$(dirname "$etc")
pid_file=$state_dir/run/slurmd-n2.pid

# n2's slurmd alone reads a plugstack.conf with a key the plugin refuses.
sed "s|^\(required [^ ]*aihpc.so .*\)$|\1 cache_max=lots|" "$plugstack" >"$etc/plugstack-n2-broken.conf"
sed "s|^PlugStackConfig=.*|PlugStackConfig=$etc/plugstack-n2-broken.conf|" "$SLURM_CONF" >"$etc/slurm-n2-broken.conf"
chmod 0644 "$etc/plugstack-n2-broken.conf" "$etc/slurm-n2-broken.conf"

restart_n2() {
    local conf=$1
    if [ -f "$pid_file" ]; then
        local pid
        pid=$(cat "$pid_file")
        kill "$pid" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    SLURM_CONF=$conf slurmd -f "$conf" -N n2
    for _ in $(seq 100); do
        [ "$(sinfo -h -n n2 -o %t)" = idle ] && return 0
        scontrol update nodename=n2 state=resume >/dev/null 2>&1
        sleep 0.3
    done
    return 1
}
restore() { restart_n2 "$SLURM_CONF" >/dev/null 2>&1; restore_site_keys; remove_scratch; }
trap restore EXIT

ok "n2 restarts with the broken plugstack.conf" restart_n2 "$etc/slurm-n2-broken.conf"
start=$SECONDS
as_user srun -N2 -w n1,n2 -t 2 true >out 2>&1
status=$?
took=$((SECONDS - start))
ok "the job fails (srun exit $status)" test $status -ne 0
ok "at once: in $took s, not at a time limit" test $took -lt 60
ok "n2 is not drained (state: $(sinfo -h -n n2 -o %t))" \
    bash -c "sleep 2; s=\$(sinfo -h -n n2 -o %t); [ \"\$s\" = idle ] || [ \"\$s\" = mix ]"
ok "n1 runs jobs as before" as_user srun -w n1 true
finish
