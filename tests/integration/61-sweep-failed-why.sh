#!/usr/bin/env bash
# Why a task failed, read back from its result: a two-phase sweep on the mini-cluster
# whose train phase fails for one task with a Python traceback and is killed by a
# signal for another; aihpc-collect --failed --why names the phase, the exit code or
# signal and the last lines of stderr. NaN metrics come back as null plus non_finite.
. "$(dirname "$0")/lib.sh"
plan 5
work=$(scratch)
cd "$work"
sweep_tool=$top_builddir/tools/aihpc-sweep
collect_tool=$top_builddir/tools/aihpc-collect

cat >train.py <<'PY'
import json, math, os, signal, sys
x = int(sys.argv[1])
with open(os.environ["AIHPC_METRICS_FILE"], "w") as f:
    json.dump({"loss": math.nan if x == 1 else x / 10, "steps": 2**62 + 1}, f)
if x == 2:
    for i in range(30):
        print(f"epoch {i}", file=sys.stderr)
    raise ValueError("learning rate diverged")
if x == 3:
    os.kill(os.getpid(), signal.SIGKILL)
PY
cat >spec.json <<SPEC
{"name": "why", "axes": [{"param": "x", "values": [0, 1, 2, 3]}],
 "slurm": {"sbatch": ["--time=5"]},
 "phases": [
   {"name": "prep", "command": ["true"]},
   {"name": "train", "after": "prep", "command": ["python3", "$work/train.py", "{x}"]}]}
SPEC
as_user "$sweep_tool" expand spec.json -o "$work/s" >/dev/null
out=$(as_user "$sweep_tool" submit s --max-array-size auto 2>&1)
for id in $(awk '$1 ~ /^(prep|train)\./ {print $2}' <<<"$out"); do wait_job "$id" 120 >/dev/null; done

why=$(as_user "$collect_tool" s --failed --why)
ok "--failed --why lists the failed indices first" bash -c '[ "$(head -1 <<<"$0")" = "2-3" ]' "$why"
ok "the Python failure shows its phase, exit code and traceback" \
    bash -c 'grep -q "^task 2: phase train, exit code 1" <<<"$0" && grep -q "^  | ValueError: learning rate diverged$" <<<"$0" &&
             ! grep -q "epoch 9$" <<<"$0" && grep -q "epoch 29$" <<<"$0"' "$why"
ok "the killed task shows the signal" bash -c 'grep -q "^task 3: phase train, killed by SIGKILL" <<<"$0"' "$why"
ok "the result keeps the last 20 lines of stderr" \
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); t=r["stderr_tail"]; assert len(t)==20 and t[-1].startswith("ValueError"), t' "$work/s/results/2.json"
jsonl=$(as_user "$collect_tool" s --format jsonl)
ok "a NaN metric is null with a non_finite list, and 64-bit integers stay exact" \
    python3 -c '
import json, sys
rows = {r["index"]: r for r in map(json.loads, sys.argv[1].splitlines())}
assert rows[1]["metrics"]["loss"] is None and rows[1]["non_finite"] == ["loss"], rows[1]
assert rows[0]["metrics"]["steps"] == 2**62 + 1 and rows[0]["metrics"]["loss"] == 0.0
' "$jsonl"
finish
