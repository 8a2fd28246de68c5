#!/bin/bash
# What the task wrapper (aihpc-node run-task) costs per task, this tree's against a
# baseline's, in the same run: `run-task /bin/true` with a stage-out whose LOCAL does not
# exist (so both do the same bookkeeping and copy nothing), the two interleaved, and
# /bin/true started by a plain fork and exec as the floor.
# Target: the signal forwarding costs at most 1 ms per task.
# Usage: bench/stage/task-wrapper.sh BASE_AIHPC_NODE [RUNS]   (default 300)
#   BASE_AIHPC_NODE: tools/aihpc-node of a tree built before the change, which reads its
#   request from AIHPC_STAGE_OUT_TASK; this tree's reads AIHPC_TASK_REQUEST.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
base=${1:?give the baseline tree\'s tools/aihpc-node}
runs=${2:-300}
work=$(mktemp -d /tmp/aihpc-bench-wrapper.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/root/jobs/1" "$work/root/jobs/1.aihpc"

python3 - "$runs" "$work" "$base" "$top/tools/aihpc-node" <<'PY'
import json, os, statistics, subprocess, sys, time

runs, work, base, new = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
request = json.dumps({"site": ["local_root=%s/root" % work], "options": {"aihpc-stage-out": "out:%s/dest" % work},
                      "job": 1, "uid": os.getuid(), "gid": os.getgid(), "node": "n1", "submit_dir": work,
                      "step": 0, "local_tasks": 1})
meta = work + "/root/jobs/1.aihpc"

def clear():
    for name in os.listdir(meta):
        os.unlink(os.path.join(meta, name))

variants = {
    "fork+exec /bin/true": ([["/bin/true"]], {}),
    "baseline run-task": ([[base, "run-task", "/bin/true"]], {"AIHPC_STAGE_OUT_TASK": request}),
    "this tree's run-task": ([[new, "run-task", "/bin/true"]], {"AIHPC_TASK_REQUEST": request}),
}
samples = {name: [] for name in variants}
for _ in range(runs):
    for name, (commands, env) in variants.items():
        clear()
        full = dict(os.environ, **env)
        start = time.perf_counter()
        subprocess.run(commands[0], env=full, check=True, stderr=subprocess.DEVNULL)
        samples[name].append(time.perf_counter() - start)
for name, s in samples.items():
    print("%-22s median %.3f ms   p90 %.3f ms" % (name, statistics.median(s) * 1e3,
                                                  statistics.quantiles(s, n=10)[8] * 1e3))
b = statistics.median(samples["baseline run-task"])
n = statistics.median(samples["this tree's run-task"])
print("this tree - baseline: %+.3f ms per task (target: at most +1 ms)" % ((n - b) * 1e3))
print("load average: %s" % open("/proc/loadavg").read().split()[0])
PY
