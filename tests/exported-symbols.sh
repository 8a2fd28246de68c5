#!/bin/sh
# aihpc.so exports only the SPANK entry points and the plugin's identity: anything else
# could collide with symbols of slurmstepd or of other plugins.
so=${top_builddir:-.}/plugin/.libs/aihpc.so
[ -f "$so" ] || { echo "missing $so"; exit 1; }
exported=$(nm -D --defined-only "$so" | awk '{print $3}')
[ -n "$exported" ] || { echo "no symbols exported"; exit 1; }
unexpected=$(printf '%s\n' "$exported" | grep -v -E '^(slurm_spank_[a-z_]+|plugin_(name|type|version)|spank_plugin_version)$')
if [ -n "$unexpected" ]; then
    echo "unexpected exported symbols:"; printf '%s\n' "$unexpected"; exit 1
fi
for needed in plugin_name plugin_type plugin_version spank_plugin_version slurm_spank_init slurm_spank_task_init; do
    printf '%s\n' "$exported" | grep -qx "$needed" || { echo "missing $needed"; exit 1; }
done
echo "ok: $(printf '%s\n' "$exported" | wc -l) symbols, all SPANK"
