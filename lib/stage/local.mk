# lib/stage: the module's convenience library, its tool, unit tests, man page and bench.
# Example:
#   noinst_LTLIBRARIES += lib/stage/libaihpc_stage.la
#   lib_stage_libaihpc_stage_la_SOURCES = lib/stage/x.cpp lib/stage/x.hpp
#   plugin_module_libs += lib/stage/libaihpc_stage.la
#   UNIT_TESTS += tests/unit/test_stage
#   tests_unit_test_stage_SOURCES = tests/unit/test_stage.cpp
#   tests_unit_test_stage_LDADD = lib/stage/libaihpc_stage.la $(unit_test_libs)
