#!/usr/bin/env bash
# Data gravity: a node that copied a source into its cache announces it to Slurm (an
# aihpc_* feature, and its version in the node's Comment); `aihpc-stage where` lists the
# nodes that hold the source's current version; jobs with --aihpc-gravity prefer them
# (contrib/job_submit.lua turns the plugin's word into --prefer) and never wait for
# them: with the warm node busy, a job starts on the other one at once.
. "$(dirname "$0")/lib.sh"
plan 14
work=$(user_scratch)
cd "$work" || exit 1
mkdir -p src/set out
for i in $(seq 20); do head -c 4096 /dev/urandom >"src/set/f$i"; done
chown -R "$test_user" src out
stage_tool=$top_builddir/tools/aihpc-stage
ctld_log=$(scontrol show config | sed -n 's/^SlurmctldLogFile *= *//p')

# lua_prefer JOBID: the --prefer job_submit.lua set on the job, from its debug lines in
# slurmctld's log (a job's Prefer is gone from scontrol once it started), or "none". The
# last job of that id: a cluster started afresh numbers its jobs from the start again.
lua_prefer() {
    awk -v id="$1" '/job_submit.lua: user /{p = "none"} /job_submit.lua: --prefer=/{sub(/.*--prefer=/, ""); sub(/ .*/, ""); p = $0}
        $0 ~ "_slurm_rpc_submit_batch_job: JobId=" id " " {last = p} END {print last}' "$ctld_log"
}
# lua_features JOBID: the AIHPC_GRAVITY_FEATURES the plugin gave the job, as the lua saw
# them ("nil": none).
lua_features() {
    awk -v id="$1" '/job_submit.lua: user /{f = $0; sub(/.*spank_job_env features=/, "", f); sub(/ .*/, "", f)}
        $0 ~ "_slurm_rpc_submit_batch_job: JobId=" id " " {last = f} END {print last}' "$ctld_log"
}
node_field() { scontrol -o show node "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }
# The nodes' aihpc state goes at the end: features and Comment as the cluster began.
clean_nodes() {
    local n
    for n in n1 n2; do scontrol update NodeName=$n AvailableFeatures= ActiveFeatures= Comment= 2>/dev/null; done
}
trap 'scancel -u "$test_user" 2>/dev/null; clean_nodes; restore_site_keys; remove_scratch
    if grep -q "^#JobSubmitPlugins=lua$" "$SLURM_CONF"; then sed -i "s/^#JobSubmitPlugins=lua$/JobSubmitPlugins=lua/" "$SLURM_CONF"; scontrol reconfigure; fi' EXIT
wait_nodes_idle 60 >/dev/null

# 1. Staged on n2 alone: n2 announces it, n1 does not; the site's own feature stays.
scontrol update NodeName=n2 AvailableFeatures=site_gpu ActiveFeatures=site_gpu
state=$(sbatch_wait -w n2 -o out/warm.out --aihpc-stage="$work/src/set" --wrap true)
features2=$(node_field n2 AvailableFeatures)
features1=$(node_field n1 AvailableFeatures)
# This source's feature, as where reports it (the nodes may hold other tests' data too).
feature=$(as_user "$stage_tool" where "$work/src/set" --json | sed -n 's/.*"feature": "\([a-z0-9_]*\)".*/\1/p' | head -1)
if [ "$state" = COMPLETED ] && [ -n "$feature" ] && [[ $features2 == site_gpu,*$feature* ]] &&
    [[ ,$features1, != *,$feature,* ]] && [[ $(node_field n2 Comment) == aihpc-warm:* ]]; then
    pass "a node that copied a source announces it (feature and Comment), and keeps the site's features"
else
    fail "a node that copied a source announces it (feature and Comment), and keeps the site's features" "state $state, feature '$feature'" "n2: $features2 $(node_field n2 Comment)" \
        "n1: $features1" "$(cat out/warm.out)" "$(grep aihpc "$(dirname "$ctld_log")"/slurmd-n2.log | tail -5)"
fi

# 2. where lists n2 alone, as the user, from the user's directory.
where=$(cd "$work" && as_user "$stage_tool" where src/set 2>&1)
if [ "$(echo "$where" | wc -l)" = 1 ] && [[ $where == "n2 shared 20"* ]]; then
    pass "aihpc-stage where lists n2 and not n1"
else
    fail "aihpc-stage where lists n2 and not n1" "$where"
fi
json=$(as_user "$stage_tool" where "$work/src/set" --json)
if [[ $json == '{"node": "n2", "mode": "shared", '* ]] && [[ $json == *'"stale": false}' ]]; then
    pass "where --json"
else
    fail "where --json" "$json"
fi

# 3. With both nodes idle, 10 jobs with --aihpc-gravity one after another: nearly all on n2.
on_n2=0 nodes=
for i in $(seq 10); do
    wait_nodes_idle 60 >/dev/null
    id=$(as_user sbatch --parsable -N1 -o "out/g$i.out" --aihpc-gravity --aihpc-stage="$work/src/set" --wrap true)
    wait_job "$id" >/dev/null
    node=$(job_field "$id" NodeList)
    nodes="$nodes $node"
    [ "$node" = n2 ] && on_n2=$((on_n2 + 1))
done
if [ $on_n2 -ge 9 ]; then
    pass "with both nodes idle, $on_n2 of 10 gravity jobs ran on the warm node"
else
    fail "with both nodes idle, at least 9 of 10 gravity jobs run on the warm node" "nodes:$nodes" \
        "prefer of the last: $(job_field "$id" Prefer)" "$(grep 'aihpc: job_submit' "$ctld_log" | tail -3)"
fi
# --aihpc-gravity=off: no preference (on n2, so that n1 stays cold for the checks below).
wait_nodes_idle 60 >/dev/null
id=$(as_user sbatch --parsable -w n2 -o out/plain.out --aihpc-gravity=off --aihpc-stage="$work/src/set" --wrap true)
wait_job "$id" >/dev/null
if [ "$(lua_prefer "$id")" = none ]; then
    pass "--aihpc-gravity=off sets no preference"
else
    fail "--aihpc-gravity=off sets no preference" "Prefer=$(lua_prefer "$id")"
fi

# Site-wide gravity. By default (gravity=off) a job that does not ask asks Slurm nothing
# and gets no preference; with gravity=prefer it prefers the warm node, and
# --aihpc-gravity=off still turns that off.
wait_nodes_idle 60 >/dev/null
id=$(as_user sbatch --parsable -w n2 -o /dev/null --aihpc-stage="$work/src/set" --wrap true)
wait_job "$id" >/dev/null
default_seen="features $(lua_features "$id"), prefer $(lua_prefer "$id")"
with_site_keys gravity=prefer
site_nodes=
for i in 1 2 3; do
    wait_nodes_idle 60 >/dev/null
    id=$(as_user sbatch --parsable -N1 -o /dev/null --aihpc-stage="$work/src/set" --wrap true)
    wait_job "$id" >/dev/null
    site_nodes="$site_nodes $(job_field "$id" NodeList)"
done
site_prefer=$(lua_prefer "$id")
wait_nodes_idle 60 >/dev/null
id=$(as_user sbatch --parsable -w n2 -o /dev/null --aihpc-gravity=off --aihpc-stage="$work/src/set" --wrap true)
wait_job "$id" >/dev/null
site_off="features $(lua_features "$id"), prefer $(lua_prefer "$id")"
restore_site_keys
if [ "$default_seen" = "features nil, prefer none" ] && [ "$site_nodes" = " n2 n2 n2" ] && [[ $site_prefer == aihpc_* ]] &&
    [ "$site_off" = "features nil, prefer none" ]; then
    pass "without --aihpc-gravity a job asks nothing by default, and prefers the warm node with gravity=prefer"
else
    fail "without --aihpc-gravity a job asks nothing by default, and prefers the warm node with gravity=prefer" \
        "default: $default_seen" "gravity=prefer: on$site_nodes, last prefer $site_prefer" "with --aihpc-gravity=off: $site_off"
fi

# Slurm refuses a job whose --prefer none of its nodes can satisfy, and holds one whose
# preference cannot go with its --constraint: such jobs get none, and run.
scontrol update NodeName=n1 AvailableFeatures=site_cpu ActiveFeatures=site_cpu
ran=
for opts in "-x n2" "-C site_cpu" "-p urgent"; do
    wait_nodes_idle 60 >/dev/null
    id=$(as_user sbatch --parsable -N1 $opts -o /dev/null --aihpc-gravity --aihpc-stage="$work/src/set" --wrap true 2>&1)
    [[ $id =~ ^[0-9]+$ ]] || { ran="$ran [$opts: $id]"; continue; }
    ran="$ran [$opts: $(wait_job "$id"), prefer $(lua_prefer "$id" | sed 's/^aihpc_.*/aihpc/')]"
done
scontrol update NodeName=n1 AvailableFeatures= ActiveFeatures=
if [ "$ran" = " [-x n2: COMPLETED, prefer none] [-C site_cpu: COMPLETED, prefer none] [-p urgent: COMPLETED, prefer aihpc]" ]; then
    pass "jobs that exclude the warm node or have a constraint get no preference and run; another partition holding it does"
else
    fail "jobs that exclude the warm node or have a constraint get no preference and run; another partition holding it does" "$ran"
fi

# 4. The plugin's word, with --aihpc-verbose, names the warm node.
said=$(cd "$work" && as_user sbatch --parsable -o /dev/null --aihpc-verbose --aihpc-gravity --aihpc-stage="$work/src/set" --wrap true 2>&1 >/dev/null)
# From 26.05 the scheduler falls back from --prefer at once: every warm node counts.
release=$(scontrol --version | sed 's/^[^0-9]*\([0-9]*\.[0-9]*\).*/\1/')
if [[ $release < 26.05 ]]; then preferred="those idle now (n2)" busy_word="and are busy"; else preferred="them" busy_word="the job prefers them"; fi
if [[ $said == *"aihpc: --aihpc-gravity: n2 hold this job's data warm; the job prefers $preferred and waits for none"* ]]; then
    pass "--aihpc-verbose says which node holds the data warm"
else
    fail "--aihpc-verbose says which node holds the data warm" "$said"
fi
wait_nodes_idle 60 >/dev/null

# 5. n2 busy (all its CPUs): a gravity job starts on n1 at once.
cpus=$(node_field n2 CPUTot)
busy=$(as_user sbatch --parsable -w n2 -N1 -n1 -c "$cpus" -o /dev/null --wrap 'sleep 120')
for _ in $(seq 100); do [ "$(job_field "$busy" JobState)" = RUNNING ] && break; sleep 0.2; done
submitted=$SECONDS
id=$(as_user sbatch --parsable -N1 -o out/busy.out --aihpc-gravity --aihpc-verbose --aihpc-stage="$work/src/set" \
    --wrap 'sleep 1' 2>out/busy.err)
for _ in $(seq 50); do [ "$(job_field "$id" JobState)" != PENDING ] && break; sleep 0.2; done
started=$((SECONDS - submitted))
state=$(job_field "$id" JobState)
node=$(job_field "$id" NodeList)
if [ "$node" = n1 ] && [ "$state" != PENDING ] && [ $started -le 10 ] && grep -q "n2 hold this job's data warm.*$busy_word" out/busy.err; then
    pass "with the warm node busy, a gravity job starts elsewhere at once (${started}s)"
else
    fail "with the warm node busy, a gravity job starts elsewhere at once" "state $state on '$node' after ${started}s" \
        "$(scontrol show job "$id" | grep -i 'reason\|prefer')" "$(cat out/busy.err)"
fi
wait_job "$id" >/dev/null
scancel "$busy"
wait_job "$busy" >/dev/null

# 6. A changed source: n2 holds an older version, which where lists only with --stale.
wait_nodes_idle 60 >/dev/null
head -c 100 /dev/urandom >src/set/new
chown "$test_user" src/set/new
where=$(as_user "$stage_tool" where "$work/src/set" 2>&1)
stale=$(as_user "$stage_tool" where "$work/src/set" --stale 2>&1)
if [ -z "$where" ] && echo "$stale" | grep -q "^n2 shared .* stale$" && ! echo "$stale" | grep -qv " stale$"; then
    pass "a node holding an older version is listed only with --stale, as stale"
else
    fail "a node holding an older version is listed only with --stale, as stale" "where: $where" "--stale: $stale"
fi

# 7. The lua saw the plugin's word (its debug lines in slurmctld's log).
if grep -q "aihpc: job_submit.lua: .*--prefer=aihpc_" "$ctld_log"; then
    pass "job_submit.lua set --prefer from the job's spank environment"
else
    fail "job_submit.lua set --prefer from the job's spank environment" "$(grep 'aihpc' "$ctld_log" | tail -5)"
fi

# 8. gravity_features=0: a node's record is left alone.
clean_nodes
with_site_keys gravity_features=0
state=$(sbatch_wait -w n1 -o out/off.out --aihpc-stage="$work/src/set" --wrap true)
if [ "$state" = COMPLETED ] && [[ $(node_field n1 AvailableFeatures) != *aihpc_* ]]; then
    pass "gravity_features=0 announces nothing"
else
    fail "gravity_features=0 announces nothing" "state $state" "n1: $(node_field n1 AvailableFeatures)"
fi
restore_site_keys

# 9. A cluster without lua in JobSubmitPlugins: --aihpc-gravity says the job is placed
# without gravity, and how a site enables it.
# reconfigure_to WORD: slurm.conf read anew, until slurmctld reports JobSubmitPlugins WORD.
reconfigure_to() {
    scontrol reconfigure >/dev/null 2>&1
    for _ in $(seq 100); do scontrol show config 2>/dev/null | grep -q "^JobSubmitPlugins *= *$1\$" && return 0; sleep 0.2; done
    return 1
}
sed -i 's/^JobSubmitPlugins=lua$/#JobSubmitPlugins=lua/' "$SLURM_CONF"
reconfigure_to "(null)"
said=$(as_user sbatch --parsable -o /dev/null --chdir="$work" --aihpc-gravity --aihpc-stage="$work/src/set" --wrap true 2>&1 >/dev/null)
sed -i 's/^#JobSubmitPlugins=lua$/JobSubmitPlugins=lua/' "$SLURM_CONF"
reconfigure_to lua
if [[ $said == *"aihpc: --aihpc-gravity: this cluster's JobSubmitPlugins (none) has no lua, so the job is placed without data gravity"*"JobSubmitPlugins=lua"* ]]; then
    pass "without lua in JobSubmitPlugins, --aihpc-gravity says so"
else
    fail "without lua in JobSubmitPlugins, --aihpc-gravity says so" "$said"
fi

clean_nodes
if wait_nodes_idle 60 >/dev/null; then pass "nodes idle at the end"; else fail "nodes idle at the end" "$(sinfo -N)"; fi
finish
