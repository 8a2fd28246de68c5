#!/usr/bin/env bash
# A task in a charliecloud image starts where the user stood: `srun --aihpc-container=IMG
# sh relative/path.sh` run from a working directory bound into the image finds its
# script; from one that is not bound, the task is told which directory it is missing
# (and a task that needs no file there prints nothing of aihpc's).
. "$(dirname "$0")/lib.sh"
command -v ch-run >/dev/null || skip_all "needs ch-run (charliecloud-runtime)"
plan 3
scratch=$(user_scratch)
off_tmp=$(user_scratch_off_tmp)
trap 'restore_site_keys; remove_scratch' EXIT
cd "$scratch" || exit 1
img=$scratch/busybox
"$top_builddir/contrib/examples/container-image.sh" "$img" >/dev/null
proj=$off_tmp/proj
as_user mkdir -p "$proj/sub" "$img$proj"  # the mount point at the same path inside
cat >"$proj/sub/hello.sh" <<'SCRIPT'
echo "inside=$(cat /etc/aihpc-image) pwd=$(pwd)"
SCRIPT
chmod a+r "$proj/sub/hello.sh"

out=$(cd "$proj" && as_user srun -N1 -n1 --time=5 --aihpc-container="$img" --aihpc-container-bind="$proj:$proj" sh sub/hello.sh 2>&1)
ok "a relative path resolves in the bound working directory" \
    bash -c '[ "$0" = "inside=aihpc busybox image pwd='"$proj"'" ]' "$out"
ok "a bound working directory gives no warning" bash -c '! grep -q "aihpc: warning" <<<"$0"' "$out"

out=$(cd "$proj" && as_user srun -N1 -n1 --time=5 --aihpc-container="$img" sh sub/hello.sh 2>&1)
ok "from an unbound working directory, the warning names it and the file the task will miss" \
    bash -c 'grep -q "aihpc: warning: .sub/hello.sh. is relative to the working directory '"$proj"', which is not bound into the container" <<<"$0"' "$out"
finish
