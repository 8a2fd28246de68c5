#!/usr/bin/env bash
# The RPM builds with `rpmbuild -ta` from the dist tarball, and holds the plugin in
# Slurm's plugin dir, the tools, the man pages and plugstack.conf.d/aihpc.conf as config.
# Run from a configured tree; rpmbuild is Debian's rpm package here.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/aihpc-rpm.XXXXXX)
trap 'rm -rf "$work"' EXIT
version=$(sed -n 's/^PACKAGE_VERSION = //p' "$top/Makefile")
make -C "$top" -s dist >/dev/null
rpmbuild -ta --define "_topdir $work" "$top/aihpc-$version.tar.gz" >"$work.log" 2>&1 ||
    { tail -40 "$work.log"; echo "not ok - rpmbuild -ta aihpc-$version.tar.gz failed"; exit 1; }
rm -f "$work.log"
rpm=$(find "$work/RPMS" -name "aihpc-$version-*.rpm" | head -1)
[ -n "$rpm" ] || { echo "not ok - no RPM was written"; exit 1; }
files=$(rpm -qlp "$rpm")
config=$(rpm -qcp "$rpm")
status=0
check() { if printf '%s\n' "$2" | grep -Eq "$3"; then echo "ok - $1"; else echo "not ok - $1"; status=1; fi; }
check "the plugin is in Slurm's plugin dir" "$files" '/slurm/aihpc\.so$'
for tool in aihpc-sweep aihpc-collect aihpc-stage aihpc-bind; do
    check "$tool is in bindir" "$files" "^/usr/bin/$tool\$"
done
check "aihpc-launch is installed" "$files" '/aihpc-launch$'
check "the man pages are installed" "$files" '/man8/aihpc\.8'
check "aihpc.conf is marked as config" "$config" '^/etc/slurm/plugstack\.conf\.d/aihpc\.conf$'
echo "RPM: $(basename "$rpm")"
exit $status
