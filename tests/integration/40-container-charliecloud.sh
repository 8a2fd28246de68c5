#!/usr/bin/env bash
# Containers with a real charliecloud image (a busybox directory): the batch script
# inside (scope all) or on the host (scope steps), srun steps inside, exit codes,
# output files, the image variables, staged data, and a runtime missing on the node.
# Run as root on a machine with the mini-cluster up; jobs run as the test user.
. "$(dirname "$0")/lib.sh"
command -v ch-run >/dev/null || skip_all "needs ch-run (charliecloud-runtime)"
here=$top_builddir/tests/integration
tree=$top_builddir

plan 12
scratch=$(mktemp -d /tmp/aihpc-it-container.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
chmod 0755 "$scratch"
chown "$test_user" "$scratch"
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
echo "staged content" >"$scratch/input.txt"
chmod 0644 "$scratch/input.txt"
probe=$(as_user srun -Q -n1 --aihpc-stage="$scratch/input.txt" sh -c 'echo "${AIHPC_STAGE_DIR:-}"' 2>&1)
if [ -z "$probe" ]; then
    skip "staged data is visible inside at \$AIHPC_STAGE_DIR" "staging sets no AIHPC_STAGE_DIR in this build yet"
else
    out=$(as_user srun -Q -n1 --aihpc-stage="$scratch/input.txt" --aihpc-container="$img" \
        sh -c 'echo "dir=$AIHPC_STAGE_DIR"; cat "$AIHPC_STAGE_DIR/input.txt"' 2>&1)
    if grep -qx 'staged content' <<<"$out" && grep -q '^dir=/' <<<"$out"; then
        pass "staged data is visible inside at \$AIHPC_STAGE_DIR"
    else
        fail "staged data is visible inside at \$AIHPC_STAGE_DIR" "$out"
    fi
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
