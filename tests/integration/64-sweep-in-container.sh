#!/usr/bin/env bash
# A sweep whose tasks run in a charliecloud image that holds neither aihpc nor the sweep
# dir. --aihpc-container in the spec (slurm.aihpc) or in submit's sbatch args is enough:
# the batch script, and aihpc-sweep in it, stay on the host (submit adds
# --aihpc-container-scope=steps), and each task's command runs in the image as a step.
# Results, metrics, a failing task's reason and collection work as for any sweep.
. "$(dirname "$0")/lib.sh"
command -v ch-run >/dev/null || skip_all "needs ch-run (charliecloud-runtime)"
plan 8
scratch=$(user_scratch)
off_tmp=$(user_scratch_off_tmp)
trap 'restore_site_keys; remove_scratch' EXIT
cd "$scratch" || exit 1
sweep_tool=$top_builddir/tools/aihpc-sweep
collect_tool=$top_builddir/tools/aihpc-collect
img=$scratch/python-image
"$top_builddir/tests/integration/python-image.sh" "$img" >/dev/null
proj=$off_tmp/proj
as_user mkdir -p "$proj"
mkdir -p "$img$proj"  # the mount point of the bound working directory, at the same path

# The task reports what only the image has, where it stood, and whether it could see
# the sweep dir or any aihpc tool; a=3 fails as a diverging run would.
cat >"$proj/train.py" <<'PY'
import json, os, sys
a = int(sys.argv[sys.argv.index("--a") + 1])
if a == 3:
    print("diverged: loss is nan at step 7", file=sys.stderr)
    sys.exit(3)
tools = [p for p in os.environ.get("PATH", "").split(":") if p and os.path.exists(os.path.join(p, "aihpc-sweep"))]
with open(os.environ["AIHPC_METRICS_FILE"], "w") as f:
    json.dump({"score": a * a, "inside": open("/etc/aihpc-image").read().strip(), "cwd": os.getcwd(),
               "sees_sweep_dir": os.path.exists(os.environ["AIHPC_SWEEP_DIR"]), "sees_tool": bool(tools)}, f)
PY
chmod a+r "$proj/train.py"

ok "the image holds neither an aihpc tool nor the sweep dir" \
    bash -c '[ -z "$(find "$0" \( -name "aihpc-sweep" -o -name "aihpc-launch" -o -name "aihpc-node" \) -print)" ] &&
             [ ! -e "$0$1" ] && [ ! -e "$0$2" ]' "$img" "$off_tmp/sweep" "$top_builddir"

cat >"$scratch/spec.json" <<JSON
{"name": "incontainer", "axes": [{"param": "a", "values": [1, 2, 3, 4]}],
 "command": "python3 train.py --a {a}",
 "slurm": {"sbatch": ["--time=5"],
           "aihpc": ["--aihpc-container=$img", "--aihpc-container-bind=$proj:$proj"]}}
JSON
as_user "$sweep_tool" expand "$scratch/spec.json" -o "$off_tmp/sweep" >/dev/null
out=$(cd "$proj" && as_user "$sweep_tool" submit "$off_tmp/sweep" 2>&1)
id=$(awk '$1 ~ /^main\./ {print $2}' <<<"$out")
state=$(wait_job "$id" 180)
ok "the generated script keeps aihpc-sweep on the host (--aihpc-container-scope=steps)" \
    grep -qx -- "#SBATCH --aihpc-container-scope=steps" "$off_tmp/sweep/scripts/main.sh"

# check_results SWEEP INDEX:A...: each listed task succeeded in the image, from the bound
# working dir, with its metrics read back on the host.
check_results() {
    python3 - "$@" "$img" "$proj" <<'PY'
import json, os, sys
sweep, pairs, img, proj = sys.argv[1], sys.argv[2:-2], sys.argv[-2], sys.argv[-1]
bad = []
for pair in pairs:
    i, a = map(int, pair.split(":"))
    path = os.path.join(sweep, "results", "%d.json" % i)
    if not os.path.exists(path):
        bad.append("%d: no result" % i)
        continue
    r = json.load(open(path))
    m, p = r["metrics"], r["provenance"]
    if (r["exit_code"] != 0 or m.get("score") != a * a or m.get("inside") != "aihpc busybox image" or m.get("cwd") != proj
            or m.get("sees_sweep_dir") is not False or m.get("sees_tool") is not False):
        bad.append("%d: %s" % (i, r))
    elif p["container"] != os.path.realpath(img) or not p["container_digest"] or r["command"] != ["python3", "train.py", "--a", str(a)]:
        bad.append("%d: provenance %s command %s" % (i, p, r["command"]))
print("\n".join(bad))
sys.exit(1 if bad else 0)
PY
}
ok "every other task ran in the image, in the bound working dir, and its metrics came back (job $state)" \
    check_results "$off_tmp/sweep" 0:1 1:2 3:4

ok "the failing task's result has its exit code and the last lines of its stderr" \
    python3 -c 'import json, sys; r = json.load(open(sys.argv[1]))
sys.exit(not (r["exit_code"] == 3 and "diverged: loss is nan at step 7" in r.get("stderr_tail", [])))' "$off_tmp/sweep/results/2.json"

ok "aihpc-collect lists the failed task and ranks the others by their metric" \
    bash -c '[ "$("$0" "$1" --failed)" = 2 ] &&
             [ "$("$0" "$1" --format csv --sort score:max | cut -d, -f1 | tail -n +2 | tr "\n" " ")" = "3 1 0 2 " ]' \
    "$collect_tool" "$off_tmp/sweep"

ok "no metrics directory is left behind on the node" \
    bash -c '! ls -d /tmp/aihpc-sweep-metrics.* 2>/dev/null | grep -q .'

# The same from submit's sbatch args, with a spec that names no container.
as_user "$sweep_tool" expand 'a=5,6' -o "$off_tmp/sweep2" -- python3 train.py --a '{a}' >/dev/null
out=$(cd "$proj" && as_user "$sweep_tool" submit "$off_tmp/sweep2" -- --time=5 --aihpc-container="$img" \
    --aihpc-container-bind="$proj:$proj" 2>&1)
id=$(awk '$1 ~ /^main\./ {print $2}' <<<"$out")
state=$(wait_job "$id" 180)
ok "--aihpc-container in submit's sbatch args runs the tasks in the image as well (job $state)" \
    check_results "$off_tmp/sweep2" 0:5 1:6

ok "the task logs have no aihpc message" bash -c '! grep -Eh "aihpc[-a-z]*:" "$0"/logs/* "$1"/logs/*' "$off_tmp/sweep" "$off_tmp/sweep2"
finish
