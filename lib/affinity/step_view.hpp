// What a Slurm step tells a node about itself, turned into planner inputs: its
// allocated cores as OS PUs, and its GPUs as the step's environment lists them.
#pragma once
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "affinity/topology.hpp"

namespace aihpc::affinity {

// Slurm's core ids (S_STEP_ALLOC_CORES: the node's cores in socket-major order, which is
// hwloc's logical core order) to the OS PUs of those cores. Ids beyond the topology's
// cores (a node configured with more CPUs than it has) are dropped.
CpuSet pus_of_cores(const NodeTopology& topology, const std::set<unsigned>& core_ids);

// The PUs the step's tasks are bound within: the PUs of its allocated cores (step_cores,
// an id list as S_STEP_ALLOC_CORES gives it) that slurmstepd may run on now (`current`,
// its cgroup). All of `current` when step_cores is empty, not a list, or shares nothing
// with it.
CpuSet step_allowed_pus(const NodeTopology& topology, const std::string& step_cores, const CpuSet& current);

// Of the variables an earlier step exported to its tasks (the comma list that
// AIHPC_TASK_ENV carries), those this task must unset: the ones not set again now. GPU
// visibility stays, since Slurm itself sets it for every step that has GPUs.
std::vector<std::string> stale_task_env(const std::string& exported_before, const std::set<std::string>& set_now);

struct StepGpus {
    std::optional<std::vector<unsigned>> indices;   // nullopt: every GPU of the node
    std::vector<std::string> names;                 // the step's CUDA_/ROCR_VISIBLE_DEVICES entries
};

// SLURM_STEP_GPUS (or SLURM_JOB_GPUS) gives the indices; CUDA_VISIBLE_DEVICES (or
// ROCR_VISIBLE_DEVICES) the names the processes know them by, used when it lists as
// many. Without SLURM_*_GPUS, a numeric CUDA_VISIBLE_DEVICES gives both; an empty one,
// NoDevFiles, or one of UUIDs means no GPU to share out; with neither variable the
// step may use every GPU of the node.
StepGpus step_gpus_from_env(const std::function<std::optional<std::string>(const std::string&)>& getenv);

}  // namespace aihpc::affinity
