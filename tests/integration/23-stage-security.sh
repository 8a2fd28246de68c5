#!/usr/bin/env bash
# Staging and other users, hostile paths, and stage_allow.
. "$(dirname "$0")/lib.sh"
plan 6
work=$(scratch)
cd "$work"
local_root_n1=${AIHPC_LOCAL_ROOT//%n/n1}
uid=$(id -u "$test_user")
as_user mkdir -p "$work/data" && as_user bash -c "echo secret >'$work/data/f'"

sbatch_wait -w n1 -o a.out --aihpc-stage="$work/data:set" --wrap 'cat $AIHPC_DATA_SET/f' >/dev/null
ok "user A's job stages into the cache" grep -q secret a.out
ok "user B cannot read user A's cache" \
    bash -c "! runuser -u $other_user -- ls '$local_root_n1/cache/$uid' 2>/dev/null && ! runuser -u $other_user -- cat '$local_root_n1'/cache/$uid/entries/*/data/f 2>/dev/null"

refused() {  # TEXT ARGS...
    local text=$1 out
    shift
    if out=$(as_user sbatch "$@" --wrap=true 2>&1); then echo "accepted: $out"; return 1; fi
    grep -q "aihpc: .*$text" <<<"$out" || { echo "$out"; return 1; }
}
ok "SRC:../x is refused at submit" refused "one path component" --aihpc-stage="$work/data:../x"
with_site_keys stage_allow=/usr/share
ok "a source outside stage_allow is refused at submit" refused "not under stage_allow" --aihpc-stage="$work/data"
restore_site_keys
ok "a missing source is refused at submit" refused "does not exist" --aihpc-stage="$work/nothing-here"

python3 - "$work/evil.tar" <<'PY'
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w") as t:
    data = b"gotcha\n"
    info = tarfile.TarInfo("../escaped.txt"); info.size = len(data)
    t.addfile(info, io.BytesIO(data))
PY
chmod 0644 "$work/evil.tar"
state=$(sbatch_wait -w n1 -o evil.out --aihpc-stage="$work/evil.tar:evil" --wrap 'ls $AIHPC_DATA_EVIL')
ok "a tar with ../ entries is refused: the job fails with the reason, nothing escapes" \
    bash -c "[ '$state' = FAILED ] && grep -q \"aihpc: .*contains '..'\" evil.out && ! ls '$local_root_n1'/cache/$uid/escaped.txt '$local_root_n1'/cache/escaped.txt 2>/dev/null"
finish
