#!/usr/bin/env bash
# The .deb that `dpkg-buildpackage -us -uc -b` builds installs on Debian 12 and its
# plugin, from the installed path, loads into a real mini-cluster's Slurm and works.
#
# It installs into a throw-away copy of this Debian 12 host: a mount namespace whose root
# is an overlay of / with the writes in memory, so that the machine itself keeps no trace
# of the package. Run as root from a configured tree on Debian 12, with ports free:
#   AIHPC_SLURMCTLD_PORT / AIHPC_SLURMD_PORT (defaults 16917 / 17101).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/aihpc-deb.XXXXXX)
# The mini-cluster's state lies below: munged (as user munge) must reach its pid dir.
chmod 0755 "$work"
trap 'rm -rf "$work"' EXIT
version=$(sed -n 's/^PACKAGE_VERSION = //p' "$top/Makefile")
status=0
check() { if "${@:2}" >/dev/null 2>&1; then echo "ok - $1"; else echo "not ok - $1"; status=1; fi; }

# Build from the dist tarball, as a site would.
make -C "$top" -s dist >/dev/null
tar -C "$work" -xzf "$top/aihpc-$version.tar.gz"
(cd "$work/aihpc-$version" && DEB_BUILD_OPTIONS="nocheck ${DEB_BUILD_OPTIONS:-}" dpkg-buildpackage -us -uc -b) \
    >"$work/build.log" 2>&1 || { tail -40 "$work/build.log"; echo "not ok - dpkg-buildpackage failed"; exit 1; }
deb=$(ls "$work"/aihpc_"$version"*_*.deb)
echo "ok - dpkg-buildpackage -us -uc -b wrote $(basename "$deb")"
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
plugin=/usr/lib/$multiarch/slurm-wlm/aihpc.so
contents=$(dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\.||')
check "the plugin is in Slurm's plugin dir" grep -qx "$plugin" <<<"$contents"
for tool in aihpc-sweep aihpc-collect aihpc-stage aihpc-bind; do
    check "$tool is in /usr/bin" grep -qx "/usr/bin/$tool" <<<"$contents"
done
check "the man pages are installed" grep -q '/usr/share/man/man8/aihpc.8' <<<"$contents"
dpkg-deb -e "$deb" "$work/control"
check "plugstack.conf.d/aihpc.conf is a conffile" grep -qx /etc/slurm/plugstack.conf.d/aihpc.conf "$work/control/conffiles"

# Install and use it in the throw-away copy of this host.
cat >"$work/inside.sh" <<'INSIDE'
set -euo pipefail
deb=$1 plugin=$2 top=$3
status=0
check() { if "${@:2}" >/dev/null 2>&1; then echo "ok - $1"; else echo "not ok - $1"; status=1; fi; }
dpkg -i "$deb" >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; echo "not ok - dpkg -i"; exit 1; }
echo "ok - dpkg -i installs it on Debian $(cat /etc/debian_version)"
check "aihpc.conf enables the installed plugin" grep -qx "required $plugin" /etc/slurm/plugstack.conf.d/aihpc.conf
check "the installed tools run" /usr/bin/aihpc-sweep --version
check "the installed man page is found" man -w aihpc
export AIHPC_PLUGIN=$plugin
"$top/contrib/minicluster" up >/tmp/up.log 2>&1 || { cat /tmp/up.log; echo "not ok - the mini-cluster starts with the installed plugin"; exit 1; }
trap '"$top/contrib/minicluster" down >/dev/null 2>&1 || true' EXIT
eval "$("$top/contrib/minicluster" env)"
export SLURM_CONF
check "plugstack.conf names the installed path" grep -q "^required $plugin " "$(dirname "$SLURM_CONF")/plugstack.conf"
check "srun offers the --aihpc options" bash -c 'srun --help | grep -q -- --aihpc-stage'
out=$(runuser -u aihpc-test -- env SLURM_CONF="$SLURM_CONF" srun -N2 --aihpc-verbose --aihpc-dist hostname 2>&1 || true)
check "a job runs with the plugin, which logs its phases" grep -q '^aihpc' <<<"$out"
env_out=$(runuser -u aihpc-test -- env SLURM_CONF="$SLURM_CONF" srun -N1 -n2 --aihpc-dist printenv WORLD_SIZE 2>&1 || true)
check "the installed plugin sets the task environment" grep -qx 2 <<<"$(printf '%s\n' "$env_out" | sort -u)"
exit $status
INSIDE
cp "$deb" "$work/aihpc.deb"
export AIHPC_MINICLUSTER_DIR=$work/mc AIHPC_SLURMCTLD_PORT=${AIHPC_SLURMCTLD_PORT:-16917} AIHPC_SLURMD_PORT=${AIHPC_SLURMD_PORT:-17101}
unshare --mount --propagation private -- /bin/bash -c '
    set -e
    work=$1; shift
    mkdir -p "$work/layer"
    mount -t tmpfs tmpfs "$work/layer"
    mkdir -p "$work/layer/upper" "$work/layer/work" "$work/layer/root"
    mount -t overlay overlay -o lowerdir=/,upperdir="$work/layer/upper",workdir="$work/layer/work" "$work/layer/root"
    root=$work/layer/root
    mount -t proc proc "$root/proc"
    mount --rbind /sys "$root/sys"
    mount --rbind /dev "$root/dev"
    mount -t tmpfs -o mode=0755 tmpfs "$root/run"
    cd "$root"; mkdir -p .old-root; pivot_root . .old-root; cd /; umount -l /.old-root
    exec /bin/bash "$@"' deb-installs "$work" "$work/inside.sh" "$work/aihpc.deb" "$plugin" "$top" || status=1
exit $status
