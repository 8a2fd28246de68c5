# lib/stage: the staging engine, aihpc-stage, its unit tests, man page and bench.
noinst_LTLIBRARIES += lib/stage/libaihpc_stage.la
lib_stage_libaihpc_stage_la_SOURCES = \
	lib/stage/fs.cpp lib/stage/fs.hpp lib/stage/tree_flush.cpp lib/stage/tree_flush.hpp \
	lib/stage/manifest.cpp lib/stage/manifest.hpp \
	lib/stage/io_pool.cpp lib/stage/io_pool.hpp \
	lib/stage/tree_copy.cpp lib/stage/tree_copy.hpp \
	lib/stage/archive.cpp lib/stage/archive.hpp \
	lib/stage/node_cache.cpp lib/stage/node_cache.hpp \
	lib/stage/shared_cache.cpp lib/stage/shared_cache.hpp \
	lib/stage/lease_holder.cpp lib/stage/lease_holder.hpp \
	lib/stage/squashfs_pack.cpp lib/stage/squashfs_pack.hpp \
	lib/stage/squashfs_mount.cpp lib/stage/squashfs_mount.hpp \
	lib/stage/fanout.cpp lib/stage/fanout.hpp \
	lib/stage/node_layout.cpp lib/stage/node_layout.hpp \
	lib/stage/node_request.cpp lib/stage/node_request.hpp \
	lib/stage/cache_ledger.cpp lib/stage/cache_ledger.hpp \
	lib/stage/cache_promises.cpp lib/stage/cache_promises.hpp \
	lib/stage/source.cpp lib/stage/source.hpp \
	lib/stage/stage_in.cpp lib/stage/stage_in.hpp \
	lib/stage/stage_out.cpp lib/stage/stage_out.hpp \
	lib/stage/warm_data.cpp lib/stage/warm_data.hpp
plugin_module_libs += lib/stage/libaihpc_stage.la
# aihpc-node's pieces of the node work and its task wrapper: linked into aihpc-node
# alone, never into the plugin, which execs that program rather than run them.
noinst_LTLIBRARIES += lib/stage/libaihpc_node.la
lib_stage_libaihpc_node_la_SOURCES = \
	lib/stage/node_steps.cpp lib/stage/node_steps.hpp \
	lib/stage/task_wrapper.cpp lib/stage/task_wrapper.hpp
EXTRA_DIST += lib/stage/README
UNIT_TESTS += tests/unit/test_stage
tests_unit_test_stage_SOURCES = tests/unit/test_stage.cpp tests/unit/cmocka_cxx.hpp tests/unit/temp_dir.hpp
# The tests write archives with libarchive itself; the engine loads it on its own.
tests_unit_test_stage_LDADD = lib/stage/libaihpc_stage.la $(unit_test_libs) $(ARCHIVE_LIBS)
UNIT_TESTS += tests/unit/test_stage_pack
tests_unit_test_stage_pack_SOURCES = tests/unit/test_stage_pack.cpp tests/unit/cmocka_cxx.hpp tests/unit/temp_dir.hpp
tests_unit_test_stage_pack_LDADD = lib/stage/libaihpc_stage.la $(unit_test_libs)
UNIT_TESTS += tests/unit/test_stage_image
tests_unit_test_stage_image_SOURCES = tests/unit/test_stage_image.cpp tests/unit/cmocka_cxx.hpp tests/unit/temp_dir.hpp
tests_unit_test_stage_image_LDADD = lib/stage/libaihpc_stage.la $(unit_test_libs)
UNIT_TESTS += tests/unit/test_stage_shared
tests_unit_test_stage_shared_SOURCES = tests/unit/test_stage_shared.cpp tests/unit/cmocka_cxx.hpp tests/unit/temp_dir.hpp
tests_unit_test_stage_shared_LDADD = lib/stage/libaihpc_stage.la $(unit_test_libs)
UNIT_TESTS += tests/unit/test_stage_fanout
tests_unit_test_stage_fanout_SOURCES = tests/unit/test_stage_fanout.cpp tests/unit/cmocka_cxx.hpp tests/unit/temp_dir.hpp
tests_unit_test_stage_fanout_LDADD = lib/stage/libaihpc_stage.la $(unit_test_libs)
UNIT_TESTS += tests/unit/test_node_request
tests_unit_test_node_request_SOURCES = tests/unit/test_node_request.cpp tests/unit/cmocka_cxx.hpp
tests_unit_test_node_request_LDADD = lib/stage/libaihpc_stage.la $(unit_test_libs)
UNIT_TESTS += tests/unit/test_node_layout
tests_unit_test_node_layout_SOURCES = tests/unit/test_node_layout.cpp tests/unit/cmocka_cxx.hpp tests/unit/temp_dir.hpp
tests_unit_test_node_layout_LDADD = lib/stage/libaihpc_stage.la $(unit_test_libs)
bin_PROGRAMS += tools/aihpc-stage
tools_aihpc_stage_SOURCES = tools/aihpc-stage.cpp
tools_aihpc_stage_LDADD = lib/stage/libaihpc_stage.la $(tool_libs)
EXTRA_DIST += man/aihpc-8-stage.roff \
	bench/stage/run.sh bench/stage/make_tree.py bench/stage/helper-cost.sh bench/stage/task-wrapper.sh bench/stage/remote.sh \
	bench/stage/latencyfs.c bench/stage/squashfs.sh bench/stage/fanout.sh bench/stage/shared.sh \
	tests/integration/20-stage-array.sh tests/integration/21-stage-faults.sh \
	tests/integration/22-stage-out.sh tests/integration/23-stage-security.sh \
	tests/integration/24-stage-remote-fuse.sh tests/integration/24-stage-squashfs.sh tests/integration/24-stage-fanout.sh \
	tests/integration/24-stage-shared.sh tests/integration/24-stage-gravity.sh
# Built on demand by bench/stage/fsync.sh, never by make all.
EXTRA_PROGRAMS += bench/stage/aihpc-bench-fsync
bench_stage_aihpc_bench_fsync_SOURCES = bench/stage/fsync_flush.cpp
bench_stage_aihpc_bench_fsync_LDADD = lib/stage/libaihpc_stage.la $(tool_libs)
CLEANFILES += bench/stage/aihpc-bench-fsync
EXTRA_DIST += bench/stage/fsync.sh
# Built on demand by bench/stage/prepare-cost.sh.
EXTRA_PROGRAMS += bench/stage/aihpc-bench-prepare-cost
bench_stage_aihpc_bench_prepare_cost_SOURCES = bench/stage/prepare_cost.cpp
bench_stage_aihpc_bench_prepare_cost_LDADD = lib/stage/libaihpc_stage.la $(tool_libs)
CLEANFILES += bench/stage/aihpc-bench-prepare-cost
EXTRA_DIST += bench/stage/prepare-cost.sh
UNIT_TESTS += tests/unit/test_stage_io
tests_unit_test_stage_io_SOURCES = tests/unit/test_stage_io.cpp tests/unit/cmocka_cxx.hpp tests/unit/temp_dir.hpp
tests_unit_test_stage_io_LDADD = lib/stage/libaihpc_stage.la $(unit_test_libs)
UNIT_TESTS += tests/unit/test_warm_data
tests_unit_test_warm_data_SOURCES = tests/unit/test_warm_data.cpp tests/unit/cmocka_cxx.hpp tests/unit/temp_dir.hpp
tests_unit_test_warm_data_LDADD = lib/stage/libaihpc_stage.la $(unit_test_libs)
