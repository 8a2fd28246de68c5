#!/usr/bin/env bash
# squashfs datasets: an image packed with aihpc-stage pack and staged with
# --aihpc-stage=IMAGE.sqsh:NAME is one file in the node cache, mounted read-only with
# squashfuse, as the job's user, at $AIHPC_STAGE_DIR/NAME. Every file reads as in the
# tree, every step of the job sees it, a charliecloud container sees it, and nothing
# stays mounted (and no squashfuse runs) once the job ended, after a cancel, or after a
# kill -9 of the step's processes. A truncated image is refused at submit time, an
# image holding a device or a setuid file at stage time, with nothing mounted.
. "$(dirname "$0")/lib.sh"
command -v squashfuse_ll >/dev/null && command -v mksquashfs >/dev/null ||
    skip_all "needs squashfuse and squashfs-tools (contrib/deps)"
[ -c /dev/fuse ] || skip_all "needs /dev/fuse"
plan 13
work=$(user_scratch)
cd "$work" || exit 1
local_root_n1=${AIHPC_LOCAL_ROOT//%n/n1}
local_root_n2=${AIHPC_LOCAL_ROOT//%n/n2}

# mounts_left: the mounts below either node's local_root, one per line.
mounts_left() { awk -v a="$local_root_n1/" -v b="$local_root_n2/" 'index($5, a) == 1 || index($5, b) == 1 {print $5}' /proc/self/mountinfo; }
nothing_left() {
    local i
    for i in $(seq 50); do
        [ -z "$(mounts_left)" ] && [ -z "$(live_pids "$test_user" squashfuse)" ] && return 0
        sleep 0.2
    done
    echo "# still mounted: $(mounts_left | tr '\n' ' '); squashfuse: $(live_pids "$test_user" squashfuse | tr '\n' ' ')"
    return 1
}

as_user python3 "$top_builddir/bench/stage/make_tree.py" "$work/tree" 3000 >/dev/null
as_user ln -s d000/f00000.bin "$work/tree/first"
as_user bash -c "cd '$work/tree' && find . -type f | sort | xargs sha1sum" >expected.sums
as_user "$top_builddir/tools/aihpc-stage" pack "$work/tree" "$work/set.sqsh" >/dev/null
ok "aihpc-stage pack makes the image as the user" test -s "$work/set.sqsh"

cat >sums.sh <<'JOB'
#!/bin/bash
d=$AIHPC_STAGE_DIR/set
[ "$AIHPC_DATA_SET" = "$d" ] || echo "AIHPC_DATA_SET=$AIHPC_DATA_SET, not $d"
stat -f -c %T "$d"
# Named by the caller: newer Slurm sets SLURM_STEP_ID in the batch script too.
(cd "$d" && find . -type f | sort | xargs sha1sum) >"$SLURM_SUBMIT_DIR/seen.$SLURM_JOB_ID.${1:-batch}"
readlink "$d/first" >"$SLURM_SUBMIT_DIR/link.$SLURM_JOB_ID"
touch "$d/new" 2>/dev/null && echo "the mount took a write"
exit 0
JOB
chmod 0755 sums.sh

id=$(as_user sbatch --parsable -w n1 -o one.out --aihpc-verbose --aihpc-stage="$work/set.sqsh:set" sums.sh)
state=$(wait_job "$id" 300)
ok "a job staging the image completes, the mount read-only" \
    bash -c "[ '$state' = COMPLETED ] && grep -q '^fuse' one.out && ! grep -q 'took a write\|, not /' one.out"
ok "every file of the mounted image reads as in the tree, the symlink too" \
    bash -c "cmp expected.sums seen.$id.batch && [ \"\$(cat link.$id)\" = d000/f00000.bin ]"
ok "the verbose log says the image was staged, then mounted with squashfuse" \
    bash -c "grep -q 'stage-in set: miss, 1 files' one.out && grep -q 'stage-in set: mounted with squashfuse at ' one.out"
ok "nothing stays mounted after the job, and no squashfuse runs" nothing_left

# Steps: the batch step mounts it, two srun steps use it after one another.
cat >steps.sh <<'JOB'
#!/bin/bash
srun -n1 ./sums.sh 0
srun -n1 ./sums.sh 1
JOB
id=$(as_user sbatch --parsable -w n1 -o steps.out --aihpc-stage="$work/set.sqsh:set" steps.sh)
state=$(wait_job "$id" 300)
ok "every step of a job sees the same mounted image" \
    bash -c "[ '$state' = COMPLETED ] && cmp expected.sums seen.$id.0 && cmp expected.sums seen.$id.1"

# Two nodes: each mounts its own copy.
id=$(as_user sbatch --parsable -N2 -w n1,n2 -o two.out --aihpc-stage="$work/set.sqsh:set" --wrap 'srun -N2 -n2 ./sums.sh 0')
state=$(wait_job "$id" 300)
ok "a two-node job reads the image on both nodes" \
    bash -c "[ '$state' = COMPLETED ] && cmp expected.sums seen.$id.0 && [ \$(grep -c . two.out) -ge 2 ]"
ok "after the two-node job nothing stays mounted on either node" nothing_left

# A cancel and a kill -9 of the step while the data is in use.
cat >hold.sh <<'JOB'
#!/bin/bash
cat "$AIHPC_STAGE_DIR/set/first" >/dev/null && touch "$SLURM_SUBMIT_DIR/holding.$SLURM_JOB_ID"
exec sleep 300
JOB
chmod 0755 hold.sh
id=$(as_user sbatch --parsable -w n1 -o hold.out --aihpc-stage="$work/set.sqsh:set" hold.sh)
for i in $(seq 300); do [ -e "holding.$id" ] && break; sleep 0.2; done
scancel "$id"
wait_job "$id" 120 >/dev/null
held_then_nothing_left() { [ -e "holding.$1" ] && nothing_left; }
ok "a cancelled job leaves nothing mounted" held_then_nothing_left "$id"

id=$(as_user sbatch --parsable -w n2 -o kill.out --aihpc-stage="$work/set.sqsh:set" --wrap "srun ./hold.sh")
for i in $(seq 300); do [ -e "holding.$id" ] && break; sleep 0.2; done
kill_job_processes "$id"
wait_job "$id" 120 >/dev/null
ok "a job whose step was killed with SIGKILL leaves nothing mounted" held_then_nothing_left "$id"

# Bad images.
as_user bash -c "head -c 40000 '$work/set.sqsh' >'$work/cut.sqsh'"
submit_cut() {
    ! as_user sbatch --parsable -w n1 --aihpc-stage="$work/cut.sqsh:set" sums.sh >cut.out 2>&1 &&
        grep -q 'aihpc: .*cut.sqsh is truncated' cut.out
}
ok "a truncated image is refused at submit time, saying so" submit_cut

as_user mkdir -p "$work/badtree"
as_user bash -c "echo x >'$work/badtree/a'"
mksquashfs "$work/badtree" "$work/dev.sqsh" -quiet -no-progress -p 'null c 644 0 0 1 3' >/dev/null
chown "$test_user" "$work/dev.sqsh"
id=$(as_user sbatch --parsable -w n1 -o dev.out --aihpc-stage="$work/dev.sqsh:set" sums.sh)
state=$(wait_job "$id" 300)
ok "an image holding a device node fails the job with a message, nothing mounted" \
    bash -c "[ '$state' != COMPLETED ] && grep -q 'aihpc: .*/null is a device node' dev.out && [ ! -e seen.$id.batch ] && [ -z \"\$(awk -v a='$local_root_n1/' 'index(\$5, a) == 1' /proc/self/mountinfo)\" ]"

# Inside a charliecloud container: bound like any staged item.
if command -v ch-run >/dev/null && "$top_builddir/contrib/examples/container-image.sh" "$work/busybox" >/dev/null; then
    chown -R "$test_user" "$work/busybox"
    cat >inside.sh <<'JOB'
#!/bin/sh
cat /etc/aihpc-image
cat "$AIHPC_DATA_SET/d000/f00000.bin" | md5sum
JOB
    chmod 0755 inside.sh
    id=$(as_user sbatch --parsable -w n1 -o inside.out --aihpc-container="$work/busybox" \
        --aihpc-stage="$work/set.sqsh:set" inside.sh)
    state=$(wait_job "$id" 300)
    want=$(md5sum <"$work/tree/d000/f00000.bin")
    ok "a charliecloud container reads the mounted image" \
        bash -c "[ '$state' = COMPLETED ] && grep -q '^aihpc busybox image' inside.out && grep -qF '$want' inside.out"
else
    fail "a charliecloud container reads the mounted image" "ch-run or the busybox image is missing"
fi
finish
