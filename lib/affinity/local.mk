# lib/affinity: the module's convenience library, its tool, unit tests, man page and bench.
# Example:
#   noinst_LTLIBRARIES += lib/affinity/libaihpc_affinity.la
#   lib_affinity_libaihpc_affinity_la_SOURCES = lib/affinity/x.cpp lib/affinity/x.hpp
#   plugin_module_libs += lib/affinity/libaihpc_affinity.la
#   UNIT_TESTS += tests/unit/test_affinity
#   tests_unit_test_affinity_SOURCES = tests/unit/test_affinity.cpp
#   tests_unit_test_affinity_LDADD = lib/affinity/libaihpc_affinity.la $(unit_test_libs)
