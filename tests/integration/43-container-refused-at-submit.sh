#!/usr/bin/env bash
# Container policy is enforced at submit: an image outside image_allow, a runtime
# outside container_runtimes, a registry reference with registry=no and a missing
# image are refused by sbatch and srun with an aihpc: message, and nothing is queued.
# The site keys go into a copy of the configuration that only the submitting commands
# read.
# Run as root on a machine with the mini-cluster up; jobs run as the test user.
. "$(dirname "$0")/lib.sh"
command -v ch-run >/dev/null || skip_all "needs ch-run (charliecloud-runtime)"
here=$top_builddir/tests/integration
tree=$top_builddir

plan 7
scratch=$(user_scratch)
cd "$scratch" || exit 1
mkdir -p "$scratch/allowed" "$scratch/elsewhere"
: >"$scratch/allowed/ok.sif"; : >"$scratch/elsewhere/bad.sif"
"$tree/contrib/examples/container-image.sh" "$scratch/allowed/busybox" >/dev/null
chmod -R a+rX "$scratch"

# A client-side configuration: the cluster's slurm.conf, pointing at a plugstack.conf
# with the container keys added.
plugstack=$(scontrol show config | sed -n 's/^PlugStackConfig *= *//p')
sed "/aihpc.so/ s|\$| image_allow=$scratch/allowed container_runtimes=charliecloud,apptainer|" "$plugstack" >"$scratch/plugstack.conf"
sed "s|^PlugStackConfig=.*|PlugStackConfig=$scratch/plugstack.conf|" "$SLURM_CONF" >"$scratch/slurm.conf"
chmod 0644 "$scratch/plugstack.conf" "$scratch/slurm.conf"

queued() { squeue -h -u "$test_user" -o %i | sort | tr '\n' ' '; }
# refused WHAT NEEDLE CMD...: CMD fails, says NEEDLE on stderr, and queues nothing.
refused() {
    local what=$1 needle=$2 before out rc
    shift 2
    before=$(queued)
    out=$(as_user env SLURM_CONF="$scratch/slurm.conf" "$@" 2>&1)
    rc=$?
    if [ $rc -ne 0 ] && grep -qF -- "$needle" <<<"$out" && [ "$(queued)" = "$before" ] && ! grep -q 'Submitted batch job' <<<"$out"; then
        pass "$what"
    else
        fail "$what" "rc=$rc" "$out"
    fi
}

refused "sbatch refuses an image outside image_allow" \
    "aihpc: --aihpc-container: image $scratch/elsewhere/bad.sif is outside the directories this cluster allows images from (image_allow=$scratch/allowed)" \
    sbatch --aihpc-container="$scratch/elsewhere/bad.sif" --wrap true
refused "sbatch refuses a runtime outside container_runtimes" \
    "aihpc: --aihpc-container: 'enroot:$scratch/allowed/busybox' needs enroot, which this cluster does not allow (container_runtimes=charliecloud,apptainer)" \
    sbatch --aihpc-container="enroot:$scratch/allowed/busybox" --wrap true
refused "sbatch refuses an image that does not exist" \
    "aihpc: --aihpc-container: image $scratch/allowed/missing.sif cannot be used: No such file or directory" \
    sbatch --aihpc-container="$scratch/allowed/missing.sif" --wrap true
refused "sbatch refuses a registry reference when registry=no" \
    "this cluster does not allow them (site key registry=no)" \
    sbatch --aihpc-container=docker://alpine --wrap true
refused "an #SBATCH line with a refused image is refused the same way" \
    "is outside the directories this cluster allows images from" \
    sh -c "printf '#!/bin/sh\n#SBATCH --aihpc-container=$scratch/elsewhere/bad.sif\ntrue\n' | sbatch"
refused "srun refuses an image outside image_allow before any step starts" \
    "is outside the directories this cluster allows images from" \
    srun -Q -n1 --aihpc-container="$scratch/elsewhere/bad.sif" true
out=$(as_user env SLURM_CONF="$scratch/slurm.conf" srun -Q -n1 --aihpc-container="$scratch/allowed/busybox" cat /etc/aihpc-image 2>&1)
ok "an image under image_allow with an allowed runtime is accepted and runs ($out)" test "$out" = "aihpc busybox image"
finish
