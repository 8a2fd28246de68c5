// What a Slurm step tells a node about itself, turned into planner inputs: its
// allocated cores as OS PUs, and its GPUs as the step's environment lists them.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "affinity/topology.hpp"

namespace aihpc::affinity {

// Slurm's core ids (S_STEP_ALLOC_CORES: the node's cores in socket-major order, which is
// hwloc's logical core order) to the OS PUs of those cores. Ids beyond the topology's
// cores (a node configured with more CPUs than it has) are dropped.
CpuSet pus_of_cores(const NodeTopology& topology, const std::set<unsigned>& core_ids);

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
