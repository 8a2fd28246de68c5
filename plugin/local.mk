plugin_LTLIBRARIES += plugin/aihpc.la
plugin_aihpc_la_SOURCES = \
	plugin/dispatch.cpp plugin/hooks.hpp \
	plugin/spank_api.cpp plugin/spank_api.hpp \
	plugin/plugin_state.cpp plugin/plugin_state.hpp \
	plugin/options.cpp plugin/options.hpp \
	plugin/submit.cpp plugin/capabilities.hpp \
	plugin/node_work.cpp plugin/node_work.hpp \
	plugin/task_argv.cpp plugin/task_argv.hpp \
	plugin/stage_step.cpp plugin/gravity.cpp plugin/bind_step.cpp plugin/container_step.cpp plugin/task_wrapper.cpp \
	plugin/slurmstepd.cpp \
	plugin/job_script.cpp \
	plugin/slurm_release.cpp plugin/slurm_release.hpp \
	plugin/slurm_release_check.cpp plugin/slurm_release_check.hpp
# aihpc-node is installed where the plugin looks for it; in the build tree the plugin
# finds tools/aihpc-node beside plugin/.libs/aihpc.so.
plugin_aihpc_la_CPPFLAGS = $(AM_CPPFLAGS) -DAIHPC_NODE_PATH='"$(pkglibexecdir)/aihpc-node"'
plugin_aihpc_la_LIBADD = $(plugin_module_libs) lib/libaihpc.la
plugin_aihpc_la_LDFLAGS = -module -avoid-version -shared $(HARDEN_LDFLAGS) \
	-Wl,--version-script=$(srcdir)/plugin/aihpc.lds
EXTRA_DIST += plugin/aihpc.lds
# The plugin is loaded into srun, sbatch and slurmstepd, none of which carries the
# sanitizer runtimes: it is never built with them. Position-independent, and nothing
# visible but what dispatch.cpp marks for Slurm.
plugin_aihpc_la_CXXFLAGS = -std=c++20 -Wall -Wextra -Werror -pthread $(HARDEN_CXXFLAGS) -fPIC -fvisibility=hidden
TESTS += tests/exported-symbols.sh
EXTRA_DIST += tests/exported-symbols.sh
AM_TESTS_ENVIRONMENT = top_builddir=$(abs_top_builddir); export top_builddir;

# Slurm loads aihpc.so by path; the libtool archive beside it is of no use there.
install-exec-hook:
	rm -f $(DESTDIR)$(plugindir)/aihpc.la
uninstall-hook:
	rm -f $(DESTDIR)$(plugindir)/aihpc.so
