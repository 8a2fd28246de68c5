#!/usr/bin/env bash
# Containers with a real charliecloud image (a busybox directory): the batch script
# inside (scope all) or on the host (scope steps), srun steps inside, exit codes,
# output files, the image variables, staged data (cache and private modes, both scopes,
# with other users' dirs unreadable), and a runtime missing on the node.
# Run as root on a machine with the mini-cluster up; jobs run as the test user.
. "$(dirname "$0")/lib.sh"
command -v ch-run >/dev/null || skip_all "needs ch-run (charliecloud-runtime)"
here=$top_builddir/tests/integration
tree=$top_builddir

plan 18
scratch=$(user_scratch)
cd "$scratch" || exit 1
img=$scratch/busybox
if "$tree/contrib/examples/container-image.sh" "$img" >/dev/null && [ -x "$img/bin/sh" ]; then
    pass "the example script builds a busybox directory image"
else
    fail "the example script builds a busybox directory image"
fi
[ -e /etc/aihpc-image ] && echo "# warning: the host has /etc/aihpc-image; the inside/outside checks are void"

# ---- scope all: the batch script itself runs inside
cat >"$scratch/all.sh" <<'SCRIPT'
#!/bin/sh
echo "marker=$(cat /etc/aihpc-image)"
echo "script=$0"
echo "image=$AIHPC_CONTAINER_IMAGE"
echo "digest=$AIHPC_CONTAINER_DIGEST"
echo "this goes to stderr" >&2
exit 3
SCRIPT
chmod 0755 "$scratch/all.sh"
jid=$(as_user sbatch --parsable -o "$scratch/all.out" -e "$scratch/all.err" --aihpc-container="$img" "$scratch/all.sh")
result=$(wait_job_status "$jid")
if grep -q '^marker=aihpc busybox image$' "$scratch/all.out" 2>/dev/null && ! grep -q "script=$scratch" "$scratch/all.out"; then
    pass "with scope all the batch script runs inside the image"
else
    fail "with scope all the batch script runs inside the image" "$(cat "$scratch/all.out" "$scratch/all.err" 2>&1)"
fi
ok "the batch script's exit status 3 is the job's (FAILED 3:0)" test "$result" = "FAILED 3:0"
ok "stderr of the containerized script reaches the job's -e file" grep -qx 'this goes to stderr' "$scratch/all.err"
ok "AIHPC_CONTAINER_IMAGE and AIHPC_CONTAINER_DIGEST (xxh3) reach the task" \
    sh -c "grep -qx 'image=$img' '$scratch/all.out' && grep -Eqx 'digest=xxh3:[0-9a-f]{16}' '$scratch/all.out'"

# ---- scope steps: the batch script on the host, its srun steps inside
cat >"$scratch/steps.sh" <<'SCRIPT'
#!/bin/sh
if [ -e /etc/aihpc-image ]; then echo "batch=inside"; else echo "batch=host"; fi
echo "batch_ns=$(readlink /proc/self/ns/mnt)"
srun -Q -n2 sh -c 'echo "task$SLURM_PROCID=$(cat /etc/aihpc-image) ns=$(readlink /proc/self/ns/mnt)"'
srun -Q -n1 sh -c 'exit 5'
echo "step_status=$?"
SCRIPT
chmod 0755 "$scratch/steps.sh"
jid=$(as_user sbatch --parsable -n2 -o "$scratch/steps.out" --aihpc-container="$img" --aihpc-container-scope=steps "$scratch/steps.sh")
result=$(wait_job_status "$jid")
ok "with scope steps the batch script runs on the host" grep -qx 'batch=host' "$scratch/steps.out"
batch_ns=$(sed -n 's/^batch_ns=//p' "$scratch/steps.out")
inside=$(grep -c "^task[01]=aihpc busybox image ns=" "$scratch/steps.out")
other_ns=$(grep "^task[01]=" "$scratch/steps.out" | grep -vc "ns=$batch_ns\$")
if [ "$inside" = 2 ] && [ "$other_ns" = 2 ] && [ -n "$batch_ns" ]; then
    pass "both tasks of srun -Q -n2 in a scope-steps job run inside, in a mount namespace of their own"
else
    fail "both tasks of srun -Q -n2 in a scope-steps job run inside, in a mount namespace of their own" "$(cat "$scratch/steps.out")"
fi
ok "a containerized step's exit status 5 reaches the batch script" grep -qx 'step_status=5' "$scratch/steps.out"

# ---- srun on its own, across both nodes
out=$(cd "$scratch" && as_user srun -Q -N2 -n2 --aihpc-container="$img" sh -c 'echo "$SLURMD_NODENAME $(cat /etc/aihpc-image)"' 2>&1)
ok "srun -Q -N2 -n2 runs each task inside the image on both nodes" \
    test "$(sort <<<"$out" | tr '\n' ';')" = "n1 aihpc busybox image;n2 aihpc busybox image;"
as_user srun -Q -n1 --aihpc-container="$img" sh -c 'exit 4' 2>/dev/null
ok "srun returns the containerized task's exit status" test $? = 4

# ---- staged data inside the container
# The image lacks the node's local_root, so it is bound at /mnt/aihpc, and the stage
# variables name the paths there. A cached item is a relative link from
# jobs/<jobid>/NAME to ../../cache/<uid>/... (or, the dataset being world-readable, to
# ../../shared/..., the node's shared cache), which resolves inside only because the
# whole local_root is bound.
echo "staged content" >"$scratch/input.txt"
mkdir -p "$scratch/dataset/sub"
echo "dataset content" >"$scratch/dataset/sub/sample.txt"
chmod -R a+rX "$scratch/input.txt" "$scratch/dataset"
out=$(as_user srun -Q -n1 --aihpc-stage="$scratch/input.txt" --aihpc-container="$img" \
    sh -c 'echo "dir=$AIHPC_STAGE_DIR"; cat "$AIHPC_STAGE_DIR/input.txt"' 2>&1)
if grep -qx 'staged content' <<<"$out" && grep -Eqx 'dir=/mnt/aihpc/jobs/[0-9]+' <<<"$out"; then
    pass "staged data is visible inside at \$AIHPC_STAGE_DIR (/mnt/aihpc/jobs/JOBID)"
else
    fail "staged data is visible inside at \$AIHPC_STAGE_DIR (/mnt/aihpc/jobs/JOBID)" "$out"
fi

# What a task reports about the staged dir, from inside the image.
cat >"$scratch/report-stage.sh" <<'SCRIPT'
#!/bin/sh
echo "marker=$(cat /etc/aihpc-image 2>/dev/null)"
echo "dir=$AIHPC_STAGE_DIR"
echo "data=$AIHPC_DATA_DATASET"
echo "link=$(readlink "$AIHPC_DATA_DATASET")"
echo "via_data=$(cat "$AIHPC_DATA_DATASET/sub/sample.txt")"
echo "via_dir=$(cat "$AIHPC_STAGE_DIR/dataset/sub/sample.txt")"
SCRIPT
cat >"$scratch/stage-steps.sh" <<SCRIPT
#!/bin/sh
srun -Q -n1 $scratch/report-stage.sh
SCRIPT
chmod 0755 "$scratch/report-stage.sh" "$scratch/stage-steps.sh"
declare -A stage_jobs
for mode in cache private; do
    stage_jobs[$mode.all]=$(as_user sbatch --parsable -o "$scratch/stage-$mode-all.out" --aihpc-stage="$scratch/dataset" \
        --aihpc-stage-mode=$mode --aihpc-container="$img" "$scratch/report-stage.sh")
    stage_jobs[$mode.steps]=$(as_user sbatch --parsable -o "$scratch/stage-$mode-steps.out" --aihpc-stage="$scratch/dataset" \
        --aihpc-stage-mode=$mode --aihpc-container="$img" --aihpc-container-scope=steps "$scratch/stage-steps.sh")
done
for mode in cache private; do
    for scope in all steps; do
        jid=${stage_jobs[$mode.$scope]}
        result=$(wait_job_status "$jid")
        f=$scratch/stage-$mode-$scope.out
        if [ "$mode" = cache ]; then link_ok='^link=\.\./\.\./(cache/[0-9]+|shared/entries)/'; else link_ok='^link=$'; fi
        description="mode $mode, scope $scope: the staged dir is read inside through \$AIHPC_DATA_DATASET"
        if [ "$result" = "COMPLETED 0:0" ] && grep -qx 'marker=aihpc busybox image' "$f" &&
            grep -qx "dir=/mnt/aihpc/jobs/$jid" "$f" && grep -qx "data=/mnt/aihpc/jobs/$jid/dataset" "$f" &&
            grep -Eq "$link_ok" "$f" && grep -qx 'via_data=dataset content' "$f" && grep -qx 'via_dir=dataset content' "$f"; then
            pass "$description"
        else
            fail "$description" "job $jid: $result" "$(cat "$f" 2>&1)"
        fi
    done
done

# Another user's node cache on the same node: present below the bound local_root, and
# unreadable, as its 0700 mode says, since the container runs as the job's user.
other_uid=$(id -u "$other_user")
as_other_user srun -Q -w n1 -n1 --chdir=/ --aihpc-stage="$scratch/dataset" true >/dev/null 2>&1
out=$(as_user srun -Q -w n1 -n1 --aihpc-stage="$scratch/dataset" --aihpc-container="$img" sh -c '
    cache=$AIHPC_STAGE_DIR/../../cache
    if [ -d "$cache/'"$other_uid"'" ]; then echo "other=present"; fi
    if ls "$cache/'"$other_uid"'" >/dev/null 2>&1; then echo "other=listable"; fi
    if ls "$cache/$(id -u)" >/dev/null 2>&1; then echo "own=listable"; fi
    if ls "$AIHPC_STAGE_DIR/.." >/dev/null 2>&1; then echo "jobs=listable"; fi
    if ls "$cache" >/dev/null 2>&1; then echo "cache=listable"; fi' 2>&1)
if grep -qx 'other=present' <<<"$out" && ! grep -q 'other=listable' <<<"$out" && grep -qx 'own=listable' <<<"$out"; then
    pass "inside, the user's own node cache is readable and another user's is not"
else
    fail "inside, the user's own node cache is readable and another user's is not" "other uid $other_uid" "$out"
fi
if [ -n "$out" ] && ! grep -Eq '^(jobs|cache)=listable$' <<<"$out"; then
    pass "inside, the root-owned jobs/ and cache/ (0711) cannot be listed"
else
    fail "inside, the root-owned jobs/ and cache/ (0711) cannot be listed" "$out"
fi

# ---- a runtime the node lacks fails the step, naming it
if command -v apptainer >/dev/null; then
    skip "a runtime missing on the node fails the step with a message naming it" "apptainer is installed here"
else
    : >"$scratch/empty.sif"
    chmod 0644 "$scratch/empty.sif"
    out=$(as_user srun -Q -n1 --aihpc-container="$scratch/empty.sif" true 2>&1)
    rc=$?
    if [ $rc -ne 0 ] && grep -q 'aihpc: --aihpc-container: the container runtime apptainer .* is not installed on node' <<<"$out"; then
        pass "a runtime missing on the node fails the step with a message naming it"
    else
        fail "a runtime missing on the node fails the step with a message naming it" "rc=$rc" "$out"
    fi
fi
finish
