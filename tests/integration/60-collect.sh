#!/usr/bin/env bash
# aihpc-collect on a real Slurm: a sweep with a failing task collected as a table, CSV,
# the failed list (alone and in one pass with -o), --status with jobs pending and ended,
# --watch, --sacct (with the mini-cluster's accounting, or without any), MLflow and HTML; then a 2-round closed
# loop (aihpc-sweep submit --rounds) that ends with round 2's results.
. "$(dirname "$0")/lib.sh"
plan 16
work=$(scratch)
cd "$work"
sweep_tool=$top_builddir/tools/aihpc-sweep
collect_tool=$top_builddir/tools/aihpc-collect

# 6 tasks; task 3 fails; each reports loss = lr * 10.
as_user "$sweep_tool" expand 'lr=0.1,0.2,0.3,0.4,0.5,0.6' -o "$work/s" -- \
    sh -c 'echo "loss=$(awk "BEGIN{print $0 * 10}")" >"$AIHPC_METRICS_FILE"; [ "$1" != 3 ]' '{lr}' '{index}' >/dev/null
out=$(as_user "$sweep_tool" submit s --max-array-size 100 -- --time=5)
wait_job "$(awk '{print $2}' <<<"$out")" 90 >/dev/null

table=$(as_user "$collect_tool" s)
ok "the table has a header and one row per task, the failed one marked" \
    bash -c '[ "$(wc -l <<<"$0")" = 7 ] && grep -Eq "^ +3 +failed +0.4 +4 +1 " <<<"$0" && [ "$(grep -c " done " <<<"$0")" = 5 ]' "$table"
csv=$(as_user "$collect_tool" s --format csv --sort loss:max --top 2)
ok "csv with --sort loss:max --top 2 gives the two highest losses" \
    bash -c '[ "$(head -1 <<<"$0")" = "index,status,lr,loss,exit_code,elapsed_s,node" ] &&
             [ "$(sed -n 2p <<<"$0" | cut -d, -f1-4)" = "5,done,0.6,6" ] && [ "$(sed -n 3p <<<"$0" | cut -d, -f1,4)" = "4,5" ] &&
             [ "$(wc -l <<<"$0")" = 3 ]' "$csv"
ok "every row names the node it ran on" \
    bash -c '[ "$(cut -d, -f7 <<<"$0" | tail -n +2 | grep -cE "^n[12]$")" = 2 ]' "$csv"
ok "--failed prints the failed index" bash -c '[ "$(runuser -u '"$test_user"' -- '"$collect_tool"' s --failed)" = 3 ]'

rm -f s/results/5.json
ok "--failed --format csv -o FILE: the table in FILE and the list (failed and missing) on stdout" \
    bash -c 'list=$(runuser -u '"$test_user"' -- '"$collect_tool"' s --failed --format csv -o '"$work"'/t.csv) &&
             [ "$list" = "3,5" ] && [ "$(wc -l <t.csv)" = 6 ] && grep -q "^3,failed," t.csv'
ok "--status counts done, failed and missing once the jobs have ended" \
    bash -c '[ "$(as_user() { runuser -u '"$test_user"' -- env SLURM_CONF='"$SLURM_CONF"' "$@"; }; as_user '"$collect_tool"' s --status | tr -s " " | tr "\n" ";")" = \
             "tasks 6;done 4;failed 1;missing 1;running 0;pending 0;" ]'

# A held array: every task is pending until it is cancelled.
as_user "$sweep_tool" expand 'k=1,2,3,4' -o "$work/held" -- true >/dev/null
held=$(as_user "$sweep_tool" submit held --max-array-size 100 -- --hold | awk '{print $2}')
status=$(as_user "$collect_tool" held --status --json)
ok "--status asks squeue: 4 tasks of a held array are pending" \
    bash -c '[ "$0" = "{\"tasks\":4,\"done\":0,\"failed\":0,\"missing\":0,\"running\":0,\"pending\":4}" ]' "$status"
scancel "$held"
wait_job "$held" 30 >/dev/null
ok "after scancel the same tasks are missing" \
    bash -c 'as_user() { runuser -u '"$test_user"' -- env SLURM_CONF='"$SLURM_CONF"' "$@"; }; as_user '"$collect_tool"' held --status | grep -q "^missing *4$"'

# --watch follows a live sweep to its end.
as_user "$sweep_tool" expand 'k=1,2,3' -o "$work/live" -- sh -c 'sleep 2' >/dev/null
as_user "$sweep_tool" submit live --max-array-size 100 -- --time=5 >/dev/null
ok "--watch returns 0 once every task of a live sweep is done" \
    bash -c 'as_user() { runuser -u '"$test_user"' -- env SLURM_CONF='"$SLURM_CONF"' "$@"; };
             as_user '"$collect_tool"' live --watch --timeout 60 2>'"$work"'/watch.err &&
             [ "$(ls live/results/*.json | wc -l)" = 3 ] && grep -q "3/3 done, 0 failed, 0 running, 0 pending" '"$work"'/watch.err'

if ! keeps_accounting; then
    ok "--sacct without accounting storage fails with a clear message and exit 1" \
        bash -c 'as_user() { runuser -u '"$test_user"' -- env SLURM_CONF='"$SLURM_CONF"' "$@"; };
                 out=$(as_user '"$collect_tool"' s --sacct 2>&1); rc=$?;
                 [ $rc = 1 ] && grep -q "^aihpc-collect: sacct failed .*accounting storage" <<<"$out"'
else
    ok "--sacct adds the state and exit code that accounting recorded" \
        bash -c 'out=$(runuser -u '"$test_user"' -- env SLURM_CONF='"$SLURM_CONF"' '"$collect_tool"' s --sacct --format csv) &&
                 head -1 <<<"$out" | grep -q ",State,ExitCode,Elapsed,MaxRSS$" && grep -q "^3,failed,.*,FAILED,1:0," <<<"$out" &&
                 [ "$(grep -c ",COMPLETED,0:0," <<<"$out")" = 4 ]'  # 5 left no result (removed above)
fi
ok "--mlflow writes a parent run and one child run per task with a result" \
    bash -c 'runuser -u '"$test_user"' -- '"$collect_tool"' s --mlflow '"$work"'/mlruns &&
             [ -f mlruns/0/meta.yaml ] && [ "$(ls -d mlruns/1/*/ | wc -l)" = 6 ] &&
             [ "$(cat mlruns/1/*/tags/mlflow.parentRunId | sort -u | wc -l)" = 1 ] &&
             [ "$(ls mlruns/1/*/metrics/loss | wc -l)" = 5 ]'
ok "--html writes one self-contained page with the table and plots" \
    bash -c 'runuser -u '"$test_user"' -- '"$collect_tool"' s --html '"$work"'/r.html &&
             grep -q "<table" r.html && grep -q "svg class=\"scatter\"" r.html && ! grep -q "https\?://" r.html'

# The closed loop: 2 rounds of 4 tasks, loss = (x - 3)^2.
as_user "$sweep_tool" expand 'x=uniform(0,10,n=4)' -o "$work/loop" -- \
    sh -c 'echo "loss=$(awk "BEGIN{print ($0 - 3) ^ 2}")" >"$AIHPC_METRICS_FILE"' '{x}' >/dev/null
out=$(as_user "$sweep_tool" submit loop --rounds 2 --metric loss:min --top 2 --max-array-size 100 -- --time=5)
ok "submit --rounds submits round 1 and its controller, and returns" \
    bash -c 'grep -q "^main.0 [0-9]*$" <<<"$0" && grep -q "^advance.1 [0-9]*$" <<<"$0" && [ -f loop/rounds.json ]' "$out"
for _ in $(seq 1 120); do
    grep -q '"state":"running"' loop/rounds.json 2>/dev/null || break
    sleep 0.5
done
ok "the loop ends done after 2 rounds, each round with its jobs, controller and best task" \
    python3 - "$work/loop/rounds.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
h = r["history"]
assert r["state"] == "done", r
assert [x["round"] for x in h] == [1, 2], h
assert h[1]["dir"].endswith("/loop/rounds/2"), h
assert all(x["jobs"] and x["controller"] and x["best"] for x in h), h
assert h[1]["best"]["metric"] <= h[0]["best"]["metric"] + 25, h
PY
ok "round 2 is a complete sweep dir with all its results, refined within the original span" \
    bash -c '[ -f loop/rounds/2/tasks.idx ] && [ "$(ls loop/rounds/2/results/*.json | wc -l)" = 4 ] &&
             runuser -u '"$test_user"' -- '"$collect_tool"' loop/rounds/2 --format csv |
             awk -F, "NR > 1 { if (\$2 != \"done\" || \$3 < 0 || \$3 > 10) bad = 1; n++ } END { exit bad || n != 4 }"'
ok "the controllers logged each step" \
    bash -c '[ "$(ls loop/logs/advance-*.out | wc -l)" = 2 ] && grep -q "closed loop done after 2 round" loop/logs/advance-*.out'
finish
