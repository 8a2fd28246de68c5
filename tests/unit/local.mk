# Unit tests (CMocka), one program per lib/ module. Add a module's test with:
#   UNIT_TESTS += tests/unit/test_MODULE
#   tests_unit_test_MODULE_SOURCES = tests/unit/test_MODULE.cpp
UNIT_TESTS += tests/unit/test_config
tests_unit_test_config_SOURCES = tests/unit/test_config.cpp tests/unit/cmocka_cxx.hpp
tests_unit_test_config_LDADD = $(unit_test_libs)
UNIT_TESTS += tests/unit/test_common
tests_unit_test_common_SOURCES = tests/unit/test_common.cpp tests/unit/cmocka_cxx.hpp tests/unit/temp_dir.hpp
tests_unit_test_common_LDADD = $(unit_test_libs)
UNIT_TESTS += tests/unit/test_spawn
tests_unit_test_spawn_SOURCES = tests/unit/test_spawn.cpp tests/unit/cmocka_cxx.hpp tests/unit/temp_dir.hpp
tests_unit_test_spawn_LDADD = $(unit_test_libs)
UNIT_TESTS += tests/unit/test_node_helper
tests_unit_test_node_helper_SOURCES = tests/unit/test_node_helper.cpp tests/unit/cmocka_cxx.hpp tests/unit/temp_dir.hpp
tests_unit_test_node_helper_LDADD = $(unit_test_libs)
UNIT_TESTS += tests/unit/test_stage_trust
tests_unit_test_stage_trust_SOURCES = tests/unit/test_stage_trust.cpp tests/unit/cmocka_cxx.hpp tests/unit/temp_dir.hpp
tests_unit_test_stage_trust_LDADD = lib/stage/libaihpc_stage.la $(unit_test_libs) $(ARCHIVE_LIBS)
UNIT_TESTS += tests/unit/test_slurm_release
tests_unit_test_slurm_release_SOURCES = tests/unit/test_slurm_release.cpp tests/unit/cmocka_cxx.hpp \
	plugin/slurm_release.cpp plugin/slurm_release.hpp
tests_unit_test_slurm_release_LDADD = $(CMOCKA_LIBS)
