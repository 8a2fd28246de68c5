// The planner. Resources (the step's GPUs, or NUMA nodes, or the whole allowed set) are
// shared out over the tasks; each resource has a CPU domain (a GPU's: the allowed CPUs of
// its NUMA node, else of its package, else the nearest allowed ones); each domain's
// cores are then split among the tasks that use it, whole cores before SMT siblings, so
// tasks are disjoint whenever the cores suffice.
#include "affinity/bind_plan.hpp"

#include <algorithm>
#include <functional>
#include <limits>

#include "common/error.hpp"
#include "common/json.hpp"
#include "common/text.hpp"

namespace aihpc::affinity {

namespace {

using config::BindMode;

CpuSet intersect(const CpuSet& a, const CpuSet& b) {
    CpuSet out;
    std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::inserter(out, out.end()));
    return out;
}

bool intersects(const std::set<unsigned>& a, const std::set<unsigned>& b) {
    for (unsigned x : a)
        if (b.count(x)) return true;
    return false;
}

CpuSet cpus_of_numa(const NodeTopology& topo, const NodeSet& nodes) {
    CpuSet cpus;
    for (const NumaNode& node : topo.numa)
        if (nodes.count(node.os_index)) cpus.insert(node.cpus.begin(), node.cpus.end());
    return cpus;
}

CpuSet cpus_of_packages(const NodeTopology& topo, const std::set<unsigned>& packages) {
    CpuSet cpus;
    for (const auto& [os_index, pcpus] : topo.packages)
        if (packages.count(os_index)) cpus.insert(pcpus.begin(), pcpus.end());
    return cpus;
}

NodeSet numa_of(const NodeTopology& topo, const CpuSet& cpus) {
    NodeSet nodes;
    for (const NumaNode& node : topo.numa)
        if (intersects(node.cpus, cpus)) nodes.insert(node.os_index);
    return nodes;
}

std::string list(const std::set<unsigned>& ids) { return ids.empty() ? "-" : format_id_list(ids); }

// Even contiguous shares: with fewer tasks than resources each task gets a block of
// resources; with more, each resource serves a block of tasks.
std::vector<std::vector<std::size_t>> distribute(std::size_t resources, std::size_t tasks) {
    std::vector<std::vector<std::size_t>> shares(tasks);
    if (resources == 0) return shares;
    for (std::size_t t = 0; t < tasks; ++t) {
        if (tasks <= resources) {
            for (std::size_t r = t * resources / tasks; r < (t + 1) * resources / tasks; ++r) shares[t].push_back(r);
        } else {
            shares[t].push_back(t * resources / tasks);
        }
    }
    return shares;
}

// The domain's PUs grouped by core, in topology order.
std::vector<std::vector<unsigned>> cores_within(const NodeTopology& topo, const CpuSet& domain) {
    std::vector<std::vector<unsigned>> cores;
    for (const Core& core : topo.cores) {
        std::vector<unsigned> pus;
        for (unsigned pu : core.pus)
            if (domain.count(pu)) pus.push_back(pu);
        if (!pus.empty()) cores.push_back(std::move(pus));
    }
    return cores;
}

// Member j of k's share of the cores: whole cores while there are at least k of them,
// then single PUs (SMT siblings apart), then shared PUs.
CpuSet share_of(const std::vector<std::vector<unsigned>>& cores, std::size_t k, std::size_t j) {
    CpuSet share;
    if (cores.empty() || k == 0) return share;
    if (cores.size() >= k) {
        for (std::size_t c = j * cores.size() / k; c < (j + 1) * cores.size() / k; ++c)
            share.insert(cores[c].begin(), cores[c].end());
        return share;
    }
    std::vector<unsigned> pus;
    for (const auto& core : cores) pus.insert(pus.end(), core.begin(), core.end());
    if (pus.size() >= k) {
        for (std::size_t p = j * pus.size() / k; p < (j + 1) * pus.size() / k; ++p) share.insert(pus[p]);
    } else {
        share.insert(pus[j * pus.size() / k]);
    }
    return share;
}

// The allowed CPUs local to a GPU: its NUMA node(s), else its package, else the nearest
// allowed NUMA nodes by the distance matrix, else all allowed CPUs.
CpuSet gpu_domain(const NodeTopology& topo, const Gpu& gpu, const CpuSet& allowed, std::vector<std::string>& warnings) {
    CpuSet domain = intersect(cpus_of_numa(topo, gpu.where.numa), allowed);
    if (!domain.empty()) return domain;
    domain = intersect(cpus_of_packages(topo, gpu.where.packages), allowed);
    if (!domain.empty()) return domain;

    NodeSet nearest;
    std::uint64_t best = std::numeric_limits<std::uint64_t>::max();
    for (const NumaNode& node : topo.numa) {
        if (intersect(node.cpus, allowed).empty()) continue;
        for (unsigned own : gpu.where.numa) {
            auto it = topo.numa_distance.find({own, node.os_index});
            if (it == topo.numa_distance.end()) continue;
            if (it->second < best) {
                best = it->second;
                nearest = {node.os_index};
            } else if (it->second == best) {
                nearest.insert(node.os_index);
            }
        }
    }
    std::string where = "GPU " + std::to_string(gpu.index) + " (" + gpu.pci + ") has no allowed CPU in its NUMA node " +
                        list(gpu.where.numa) + " or its package " + list(gpu.where.packages);
    if (!nearest.empty()) {
        domain = intersect(cpus_of_numa(topo, nearest), allowed);
        warnings.push_back(where + ": using the nearest allowed CPUs " + list(domain) + " (NUMA node " + list(nearest) +
                           ", distance " + std::to_string(best) + ")");
        return domain;
    }
    warnings.push_back(where + ", and the topology has no NUMA distances: using all allowed CPUs " + list(allowed));
    return allowed;
}

std::vector<const Nic*> nic_candidates(const NodeTopology& topo) {
    std::vector<const Nic*> openfabrics, net;
    for (const Nic& nic : topo.nics) (nic.openfabrics ? openfabrics : net).push_back(&nic);
    return openfabrics.empty() ? net : openfabrics;
}

// The nearest level that holds any candidate: same PCI switch or bridge, same NUMA node,
// same package, else the whole node.
std::vector<const Nic*> nics_near(const std::vector<const Nic*>& candidates, const PciLocality* gpu,
                                  const NodeSet& numa, const std::set<unsigned>& packages) {
    std::vector<std::function<bool(const Nic&)>> levels;
    if (gpu != nullptr) {
        levels.push_back([gpu](const Nic& nic) {
            for (auto b : gpu->bridges)
                if (std::find(nic.where.bridges.begin(), nic.where.bridges.end(), b) != nic.where.bridges.end()) return true;
            return false;
        });
    }
    levels.push_back([&numa](const Nic& nic) { return intersects(nic.where.numa, numa); });
    levels.push_back([&packages](const Nic& nic) { return intersects(nic.where.packages, packages); });
    for (const auto& level : levels) {
        std::vector<const Nic*> chosen;
        for (const Nic* nic : candidates)
            if (level(*nic)) chosen.push_back(nic);
        if (!chosen.empty()) return chosen;
    }
    return candidates;
}

std::set<unsigned> packages_of(const NodeTopology& topo, const CpuSet& cpus) {
    std::set<unsigned> packages;
    for (const auto& [os_index, pcpus] : topo.packages)
        if (intersects(pcpus, cpus)) packages.insert(os_index);
    return packages;
}

unsigned core_count(const NodeTopology& topo, const CpuSet& cpus) {
    unsigned count = 0;
    for (const Core& core : topo.cores)
        for (unsigned pu : core.pus)
            if (cpus.count(pu)) {
                ++count;
                break;
            }
    return count;
}

void fill_env(const NodeTopology& topo, TaskBinding& task, const std::vector<const Nic*>& nics) {
    std::map<GpuVendor, std::vector<std::string>> visible;
    for (const GpuRef& gpu : task.gpus) visible[gpu.vendor].push_back(gpu.visible_name);
    if (!task.gpus.empty()) task.env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID";
    if (visible.count(GpuVendor::nvidia)) task.env["CUDA_VISIBLE_DEVICES"] = join(visible[GpuVendor::nvidia], ",");
    if (visible.count(GpuVendor::amd)) task.env["ROCR_VISIBLE_DEVICES"] = join(visible[GpuVendor::amd], ",");

    task.env["OMP_NUM_THREADS"] = std::to_string(core_count(topo, task.cpus));
    task.env["OMP_PLACES"] = omp_places(topo, task.cpus);
    task.env["OMP_PROC_BIND"] = "close";

    if (nics.empty()) return;
    std::vector<std::string> devices;
    for (const Nic* nic : nics) {
        if (!nic->openfabrics) {
            devices.push_back(nic->name);
            continue;
        }
        for (unsigned port : nic->ports) devices.push_back(nic->name + ":" + std::to_string(port));
    }
    task.env["UCX_NET_DEVICES"] = join(devices, ",");
    // A leading '=' makes NCCL match names exactly: mlx5_1 must not also pick mlx5_10.
    if (nics.front()->openfabrics)
        task.env["NCCL_IB_HCA"] = "=" + join(devices, ",");
    else
        task.env["NCCL_SOCKET_IFNAME"] = "=" + join(devices, ",");
}

}  // namespace

std::string omp_places(const NodeTopology& topology, const CpuSet& cpus) {
    std::vector<std::string> places;
    for (const Core& core : topology.cores) {
        std::vector<std::string> pus;
        for (unsigned pu : core.pus)
            if (cpus.count(pu)) pus.push_back(std::to_string(pu));
        if (!pus.empty()) places.push_back("{" + join(pus, ",") + "}");
    }
    return join(places, ",");
}

BindPlan plan_binding(const NodeTopology& topo, const PlanRequest& request) {
    if (request.tasks == 0) throw Error("there is no local task to bind");
    const CpuSet all = topo.all_cpus();
    const CpuSet allowed = request.allowed.empty() ? all : intersect(request.allowed, all);
    if (allowed.empty())
        throw Error("none of the allowed CPUs " + list(request.allowed) + " exists on this node, whose CPUs are " +
                    list(all) + "; check the step's CPU allocation");

    std::vector<unsigned> step_gpus;
    if (request.gpus) {
        std::set<unsigned> unique(request.gpus->begin(), request.gpus->end());
        for (unsigned index : unique) {
            if (index >= topo.gpus.size())
                throw Error("GPU " + std::to_string(index) + " is not on this node, which has " +
                            std::to_string(topo.gpus.size()) + " GPUs" +
                            (topo.gpus.empty() ? "" : " (0-" + std::to_string(topo.gpus.size() - 1) + ")"));
            step_gpus.push_back(index);
        }
    } else {
        for (const Gpu& gpu : topo.gpus) step_gpus.push_back(gpu.index);
    }

    BindPlan plan;
    plan.nomem = request.bind.nomem;
    std::vector<std::string> names = request.gpu_names;
    if (!names.empty() && names.size() != step_gpus.size()) {
        plan.warnings.push_back("the step lists " + std::to_string(names.size()) + " visible GPU names for " +
                                std::to_string(step_gpus.size()) + " GPUs: numbering them by vendor order instead");
        names.clear();
    }

    plan.mode = request.bind.mode;
    if (plan.mode == BindMode::auto_) plan.mode = step_gpus.empty() ? BindMode::numa : BindMode::gpu;
    if (plan.mode == BindMode::gpu && step_gpus.empty()) {
        plan.warnings.push_back("binding by GPU, but the step has no GPU on this node: binding by NUMA node instead");
        plan.mode = BindMode::numa;
    }

    const std::size_t n = request.tasks;
    plan.tasks.resize(n);
    for (std::size_t t = 0; t < n; ++t) plan.tasks[t].rank = static_cast<unsigned>(t);

    if (plan.mode == BindMode::none) {
        for (TaskBinding& task : plan.tasks) {
            task.cpus = allowed;
            task.mems = numa_of(topo, allowed);
        }
        return plan;
    }

    std::vector<CpuSet> domains;
    auto domain_id = [&domains](const CpuSet& domain) {
        auto it = std::find(domains.begin(), domains.end(), domain);
        if (it != domains.end()) return static_cast<std::size_t>(it - domains.begin());
        domains.push_back(domain);
        return domains.size() - 1;
    };
    std::vector<std::vector<std::size_t>> task_domains(n);
    auto use = [&task_domains](std::size_t t, std::size_t d) {
        if (std::find(task_domains[t].begin(), task_domains[t].end(), d) == task_domains[t].end())
            task_domains[t].push_back(d);
    };

    if (plan.mode == BindMode::gpu) {
        std::vector<std::size_t> gpu_domains;
        for (unsigned index : step_gpus) gpu_domains.push_back(domain_id(gpu_domain(topo, topo.gpus[index], allowed, plan.warnings)));
        auto shares = distribute(step_gpus.size(), n);
        for (std::size_t t = 0; t < n; ++t) {
            for (std::size_t r : shares[t]) {
                const Gpu& gpu = topo.gpus[step_gpus[r]];
                std::string name = names.empty() ? std::to_string(gpu.vendor_ordinal) : names[r];
                plan.tasks[t].gpus.push_back(GpuRef{gpu.index, gpu.pci, name, gpu.vendor});
                use(t, gpu_domains[r]);
            }
        }
    } else if (plan.mode == BindMode::numa) {
        std::vector<std::size_t> node_domains;
        for (const NumaNode& node : topo.numa) {
            CpuSet domain = intersect(node.cpus, allowed);
            if (!domain.empty()) node_domains.push_back(domain_id(domain));
        }
        if (node_domains.empty()) node_domains.push_back(domain_id(allowed));
        auto shares = distribute(node_domains.size(), n);
        for (std::size_t t = 0; t < n; ++t)
            for (std::size_t r : shares[t]) use(t, node_domains[r]);
    } else {
        std::size_t whole = domain_id(allowed);
        for (std::size_t t = 0; t < n; ++t) use(t, whole);
    }

    for (std::size_t d = 0; d < domains.size(); ++d) {
        std::vector<std::size_t> members;
        for (std::size_t t = 0; t < n; ++t)
            if (std::find(task_domains[t].begin(), task_domains[t].end(), d) != task_domains[t].end()) members.push_back(t);
        auto cores = cores_within(topo, domains[d]);
        for (std::size_t j = 0; j < members.size(); ++j) {
            CpuSet share = share_of(cores, members.size(), j);
            plan.tasks[members[j]].cpus.insert(share.begin(), share.end());
        }
    }

    const std::vector<const Nic*> candidates = request.bind.nonic ? std::vector<const Nic*>{} : nic_candidates(topo);
    for (TaskBinding& task : plan.tasks) {
        if (task.cpus.empty()) task.cpus = allowed;  // unreachable by construction; a plan never binds to nothing
        task.mems = numa_of(topo, task.cpus);
        std::vector<const Nic*> chosen;
        if (!candidates.empty()) {
            if (task.gpus.empty()) {
                chosen = nics_near(candidates, nullptr, task.mems, packages_of(topo, task.cpus));
            } else {
                for (const GpuRef& ref : task.gpus) {
                    const Gpu& gpu = topo.gpus[ref.index];
                    for (const Nic* nic : nics_near(candidates, &gpu.where, gpu.where.numa, gpu.where.packages))
                        if (std::find(chosen.begin(), chosen.end(), nic) == chosen.end()) chosen.push_back(nic);
                }
                std::sort(chosen.begin(), chosen.end(), [](const Nic* a, const Nic* b) {
                    return std::make_pair(a->name.size(), a->name) < std::make_pair(b->name.size(), b->name);
                });
            }
        }
        for (const Nic* nic : chosen) task.nics.push_back(nic->name);
        fill_env(topo, task, chosen);
    }
    return plan;
}

std::string describe_task(const TaskBinding& task, unsigned shown_rank) {
    std::vector<std::string> gpus;
    for (const GpuRef& gpu : task.gpus) gpus.push_back(std::to_string(gpu.index) + "(" + gpu.pci + ")");
    return "rank " + std::to_string(shown_rank) + " cpus " + list(task.cpus) + " mems " + list(task.mems) + " gpus " +
           (gpus.empty() ? "-" : join(gpus, ",")) + " nics " + (task.nics.empty() ? "-" : join(task.nics, ","));
}

std::string plan_to_json(const BindPlan& plan) {
    JsonRef root(json_object_new_object());
    json_object* tasks = json_object_new_array();
    json_object_object_add(root.get(), "tasks", tasks);
    for (const TaskBinding& task : plan.tasks) {
        json_object* obj = json_object_new_object();
        json_object_array_add(tasks, obj);
        json_object_object_add(obj, "rank", json_object_new_int64(task.rank));
        json_object_object_add(obj, "cpus", json_object_new_string(format_id_list(task.cpus).c_str()));
        json_object_object_add(obj, "mems", json_object_new_string(format_id_list(task.mems).c_str()));
        json_object* gpus = json_object_new_array();
        json_object_object_add(obj, "gpus", gpus);
        for (const GpuRef& gpu : task.gpus) {
            json_object* g = json_object_new_object();
            json_object_object_add(g, "index", json_object_new_int64(gpu.index));
            json_object_object_add(g, "pci", json_object_new_string(gpu.pci.c_str()));
            json_object_array_add(gpus, g);
        }
        json_object* nics = json_object_new_array();
        json_object_object_add(obj, "nics", nics);
        for (const std::string& nic : task.nics) json_object_array_add(nics, json_object_new_string(nic.c_str()));
        json_object* env = json_object_new_object();
        json_object_object_add(obj, "env", env);
        for (const auto& [name, value] : task.env) json_object_object_add(env, name.c_str(), json_object_new_string(value.c_str()));
    }
    json_object* warnings = json_object_new_array();
    json_object_object_add(root.get(), "warnings", warnings);
    for (const std::string& w : plan.warnings) json_object_array_add(warnings, json_object_new_string(w.c_str()));
    return json_object_to_json_string_ext(root.get(), JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);
}

}  // namespace aihpc::affinity
