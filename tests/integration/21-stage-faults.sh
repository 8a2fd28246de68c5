#!/usr/bin/env bash
# Staging faults, at the aihpc-stage level as the test user: a producer killed mid-copy,
# and a full file system.
. "$(dirname "$0")/lib.sh"
plan 5
work=$(scratch)
cd "$work"
stage=$top_builddir/tools/aihpc-stage
as_user python3 "$top_builddir/bench/stage/make_tree.py" "$work/src" 20000

# kill -9 of the producer while it copies.
as_user "$stage" in "$work/src:set" --to "$work/job1" --cache "$work/cache" --threads 1 >/dev/null 2>&1 &
pid=$!
seen=no
for _ in $(seq 500); do
    if ls -A "$work/cache/entries" 2>/dev/null | grep -q '^\.tmp\.'; then seen=yes; break; fi
    sleep 0.01
done
# The producer is runuser's child: kill exactly that aihpc-stage, by its unique command line.
producer=$(cluster_pgrep -u "$test_user" -f "aihpc-stage in $work/src:set --to $work/job1 ")
[ -n "$producer" ] && kill -9 $producer
wait "$pid" 2>/dev/null
ok "a producer killed mid-copy leaves no visible entry and no DIR/NAME" \
    bash -c "[ $seen = yes ] && ! ls '$work/cache/entries' | grep -qv '^\.' && [ ! -e '$work/job1/set' ]"
ok "the next stage after the kill is complete and correct" \
    bash -c "runuser -u $test_user -- '$stage' in '$work/src:set' --to '$work/job2' --cache '$work/cache' --verify --json | grep -q '\"cache\": \"miss\"' &&
             diff -r '$work/src' '$work/job2/set/'"
ok "aihpc-stage cache verify finds the cache consistent" as_user "$stage" cache verify --cache "$work/cache"

# A full file system: a small tmpfs as the cache.
mkdir -p "$work/small"
if mount -t tmpfs -o size=8m,mode=0777 tmpfs "$work/small" 2>/dev/null; then
    out=$(as_user "$stage" in "$work/src:set" --to "$work/job3" --cache "$work/small/cache" 2>&1); rc=$?
    ok "staging into a full file system fails with a clear message" \
        bash -c "[ $rc = 1 ] && grep -q 'No space left on device.*ask for a node with more local disk' <<<'$out'"
    ok "the cache stays consistent after ENOSPC: no entry, no temp, nothing at DIR/NAME" \
        bash -c "[ -z \"\$(ls -A '$work/small/cache/entries')\" ] && [ ! -e '$work/job3/set' ]"
    umount "$work/small"
else
    skip "staging into a full file system fails with a clear message" "cannot mount tmpfs"
    skip "the cache stays consistent after ENOSPC" "cannot mount tmpfs"
fi
rm -rf "$work"
finish
