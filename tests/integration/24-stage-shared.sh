#!/usr/bin/env bash
# The node's shared cache, with two real users: a world-readable tree staged by one
# user is read once as nobody into local_root/shared, root's and read-only, and the
# other user's job is a hit there: one copy on the node. A file others may not read is
# never shared, and a source its reader can no longer read gives that reader nothing.
# No user can change the shared cache, nor make root read, as nobody, anything but the
# source itself (a link in the source stays a link). --aihpc-stage-mode=user and the
# site key cache_shared=off keep to the user's own cache.
. "$(dirname "$0")/lib.sh"
plan 14
work=$(user_scratch)
cd "$work" || exit 1
local_root_n1=${AIHPC_LOCAL_ROOT//%n/n1}
shared_n1=$local_root_n1/shared
uid_a=$(id -u "$test_user")
uid_b=$(id -u "$other_user")
trap 'restore_site_keys; remove_scratch' EXIT

shared_entries() { find "$shared_n1/entries" -mindepth 1 -maxdepth 1 -name '[0-9a-f]*' 2>/dev/null | wc -l; }
user_entries() { find "$local_root_n1/cache/$1/entries" -mindepth 1 -maxdepth 1 -name '[0-9a-f]*' 2>/dev/null | wc -l; }

# Each run starts with no shared entry on n1 (an earlier run's would be a hit); the
# users' own caches hold what other tests left, so their growth is what counts.
rm -rf "$shared_n1"
a_before=$(user_entries "$uid_a")
b_before=$(user_entries "$uid_b")

# The tree: world-readable, in a directory others may enter, with a link to a file that
# only nobody may read; staged, the link must stay a link.
as_user python3 "$top_builddir/bench/stage/make_tree.py" "$work/tree" 500 >/dev/null
as_user chmod -R a+rX "$work/tree"
secret=$(mktemp /tmp/aihpc-it.$$.secret.XXXXXX)
echo "nobody's own secret" >"$secret"
chown nobody "$secret"
chmod 0400 "$secret"
as_user ln -s "$secret" "$work/tree/outside"
as_user bash -c "cd '$work/tree' && find . -type f | sort | xargs sha1sum" >expected.sums

cat >sums.sh <<'JOB'
#!/bin/bash
(cd "$AIHPC_STAGE_DIR/set" && find . -type f | sort | xargs sha1sum) >"$SLURM_SUBMIT_DIR/seen.$SLURM_JOB_ID"
readlink "$AIHPC_STAGE_DIR/set/outside" >"$SLURM_SUBMIT_DIR/link.$SLURM_JOB_ID"
JOB
chmod 0755 sums.sh
chmod 0777 "$work"  # the other user writes their results here too

id=$(as_user sbatch --parsable -w n1 -o a.out --aihpc-verbose --aihpc-stage="$work/tree:set" sums.sh)
state=$(wait_job "$id" 300)
ok "user A's stage of a world-readable tree goes into the shared cache, read as nobody" \
    bash -c "[ '$state' = COMPLETED ] && grep -q 'stage-in set: read as nobody (shared_user) into the node.s shared cache' a.out &&
             grep -q 'stage-in set: miss, .*in the shared cache' a.out && cmp expected.sums seen.$id"
ok "the shared entry is root's and read-only, and A's own cache holds no copy" \
    bash -c "[ $(shared_entries) = 1 ] && [ $(user_entries "$uid_a") = $a_before ] &&
             [ -z \"\$(find '$shared_n1/entries' -mindepth 1 ! -user root)\" ] &&
             [ -z \"\$(find '$shared_n1/entries' -mindepth 1 ! -type l -perm /0222)\" ]"
ok "a link in the source stays a link: root read nothing beyond the source as nobody" \
    bash -c "[ \"\$(cat link.$id)\" = '$secret' ] && ! grep -rqs 'own secret' '$shared_n1/entries'"

id=$(as_other_user sbatch --parsable -w n1 -o b.out --aihpc-verbose --aihpc-stage="$work/tree:set" sums.sh)
state=$(wait_job "$id" 300)
ok "user B's stage of the same source is a hit in the shared cache: one copy on the node" \
    bash -c "[ '$state' = COMPLETED ] && grep -q 'stage-in set: hit, .*in the shared cache' b.out &&
             ! grep -q 'into the node.s shared cache' b.out && cmp expected.sums seen.$id &&
             [ $(shared_entries) = 1 ] && [ $(user_entries "$uid_b") = $b_before ]"

entry=$(find "$shared_n1/entries" -mindepth 1 -maxdepth 1 -name '[0-9a-f]*' | head -1)
ok "user B can neither list, write, rename nor remove anything in the shared cache" \
    bash -c "! runuser -u '$other_user' -- ls '$shared_n1' >/dev/null 2>&1 &&
             ! runuser -u '$other_user' -- touch '$entry/data/new' 2>/dev/null &&
             ! runuser -u '$other_user' -- mv '$entry' '$shared_n1/entries/x' 2>/dev/null &&
             ! runuser -u '$other_user' -- rm -rf '$entry/data/d000' 2>/dev/null &&
             ! runuser -u '$other_user' -- sh -c 'echo x >>\"\$1\"' - '$shared_n1/log' 2>/dev/null &&
             [ -d '$entry/data/d000' ] && [ $(shared_entries) = 1 ]"

# A tree with one file others may not read: never shared, and B cannot stage it.
as_user cp -a "$work/tree" "$work/mixed"
as_user rm "$work/mixed/outside"
as_user bash -c "echo private >'$work/mixed/private.txt' && chmod 0600 '$work/mixed/private.txt'"
id=$(as_user sbatch --parsable -w n1 -o mixed-a.out --aihpc-verbose --aihpc-stage="$work/mixed:set" --wrap true)
state=$(wait_job "$id" 300)
ok "a tree holding a file others may not read is never shared: A's own cache takes it" \
    bash -c "[ '$state' = COMPLETED ] && grep -q 'stage-in set: not shared: ' mixed-a.out &&
             grep -q 'stage-in set: miss, .*in the user cache' mixed-a.out &&
             [ $(shared_entries) = 1 ] && [ $(user_entries "$uid_a") = $((a_before + 1)) ]"
# refused JOB.OUT SBATCH_OUTPUT: the job was refused at submit with an aihpc message, or
# it failed with one.
refused() {
    if [[ $2 =~ ^[0-9]+$ ]]; then
        [ "$(wait_job "$2" 300)" = FAILED ] && grep -q 'aihpc: ' "$1"
    else
        grep -q 'aihpc: ' <<<"$2"
    fi
}
out=$(as_other_user sbatch --parsable -w n1 -o mixed-b.out --aihpc-stage="$work/mixed:set" --wrap true 2>&1)
refused mixed-b.out "$out"
ok "B is never served A's copy of a file B cannot read: B's job is refused with a message" \
    bash -c "[ $? = 0 ] && [ $(user_entries "$uid_b") = $b_before ] && cat mixed-b.out 2>/dev/null | grep -q 'private.txt' ||
             grep -q 'private.txt' <<<'$out'"

# Access revoked after staging: B's next job gets no lease on the shared entry.
as_user chmod o-rx "$work/tree"
out=$(as_other_user sbatch --parsable -w n1 -o revoked.out --aihpc-stage="$work/tree:set" --wrap true 2>&1)
refused revoked.out "$out"
ok "after chmod o-rx of the source, B's next job is refused and gets nothing" \
    bash -c "[ $? = 0 ] && [ $(user_entries "$uid_b") = $b_before ]"
id=$(as_user sbatch --parsable -w n1 -o owner.out --aihpc-verbose --aihpc-stage="$work/tree:set" sums.sh)
state=$(wait_job "$id" 300)
ok "its owner, who still may read it, still stages it" bash -c "[ '$state' = COMPLETED ] && cmp expected.sums seen.$id"
as_user chmod o+rx "$work/tree"

id=$(as_other_user sbatch --parsable -w n1 -o user-mode.out --aihpc-verbose --aihpc-stage-mode=user \
    --aihpc-stage="$work/tree:set" sums.sh)
state=$(wait_job "$id" 300)
ok "--aihpc-stage-mode=user keeps to the user's own cache" \
    bash -c "[ '$state' = COMPLETED ] && grep -q 'stage-in set: miss, .*in the user cache' user-mode.out &&
             ! grep -q 'shared' user-mode.out && cmp expected.sums seen.$id && [ $(user_entries "$uid_b") = $((b_before + 1)) ]"

with_site_keys cache_shared=off
as_user mkdir "$work/other"
as_user bash -c "echo other >'$work/other/x' && chmod -R a+rX '$work/other'"
id=$(as_user sbatch --parsable -w n1 -o off.out --aihpc-verbose --aihpc-stage="$work/other:set" --wrap true)
state=$(wait_job "$id" 300)
ok "with cache_shared=off nothing goes into the shared cache" \
    bash -c "[ '$state' = COMPLETED ] && grep -q 'in the user cache' off.out && [ $(shared_entries) = 1 ]"
restore_site_keys

with_site_keys shared_user=root
out=$(as_user sbatch --parsable -w n1 -o root-reader.out --aihpc-stage="$work/other:set" --wrap true 2>&1)
ok "shared_user=root is refused by name at submit" grep -q "site key shared_user: 'root'" <<<"$out"
restore_site_keys


rm -f "$secret"
ok "nothing of this test is left in incoming/" bash -c "[ -z \"\$(ls -A '$shared_n1/incoming')\" ]"
ok "the nodes are idle again" wait_nodes_idle 30
finish
