#include "affinity/step_view.hpp"

#include "common/text.hpp"

namespace aihpc::affinity {

CpuSet pus_of_cores(const NodeTopology& topology, const std::set<unsigned>& core_ids) {
    CpuSet pus;
    for (unsigned id : core_ids)
        if (id < topology.cores.size()) pus.insert(topology.cores[id].pus.begin(), topology.cores[id].pus.end());
    return pus;
}

CpuSet step_allowed_pus(const NodeTopology& topology, const std::string& step_cores, const CpuSet& current) {
    CpuSet allowed;
    if (auto cores = parse_id_list(step_cores); cores && !cores->empty())
        for (unsigned pu : pus_of_cores(topology, *cores))
            if (current.count(pu)) allowed.insert(pu);
    return allowed.empty() ? current : allowed;
}

std::vector<std::string> stale_task_env(const std::string& exported_before, const std::set<std::string>& set_now) {
    std::vector<std::string> stale;
    for (const std::string& name : split(exported_before, ','))
        if (!name.empty() && !set_now.count(name) && name != "CUDA_VISIBLE_DEVICES" && name != "ROCR_VISIBLE_DEVICES" &&
            name != "CUDA_DEVICE_ORDER")
            stale.push_back(name);
    return stale;
}

StepGpus step_gpus_from_env(const std::function<std::optional<std::string>(const std::string&)>& getenv) {
    StepGpus gpus;
    std::optional<std::string> visible = getenv("CUDA_VISIBLE_DEVICES");
    if (!visible) visible = getenv("ROCR_VISIBLE_DEVICES");
    std::vector<std::string> names;
    if (visible && !trim(*visible).empty()) names = split(trim(*visible), ',');

    std::optional<std::string> slurm = getenv("SLURM_STEP_GPUS");
    if (!slurm) slurm = getenv("SLURM_JOB_GPUS");
    if (slurm) {
        if (auto ids = parse_id_list(trim(*slurm))) {
            gpus.indices = std::vector<unsigned>(ids->begin(), ids->end());
            if (names.size() == ids->size()) gpus.names = names;
            return gpus;
        }
    }
    if (!visible) return gpus;
    gpus.indices = std::vector<unsigned>{};
    for (const std::string& name : names) {
        auto index = parse_uint(name);
        if (!index) {
            gpus.indices->clear();   // NoDevFiles, GPU-..., MIG-...: nothing to renumber
            return gpus;
        }
        gpus.indices->push_back(static_cast<unsigned>(*index));
    }
    gpus.names = names;
    return gpus;
}

}  // namespace aihpc::affinity
