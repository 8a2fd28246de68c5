#!/bin/sh
# The EXAMPLES of aihpc-sweep(1) and aihpc-collect(1), run as written where they can run
# offline: every line of their example blocks that calls aihpc-sweep or aihpc-collect,
# with submit and resubmit made dry runs (--dry-run: no sbatch), and what needs a
# cluster (--watch, --status, --sacct, mlflow, the files of a loop that ran) left out.
# The collect examples read results written here, as tasks would have.
top=${top_builddir:-.}
src=$(cd "${srcdir:-.}" && pwd)
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
PATH="$(cd "$top/tools" && pwd):$PATH"
export PATH
status=0
fail() { echo "FAIL: $*"; status=1; }

# The example blocks of a man page as shell lines: roff escapes undone, continued lines
# joined; a block that starts with '{' (a spec file) goes to sweep.json.
examples() {
    awk '
        /^\.SH EXAMPLES/ { on = 1; next }
        /^\.SH / { on = 0 }
        !on { next }
        /^\.nf/ { block = 1; text = ""; next }
        /^\.fi/ { block = 0; print text; print "@@END"; next }
        block && /^\.(RS|RE)/ { next }
        block { text = text $0 "\n" }' "$1" |
    sed -e 's/\\-/-/g' -e 's/\\e/\\/g' -e 's/\\(dq/"/g' -e "s/\\\\(aq/'/g"
}

run_examples() {
    page=$1
    examples "$page" >"$tmp/blocks"
    awk -v spec="$tmp/work/sweep.json" -v raw="$tmp/lines.raw" '
        BEGIN { start = 1 }
        /^@@END$/ { if (json) close(spec); json = 0; start = 1; next }
        start && /^\{/ { json = 1 }
        { start = 0 }
        json { print > spec; next }
        { print > raw }' "$tmp/blocks"
    # Join continued lines, then keep the tool calls.
    sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$tmp/lines.raw" | sed 's/   */ /g' |
        grep -E '(^|[;|&] *|\$\()aihpc-(sweep|collect) ' |
        grep -v -e '--watch' -e '--status' -e '--sacct' -e 'rounds/3' |
        sed -E 's/aihpc-sweep (submit|resubmit) ([^ ]+)/aihpc-sweep \1 \2 --dry-run/' >"$tmp/lines"
    : >"$tmp/lines.raw"
    ran=$((ran + $(wc -l <"$tmp/lines")))
    while IFS= read -r line; do
        (cd "$tmp/work" && sh -c "$line") >"$tmp/out" 2>"$tmp/err" || fail "$(basename "$page"): $line: $(cat "$tmp/err")"
    done <"$tmp/lines"
}

mkdir -p "$tmp/work"
ran=0
: >"$tmp/lines.raw"
run_examples "$src/man/aihpc-sweep.1"
[ -f "$tmp/work/runs/grid/tasks.jsonl" ] || fail "the examples of aihpc-sweep(1) made no runs/grid"
[ -f "$tmp/work/runs/resnet/tasks.jsonl" ] || fail "the examples of aihpc-sweep(1) made no runs/resnet"

# Results, as the tasks of runs/grid and of runs/resnet's phases would write them.
python3 - "$tmp/work" <<'PY' || fail "cannot write results"
import json, os, sys
root = sys.argv[1]
def write(sweep, phase, i, code, metrics):
    d = os.path.join(root, sweep, "results", *( [phase] if phase else []))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"{i}.json"), "w") as f:
        json.dump({"index": i, "exit_code": code, "metrics": metrics, "stderr_tail": ["boom"] if code else []}, f)
for sweep in ("grid", "resnet"):
    n = sum(1 for _ in open(os.path.join(root, "runs", sweep, "tasks.jsonl")))
    for i in range(n):
        code = 1 if i == 3 else 0
        if sweep == "grid":
            write("runs/grid", None, i, code, {"val_loss": 1 / (i + 1), "acc": i / n})
        else:
            write("runs/resnet", "prep", i, 0, {})
            write("runs/resnet", "train", i, code, {"val_loss": 1 / (i + 1)})
            if not code:
                write("runs/resnet", None, i, 0, {"acc": i / n})
PY
# The failed list of runs/grid needs one missing task too, for resubmit to have work.
rm -f "$tmp/work/runs/grid/results/5.json"
run_examples "$src/man/aihpc-collect.1"
[ -s "$tmp/work/grid.csv" ] || fail "the examples of aihpc-collect(1) wrote no grid.csv"
[ -s "$tmp/work/grid.html" ] || fail "the examples of aihpc-collect(1) wrote no grid.html"

[ "$ran" -ge 15 ] || fail "only $ran example lines found"
[ $status = 0 ] && echo "ok: the $ran example lines of aihpc-sweep(1) and aihpc-collect(1) run"
exit $status
