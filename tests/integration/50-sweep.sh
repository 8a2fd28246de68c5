#!/usr/bin/env bash
# aihpc-sweep on a real Slurm: chunking by MaxArraySize (1001 on the mini-cluster),
# packing, and every task of a 2,500-task sweep running once with its own parameters.
. "$(dirname "$0")/lib.sh"
plan 11
work=$(scratch)
cd "$work"
sweep_tool=$top_builddir/tools/aihpc-sweep

# Every task appends its index to runs.txt and reports its parameter as a metric.
as_user "$sweep_tool" expand 'a=range(0,2500)' 'tag=x' -o "$work/big" -- \
    sh -c 'echo "$1" >>"$AIHPC_SWEEP_DIR/../runs.txt"; echo "a=$2" >"$AIHPC_METRICS_FILE"' sh '{index}' '{a}' >/dev/null

ok "expand writes 2,500 tasks and an index of 2,500 offsets" \
    bash -c '[ "$(wc -l <big/tasks.jsonl)" = 2500 ] && [ "$(stat -c %s big/tasks.idx)" = 20000 ]'

dry=$(as_user "$sweep_tool" submit big --max-array-size auto --dry-run)
ok "with MaxArraySize read from scontrol, 2,500 tasks make 3 arrays at offsets 0, 1001 and 2002" \
    bash -c '[ "$(grep -c "^sbatch " <<<"$0")" = 3 ] &&
             grep -q -- "--array=0-1000 .*/main.sh 0 1001 1$" <<<"$0" &&
             grep -q -- "--array=0-1000 .*/main.sh 1001 1001 1$" <<<"$0" &&
             grep -q -- "--array=0-497 .*/main.sh 2002 498 1$" <<<"$0"' "$dry"

dry=$(as_user "$sweep_tool" submit big --max-array-size auto --pack 10 --dry-run)
ok "--pack 10 makes one array of 250 elements" \
    bash -c '[ "$(grep -c "^sbatch " <<<"$0")" = 1 ] && grep -q -- "--array=0-249 .*/main.sh 0 2500 10$" <<<"$0"' "$dry"

# The real run: 3 chunks of at most 100 elements, 10 tasks each (250 elements in all),
# so that the chunk offsets are exercised without thousands of array jobs.
out=$(as_user "$sweep_tool" submit big --max-array-size 100 --pack 10 -- --time=5 2>&1)
ids=$(awk '$1 ~ /^main\./ {print $2}' <<<"$out")
ok "submit prints one job id per chunk, and chunks.json records them" \
    bash -c '[ "$(wc -w <<<"$0")" = 3 ] && [ "$(grep -o "\"job_id\":\"[0-9]*\"" big/chunks.json | wc -l)" = 3 ]' "$ids"
for id in $ids; do wait_job "$id" 180 >/dev/null; done

ok "the generated script calls aihpc-sweep by its absolute path and logs to logs/%A_%a.out" \
    bash -c 'grep -q "^exec '"$sweep_tool"' run " big/scripts/main.sh && grep -q "^#SBATCH --output=$PWD/big/logs/%A_%a.out" big/scripts/main.sh && grep -q "^#SBATCH --time=5" big/scripts/main.sh'

check_results() {
    python3 - "$work/big" "$ids" <<'PY'
import json, os, sys
sweep, ids = sys.argv[1], sys.argv[2].split()
chunks = json.load(open(os.path.join(sweep, "chunks.json")))["arrays"]
job_of = {c["offset"]: c["job_id"] for c in chunks}
bad = []
for i in range(2500):
    path = os.path.join(sweep, "results", "%d.json" % i)
    if not os.path.exists(path):
        bad.append("%d: no result" % i); continue
    r = json.load(open(path))
    offset = i // 1000 * 1000
    if r["index"] != i or r["params"]["a"] != i or r["metrics"].get("a") != i or r["exit_code"] != 0:
        bad.append("%d: %s" % (i, r))
    elif str(r["array_job_id"]) != job_of[offset] or r["array_task_id"] != (i - offset) // 10:
        bad.append("%d: ran in %s_%s" % (i, r["array_job_id"], r["array_task_id"]))
    elif not r["node"] or not r["provenance"]["spec_hash"] or not r["start"]:
        bad.append("%d: incomplete %s" % (i, r))
print("\n".join(bad[:20]))
sys.exit(1 if bad else 0)
PY
}
ok "every one of the 2,500 results has its own index, parameter, metric and array element" check_results
ok "every task ran exactly once" \
    bash -c '[ "$(wc -l <runs.txt)" = 2500 ] && [ "$(sort -n runs.txt | uniq | wc -l)" = 2500 ] && [ "$(sort -n runs.txt | tail -1)" = 2499 ]'

ok "params --index 1234 finds the task in the index" \
    bash -c '[ "$('"$sweep_tool"' params big --index 1234)" = "{\"a\":1234,\"tag\":\"x\"}" ]'
ok "resubmit --missing has nothing to do when every task succeeded" \
    bash -c 'out=$(runuser -u '"$test_user"' -- env SLURM_CONF='"$SLURM_CONF"' '"$sweep_tool"' resubmit big --missing 2>&1) && grep -q "nothing to resubmit" <<<"$out"'
ok "a second submit of the same sweep is refused" \
    bash -c '! out=$(runuser -u '"$test_user"' -- env SLURM_CONF='"$SLURM_CONF"' '"$sweep_tool"' submit big --max-array-size 100 2>&1) && grep -q "already submitted" <<<"$out"'
# A sweep run through the plugin records what it staged and how it was bound.
mkdir -p data && echo 42 >data/answer && chmod -R a+rX data
as_user "$sweep_tool" expand 'x=1,2' -o "$work/staged" -- sh -c 'cat "$AIHPC_DATA_INPUT/answer" >/dev/null' >/dev/null
as_user "$sweep_tool" submit staged -- --aihpc-stage="$work/data:input" --aihpc-bind=cores >/dev/null
staged_job=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["arrays"][0]["job_id"])' staged/chunks.json)
wait_job "$staged_job" >/dev/null
provenance_recorded() {
    python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
for i in (0, 1):
    r = json.load(open(f"{work}/staged/results/{i}.json"))
    assert r["exit_code"] == 0, r
    staged = r["provenance"]["staged"]
    assert [s["name"] for s in staged] == ["input"], staged
    assert staged[0]["src"] == f"{work}/data", staged
    assert len(staged[0]["manifest_hash"]) >= 16, staged
    assert r["provenance"]["binding"]["cpus"], r["provenance"]
PY
}
ok "a task run through the plugin records its staged source, manifest hash and CPUs" provenance_recorded
finish
