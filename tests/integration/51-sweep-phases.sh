#!/usr/bin/env bash
# A three-phase sweep (prep -> train -> eval) chained task by task with aftercorr:
# a failing prep stops only its own task's later phases, and resubmit --failed reruns
# exactly the failed indices.
. "$(dirname "$0")/lib.sh"
plan 9
work=$(scratch)
cd "$work"
sweep_tool=$top_builddir/tools/aihpc-sweep

# prep fails for a task while fail.INDEX exists; each phase leaves a mark and a line in
# runs.txt, and checks that the phase before it left its mark.
cat >spec.json <<SPEC
{"name": "chain", "axes": [{"param": "x", "range": [0, 10]}],
 "slurm": {"sbatch": ["--time=5"]},
 "phases": [
   {"name": "prep", "command": ["sh", "-c", "echo prep {index} >>$work/runs.txt; test ! -e $work/fail.{index} && touch $work/prep.{index}"]},
   {"name": "train", "after": "prep", "command": ["sh", "-c", "echo train {index} >>$work/runs.txt; test -e $work/prep.{index} && touch $work/train.{index}"]},
   {"name": "eval", "after": "train", "command": ["sh", "-c", "echo eval {index} >>$work/runs.txt; test -e $work/train.{index} && echo score={x} >\$AIHPC_METRICS_FILE"]}]}
SPEC
as_user "$sweep_tool" expand spec.json -o "$work/s" >/dev/null
as_user touch fail.7

dry=$(as_user "$sweep_tool" submit s --max-array-size auto --dry-run)
ok "the dry run chains train after prep and eval after train with aftercorr and kill-on-invalid-dep" \
    bash -c 'grep -q -- "--array=0-9 .*/prep.sh 0 10 1$" <<<"$0" &&
             grep -q -- "--array=0-9 --dependency=aftercorr:{prep.0} --kill-on-invalid-dep=yes .*/train.sh 0 10 1$" <<<"$0" &&
             grep -q -- "--dependency=aftercorr:{train.0} --kill-on-invalid-dep=yes .*/eval.sh" <<<"$0"' "$dry"

out=$(as_user "$sweep_tool" submit s --max-array-size auto 2>&1)
ids=$(awk '$1 ~ /^(prep|train|eval)\./ {print $2}' <<<"$out")
for id in $ids; do wait_job "$id" 120 >/dev/null; done

ok "prep of task 7 failed and every other prep succeeded" \
    bash -c 'grep -q "\"exit_code\":1," s/results/prep/7.json && [ "$(grep -l "\"exit_code\":0," s/results/prep/*.json | wc -l)" = 9 ]'
ok "tasks other than 7 ran prep, train and eval, in that order" \
    python3 - "$work/s" <<'PY'
import json, sys
sweep = sys.argv[1]
for i in [0, 1, 2, 3, 4, 5, 6, 8, 9]:
    prep = json.load(open("%s/results/prep/%d.json" % (sweep, i)))
    train = json.load(open("%s/results/train/%d.json" % (sweep, i)))
    ev = json.load(open("%s/results/%d.json" % (sweep, i)))
    assert prep["exit_code"] == train["exit_code"] == ev["exit_code"] == 0, i
    assert prep["end"] <= train["start"] and train["end"] <= ev["start"], i
    assert ev["metrics"] == {"score": i}, ev["metrics"]
PY
ok "task 7's train and eval never ran" \
    bash -c '! grep -q "^train 7$" runs.txt && ! grep -q "^eval 7$" runs.txt && [ ! -e s/results/train/7.json ] && [ ! -e s/results/7.json ]'
ok "no job of the sweep is left pending" bash -c '[ -z "$(squeue -h -u '"$test_user"' -n chain.train,chain.eval)" ]'

dry=$(as_user "$sweep_tool" resubmit s --failed --max-array-size auto --dry-run)
ok "resubmit --failed --dry-run resubmits only index 7, in every phase" \
    bash -c '[ "$(grep -c -- "--array=7 " <<<"$0")" = 3 ] && [ "$(grep -c "^sbatch " <<<"$0")" = 3 ]' "$dry"

rm -f fail.7
out=$(as_user "$sweep_tool" resubmit s --failed --max-array-size auto 2>&1)
ids=$(awk '$1 ~ /^(prep|train|eval)\./ {print $2}' <<<"$out")
for id in $ids; do wait_job "$id" 120 >/dev/null; done
ok "resubmit reports the failed index" grep -q "^1 tasks resubmitted: 7$" <<<"$out"
ok "task 7 now ran every phase and succeeded, under the same global index" \
    bash -c 'grep -q "\"exit_code\":0," s/results/7.json && grep -q "\"index\":7," s/results/7.json && [ -e s/results/prep/7.json.prev ]'
ok "no other task ran again" \
    bash -c '[ "$(grep -c . runs.txt)" = $((10 + 9 + 9 + 3)) ] && [ "$(grep -c "^prep 7$" runs.txt)" = 2 ]'
finish
