// Applying one task's binding to the calling process: CPU affinity, memory policy and
// environment. These act on the process itself, so the plugin calls them in the forked
// task (task_init) and aihpc-bind exec calls them just before exec.
#pragma once
#include <map>
#include <string>

#include "affinity/bind_plan.hpp"

namespace aihpc::affinity {

// The CPUs this process may run on now (its affinity mask, which a cgroup cpuset bounds).
CpuSet current_affinity();

// sched_setaffinity to `cpus`. Throws aihpc::SystemError naming the set.
void bind_cpus(const CpuSet& cpus);

enum class MemoryPolicy { preferred_many, preferred, none };
const char* to_string(MemoryPolicy policy);

// Prefers `nodes` for this process's memory: MPOL_PREFERRED_MANY where the kernel has
// it, else MPOL_PREFERRED on the first node. Returns what was set (none: no NUMA
// support, or no node). Throws aihpc::SystemError when the kernel refuses both.
MemoryPolicy prefer_memory(const NodeSet& nodes);

// The calling process's memory policy and its nodes (get_mempolicy), for display.
std::string describe_memory_policy();

// Applies CPUs and, unless the plan says nomem, memory; environment is the caller's,
// since the plugin sets it in the job's environment and the tool in its own.
void apply_binding(const BindPlan& plan, const TaskBinding& task);

// setenv for each variable, overwriting what was inherited.
void export_env(const std::map<std::string, std::string>& env);

}  // namespace aihpc::affinity
