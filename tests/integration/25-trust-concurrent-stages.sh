#!/usr/bin/env bash
# Two users staging at once never pass cache_max between them. Root measures caches, and
# a copy in flight is not in them yet: so each stager promises its bytes in root's book
# (local_root/cache/promises) under a lock before it copies, and a stage planned while
# another is copying counts that copy as held. Here the first user's copy is stopped
# once promised; the second user's stage, which would fit alone, is refused with a
# message, and the first then finishes.
. "$(dirname "$0")/lib.sh"
plan 7
work=$(scratch)
cd "$work"
local_root_n1=${AIHPC_LOCAL_ROOT//%n/n1}
uid=$(id -u "$test_user")
mkdir -p small a b
echo x >small/f
head -c 300M /dev/urandom >a/f
head -c 300M /dev/urandom >b/f
chmod -R a+rX small a b
trap 'cluster_pkill CONT -u "$test_user" -f "aihpc-node" || true; restore_site_keys; remove_scratch' EXIT

# Root's measures of both users, fresh; then room for one 300 MB copy beyond them, not two.
as_user srun -w n1 --aihpc-stage="$work/small:small" true
as_other_user srun -w n1 --aihpc-stage="$work/small:small" true
held=$(awk '$1 != "aihpc-cache-ledger" { s += $6 } END { printf "%d", s / 1048576 }' "$local_root_n1/cache/ledger")
with_site_keys cache_max=$((held + 450))M

# Small jobs, so that both users' steps run on n1 at once.
as_user srun -w n1 -c1 --mem=200M --aihpc-stage="$work/a:a" bash -c 'wc -c <"$AIHPC_DATA_A/f"' >"$work/first.out" 2>"$work/first.err" &
first=$!
promised=
for _ in $(seq 600); do
    if grep -q "^$uid " "$local_root_n1/cache/promises" 2>/dev/null; then
        cluster_pkill STOP -u "$test_user" -f "aihpc-node prepare-stage-in" && promised=1
        break
    fi
    sleep 0.05
done
ok "the first user's copy was promised in root's book before it copied" test -n "$promised"
ok "the book is root's alone" test "$(stat -c '%u %a' "$local_root_n1/cache/promises")" = "0 600"
ok "the second user's stage, planned while the first copies, is refused: both would pass cache_max" \
    bash -c "! runuser -u $other_user -- env SLURM_CONF=$SLURM_CONF srun -w n1 -c1 --mem=200M --aihpc-stage='$work/b:b' true 2>'$work/second.err' &&
             grep -q 'aihpc: .*cannot take' '$work/second.err'"
cluster_pkill CONT -u "$test_user" -f "aihpc-node prepare-stage-in" || true
wait "$first"
ok "the first user's stage then finishes" grep -qx 314572800 "$work/first.out"
ok "root settled the first copy's promise once it measured it" \
    bash -c "! grep -q '^$uid ' '$local_root_n1/cache/promises'"
ok "what the node cache holds stays within cache_max" \
    bash -c "awk '\$1 != \"aihpc-cache-ledger\" { s += \$6 } END { exit !(s <= ($held + 450) * 1048576) }' '$local_root_n1/cache/ledger'"
ok "and the node is idle again" \
    bash -c "for i in \$(seq 60); do [ \"\$(sinfo -h -n n1 -o %t)\" = idle ] && exit 0; sleep 0.5; done; exit 1"
finish
