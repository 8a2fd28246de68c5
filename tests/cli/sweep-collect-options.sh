#!/bin/sh
# aihpc-sweep and aihpc-collect as a user types them: every long option also as
# --opt=value (GNU style), flags refuse a value, and a word that starts with '-' is never
# taken for a parameter. Offline: nothing here asks Slurm anything.
top=${top_builddir:-.}
sweep="$top/tools/aihpc-sweep"
collect="$top/tools/aihpc-collect"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
status=0
fail() { echo "FAIL: $*"; status=1; }

# expect CODE NEEDLE CMD...: runs CMD, checks its exit status and that NEEDLE ("" for
# none) is in its stderr.
expect() {
    code=$1 needle=$2
    shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"
    got=$?
    [ "$got" = "$code" ] || fail "$* exited $got, not $code: $(cat "$tmp/err")"
    if [ -n "$needle" ] && ! grep -qF -- "$needle" "$tmp/err"; then fail "$*: no '$needle' in: $(cat "$tmp/err")"; fi
}

# --opt=value and --opt value give the same sweep; neither becomes a parameter.
expect 0 "" "$sweep" expand --random=5 --seed=3 'lr=uniform(0,1,n=2)' -o "$tmp/eq" -- echo '{lr}'
expect 0 "" "$sweep" expand --random 5 --seed 3 'lr=uniform(0,1,n=2)' -o "$tmp/sp" -- echo '{lr}'
cmp -s "$tmp/eq/tasks.jsonl" "$tmp/sp/tasks.jsonl" || fail "--random=5 --seed=3 gave other tasks than --random 5 --seed 3"
grep -q -- '"--' "$tmp/eq/tasks.jsonl" && fail "an option became a parameter: $(head -1 "$tmp/eq/tasks.jsonl")"
expect 0 "" "$sweep" expand 'bs=1,2' --output="$tmp/out1" --exclude=bs=2 -- echo '{bs}'
[ "$(wc -l <"$tmp/out1/tasks.jsonl")" = 1 ] || fail "--exclude=bs=2 was not applied"

# A word that starts with '-' is an option or a mistake, never a parameter.
expect 2 "cannot start with '-'" "$sweep" expand -x=1 -o "$tmp/dash"
expect 2 "unknown option --bogus" "$sweep" expand --bogus=1 'a=1' -o "$tmp/dash"
printf '{"axes":[{"param":"-lr","values":[1]}],"command":"true"}\n' >"$tmp/dash.json"
expect 1 "must not start with '-'" "$sweep" expand "$tmp/dash.json" -o "$tmp/dash"
[ -e "$tmp/dash" ] && fail "a refused expand wrote $tmp/dash"

# A flag given a value is refused, not taken as yes or no.
expect 2 "--emit-json takes no value" "$sweep" expand --emit-json=no 'a=1'
expect 2 "--dry-run takes no value" "$sweep" submit "$tmp/eq" --dry-run=yes --max-array-size=10
expect 2 "--max-array-size needs a value" "$sweep" plan "$tmp/eq" --max-array-size

# plan and submit --dry-run take --max-array-size=N (no scontrol needed).
expect 0 "" "$sweep" plan "$tmp/eq" --max-array-size=1000 --throttle=2
grep -q -- '--array=0-4%2' "$tmp/out" || fail "plan --throttle=2: $(cat "$tmp/out")"
expect 0 "" "$sweep" submit "$tmp/eq" --dry-run --max-array-size=2 --pack=1
[ "$(grep -c -- --array= "$tmp/out")" = 3 ] || fail "submit --dry-run --max-array-size=2: $(cat "$tmp/out")"
expect 0 "" "$sweep" params "$tmp/eq" --index=1 --format=env
grep -q '^AIHPC_TASK_INDEX=1$' "$tmp/out" || fail "params --index=1 --format=env: $(cat "$tmp/out")"

# aihpc-collect, likewise.
expect 0 "" "$collect" "$tmp/eq" --sort=lr --top=2 --format=csv --all
[ "$(wc -l <"$tmp/out")" = 3 ] || fail "collect --sort=lr --top=2 --format=csv: $(cat "$tmp/out")"
expect 0 "" "$collect" "$tmp/eq" --output="$tmp/table.csv" --format=csv --all
[ -s "$tmp/table.csv" ] || fail "collect --output=FILE wrote nothing"
expect 2 "--all takes no value" "$collect" "$tmp/eq" --all=no
expect 2 "unknown option --bogus" "$collect" "$tmp/eq" --bogus=1
expect 2 "--format" "$collect" "$tmp/eq" --format=xml

[ $status = 0 ] && echo "ok: --opt=value in aihpc-sweep and aihpc-collect"
exit $status
