#!/bin/sh
# python-image.sh DIR: a charliecloud directory image with the host's python3 and its
# standard library, on top of contrib/examples/container-image.sh's busybox image, for
# tests whose tasks run Python inside. It holds nothing of aihpc: no tool, no sweep dir.
# /etc/aihpc-image says "aihpc busybox image", a file only the image has.
set -eu
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
dir=$1
here=$(cd "$(dirname "$0")" && pwd)
python=$(readlink -f /usr/bin/python3)   # Debian's, whatever PATH says
stdlib=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
"$here/../../contrib/examples/container-image.sh" "$dir" >/dev/null
mkdir -p "$dir$(dirname "$python")" "$dir$stdlib"
cp "$python" "$dir$python"
ln -sf "$(basename "$python")" "$dir$(dirname "$python")/python3"
# The interpreter's shared libraries, at the paths its loader looks for them.
for lib in $(ldd "$python" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
    mkdir -p "$dir$(dirname "$lib")"
    cp -L "$lib" "$dir$lib"
done
# The standard library, without tests, tools and installed packages.
(cd "$stdlib" && tar -cf - --exclude=./test --exclude=./idlelib --exclude=./tkinter --exclude=./ensurepip \
    --exclude=./lib2to3 --exclude=./pydoc_data --exclude=__pycache__ --exclude='./config-*' \
    --exclude=./site-packages --exclude=./dist-packages .) | (cd "$dir$stdlib" && tar -xf -)
chmod -R a+rX "$dir"
echo "$dir"
