# lib/affinity: topology, binding planner, apply, distributed-training env; the
# aihpc-bind tool, its unit tests, man pages, bench and integration tests.
noinst_LTLIBRARIES += lib/affinity/libaihpc_affinity.la
lib_affinity_libaihpc_affinity_la_SOURCES = \
	lib/affinity/topology.cpp lib/affinity/topology.hpp \
	lib/affinity/bind_plan.cpp lib/affinity/bind_plan.hpp \
	lib/affinity/apply.cpp lib/affinity/apply.hpp \
	lib/affinity/dist_env.cpp lib/affinity/dist_env.hpp \
	lib/affinity/step_view.cpp lib/affinity/step_view.hpp
plugin_module_libs += lib/affinity/libaihpc_affinity.la
EXTRA_DIST += lib/affinity/README

bin_PROGRAMS += tools/aihpc-bind
tools_aihpc_bind_SOURCES = tools/aihpc-bind.cpp
tools_aihpc_bind_LDADD = lib/affinity/libaihpc_affinity.la lib/libaihpc.la
# aihpc-bind starts once per rank ('mpirun ... aihpc-bind exec') and once per plan, so
# its start-up counts: binding the shared libstdc++'s symbols at each start cost about
# as much as the plan itself. It is linked in instead (not under the sanitizers, whose
# runtime must see operator new).
if SANITIZERS
tools_aihpc_bind_LDFLAGS = $(AM_LDFLAGS)
else
tools_aihpc_bind_LDFLAGS = $(AM_LDFLAGS) -static-libstdc++ -static-libgcc
endif

UNIT_TESTS += tests/unit/test_affinity tests/unit/test_affinity_env tests/unit/test_affinity_properties
tests_unit_test_affinity_SOURCES = tests/unit/test_affinity.cpp tests/unit/cmocka_cxx.hpp
tests_unit_test_affinity_CPPFLAGS = $(AM_CPPFLAGS) \
	-DAIHPC_FIXTURE_TOPOLOGIES='"$(abs_top_srcdir)/tests/fixtures/topologies"'
tests_unit_test_affinity_LDADD = lib/affinity/libaihpc_affinity.la $(unit_test_libs)
tests_unit_test_affinity_properties_SOURCES = tests/unit/test_affinity_properties.cpp tests/unit/cmocka_cxx.hpp
tests_unit_test_affinity_properties_CPPFLAGS = $(tests_unit_test_affinity_CPPFLAGS)
tests_unit_test_affinity_properties_LDADD = lib/affinity/libaihpc_affinity.la $(unit_test_libs) $(HWLOC_LIBS)
tests_unit_test_affinity_env_SOURCES = tests/unit/test_affinity_env.cpp tests/unit/cmocka_cxx.hpp tests/unit/temp_dir.hpp
tests_unit_test_affinity_env_LDADD = lib/affinity/libaihpc_affinity.la $(unit_test_libs)

EXTRA_DIST += man/aihpc-8-bind.roff \
	tests/fixtures/topologies/README \
	tests/fixtures/topologies/make-fixtures.py \
	tests/fixtures/topologies/make-mpibind-reduced.py \
	tests/fixtures/topologies/smt-2pack-2gpu.xml \
	tests/fixtures/topologies/4numa-dist-rsmi.xml \
	tests/fixtures/topologies/hwloc-32em64t-2n8c2t-pci-normalio.xml \
	tests/fixtures/topologies/hwloc-nvidiaDGX2.xml \
	tests/fixtures/topologies/hwloc-power8gpudistances.xml \
	tests/fixtures/topologies/hwloc-64intel64-fakeKNL-SNC4-hybrid.xml \
	tests/fixtures/topologies/hwloc-16amd64-8n2c-cpusets.xml \
	tests/fixtures/topologies/mpibind-coral-lassen.xml \
	tests/fixtures/topologies/mpibind-g4dnmetal.xml \
	tests/fixtures/topologies/mpibind-eas-tioga.xml \
	tests/fixtures/topologies/mpibind-epyc-corona.xml \
	tests/fixtures/topologies/mpibind-epyc-corona-p2-reduced.xml \
	tests/fixtures/topologies/mpibind-cts1-quartz-smt1-reduced.xml \
	tests/fixtures/topologies/mpibind-expected/expected.epyc-corona \
	tests/fixtures/topologies/mpibind-expected/expected.cts1-quartz \
	bench/bind/run.sh bench/bind/README \
	tests/integration/30-bind.sh tests/integration/31-dist-torch.sh tests/integration/32-mpi4py.sh \
	contrib/deps-clients
