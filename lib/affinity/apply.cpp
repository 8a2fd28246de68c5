#include "affinity/apply.hpp"

#include <numaif.h>   // MPOL_* only: the system calls are made directly, see below
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <memory>
#include <vector>

#include "common/error.hpp"
#include "common/text.hpp"

#ifndef MPOL_PREFERRED_MANY
#define MPOL_PREFERRED_MANY 5   // Linux 5.15; older headers lack it
#endif

namespace aihpc::affinity {

namespace {

struct CpuMask {
    explicit CpuMask(unsigned count) : count(count), set(CPU_ALLOC(count)), size(CPU_ALLOC_SIZE(count)) {
        if (set == nullptr) throw Error("cannot allocate a CPU mask of " + std::to_string(count) + " CPUs");
        CPU_ZERO_S(size, set);
    }
    ~CpuMask() { CPU_FREE(set); }
    CpuMask(const CpuMask&) = delete;
    CpuMask& operator=(const CpuMask&) = delete;
    unsigned count;
    cpu_set_t* set;
    std::size_t size;
};

constexpr unsigned max_nodes = 1024;
using NodeMask = std::vector<unsigned long>;
constexpr unsigned bits_per_word = 8 * sizeof(unsigned long);

// The memory-policy system calls, made directly rather than through libnuma's wrappers
// of them: libnuma reads /proc and sysfs in a constructor in every process that loads
// it, which every plan and every `aihpc-bind exec` (one per MPI rank) would pay for.
long set_memory_policy(int mode, const unsigned long* mask, unsigned long max_node) {
    return syscall(SYS_set_mempolicy, mode, mask, max_node);
}

long get_memory_policy(int* mode, unsigned long* mask, unsigned long max_node) {
    return syscall(SYS_get_mempolicy, mode, mask, max_node, nullptr, 0UL);
}

// As libnuma's numa_available(): a kernel without NUMA support, or a seccomp filter
// that forbids the calls, answers ENOSYS or EPERM.
bool numa_supported() {
    return !(get_memory_policy(nullptr, nullptr, 0) < 0 && (errno == ENOSYS || errno == EPERM));
}

NodeMask node_mask(const NodeSet& nodes) {
    NodeMask mask(max_nodes / bits_per_word, 0);
    for (unsigned node : nodes)
        if (node < max_nodes) mask[node / bits_per_word] |= 1UL << (node % bits_per_word);
    return mask;
}

}  // namespace

CpuSet current_affinity() {
    for (unsigned count = 1024; count <= (1u << 20); count *= 4) {
        CpuMask mask(count);
        if (sched_getaffinity(0, mask.size, mask.set) != 0) {
            if (errno == EINVAL) continue;  // more CPUs than the mask holds
            throw_errno("cannot read this process's CPU affinity");
        }
        CpuSet cpus;
        for (unsigned cpu = 0; cpu < count; ++cpu)
            if (CPU_ISSET_S(cpu, mask.size, mask.set)) cpus.insert(cpu);
        return cpus;
    }
    throw Error("cannot read this process's CPU affinity: the mask is too large");
}

void bind_cpus(const CpuSet& cpus) {
    if (cpus.empty()) throw Error("refusing to bind to an empty CPU set");
    CpuMask mask(*cpus.rbegin() + 1);
    for (unsigned cpu : cpus) CPU_SET_S(cpu, mask.size, mask.set);
    if (sched_setaffinity(0, mask.size, mask.set) != 0)
        throw_errno("cannot bind to CPUs " + format_id_list(cpus) +
                    " (sched_setaffinity); they may lie outside the step's cgroup cpuset");
}

const char* to_string(MemoryPolicy policy) {
    switch (policy) {
        case MemoryPolicy::preferred_many: return "preferred-many";
        case MemoryPolicy::preferred: return "preferred";
        case MemoryPolicy::none: break;
    }
    return "none";
}

MemoryPolicy prefer_memory(const NodeSet& nodes) {
    if (nodes.empty() || !numa_supported()) return MemoryPolicy::none;
    NodeMask mask = node_mask(nodes);
    if (set_memory_policy(MPOL_PREFERRED_MANY, mask.data(), max_nodes + 1) == 0) return MemoryPolicy::preferred_many;
    if (errno != EINVAL) throw_errno("cannot set the memory policy to NUMA nodes " + format_id_list(nodes));
    // Kernels before 5.15 know one preferred node only: the first of the task's nodes.
    NodeMask first = node_mask({*nodes.begin()});
    if (set_memory_policy(MPOL_PREFERRED, first.data(), max_nodes + 1) == 0) return MemoryPolicy::preferred;
    throw_errno("cannot set the memory policy to prefer NUMA node " + std::to_string(*nodes.begin()));
}

std::string describe_memory_policy() {
    int mode = 0;
    NodeMask mask(max_nodes / bits_per_word, 0);
    if (get_memory_policy(&mode, mask.data(), max_nodes) != 0) throw_errno("cannot read the memory policy");
    NodeSet nodes;
    for (unsigned node = 0; node < max_nodes; ++node)
        if (mask[node / bits_per_word] & (1UL << (node % bits_per_word))) nodes.insert(node);
    const char* name = "unknown";
    switch (mode) {
        case MPOL_DEFAULT: name = "default"; break;
        case MPOL_PREFERRED: name = "preferred"; break;
        case MPOL_BIND: name = "bind"; break;
        case MPOL_INTERLEAVE: name = "interleave"; break;
        case MPOL_LOCAL: name = "local"; break;
        case MPOL_PREFERRED_MANY: name = "preferred-many"; break;
        default: break;
    }
    return std::string(name) + (nodes.empty() ? "" : " " + format_id_list(nodes));
}

void apply_binding(const BindPlan& plan, const TaskBinding& task) {
    if (plan.mode == config::BindMode::none) return;
    bind_cpus(task.cpus);
    if (!plan.nomem) prefer_memory(task.mems);
}

void export_env(const std::map<std::string, std::string>& env) {
    for (const auto& [name, value] : env)
        if (::setenv(name.c_str(), value.c_str(), 1) != 0) throw_errno("cannot set " + name);
}

}  // namespace aihpc::affinity
