#!/usr/bin/env bash
# Stand-in runtimes (argv-recording scripts named apptainer, singularity, enroot and
# podman, in stand-in-runtimes/) prove that a task execs exactly the runtime command
# line lib/container builds, with the job environment and, for a job that stages, the
# node's local_root bound, and that the runtime is found in runtime_path. The site key is added to the cluster's plugstack.conf while the
# test runs, and the file is restored after.
# Run as root on a machine with the mini-cluster up; jobs run as the test user.
. "$(dirname "$0")/lib.sh"
command -v ch-run >/dev/null || skip_all "needs ch-run (charliecloud-runtime)"
here=$top_builddir/tests/integration
tree=$top_builddir

plan 13
scratch=$(user_scratch)
cd "$scratch" || exit 1
stand_in=$here/stand-in-runtimes
log=$scratch/log
mkdir -p "$log" && chown "$test_user" "$log"

plugstack=$(scontrol show config | sed -n 's/^PlugStackConfig *= *//p')
original=$scratch/plugstack.orig
cp "$plugstack" "$original"
restore() { cp "$original" "$plugstack.aihpc-tmp" && mv -f "$plugstack.aihpc-tmp" "$plugstack"; }
trap 'restore; remove_scratch' EXIT
# Atomic: every step reads the file when it starts.
sed "/aihpc.so/ s|\$| runtime_path=$stand_in:/usr/bin:/bin|" "$original" >"$plugstack.aihpc-tmp"
chmod 0644 "$plugstack.aihpc-tmp" && mv -f "$plugstack.aihpc-tmp" "$plugstack"

: >"$scratch/img.sif"; : >"$scratch/img.sqsh"; mkdir -p "$scratch/rootfs"
chmod 0644 "$scratch/img.sif" "$scratch/img.sqsh"
# For the digest cache, made now so that it has settled by the time it is used.
head -c 300000 /dev/urandom >"$scratch/cached.sif" && chown "$test_user" "$scratch/cached.sif"
run_step() { as_user env -u TMPDIR STAND_IN_LOG="$log" MARK=stand-in-42 srun -Q --chdir="$scratch" "$@"; }
argv_of() { tr '\n' '|' <"$log/$1.argv"; }

first_output=$(run_step -n2 --aihpc-container="$scratch/img.sif" printf '%s\n' 'a b' c 2>&1)
expected="$stand_in/apptainer|exec|--pwd|$scratch|$scratch/img.sif|printf|%s\\n|a b|c|"
if [ "$(argv_of apptainer.0)" = "$expected" ] && [ "$(argv_of apptainer.1)" = "$expected" ]; then
    pass "the stand-in apptainer is exec'd with exactly 'apptainer exec --pwd CWD IMAGE CMD...' by both tasks"
else
    fail "the stand-in apptainer is exec'd with exactly 'apptainer exec --pwd CWD IMAGE CMD...' by both tasks" \
        "got:      $(argv_of apptainer.0 2>&1)" "expected: $expected" "srun said: $first_output"
fi
env0=$log/apptainer.0.env
if grep -qx 'MARK=stand-in-42' "$env0" && grep -qx 'SLURM_PROCID=0' "$env0" && grep -qx 'SLURM_PROCID=1' "$log/apptainer.1.env" &&
    grep -qx "AIHPC_CONTAINER_IMAGE=$scratch/img.sif" "$env0" && grep -q '^AIHPC_CONTAINER_DIGEST=xxh3:2d06800538d394c2$' "$env0" &&
    ! grep -q '^AIHPC_LAUNCH_REQUEST=' "$env0"; then
    pass "the stand-in runtime gets the job's environment, the image variables, and no launch request"
else
    fail "the stand-in runtime gets the job's environment, the image variables, and no launch request" \
        "$(grep -E 'MARK|SLURM_PROCID|AIHPC' "$env0" 2>&1)" "srun said: $first_output"
fi

run_step -n1 --aihpc-container="singularity:$scratch/img.sif" true 2>&1
ok "singularity:IMAGE runs the stand-in singularity" \
    test "$(argv_of singularity.0)" = "$stand_in/singularity|exec|--pwd|$scratch|$scratch/img.sif|true|"

run_step -n1 --aihpc-container="$scratch/img.sqsh" echo hi 2>&1
a=$(argv_of enroot.0)
if [[ $a == "$stand_in/enroot|start|"* && $a == *"|--env|MARK|"* && $a == *"|$scratch/img.sqsh|echo|hi|" && $a != *"|--env|PATH|"* ]]; then
    pass "a .sqsh image runs the stand-in 'enroot start' with the job's variables passed by name"
else
    fail "a .sqsh image runs the stand-in 'enroot start' with the job's variables passed by name" "$a"
fi

run_step -n1 --aihpc-container="podman:$scratch/rootfs" --aihpc-container-bind="$scratch:/work:ro" id -u 2>&1
a=$(argv_of podman.0)
if [[ $a == "$stand_in/podman|run|--rm|--interactive|--network=host|--userns=keep-id|"* && $a == *"|--volume|$scratch:/work:ro|"* &&
      $a == *"|--env|MARK|"* && $a == *"|--rootfs|$scratch/rootfs|id|-u|" ]]; then
    pass "podman:DIR runs the stand-in 'podman run --rootfs DIR' with the user's bind"
else
    fail "podman:DIR runs the stand-in 'podman run --rootfs DIR' with the user's bind" "$a"
fi

# With staging, the node's local_root (jobs/ and cache/) is bound at its own path, so
# the stage variables keep their host paths and a cached item's relative link into
# cache/ resolves inside.
mkdir -p "$scratch/data" && echo x >"$scratch/data/f" && chown -R "$test_user" "$scratch/data"
root_template=$(sed -n 's/^required [^ ]*aihpc\.so.* local_root=\([^ ]*\).*$/\1/p' "$original")
root_template=${root_template:-/tmp/aihpc}
binds_bad=() env_bad=()
# staged_step PROGRAM IMAGE BIND-WORDS: one staged task; %R in BIND-WORDS is local_root.
staged_step() {
    local program=$1 image=$2 words=$3 env_file node jid root want a
    env_file=$log/$program.0.env
    rm -f "$log/$program.0.argv" "$env_file"
    run_step -n1 --aihpc-stage="$scratch/data" --aihpc-container="$image" true 2>&1
    node=$(sed -n 's/^SLURMD_NODENAME=//p' "$env_file" 2>/dev/null)
    jid=$(sed -n 's/^SLURM_JOB_ID=//p' "$env_file" 2>/dev/null)
    root=${root_template//%n/$node}
    want=${words//%R/$root}
    a=$(argv_of "$program.0" 2>/dev/null)
    [ -n "$node" ] && [[ $a == *"|$want|"* ]] && [[ $a != *"|$root/jobs/"* ]] || binds_bad+=("$program: $a (wanted |$want|)")
    grep -qx "AIHPC_STAGE_DIR=$root/jobs/$jid" "$env_file" 2>/dev/null &&
        grep -qx "AIHPC_DATA_DATA=$root/jobs/$jid/data" "$env_file" || env_bad+=("$program: $(grep '^AIHPC_[SD]' "$env_file" 2>&1)")
}
staged_step apptainer "$scratch/img.sif" "--bind|%R:%R"
staged_step singularity "singularity:$scratch/img.sif" "--bind|%R:%R"
staged_step enroot "$scratch/img.sqsh" "--mount|%R:%R:x-create=auto,rbind"
staged_step podman "podman:$scratch/rootfs" "--volume|%R:%R"
if [ ${#binds_bad[@]} -eq 0 ]; then
    pass "with --aihpc-stage, apptainer, singularity, enroot and podman bind the node's local_root at its own path"
else
    fail "with --aihpc-stage, apptainer, singularity, enroot and podman bind the node's local_root at its own path" "${binds_bad[@]}"
fi
if [ ${#env_bad[@]} -eq 0 ]; then
    pass "the stand-in runtimes get AIHPC_STAGE_DIR and AIHPC_DATA_* at their host paths (LOCAL_ROOT/jobs/JOBID/NAME)"
else
    fail "the stand-in runtimes get AIHPC_STAGE_DIR and AIHPC_DATA_* at their host paths (LOCAL_ROOT/jobs/JOBID/NAME)" "${env_bad[@]}"
fi

as_user env STAND_IN_LOG="$log" STAND_IN_EXIT=7 srun -Q -n1 --aihpc-container="$scratch/img.sif" true 2>/dev/null
ok "the runtime's exit status is the task's (7)" test $? = 7

cat >"$scratch/job.sh" <<'SCRIPT'
#!/bin/sh
true
SCRIPT
chmod 0755 "$scratch/job.sh"
jid=$(as_user env STAND_IN_LOG="$log" sbatch --parsable -o /dev/null --aihpc-container="$scratch/img.sif" "$scratch/job.sh")
wait_job_status "$jid" >/dev/null
a=$(argv_of apptainer.0)
if [[ $a =~ \|--bind\|(/[^|]*):([^|]*):ro\| ]] && [ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[2]}" ] &&
    [[ $a == *"|$scratch/img.sif|${BASH_REMATCH[1]}/slurm_script|" ]]; then
    pass "with scope all the batch script in slurmd's spool is bound read-only at its own path and run"
else
    fail "with scope all the batch script in slurmd's spool is bound read-only at its own path and run" "$a"
fi

# The node's digest cache: two steps of one job on one node hash an unchanged image
# once; the first step says it computed the digest, the second that it came from the
# cache. The job then rewrites the image, and its next step computes a new digest. An
# image whose ctime is under two seconds old is not cached, so the test waits for that.
while [ $(($(date +%s) - $(stat -c %Z "$scratch/cached.sif"))) -lt 3 ]; do sleep 1; done
cat >"$scratch/digest-job.sh" <<'SCRIPT'
#!/bin/sh
log=$1 image=$2
for step in 1 2 3; do
    [ $step = 3 ] && head -c 300000 /dev/urandom >"$image"
    rm -f "$log/apptainer.0.env"
    srun -Q -n1 --aihpc-verbose --aihpc-container="$image" true 2>"$log/digest-step$step.err"
    cp "$log/apptainer.0.env" "$log/digest-step$step.env"
done
SCRIPT
chmod 0755 "$scratch/digest-job.sh"
sbatch_wait -N1 -o "$log/digest-job.out" --export=ALL,STAND_IN_LOG="$log" "$scratch/digest-job.sh" "$log" "$scratch/cached.sif" >/dev/null
digest_of() { sed -n 's/^AIHPC_CONTAINER_DIGEST=//p' "$log/digest-step$1.env" 2>/dev/null; }
note_of() { grep -h 'container: apptainer' "$log/digest-step$1.err" 2>/dev/null; }
d1=$(digest_of 1) d2=$(digest_of 2) d3=$(digest_of 3)
if [[ $(note_of 1) == *"$d1 (digest computed, stored in the node's digest cache "*"/cache/"*"/digests)" && -n $d1 ]]; then
    pass "the first step of a job computes the image's digest and stores it in the node's digest cache"
else
    fail "the first step of a job computes the image's digest and stores it in the node's digest cache" "$(note_of 1)" "$(cat "$log/digest-job.out" 2>&1)"
fi
if [[ $(note_of 2) == *"$d2 (digest from the node's digest cache "* ]] && [ -n "$d1" ] && [ "$d1" = "$d2" ]; then
    pass "the job's second step takes the unchanged image's digest from the node's digest cache, the same AIHPC_CONTAINER_DIGEST"
else
    fail "the job's second step takes the unchanged image's digest from the node's digest cache, the same AIHPC_CONTAINER_DIGEST" \
        "step 1: $d1, step 2: $d2" "$(note_of 2)"
fi
if [[ $(note_of 3) == *"$d3 (digest computed"* ]] && [[ $d3 == xxh3:* ]] && [ "$d3" != "$d1" ]; then
    pass "after the image is rewritten the next step computes a new digest"
else
    fail "after the image is rewritten the next step computes a new digest" "before: $d1, after: $d3" "$(note_of 3)"
fi

# podman runs a directory image with --rootfs and writes the user's passwd entry into it,
# so the image belongs to the user. Whether rootless podman works on this machine at all
# (user namespaces, cgroups, OCI runtime) is probed first, by hand, without aihpc.
podman_probe=""
if command -v podman >/dev/null; then
    "$tree/contrib/examples/container-image.sh" "$scratch/user-image" >/dev/null
    chown -R "$test_user" "$scratch/user-image"
    podman_probe=$(cd /tmp && as_user podman run --rm --userns=keep-id --rootfs "$scratch/user-image" cat /etc/aihpc-image 2>&1)
fi
if ! command -v podman >/dev/null; then
    skip "a real rootless podman runs a task" "podman is not installed (Debian 12 has it: apt-get install podman uidmap)"
elif [ "$podman_probe" != "aihpc busybox image" ]; then
    skip "a real rootless podman runs a task" "rootless podman does not run on this machine even by hand: $(tail -1 <<<"$podman_probe")"
else
    # The real podman from slurmd's PATH: the stand-ins leave runtime_path first.
    cp "$original" "$plugstack.aihpc-tmp" && mv -f "$plugstack.aihpc-tmp" "$plugstack"
    out=$(as_user srun -Q -n1 --chdir="$scratch" --aihpc-container="podman:$scratch/user-image" cat /etc/aihpc-image 2>&1)
    ok "a real rootless podman runs a task in a directory image ($out)" test "$out" = "aihpc busybox image"
fi
finish
