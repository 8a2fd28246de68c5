# The tools link lib/ statically (a convenience library), so the build tree holds real
# executables, not libtool wrappers.
tool_libs = lib/libaihpc.la

# aihpc-node: the node work the plugin runs out of slurmstepd (fork, then exec at once).
pkglibexec_PROGRAMS += tools/aihpc-node
tools_aihpc_node_SOURCES = tools/aihpc-node.cpp
tools_aihpc_node_LDADD = lib/stage/libaihpc_node.la lib/stage/libaihpc_stage.la lib/container/libaihpc_container.la lib/sweep/libaihpc_sweep.la $(tool_libs)
# Started for every step that stages: without libstdc++ to load and relocate, each start
# costs less.
# (Not under the sanitizers, whose runtimes take over operator new from the shared one.)
if SANITIZERS
tools_aihpc_node_LDFLAGS = $(AM_LDFLAGS)
else
tools_aihpc_node_LDFLAGS = $(AM_LDFLAGS) -static-libstdc++ -static-libgcc
endif
