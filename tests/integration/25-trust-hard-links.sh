#!/usr/bin/env bash
# One user cannot zero everyone's cache share for free: 2,000 hard links to one 200 MB
# file in their own cache dir are 200 MB in root's ledger, not 400 GB, and another
# user's stage on the node works.
. "$(dirname "$0")/lib.sh"
plan 4
work=$(scratch)
cd "$work"
local_root_n1=${AIHPC_LOCAL_ROOT//%n/n1}
uid=$(id -u "$test_user")
mkdir -p small && echo x >small/f && chmod -R a+rX small
with_site_keys cache_max=2G

# The user's cache dir exists once they staged something on the node.
as_user srun -w n1 --aihpc-stage="$work/small:small" true
cache=$local_root_n1/cache/$uid
rm -rf "$cache/junk" "$cache/links"
as_user bash -c "fallocate -l 200M '$cache/junk' && mkdir '$cache/links' && for i in \$(seq 2000); do ln '$cache/junk' \"$cache/links/\$i\"; done"
trap 'rm -rf "$cache/junk" "$cache/links"; restore_site_keys; remove_scratch' EXIT
ok "the user made 2,000 names for one 200 MB file in their cache dir" test "$(stat -c %h "$cache/junk")" = 2001

# A stage of the user brings root's measure of their cache up to date.
as_user srun -w n1 --aihpc-stage="$work/small:small" true
ok "root's ledger counts the file once: under 1 GB for the user" \
    bash -c "awk '\$1 != \"aihpc-cache-ledger\" && \$2 == $uid { s += \$6 } END { exit !(s > 100000000 && s < 1000000000) }' '$local_root_n1/cache/ledger'"
ok "another user's stage on the node works" \
    as_other_user srun -w n1 --aihpc-stage="$work/small:small2" true
ok "and the node is idle again" \
    bash -c "for i in \$(seq 60); do [ \"\$(sinfo -h -n n1 -o %t)\" = idle ] && exit 0; sleep 0.5; done; exit 1"
finish
