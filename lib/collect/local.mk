# lib/collect: the result reader, the Slurm join (squeue, sacct), the writers (table,
# csv, jsonl, markdown, MLflow file store, HTML report); the aihpc-collect tool, its unit
# tests, man page, bench and integration test.
noinst_LTLIBRARIES += lib/collect/libaihpc_collect.la
lib_collect_libaihpc_collect_la_SOURCES = \
	lib/collect/result_table.cpp lib/collect/result_table.hpp lib/collect/table_view.cpp \
	lib/collect/result_json.cpp lib/collect/result_json.hpp \
	lib/collect/result_files.cpp lib/collect/result_files.hpp \
	lib/collect/row_store.cpp lib/collect/row_store.hpp \
	lib/collect/writers.cpp lib/collect/writers.hpp \
	lib/collect/queue.cpp lib/collect/queue.hpp \
	lib/collect/mlflow.cpp lib/collect/mlflow.hpp \
	lib/collect/html.cpp lib/collect/html.hpp \
	lib/collect/accounting.cpp lib/collect/accounting.hpp
EXTRA_DIST += lib/collect/README

bin_PROGRAMS += tools/aihpc-collect
tools_aihpc_collect_SOURCES = tools/aihpc-collect.cpp
tools_aihpc_collect_LDADD = lib/collect/libaihpc_collect.la lib/sweep/libaihpc_sweep.la $(tool_libs)

UNIT_TESTS += tests/unit/test_collect
tests_unit_test_collect_SOURCES = tests/unit/test_collect.cpp tests/unit/cmocka_cxx.hpp tests/unit/temp_dir.hpp tests/unit/built_tool.hpp
tests_unit_test_collect_LDADD = lib/collect/libaihpc_collect.la lib/sweep/libaihpc_sweep.la $(unit_test_libs)
# The closed loop of aihpc-sweep submit --rounds (lib/sweep/rounds and aihpc-sweep advance).
UNIT_TESTS += tests/unit/test_collect_rounds
tests_unit_test_collect_rounds_SOURCES = tests/unit/test_collect_rounds.cpp tests/unit/cmocka_cxx.hpp tests/unit/temp_dir.hpp tests/unit/built_tool.hpp
tests_unit_test_collect_rounds_LDADD = lib/sweep/libaihpc_sweep.la $(unit_test_libs)

EXTRA_DIST += bench/collect/run.sh bench/collect/reference.py \
	tests/integration/60-collect.sh
# The large-sweep paths: the single-pass result reader, compact rows, --top and --sort.
UNIT_TESTS += tests/unit/test_collect_stream
tests_unit_test_collect_stream_SOURCES = tests/unit/test_collect_stream.cpp tests/unit/cmocka_cxx.hpp tests/unit/temp_dir.hpp
tests_unit_test_collect_stream_LDADD = lib/collect/libaihpc_collect.la lib/sweep/libaihpc_sweep.la $(unit_test_libs)
# --why's accounting: sacct's runs of each element (TIMEOUT, OUT_OF_MEMORY, PREEMPTED...).
UNIT_TESTS += tests/unit/test_collect_accounting
tests_unit_test_collect_accounting_SOURCES = tests/unit/test_collect_accounting.cpp tests/unit/cmocka_cxx.hpp
tests_unit_test_collect_accounting_LDADD = lib/collect/libaihpc_collect.la lib/sweep/libaihpc_sweep.la $(unit_test_libs)
EXTRA_DIST += tests/integration/66-accounting-why.sh
# The command lines of aihpc-sweep and aihpc-collect, as a user types them (offline).
TESTS += tests/cli/sweep-collect-options.sh
EXTRA_DIST += tests/cli/sweep-collect-options.sh
# The sweep quickstart of README.md, run as written (offline).
TESTS += tests/cli/readme-quickstart.sh
EXTRA_DIST += tests/cli/readme-quickstart.sh
# The EXAMPLES of aihpc-sweep(1) and aihpc-collect(1), run as written where they can
# run offline.
TESTS += tests/cli/man-examples.sh
EXTRA_DIST += tests/cli/man-examples.sh
