#!/usr/bin/env bash
# A user mounts a FUSE file system of their own over their cache's lock files, so that the
# lease slurmstepd would hold for the step is a descriptor on FUSE: closing it at the
# step's end would wait on the user's daemon. The stage-in helper refuses to hand over a
# lease that is not on local_root's own file system; the job fails with a message, and
# the node stays up.
. "$(dirname "$0")/lib.sh"
# The user's own node cache is what this test is about: its sources would otherwise go to
# the node's shared cache, being world-readable (24-stage-shared.sh tests that one).
export AIHPC_STAGE_MODE=user
command -v fusermount3 >/dev/null && [ -c /dev/fuse ] || skip_all "needs FUSE (apt-get install fuse3) and /dev/fuse"
command -v bindfs >/dev/null || skip_all "needs bindfs (a FUSE file system a user can mount; contrib/deps installs it)"
plan 5
work=$(scratch)
cd "$work"
uid=$(id -u "$test_user")
local_root_n1=${AIHPC_LOCAL_ROOT//%n/n1}
locks=$local_root_n1/cache/$uid/locks
# Root cannot look into a user's FUSE mount: /proc/mounts tells whether it is there.
mounted() { awk -v p="$locks" '$2 == p' /proc/mounts | grep -q .; }
unmount() { if mounted; then umount -l "$locks"; fi; }
# On a node users may mount FUSE (/dev/fuse 0666, as Debian ships it); a container that
# runs this suite may have narrowed it to root, so it is opened up for the test. bindfs
# is a writable FUSE file system from Debian that any user can mount.
fuse_mode=$(stat -c %a /dev/fuse)
chmod 0666 /dev/fuse
trap 'unmount; chmod "$fuse_mode" /dev/fuse; restore_site_keys; remove_scratch' EXIT

mkdir -p data && echo "payload" >data/f && chmod -R a+rX data
# A first stage makes the entry and its lock file, on the real file system.
as_user srun -w n1 --aihpc-stage="$work/data:data" true
# The user mirrors the lock files into a directory of their own and mounts it over locks/.
as_user mkdir "$work/mirror"
as_user cp -a "$locks/." "$work/mirror/"
# bindfs on FUSE 3 mounts over a directory that holds files; on FUSE 2 it is asked to.
as_user bindfs --no-allow-other "$work/mirror" "$locks" 2>/dev/null ||
    as_user bindfs --no-allow-other -o nonempty "$work/mirror" "$locks"
ok "the user's FUSE mount covers their cache's lock files" mounted

as_user srun -w n1 --aihpc-stage="$work/data:data" true >out 2>&1
status=$?
ok "the job fails (srun exit $status)" test $status -ne 0
ok "the message says a lease lies on another file system, and what to do" \
    grep -q "aihpc: .*a cache lease of this job lies on another file system than .*unmount it" out
unmount
ok "no aihpc-node is left behind" test -z "$(live_pids "$test_user" aihpc-node)"
ok "the node is idle and takes the same stage once the mount is gone" \
    bash -c "[ \"\$(sinfo -h -n n1 -o %t)\" = idle ] && runuser -u $test_user -- env SLURM_CONF=$SLURM_CONF srun -w n1 --aihpc-stage='$work/data:data' true"
finish
