#!/bin/sh
# No function over 100 lines and no source file over 600 in lib/, plugin/ and tools/,
# unless the README beside it says why, one line each:
#   size exception: FILE: why                 (a file over 600 lines)
#   size exception: FILE FUNCTION: why        (a function over 100 lines)
# An exception that no longer applies fails too, so that the list stays the truth.
# The functions are found by universal-ctags, which knows C++; its line and end fields
# give each function's extent.
max_function=100
max_file=600
cd "${srcdir:-.}" || exit 1
if ! ctags --version 2>/dev/null | grep -q 'Universal Ctags'; then
    echo "universal-ctags is not installed: install it (Debian: apt-get install universal-ctags; contrib/deps does)"
    exit 1
fi
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
find lib plugin tools -type f \( -name '*.cpp' -o -name '*.hpp' \) | LC_ALL=C sort >"$tmp/files"
[ -s "$tmp/files" ] || { echo "no sources found below $(pwd)"; exit 1; }

# What is too long: "FILE LINES" and "FILE FUNCTION LINES".
xargs wc -l <"$tmp/files" | awk -v max="$max_file" '$2 != "total" && $1 > max { print $2, $1 }' >"$tmp/long"
xargs ctags --languages=C++ --kinds-C++=f --fields=+ne --excmd=number -f - <"$tmp/files" >"$tmp/tags" ||
    { echo "ctags failed"; exit 1; }
awk -F '\t' -v max="$max_function" '{
    start = $3 + 0; end = 0
    for (i = 4; i <= NF; i++) if ($i ~ /^end:/) end = substr($i, 5) + 0
    if (end - start + 1 > max) print $2, $1, end - start + 1
}' "$tmp/tags" >>"$tmp/long"

# What the READMEs allow: "FILE" or "FILE FUNCTION", each with a reason.
for readme in lib/*/README plugin/README tools/README; do
    [ -f "$readme" ] && sed -n "s|^[[:space:]]*size exception: ||p" "$readme" | sed "s|^|$readme\t|"
done >"$tmp/allowed"

awk -F '\t' '
    FILENAME == ARGV[1] {
        split($2, part, ": ")
        key = part[1]; reason = substr($2, length(key) + 3)
        if (reason !~ /[^[:space:]]/) { print "FAIL: " $1 ": the exception for " key " gives no reason"; bad = 1 }
        allowed[key] = $1; next
    }
    {
        n = split($0, f, " "); key = f[1]; for (i = 2; i < n; i++) key = key " " f[i]
        what = (n == 2) ? "file" : "function"
        if (key in allowed) { used[key] = 1; next }
        print "FAIL: " what " " key " has " f[n] " lines (over " ((n == 2) ? '"$max_file"' : '"$max_function"') "): split it, or say why in its README (size exception: " key ": why)"
        bad = 1
    }
    END {
        for (key in allowed) if (!(key in used)) {
            print "FAIL: " allowed[key] " lists " key ", which is no longer over the limit: remove the line"
            bad = 1
        }
        exit bad
    }' "$tmp/allowed" "$tmp/long" || exit 1
echo "ok: no function over $max_function lines and no file over $max_file beyond the $(wc -l <"$tmp/allowed") documented exceptions"
