# lib/container: the module's convenience library, its tool, unit tests, man page and bench.
# Example:
#   noinst_LTLIBRARIES += lib/container/libaihpc_container.la
#   lib_container_libaihpc_container_la_SOURCES = lib/container/x.cpp lib/container/x.hpp
#   plugin_module_libs += lib/container/libaihpc_container.la
#   UNIT_TESTS += tests/unit/test_container
#   tests_unit_test_container_SOURCES = tests/unit/test_container.cpp
#   tests_unit_test_container_LDADD = lib/container/libaihpc_container.la $(unit_test_libs)
