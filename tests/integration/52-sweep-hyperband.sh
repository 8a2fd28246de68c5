#!/usr/bin/env bash
# Hyperband (min 1, max 9, eta 3) as job arrays with no live driver: every rung of the
# three brackets runs, each promotion and the best reported match a reference computed
# here from the task results, a controller killed mid-promotion loses nothing (advance
# finishes it), a promoted task resumes from its own checkpoint, and a failed task or a
# NaN ranks worst.
. "$(dirname "$0")/lib.sh"
plan 15
work=$(scratch)
cd "$work"
sweep_tool=$top_builddir/tools/aihpc-sweep

# The objective: a deterministic loss of x and the budget. It resumes from the epochs its
# checkpoint dir records, says so in its log, and records the budget it was given.
# x=0 (which would be best) fails; x=5 (second best) reports NaN.
cat >objective.sh <<'SH'
#!/bin/sh
x=$1 epochs=$2
state="$AIHPC_CHECKPOINT_DIR/state"
if [ -f "$state" ]; then echo "resumed from checkpoint at epochs=$(cat "$state")"; else echo "fresh start"; fi
echo "$epochs" >"$state"
[ "$x" = 0 ] && { echo "x=0 diverged" >&2; exit 1; }
if [ "$x" = 5 ]; then loss=nan; else
    loss=$(awk -v x="$x" -v e="$epochs" 'BEGIN { printf "%.6f", ((x * 7) % 17) / 17 + 1 / (e + x % 3) }')
fi
printf 'val_loss=%s\nbudget_seen=%s\n' "$loss" "$AIHPC_BUDGET" >"$AIHPC_METRICS_FILE"
SH
chmod 0755 objective.sh
cat >spec.json <<JSON
{"name": "hb", "axes": [{"param": "x", "range": [0, 17]}],
 "command": ["$work/objective.sh", "{x}", "{epochs}"],
 "schedule": {"type": "hyperband", "resource": "epochs", "min": 1, "max": 9, "eta": 3,
              "metric": "val_loss", "mode": "min"}}
JSON
as_user "$sweep_tool" expand spec.json -o "$work/hb" >/dev/null

# Brackets and rungs from Li et al.'s formulas, computed here in Python.
check_plan() {
    as_user "$sweep_tool" plan hb --json --max-array-size 1001 >plan.json || return 1
    python3 - <<'PY'
import json, math
got = [(a["bracket"], a["rung"], a["tasks"], a["budget"]) for a in json.load(open("plan.json"))["arrays"]]
lo, hi, eta = 1, 9, 3
s_max = 0
while lo * eta ** (s_max + 1) <= hi:
    s_max += 1
want = []
for s in range(s_max, -1, -1):
    n = -(-(s_max + 1) * eta ** s // (s + 1))
    for i in range(s + 1):
        want.append((s, i, n // eta ** i, hi // eta ** (s - i)))
assert got == want, (got, want)
PY
}
ok "plan --json lists every rung of every bracket with its size and budget" check_plan

# An sbatch in front of the real one that kills the first controller (bracket 2, rung 0)
# right after it has decided the promotion and before the next rung is queued.
real_sbatch=$(command -v sbatch)
mkdir -p fault
cat >fault/sbatch <<SH
#!/bin/sh
case "\$*" in
*--job-name=hb.b2.r1*)
    if [ ! -e "$work/fault/fired" ]; then touch "$work/fault/fired"; kill -9 \$PPID; exit 1; fi ;;
esac
exec "$real_sbatch" "\$@"
SH
chmod 0777 fault
chmod 0755 fault/sbatch
as_user env PATH="$work/fault:$PATH" "$sweep_tool" submit hb -- --time=5 >submit.out 2>&1
ok "submit queues the first rung of each of the 3 brackets" \
    bash -c '[ "$(grep -c "r0: budget" submit.out)" = 3 ] && [ "$(grep -c "controller job" submit.out)" = 2 ]'

# Waits until the killed controller has left bracket 2's rung 1 decided but not queued.
wait_for_cut_promotion() {
    for _ in $(seq 300); do
        if [ -e fault/fired ] && [ -f hb/rungs/b2.r1.json ] && [ -z "$(squeue -h -n hb.advance.b2.r0 -o %i)" ]; then
            python3 -c 'import json,sys; r=json.load(open("hb/rungs/b2.r1.json")); sys.exit(0 if r["configs"] and not r["arrays"] else 1)'
            return
        fi
        sleep 1
    done
    return 1
}
ok "the controller killed mid-promotion leaves the decision written and nothing queued" wait_for_cut_promotion
decided=$(cat hb/rungs/b2.r1.json 2>/dev/null)
# Between the decision and the next rung, collect shows the promoted ones as such.
promoted_in_collect() {
    "$top_builddir/tools/aihpc-collect" hb --format csv >cut.csv || return 1
    python3 - <<'PY'
import csv, json
rows = {int(r["index"]): r for r in csv.DictReader(open("cut.csv"))}
promoted = json.load(open("hb/rungs/b2.r1.json"))["configs"]
for c in range(9):
    want = ("2", "0", "1", "true" if c in promoted else "false")
    got = (rows[c]["bracket"], rows[c]["rung"], rows[c]["budget"], rows[c]["promoted"])
    assert got == want, (c, got, want)
PY
}
ok "collect marks the configurations promoted out of the first rung of bracket 2" promoted_in_collect
as_user "$sweep_tool" advance hb >advance.out 2>&1
ok "advance by hand queues the promoted configurations it finds decided, without deciding again" \
    bash -c 'grep -q "b2.r1: budget 3" advance.out && python3 -c "
import json, sys
before, after = json.loads(sys.argv[1]), json.load(open(\"hb/rungs/b2.r1.json\"))
assert before[\"configs\"] == after[\"configs\"] and after[\"arrays\"], (before, after)" "$0"' "$decided"

# Every rung of every bracket ends with a result for each of its configurations.
all_rungs_done() {
    python3 - <<'PY'
import json, os, sys
last = {2: 2, 1: 1, 0: 0}
for s, k in last.items():
    path = f"hb/rungs/b{s}.r{k}.json"
    if not os.path.exists(path):
        sys.exit(1)
    r = json.load(open(path))
    if not all(os.path.exists(f"hb/rungs/b{s}.r{k}/{c}.json") for c in r["configs"]):
        sys.exit(1)
PY
}
wait_all() {
    for _ in $(seq 400); do
        all_rungs_done && ! squeue -h -u "$test_user" -o %j | grep -q "^hb\." && return 0
        sleep 1
    done
    return 1
}
ok "every rung of the three brackets runs to its end" wait_all

# The reference: from the result files alone, each rung's top floor(n/eta) by val_loss
# (a failure, a missing metric or NaN ranks worst, ties by index), and the best at the
# full budget.
check_promotions() {
    python3 - <<'PY'
import json, math, os
eta, best = 3, None
def value(s, k, c):
    path = f"hb/rungs/b{s}.r{k}/{c}.json"
    if not os.path.exists(path):
        return math.inf
    r = json.load(open(path))
    v = r.get("metrics", {}).get("val_loss")
    if r["exit_code"] != 0 or not isinstance(v, (int, float)) or not math.isfinite(v):
        return math.inf
    return v
for s in (2, 1, 0):
    for k in range(s + 1):
        rung = json.load(open(f"hb/rungs/b{s}.r{k}.json"))
        budget = 9 // eta ** (s - k)
        for c in rung["configs"]:
            r = json.load(open(f"hb/rungs/b{s}.r{k}/{c}.json"))
            assert r["params"]["epochs"] == budget and r["budget"] == budget and r["rung"] == k, r
            if c not in (0, 5):
                assert r["metrics"]["budget_seen"] == budget, r
        ranked = sorted(rung["configs"], key=lambda c: (value(s, k, c), c))
        if k < s:
            nxt = json.load(open(f"hb/rungs/b{s}.r{k + 1}.json"))
            want = sorted(ranked[: len(rung["configs"]) // eta])
            assert nxt["configs"] == want, (s, k, nxt["configs"], want)
        else:
            for c in rung["configs"]:
                v = value(s, k, c)
                if best is None or (v, c) < best:
                    best = (v, c)
print(best[1], "%.6f" % best[0])
PY
}
reference=$(check_promotions)
ok "each promotion is the top floor(n/3) of its rung's results, computed again here" test -n "$reference"
status=$(as_user "$sweep_tool" status hb 2>&1)
same_best() {
    python3 - "$status" "$reference" <<'PY'
import re, sys
line = [l for l in sys.argv[1].splitlines() if l.startswith("best: ")]
c, v = sys.argv[2].split()
m = re.match(r"best: configuration (\d+) \{.*\} val_loss (\S+) at budget 9$", line[0] if line else "")
assert m and m.group(1) == c and abs(float(m.group(2)) - float(v)) < 1e-9, (line, c, v)
PY
}
ok "status reports the same best configuration and loss at the full budget" same_best
ok "status shows each bracket's rungs with the promoted and stopped configurations" \
    bash -c 'grep -q "^bracket 2 rung 0 budget 1: 9 configurations, 7 with val_loss, 2 failed or without it, 0 running or missing; promoted 3 (.*), stopped 6$" <<<"$0" &&
             [ "$(grep -c "^bracket [0-2] rung [0-2] budget" <<<"$0")" = 6 ]' "$status"
ok "a failed task and a NaN, which would rank first and second, are stopped at the first rung" \
    python3 -c 'import json; r = json.load(open("hb/rungs/b2.r1.json")); assert 0 not in r["configs"] and 5 not in r["configs"], r'

# The log of a promoted task at its last rung shows the previous rung's checkpoint loaded.
check_resume() {
    python3 - <<'PY'
import json, sys
for s, k, prev in ((2, 2, 3), (2, 1, 1), (1, 1, 3)):
    rung = json.load(open(f"hb/rungs/b{s}.r{k}.json"))
    c = rung["configs"][0]
    r = json.load(open(f"hb/rungs/b{s}.r{k}/{c}.json"))
    log = open(f"hb/logs/{r['array_job_id']}_{r['array_task_id']}.out").read()
    assert f"resumed from checkpoint at epochs={prev}" in log, (s, k, c, log)
PY
}
ok "a promoted task resumes from the checkpoint its previous budget left" check_resume

# Once everything ran, advance finds nothing to do and changes nothing.
sums=$(md5sum hb/rungs/*.json)
as_user "$sweep_tool" advance hb >again.out 2>&1
ok "advance run again once every rung ended changes no record and submits nothing" \
    bash -c '[ "$(md5sum hb/rungs/*.json)" = "$0" ] && ! grep -q "job [0-9]" again.out' "$sums"

# collect: a row per configuration at the highest rung it reached, with its place.
check_collect() {
    "$top_builddir/tools/aihpc-collect" hb --format csv >collect.csv || return 1
    python3 - <<'PY'
import csv, json, os
rows = {int(r["index"]): r for r in csv.DictReader(open("collect.csv"))}
assert len(rows) == 17, len(rows)
for s in (2, 1, 0):
    for k in range(s + 1):
        rung = json.load(open(f"hb/rungs/b{s}.r{k}.json"))
        nxt = json.load(open(f"hb/rungs/b{s}.r{k + 1}.json"))["configs"] if k < s else []
        for c in rung["configs"]:
            if c in nxt:
                continue
            r = rows[c]
            want = (str(s), str(k), str(9 // 3 ** (s - k)), "false")
            got = (r["bracket"], r["rung"], r["budget"], r["promoted"])
            assert got == want and r["epochs"] == want[2], (c, got, want)
PY
}
ok "collect adds bracket, rung, budget and promoted columns to each configuration's row" check_collect

# The HTML report: one line per configuration through the budgets it ran, a point per
# rung result with the metric.
check_html() {
    "$top_builddir/tools/aihpc-collect" hb --html report.html || return 1
    python3 - <<'PY'
import glob, json, math, os, re
page = open("report.html").read()
assert "<h2>val_loss against epochs</h2>" in page
points = {}
for path in glob.glob("hb/rungs/b*.r*/*.json"):
    r = json.load(open(path))
    v = r.get("metrics", {}).get("val_loss")
    if r["exit_code"] == 0 and isinstance(v, (int, float)) and math.isfinite(v):
        points.setdefault(r["index"], []).append(r["budget"])
curves = re.findall(r'<path class="curve" d="([^"]*)"[^>]*><title>configuration (\d+)</title>', page)
assert sorted(int(c) for _, c in curves) == sorted(points), (curves, points)
for d, c in curves:
    assert d.count("L") == len(points[int(c)]) - 1, (c, d, points[int(c)])
PY
}
ok "the HTML report draws each configuration's val_loss against its budgets" check_html

# ASHA: each finishing task promotes under the lock; once the first rung has ended, its
# top third by val_loss is promoted, each configuration once, none that failed or gave NaN.
cat >asha.json <<JSON
{"name": "asha", "axes": [{"param": "x", "range": [0, 9]}],
 "command": ["$work/objective.sh", "{x}", "{epochs}"],
 "schedule": {"type": "asha", "resource": "epochs", "min": 1, "max": 9, "eta": 3, "metric": "val_loss"}}
JSON
as_user "$sweep_tool" expand asha.json -o "$work/asha" >/dev/null
as_user "$sweep_tool" submit asha -- --time=5 >asha.out 2>&1
asha_done() {
    for _ in $(seq 300); do
        if ! squeue -h -u "$test_user" -o %j | grep -q "^asha\." && [ "$(ls asha/rungs/b2.r0/*.json 2>/dev/null | wc -l)" = 9 ]; then return 0; fi
        sleep 1
    done
    return 1
}
check_asha() {
    asha_done || return 1
    python3 - <<'PY'
import json, math, os
def value(k, c):
    r = json.load(open(f"asha/rungs/b2.r{k}/{c}.json"))
    v = r.get("metrics", {}).get("val_loss")
    ok = r["exit_code"] == 0 and isinstance(v, (int, float)) and math.isfinite(v)
    return v if ok else math.inf
for k in (0, 1):
    rung = json.load(open(f"asha/rungs/b2.r{k}.json"))
    done = [c for c in rung["configs"] if os.path.exists(f"asha/rungs/b2.r{k}/{c}.json")]
    assert len(done) == len(rung["configs"]), (k, rung)
    promoted = json.load(open(f"asha/rungs/b2.r{k + 1}.json")) if os.path.exists(f"asha/rungs/b2.r{k + 1}.json") else {"configs": [], "arrays": []}
    top = sorted(done, key=lambda c: (value(k, c), c))[: len(done) // 3]
    top = [c for c in top if value(k, c) < math.inf]
    assert set(top) <= set(promoted["configs"]), (k, top, promoted)
    assert all(value(k, c) < math.inf for c in promoted["configs"]), promoted
    runs = [c for a in promoted["arrays"] for c in a["configs"]]
    assert sorted(runs) == promoted["configs"], promoted
PY
}
ok "asha promotes the top third of each rung once it ended, each configuration once" check_asha
finish
