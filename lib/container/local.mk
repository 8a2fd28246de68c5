# lib/container: runtime detection, the runtime argv builder, image digests; the
# aihpc-launch helper that Slurm execs in place of a task's command; tests, man, bench.
noinst_LTLIBRARIES += lib/container/libaihpc_container.la
lib_container_libaihpc_container_la_SOURCES = \
	lib/container/image.cpp lib/container/image.hpp \
	lib/container/launch.cpp lib/container/launch.hpp \
	lib/container/digest.cpp lib/container/digest.hpp \
	lib/container/digest_cache.cpp lib/container/digest_cache.hpp
lib_container_libaihpc_container_la_CPPFLAGS = $(AM_CPPFLAGS) \
	-DAIHPC_LAUNCH_PATH='"$(pkglibexecdir)/aihpc-launch"'
plugin_module_libs += lib/container/libaihpc_container.la
EXTRA_DIST += lib/container/README

# aihpc-launch is installed where the plugin looks for it (AIHPC_LAUNCH_PATH); in the
# build tree the plugin finds tools/aihpc-launch beside plugin/.libs/aihpc.so.
pkglibexec_PROGRAMS = tools/aihpc-launch
tools_aihpc_launch_SOURCES = tools/aihpc-launch.cpp
tools_aihpc_launch_LDADD = lib/container/libaihpc_container.la $(tool_libs)

UNIT_TESTS += tests/unit/test_container
tests_unit_test_container_SOURCES = tests/unit/test_container.cpp tests/unit/cmocka_cxx.hpp tests/unit/temp_dir.hpp
tests_unit_test_container_LDADD = lib/container/libaihpc_container.la $(unit_test_libs)

EXTRA_DIST += contrib/examples/container-image.sh bench/container/run.sh
