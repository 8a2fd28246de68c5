// The planner. Resources (the step's GPUs, NUMA nodes, or packages) are shared out over
// the tasks, never splitting a task over two packages where the counts allow; each task
// gets the CPU domain of its resources (a GPU's: the allowed CPUs of its deepest
// locality, else of its NUMA node or package, else the nearest allowed ones). Tasks of
// one domain form a group; groups whose domains overlap are settled so that each core
// belongs to one group, then each group's cores are split among its tasks, whole cores
// before SMT siblings and never a share across two cores, so tasks are disjoint
// whenever the PUs suffice.
#include "affinity/bind_plan.hpp"

#include <algorithm>
#include <functional>
#include <limits>
#include <optional>
#include <string_view>
#include <tuple>

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

// Shares `tasks` out over units of the given weights (cores), in order. With at least as
// many tasks as units, every unit gets tasks in proportion to its weight (at least one
// each, largest remainders first) and each task one unit; with fewer, each task gets a
// contiguous block of units of about equal weight. A task thus never spans two units
// when the counts allow it.
std::vector<std::vector<std::size_t>> apportion(const std::vector<std::size_t>& weights, std::size_t tasks) {
    std::vector<std::vector<std::size_t>> shares(tasks);
    const std::size_t units = weights.size();
    if (units == 0 || tasks == 0) return shares;
    std::size_t total = 0;
    for (std::size_t w : weights) total += std::max<std::size_t>(w, 1);
    if (tasks >= units) {
        std::vector<std::size_t> count(units, 1);
        std::size_t left = tasks - units;
        std::vector<std::pair<double, std::size_t>> remainders;
        std::size_t given = 0;
        for (std::size_t u = 0; u < units; ++u) {
            double exact = static_cast<double>(left) * static_cast<double>(std::max<std::size_t>(weights[u], 1)) / static_cast<double>(total);
            std::size_t whole = static_cast<std::size_t>(exact);
            count[u] += whole;
            given += whole;
            remainders.emplace_back(exact - static_cast<double>(whole), u);
        }
        std::stable_sort(remainders.begin(), remainders.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
        for (std::size_t i = 0; given < left; ++i, ++given) ++count[remainders[i % units].second];
        std::size_t t = 0;
        for (std::size_t u = 0; u < units; ++u)
            for (std::size_t k = 0; k < count[u]; ++k) shares[t++].push_back(u);
        return shares;
    }
    // Fewer tasks than units: cut the weight line at multiples of total/tasks, each unit
    // going to the task its middle falls in; every task gets at least one unit.
    std::size_t u = 0;
    double before = 0;
    for (std::size_t t = 0; t < tasks; ++t) {
        double end = static_cast<double>(total) * static_cast<double>(t + 1) / static_cast<double>(tasks);
        do {
            double w = static_cast<double>(std::max<std::size_t>(weights[u], 1));
            shares[t].push_back(u);
            before += w;
            ++u;
        } while (u < units && units - u > tasks - t - 1 &&
                 before + static_cast<double>(std::max<std::size_t>(weights[u], 1)) / 2 <= end);
    }
    for (; u < units; ++u) shares[tasks - 1].push_back(u);
    return shares;
}

// The domain's PUs grouped by core, in the order given (topology order, or the order in
// which the domain was assembled).
std::vector<std::vector<unsigned>> cores_within(const NodeTopology& topo, const std::vector<unsigned>& order,
                                                const CpuSet& domain) {
    std::vector<std::vector<unsigned>> cores;
    for (unsigned c : order) {
        std::vector<unsigned> pus;
        for (unsigned pu : topo.cores[c].pus)
            if (domain.count(pu)) pus.push_back(pu);
        if (!pus.empty()) cores.push_back(std::move(pus));
    }
    return cores;
}

// Member j of k's share of the cores: whole cores while there are at least k of them;
// with more tasks than cores, each task gets one core, and the tasks on one core split
// its PUs (sharing one only when they outnumber them): a share never straddles cores.
CpuSet share_of(const std::vector<std::vector<unsigned>>& cores, std::size_t k, std::size_t j) {
    CpuSet share;
    if (cores.empty() || k == 0) return share;
    const std::size_t c = cores.size();
    if (c >= k) {
        for (std::size_t i = j * c / k; i < (j + 1) * c / k; ++i) share.insert(cores[i].begin(), cores[i].end());
        return share;
    }
    const std::size_t core = j * c / k;
    std::size_t first = 0;
    while (first * c / k < core) ++first;            // first task on this core
    std::size_t last = first;
    while (last < k && last * c / k == core) ++last; // one past the last
    const std::size_t m = last - first, i = j - first;
    const std::vector<unsigned>& pus = cores[core];
    if (pus.size() >= m) {
        for (std::size_t p = i * pus.size() / m; p < (i + 1) * pus.size() / m; ++p) share.insert(pus[p]);
    } else {
        share.insert(pus[i * pus.size() / m]);
    }
    return share;
}

// Core indices (into topo.cores) holding any PU of `cpus`, in topology order.
std::vector<unsigned> core_order(const NodeTopology& topo, const CpuSet& cpus) {
    std::vector<unsigned> order;
    for (unsigned c = 0; c < topo.cores.size(); ++c)
        for (unsigned pu : topo.cores[c].pus)
            if (cpus.count(pu)) {
                order.push_back(c);
                break;
            }
    return order;
}

std::size_t pus_in(const NodeTopology& topo, const std::vector<unsigned>& cores, const CpuSet& allowed) {
    std::size_t n = 0;
    for (unsigned c : cores)
        for (unsigned pu : topo.cores[c].pus) n += allowed.count(pu);
    return n;
}

// A GPU's CPU domain: the allowed CPUs of its deepest locality (its L3, NUMA node or
// package, as hwloc places it), else of its NUMA node(s) (level 0), else of its package
// (level 1), else the nearest allowed NUMA nodes by the distance matrix, else all
// allowed CPUs (level 2, with a warning naming the choice).
CpuSet gpu_domain(const NodeTopology& topo, const Gpu& gpu, const CpuSet& allowed, int& level,
                  std::vector<std::string>& warnings) {
    level = 0;
    CpuSet domain = intersect(gpu.where.cpus, allowed);
    if (!domain.empty()) return domain;
    domain = intersect(cpus_of_numa(topo, gpu.where.numa), allowed);
    if (!domain.empty()) return domain;
    level = 1;
    domain = intersect(cpus_of_packages(topo, gpu.where.packages), allowed);
    if (!domain.empty()) return domain;

    level = 2;
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

bool subset_of(const CpuSet& a, const CpuSet& b) { return std::includes(b.begin(), b.end(), a.begin(), a.end()); }

// NICs fit for the job's traffic: OpenFabrics devices (InfiniBand, RoCE, EFA, BXI)
// where there are any, else Net devices of an HPC fabric: Slingshot (HPE/Cray PCI
// vendors, or hsn names), IP over InfiniBand (PCI class 0207), BXI (Bull). A port whose
// PCI link is slower than 3 GB/s (a management or BMC Ethernet) never counts.
std::vector<const Nic*> nic_candidates(const NodeTopology& topo) {
    constexpr unsigned vendor_cray = 0x17db, vendor_hpe = 0x1590, vendor_bull = 0x1e86;
    constexpr float slowest = 3.0f;
    std::vector<const Nic*> openfabrics, net;
    for (const Nic& nic : topo.nics) {
        if (nic.link_gbytes > 0 && nic.link_gbytes < slowest) continue;
        if (nic.openfabrics) {
            openfabrics.push_back(&nic);
            continue;
        }
        bool fabric = nic.pci_vendor == vendor_cray || nic.pci_vendor == vendor_hpe || nic.pci_vendor == vendor_bull ||
                      nic.pci_class == 0x0207 || nic.name.rfind("hsn", 0) == 0;
        if (fabric && !nic.pci.empty()) net.push_back(&nic);
    }
    return openfabrics.empty() ? net : openfabrics;
}

// How deep the deepest object above both devices lies: the length of the common tail of
// their ancestor chains (the root is shared by all).
std::size_t common_depth(const PciLocality& a, const PciLocality& b) {
    std::size_t n = 0;
    auto ia = a.ancestors.rbegin(), ib = b.ancestors.rbegin();
    for (; ia != a.ancestors.rend() && ib != b.ancestors.rend() && *ia == *ib; ++ia, ++ib) ++n;
    return n;
}

// The NICs nearest to a GPU: those sharing its deepest common ancestor (a PCI switch, a
// host bridge, an L3, a package...).
std::vector<const Nic*> nics_near_gpu(const std::vector<const Nic*>& candidates, const PciLocality& gpu) {
    std::size_t best = 0;
    for (const Nic* nic : candidates) best = std::max(best, common_depth(gpu, nic->where));
    std::vector<const Nic*> chosen;
    for (const Nic* nic : candidates)
        if (common_depth(gpu, nic->where) == best) chosen.push_back(nic);
    return chosen;
}

// For a task without GPUs: the NICs on its NUMA nodes, else its packages, else all.
std::vector<const Nic*> nics_near_cpus(const std::vector<const Nic*>& candidates, const NodeSet& numa,
                                       const std::set<unsigned>& packages) {
    for (int level = 0; level < 2; ++level) {
        std::vector<const Nic*> chosen;
        for (const Nic* nic : candidates)
            if (level == 0 ? intersects(nic->where.numa, numa) : intersects(nic->where.packages, packages))
                chosen.push_back(nic);
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

// OMP_PLACES with one place per PU: "{0},{64},{1},{65}".
std::string pu_places(const NodeTopology& topology, const CpuSet& cpus) {
    std::string places;
    for (const Core& core : topology.cores)
        for (unsigned pu : core.pus)
            if (cpus.count(pu)) {
                places += places.empty() ? "{" : ",{";
                places += std::to_string(pu);
                places += '}';
            }
    return places;
}

void fill_env(const NodeTopology& topo, TaskBinding& task, const std::vector<const Nic*>& nics, unsigned threads,
              std::vector<std::string>& warnings) {
    // Each vendor's runtime sees its own GPUs; a GPU of another vendor is bound but named
    // in no variable.
    std::optional<std::string> cuda, rocr;
    for (const GpuRef& gpu : task.gpus) {
        if (gpu.vendor == GpuVendor::other) continue;
        std::optional<std::string>& names = gpu.vendor == GpuVendor::nvidia ? cuda : rocr;
        if (names) *names += ',';
        else names.emplace();
        *names += gpu.visible_name;
    }
    if (!task.gpus.empty()) task.env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID";
    if (cuda) task.env["CUDA_VISIBLE_DEVICES"] = std::move(*cuda);
    if (rocr) task.env["ROCR_VISIBLE_DEVICES"] = std::move(*rocr);

    // mpibind's SMT rule: one thread per core while the cores suffice, then hardware
    // threads as places.
    const unsigned cores = core_count(topo, task.cpus);
    const unsigned pus = static_cast<unsigned>(task.cpus.size());
    if (threads == 0 || threads <= cores) {
        task.env["OMP_NUM_THREADS"] = std::to_string(threads == 0 ? cores : threads);
        task.env["OMP_PLACES"] = omp_places(topo, task.cpus);
    } else {
        task.env["OMP_NUM_THREADS"] = std::to_string(threads);
        task.env["OMP_PLACES"] = pu_places(topo, task.cpus);
        if (threads > pus)
            warnings.push_back("rank " + std::to_string(task.rank) + " runs " + std::to_string(threads) + " threads on " +
                               std::to_string(pus) + " CPUs (" + list(task.cpus) + "): they will share CPUs");
    }
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

// A group of tasks that share one CPU domain, with the cores they are given.
struct Group {
    CpuSet domain;
    std::vector<std::size_t> tasks;
    bool fallback = false;
    std::vector<unsigned> cores;   // core indices, in the order they are handed out
};

// Makes the groups' cores disjoint. Domains that overlap without one holding the other
// are merged. A group whose domain holds others' (a fallback: a package, or the
// nearest NUMA nodes, for a GPU with no allowed CPU of its own) takes the cores no
// group inside it uses, and where those are too few for a fair share, the cores the
// groups inside it have beyond their own fair share, from the far end of theirs.
void settle_overlaps(const NodeTopology& topo, std::vector<Group>& groups, std::vector<std::string>& warnings) {
    for (bool merged = true; merged;) {
        merged = false;
        for (std::size_t a = 0; a < groups.size() && !merged; ++a)
            for (std::size_t b = a + 1; b < groups.size() && !merged; ++b) {
                const CpuSet &da = groups[a].domain, &db = groups[b].domain;
                if (!intersects(da, db) || subset_of(da, db) || subset_of(db, da)) continue;
                groups[a].domain.insert(db.begin(), db.end());
                groups[a].tasks.insert(groups[a].tasks.end(), groups[b].tasks.begin(), groups[b].tasks.end());
                std::sort(groups[a].tasks.begin(), groups[a].tasks.end());
                groups[a].fallback = groups[a].fallback || groups[b].fallback;
                groups.erase(groups.begin() + static_cast<std::ptrdiff_t>(b));
                merged = true;
            }
    }
    std::vector<std::size_t> order(groups.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return groups[a].domain.size() < groups[b].domain.size(); });
    for (std::size_t g : order) groups[g].cores = core_order(topo, groups[g].domain);

    for (std::size_t g : order) {
        Group& outer = groups[g];
        std::vector<std::size_t> inner;
        for (std::size_t h : order)
            if (h != g && groups[h].domain != outer.domain && subset_of(groups[h].domain, outer.domain)) inner.push_back(h);
        if (inner.empty()) continue;
        std::set<unsigned> used;
        std::size_t tasks_inside = outer.tasks.size();
        for (std::size_t h : inner) {
            used.insert(groups[h].cores.begin(), groups[h].cores.end());
            tasks_inside += groups[h].tasks.size();
        }
        std::vector<unsigned> free;
        for (unsigned c : outer.cores)
            if (!used.count(c)) free.push_back(c);
        // Fair shares counted in PUs, so that SMT siblings serve tasks too.
        const std::size_t total = pus_in(topo, outer.cores, outer.domain);
        const std::size_t fair = std::max<std::size_t>(1, total * outer.tasks.size() / tasks_inside);
        // Take from the inner groups, richest first, what the free cores lack.
        while (pus_in(topo, free, outer.domain) < fair) {
            Group* richest = nullptr;
            double most = 0;
            for (std::size_t h : inner) {
                Group& in = groups[h];
                if (in.cores.empty()) continue;
                std::size_t pus = pus_in(topo, in.cores, outer.domain);
                if (pus < in.tasks.size() + pus_in(topo, {in.cores.back()}, outer.domain)) continue;
                double per_task = static_cast<double>(pus) / static_cast<double>(in.tasks.size());
                if (per_task > most) {
                    most = per_task;
                    richest = &in;
                }
            }
            if (richest == nullptr) break;
            free.push_back(richest->cores.back());
            richest->cores.pop_back();
        }
        if (free.empty()) {
            // Too few cores for all: the outer tasks share the inner ones' cores.
            for (std::size_t h : inner) free.insert(free.end(), groups[h].cores.begin(), groups[h].cores.end());
            warnings.push_back("too few allowed cores (" + std::to_string(total) + ") for " +
                               std::to_string(tasks_inside) + " tasks near each one's GPUs: some tasks share CPUs");
        }
        std::sort(free.begin(), free.end());
        outer.cores = free;
        std::vector<std::string> ranks;
        for (std::size_t t : outer.tasks) ranks.push_back(std::to_string(t));
        CpuSet given;
        for (unsigned c : outer.cores)
            for (unsigned pu : topo.cores[c].pus)
                if (outer.domain.count(pu)) given.insert(pu);
        warnings.push_back("local rank" + std::string(ranks.size() > 1 ? "s " : " ") + join(ranks, ",") +
                           " fall back to CPUs " + list(given) + " beside the tasks of other GPUs, so that no two " +
                           "tasks share a CPU");
    }
}

// Which of the step's GPUs (positions in `step_gpus`) each task holds. With more tasks
// than GPUs each GPU serves a block of tasks. Otherwise each package's GPUs go to tasks
// of their own, in proportion to its GPU count, so that no task spans two packages
// (the counts per task then differ by at most one within a package); with fewer tasks
// than packages, contiguous blocks.
std::vector<std::vector<std::size_t>> gpu_shares(const NodeTopology& topo, const std::vector<unsigned>& step_gpus,
                                                 std::size_t tasks) {
    const std::size_t g = step_gpus.size();
    std::vector<std::vector<std::size_t>> shares(tasks);
    if (g == 0) return shares;
    if (tasks >= g) {
        for (std::size_t t = 0; t < tasks; ++t) shares[t].push_back(t * g / tasks);
        return shares;
    }
    auto blocks = [&] {
        std::vector<std::vector<std::size_t>> out(tasks);
        for (std::size_t t = 0; t < tasks; ++t)
            for (std::size_t r = t * g / tasks; r < (t + 1) * g / tasks; ++r) out[t].push_back(r);
        return out;
    };
    // Packages in order of their first step GPU; each GPU by its first package.
    std::vector<unsigned> package_order;
    std::map<unsigned, std::vector<std::size_t>> by_package;
    for (std::size_t r = 0; r < g; ++r) {
        const auto& pk = topo.gpus[step_gpus[r]].where.packages;
        unsigned p = pk.empty() ? 0 : *pk.begin();
        if (!by_package.count(p)) package_order.push_back(p);
        by_package[p].push_back(r);
    }
    if (package_order.size() < 2 || tasks < package_order.size()) return blocks();
    std::vector<std::size_t> count;
    std::size_t sum = 0;
    for (unsigned p : package_order) {
        std::size_t c = std::max<std::size_t>(1, tasks * by_package[p].size() / g);
        count.push_back(std::min(c, by_package[p].size()));
        sum += count.back();
    }
    while (sum < tasks) {
        std::size_t best = count.size();
        double most = -1;
        for (std::size_t u = 0; u < count.size(); ++u) {
            double want = static_cast<double>(tasks * by_package[package_order[u]].size()) / static_cast<double>(g) -
                          static_cast<double>(count[u]);
            if (count[u] < by_package[package_order[u]].size() && want > most) {
                most = want;
                best = u;
            }
        }
        if (best == count.size()) return blocks();
        ++count[best];
        ++sum;
    }
    while (sum > tasks) {
        auto it = std::max_element(count.begin(), count.end());
        if (*it <= 1) return blocks();
        --*it;
        --sum;
    }
    std::size_t t = 0;
    for (std::size_t u = 0; u < count.size(); ++u) {
        const auto& gpus = by_package[package_order[u]];
        for (std::size_t j = 0; j < count[u]; ++j, ++t)
            for (std::size_t i = j * gpus.size() / count[u]; i < (j + 1) * gpus.size() / count[u]; ++i)
                shares[t].push_back(gpus[i]);
    }
    return shares;
}

// A group with more tasks than PUs while others have PUs to spare takes whole cores
// from them, the same package's first, from the far end of theirs, until its tasks
// need share no CPU: disjoint sets come before strict locality, and a warning says so.
void relieve_crowding(const NodeTopology& topo, std::vector<Group>& groups, const CpuSet& allowed,
                      std::vector<std::string>& warnings) {
    std::size_t tasks = 0;
    for (const Group& g : groups) tasks += g.tasks.size();
    if (allowed.size() < tasks) return;
    std::set<unsigned> used;
    for (const Group& g : groups) used.insert(g.cores.begin(), g.cores.end());
    std::vector<unsigned> free;   // allowed cores no group uses, in topology order
    for (unsigned c : core_order(topo, allowed))
        if (!used.count(c)) free.push_back(c);
    for (Group& crowded : groups) {
        std::vector<unsigned> taken;
        while (pus_in(topo, crowded.cores, allowed) < crowded.tasks.size()) {
            const unsigned home = crowded.cores.empty() ? 0 : topo.cores[crowded.cores.front()].package;
            Group* donor = nullptr;
            std::ptrdiff_t free_pick = -1;
            int best_rank = 4;
            for (std::size_t i = 0; i < free.size(); ++i) {
                int rank = topo.cores[free[i]].package == home ? 0 : 2;
                if (rank < best_rank) {
                    best_rank = rank;
                    free_pick = static_cast<std::ptrdiff_t>(i);
                }
            }
            for (Group& other : groups) {
                if (&other == &crowded || other.cores.empty()) continue;
                const unsigned last = other.cores.back();
                std::size_t spare = pus_in(topo, other.cores, allowed);
                std::size_t keep = pus_in(topo, {last}, allowed);
                if (spare < other.tasks.size() + keep) continue;
                int rank = topo.cores[last].package == home ? 1 : 3;
                if (rank < best_rank) {
                    best_rank = rank;
                    donor = &other;
                    free_pick = -1;
                }
            }
            unsigned core;
            if (free_pick >= 0) {
                core = free[static_cast<std::size_t>(free_pick)];
                free.erase(free.begin() + free_pick);
            } else if (donor != nullptr) {
                core = donor->cores.back();
                donor->cores.pop_back();
            } else {
                break;
            }
            taken.push_back(core);
            crowded.cores.push_back(core);
        }
        if (taken.empty()) continue;
        CpuSet given;
        for (unsigned c : taken)
            for (unsigned pu : topo.cores[c].pus)
                if (allowed.count(pu)) given.insert(pu);
        std::vector<std::string> ranks;
        for (std::size_t t : crowded.tasks) ranks.push_back(std::to_string(t));
        warnings.push_back("local ranks " + join(ranks, ",") + " outnumber the allowed CPUs near their GPUs: they also get " +
                           list(given) + ", so that no two tasks share a CPU");
    }
}


// The step's GPUs on this node, as topology indices: the ones the request names (each
// once, in index order), or all of them.
std::vector<unsigned> step_gpu_indices(const NodeTopology& topo, const PlanRequest& request) {
    std::vector<unsigned> step_gpus;
    if (!request.gpus) {
        for (const Gpu& gpu : topo.gpus) step_gpus.push_back(gpu.index);
        return step_gpus;
    }
    std::set<unsigned> unique(request.gpus->begin(), request.gpus->end());
    for (unsigned index : unique) {
        if (index >= topo.gpus.size())
            throw Error("GPU " + std::to_string(index) + " is not on this node, which has " +
                        std::to_string(topo.gpus.size()) + " GPUs" +
                        (topo.gpus.empty() ? "" : " (0-" + std::to_string(topo.gpus.size() - 1) + ")"));
        step_gpus.push_back(index);
    }
    return step_gpus;
}

// Task t joins the group of its CPU domain, which is made if it is the first.
void join_group(std::vector<Group>& groups, std::size_t t, const CpuSet& domain, bool fallback) {
    for (Group& g : groups)
        if (g.domain == domain) {
            g.tasks.push_back(t);
            g.fallback = g.fallback || fallback;
            return;
        }
    groups.push_back(Group{domain, {t}, fallback, {}});
}

// GPU mode: each task gets its share of the step's GPUs (named by `names`, or by vendor
// order), and the CPU domain of the most local of them.
std::vector<Group> group_by_gpu(const NodeTopology& topo, const std::vector<unsigned>& step_gpus,
                                const std::vector<std::string>& names, const CpuSet& allowed, BindPlan& plan) {
    std::vector<CpuSet> gpu_domains;
    std::vector<int> gpu_levels;
    for (unsigned index : step_gpus) {
        int level = 0;
        gpu_domains.push_back(gpu_domain(topo, topo.gpus[index], allowed, level, plan.warnings));
        gpu_levels.push_back(level);
    }
    std::vector<Group> groups;
    const auto shares = gpu_shares(topo, step_gpus, plan.tasks.size());
    for (std::size_t t = 0; t < plan.tasks.size(); ++t) {
        // The domain of the task's most local GPUs: one with allowed CPUs of its own
        // outranks one that falls back to its package or farther.
        int best = 3;
        for (std::size_t r : shares[t]) best = std::min(best, gpu_levels[r]);
        CpuSet domain;
        for (std::size_t r : shares[t]) {
            const Gpu& gpu = topo.gpus[step_gpus[r]];
            std::string name = names.empty() ? std::to_string(gpu.vendor_ordinal) : names[r];
            plan.tasks[t].gpus.push_back(GpuRef{gpu.index, gpu.pci, name, gpu.vendor});
            if (gpu_levels[r] == best) domain.insert(gpu_domains[r].begin(), gpu_domains[r].end());
        }
        join_group(groups, t, domain, best > 0);
    }
    return groups;
}

// numa: NUMA nodes with allowed CPUs; cores: packages. The tasks are apportioned to
// these units by their core counts. Memory-only nodes own no CPU and so never count.
std::vector<Group> group_by_unit(const NodeTopology& topo, BindMode mode, const CpuSet& allowed, std::size_t tasks) {
    std::vector<CpuSet> units;
    if (mode == BindMode::numa) {
        CpuSet orphans = allowed;   // CPUs of no NUMA node (an offline node's) form one more unit
        for (const NumaNode& node : topo.numa) {
            if (CpuSet d = intersect(node.cpus, allowed); !d.empty()) units.push_back(std::move(d));
            for (unsigned pu : node.cpus) orphans.erase(pu);
        }
        if (!orphans.empty() && !units.empty()) units.push_back(std::move(orphans));
    } else {
        for (const auto& [os_index, pcpus] : topo.packages)
            if (CpuSet d = intersect(pcpus, allowed); !d.empty()) units.push_back(std::move(d));
    }
    if (units.empty()) units.push_back(allowed);
    std::vector<std::size_t> weights;
    for (const CpuSet& unit : units) weights.push_back(core_count(topo, unit));
    auto shares = apportion(weights, tasks);
    std::vector<Group> groups;
    for (std::size_t t = 0; t < tasks; ++t) {
        CpuSet domain;
        for (std::size_t u : shares[t]) domain.insert(units[u].begin(), units[u].end());
        join_group(groups, t, domain, false);
    }
    return groups;
}

// GPU mode: allowed cores near no step GPU (GPU-less NUMA nodes, L3s without a GPU) go
// to the nearest group in the same package, so that the tasks' CPU work (data loading,
// host threads) uses them. The result holds each group's extra cores.
std::vector<std::vector<unsigned>> spare_cores(const NodeTopology& topo, const std::vector<Group>& groups,
                                               const CpuSet& allowed) {
    std::vector<std::vector<unsigned>> extra(groups.size());
    std::set<unsigned> used;
    for (const Group& g : groups) used.insert(g.cores.begin(), g.cores.end());
    // Whole NUMA nodes' worth of leftover cores at a time, so a task stays in few nodes.
    std::map<unsigned, std::vector<unsigned>> left_by_node;
    for (unsigned c : core_order(topo, allowed))
        if (!used.count(c)) left_by_node[topo.cores[c].numa].push_back(c);
    for (const auto& [numa, cores] : left_by_node) {
        const Core& core = topo.cores[cores.front()];
        std::size_t best = groups.size();
        std::pair<std::uint64_t, double> best_key{};   // NUMA distance, then cores per task
        for (std::size_t g = 0; g < groups.size(); ++g) {
            // Only GPUs with CPUs of their own; never across a socket.
            if (groups[g].cores.empty() || groups[g].fallback) continue;
            const Core& home = topo.cores[groups[g].cores.front()];
            if (core.package != home.package) continue;
            auto it = topo.numa_distance.find({numa, home.numa});
            std::uint64_t distance = it == topo.numa_distance.end() ? (numa == home.numa ? 10 : 20) : it->second;
            double per_task = static_cast<double>(groups[g].cores.size() + extra[g].size()) /
                              static_cast<double>(groups[g].tasks.size());
            std::pair<std::uint64_t, double> key{distance, per_task};
            if (best == groups.size() || key < best_key) {
                best = g;
                best_key = key;
            }
        }
        if (best < groups.size()) extra[best].insert(extra[best].end(), cores.begin(), cores.end());
    }
    return extra;
}

// Each group's tasks share out its cores, and then its extra cores when there are
// enough of them for every task.
void share_cores(const NodeTopology& topo, const std::vector<Group>& groups,
                 const std::vector<std::vector<unsigned>>& extra, const CpuSet& allowed,
                 std::vector<TaskBinding>& tasks) {
    for (std::size_t g = 0; g < groups.size(); ++g) {
        const Group& group = groups[g];
        const std::size_t k = group.tasks.size();
        auto own = cores_within(topo, group.cores, allowed);
        auto more = cores_within(topo, extra[g], allowed);
        if (own.size() < k) {   // one list, so that no task mixes part of a core with whole ones
            own.insert(own.end(), more.begin(), more.end());
            more.clear();
        }
        for (std::size_t j = 0; j < k; ++j) {
            CpuSet share = share_of(own, k, j);
            TaskBinding& task = tasks[group.tasks[j]];
            task.cpus.insert(share.begin(), share.end());
            if (more.size() >= k) {
                CpuSet plus = share_of(more, k, j);
                task.cpus.insert(plus.begin(), plus.end());
            }
        }
    }
}

// The NICs of a task: those near its GPUs (shortest name first), or, without GPUs, those
// near its memory and packages.
std::vector<const Nic*> task_nics(const NodeTopology& topo, const std::vector<const Nic*>& candidates,
                                  const TaskBinding& task) {
    std::vector<const Nic*> chosen;
    if (candidates.empty()) return chosen;
    if (task.gpus.empty()) return nics_near_cpus(candidates, task.mems, packages_of(topo, task.cpus));
    for (const GpuRef& ref : task.gpus)
        for (const Nic* nic : nics_near_gpu(candidates, topo.gpus[ref.index].where))
            if (std::find(chosen.begin(), chosen.end(), nic) == chosen.end()) chosen.push_back(nic);
    std::sort(chosen.begin(), chosen.end(), [](const Nic* a, const Nic* b) {
        return std::make_pair(a->name.size(), a->name) < std::make_pair(b->name.size(), b->name);
    });
    return chosen;
}

// Each task's memory (its own NUMA nodes, or with hbm the memory-only nodes near its
// CPUs), NICs and environment, once its CPUs are known.
void finish_tasks(const NodeTopology& topo, const PlanRequest& request, const CpuSet& allowed, BindPlan& plan) {
    const std::vector<const Nic*> candidates = request.bind.nonic ? std::vector<const Nic*>{} : nic_candidates(topo);
    bool hbm_missing = false;
    for (TaskBinding& task : plan.tasks) {
        if (task.cpus.empty()) task.cpus = allowed;  // unreachable by construction; a plan never binds to nothing
        task.mems = numa_of(topo, task.cpus);
        if (request.bind.hbm) {
            NodeSet fast;
            for (const NumaNode& node : topo.numa)
                if (node.memory_only() && intersects(node.near, task.cpus)) fast.insert(node.os_index);
            if (fast.empty()) hbm_missing = true;
            else task.mems = fast;
        }
        const std::vector<const Nic*> chosen = task_nics(topo, candidates, task);
        for (const Nic* nic : chosen) task.nics.push_back(nic->name);
        fill_env(topo, task, chosen, request.bind.threads, plan.warnings);
    }
    if (hbm_missing)
        plan.warnings.push_back("hbm: no memory-only (high-bandwidth) NUMA node lies near some tasks' CPUs; "
                                "those prefer their own NUMA nodes");
}

}  // namespace

std::string omp_places(const NodeTopology& topology, const CpuSet& cpus) {
    std::string places;
    for (const Core& core : topology.cores) {
        bool open = false;   // this core's place has been started
        for (unsigned pu : core.pus) {
            if (!cpus.count(pu)) continue;
            places += open ? "," : places.empty() ? "{" : ",{";
            places += std::to_string(pu);
            open = true;
        }
        if (open) places += '}';
    }
    return places;
}

BindPlan plan_binding(const NodeTopology& topo, const PlanRequest& request) {
    if (request.tasks == 0) throw Error("there is no local task to bind");
    const CpuSet all = topo.all_cpus();
    const CpuSet allowed = request.allowed.empty() ? all : intersect(request.allowed, all);
    if (allowed.empty())
        throw Error("none of the allowed CPUs " + list(request.allowed) + " exists on this node, whose CPUs are " +
                    list(all) + "; check the step's CPU allocation");
    const std::vector<unsigned> step_gpus = step_gpu_indices(topo, request);

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

    // Each task's GPUs, then each task's CPU domain; tasks sharing a domain form a group.
    std::vector<Group> groups = plan.mode == BindMode::gpu ? group_by_gpu(topo, step_gpus, names, allowed, plan)
                                                           : group_by_unit(topo, plan.mode, allowed, n);
    for (Group& g : groups) g.cores = core_order(topo, g.domain);
    settle_overlaps(topo, groups, plan.warnings);
    relieve_crowding(topo, groups, allowed, plan.warnings);

    const auto extra = plan.mode == BindMode::gpu ? spare_cores(topo, groups, allowed)
                                                  : std::vector<std::vector<unsigned>>(groups.size());
    share_cores(topo, groups, extra, allowed, plan.tasks);
    finish_tasks(topo, request, allowed, plan);
    return plan;
}

std::string describe_task(const TaskBinding& task, unsigned shown_rank) {
    std::vector<std::string> gpus;
    for (const GpuRef& gpu : task.gpus) gpus.push_back(std::to_string(gpu.index) + "(" + gpu.pci + ")");
    return "rank " + std::to_string(shown_rank) + " cpus " + list(task.cpus) + " mems " + list(task.mems) + " gpus " +
           (gpus.empty() ? "-" : join(gpus, ",")) + " nics " + (task.nics.empty() ? "-" : join(task.nics, ","));
}

namespace {

// Appends `text` as a JSON string. Plan strings (CPU lists, bus ids, device names) need
// no escaping as a rule, so they are copied whole; anything else goes through json_quote.
void append_quoted(std::string& out, std::string_view text) {
    for (char c : text)
        if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) {
            out += json_quote(text);
            return;
        }
    out += '"';
    out += text;
    out += '"';
}

}  // namespace

// Written as text, not built as a json-c document: for a node of many tasks, building
// and freeing the tree cost more than the whole plan. The layout is json-c's spaced one
// ("{ "a": 1, "b": [ ] }"), which the plan has always been printed in.
std::string plan_to_json(const BindPlan& plan) {
    std::string out;
    out.reserve(256 + plan.tasks.size() * 320);
    // A space after each opening bracket and before each closing one ("[ ]" when
    // empty); ", " between members and elements.
    auto separate = [&out](bool& first) {
        out += first ? " " : ", ";
        first = false;
    };
    out += "{ \"tasks\": [";
    bool first_task = true;
    for (const TaskBinding& task : plan.tasks) {
        separate(first_task);
        out += "{ \"rank\": ";
        out += std::to_string(task.rank);
        out += ", \"cpus\": ";
        append_quoted(out, format_id_list(task.cpus));
        out += ", \"mems\": ";
        append_quoted(out, format_id_list(task.mems));
        out += ", \"gpus\": [";
        bool first = true;
        for (const GpuRef& gpu : task.gpus) {
            separate(first);
            out += "{ \"index\": ";
            out += std::to_string(gpu.index);
            out += ", \"pci\": ";
            append_quoted(out, gpu.pci);
            out += " }";
        }
        out += " ]";
        out += ", \"nics\": [";
        first = true;
        for (const std::string& nic : task.nics) {
            separate(first);
            append_quoted(out, nic);
        }
        out += " ]";
        out += ", \"env\": {";
        first = true;
        for (const auto& [name, value] : task.env) {
            separate(first);
            append_quoted(out, name);
            out += ": ";
            append_quoted(out, value);
        }
        out += " }";
        out += " }";
    }
    out += " ]";
    out += ", \"warnings\": [";
    bool first = true;
    for (const std::string& warning : plan.warnings) {
        separate(first);
        append_quoted(out, warning);
    }
    out += " ]";
    out += " }";
    return out;
}

}  // namespace aihpc::affinity
