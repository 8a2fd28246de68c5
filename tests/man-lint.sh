#!/bin/sh
# Every installed man page passes mandoc's lint with nothing to warn about (a date it
# cannot parse, a macro it does not know, a broken table): what man shows is what was
# written. The pages are the built ones, and each names the configured version.
top=${top_builddir:-.}
command -v mandoc >/dev/null 2>&1 || {
    echo "mandoc is not installed: install it (Debian: apt-get install mandoc; contrib/deps does)"
    exit 1
}
[ -n "${man_pages:-}" ] || { echo "no man pages named (man_pages is empty)"; exit 1; }
status=0
for page in $man_pages; do
    [ -f "$top/$page" ] || { echo "FAIL: $page was not built"; status=1; continue; }
    if ! mandoc -Tlint -Wwarning "$top/$page"; then
        echo "FAIL: $page has mandoc warnings"
        status=1
    fi
    if ! head -n 1 "$top/$page" | grep -q "^\.TH .* \"aihpc ${package_version:?}\" "; then
        echo "FAIL: $page does not say the configured version (aihpc $package_version): $(head -n 1 "$top/$page")"
        status=1
    fi
done
[ $status = 0 ] && echo "ok: $man_pages"
exit $status
