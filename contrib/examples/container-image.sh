#!/bin/sh
# container-image.sh DIR: builds a tiny charliecloud image (a directory) from Debian's
# busybox-static, for trying --aihpc-container=DIR:
#
#   apt-get install busybox-static charliecloud-runtime
#   contrib/examples/container-image.sh /srv/images/busybox
#   sbatch --aihpc-container=/srv/images/busybox --wrap 'cat /etc/aihpc-image'
#
# The image has the mount points ch-run needs for aihpc (it cannot create them in a
# read-only image): /mnt/aihpc for the stage dir and /mnt/0 to /mnt/9 for the rest.
set -eu
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
dir=$1
busybox=$(command -v busybox 2>/dev/null || echo /bin/busybox)
[ -x "$busybox" ] || { echo "$0: busybox is missing: apt-get install busybox-static" >&2; exit 1; }
if ! file -L "$busybox" 2>/dev/null | grep -q 'statically linked' && ldd "$busybox" >/dev/null 2>&1; then
    echo "$0: $busybox is not statically linked: apt-get install busybox-static" >&2; exit 1
fi
[ ! -e "$dir" ] || { echo "$0: $dir exists; give a new directory" >&2; exit 1; }
tmp=$dir.tmp.$$
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"/bin "$tmp"/etc "$tmp"/dev "$tmp"/proc "$tmp"/sys "$tmp"/tmp "$tmp"/home \
    "$tmp"/root "$tmp"/usr/bin "$tmp"/var/tmp "$tmp"/mnt/aihpc
for i in 0 1 2 3 4 5 6 7 8 9; do mkdir -p "$tmp/mnt/$i"; done
cp "$busybox" "$tmp/bin/busybox"
for applet in $("$tmp/bin/busybox" --list); do
    [ -e "$tmp/bin/$applet" ] || ln -s busybox "$tmp/bin/$applet"
done
ln -s ../../bin/env "$tmp/usr/bin/env"
# ch-run binds the host's passwd and group over these.
touch "$tmp/etc/passwd" "$tmp/etc/group" "$tmp/etc/hosts" "$tmp/etc/resolv.conf"
echo "aihpc busybox image" >"$tmp/etc/aihpc-image"
chmod 1777 "$tmp/tmp" "$tmp/var/tmp"
chmod -R a+rX "$tmp"
mv "$tmp" "$dir"
trap - EXIT
echo "$dir"
