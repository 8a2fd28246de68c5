#!/bin/sh
# The sweep quickstart of README.md, run as written (offline): train.py and the expand
# and collect blocks are taken from the README; the tasks run here with
# `aihpc-sweep run --index I`, as array tasks would, instead of the submit line.
top=${top_builddir:-.}
src=${srcdir:-.}
readme="$(cd "$src" && pwd)/README.md"
[ -f "$readme" ] || readme="$top/README.md"
command -v python3 >/dev/null 2>&1 || { echo "SKIP: no python3"; exit 77; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
PATH="$(cd "$top/tools" && pwd):$PATH"
export PATH

# block NAME: the fenced code block after <!-- quickstart: NAME -->
block() {
    awk -v name="$1" '
        $0 == "<!-- quickstart: " name " -->" { armed = 1; next }
        armed && /^```/ { if (inside) exit; inside = 1; next }
        inside { print }' "$readme"
}
for b in train.py expand collect; do
    [ -n "$(block "$b")" ] || { echo "FAIL: README.md has no quickstart block '$b'"; exit 1; }
done
cd "$tmp" || exit 1
block train.py >train.py
set -e
block expand >expand.sh
sh -e expand.sh >expand.out
grep -q '^12 tasks in runs/demo' expand.out || { echo "FAIL: expand: $(cat expand.out)"; exit 1; }
grep -q "^python3 train.py --lr 3e-04 --bs 64$" expand.out || { echo "FAIL: params --format cmd: $(cat expand.out)"; exit 1; }
i=0
while [ $i -lt 12 ]; do
    aihpc-sweep run runs/demo --index $i
    i=$((i + 1))
done
# One task fails, with the lowest loss: the ranking must pass it over.
printf '{"index":5,"exit_code":1,"metrics":{"val_loss":-1}}\n' >runs/demo/results/5.json
block collect | grep -v -e '--status' >collect.sh  # --status asks squeue
sh -e collect.sh >collect.out 2>collect.err || { echo "FAIL: collect block: $(cat collect.err)"; exit 1; }
set +e
# The best by val_loss is lr=3e-4, bs=64, one of its replicates (tasks 4 and 5; 5 failed).
awk 'NR == 2 && $1 == 4 && $2 == "done" { ok = 1 } END { exit !ok }' collect.out ||
    { echo "FAIL: collect --sort val_loss --top 3: $(cat collect.out)"; exit 1; }
grep -q '^5$' collect.out || { echo "FAIL: collect --failed: $(cat collect.out)"; exit 1; }
[ -f runs/demo2/tasks.jsonl ] || { echo "FAIL: refine wrote no runs/demo2"; exit 1; }
echo "ok: the README sweep quickstart runs"
