#!/bin/bash
# Affinity overhead, each figure against its baseline in the same run:
#   1. planning: `aihpc-bind plan` of a 16-GPU, 128-task DGX-2 node, whole process,
#      against `true` (target: under 5 ms more);
#   2. launch: `srun -n2 true` with --aihpc-bind=auto against srun without aihpc
#      (target: median ratio <= 1.10), when the mini-cluster is up.
# Usage: bench/bind/run.sh [RUNS]   (default 20; run from a built tree, as root for srun)
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
runs=${1:-20}
topologies=${AIHPC_TOPOLOGIES:-$top/tests/fixtures/topologies}
dgx2=$topologies/hwloc-nvidiaDGX2.xml
[ -f "$dgx2" ] || dgx2=""

slurm_conf=""
if [ -x "$top/contrib/minicluster" ] && "$top/contrib/minicluster" status >/dev/null 2>&1; then
    eval "$("$top/contrib/minicluster" env)"
    slurm_conf=$SLURM_CONF
fi

exec python3 - "$top" "$runs" "$dgx2" "$slurm_conf" <<'PY'
import os, resource, shutil, statistics, subprocess, sys, tempfile, time

top, runs, dgx2, slurm_conf = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
tool = os.path.join(top, "tools", "aihpc-bind")

def median_ms(cmd, env=None, n=runs):
    times = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000

def interleaved(a, b, env_a=None, env_b=None, n=runs):
    """Alternates the two commands so that load on the machine hits both alike."""
    ta, tb = [], []
    for _ in range(n):
        for cmd, env, out in ((a, env_a, ta), (b, env_b, tb)):
            start = time.perf_counter()
            subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            out.append(time.perf_counter() - start)
    return statistics.median(ta) * 1000, statistics.median(tb) * 1000

def cpu_ms(cmd, n):
    """CPU time (user + system) per run: what the command itself costs, whatever the
    machine's load does to wall-clock figures."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(n):
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) * 1000 / n

print("# aihpc-bind / plugin binding overhead, median of %d runs; load average %.1f"
      % (runs, os.getloadavg()[0]))
if dgx2:
    plan = [tool, "plan", "--topology", dgx2, "--tasks", "128", "--gpus", "0-15", "--json"]
    base, planned = interleaved(["true"], plan, n=max(runs, 50))
    verdict = "ok" if planned - base < 5.0 else "SLOW"
    print("plan DGX-2 16 GPUs 128 tasks: %.2f ms vs true %.2f ms: +%.2f ms (target < 5 ms) %s"
          % (planned, base, planned - base, verdict))
    cpu_base, cpu_plan = cpu_ms(["true"], max(runs, 50)), cpu_ms(plan, max(runs, 50))
    print("plan DGX-2 16 GPUs 128 tasks, CPU time (user+sys, load-independent): %.2f ms vs true %.2f ms: +%.2f ms"
          % (cpu_plan, cpu_base, cpu_plan - cpu_base))
else:
    print("plan DGX-2: skipped (no hwloc-nvidiaDGX2.xml; set AIHPC_TOPOLOGIES)")

if not slurm_conf:
    print("srun -n2 true: skipped (mini-cluster not up: contrib/minicluster up)")
    sys.exit(0)

# The baseline: a copy of slurm.conf whose PlugStackConfig is an empty file. srun reads
# it; slurmstepd takes its configuration from slurmd, so on the node aihpc stays loaded
# but, given no option, does nothing; the third figure isolates that idle cost.
work = tempfile.mkdtemp(prefix="aihpc-bench-bind.")
os.chmod(work, 0o755)
empty = os.path.join(work, "plugstack.conf")
open(empty, "w").close()
bare_conf = os.path.join(work, "slurm.conf")
with open(slurm_conf) as src, open(bare_conf, "w") as dst:
    for line in src:
        dst.write("PlugStackConfig=%s\n" % empty if line.startswith("PlugStackConfig=") else line)
for path in (empty, bare_conf):
    os.chmod(path, 0o644)

def env_for(conf):
    env = dict(os.environ)
    env["SLURM_CONF"] = conf
    for name in list(env):
        if name.startswith("AIHPC_") or name.startswith("SLURM_SPANK"):
            del env[name]
    return env

srun = ["srun", "-n2", "-N1", "--cpu-bind=none"]
try:
    for _ in range(2):   # warm-up: the first step after boot writes the topology cache
        subprocess.run(srun + ["--aihpc-bind=auto", "true"], env=env_for(slurm_conf), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bare, bound = interleaved(srun + ["true"], srun + ["--aihpc-bind=auto", "true"],
                              env_a=env_for(bare_conf), env_b=env_for(slurm_conf))
    idle, bound2 = interleaved(srun + ["true"], srun + ["--aihpc-bind=auto", "true"],
                               env_a=env_for(slurm_conf), env_b=env_for(slurm_conf))
    ratio = bound / bare
    print("srun -n2 true: --aihpc-bind=auto %.1f ms vs without aihpc in srun %.1f ms: ratio %.3f (target <= 1.10) %s"
          % (bound, bare, ratio, "ok" if ratio <= 1.10 else "SLOW"))
    print("srun -n2 true: --aihpc-bind=auto %.1f ms vs aihpc loaded, no option %.1f ms: ratio %.3f"
          % (bound2, idle, bound2 / idle))
finally:
    shutil.rmtree(work, ignore_errors=True)
PY
