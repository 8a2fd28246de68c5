// lib/affinity: the topology reader and the binding planner, on the real-machine
// topologies of ../shared/topologies (skipped where that folder is absent) and on the
// small fixtures of tests/fixtures/topologies. Facts asserted about a machine were read
// off its XML with lstopo-no-graphics --input FILE and hwloc-calc.
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
    bool shared;            // in ../shared/topologies, else a fixture of ours
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
    {"smt-2pack-2gpu.xml", false, 2, 2},
    {"4numa-dist-rsmi.xml", false, 1, 4},
};

std::string path_of(const std::string& file, bool shared) {
    const char* dir = shared ? AIHPC_SHARED_TOPOLOGIES : AIHPC_FIXTURE_TOPOLOGIES;
    return std::string(dir) + "/" + file;
}

bool exists(const std::string& path) {
    struct stat st{};
    return stat(path.c_str(), &st) == 0;
}

// nullptr (and the test skipped by the caller) when a shared topology is absent.
const NodeTopology* topology(const std::string& file) {
    static std::map<std::string, NodeTopology> loaded;
    auto it = loaded.find(file);
    if (it != loaded.end()) return &it->second;
    bool shared = file.rfind("hwloc-", 0) == 0 || file.rfind("mpibind-", 0) == 0;
    std::string path = path_of(file, shared);
    if (!exists(path)) return nullptr;
    return &loaded.emplace(file, load_topology_xml(path)).first->second;
}

#define TOPOLOGY_OR_SKIP(var, file)      \
    const NodeTopology* var = topology(file); \
    if (var == nullptr) {                \
        skip();                          \
        return;                          \
    }

CpuSet cpus_of(std::string_view list) { return *aihpc::parse_id_list(list); }

bool subset(const CpuSet& a, const CpuSet& b) { return std::includes(b.begin(), b.end(), a.begin(), a.end()); }

bool disjoint(const CpuSet& a, const CpuSet& b) {
    for (unsigned x : a)
        if (b.count(x)) return false;
    return true;
}

CpuSet numa_cpus(const NodeTopology& topo, const NodeSet& nodes) {
    CpuSet cpus;
    for (const NumaNode& node : topo.numa)
        if (nodes.count(node.os_index)) cpus.insert(node.cpus.begin(), node.cpus.end());
    return cpus;
}

CpuSet intersect(const CpuSet& a, const CpuSet& b) {
    CpuSet out;
    for (unsigned x : a)
        if (b.count(x)) out.insert(x);
    return out;
}

unsigned cores_in(const NodeTopology& topo, const CpuSet& cpus) {
    unsigned n = 0;
    for (const Core& core : topo.cores)
        for (unsigned pu : core.pus)
            if (cpus.count(pu)) {
                ++n;
                break;
            }
    return n;
}

// Half of the first package: the restricted cpuset of a cgroup that got part of a socket.
CpuSet half_first_package(const NodeTopology& topo) {
    unsigned first_package = topo.packages.begin()->first;
    std::vector<const Core*> cores;
    for (const Core& core : topo.cores)
        if (core.package == first_package) cores.push_back(&core);
    CpuSet half;
    for (std::size_t i = 0; i < std::max<std::size_t>(1, cores.size() / 2); ++i)
        half.insert(cores[i]->pus.begin(), cores[i]->pus.end());
    return half;
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

// The invariants every plan keeps, whatever the machine, mode and task count.
void check_plan_invariants(const Machine& m, const NodeTopology& topo, const PlanRequest& req, const BindPlan& plan) {
    const CpuSet allowed = req.allowed.empty() ? topo.all_cpus() : req.allowed;
    assert_int_equal(plan.tasks.size(), req.tasks);
    for (const TaskBinding& task : plan.tasks) {
        assert_false(task.cpus.empty());
        assert_true(subset(task.cpus, allowed));
        assert_false(task.mems.empty());
        assert_true(subset(task.cpus, numa_cpus(topo, task.mems)));
        assert_string_equal(task.env.at("OMP_NUM_THREADS").c_str(), std::to_string(cores_in(topo, task.cpus)).c_str());
        // Within its GPUs' locality whenever that locality has allowed CPUs.
        if (plan.mode == BindMode::gpu) {
            CpuSet local;
            bool every_gpu_local = true;
            for (const GpuRef& ref : task.gpus) {
                CpuSet mine = intersect(numa_cpus(topo, topo.gpus[ref.index].where.numa), allowed);
                every_gpu_local = every_gpu_local && !mine.empty();
                local.insert(mine.begin(), mine.end());
            }
            if (every_gpu_local) assert_true(subset(task.cpus, local));
        }
    }

    if (plan.mode == BindMode::gpu) {
        // Shared out evenly: every GPU held, counts differing by at most one.
        std::map<unsigned, unsigned> holders;
        std::size_t least = SIZE_MAX, most = 0;
        for (const TaskBinding& task : plan.tasks) {
            least = std::min(least, task.gpus.size());
            most = std::max(most, task.gpus.size());
            for (const GpuRef& gpu : task.gpus) ++holders[gpu.index];
        }
        assert_int_equal(holders.size(), m.gpus);
        assert_true(most - least <= 1);
        unsigned fewest = UINT32_MAX, busiest = 0;
        for (const auto& [index, count] : holders) {
            fewest = std::min(fewest, count);
            busiest = std::max(busiest, count);
        }
        assert_true(busiest - fewest <= 1);
        if (req.tasks <= m.gpus) assert_int_equal(busiest, 1);
    }

    // Disjoint when the cores suffice: each domain has at least as many allowed cores
    // as tasks using it (domains computed here from the topology, not by the planner).
    std::map<NodeSet, unsigned> users;
    bool domains_local = true;
    for (const TaskBinding& task : plan.tasks) {
        NodeSet nodes;
        if (plan.mode == BindMode::gpu) {
            for (const GpuRef& ref : task.gpus) {
                const NodeSet& own = topo.gpus[ref.index].where.numa;
                if (intersect(numa_cpus(topo, own), allowed).empty()) domains_local = false;
                nodes.insert(own.begin(), own.end());
            }
        } else if (plan.mode == BindMode::numa) {
            nodes = task.mems;
        } else {
            for (const NumaNode& node : topo.numa) nodes.insert(node.os_index);
        }
        ++users[nodes];
    }
    bool enough = domains_local;
    for (const auto& [nodes, count] : users) {
        enough = enough && cores_in(topo, intersect(numa_cpus(topo, nodes), allowed)) >= count;
        for (const auto& [other, n] : users)
            if (other != nodes && !disjoint(other, nodes)) enough = false;
    }
    if (enough)
        for (std::size_t a = 0; a < plan.tasks.size(); ++a)
            for (std::size_t b = a + 1; b < plan.tasks.size(); ++b)
                if (!disjoint(plan.tasks[a].cpus, plan.tasks[b].cpus))
                    fail_msg("%s: tasks %zu and %zu overlap (%s / %s)", m.file, a, b,
                             aihpc::format_id_list(plan.tasks[a].cpus).c_str(),
                             aihpc::format_id_list(plan.tasks[b].cpus).c_str());
}

}  // namespace

// ---- topology reading

static void every_machine_has_its_gpus_once_each_in_bus_id_order(void**) {
    for (const Machine& m : machines) {
        const NodeTopology* topo = topology(m.file);
        if (topo == nullptr) continue;
        if (topo->gpus.size() != m.gpus) fail_msg("%s: %zu GPUs, expected %u", m.file, topo->gpus.size(), m.gpus);
        for (std::size_t i = 0; i < topo->gpus.size(); ++i) {
            assert_int_equal(topo->gpus[i].index, i);
            if (i > 0) assert_true(topo->gpus[i - 1].pci < topo->gpus[i].pci);
        }
        assert_int_equal(topo->numa.size(), m.numa_nodes);
    }
}

static void gpu_index_equals_the_number_of_its_cuda_nvml_rsmi_osdevs(void**) {
    for (const Machine& m : machines) {
        const NodeTopology* topo = topology(m.file);
        if (topo == nullptr) continue;
        for (const Gpu& gpu : topo->gpus)
            for (const std::string& name : gpu.osdevs)
                for (const char* prefix : {"cuda", "nvml", "rsmi"})
                    if (name.rfind(prefix, 0) == 0 && topo->gpus.size() == m.gpus &&
                        std::string(m.file) != "hwloc-32em64t-2n8c2t-pci-normalio.xml")  // CUDA there saw 1 of 3
                        assert_string_equal(name.substr(std::string(prefix).size()).c_str(), std::to_string(gpu.index).c_str());
    }
}

static void osdevs_of_one_pci_device_make_one_gpu(void**) {
    TOPOLOGY_OR_SKIP(topo, "mpibind-g4dnmetal.xml");
    assert_int_equal(topo->gpus.size(), 8);   // 24 osdevs: cudaN, openclN, nvmlN
    assert_int_equal(topo->gpus[0].osdevs.size(), 3);
    assert_string_equal(topo->gpus[0].pci.c_str(), "0000:18:00.0");
}

static void bare_pci_gpus_count_and_bmc_vga_does_not(void**) {
    TOPOLOGY_OR_SKIP(topo, "hwloc-32em64t-2n8c2t-pci-normalio.xml");
    std::vector<std::string> pcis;
    for (const Gpu& gpu : topo->gpus) pcis.push_back(gpu.pci);
    assert_string_equal(aihpc::join(pcis, " ").c_str(), "0000:03:00.0 0000:83:00.0 0000:84:00.0 0000:84:00.1");
    assert_int_equal(topo->gpus[0].osdevs.size(), 0);
    assert_int_equal(static_cast<int>(topo->gpus[3].vendor), static_cast<int>(GpuVendor::amd));
    assert_int_equal(topo->gpus[3].vendor_ordinal, 0);
    assert_int_equal(topo->gpus[2].vendor_ordinal, 2);
}

static void gpus_known_only_through_opencl_are_found(void**) {
    TOPOLOGY_OR_SKIP(topo, "mpibind-epyc-corona.xml");
    assert_int_equal(topo->gpus.size(), 4);
    assert_int_equal(topo->gpus[0].where.numa.size(), 1);
    assert_int_equal(*topo->gpus[0].where.numa.begin(), 1);   // 13:00.0 on NUMA node 1
}

static void fixture_gpus_ignore_drm_cards_and_dedupe_osdevs(void**) {
    TOPOLOGY_OR_SKIP(topo, "smt-2pack-2gpu.xml");
    assert_int_equal(topo->gpus.size(), 2);
    assert_string_equal(topo->gpus[0].pci.c_str(), "0000:17:00.0");
    assert_string_equal(aihpc::join(topo->gpus[0].osdevs, ",").c_str(), "cuda0,nvml0");
    assert_int_equal(*topo->gpus[0].where.packages.begin(), 1);
    assert_int_equal(*topo->gpus[1].where.packages.begin(), 0);
    assert_int_equal(topo->cores.size(), 8);
    assert_int_equal(topo->cores[0].pus.size(), 2);
    assert_int_equal(topo->cores[0].pus[1], 8);
}

// ---- properties over every machine, mode, task count and allowed set

static void every_plan_keeps_the_invariants(void**) {
    for (const Machine& m : machines) {
        const NodeTopology* topo = topology(m.file);
        if (topo == nullptr) continue;
        for (BindMode mode : {BindMode::auto_, BindMode::gpu, BindMode::numa, BindMode::cores}) {
            for (unsigned tasks : {1u, 2u, 3u, m.gpus, 2 * m.gpus, 7u, 128u}) {
                for (bool restricted : {false, true}) {
                    PlanRequest req = request(tasks, mode, restricted ? half_first_package(*topo) : CpuSet{});
                    BindPlan plan = plan_binding(*topo, req);
                    check_plan_invariants(m, *topo, req, plan);
                }
            }
        }
    }
}

// ---- machine facts

static void lassen_gpus_2_and_3_get_the_second_socket_hcas(void**) {
    TOPOLOGY_OR_SKIP(topo, "mpibind-coral-lassen.xml");
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
    TOPOLOGY_OR_SKIP(topo, "mpibind-eas-tioga.xml");
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
    TOPOLOGY_OR_SKIP(topo, "hwloc-nvidiaDGX2.xml");
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
    TOPOLOGY_OR_SKIP(topo, "smt-2pack-2gpu.xml");
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
    TOPOLOGY_OR_SKIP(topo, "smt-2pack-2gpu.xml");
    BindPlan plan = plan_binding(*topo, request(2, BindMode::gpu));
    assert_string_equal(aihpc::format_id_list(plan.tasks[0].cpus).c_str(), "4-7,12-15");   // GPU 0 on package 1
    assert_string_equal(aihpc::format_id_list(plan.tasks[0].mems).c_str(), "1");
    assert_string_equal(aihpc::format_id_list(plan.tasks[1].cpus).c_str(), "0-3,8-11");
    assert_string_equal(plan.tasks[1].env.at("CUDA_VISIBLE_DEVICES").c_str(), "1");
    assert_true(plan.warnings.empty());
}

static void restricted_half_socket_keeps_tasks_inside_it(void**) {
    TOPOLOGY_OR_SKIP(topo, "smt-2pack-2gpu.xml");
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
    TOPOLOGY_OR_SKIP(topo, "smt-2pack-2gpu.xml");
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
    TOPOLOGY_OR_SKIP(topo, "4numa-dist-rsmi.xml");
    BindPlan plan = plan_binding(*topo, request(1, BindMode::gpu, cpus_of("0-3")));
    // rsmi0 sits on NUMA node 2 (package 1); of the allowed nodes 0 and 1, node 1 is at
    // distance 20, node 0 at 30.
    assert_string_equal(aihpc::format_id_list(plan.tasks[0].cpus).c_str(), "2-3");
    assert_string_equal(aihpc::format_id_list(plan.tasks[0].mems).c_str(), "1");
    assert_int_equal(plan.warnings.size(), 1);
    assert_true(plan.warnings[0].find("distance 20") != std::string::npos);
}

static void gpu_local_numa_node_wins_over_its_package(void**) {
    TOPOLOGY_OR_SKIP(topo, "4numa-dist-rsmi.xml");
    BindPlan plan = plan_binding(*topo, request(1, BindMode::gpu));
    assert_string_equal(aihpc::format_id_list(plan.tasks[0].cpus).c_str(), "4-5");
    BindPlan package = plan_binding(*topo, request(1, BindMode::gpu, cpus_of("0-3,6-7")));
    assert_string_equal(aihpc::format_id_list(package.tasks[0].cpus).c_str(), "6-7");
    assert_true(package.warnings.empty());
}

static void nic_behind_the_gpus_switch_wins_then_same_numa(void**) {
    TOPOLOGY_OR_SKIP(topo, "smt-2pack-2gpu.xml");
    BindPlan plan = plan_binding(*topo, request(2, BindMode::gpu));
    assert_string_equal(aihpc::join(plan.tasks[0].nics, ",").c_str(), "mlx5_0");
    assert_string_equal(aihpc::join(plan.tasks[1].nics, ",").c_str(), "mlx5_1");   // OpenFabrics before eth0
    BindPlan numa = plan_binding(*topo, request(2, BindMode::numa));
    assert_string_equal(aihpc::join(numa.tasks[0].nics, ",").c_str(), "mlx5_1");
}

static void nonic_leaves_nics_and_their_variables_out(void**) {
    TOPOLOGY_OR_SKIP(topo, "smt-2pack-2gpu.xml");
    PlanRequest req = request(2, BindMode::gpu);
    req.bind.nonic = true;
    BindPlan plan = plan_binding(*topo, req);
    assert_true(plan.tasks[0].nics.empty());
    assert_int_equal(plan.tasks[0].env.count("NCCL_IB_HCA"), 0);
    assert_int_equal(plan.tasks[0].env.count("UCX_NET_DEVICES"), 0);
}

static void net_devices_stand_in_when_there_is_no_openfabrics(void**) {
    TOPOLOGY_OR_SKIP(topo, "mpibind-eas-tioga.xml");
    BindPlan plan = plan_binding(*topo, request(8, BindMode::gpu));
    const TaskBinding& task = task_holding(plan, 0);
    assert_false(task.nics.empty());
    assert_int_equal(task.env.count("NCCL_IB_HCA"), 0);
    assert_true(task.env.at("NCCL_SOCKET_IFNAME").rfind("=", 0) == 0);
}

// ---- modes and requests

static void auto_binds_by_numa_when_the_step_has_no_gpu(void**) {
    TOPOLOGY_OR_SKIP(topo, "smt-2pack-2gpu.xml");
    PlanRequest req = request(2, BindMode::auto_);
    req.gpus = std::vector<unsigned>{};
    BindPlan plan = plan_binding(*topo, req);
    assert_int_equal(static_cast<int>(plan.mode), static_cast<int>(BindMode::numa));
    assert_string_equal(aihpc::format_id_list(plan.tasks[0].cpus).c_str(), "0-3,8-11");
    assert_int_equal(plan.tasks[0].env.count("CUDA_VISIBLE_DEVICES"), 0);
    assert_true(plan.warnings.empty());
}

static void gpu_mode_without_gpus_falls_back_to_numa_with_a_warning(void**) {
    TOPOLOGY_OR_SKIP(topo, "smt-2pack-2gpu.xml");
    PlanRequest req = request(2, BindMode::gpu);
    req.gpus = std::vector<unsigned>{};
    BindPlan plan = plan_binding(*topo, req);
    assert_int_equal(static_cast<int>(plan.mode), static_cast<int>(BindMode::numa));
    assert_int_equal(plan.warnings.size(), 1);
}

static void none_binds_nothing_and_sets_no_variable(void**) {
    TOPOLOGY_OR_SKIP(topo, "smt-2pack-2gpu.xml");
    BindPlan plan = plan_binding(*topo, request(3, BindMode::none, cpus_of("0-5")));
    for (const TaskBinding& task : plan.tasks) {
        assert_string_equal(aihpc::format_id_list(task.cpus).c_str(), "0-5");
        assert_true(task.env.empty());
    }
}

static void step_gpu_subset_keeps_global_indices_and_visible_names(void**) {
    TOPOLOGY_OR_SKIP(topo, "mpibind-coral-lassen.xml");
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
    TOPOLOGY_OR_SKIP(topo, "smt-2pack-2gpu.xml");
    expect_error_containing([&] { plan_binding(*topo, request(0, BindMode::auto_)); }, "no local task");
    PlanRequest gpu = request(1, BindMode::gpu);
    gpu.gpus = std::vector<unsigned>{5};
    expect_error_containing([&] { plan_binding(*topo, gpu); }, "GPU 5 is not on this node, which has 2 GPUs (0-1)");
    expect_error_containing([&] { plan_binding(*topo, request(1, BindMode::cores, cpus_of("100-101"))); },
                            "none of the allowed CPUs 100-101");
}

// ---- renderings

static void verbose_line_names_rank_cpus_mems_gpus_nics(void**) {
    TOPOLOGY_OR_SKIP(topo, "smt-2pack-2gpu.xml");
    BindPlan plan = plan_binding(*topo, request(2, BindMode::gpu));
    assert_string_equal(describe_task(plan.tasks[0], 5).c_str(),
                        "rank 5 cpus 4-7,12-15 mems 1 gpus 0(0000:17:00.0) nics mlx5_0");
    BindPlan cores = plan_binding(*topo, request(1, BindMode::cores, cpus_of("0")));
    assert_string_equal(describe_task(cores.tasks[0], 0).c_str(), "rank 0 cpus 0 mems 0 gpus - nics mlx5_1");
}

static void json_has_the_documented_shape(void**) {
    TOPOLOGY_OR_SKIP(topo, "smt-2pack-2gpu.xml");
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
        cmocka_unit_test(gpu_index_equals_the_number_of_its_cuda_nvml_rsmi_osdevs),
        cmocka_unit_test(osdevs_of_one_pci_device_make_one_gpu),
        cmocka_unit_test(bare_pci_gpus_count_and_bmc_vga_does_not),
        cmocka_unit_test(gpus_known_only_through_opencl_are_found),
        cmocka_unit_test(fixture_gpus_ignore_drm_cards_and_dedupe_osdevs),
        cmocka_unit_test(every_plan_keeps_the_invariants),
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
        cmocka_unit_test(verbose_line_names_rank_cpus_mems_gpus_nics),
        cmocka_unit_test(json_has_the_documented_shape),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
