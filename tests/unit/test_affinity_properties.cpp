// lib/affinity: every plan, on every topology of tests/fixtures/topologies, for many task
// counts, GPU subsets and allowed CPU sets, checked against properties that this file
// derives from hwloc itself (its objects, osdevs, PCI tree and distances), never from
// the planner's NodeTopology or its helpers: the oracle and the planner share no code.
// Also mpibind's published mappings for Corona and Quartz, core for core.
#include <hwloc.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
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

const std::string fixtures = AIHPC_FIXTURE_TOPOLOGIES;

const char* const every_fixture[] = {
    "hwloc-32em64t-2n8c2t-pci-normalio.xml",
    "hwloc-nvidiaDGX2.xml",
    "hwloc-power8gpudistances.xml",
    "hwloc-64intel64-fakeKNL-SNC4-hybrid.xml",
    "hwloc-16amd64-8n2c-cpusets.xml",
    "mpibind-coral-lassen.xml",
    "mpibind-g4dnmetal.xml",
    "mpibind-eas-tioga.xml",
    "mpibind-epyc-corona.xml",
    "mpibind-epyc-corona-p2-reduced.xml",
    "mpibind-cts1-quartz-smt1-reduced.xml",
    "smt-2pack-2gpu.xml",
    "4numa-dist-rsmi.xml",
};

using Ids = std::set<unsigned>;

Ids ids_of(hwloc_const_bitmap_t bitmap) {
    Ids ids;
    for (int i = hwloc_bitmap_first(bitmap); i >= 0; i = hwloc_bitmap_next(bitmap, i)) ids.insert(static_cast<unsigned>(i));
    return ids;
}

bool subset(const Ids& a, const Ids& b) { return std::includes(b.begin(), b.end(), a.begin(), a.end()); }
bool meet(const Ids& a, const Ids& b) {
    for (unsigned x : a)
        if (b.count(x)) return true;
    return false;
}
Ids both(const Ids& a, const Ids& b) {
    Ids out;
    for (unsigned x : a)
        if (b.count(x)) out.insert(x);
    return out;
}
std::string text(const Ids& ids) { return ids.empty() ? "-" : aihpc::format_id_list(ids); }

// hwloc's own view of a fixture, loaded with every I/O object and cache.
struct Reference {
    struct Deleter {
        void operator()(hwloc_topology* t) const { hwloc_topology_destroy(t); }
    };
    std::unique_ptr<hwloc_topology, Deleter> topo;

    explicit Reference(const std::string& path) {
        hwloc_topology_t raw = nullptr;
        hwloc_topology_init(&raw);
        topo.reset(raw);
        hwloc_topology_set_flags(raw, HWLOC_TOPOLOGY_FLAG_INCLUDE_DISALLOWED);
        hwloc_topology_set_all_types_filter(raw, HWLOC_TYPE_FILTER_KEEP_ALL);
        if (hwloc_topology_set_xml(raw, path.c_str()) != 0 || hwloc_topology_load(raw) != 0)
            fail_msg("hwloc cannot load %s", path.c_str());
    }
    hwloc_topology_t get() const { return topo.get(); }

    std::vector<hwloc_obj_t> all(hwloc_obj_type_t type) const {
        std::vector<hwloc_obj_t> out;
        for (hwloc_obj_t o = hwloc_get_next_obj_by_type(get(), type, nullptr); o; o = hwloc_get_next_obj_by_type(get(), type, o))
            out.push_back(o);
        return out;
    }
    Ids pus() const { return ids_of(hwloc_get_root_obj(get())->cpuset); }
    // The cores holding any of `cpus`, by hwloc logical index.
    Ids cores_of(const Ids& cpus) const {
        Ids cores;
        for (hwloc_obj_t core : all(HWLOC_OBJ_CORE))
            if (meet(ids_of(core->cpuset), cpus)) cores.insert(core->logical_index);
        return cores;
    }
    Ids core_pus(unsigned logical) const { return ids_of(hwloc_get_obj_by_type(get(), HWLOC_OBJ_CORE, logical)->cpuset); }
    std::vector<Ids> packages() const {
        std::vector<Ids> out;
        for (hwloc_obj_t p : all(HWLOC_OBJ_PACKAGE)) out.push_back(ids_of(p->cpuset));
        if (out.empty()) out.push_back(pus());
        return out;
    }
    // NUMA nodes as the kernel sees them: each PU's is the narrowest node holding it
    // (hwloc attaches MCDRAM/HBM beside the DDR node, with the same or a wider cpuset).
    bool memory_kind(hwloc_obj_t node) const {
        std::string s = node->subtype ? node->subtype : "";
        return s == "MCDRAM" || s == "HBM" || s == "GPUMemory" || s == "NVM";
    }
    std::map<unsigned, Ids> cpu_nodes() const {
        std::map<unsigned, Ids> nodes;
        for (unsigned pu : pus()) {
            hwloc_obj_t best = nullptr;
            for (hwloc_obj_t node : all(HWLOC_OBJ_NUMANODE)) {
                if (!hwloc_bitmap_isset(node->cpuset, static_cast<int>(pu))) continue;
                if (best == nullptr || hwloc_bitmap_weight(node->cpuset) < hwloc_bitmap_weight(best->cpuset) ||
                    (hwloc_bitmap_weight(node->cpuset) == hwloc_bitmap_weight(best->cpuset) && memory_kind(best) &&
                     !memory_kind(node)))
                    best = node;
            }
            if (best) nodes[best->os_index].insert(pu);
        }
        return nodes;
    }
    Ids memory_only_nodes() const {
        Ids out;
        auto cpu = cpu_nodes();
        for (hwloc_obj_t node : all(HWLOC_OBJ_NUMANODE))
            if (!cpu.count(node->os_index)) out.insert(node->os_index);
        return out;
    }
    hwloc_obj_t pci(const std::string& busid) const {
        return hwloc_get_pcidev_by_busidstring(get(), busid.c_str());
    }
};

struct Case {
    std::string fixture;
    BindMode mode;
    unsigned tasks;
    Ids allowed;                           // empty: all
    std::optional<std::vector<unsigned>> gpus;
};

std::string describe(const Case& c) {
    std::string gpus = "all";
    if (c.gpus) {
        std::vector<std::string> g;
        for (unsigned i : *c.gpus) g.push_back(std::to_string(i));
        gpus = aihpc::join(g, ",");
    }
    return c.fixture + " mode " + aihpc::config::to_string(c.mode) + " tasks " + std::to_string(c.tasks) + " cpus " +
           (c.allowed.empty() ? "all" : text(c.allowed)) + " gpus " + gpus;
}

#define CHECK(cond, ...)                                                              \
    do {                                                                              \
        if (!(cond)) {                                                                \
            char detail[512];                                                         \
            std::snprintf(detail, sizeof detail, __VA_ARGS__);                        \
            fail_msg("%s: %s (%s)", describe(c).c_str(), detail, #cond);              \
        }                                                                             \
    } while (0)

// The GPUs hwloc shows: PCI functions with a compute osdev, or display-class functions of
// NVIDIA or AMD; sorted by bus id.
std::vector<hwloc_obj_t> reference_gpus(const Reference& ref) {
    std::vector<hwloc_obj_t> gpus;
    for (hwloc_obj_t p : ref.all(HWLOC_OBJ_PCI_DEVICE)) {
        bool named = false;
        for (hwloc_obj_t c = p->io_first_child; c; c = c->next_sibling) {
            std::string name = c->name ? c->name : "";
            for (const char* prefix : {"cuda", "nvml", "rsmi", "opencl"})
                if (c->type == HWLOC_OBJ_OS_DEVICE && name.rfind(prefix, 0) == 0) named = true;
        }
        unsigned cls = p->attr->pcidev.class_id, vendor = p->attr->pcidev.vendor_id;
        bool display = (cls == 0x0300 || cls == 0x0302 || cls == 0x0380) && (vendor == 0x10de || vendor == 0x1002);
        if (named || display) gpus.push_back(p);
    }
    std::sort(gpus.begin(), gpus.end(), [](hwloc_obj_t a, hwloc_obj_t b) {
        auto key = [](hwloc_obj_t o) {
            const auto& x = o->attr->pcidev;
            return std::make_tuple(x.domain, x.bus, x.dev, x.func);
        };
        return key(a) < key(b);
    });
    return gpus;
}

std::string busid(hwloc_obj_t p) {
    char t[32];
    const auto& a = p->attr->pcidev;
    std::snprintf(t, sizeof t, "%04x:%02x:%02x.%01x", a.domain, a.bus, a.dev, a.func);
    return t;
}

// The number that hwloc's vendor-runtime osdev gives the GPU, if any.
std::optional<unsigned> runtime_number(hwloc_obj_t pci) {
    for (const char* prefix : {"nvml", "cuda", "rsmi"})
        for (hwloc_obj_t c = pci->io_first_child; c; c = c->next_sibling) {
            std::string name = c->name ? c->name : "";
            if (name.rfind(prefix, 0) == 0) return static_cast<unsigned>(std::stoul(name.substr(std::string(prefix).size())));
        }
    return std::nullopt;
}

// Depth of the deepest object above both.
unsigned shared_depth(hwloc_topology_t, hwloc_obj_t a, hwloc_obj_t b) {
    // hwloc_get_common_ancestor_obj compares depths, which I/O objects lack: walk up.
    std::set<hwloc_obj_t> above_a;
    for (hwloc_obj_t o = a; o; o = o->parent) above_a.insert(o);
    hwloc_obj_t common = b;
    while (common && !above_a.count(common)) common = common->parent;
    unsigned depth = 0;
    for (hwloc_obj_t o = common; o; o = o->parent) ++depth;
    return depth;
}

hwloc_obj_t find_osdev(const Reference& ref, const std::string& name) {
    for (hwloc_obj_t o = hwloc_get_next_osdev(ref.get(), nullptr); o; o = hwloc_get_next_osdev(ref.get(), o))
        if (o->name && name == o->name) return o;
    return nullptr;
}

bool fabric_nic(hwloc_obj_t osdev) {
    hwloc_obj_t pci = osdev->parent;
    if (pci == nullptr || pci->type != HWLOC_OBJ_PCI_DEVICE) return false;
    if (pci->attr->pcidev.linkspeed > 0 && pci->attr->pcidev.linkspeed < 3.0f) return false;
    if (osdev->attr->osdev.type == HWLOC_OBJ_OSDEV_OPENFABRICS) return true;
    unsigned vendor = pci->attr->pcidev.vendor_id;
    return vendor == 0x17db || vendor == 0x1590 || pci->attr->pcidev.class_id == 0x0207;
}

unsigned plans_checked = 0;

void check(const Reference& ref, const Case& c, const BindPlan& plan) {
    ++plans_checked;
    const Ids all = ref.pus();
    const Ids allowed = c.allowed.empty() ? all : both(c.allowed, all);
    const auto gpus = reference_gpus(ref);
    const auto cpu_nodes = ref.cpu_nodes();
    const Ids memory_only = ref.memory_only_nodes();
    const Ids allowed_cores = ref.cores_of(allowed);
    CHECK(plan.tasks.size() == c.tasks, "%zu tasks planned", plan.tasks.size());

    std::vector<unsigned> step;
    if (c.gpus) step = *c.gpus;
    else
        for (unsigned i = 0; i < gpus.size(); ++i) step.push_back(i);
    const bool gpu_mode = c.mode == BindMode::gpu || (c.mode == BindMode::auto_ && !step.empty());
    std::vector<std::string> warnings_text = plan.warnings;
    const bool warned_fallback = std::any_of(warnings_text.begin(), warnings_text.end(), [](const std::string& w) {
        return w.find("fall back") != std::string::npos || w.find("has no allowed CPU") != std::string::npos ||
               w.find("outnumber") != std::string::npos;
    });

    std::map<unsigned, unsigned> holders;
    for (const TaskBinding& task : plan.tasks) {
        // Where it may run.
        CHECK(!task.cpus.empty(), "rank %u has no CPU", task.rank);
        CHECK(subset(task.cpus, allowed), "rank %u cpus %s outside the allowed %s", task.rank, text(task.cpus).c_str(),
              text(allowed).c_str());
        // Memory: the CPU nodes of its CPUs, never a memory-only node unless asked.
        Ids own_nodes;
        for (const auto& [node, pus] : cpu_nodes)
            if (meet(pus, task.cpus)) own_nodes.insert(node);
        CHECK(task.mems == own_nodes, "rank %u mems %s, its CPUs' nodes are %s", task.rank, text(task.mems).c_str(),
              text(own_nodes).c_str());
        CHECK(!meet(task.mems, memory_only), "rank %u prefers memory-only node(s) %s", task.rank,
              text(both(task.mems, memory_only)).c_str());
        // Threads: one per core of its CPUs.
        CHECK(task.env.at("OMP_NUM_THREADS") == std::to_string(ref.cores_of(task.cpus).size()),
              "rank %u OMP_NUM_THREADS %s for %zu cores", task.rank, task.env.at("OMP_NUM_THREADS").c_str(),
              ref.cores_of(task.cpus).size());
        // SMT shares never straddle cores: a task on part of a core holds that core alone.
        Ids cores = ref.cores_of(task.cpus);
        bool partial = false;
        for (unsigned core : cores)
            if (!subset(both(ref.core_pus(core), allowed), task.cpus)) partial = true;
        CHECK(!partial || cores.size() == 1, "rank %u straddles cores with a partial one: %s", task.rank,
              text(task.cpus).c_str());

        if (!gpu_mode) {
            CHECK(task.gpus.empty(), "rank %u holds GPUs outside GPU mode", task.rank);
            continue;
        }
        CHECK(!task.gpus.empty() || c.tasks < step.size(), "rank %u holds no GPU", task.rank);
        std::set<unsigned> task_packages;
        Ids near_packages, local_union;
        bool all_local = !warned_fallback;
        for (const GpuRef& g : task.gpus) {
            ++holders[g.index];
            CHECK(g.index < gpus.size(), "rank %u holds GPU %u of %zu", task.rank, g.index, gpus.size());
            hwloc_obj_t pci = gpus[g.index];
            CHECK(g.pci == busid(pci), "GPU %u is %s, hwloc says %s", g.index, g.pci.c_str(), busid(pci).c_str());
            // Vendor ordinal: what the runtime osdev names it, when one does.
            if (auto n = runtime_number(pci))
                CHECK(g.visible_name == std::to_string(*n), "GPU %s shown as %s, hwloc names it %u", g.pci.c_str(),
                      g.visible_name.c_str(), *n);
            hwloc_obj_t anchor = hwloc_get_non_io_ancestor_obj(ref.get(), pci);
            hwloc_obj_t package = hwloc_get_ancestor_obj_by_type(ref.get(), HWLOC_OBJ_PACKAGE, anchor);
            if (package == nullptr && anchor->type == HWLOC_OBJ_PACKAGE) package = anchor;
            if (package) task_packages.insert(package->logical_index);
            Ids pcpus = package ? ids_of(package->cpuset) : all;
            near_packages.insert(pcpus.begin(), pcpus.end());
            Ids local = both(ids_of(anchor->cpuset), allowed);
            all_local = all_local && !local.empty();
            local_union.insert(local.begin(), local.end());
        }
        // Locality: with allowed CPUs in each GPU's own locality and no fallback, the task
        // runs within its GPUs' packages.
        if (all_local && !task.gpus.empty())
            CHECK(subset(task.cpus, near_packages), "rank %u cpus %s outside its GPUs' packages %s", task.rank,
                  text(task.cpus).c_str(), text(near_packages).c_str());
        // ... and on CPUs local to one of its GPUs, when those suffice for all tasks.
        if (!warned_fallback && !local_union.empty() && ref.cores_of(local_union).size() >= c.tasks)
            CHECK(meet(task.cpus, local_union), "rank %u cpus %s miss its GPUs' localities %s", task.rank,
                  text(task.cpus).c_str(), text(local_union).c_str());
        // NIC nearness: each chosen NIC is a fabric NIC at the deepest common ancestor
        // with one of the task's GPUs that any fabric NIC reaches.
        for (const std::string& name : task.nics) {
            hwloc_obj_t nic = find_osdev(ref, name);
            CHECK(nic != nullptr, "rank %u NIC %s is unknown to hwloc", task.rank, name.c_str());
            CHECK(fabric_nic(nic), "rank %u gets %s, not a fabric NIC", task.rank, name.c_str());
            bool nearest_for_some_gpu = false;
            for (const GpuRef& g : task.gpus) {
                unsigned best = 0;
                bool any_of = false;
                for (hwloc_obj_t o = hwloc_get_next_osdev(ref.get(), nullptr); o; o = hwloc_get_next_osdev(ref.get(), o))
                    if (fabric_nic(o) && (o->attr->osdev.type == nic->attr->osdev.type)) {
                        best = std::max(best, shared_depth(ref.get(), gpus[g.index], o));
                        any_of = true;
                    }
                if (any_of && shared_depth(ref.get(), gpus[g.index], nic) == best) nearest_for_some_gpu = true;
            }
            CHECK(nearest_for_some_gpu || task.gpus.empty(), "rank %u NIC %s is not the nearest to its GPUs", task.rank,
                  name.c_str());
        }
        // Packages: a task spans one package whenever there are at least as many tasks
        // as packages holding step GPUs.
        std::set<unsigned> step_packages;
        for (unsigned i : step) {
            hwloc_obj_t anchor = hwloc_get_non_io_ancestor_obj(ref.get(), gpus[i]);
            hwloc_obj_t package = hwloc_get_ancestor_obj_by_type(ref.get(), HWLOC_OBJ_PACKAGE, anchor);
            if (package == nullptr && anchor->type == HWLOC_OBJ_PACKAGE) package = anchor;
            if (package) step_packages.insert(package->logical_index);
        }
        if (c.tasks >= step_packages.size())
            CHECK(task_packages.size() <= 1, "rank %u holds GPUs of %zu packages", task.rank, task_packages.size());
    }

    // Disjoint whenever the allowed PUs suffice.
    if (allowed.size() >= c.tasks)
        for (std::size_t a = 0; a < plan.tasks.size(); ++a)
            for (std::size_t b = a + 1; b < plan.tasks.size(); ++b)
                CHECK(!meet(plan.tasks[a].cpus, plan.tasks[b].cpus), "ranks %zu and %zu share CPUs %s", a, b,
                      text(both(plan.tasks[a].cpus, plan.tasks[b].cpus)).c_str());

    // Balance: every step GPU held, by counts differing at most by one.
    if (gpu_mode) {
        CHECK(holders.size() == step.size(), "%zu of %zu GPUs held", holders.size(), step.size());
        unsigned least = UINT32_MAX, most = 0;
        for (const auto& [index, n] : holders) {
            least = std::min(least, n);
            most = std::max(most, n);
        }
        CHECK(most - least <= 1, "GPUs held by %u to %u tasks", least, most);
    } else {
        // Tasks stay in one package (cores) or one NUMA node (numa) when there are at
        // least as many tasks as those with allowed CPUs; CPU counts are balanced within
        // one of those.
        std::vector<Ids> units;
        if (c.mode == BindMode::cores) {
            for (const Ids& p : ref.packages())
                if (meet(p, allowed)) units.push_back(both(p, allowed));
        } else {
            Ids orphans = allowed;
            for (const auto& [node, pus] : cpu_nodes) {
                if (meet(pus, allowed)) units.push_back(both(pus, allowed));
                for (unsigned pu : pus) orphans.erase(pu);
            }
            if (!orphans.empty()) units.push_back(orphans);
        }
        if (c.tasks >= units.size())
            for (const TaskBinding& task : plan.tasks) {
                unsigned spans = 0;
                for (const Ids& u : units) spans += meet(u, task.cpus);
                CHECK(spans == 1, "rank %u spans %u %s", task.rank, spans, c.mode == BindMode::cores ? "packages" : "NUMA nodes");
            }
        for (const Ids& u : units) {
            std::size_t least = SIZE_MAX, most = 0;
            for (const TaskBinding& task : plan.tasks)
                if (subset(task.cpus, u)) {
                    std::size_t n = ref.cores_of(task.cpus).size();
                    least = std::min(least, n);
                    most = std::max(most, n);
                }
            if (most > 0 && ref.cores_of(u).size() >= c.tasks)
                CHECK(most - least <= 1, "cores per task in %s range from %zu to %zu", text(u).c_str(), least, most);
        }
    }
    (void)allowed_cores;
}

PlanRequest request_of(const Case& c) {
    PlanRequest req;
    req.tasks = c.tasks;
    req.allowed = c.allowed;
    req.gpus = c.gpus;
    req.bind = BindRequest{c.mode, false, false, false};
    return req;
}

// Allowed sets: all; the first half of package 0's cores; one CPU NUMA node; every other
// core; package 0 with the last package's first core (GPUs of the others fall back).
std::vector<Ids> cpu_subsets(const Reference& ref) {
    std::vector<Ids> out{Ids{}};
    auto packages = ref.packages();
    Ids first = packages.front();
    Ids cores = ref.cores_of(first);
    Ids half;
    std::size_t i = 0;
    for (unsigned core : cores)
        if (i++ < std::max<std::size_t>(1, cores.size() / 2)) {
            Ids pus = ref.core_pus(core);
            half.insert(pus.begin(), pus.end());
        }
    out.push_back(half);
    auto nodes = ref.cpu_nodes();
    if (nodes.size() > 1) out.push_back(std::prev(nodes.end())->second);
    Ids alternate;
    for (unsigned core : ref.cores_of(ref.pus()))
        if (core % 2 == 0) {
            Ids pus = ref.core_pus(core);
            alternate.insert(pus.begin(), pus.end());
        }
    out.push_back(alternate);
    if (packages.size() > 1) {
        Ids mixed = first;
        Ids last_core = ref.core_pus(*ref.cores_of(packages.back()).begin());
        mixed.insert(last_core.begin(), last_core.end());
        out.push_back(mixed);
    }
    return out;
}

std::vector<std::optional<std::vector<unsigned>>> gpu_subsets(std::size_t count) {
    std::vector<std::optional<std::vector<unsigned>>> out{std::nullopt};
    if (count < 2) return out;
    std::vector<unsigned> first_half, odd, last;
    for (unsigned i = 0; i < count; ++i) {
        if (i < count / 2) first_half.push_back(i);
        if (i % 2 == 1) odd.push_back(i);
    }
    last.push_back(static_cast<unsigned>(count - 1));
    out.insert(out.end(), {first_half, odd, last});
    return out;
}

}  // namespace

static void every_plan_on_every_fixture_keeps_the_properties(void**) {
    for (const char* file : every_fixture) {
        const std::string path = fixtures + "/" + file;
        Reference ref(path);
        NodeTopology topo = load_topology_xml(path);
        const std::size_t gpu_count = reference_gpus(ref).size();
        for (const Ids& allowed : cpu_subsets(ref)) {
            for (BindMode mode : {BindMode::auto_, BindMode::gpu, BindMode::numa, BindMode::cores}) {
                if (mode == BindMode::gpu && gpu_count == 0) continue;
                auto subsets = mode == BindMode::gpu ? gpu_subsets(gpu_count)
                                                     : std::vector<std::optional<std::vector<unsigned>>>{std::nullopt};
                for (const auto& gpus : subsets) {
                    for (unsigned tasks : {1u, 2u, 3u, 4u, 6u, 8u, 16u, 64u}) {
                        Case c{file, mode, tasks, allowed, gpus};
                        BindPlan plan = plan_binding(topo, request_of(c));
                        check(ref, c, plan);
                    }
                }
            }
        }
    }
    std::printf("# %u plans checked\n", plans_checked);
    assert_true(plans_checked >= 600);
}

// ---- mpibind's published mappings (test-suite/expected), compared core for core

namespace {

struct Expected {
    std::vector<Ids> cpus;
    std::vector<Ids> gpus;
};

Ids parse_ids(const std::string& text) {
    Ids ids;
    if (text.empty()) return ids;
    auto parsed = aihpc::parse_id_list(text);
    if (!parsed) fail_msg("cannot read '%s' in mpibind's expected file", text.c_str());
    return *parsed;
}

std::vector<Ids> parse_tasks(std::string line) {
    line = line.substr(1, line.size() - 2);   // the quotes
    std::vector<Ids> out;
    for (const std::string& part : aihpc::split(line, ';')) out.push_back(parse_ids(part));
    return out;
}

// The case named `description` in mpibind's expected file.
Expected expected_case(const std::string& file, const std::string& description) {
    std::ifstream in(fixtures + "/mpibind-expected/" + file);
    if (!in) fail_msg("cannot read %s", file.c_str());
    std::string line;
    while (std::getline(in, line)) {
        if (line != description) continue;
        std::string threads, cpus, gpus;
        std::getline(in, threads);
        std::getline(in, cpus);
        std::getline(in, gpus);
        return Expected{parse_tasks(cpus), parse_tasks(gpus)};
    }
    fail_msg("%s has no case '%s'", file.c_str(), description.c_str());
    return {};
}

enum class Match { same_cores, holds_cores };

struct MpibindCase {
    const char* fixture;
    const char* expected;
    const char* description;
    unsigned tasks;
    BindMode mode;
    const char* allowed;   // "" for all
    Match match;
    bool gpus;
};

const MpibindCase mpibind_cases[] = {
    {"mpibind-epyc-corona.xml", "expected.epyc-corona", "Map 1 task greedily", 1, BindMode::numa, "", Match::same_cores, false},
    {"mpibind-epyc-corona.xml", "expected.epyc-corona", "Map two tasks greedily", 2, BindMode::numa, "", Match::same_cores, false},
    {"mpibind-epyc-corona.xml", "expected.epyc-corona", "Map num_numa tasks without GPU optimization", 8, BindMode::numa, "",
     Match::same_cores, false},
    // GPU-less NUMA nodes are used too: each task holds mpibind's cores and more.
    {"mpibind-epyc-corona.xml", "expected.epyc-corona", "Map num_numa tasks with GPU optimization", 8, BindMode::gpu, "",
     Match::holds_cores, true},
    {"mpibind-epyc-corona.xml", "expected.epyc-corona", "Map two tasks, but restrict them to a single NUMA domain", 2,
     BindMode::cores, "0-5,48-53", Match::same_cores, false},
    {"mpibind-cts1-quartz-smt1-reduced.xml", "expected.cts1-quartz", "Map one task to every core", 36, BindMode::cores, "",
     Match::same_cores, false},
    {"mpibind-cts1-quartz-smt1-reduced.xml", "expected.cts1-quartz", "Map 1 task greedily", 1, BindMode::numa, "",
     Match::same_cores, false},
    {"mpibind-cts1-quartz-smt1-reduced.xml", "expected.cts1-quartz", "Map two tasks greedily", 2, BindMode::numa, "",
     Match::same_cores, false},
    {"mpibind-cts1-quartz-smt1-reduced.xml", "expected.cts1-quartz",
     "Map two tasks, but restrict them to a single NUMA domain", 2, BindMode::cores, "0-17", Match::same_cores, false},
};

}  // namespace

static void plans_match_mpibinds_published_mappings_core_for_core(void**) {
    for (const MpibindCase& m : mpibind_cases) {
        const std::string path = fixtures + "/" + m.fixture;
        Reference ref(path);
        NodeTopology topo = load_topology_xml(path);
        PlanRequest req;
        req.tasks = m.tasks;
        req.allowed = parse_ids(m.allowed);
        req.bind = BindRequest{m.mode, false, false, false};
        BindPlan plan = plan_binding(topo, req);
        Expected want = expected_case(m.expected, m.description);
        assert_int_equal(want.cpus.size(), m.tasks);
        for (unsigned t = 0; t < m.tasks; ++t) {
            Ids ours = ref.cores_of(plan.tasks[t].cpus), theirs = ref.cores_of(want.cpus[t]);
            bool ok = m.match == Match::same_cores ? ours == theirs : subset(theirs, ours);
            if (!ok)
                fail_msg("%s, '%s', task %u: cores %s, mpibind's %s", m.fixture, m.description, t, text(ours).c_str(),
                         text(theirs).c_str());
            if (m.gpus) {
                Ids held;
                for (const GpuRef& g : plan.tasks[t].gpus) held.insert(g.index);
                if (held != want.gpus[t])
                    fail_msg("%s, '%s', task %u: GPUs %s, mpibind's %s", m.fixture, m.description, t, text(held).c_str(),
                             text(want.gpus[t]).c_str());
            }
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_plan_on_every_fixture_keeps_the_properties),
        cmocka_unit_test(plans_match_mpibinds_published_mappings_core_for_core),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
