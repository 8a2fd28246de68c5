#!/bin/bash
# What running node work in an exec'd aihpc-node costs per step, against the plugin that
# forked slurmstepd and staged in the copy (no exec), in the same run:
#   `srun -n2 --aihpc-stage=TREE true` on a cache hit, the two plugins interleaved
#   (target: at most 5 ms more per step).
# The tree is world-readable, so this tree's plugin hits in the node's shared cache; it
# also runs with --aihpc-stage-mode=user, a hit in the user's own cache, interleaved:
# a shared hit must cost no more than that.
# The baseline plugin is built from BASE_REF (default: the last commit before aihpc-node)
# into a scratch worktree, once; or give a built one as AIHPC_BASE_PLUGIN=/path/aihpc.so.
# AIHPC_OTHER_PLUGIN=/path/aihpc.so adds another built tree's plugin (an earlier state
# of this one, say) to the same interleaved runs.
# Usage: bench/stage/helper-cost.sh [RUNS]   (default 20; as root, mini-cluster up)
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
runs=${1:-20}
base_ref=${BASE_REF:-$(git -C "$top" log --format=%H -1 --grep='^Node work out of slurmstepd' 2>/dev/null)^}
"$top/contrib/minicluster" status >/dev/null 2>&1 || { echo "helper cost: skipped (mini-cluster not up)"; exit 0; }
eval "$("$top/contrib/minicluster" env)"
export SLURM_CONF
plugstack=$(dirname "$SLURM_CONF")/plugstack.conf

base_plugin=${AIHPC_BASE_PLUGIN:-}
if [ -z "$base_plugin" ]; then
    base_tree=/tmp/aihpc-bench-base
    if [ ! -f "$base_tree/plugin/.libs/aihpc.so" ]; then
        echo "# building the baseline plugin from $base_ref in $base_tree"
        rm -rf "$base_tree"
        git -C "$top" worktree add -f --detach "$base_tree" "$base_ref" >/dev/null
        (cd "$base_tree" && ./autogen.sh >/dev/null 2>&1 && ./configure -q && make -j"$(nproc)" >/dev/null 2>&1)
    fi
    base_plugin=$base_tree/plugin/.libs/aihpc.so
fi
chmod -R a+rX "$(dirname "$(dirname "$(dirname "$base_plugin")")")" 2>/dev/null || true

work=$(mktemp -d /tmp/aihpc-bench-helper.XXXXXX)
chmod 0755 "$work"
cp "$plugstack" "$work/plugstack.orig"
# Not exec: the trap must run to put plugstack.conf back and remove the scratch tree.
trap 'cp "$work/plugstack.orig" "$plugstack"; rm -rf "$work"' EXIT
python3 "$top/bench/stage/make_tree.py" "$work/tree" 200 >/dev/null
chmod -R a+rX "$work"

python3 - "$runs" "$plugstack" "$work" "$base_plugin" "$top/plugin/.libs/aihpc.so" ${AIHPC_OTHER_PLUGIN:-} <<'PY'
import re, statistics, subprocess, sys, time

runs, plugstack, work, base_so, new_so = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
others = sys.argv[6:]
original = open(work + "/plugstack.orig").read()

def use(plugin):
    text = re.sub(r"^required \S*aihpc\.so", "required " + plugin, original, flags=re.M)
    open(plugstack, "w").write(text)

def command(mode):
    return ["runuser", "-u", "aihpc-test", "--", "srun", "-n2", "-w", "n1",
            "--aihpc-stage=%s/tree:benchtree" % work] + (["--aihpc-stage-mode=" + mode] if mode else []) + ["true"]

# (label, plugin, mode): the baseline, this tree (a shared hit), this tree in user mode.
variants = [("base", base_so, None), ("new", new_so, None), ("new-user", new_so, "user")]
variants += [(other, other, None) for other in others]
samples = {label: [] for label, _, _ in variants}
for _, plugin, mode in variants:   # one cold stage each, so that every timed run is a hit
    use(plugin)
    subprocess.run(command(mode), check=True, stdout=subprocess.DEVNULL)
for _ in range(runs):
    for label, plugin, mode in variants:
        use(plugin)
        start = time.perf_counter()
        subprocess.run(command(mode), check=True, stdout=subprocess.DEVNULL)
        samples[label].append((time.perf_counter() - start) * 1000)
base, new, user = (statistics.median(samples[k]) for k in ("base", "new", "new-user"))
verdict = "ok" if new - base <= 5.0 else "SLOW"
print("# exec'd node helper against the forked child, srun -n2 --aihpc-stage (cache hit), median of %d" % runs)
print("forked child (baseline): %.1f ms   exec'd aihpc-node: %.1f ms   difference %+.1f ms   ratio %.3f (target <= +5 ms) %s"
      % (base, new, new - base, new / base, verdict))
print("shared-cache hit: %.1f ms   user-cache hit: %.1f ms   ratio %.3f (target: no more) %s"
      % (new, user, new / user, "ok" if new <= user * 1.02 else "SLOWER"))
for other in others:
    median = statistics.median(samples[other])
    print("%s: %.1f ms   difference %+.1f ms   ratio %.3f" % (other, median, median - base, median / base))
PY
