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

# One task's command, as run would start it.
expect 0 "" "$sweep" expand 'lr=0.1,0.2' 'name=a b' -o "$tmp/cmd" -- python train.py --lr '{lr}' --name '{name}'
expect 0 "" "$sweep" params "$tmp/cmd" --index=1 --format=cmd
[ "$(cat "$tmp/out")" = "python train.py --lr 0.2 --name 'a b'" ] || fail "params --format cmd: $(cat "$tmp/out")"
# The dry run shows the script's options, and the plugin's parser checks --aihpc-*.
expect 0 "" "$sweep" submit "$tmp/cmd" --dry-run --max-array-size=10 -- --gpus=1 --aihpc-bind=auto
grep -q -- "--gpus=1 --aihpc-bind=auto $tmp/cmd/scripts/main.sh 0 2 1" "$tmp/out" || fail "submit --dry-run: $(cat "$tmp/out")"
[ -x "$tmp/cmd/scripts/main.sh" ] && grep -q '^#SBATCH --gpus=1$' "$tmp/cmd/scripts/main.sh" || fail "submit --dry-run wrote no script"
expect 1 "does not exist, and sbatch would refuse it" "$sweep" submit "$tmp/cmd" --dry-run --max-array-size=10 -- --aihpc-container="$tmp/none.sif"
expect 1 "--aihpc-bogus is not an aihpc option" "$sweep" submit "$tmp/cmd" --dry-run --max-array-size=10 -- --aihpc-bogus=1

# Offline, scontrol fails: plan and the dry run go on with Slurm's default MaxArraySize
# and say why in one line; a submission stops, with that line only.
mkdir "$tmp/bin"
printf '#!/bin/sh\necho "scontrol: error: first line" >&2\necho "second" >&2\necho "third" >&2\necho "fourth" >&2\nexit 1\n' >"$tmp/bin/scontrol"
chmod +x "$tmp/bin/scontrol"
expect 0 "planned with Slurm's default, 1001" env PATH="$tmp/bin:$PATH" "$sweep" plan "$tmp/cmd"
grep -q "fourth" "$tmp/err" && fail "plan printed all of scontrol's error: $(cat "$tmp/err")"
grep -q -- "--array=0-1 " "$tmp/out" || fail "plan without scontrol: $(cat "$tmp/out")"
expect 1 "scontrol show config failed (scontrol: error: first line); give --max-array-size N" env PATH="$tmp/bin:$PATH" "$sweep" submit "$tmp/cmd"
grep -q "second" "$tmp/err" && fail "submit printed all of scontrol's error: $(cat "$tmp/err")"

# aihpc-collect, likewise.
expect 0 "" "$collect" "$tmp/eq" --sort=lr --top=2 --format=csv --all
[ "$(wc -l <"$tmp/out")" = 3 ] || fail "collect --sort=lr --top=2 --format=csv: $(cat "$tmp/out")"
expect 0 "" "$collect" "$tmp/eq" --output="$tmp/table.csv" --format=csv --all
[ -s "$tmp/table.csv" ] || fail "collect --output=FILE wrote nothing"
expect 2 "--all takes no value" "$collect" "$tmp/eq" --all=no
expect 2 "unknown option --bogus" "$collect" "$tmp/eq" --bogus=1
expect 2 "--format" "$collect" "$tmp/eq" --format=xml

# What expand refuses: no command, a condition key that is no parameter, -o with --emit-json.
expect 1 "there is no command to run" "$sweep" expand 'a=1,2' -o "$tmp/nocmd"
[ -e "$tmp/nocmd" ] && fail "expand without a command wrote $tmp/nocmd"
expect 1 "the condition key 'optim' is not a parameter" "$sweep" expand 'opt=sgd,adam' 'momentum=0.9,0.99@optim=sgd' -o "$tmp/typo" -- t
expect 1 "has no parameter 'momentum'" "$sweep" expand 'opt=sgd,adam' 'momentum=0.9,0.99@opt=sgd' -o "$tmp/cond" -- t '{momentum}'
expect 2 "writes no sweep dir" "$sweep" expand --emit-json 'a=1' -o "$tmp/emit"

# A spec file's errors name the file; a YAML one is told that only JSON is read.
printf '{"axes":[\n {"param":"a","values":[1,]}]}\n' >"$tmp/comma.json"
expect 1 "$tmp/comma.json: not valid JSON: axes[0].values[1]: trailing comma before ']' (line 2, column 27)" "$sweep" expand "$tmp/comma.json" -o "$tmp/c" -- t
printf 'axes:\n  - param: a\n' >"$tmp/spec.yaml"
expect 1 "reads JSON specs only" "$sweep" expand "$tmp/spec.yaml" -o "$tmp/c" -- t

# The best by a metric is never a failed run, and the rows left out are counted.
expect 0 "" "$sweep" expand 'x=1,2,3,4' --repeat=2 -o "$tmp/best" -- t
res() { printf '{"index":%s,"exit_code":%s,"metrics":{"loss":%s}}\n' "$1" "$2" "$3" >"$tmp/best/results/$1.json"; }
res 0 0 0.123456789; res 1 0 0.5; res 2 1 0.01; res 3 0 0.2; res 4 0 0.9
expect 0 "3 of 8 tasks have no result and are not shown" "$collect" "$tmp/best" --sort=loss --top=1 --format=csv
[ "$(sed -n 2p "$tmp/out" | cut -d, -f1,2)" = "0,done" ] || fail "collect --sort loss --top 1 picked: $(cat "$tmp/out")"
expect 0 "" "$collect" "$tmp/best" --sort=loss --columns=index,loss
[ "$(awk 'NR == 2 { print $1, $2 }' "$tmp/out")" = "0 0.123457" ] || fail "the table's default precision: $(cat "$tmp/out")"
expect 0 "" "$collect" "$tmp/best" --aggregate=mean --sort=loss --format=csv --columns=x,replicates,loss
[ "$(sed -n 2p "$tmp/out")" = "2,1,0.2" ] || fail "collect --aggregate mean: $(cat "$tmp/out")"
expect 0 "" "$collect" "$tmp/best" --sort=loss --top=1 --html="$tmp/report.html" --format=csv
[ "$(wc -l <"$tmp/out")" = 2 ] || fail "--top 1 with --html printed: $(cat "$tmp/out")"
[ "$(grep -o '<tr class="' "$tmp/report.html" | wc -l)" = 5 ] || fail "--top cut the HTML report"
expect 2 "--aggregate must be mean or median" "$collect" "$tmp/best" --aggregate=max
expect 0 "" "$sweep" refine "$tmp/best" --metric=loss --top=1 --aggregate=mean -o "$tmp/next"
grep -q "best 1 configuration(s) (mean loss min 0.2)" "$tmp/out" || fail "refine --aggregate mean: $(cat "$tmp/out")"
printf '{"index":7,"exit_code":0,"metrics":{"loss":0.0}}\n' >"$tmp/best/results/6.json"
expect 0 "results/6.json holds the result of task 7, not of task 6" "$collect" "$tmp/best" --status

[ $status = 0 ] && echo "ok: --opt=value in aihpc-sweep and aihpc-collect"
exit $status
