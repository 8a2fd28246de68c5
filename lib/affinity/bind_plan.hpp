// The binding planner: a pure function from a node's topology and a step's shape to
// each local task's CPUs, NUMA nodes, GPUs, NICs and environment. Computed once per step
// per node; each task then applies its own slice (apply.hpp).
#pragma once
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "affinity/topology.hpp"
#include "config/user_options.hpp"

namespace aihpc::affinity {

struct PlanRequest {
    unsigned tasks = 1;                          // local task count
    CpuSet allowed;                              // OS PUs the step may use; empty: all
    std::optional<std::vector<unsigned>> gpus;   // step GPUs by index; nullopt: all
    // The names the step's processes know its GPUs by (its CUDA_VISIBLE_DEVICES entries),
    // in ascending GPU index order. Empty: each GPU's vendor ordinal.
    std::vector<std::string> gpu_names;
    config::BindRequest bind;                    // mode and nomem / nonic / verbose
};

struct GpuRef {
    unsigned index = 0;
    std::string pci;
    std::string visible_name;   // what CUDA_/ROCR_VISIBLE_DEVICES lists for it
    GpuVendor vendor = GpuVendor::other;
};

struct TaskBinding {
    unsigned rank = 0;                   // local rank
    CpuSet cpus;
    NodeSet mems;
    std::vector<GpuRef> gpus;            // bound GPUs; empty when GPUs are left alone
    std::vector<std::string> nics;
    std::map<std::string, std::string> env;
};

struct BindPlan {
    config::BindMode mode = config::BindMode::none;   // effective: auto resolved
    bool nomem = false;
    std::vector<TaskBinding> tasks;
    std::vector<std::string> warnings;
};

// Throws aihpc::Error when the request cannot be met at all: no task, an unknown GPU
// index, or no allowed CPU on this node.
BindPlan plan_binding(const NodeTopology& topology, const PlanRequest& request);

// "rank 3 cpus 48-63 mems 3 gpus 0(0000:d1:00.0) nics mlx5_3": the verbose line, with
// the rank the caller wants shown (the tool: local; the plugin: global).
std::string describe_task(const TaskBinding& task, unsigned shown_rank);

// The plan as one JSON object (aihpc-bind(1), plan --json).
std::string plan_to_json(const BindPlan& plan);

// OMP_PLACES for a CPU set: one place per core, "{0,64},{1,65}".
std::string omp_places(const NodeTopology& topology, const CpuSet& cpus);

}  // namespace aihpc::affinity
