#!/bin/sh
# The plugin and the tools are built hardened: full RELRO with immediate binding, stack
# protector, fortified libc calls (where configure found a level to use), position
# independent code, and (for the plugin) nothing visible but the SPANK symbols, which
# exported-symbols.sh checks.
top=${top_builddir:-.}
status=0
fail() { echo "not hardened: $*"; status=1; }
for bin in "$top/plugin/.libs/aihpc.so" "$top/tools/aihpc-sweep" "$top/tools/aihpc-stage" \
           "$top/tools/aihpc-bind" "$top/tools/aihpc-collect" "$top/tools/aihpc-node" "$top/tools/aihpc-launch"; do
    [ -f "$bin" ] || { fail "$bin is missing"; continue; }
    readelf -lW "$bin" | grep -q GNU_RELRO || fail "$bin has no RELRO segment"
    readelf -dW "$bin" | grep -Eq '\(BIND_NOW\)|\(FLAGS\).*NOW' || fail "$bin does not bind immediately (-z now)"
    readelf -dW "$bin" | grep -q TEXTREL && fail "$bin has text relocations (not position independent)"
    undefined=$(nm -D --undefined-only "$bin" | awk '{print $2}')
    printf '%s\n' "$undefined" | grep -q '^__stack_chk_fail' || fail "$bin has no stack protector"
    case "${HARDEN_FORTIFY:-}" in
    none*) ;;
    *) printf '%s\n' "$undefined" | grep -Eq '^__[a-z_]+_chk' || fail "$bin calls no fortified libc function" ;;
    esac
done
[ $status = 0 ] && echo "ok: RELRO, BIND_NOW, stack protector, fortify ${HARDEN_FORTIFY:-}"
exit $status
