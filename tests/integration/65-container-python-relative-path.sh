#!/usr/bin/env bash
# `srun --aihpc-container=IMG python3 relative/path.py` from a working directory bound
# into a charliecloud image: Python, from the image, finds its script where the user
# stood. The batch script of an sbatch job does the same, and from a directory that is
# not bound the task is told which one it is missing.
. "$(dirname "$0")/lib.sh"
command -v ch-run >/dev/null || skip_all "needs ch-run (charliecloud-runtime)"
plan 4
scratch=$(user_scratch)
off_tmp=$(user_scratch_off_tmp)
trap 'restore_site_keys; remove_scratch' EXIT
cd "$scratch" || exit 1
img=$scratch/python-image
"$top_builddir/tests/integration/python-image.sh" "$img" >/dev/null
proj=$off_tmp/proj
as_user mkdir -p "$proj/src"
mkdir -p "$img$proj"  # the mount point, at the same path inside
cat >"$proj/src/train.py" <<'PY'
import os, sys
print("inside=%s cwd=%s args=%s" % (open("/etc/aihpc-image").read().strip(), os.getcwd(), " ".join(sys.argv[1:])))
PY
chmod a+r "$proj/src/train.py"
want="inside=aihpc busybox image cwd=$proj args=--lr 0.1"

out=$(cd "$proj" && as_user srun -N1 -n1 --time=5 --aihpc-container="$img" --aihpc-container-bind="$proj:$proj" \
    python3 src/train.py --lr 0.1 2>&1)
ok "srun python3 src/train.py runs the image's Python on the script in the bound working directory" \
    test "$out" = "$want"

jid=$(cd "$proj" && as_user sbatch --parsable --time=5 -o "$proj/batch.out" --aihpc-container="$img" \
    --aihpc-container-bind="$proj:$proj" --wrap "python3 src/train.py --lr 0.1")
state=$(wait_job "$jid" 120)
ok "an sbatch job's script starts in the bound submit directory too ($state)" \
    bash -c '[ "$(cat "$0")" = "$1" ]' "$proj/batch.out" "$want"

out=$(cd "$proj" && as_user srun -N1 -n1 --time=5 --aihpc-container="$img" python3 src/train.py --lr 0.1 2>&1)
ok "from an unbound working directory, the warning names it and the script Python will miss" \
    bash -c 'grep -q "aihpc: warning: .src/train.py. is relative to the working directory '"$proj"', which is not bound into the container" <<<"$0"' "$out"
ok "and Python, run in the image, indeed does not find it there" \
    bash -c 'grep -q "python3: can.t open file" <<<"$0"' "$out"
finish
