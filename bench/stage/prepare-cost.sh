#!/bin/bash
# What a cache-mode prepare costs beside another user who holds a million cached files:
# root_cache_limits for the staging user (which measures that user alone and takes the
# other's measures from root's ledger) against a refresh of the whole ledger (a walk of
# every user's cache, as each prepare did before), in the same run, as a ratio.
#   bench/stage/prepare-cost.sh [FILES] [ROUNDS]   (default 1000000 and 5; as root)
# The cache is made under /var/tmp (IMAGE_BASE), on the file system local_root would use.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$here/../.." && pwd)
files=${1:-1000000}
rounds=${2:-5}
[ "$(id -u)" = 0 ] || { echo "prepare-cost.sh: run as root (root's ledger must be root's)" >&2; exit 1; }
make -C "$build" -s bench/stage/aihpc-bench-prepare-cost >/dev/null
work=$(mktemp -d "${IMAGE_BASE:-/var/tmp}/aihpc-bench-prepare.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "# one user with $files cached files; the staging user with 100"
"$build/bench/stage/aihpc-bench-prepare-cost" "$work/root" "$files" "$rounds" | awk '
    { user += $1; full += $2; n++; printf "round %d: prepare of the other user %.4f s, whole-ledger walk %.3f s\n", n, $1, $2 }
    END { if (n) printf "mean: prepare %.4f s, walk %.3f s; the walk costs %.0fx the prepare\n", user / n, full / n, full / user }'
