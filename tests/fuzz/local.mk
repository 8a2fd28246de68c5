# Fuzzing the parsers.
#   make fuzz [FUZZ_SECONDS=60]: builds every libFuzzer target (tests/fuzz/fuzz_*.cpp)
#     with clang, apart from this build (tests/fuzz/fuzz.mk, objects under
#     tests/fuzz/build), runs each for FUZZ_SECONDS on its corpus, and fails on a crash.
#   make check: replays each target's corpus and regression inputs through the same
#     target built here with g++ (replay_TARGET), so an input that once crashed a parser
#     fails the build's tests on any machine.
FUZZ_SECONDS = 60

fuzz:
	builddir='$(abs_top_builddir)' MAKE='$(MAKE)' $(SHELL) $(top_srcdir)/tests/fuzz/run $(FUZZ_SECONDS)
.PHONY: fuzz

clean-local: clean-fuzz
clean-fuzz:
	-rm -rf tests/fuzz/build
.PHONY: clean-fuzz

fuzz_replays = \
	tests/fuzz/replay_config \
	tests/fuzz/replay_sweep_spec \
	tests/fuzz/replay_shorthand \
	tests/fuzz/replay_task_line \
	tests/fuzz/replay_result \
	tests/fuzz/replay_stage_records \
	tests/fuzz/replay_hostlist \
	tests/fuzz/replay_launch_request \
	tests/fuzz/replay_node_request \
	tests/fuzz/replay_helper_records \
	tests/fuzz/replay_cache_ledger
check_PROGRAMS += $(fuzz_replays)
TESTS += $(fuzz_replays)
fuzz_replay_sources = tests/fuzz/replay.cpp tests/fuzz/fuzz_support.hpp

tests_fuzz_replay_config_SOURCES = $(fuzz_replay_sources) tests/fuzz/fuzz_config.cpp
tests_fuzz_replay_config_LDADD = lib/libaihpc.la
tests_fuzz_replay_sweep_spec_SOURCES = $(fuzz_replay_sources) tests/fuzz/fuzz_sweep_spec.cpp
tests_fuzz_replay_sweep_spec_LDADD = lib/sweep/libaihpc_sweep.la lib/libaihpc.la
tests_fuzz_replay_shorthand_SOURCES = $(fuzz_replay_sources) tests/fuzz/fuzz_shorthand.cpp
tests_fuzz_replay_shorthand_LDADD = lib/sweep/libaihpc_sweep.la lib/libaihpc.la
tests_fuzz_replay_task_line_SOURCES = $(fuzz_replay_sources) tests/fuzz/fuzz_task_line.cpp
tests_fuzz_replay_task_line_LDADD = lib/sweep/libaihpc_sweep.la lib/libaihpc.la
tests_fuzz_replay_result_SOURCES = $(fuzz_replay_sources) tests/fuzz/fuzz_result.cpp
tests_fuzz_replay_result_LDADD = lib/collect/libaihpc_collect.la lib/sweep/libaihpc_sweep.la lib/libaihpc.la
tests_fuzz_replay_stage_records_SOURCES = $(fuzz_replay_sources) tests/fuzz/fuzz_stage_records.cpp
tests_fuzz_replay_stage_records_LDADD = lib/stage/libaihpc_stage.la lib/libaihpc.la
tests_fuzz_replay_hostlist_SOURCES = $(fuzz_replay_sources) tests/fuzz/fuzz_hostlist.cpp
tests_fuzz_replay_hostlist_LDADD = lib/affinity/libaihpc_affinity.la lib/libaihpc.la
tests_fuzz_replay_launch_request_SOURCES = $(fuzz_replay_sources) tests/fuzz/fuzz_launch_request.cpp
tests_fuzz_replay_launch_request_LDADD = lib/container/libaihpc_container.la lib/libaihpc.la
tests_fuzz_replay_node_request_SOURCES = $(fuzz_replay_sources) tests/fuzz/fuzz_node_request.cpp
tests_fuzz_replay_node_request_LDADD = lib/stage/libaihpc_stage.la lib/libaihpc.la
tests_fuzz_replay_helper_records_SOURCES = $(fuzz_replay_sources) tests/fuzz/fuzz_helper_records.cpp
tests_fuzz_replay_helper_records_LDADD = lib/libaihpc.la
tests_fuzz_replay_cache_ledger_SOURCES = $(fuzz_replay_sources) tests/fuzz/fuzz_cache_ledger.cpp
tests_fuzz_replay_cache_ledger_LDADD = lib/stage/libaihpc_stage.la lib/libaihpc.la

EXTRA_DIST += tests/fuzz/README tests/fuzz/run tests/fuzz/fuzz.mk tests/fuzz/dicts tests/fuzz/unfixed-crashes tests/fuzz/corpus tests/fuzz/regressions
