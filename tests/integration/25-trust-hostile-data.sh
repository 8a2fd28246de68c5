#!/usr/bin/env bash
# Hostile data and a hostile local_root, each with the outcome it must have: the job works
# or fails with an aihpc: message that says what was refused, nothing is left in the
# cache's temporaries, another user's job on the node still works, and the node is idle
# again (never drained).
#   - an archive rewritten in place during its extraction, same size and mtime put back,
#     is never published as a mix of two versions;
#   - an archive holding a mode-000 or a no-x directory is staged by its user, as GNU tar
#     extracts it;
#   - an mtime after 2262-04-11 is kept, in a tree and in an archive;
#   - a root-owned sticky 1777 directory as local_root itself is refused;
#   - an archive of many empty files is refused at the cache_user_inodes cap;
#   - a 4,096-deep tree and a flat directory of many names left in trash/ are removed over
#     successive prepares, each of which stays quick.
. "$(dirname "$0")/lib.sh"
plan 30
work=$(scratch)
cd "$work"
local_root_n1=${AIHPC_LOCAL_ROOT//%n/n1}
uid=$(id -u "$test_user")
entries=$local_root_n1/cache/$uid/entries

# no_cache_temporaries DIR: no unpublished entry (.tmp.KEY.*) is left in a cache's entries.
no_cache_temporaries() { [ -z "$(find "$1" -maxdepth 1 -name '.tmp.*' 2>/dev/null)" ]; }
# names_no_temporary FILE: the output names none of aihpc's internal temporaries.
names_no_temporary() { ! grep -Eq '\.tmp\.|\.aihpc-tmp\.|\.aihpc-link\.' "$1"; }

mkdir -p small && echo x >small/f && chmod -R a+rX small
printf '#!/bin/bash\necho "task ran"\n' >job.sh && chmod 0755 job.sh

# ---- 13. An archive rewritten in place while it is extracted. Two tar files with the
# same names, sizes and headers, one of A's and one of B's: any mix of them is a valid
# tar. The user rewrites their archive from one to the other, again and again, putting its
# mtime back each time, for as long as the stage runs.
python3 -c '
import os
for v in "ab":
    os.makedirs(v + "/d")
    for i in range(300):
        with open("%s/d/f%03d" % (v, i), "wb") as f: f.write(v.upper().encode() * 131072)
'
tar_opts=(--format=gnu --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner)
tar -C a "${tar_opts[@]}" -cf a.tar d && tar -C b "${tar_opts[@]}" -cf b.tar d && rm -rf a b
cp a.tar torn.tar && chown "$test_user" torn.tar && chmod 0644 a.tar b.tar torn.tar
mtime=$(stat -c %Y torn.tar)
cat >rewriter.sh <<EOF
#!/bin/bash
while [ ! -e "$work/stop" ]; do
    for v in b a; do
        dd if="$work/\$v.tar" of="$work/torn.tar" bs=1M conv=notrunc status=none
        touch -d @$mtime "$work/torn.tar"
    done
done
EOF
head -c 131072 /dev/zero | tr '\0' A >all-a && head -c 131072 /dev/zero | tr '\0' B >all-b
cat >count-versions.sh <<EOF
#!/bin/bash
# How many of the staged files are wholly A's, and how many wholly B's.
a=0 b=0
for f in "\$AIHPC_STAGE_DIR"/torn/d/*; do
    if cmp -s "\$f" "$work/all-a"; then a=\$((a + 1)); elif cmp -s "\$f" "$work/all-b"; then b=\$((b + 1)); fi
done
echo "versions A=\$a B=\$b"
EOF
chmod 0755 rewriter.sh count-versions.sh
as_user ./rewriter.sh &
rewriter=$!
# Either refused, saying why, or one whole version: never exit 0 with a mix.
for mode in cache private; do
    id=$(as_user sbatch --parsable -w n1 -o "torn-$mode.out" --aihpc-stage-mode=$mode \
        --aihpc-stage="$work/torn.tar:torn" count-versions.sh)
    state=$([ -n "$id" ] && wait_job_status "$id" 60)
    if [ "${state%% *}" = FAILED ]; then
        ok "a $mode-mode stage of an archive rewritten during its extraction fails, saying it changed (state $state)" \
            grep -q "aihpc: .*torn.tar changed while it was being extracted" "torn-$mode.out"
    else
        ok "a $mode-mode stage of an archive rewritten during its extraction is one whole version (state $state)" \
            bash -c "grep -Eq '^versions (A=300 B=0|A=0 B=300)\$' torn-$mode.out || { cat torn-$mode.out; exit 1; }"
    fi
done
touch stop
wait "$rewriter"
ok "no unpublished copy of the torn archive is left in the cache" no_cache_temporaries "$entries"
ok "the node is idle again" wait_nodes_idle 30

# ---- 15. An archive with a mode-000 and a no-x directory, staged by its user. GNU tar
# as the user extracts it, setting directory modes after the contents; so must the stage.
mkdir -p locked-src/locked locked-src/nox
echo secret >locked-src/locked/file
echo plain >locked-src/nox/file
chmod 0000 locked-src/locked
chmod 0644 locked-src/nox
tar -C locked-src --format=gnu -cf locked.tar . && chmod 0644 locked.tar
chmod -R u+rwx locked-src
mkdir gnu-tar && chown "$test_user" gnu-tar
ok "GNU tar as the user extracts the archive" as_user tar -C "$work/gnu-tar" -xf "$work/locked.tar"
cat >modes.sh <<'EOF'
#!/bin/bash
stat -c 'mode %n %a' "$AIHPC_STAGE_DIR"/locked/locked "$AIHPC_STAGE_DIR"/locked/nox
EOF
chmod 0755 modes.sh
# A private copy keeps the archive's modes; the cache's shared copy is read-only, its
# directories 0555 whatever the archive says, so the job can read what is inside them.
id=$(as_user sbatch --parsable -w n1 -o locked-private.out --aihpc-stage-mode=private \
    --aihpc-stage="$work/locked.tar:locked" modes.sh)
state=$([ -n "$id" ] && wait_job_status "$id" 60)
ok "a private-mode stage of the archive keeps its mode-000 and no-x directories (state $state)" \
    bash -c "[ '$state' = 'COMPLETED 0:0' ] && grep -Eq '^mode .*/locked/locked 0$' locked-private.out &&
             grep -Eq '^mode .*/locked/nox 644$' locked-private.out"
ok "the private-mode job's output names no internal temporary path" names_no_temporary locked-private.out
cat >read-locked.sh <<'EOF'
#!/bin/bash
cat "$AIHPC_STAGE_DIR"/locked/locked/file "$AIHPC_STAGE_DIR"/locked/nox/file
EOF
chmod 0755 read-locked.sh
id=$(as_user sbatch --parsable -w n1 -o locked-cache.out --aihpc-stage="$work/locked.tar:locked" read-locked.sh)
state=$([ -n "$id" ] && wait_job_status "$id" 60)
ok "a cache-mode stage of the same archive works, and the job reads inside both directories (state $state)" \
    bash -c "[ '$state' = 'COMPLETED 0:0' ] && [ \"\$(cat locked-cache.out)\" = \"\$(printf 'secret\\nplain')\" ]"
ok "the cache-mode job's output names no internal temporary path" names_no_temporary locked-cache.out

# ---- 14. Mtimes after 2262-04-11, past a signed 64-bit count of nanoseconds.
far=10413792000 # 2300-01-01T00:00:00Z
mkdir -p future/d && echo later >future/d/f && touch -d @$far future/d/f future/d future
tar -C future --format=posix -cf future.tar d && chmod -R a+rX future future.tar
cat >mtimes.sh <<'EOF'
#!/bin/bash
stat -c 'mtime %n %Y' "$AIHPC_STAGE_DIR"/tree/d/f "$AIHPC_STAGE_DIR"/tree/d "$AIHPC_STAGE_DIR"/archive/d/f "$AIHPC_STAGE_DIR"/archive/d
EOF
chmod 0755 mtimes.sh
id=$(as_user sbatch --parsable -w n1 -o future.out --aihpc-stage="$work/future:tree,$work/future.tar:archive" mtimes.sh)
state=$([ -n "$id" ] && wait_job_status "$id" 60)
ok "a tree and an archive with mtimes in 2300 are staged (state $state)" test "$state" = "COMPLETED 0:0"
ok "the staged tree keeps the mtime of 2300-01-01, not 1901" \
    bash -c "[ \$(grep -c '^mtime .*/tree/.* $far\$' future.out) = 2 ]"
ok "the staged archive keeps the mtime of 2300-01-01, not 1901" \
    bash -c "[ \$(grep -c '^mtime .*/archive/.* $far\$' future.out) = 2 ]"

# ---- 9. A root-owned sticky 1777 directory as local_root itself: users could make
# trash/, jobs/ or cache/ there before aihpc does, or plant files root reads.
sticky=$(mktemp -d "$scratch_prefix.sticky.XXXXXX")
chmod 1777 "$sticky"
cp "$plugstack" "$plugstack.orig"
sed "s|local_root=[^ ]*|local_root=$sticky|" "$plugstack.orig" >"$plugstack"
id=$(as_user sbatch --parsable -w n1 -o sticky.out --aihpc-stage="$work/small:small" job.sh)
state=$([ -n "$id" ] && wait_job_status "$id" 60)
restore_site_keys
ok "a sticky world-writable local_root fails the job (state $state)" test "${state%% *}" = FAILED
ok "the message names local_root, its mode and what to fix" \
    grep -q "aihpc: local_root: $sticky must be owned by root and writable by no one else (it is uid 0, mode 1777)" sticky.out
ok "the task never ran" bash -c "! grep -q 'task ran' sticky.out"
ok "aihpc made nothing in it" test -z "$(ls -A "$sticky")"
ok "the node is idle again, not drained" wait_nodes_idle 30

# ---- 6. The inode cap. Both users' caches as they stand count against it: the cap leaves
# room for the other user's small stage, and the archive has more entries than the cap.
as_user srun -w n1 --aihpc-stage="$work/small:small" true
as_other_user srun -w n1 --aihpc-stage="$work/small:small" true
held=$(for u in "$uid" "$(id -u "$other_user")"; do find "$local_root_n1/cache/$u" | wc -l; done | sort -n | tail -1)
cap=$((held + 300))
mkdir -p many/d
(cd many/d && seq -f 'e%g' $((cap + 200)) | xargs touch)
tar -C many --format=gnu -cf many.tar d && chmod -R a+rX many many.tar
with_site_keys cache_user_inodes=$cap
id=$(as_user sbatch --parsable -w n1 -o many.out --aihpc-stage="$work/many.tar:many" job.sh)
state=$([ -n "$id" ] && wait_job_status "$id" 60)
ok "an archive of $((cap + 200)) empty files over a cache_user_inodes cap of $cap fails the job (state $state)" \
    bash -c "[ '${state%% *}' = FAILED ] && ! grep -q 'task ran' many.out"
ok "the message names the cache_user_inodes cap" grep -q "aihpc: .*cache_user_inodes cap" many.out
# The same files as a tree are counted before anything is copied.
id=$(as_user sbatch --parsable -w n1 -o many-tree.out --aihpc-stage="$work/many:many" job.sh)
state=$([ -n "$id" ] && wait_job_status "$id" 60)
ok "the same files as a tree fail the job too, naming the cap of $cap (state $state)" \
    bash -c "[ '${state%% *}' = FAILED ] && grep -q 'aihpc: .*cache_user_inodes cap of $cap' many-tree.out"
ok "nothing of it is left in the cache's temporaries" no_cache_temporaries "$entries"
ok "nothing of it is in the cache" bash -c "! find '$entries' -name e1 | grep -q ."
ok "another user's stage on the node still works" \
    as_other_user srun -w n1 --aihpc-stage="$work/small:theirs" bash -c 'test -f "$AIHPC_STAGE_DIR/theirs/f"'
ok "the node is idle again" wait_nodes_idle 30
restore_site_keys

# ---- 8. What is left in trash/: a 4,096-deep tree and a flat directory of many names.
trash=$local_root_n1/trash
# trash_names: the names at the top of trash/ and in the flat directory.
trash_names() { echo $(($(ls -A "$trash" | wc -l) + $(ls -A "$trash/flat.left" 2>/dev/null | wc -l))); }
# started_in_ms: the job's step runs (its prepare is done) once it writes a marker; the
# time from the submit to then, with the marker's job still running, so that root can
# count what its prepare left in trash/ before the job's epilog goes on with it.
# Each waits for n1 to be idle first, so that the time is the prepare's own, not that of
# the previous job's epilog, which empties trash/ within its own budget (epilog_ms).
started_in_ms() {
    rm -f "$work/started" "$work/go"
    local start=$(date +%s%N)
    for _ in $(seq 300); do [ "$(sinfo -h -n n1 -o %t)" = idle ] && break; sleep 0.05; done
    echo $((($(date +%s%N) - start) / 1000000)) >"$work/epilog_ms"
    start=$(date +%s%N)
    as_user srun -w n1 --aihpc-stage="$work/small:small" \
        bash -c "touch '$work/started'; while [ ! -e '$work/go' ]; do sleep 0.1; done" >/dev/null 2>&1 &
    local job=$!
    while [ ! -e "$work/started" ] && kill -0 $job 2>/dev/null; do sleep 0.05; done
    echo $((($(date +%s%N) - start) / 1000000))
    trash_names >"$work/left"
    touch "$work/go"
    wait $job
}
baseline=$(started_in_ms)
# Made beside trash/ and renamed into it whole: an epilog still emptying trash/ for an
# earlier job would otherwise remove the trees while they are being made.
setup=$local_root_n1/.trash-setup.$$
mkdir -p "$setup"
made=0
python3 - "$setup" <<'EOF' && mv "$setup/deep.left" "$setup/flat.left" "$trash/" && rmdir "$setup" && made=1
import os, sys
top = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
os.mkdir("deep.left", dir_fd=top)
fd = os.open("deep.left", os.O_RDONLY | os.O_DIRECTORY, dir_fd=top)
for _ in range(4096):
    os.mkdir("d", dir_fd=fd)
    os.close(os.open("f", os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=fd))
    nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
    os.close(fd)
    fd = nfd
os.mkdir("flat.left", dir_fd=top)
flat = os.open("flat.left", os.O_RDONLY | os.O_DIRECTORY, dir_fd=top)
# Names of a few files (ext4 allows 65,000 links to one): quicker to make than as many
# files, and what is timed is the removal of names.
for i in range(250000):
    if i % 50000 == 0:
        first = "n%d" % i
        os.close(os.open(first, os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=flat))
    else:
        os.link(first, "n%d" % i, src_dir_fd=flat, dst_dir_fd=flat)
EOF
ok "root left a 4,096-deep tree and 250,000 names in trash/" test "$made" = 1
before=$(trash_names)
first=$(started_in_ms)
left=$(cat "$work/left")
ok "the first prepare removed part of trash/ and left the rest for later ($left of $before names left)" \
    test "$left" -gt 0 -a "$left" -lt "$before"
# Wide margins, for a loaded machine: removing all of it at once takes 15 s and more here.
ok "and the job started about as quickly as with trash/ empty ($first ms, against $baseline ms)" \
    test $first -lt $((baseline + 8000))
slowest=$first slowest_epilog=0 runs=1
while [ $runs -lt 20 ] && [ -n "$(ls -A "$trash")" ]; do
    took=$(started_in_ms)
    [ $took -gt $slowest ] && slowest=$took
    [ "$(cat "$work/epilog_ms")" -gt $slowest_epilog ] && slowest_epilog=$(cat "$work/epilog_ms")
    runs=$((runs + 1))
done
# And the last job's epilog.
start=$(date +%s%N)
for _ in $(seq 300); do [ "$(sinfo -h -n n1 -o %t)" = idle ] && break; sleep 0.05; done
took=$((($(date +%s%N) - start) / 1000000))
[ $took -gt $slowest_epilog ] && slowest_epilog=$took
ok "trash/ is emptied over $runs successive jobs, each quick to start (the slowest in $slowest ms)" \
    test -z "$(ls -A "$trash")" -a $slowest -lt $((baseline + 8000))
# The epilog's budget for trash/ is 2 s; the node waits for it.
ok "and n1 was idle again within 10 s of each job's end (the slowest in $slowest_epilog ms)" \
    test $slowest_epilog -lt 10000
ok "every node is idle at the end" wait_nodes_idle 30
finish
