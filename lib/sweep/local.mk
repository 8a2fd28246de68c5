# lib/sweep: the module's convenience library, its tool, unit tests, man page and bench.
# Example:
#   noinst_LTLIBRARIES += lib/sweep/libaihpc_sweep.la
#   lib_sweep_libaihpc_sweep_la_SOURCES = lib/sweep/x.cpp lib/sweep/x.hpp
#   plugin_module_libs += lib/sweep/libaihpc_sweep.la
#   UNIT_TESTS += tests/unit/test_sweep
#   tests_unit_test_sweep_SOURCES = tests/unit/test_sweep.cpp
#   tests_unit_test_sweep_LDADD = lib/sweep/libaihpc_sweep.la $(unit_test_libs)
