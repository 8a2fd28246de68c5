#!/bin/sh
# The EXAMPLES of aihpc-sweep(1), aihpc-collect(1), aihpc-stage(1) and aihpc-bind(1), run
# as written where they can run offline: every line of their example blocks that starts
# with a call of the tool, with submit and resubmit made dry runs (--dry-run: no sbatch),
# and what needs a cluster (--watch, --status, --sacct, mlflow, the files of a loop that
# ran, srun) left out. The collect examples read results written here, as tasks would
# have. The stage and bind examples name absolute places (/datasets, /tmp/job, a node's
# topology): those are made below the scratch dir, and the command run is a stand-in.
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

# run_examples PAGE [TOOLS] [SED]: TOOLS is the regex of the tools whose calls run
# (default sweep|collect); SED rewrites each line first (the places it names).
run_examples() {
    page=$1
    tools=${2:-sweep|collect}
    rewrite=${3:-}
    examples "$page" >"$tmp/blocks"
    awk -v spec="$tmp/work/sweep.json" -v raw="$tmp/lines.raw" '
        BEGIN { start = 1 }
        /^@@END$/ { if (json) close(spec); json = 0; start = 1; next }
        start && /^\{/ { json = 1 }
        { start = 0 }
        json { print > spec; next }
        { print > raw }' "$tmp/blocks"
    # Join continued lines, then keep the tool calls.
    sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$tmp/lines.raw" | sed -e 's/   */ /g' -e 's/^ *//' |
        grep -E "(^|[;|&] *|\\\$\\()aihpc-($tools) " |
        grep -v -e '--watch' -e '--status' -e '--sacct' -e 'rounds/3' |
        sed -E 's/aihpc-sweep (submit|resubmit) ([^ ]+)/aihpc-sweep \1 \2 --dry-run/' |
        sed -e "${rewrite:-s/^//}" >"$tmp/lines"
    : >"$tmp/lines.raw"
    ran=$((ran + $(wc -l <"$tmp/lines")))
    while IFS= read -r line; do
        [ -n "${AIHPC_SHOW_EXAMPLES:-}" ] && echo "example: $line"
        (cd "$tmp/work" && sh -c "$line") >"$tmp/out" 2>"$tmp/err" || fail "$(basename "$page"): $line: $(cat "$tmp/err")"
    done <"$tmp/lines"
}

mkdir -p "$tmp/work"
ran=0
: >"$tmp/lines.raw"
run_examples "$src/man/aihpc-sweep.1.in"
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
run_examples "$src/man/aihpc-collect.1.in"
[ -s "$tmp/work/grid.csv" ] || fail "the examples of aihpc-collect(1) wrote no grid.csv"
[ -s "$tmp/work/grid.html" ] || fail "the examples of aihpc-collect(1) wrote no grid.html"

[ "$ran" -ge 15 ] || fail "only $ran example lines found"
before=$ran

# aihpc-stage(1): a dataset archive, a job's checkpoint and a scratch dir, below $tmp.
w=$tmp/work
mkdir -p "$w/datasets/cifar/train" "$w/job/ckpt" "$w/scratch"
seq 1 1000 >"$w/datasets/cifar/train/labels.txt"
tar --zstd -C "$w/datasets/cifar" -cf "$w/datasets/cifar.tar.zst" train
echo weights >"$w/job/ckpt/model.pt"
run_examples "$src/man/aihpc-stage.1.in" stage \
    "s|/datasets/|$w/datasets/|g; s|/tmp/job|$w/job|g; s|/tmp/aihpc-cache|$w/aihpc-cache|g; s|/scratch/\\\$USER|$w/scratch|g"
[ -f "$w/job/cifar/train/labels.txt" ] || fail "the examples of aihpc-stage(1) staged no cifar"
ls "$w/scratch" | grep -q '^ckpt' || fail "the examples of aihpc-stage(1) copied no checkpoint back"

# aihpc-bind(1): node.xml is an 8-GPU machine of the fixtures; the rank runs true.
cp "$src/tests/fixtures/topologies/hwloc-nvidiaDGX2.xml" "$w/node.xml"
LOCAL_RANK=0 LOCAL_WORLD_SIZE=1
export LOCAL_RANK LOCAL_WORLD_SIZE
run_examples "$src/man/aihpc-bind.1.in" bind "s|-- python train.py|-- true|; s|-- ./solver|-- true|"
[ $((ran - before)) -ge 6 ] || fail "only $((ran - before)) example lines of aihpc-stage(1) and aihpc-bind(1) found"
[ $status = 0 ] && echo "ok: the $ran example lines of aihpc-sweep(1), aihpc-collect(1), aihpc-stage(1) and aihpc-bind(1) run"
exit $status
