#!/usr/bin/env bash
# The Snakemake example (contrib/examples/snakemake) run with Debian's snakemake on the
# mini-cluster, as the test user: a prep rule, a sweep round as one rule whose tasks
# stage the data with --aihpc-stage, a rule that collects and picks the best, and a
# second round refined from the first.
. "$(dirname "$0")/lib.sh"
command -v snakemake >/dev/null || skip_all "snakemake is not installed (Debian package snakemake)"
plan 5
work=$(scratch)
cd "$work"
cp -r "$top_builddir/contrib/examples/snakemake" "$work/flow"
chmod -R a+rX "$work/flow"

log=$(as_user env PATH="$top_builddir/tools:$PATH" HOME="$work" \
      snakemake -s "$work/flow/Snakefile" -d "$work" --cores 1 --config root="$work/runs" sbatch="--time=5" 2>&1)
rc=$?
ok "snakemake runs the workflow to its end" bash -c '[ "$0" = 0 ]' "$rc" || true
[ "$rc" = 0 ] || printf '%s\n' "$log" | tail -30 | sed 's/^/#   /'
ok "prep ran before the sweep and made the data" test -s "$work/runs/data/points.csv"
ok "every task of both rounds read the data from the node-local stage dir" \
    python3 - "$work/runs" <<'PY'
import glob, json, sys
for r in ("round-1", "round-2"):
    files = glob.glob(f"{sys.argv[1]}/{r}/results/*.json")
    assert files, r
    for f in files:
        res = json.load(open(f))
        assert res["exit_code"] == 0, (f, res.get("stderr_tail"))
        assert not res["metrics"]["data"].startswith(sys.argv[1]), res["metrics"]["data"]
        assert [s["name"] for s in res["provenance"]["staged"]] == ["points"], res["provenance"]
PY
ok "round 1 is the 18-task grid, round 2 refines it into 18 random draws" \
    bash -c '[ "$(ls '"$work"'/runs/round-1/results/*.json | wc -l)" = 18 ] && [ "$(ls '"$work"'/runs/round-2/results/*.json | wc -l)" = 18 ] &&
             grep -q "\"method\":\"random\"" '"$work"'/runs/round-2/sweep.json'
ok "each round's best is picked, and round 2 is no worse than round 1" \
    python3 -c '
import json, sys
b1 = json.loads(open(sys.argv[1] + "/best-1.jsonl").readline())
b2 = json.loads(open(sys.argv[1] + "/best-2.jsonl").readline())
assert b2["metrics"]["loss"] <= b1["metrics"]["loss"] * 1.000001, (b1, b2)
' "$work/runs"
finish
