// lib/affinity: the topology reader and the binding planner, case by case, on the
// topologies of tests/fixtures/topologies (real machines and small fixtures; see its
// README). Facts asserted about a machine were read off its XML with
// lstopo-no-graphics --input FILE and hwloc-calc. test_affinity_properties.cpp checks
// every plan against properties.
#include <sys/stat.h>

#include <json-c/json.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "affinity/bind_plan.hpp"
#include "affinity/topology.hpp"
#include "cmocka_cxx.hpp"
#include "common/text.hpp"

using namespace aihpc::affinity;
using aihpc::config::BindMode;
using aihpc::config::BindRequest;

namespace {

struct Machine {
    const char* file;
    bool real;              // a real machine's export, else a synthetic fixture
    unsigned gpus;
    unsigned numa_nodes;
};

// GPU counts: every PCI function that is a GPU, once, whatever osdevs it has.
const Machine machines[] = {
    {"hwloc-32em64t-2n8c2t-pci-normalio.xml", true, 4, 2},   // 3 bare 0302 NVIDIA + 1 AMD VGA (OpenCL)
    {"hwloc-nvidiaDGX2.xml", true, 16, 2},
    {"hwloc-power8gpudistances.xml", true, 4, 2},
    {"mpibind-coral-lassen.xml", true, 4, 2},
    {"mpibind-g4dnmetal.xml", true, 8, 2},
    {"mpibind-eas-tioga.xml", true, 8, 4},
    {"mpibind-epyc-corona.xml", true, 4, 8},
    {"mpibind-epyc-corona-p2-reduced.xml", true, 8, 2},
    {"mpibind-cts1-quartz-smt1-reduced.xml", true, 0, 2},
    {"hwloc-64intel64-fakeKNL-SNC4-hybrid.xml", true, 0, 8},
    {"hwloc-16amd64-8n2c-cpusets.xml", true, 0, 5},
    {"smt-2pack-2gpu.xml", false, 2, 2},
    {"4numa-dist-rsmi.xml", false, 1, 4},
};

// Every fixture is in the tree: a missing one fails the test, never skips it.
const NodeTopology* topology(const std::string& file) {
    static std::map<std::string, NodeTopology> loaded;
    auto it = loaded.find(file);
    if (it != loaded.end()) return &it->second;
    return &loaded.emplace(file, load_topology_xml(std::string(AIHPC_FIXTURE_TOPOLOGIES) + "/" + file)).first->second;
}

#define LOAD_TOPOLOGY(var, file) const NodeTopology* var = topology(file)

CpuSet cpus_of(std::string_view list) { return *aihpc::parse_id_list(list); }

bool subset(const CpuSet& a, const CpuSet& b) { return std::includes(b.begin(), b.end(), a.begin(), a.end()); }

bool disjoint(const CpuSet& a, const CpuSet& b) {
    for (unsigned x : a)
        if (b.count(x)) return false;
    return true;
}

CpuSet intersect(const CpuSet& a, const CpuSet& b) {
    CpuSet out;
    for (unsigned x : a)
        if (b.count(x)) out.insert(x);
    return out;
}

PlanRequest request(unsigned tasks, BindMode mode, CpuSet allowed = {}) {
    PlanRequest req;
    req.tasks = tasks;
    req.allowed = std::move(allowed);
    req.bind = BindRequest{mode, false, false, false};
    return req;
}

const TaskBinding& task_holding(const BindPlan& plan, unsigned gpu_index) {
    for (const TaskBinding& task : plan.tasks)
        for (const GpuRef& gpu : task.gpus)
            if (gpu.index == gpu_index) return task;
    fail_msg("no task holds GPU %u", gpu_index);
    return plan.tasks.front();
}

}  // namespace

// ---- topology reading

static void every_machine_has_its_gpus_once_each_in_bus_id_order(void**) {
    for (const Machine& m : machines) {
        const NodeTopology* topo = topology(m.file);
        if (topo->gpus.size() != m.gpus) fail_msg("%s: %zu GPUs, expected %u", m.file, topo->gpus.size(), m.gpus);
        for (std::size_t i = 0; i < topo->gpus.size(); ++i) {
            assert_int_equal(topo->gpus[i].index, i);
            if (i > 0) assert_true(topo->gpus[i - 1].pci < topo->gpus[i].pci);
        }
        assert_int_equal(topo->numa.size(), m.numa_nodes);
    }
}

// The runtime's number for a GPU is hwloc's nvmlN, else cudaN, else rsmiN; it equals the
// PCI position on most machines, but not on Corona p2 (rsmi) nor where bare functions
// without a runtime name come first (32em64t).
static void vendor_ordinal_is_the_number_of_its_nvml_cuda_rsmi_osdev(void**) {
    for (const Machine& m : machines) {
        const NodeTopology* topo = topology(m.file);
        for (const Gpu& gpu : topo->gpus) {
            for (const char* prefix : {"nvml", "cuda", "rsmi"}) {
                auto named = std::find_if(gpu.osdevs.begin(), gpu.osdevs.end(),
                                          [&](const std::string& n) { return n.rfind(prefix, 0) == 0; });
                if (named == gpu.osdevs.end()) continue;
                assert_string_equal(named->substr(std::string(prefix).size()).c_str(), std::to_string(gpu.vendor_ordinal).c_str());
                break;
            }
            std::string file = m.file;
            if (file != "mpibind-epyc-corona-p2-reduced.xml" && file != "hwloc-32em64t-2n8c2t-pci-normalio.xml" &&
                gpu.vendor != GpuVendor::other)
                assert_int_equal(gpu.vendor_ordinal, gpu.index);
        }
    }
}

static void osdevs_of_one_pci_device_make_one_gpu(void**) {
    LOAD_TOPOLOGY(topo, "mpibind-g4dnmetal.xml");
    assert_int_equal(topo->gpus.size(), 8);   // 24 osdevs: cudaN, openclN, nvmlN
    assert_int_equal(topo->gpus[0].osdevs.size(), 3);
    assert_string_equal(topo->gpus[0].pci.c_str(), "0000:18:00.0");
}

static void bare_pci_gpus_count_and_bmc_vga_does_not(void**) {
    LOAD_TOPOLOGY(topo, "hwloc-32em64t-2n8c2t-pci-normalio.xml");
    std::vector<std::string> pcis;
    for (const Gpu& gpu : topo->gpus) pcis.push_back(gpu.pci);
    assert_string_equal(aihpc::join(pcis, " ").c_str(), "0000:03:00.0 0000:83:00.0 0000:84:00.0 0000:84:00.1");
    assert_int_equal(topo->gpus[0].osdevs.size(), 0);
    assert_int_equal(static_cast<int>(topo->gpus[3].vendor), static_cast<int>(GpuVendor::amd));
    assert_int_equal(topo->gpus[3].vendor_ordinal, 0);
    assert_int_equal(topo->gpus[2].vendor_ordinal, 0);   // cuda0: CUDA saw this one alone
}

static void gpus_known_only_through_opencl_are_found(void**) {
    LOAD_TOPOLOGY(topo, "mpibind-epyc-corona.xml");
    assert_int_equal(topo->gpus.size(), 4);
    assert_int_equal(topo->gpus[0].where.numa.size(), 1);
    assert_int_equal(*topo->gpus[0].where.numa.begin(), 1);   // 13:00.0 on NUMA node 1
}

static void fixture_gpus_ignore_drm_cards_and_dedupe_osdevs(void**) {
    LOAD_TOPOLOGY(topo, "smt-2pack-2gpu.xml");
    assert_int_equal(topo->gpus.size(), 2);
    assert_string_equal(topo->gpus[0].pci.c_str(), "0000:17:00.0");
    assert_string_equal(aihpc::join(topo->gpus[0].osdevs, ",").c_str(), "cuda0,nvml0");
    assert_int_equal(*topo->gpus[0].where.packages.begin(), 1);
    assert_int_equal(*topo->gpus[1].where.packages.begin(), 0);
    assert_int_equal(topo->cores.size(), 8);
    assert_int_equal(topo->cores[0].pus.size(), 2);
    assert_int_equal(topo->cores[0].pus[1], 8);
}

// ---- machine facts

static void lassen_gpus_2_and_3_get_the_second_socket_hcas(void**) {
    LOAD_TOPOLOGY(topo, "mpibind-coral-lassen.xml");
    for (unsigned tasks : {4u, 2u, 8u}) {
        BindPlan plan = plan_binding(*topo, request(tasks, BindMode::gpu));
        for (unsigned gpu : {2u, 3u}) {
            const TaskBinding& task = task_holding(plan, gpu);
            assert_string_equal(aihpc::join(task.nics, ",").c_str(), "mlx5_2,mlx5_3");
            assert_string_equal(task.env.at("NCCL_IB_HCA").c_str(), "=mlx5_2:1,mlx5_3:1");
            assert_string_equal(task.env.at("UCX_NET_DEVICES").c_str(), "mlx5_2:1,mlx5_3:1");
        }
        assert_string_equal(aihpc::join(task_holding(plan, 0).nics, ",").c_str(), "mlx5_0,mlx5_1");
    }
}

static void tioga_gpu_0_gets_numa_node_3(void**) {
    LOAD_TOPOLOGY(topo, "mpibind-eas-tioga.xml");
    const CpuSet numa3 = cpus_of("48-63,112-127");   // hwloc-calc --intersect pu numa:3
    for (unsigned tasks : {8u, 4u, 1u, 16u}) {
        BindPlan plan = plan_binding(*topo, request(tasks, BindMode::auto_));
        const TaskBinding& task = task_holding(plan, 0);
        assert_string_equal(task.gpus.front().pci.c_str(), "0000:c1:00.0");
        if (tasks > 1) assert_true(subset(task.cpus, numa3));
        else assert_true(subset(numa3, task.cpus));
        assert_true(task.mems.count(3));
        assert_string_equal(task.env.at("ROCR_VISIBLE_DEVICES").substr(0, 1).c_str(), "0");
        assert_true(task.env.count("CUDA_VISIBLE_DEVICES") == 0);
    }
    BindPlan plan = plan_binding(*topo, request(8, BindMode::gpu));
    assert_string_equal(aihpc::format_id_list(plan.tasks[0].cpus).c_str(), "48-55,112-119");
    assert_string_equal(aihpc::format_id_list(plan.tasks[4].cpus).c_str(), "0-7,64-71");   // GPU 4 (d1:00.0) on NUMA 0
}

static void dgx2_splits_each_socket_among_its_eight_gpus(void**) {
    LOAD_TOPOLOGY(topo, "hwloc-nvidiaDGX2.xml");
    BindPlan plan = plan_binding(*topo, request(16, BindMode::gpu));
    for (const TaskBinding& task : plan.tasks) {
        assert_int_equal(task.gpus.size(), 1);
        assert_int_equal(task.mems.size(), 1);
        assert_int_equal(*task.mems.begin(), task.gpus[0].index < 8 ? 0 : 1);
        assert_string_equal(task.env.at("CUDA_VISIBLE_DEVICES").c_str(), std::to_string(task.gpus[0].index).c_str());
    }
}

// ---- fixtures: SMT, restricted cpusets, distances, NICs

static void whole_cores_before_smt_siblings(void**) {
    LOAD_TOPOLOGY(topo, "smt-2pack-2gpu.xml");
    BindPlan four = plan_binding(*topo, request(4, BindMode::cores));
    assert_string_equal(aihpc::format_id_list(four.tasks[0].cpus).c_str(), "0-1,8-9");
    assert_string_equal(four.tasks[0].env.at("OMP_PLACES").c_str(), "{0,8},{1,9}");
    assert_string_equal(four.tasks[0].env.at("OMP_NUM_THREADS").c_str(), "2");
    assert_string_equal(aihpc::format_id_list(four.tasks[3].cpus).c_str(), "6-7,14-15");
    BindPlan sixteen = plan_binding(*topo, request(16, BindMode::cores));
    assert_string_equal(aihpc::format_id_list(sixteen.tasks[0].cpus).c_str(), "0");
    assert_string_equal(aihpc::format_id_list(sixteen.tasks[1].cpus).c_str(), "8");
    assert_string_equal(sixteen.tasks[1].env.at("OMP_NUM_THREADS").c_str(), "1");
}

static void gpu_index_order_is_not_numa_order(void**) {
    LOAD_TOPOLOGY(topo, "smt-2pack-2gpu.xml");
    BindPlan plan = plan_binding(*topo, request(2, BindMode::gpu));
    assert_string_equal(aihpc::format_id_list(plan.tasks[0].cpus).c_str(), "4-7,12-15");   // GPU 0 on package 1
    assert_string_equal(aihpc::format_id_list(plan.tasks[0].mems).c_str(), "1");
    assert_string_equal(aihpc::format_id_list(plan.tasks[1].cpus).c_str(), "0-3,8-11");
    assert_string_equal(plan.tasks[1].env.at("CUDA_VISIBLE_DEVICES").c_str(), "1");
    assert_true(plan.warnings.empty());
}

static void restricted_half_socket_keeps_tasks_inside_it(void**) {
    LOAD_TOPOLOGY(topo, "smt-2pack-2gpu.xml");
    PlanRequest req = request(2, BindMode::gpu, cpus_of("0-1,8-9"));
    BindPlan plan = plan_binding(*topo, req);
    // GPU 1's package has the allowed half; GPU 0's package 1 has none: the nearest
    // allowed CPUs (NUMA node 0 by distance), with a warning, and never an empty set.
    // Both GPUs' domains are then the same allowed half, split one core each.
    assert_string_equal(aihpc::format_id_list(plan.tasks[0].cpus).c_str(), "0,8");
    assert_string_equal(aihpc::format_id_list(plan.tasks[1].cpus).c_str(), "1,9");
    assert_int_equal(plan.warnings.size(), 1);
    assert_true(plan.warnings[0].find("GPU 0 (0000:17:00.0)") != std::string::npos);
}

static void restricted_set_is_split_among_tasks_sharing_it(void**) {
    LOAD_TOPOLOGY(topo, "smt-2pack-2gpu.xml");
    // Two allowed cores on package 1: tasks 0,1 hold GPU 0 there; tasks 2,3 hold GPU 1,
    // whose package has no allowed CPU, so they share the same nearest half. Four tasks
    // on two cores: one SMT sibling each, still disjoint.
    BindPlan plan = plan_binding(*topo, request(4, BindMode::gpu, cpus_of("4-5,12-13")));
    assert_string_equal(aihpc::format_id_list(plan.tasks[0].cpus).c_str(), "4");
    assert_string_equal(aihpc::format_id_list(plan.tasks[1].cpus).c_str(), "12");
    assert_string_equal(aihpc::format_id_list(plan.tasks[2].cpus).c_str(), "5");
    assert_string_equal(aihpc::format_id_list(plan.tasks[3].cpus).c_str(), "13");
    BindPlan two = plan_binding(*topo, request(2, BindMode::cores, cpus_of("4-5,12-13")));
    assert_string_equal(aihpc::format_id_list(two.tasks[0].cpus).c_str(), "4,12");
    assert_string_equal(aihpc::format_id_list(two.tasks[1].cpus).c_str(), "5,13");
}

static void gpu_without_local_cpus_gets_the_nearest_by_distance(void**) {
    LOAD_TOPOLOGY(topo, "4numa-dist-rsmi.xml");
    BindPlan plan = plan_binding(*topo, request(1, BindMode::gpu, cpus_of("0-3")));
    // rsmi0 sits on NUMA node 2 (package 1); of the allowed nodes 0 and 1, node 1 is at
    // distance 20, node 0 at 30.
    assert_string_equal(aihpc::format_id_list(plan.tasks[0].cpus).c_str(), "2-3");
    assert_string_equal(aihpc::format_id_list(plan.tasks[0].mems).c_str(), "1");
    assert_int_equal(plan.warnings.size(), 1);
    assert_true(plan.warnings[0].find("distance 20") != std::string::npos);
}

static void gpu_local_numa_node_wins_over_its_package(void**) {
    LOAD_TOPOLOGY(topo, "4numa-dist-rsmi.xml");
    BindPlan plan = plan_binding(*topo, request(1, BindMode::gpu));
    // NUMA node 2 (4-5) is the GPU's; node 3 (6-7), GPU-less in the same package, joins.
    assert_string_equal(aihpc::format_id_list(plan.tasks[0].cpus).c_str(), "4-7");
    BindPlan two = plan_binding(*topo, request(2, BindMode::gpu));
    assert_string_equal(aihpc::format_id_list(two.tasks[0].cpus).c_str(), "4,6");
    assert_string_equal(aihpc::format_id_list(two.tasks[1].cpus).c_str(), "5,7");
    BindPlan package = plan_binding(*topo, request(1, BindMode::gpu, cpus_of("0-3,6-7")));
    assert_string_equal(aihpc::format_id_list(package.tasks[0].cpus).c_str(), "6-7");
    assert_true(package.warnings.empty());
}

static void nic_behind_the_gpus_switch_wins_then_same_numa(void**) {
    LOAD_TOPOLOGY(topo, "smt-2pack-2gpu.xml");
    BindPlan plan = plan_binding(*topo, request(2, BindMode::gpu));
    assert_string_equal(aihpc::join(plan.tasks[0].nics, ",").c_str(), "mlx5_0");
    assert_string_equal(aihpc::join(plan.tasks[1].nics, ",").c_str(), "mlx5_1");   // OpenFabrics before eth0
    BindPlan numa = plan_binding(*topo, request(2, BindMode::numa));
    assert_string_equal(aihpc::join(numa.tasks[0].nics, ",").c_str(), "mlx5_1");
}

static void nonic_leaves_nics_and_their_variables_out(void**) {
    LOAD_TOPOLOGY(topo, "smt-2pack-2gpu.xml");
    PlanRequest req = request(2, BindMode::gpu);
    req.bind.nonic = true;
    BindPlan plan = plan_binding(*topo, req);
    assert_true(plan.tasks[0].nics.empty());
    assert_int_equal(plan.tasks[0].env.count("NCCL_IB_HCA"), 0);
    assert_int_equal(plan.tasks[0].env.count("UCX_NET_DEVICES"), 0);
}

static void net_devices_stand_in_when_there_is_no_openfabrics(void**) {
    LOAD_TOPOLOGY(topo, "mpibind-eas-tioga.xml");
    BindPlan plan = plan_binding(*topo, request(8, BindMode::gpu));
    const TaskBinding& task = task_holding(plan, 0);
    assert_false(task.nics.empty());
    assert_int_equal(task.env.count("NCCL_IB_HCA"), 0);
    assert_true(task.env.at("NCCL_SOCKET_IFNAME").rfind("=", 0) == 0);
}

// ---- modes and requests

static void auto_binds_by_numa_when_the_step_has_no_gpu(void**) {
    LOAD_TOPOLOGY(topo, "smt-2pack-2gpu.xml");
    PlanRequest req = request(2, BindMode::auto_);
    req.gpus = std::vector<unsigned>{};
    BindPlan plan = plan_binding(*topo, req);
    assert_int_equal(static_cast<int>(plan.mode), static_cast<int>(BindMode::numa));
    assert_string_equal(aihpc::format_id_list(plan.tasks[0].cpus).c_str(), "0-3,8-11");
    assert_int_equal(plan.tasks[0].env.count("CUDA_VISIBLE_DEVICES"), 0);
    assert_true(plan.warnings.empty());
}

static void gpu_mode_without_gpus_falls_back_to_numa_with_a_warning(void**) {
    LOAD_TOPOLOGY(topo, "smt-2pack-2gpu.xml");
    PlanRequest req = request(2, BindMode::gpu);
    req.gpus = std::vector<unsigned>{};
    BindPlan plan = plan_binding(*topo, req);
    assert_int_equal(static_cast<int>(plan.mode), static_cast<int>(BindMode::numa));
    assert_int_equal(plan.warnings.size(), 1);
}

static void none_binds_nothing_and_sets_no_variable(void**) {
    LOAD_TOPOLOGY(topo, "smt-2pack-2gpu.xml");
    BindPlan plan = plan_binding(*topo, request(3, BindMode::none, cpus_of("0-5")));
    for (const TaskBinding& task : plan.tasks) {
        assert_string_equal(aihpc::format_id_list(task.cpus).c_str(), "0-5");
        assert_true(task.env.empty());
    }
}

static void step_gpu_subset_keeps_global_indices_and_visible_names(void**) {
    LOAD_TOPOLOGY(topo, "mpibind-coral-lassen.xml");
    PlanRequest req = request(2, BindMode::gpu);
    req.gpus = std::vector<unsigned>{3, 2};
    req.gpu_names = {"0", "1"};   // a cgroup-constrained step renumbers its GPUs from 0
    BindPlan plan = plan_binding(*topo, req);
    assert_int_equal(plan.tasks[0].gpus[0].index, 2);
    assert_string_equal(plan.tasks[0].env.at("CUDA_VISIBLE_DEVICES").c_str(), "0");
    assert_int_equal(plan.tasks[1].gpus[0].index, 3);
    assert_string_equal(plan.tasks[1].env.at("CUDA_VISIBLE_DEVICES").c_str(), "1");
    assert_string_equal(plan.tasks[1].env.at("CUDA_DEVICE_ORDER").c_str(), "PCI_BUS_ID");
}

static void bad_requests_are_refused_with_the_reason(void**) {
    LOAD_TOPOLOGY(topo, "smt-2pack-2gpu.xml");
    expect_error_containing([&] { plan_binding(*topo, request(0, BindMode::auto_)); }, "no local task");
    PlanRequest gpu = request(1, BindMode::gpu);
    gpu.gpus = std::vector<unsigned>{5};
    expect_error_containing([&] { plan_binding(*topo, gpu); }, "GPU 5 is not on this node, which has 2 GPUs (0-1)");
    expect_error_containing([&] { plan_binding(*topo, request(1, BindMode::cores, cpus_of("100-101"))); },
                            "none of the allowed CPUs 100-101");
}

// ---- one case per fault found by the independent check

static void fallback_domains_stay_disjoint_and_are_named(void**) {   // D1
    LOAD_TOPOLOGY(topo, "mpibind-eas-tioga.xml");
    BindPlan plan = plan_binding(*topo, request(8, BindMode::auto_, cpus_of("0-31,64-95")));
    for (std::size_t a = 0; a < 8; ++a)
        for (std::size_t b = a + 1; b < 8; ++b)
            if (!disjoint(plan.tasks[a].cpus, plan.tasks[b].cpus))
                fail_msg("ranks %zu and %zu share %s", a, b, aihpc::format_id_list(intersect(plan.tasks[a].cpus, plan.tasks[b].cpus)).c_str());
    bool named = false;
    for (const std::string& w : plan.warnings) named = named || w.find("fall back to CPUs") != std::string::npos;
    assert_true(named);
    // GPUs with CPUs of their own keep them: GPU 4 (d1:00.0) sits on 0-7,64-71.
    assert_true(subset(task_holding(plan, 4).cpus, cpus_of("0-7,64-71")));
}

static void memory_only_numa_nodes_are_no_cpu_domain(void**) {   // D2
    LOAD_TOPOLOGY(topo, "hwloc-64intel64-fakeKNL-SNC4-hybrid.xml");
    unsigned memory_only = 0;
    for (const NumaNode& node : topo->numa) memory_only += node.memory_only();
    assert_int_equal(memory_only, 4);   // the MCDRAM of each quadrant
    BindPlan two = plan_binding(*topo, request(2, BindMode::numa));
    assert_string_equal(aihpc::format_id_list(two.tasks[0].mems).c_str(), "0-1");
    assert_string_equal(aihpc::format_id_list(two.tasks[1].mems).c_str(), "2-3");
    assert_true(disjoint(two.tasks[0].cpus, two.tasks[1].cpus));
    PlanRequest hbm = request(4, BindMode::numa);
    hbm.bind.hbm = true;
    BindPlan fast = plan_binding(*topo, hbm);
    assert_string_equal(aihpc::format_id_list(fast.tasks[0].mems).c_str(), "7");   // quadrant 0's MCDRAM is P#7
    assert_string_equal(aihpc::format_id_list(fast.tasks[1].mems).c_str(), "4");
    assert_true(fast.warnings.empty());
}

static void hbm_without_such_memory_warns_and_keeps_the_own_nodes(void**) {
    LOAD_TOPOLOGY(topo, "smt-2pack-2gpu.xml");
    PlanRequest hbm = request(2, BindMode::numa);
    hbm.bind.hbm = true;
    BindPlan plan = plan_binding(*topo, hbm);
    assert_string_equal(aihpc::format_id_list(plan.tasks[0].mems).c_str(), "0");
    assert_int_equal(plan.warnings.size(), 1);
}

static void management_ethernet_is_never_a_fabric_nic(void**) {   // D3
    LOAD_TOPOLOGY(topo, "mpibind-eas-tioga.xml");
    for (unsigned tasks : {1u, 8u}) {
        BindPlan plan = plan_binding(*topo, request(tasks, BindMode::auto_));
        for (const TaskBinding& task : plan.tasks)
            for (const std::string& nic : task.nics) assert_true(nic.rfind("hsi", 0) == 0);   // never ens2
    }
    // GPU 1 (c6:00.0) shares its host bridge with hsi0 (c5:00.0).
    BindPlan plan = plan_binding(*topo, request(8, BindMode::gpu));
    assert_string_equal(aihpc::join(task_holding(plan, 1).nics, ",").c_str(), "hsi0");
    LOAD_TOPOLOGY(corona, "mpibind-epyc-corona-p2-reduced.xml");
    BindPlan cpu_only = plan_binding(*corona, request(2, BindMode::numa));
    assert_string_equal(aihpc::join(cpu_only.tasks[0].nics, ",").c_str(), "mlx5_0");   // not eno1, eno2 (1 Gb/s)
}

static void nodes_without_a_fabric_set_no_nic_variable(void**) {
    LOAD_TOPOLOGY(topo, "mpibind-cts1-quartz-smt1-reduced.xml");
    BindPlan plan = plan_binding(*topo, request(2, BindMode::numa));
    assert_int_equal(plan.tasks[0].env.count("NCCL_SOCKET_IFNAME"), 0);
    assert_int_equal(plan.tasks[0].env.count("UCX_NET_DEVICES"), 0);
}

static void vendor_ordinals_come_from_rsmi_names_not_pci_order(void**) {   // D4
    LOAD_TOPOLOGY(topo, "mpibind-epyc-corona-p2-reduced.xml");
    BindPlan plan = plan_binding(*topo, request(8, BindMode::gpu));
    std::vector<std::string> shown;
    for (const TaskBinding& task : plan.tasks) shown.push_back(task.env.at("ROCR_VISIBLE_DEVICES"));
    assert_string_equal(aihpc::join(shown, ",").c_str(), "2,3,1,0,6,7,5,4");
    assert_int_equal(plan.tasks[0].gpus[0].index, 0);   // the index stays the PCI position
}

static void a_gpu_without_a_runtime_name_does_not_shift_the_named_ones(void**) {   // D9
    LOAD_TOPOLOGY(topo, "hwloc-32em64t-2n8c2t-pci-normalio.xml");
    // 03:00.0 and 83:00.0 are bare NVIDIA functions; 84:00.0 is cuda0.
    assert_int_equal(topo->gpus[2].vendor_ordinal, 0);
    assert_int_equal(topo->gpus[0].vendor_ordinal, 1);
    assert_int_equal(topo->gpus[1].vendor_ordinal, 2);
}

static void an_mi250x_gcd_is_local_to_its_l3(void**) {   // D5
    LOAD_TOPOLOGY(topo, "mpibind-eas-tioga.xml");
    assert_string_equal(aihpc::format_id_list(topo->gpus[0].where.cpus).c_str(), "48-55,112-119");
    BindPlan plan = plan_binding(*topo, request(4, BindMode::gpu, cpus_of("48-63,112-127")));
    // Four tasks on NUMA node 3's two GCDs: two per GCD, inside its L3.
    assert_true(subset(plan.tasks[0].cpus, cpus_of("48-55,112-119")));
    assert_true(subset(plan.tasks[1].cpus, cpus_of("48-55,112-119")));
    assert_true(subset(plan.tasks[2].cpus, cpus_of("56-63,120-127")));
}

static void gpu_less_numa_nodes_serve_the_gpu_tasks_of_their_package(void**) {   // D6
    LOAD_TOPOLOGY(topo, "mpibind-epyc-corona.xml");
    BindPlan plan = plan_binding(*topo, request(4, BindMode::gpu));
    CpuSet used;
    for (const TaskBinding& task : plan.tasks) used.insert(task.cpus.begin(), task.cpus.end());
    assert_int_equal(used.size(), 96);   // no NUMA node left idle
    assert_string_equal(aihpc::format_id_list(plan.tasks[0].cpus).c_str(), "0-11,48-59");   // GPU 0 on NUMA 1, plus 0
}

static void smt_shares_never_straddle_cores(void**) {   // D7
    LOAD_TOPOLOGY(topo, "smt-2pack-2gpu.xml");
    BindPlan plan = plan_binding(*topo, request(6, BindMode::cores, cpus_of("0-2,8-10")));
    for (const TaskBinding& task : plan.tasks) {
        unsigned cores = 0;
        for (const Core& core : topo->cores) cores += !disjoint(CpuSet(core.pus.begin(), core.pus.end()), task.cpus);
        assert_int_equal(cores, 1);
    }
    BindPlan four = plan_binding(*topo, request(4, BindMode::cores, cpus_of("0-2,8-10")));
    assert_string_equal(aihpc::format_id_list(four.tasks[0].cpus).c_str(), "0");
    assert_string_equal(aihpc::format_id_list(four.tasks[1].cpus).c_str(), "8");
    assert_string_equal(aihpc::format_id_list(four.tasks[2].cpus).c_str(), "1,9");
}

static void tasks_that_do_not_divide_the_gpus_stay_in_one_package(void**) {   // D8
    LOAD_TOPOLOGY(topo, "mpibind-g4dnmetal.xml");
    BindPlan plan = plan_binding(*topo, request(3, BindMode::gpu));
    for (const TaskBinding& task : plan.tasks) {
        std::set<unsigned> packages;
        for (const GpuRef& gpu : task.gpus) packages.insert(topo->gpus[gpu.index].where.packages.begin(),
                                                            topo->gpus[gpu.index].where.packages.end());
        assert_int_equal(packages.size(), 1);
    }
    BindPlan cores = plan_binding(*topo, request(3, BindMode::cores));
    for (const TaskBinding& task : cores.tasks) assert_int_equal(task.mems.size(), 1);
}

static void threads_use_smt_only_past_the_cores(void**) {
    LOAD_TOPOLOGY(topo, "smt-2pack-2gpu.xml");
    PlanRequest two = request(2, BindMode::numa);
    two.bind.threads = 2;
    BindPlan few = plan_binding(*topo, two);
    assert_string_equal(few.tasks[0].env.at("OMP_NUM_THREADS").c_str(), "2");
    assert_string_equal(few.tasks[0].env.at("OMP_PLACES").c_str(), "{0,8},{1,9},{2,10},{3,11}");
    PlanRequest eight = request(2, BindMode::numa);
    eight.bind.threads = 8;
    BindPlan many = plan_binding(*topo, eight);
    assert_string_equal(many.tasks[0].env.at("OMP_NUM_THREADS").c_str(), "8");
    assert_string_equal(many.tasks[0].env.at("OMP_PLACES").c_str(), "{0},{8},{1},{9},{2},{10},{3},{11}");
    assert_true(many.warnings.empty());
    eight.bind.threads = 9;
    assert_int_equal(plan_binding(*topo, eight).warnings.size(), 2);   // each task: more threads than CPUs
}

static void bind_option_reads_hbm_and_threads(void**) {
    BindRequest bind = aihpc::config::parse_bind("numa,hbm,threads=4,verbose");
    assert_true(bind.hbm);
    assert_int_equal(bind.threads, 4);
    assert_true(bind.verbose);
    expect_error_containing([] { aihpc::config::parse_bind("cores,threads=0"); }, "threads=N needs a count");
    expect_error_containing([] { aihpc::config::parse_bind("cores,threads=x"); }, "threads=N needs a count");
    expect_error_containing([] { aihpc::config::parse_bind("cores,fast"); }, "hbm or threads=N");
}

// ---- renderings

static void verbose_line_names_rank_cpus_mems_gpus_nics(void**) {
    LOAD_TOPOLOGY(topo, "smt-2pack-2gpu.xml");
    BindPlan plan = plan_binding(*topo, request(2, BindMode::gpu));
    assert_string_equal(describe_task(plan.tasks[0], 5).c_str(),
                        "rank 5 cpus 4-7,12-15 mems 1 gpus 0(0000:17:00.0) nics mlx5_0");
    BindPlan cores = plan_binding(*topo, request(1, BindMode::cores, cpus_of("0")));
    assert_string_equal(describe_task(cores.tasks[0], 0).c_str(), "rank 0 cpus 0 mems 0 gpus - nics mlx5_1");
}

static void json_has_the_documented_shape(void**) {
    LOAD_TOPOLOGY(topo, "smt-2pack-2gpu.xml");
    BindPlan plan = plan_binding(*topo, request(2, BindMode::gpu));
    json_object* root = json_tokener_parse(plan_to_json(plan).c_str());
    assert_non_null(root);
    json_object *tasks, *warnings, *task, *field;
    assert_true(json_object_object_get_ex(root, "tasks", &tasks));
    assert_true(json_object_object_get_ex(root, "warnings", &warnings));
    assert_int_equal(json_object_array_length(tasks), 2);
    task = json_object_array_get_idx(tasks, 0);
    assert_true(json_object_object_get_ex(task, "rank", &field));
    assert_int_equal(json_object_get_int(field), 0);
    assert_true(json_object_object_get_ex(task, "cpus", &field));
    assert_string_equal(json_object_get_string(field), "4-7,12-15");
    assert_true(json_object_object_get_ex(task, "mems", &field));
    assert_string_equal(json_object_get_string(field), "1");
    assert_true(json_object_object_get_ex(task, "gpus", &field));
    json_object *gpu = json_object_array_get_idx(field, 0), *value;
    assert_true(json_object_object_get_ex(gpu, "pci", &value));
    assert_string_equal(json_object_get_string(value), "0000:17:00.0");
    assert_true(json_object_object_get_ex(gpu, "index", &value));
    assert_int_equal(json_object_get_int(value), 0);
    assert_true(json_object_object_get_ex(task, "nics", &field));
    assert_string_equal(json_object_get_string(json_object_array_get_idx(field, 0)), "mlx5_0");
    assert_true(json_object_object_get_ex(task, "env", &field));
    assert_true(json_object_object_get_ex(field, "OMP_NUM_THREADS", &value));
    assert_string_equal(json_object_get_string(value), "4");
    json_object_put(root);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_machine_has_its_gpus_once_each_in_bus_id_order),
        cmocka_unit_test(vendor_ordinal_is_the_number_of_its_nvml_cuda_rsmi_osdev),
        cmocka_unit_test(osdevs_of_one_pci_device_make_one_gpu),
        cmocka_unit_test(bare_pci_gpus_count_and_bmc_vga_does_not),
        cmocka_unit_test(gpus_known_only_through_opencl_are_found),
        cmocka_unit_test(fixture_gpus_ignore_drm_cards_and_dedupe_osdevs),
        cmocka_unit_test(lassen_gpus_2_and_3_get_the_second_socket_hcas),
        cmocka_unit_test(tioga_gpu_0_gets_numa_node_3),
        cmocka_unit_test(dgx2_splits_each_socket_among_its_eight_gpus),
        cmocka_unit_test(whole_cores_before_smt_siblings),
        cmocka_unit_test(gpu_index_order_is_not_numa_order),
        cmocka_unit_test(restricted_half_socket_keeps_tasks_inside_it),
        cmocka_unit_test(restricted_set_is_split_among_tasks_sharing_it),
        cmocka_unit_test(gpu_without_local_cpus_gets_the_nearest_by_distance),
        cmocka_unit_test(gpu_local_numa_node_wins_over_its_package),
        cmocka_unit_test(nic_behind_the_gpus_switch_wins_then_same_numa),
        cmocka_unit_test(nonic_leaves_nics_and_their_variables_out),
        cmocka_unit_test(net_devices_stand_in_when_there_is_no_openfabrics),
        cmocka_unit_test(auto_binds_by_numa_when_the_step_has_no_gpu),
        cmocka_unit_test(gpu_mode_without_gpus_falls_back_to_numa_with_a_warning),
        cmocka_unit_test(none_binds_nothing_and_sets_no_variable),
        cmocka_unit_test(step_gpu_subset_keeps_global_indices_and_visible_names),
        cmocka_unit_test(bad_requests_are_refused_with_the_reason),
        cmocka_unit_test(fallback_domains_stay_disjoint_and_are_named),
        cmocka_unit_test(memory_only_numa_nodes_are_no_cpu_domain),
        cmocka_unit_test(hbm_without_such_memory_warns_and_keeps_the_own_nodes),
        cmocka_unit_test(management_ethernet_is_never_a_fabric_nic),
        cmocka_unit_test(nodes_without_a_fabric_set_no_nic_variable),
        cmocka_unit_test(vendor_ordinals_come_from_rsmi_names_not_pci_order),
        cmocka_unit_test(a_gpu_without_a_runtime_name_does_not_shift_the_named_ones),
        cmocka_unit_test(an_mi250x_gcd_is_local_to_its_l3),
        cmocka_unit_test(gpu_less_numa_nodes_serve_the_gpu_tasks_of_their_package),
        cmocka_unit_test(smt_shares_never_straddle_cores),
        cmocka_unit_test(tasks_that_do_not_divide_the_gpus_stay_in_one_package),
        cmocka_unit_test(threads_use_smt_only_past_the_cores),
        cmocka_unit_test(bind_option_reads_hbm_and_threads),
        cmocka_unit_test(verbose_line_names_rank_cpus_mems_gpus_nics),
        cmocka_unit_test(json_has_the_documented_shape),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
