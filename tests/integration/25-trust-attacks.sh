#!/usr/bin/env bash
# Attacks on the plugin by a hostile user, each with the outcome it must have: the job
# fails with an aihpc: message (or the submit is refused at once), the nodes are idle
# again, and the helper that does the node work inherits nothing from slurmstepd.
. "$(dirname "$0")/lib.sh"
plan 23
work=$(scratch)
cd "$work"
local_root_n1=${AIHPC_LOCAL_ROOT//%n/n1}

# refused RC TEXT PATTERN: the command failed (not by timeout) and said PATTERN.
refused() { [ "$1" != 0 ] && [ "$1" != 124 ] && grep -q -- "$3" <<<"${2:0:4000}"; }

cat >job.sh <<'JOB'
#!/bin/bash
echo "task ran"
JOB
chmod 0755 job.sh

# ---- A FIFO as the stage source.
as_user mkfifo "$work/fifo"
start=$SECONDS
out=$(timeout 20 runuser -u "$test_user" -- env SLURM_CONF="$SLURM_CONF" sbatch --aihpc-stage="$work/fifo" job.sh 2>&1); rc=$?
ok "sbatch --aihpc-stage=FIFO is refused at once with an aihpc: message (rc $rc, $((SECONDS - start))s)" \
    refused "$rc" "$out" 'aihpc: .*not a regular file or a directory'

# The submit check skipped: the option reaches the node only through the environment.
with_site_keys stage_timeout=8s
start=$SECONDS
id=$(as_user sbatch --parsable -w n1 -o fifo.out --export=NONE,AIHPC_STAGE="$work/fifo" job.sh)
state=$([ -n "$id" ] && wait_job_status "$id" 60)
ok "a FIFO that reaches the node fails the job, not the node (state $state, $((SECONDS - start))s)" \
    bash -c "[ '${state%% *}' = FAILED ] && [ $((SECONDS - start)) -lt 40 ]"
ok "the job's output says why in an aihpc: message" grep -Eq "aihpc: .*(fifo|stage_timeout)" fifo.out
ok "the task never ran" bash -c "! grep -q 'task ran' fifo.out"
ok "the nodes are idle again within 30 s" wait_nodes_idle 30
restore_site_keys

# ---- A stage that is stuck, then cancelled: the helper dies with the step.
id=$(as_user sbatch --parsable -w n1 -o stuck.out --export=NONE,AIHPC_STAGE="$work/fifo" job.sh)
for _ in $(seq 100); do [ "$(squeue -h -j "$id" -o %t)" = R ] && break; sleep 0.2; done
sleep 2
scancel "$id"
ok "after scancel of a stuck stage every node is idle again within 30 s" wait_nodes_idle 30
ok "no aihpc-node is left behind" test -z "$(live_pids "$test_user" aihpc-node)"

# ---- A squatted local_root: a directory the user owns is never trusted.
as_user mkdir -p "$work/squat/aihpc"
cp "$plugstack" "$plugstack.orig"
sed "s|local_root=[^ ]*|local_root=$work/squat/aihpc|" "$plugstack.orig" >"$plugstack"
id=$(as_user sbatch --parsable -w n1 -o squat.out --aihpc-stage="$work/job.sh" job.sh)
state=$([ -n "$id" ] && wait_job_status "$id" 60)
ok "a user-owned local_root is refused: the job fails (state $state)" test "${state%% *}" = FAILED
ok "the message names local_root and what to fix" grep -q "aihpc: local_root: $work.* must be owned by root and writable by no one else" squat.out
restore_site_keys

# ---- Submit-time refusals.
out=$(as_user srun -N2 --aihpc-stage-out="ckpt:$work/result-%%n" true 2>&1); rc=$?
ok "a DEST with '%%n' (a literal %n) on two nodes is refused before the step starts" refused "$rc" "$out" 'aihpc: .*add %n'
long_name=$(head -c 70000 /dev/zero | tr '\0' a)
out=$(as_user sbatch --aihpc-stage="$work/job.sh:$long_name" job.sh 2>&1); rc=$?
ok "a 70,000-character NAME is refused at submit" refused "$rc" "$out" 'aihpc: .*at most 255'

# ---- Forged cache records: the other user claims 18 EB in their own cache's info file.
as_other_user mkdir -p "$work/other-src" && as_other_user sh -c "echo theirs >'$work/other-src/f'"
id=$(as_other_user sbatch --parsable -w n1 -o /dev/null --aihpc-stage="$work/other-src:theirs" "$work/job.sh")
wait_job "$id" >/dev/null
other_cache=$local_root_n1/cache/$(id -u "$other_user")
forged=$other_cache/entries/forged
as_other_user mkdir -p "$forged" &&
    as_other_user sh -c "printf 'key=forged\nbytes=18000000000000000000\nfiles=1\n' >'$forged/info'"
entries_before=$(ls "$other_cache/entries" | grep -vc '^forged$')
with_site_keys cache_max=64M
mkdir -p "$work/mine" && echo mine >"$work/mine/f" && chmod -R a+rX "$work/mine"
id=$(as_user sbatch --parsable -w n1 -o forged.out --aihpc-stage="$work/mine:mine" job.sh)
state=$([ -n "$id" ] && wait_job_status "$id" 60)
ok "a forged 18 EB record of another user starves no one: the stage works (state $state)" \
    bash -c "[ '$state' = 'COMPLETED 0:0' ] && grep -q 'task ran' forged.out || { cat forged.out; false; }"
ok "the other user's entries are all still there" \
    test "$(ls "$other_cache/entries" | grep -vc '^forged$')" = "$entries_before"
ok "root's ledger is root's alone" \
    bash -c "[ \"\$(stat -c '%u %a' '$local_root_n1/cache/ledger')\" = '0 600' ]"
restore_site_keys

# ---- An archive bomb: a small .tar.zst that would fill the node-local disk.
if command -v zstd >/dev/null; then
    mkdir -p "$work/bomb"
    head -c 96M /dev/zero >"$work/bomb/zeros"
    tar -C "$work" -cf - bomb | zstd -q -19 -o "$work/bomb.tar.zst"
    rm -rf "$work/bomb" && chmod a+r "$work/bomb.tar.zst"
    with_site_keys cache_max=32M
    id=$(as_user sbatch --parsable -w n1 -o bomb.out --aihpc-stage="$work/bomb.tar.zst" job.sh)
    state=$([ -n "$id" ] && wait_job_status "$id" 60)
    ok "a $(stat -c %s "$work/bomb.tar.zst")-byte archive that expands to 96 MiB is refused (state $state)" \
        bash -c "[ '${state%% *}' = FAILED ] && grep -q 'aihpc: ' bomb.out && ! grep -q 'task ran' bomb.out"
    ok "nothing of the bomb is left in the cache" \
        bash -c "! find '$local_root_n1/cache/$(id -u "$test_user")/entries' -name zeros | grep -q ."
    ok "the node is idle again" wait_nodes_idle 30
    restore_site_keys
else
    for d in "an archive bomb is refused" "nothing of the bomb is left" "the node is idle again"; do skip "$d" "no zstd"; done
fi

# ---- A private copy bigger than the user's share of the node's disk: it takes the same
# disk as the cache, so it is refused before a byte is copied, not left to fill the disk.
mkdir -p "$work/big" && head -c 40M /dev/zero >"$work/big/f" && chmod -R a+rX "$work/big"
with_site_keys cache_max=32M
id=$(as_user sbatch --parsable -w n1 -o private.out --aihpc-stage-mode=private --aihpc-stage="$work/big:big" job.sh)
state=$([ -n "$id" ] && wait_job_status "$id" 60)
restore_site_keys
ok "a 40 MiB private copy over a 32 MiB cache_max is refused, with a message (state $state)" \
    bash -c "[ '${state%% *}' = FAILED ] && grep -q \"aihpc: .*a private copy of 41943040 bytes does not fit this user's room\" private.out && ! grep -q 'task ran' private.out"
ok "the node is idle again after the refused private copy" wait_nodes_idle 30

# ---- What the helper inherits, seen from inside it: a probe put where the plugin looks
# for aihpc-node records its own identity and descriptors, then execs the real one.
mkdir -p "$work/probe/plugin/.libs" "$work/probe/tools"
cp "$plugin_so" "$work/probe/plugin/.libs/aihpc.so"
cat >"$work/probe.c" <<EOF
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>
int main(int argc, char** argv) {
    FILE* log = fopen("$work/probe.log", "a");
    if (!log) return 3;
    char fds[512] = "";
    DIR* d = opendir("/proc/self/fd");
    struct dirent* e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d) || atoi(e->d_name) == fileno(log)) continue;
        strncat(fds, e->d_name, sizeof fds - strlen(fds) - 2);
        strcat(fds, ",");
    }
    char oom[16] = "?";
    FILE* o = fopen("/proc/self/oom_score_adj", "r");
    if (o) { if (!fgets(oom, sizeof oom, o)) oom[0] = 0; oom[strcspn(oom, "\n")] = 0; fclose(o); }
    fprintf(log, "%s uid=%d euid=%d nnp=%d pgrp_is_self=%d oom=%s fds=%s\n", argc > 1 ? argv[1] : "-", (int)getuid(),
            (int)geteuid(), prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0), getpgrp() == getpid(), oom, fds);
    fclose(log);
    execv("$top_builddir/tools/aihpc-node", argv);
    return 4;
}
EOF
if cc -o "$work/probe/tools/aihpc-node" "$work/probe.c" 2>"$work/cc.err"; then
    touch "$work/probe.log" && chmod 0666 "$work/probe.log"
    cp "$plugstack" "$plugstack.orig"
    sed "s|^required [^ ]*aihpc.so|required $work/probe/plugin/.libs/aihpc.so|" "$plugstack.orig" >"$plugstack"
    echo data >"$work/data.txt"
    # The stage-in's own record in the job's meta dir says whose it was.
    cat >probe-job.sh <<'JOB'
#!/bin/bash
echo "task ran"
echo "items_owner=$(stat -c %u "$AIHPC_STAGE_DIR.aihpc/items")"
JOB
    chmod 0755 probe-job.sh
    id=$(as_user sbatch --parsable -w n1 -o probe.out --aihpc-stage="$work/data.txt" probe-job.sh)
    wait_job "$id" >/dev/null
    restore_site_keys
    ok "the helper started as root for prepare and did the stage-in as the user" \
        bash -c "grep -q '^prepare-stage-in uid=0 euid=0 ' '$work/probe.log' && grep -qx 'items_owner=$(id -u "$test_user")' probe.out"
    ok "the helper inherits only fds 0-4 from slurmstepd" \
        bash -c "[ -z \"\$(grep -v 'fds=0,1,2,3,4,\$' '$work/probe.log')\" ]"
    ok "the helper runs with no_new_privs, in its own process group, with oom_score_adj 0" \
        bash -c "[ -z \"\$(grep -v 'nnp=1 pgrp_is_self=1 oom=0 ' '$work/probe.log')\" ]"
    ok "the job staged through the probe and ran" grep -q "task ran" probe.out
else
    for d in "the helper ran as root and as the user" "the helper inherits only fds 0-4" \
        "the helper runs with no_new_privs" "the job staged through the probe"; do
        skip "$d" "no C compiler to build the probe: $(head -1 "$work/cc.err")"
    done
fi
finish
