# lib/sweep: spec parser, shorthand, expander, task index, submission planner, runner;
# the aihpc-sweep tool, its unit tests, man page, bench and integration tests.
noinst_LTLIBRARIES += lib/sweep/libaihpc_sweep.la
lib_sweep_libaihpc_sweep_la_SOURCES = \
	lib/sweep/spec.cpp lib/sweep/spec.hpp \
	lib/sweep/command.cpp lib/sweep/command.hpp \
	lib/sweep/shorthand.cpp lib/sweep/shorthand.hpp \
	lib/sweep/expand.cpp lib/sweep/expand.hpp \
	lib/sweep/sweep_dir.cpp lib/sweep/sweep_dir.hpp \
	lib/sweep/submit_plan.cpp lib/sweep/submit_plan.hpp \
	lib/sweep/image_check.cpp lib/sweep/image_check.hpp \
	lib/sweep/runner.cpp lib/sweep/runner.hpp \
	lib/sweep/results.cpp lib/sweep/results.hpp \
	lib/sweep/refine.cpp lib/sweep/refine.hpp \
	lib/sweep/rounds.cpp lib/sweep/rounds.hpp \
	lib/sweep/submission.cpp lib/sweep/submission.hpp \
	lib/sweep/preview.cpp lib/sweep/preview.hpp \
	lib/sweep/resubmit.cpp lib/sweep/resubmit.hpp \
	lib/sweep/closed_loop.cpp lib/sweep/closed_loop.hpp \
	lib/sweep/schedule.cpp lib/sweep/schedule.hpp \
	lib/sweep/rungs.cpp lib/sweep/rungs.hpp
EXTRA_DIST += lib/sweep/README

bin_PROGRAMS += tools/aihpc-sweep
tools_aihpc_sweep_SOURCES = tools/aihpc-sweep.cpp
# The container module only for image_check (the images a dry run checks).
tools_aihpc_sweep_LDADD = lib/sweep/libaihpc_sweep.la lib/container/libaihpc_container.la $(tool_libs)

UNIT_TESTS += tests/unit/test_sweep
tests_unit_test_sweep_SOURCES = tests/unit/test_sweep.cpp tests/unit/cmocka_cxx.hpp tests/unit/temp_dir.hpp
tests_unit_test_sweep_LDADD = lib/sweep/libaihpc_sweep.la lib/container/libaihpc_container.la $(unit_test_libs)

UNIT_TESTS += tests/unit/test_sweep_schedule
tests_unit_test_sweep_schedule_SOURCES = tests/unit/test_sweep_schedule.cpp tests/unit/cmocka_cxx.hpp tests/unit/temp_dir.hpp
tests_unit_test_sweep_schedule_LDADD = lib/sweep/libaihpc_sweep.la $(unit_test_libs)

UNIT_TESTS += tests/unit/test_sweep_submission
tests_unit_test_sweep_submission_SOURCES = tests/unit/test_sweep_submission.cpp tests/unit/cmocka_cxx.hpp tests/unit/temp_dir.hpp tests/unit/sweep_fixture.hpp
tests_unit_test_sweep_submission_LDADD = lib/sweep/libaihpc_sweep.la $(unit_test_libs)

UNIT_TESTS += tests/unit/test_sweep_preview
tests_unit_test_sweep_preview_SOURCES = tests/unit/test_sweep_preview.cpp tests/unit/cmocka_cxx.hpp tests/unit/temp_dir.hpp tests/unit/sweep_fixture.hpp
tests_unit_test_sweep_preview_LDADD = lib/sweep/libaihpc_sweep.la lib/container/libaihpc_container.la $(unit_test_libs)

EXTRA_DIST += bench/sweep/run.sh bench/sweep/reference.py \
	bench/sweep/promote.sh \
	tests/integration/50-sweep.sh tests/integration/51-sweep-phases.sh tests/integration/52-sweep-hyperband.sh
