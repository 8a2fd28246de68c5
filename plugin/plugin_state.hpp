// What the plugin remembers between hooks within one process (srun, sbatch, or one
// slurmstepd). Hooks of one process run on one thread, so plain globals suffice.
#pragma once
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "config/site_config.hpp"
#include "config/user_options.hpp"

namespace aihpc::plugin {

// Where the step runs, read once from Slurm in remote context.
struct StepInfo {
    std::uint32_t job_id = 0;
    std::uint32_t step_id = 0;
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups;
    std::uint32_t node_count = 1;
    std::uint32_t node_index = 0;
    std::uint32_t local_task_count = 1;
    std::uint32_t total_task_count = 1;
    std::string node_name;
    std::string submit_dir;
    std::string step_cores;   // S_STEP_ALLOC_CORES, list syntax
    bool is_batch_step = false;
    // Slurm gave the job id, uid and gid. Without them aihpc acts for nobody: it never
    // falls back to 0, which would be root's.
    bool identified = false;
};

struct PluginState {
    config::SiteConfig site;
    std::vector<std::string> site_args;         // as plugstack.conf gave them, for aihpc-node
    std::optional<std::string> site_error;      // a bad site key, kept in remote context
    config::RawOptions raw_options;             // as the option callbacks stored them
    config::UserOptions options;
    StepInfo step;
    // Errors of remote init/user_init: reported from task_init, never returned earlier,
    // since a failing remote init on a batch job drains the node.
    std::vector<std::string> deferred_errors;
    // --aihpc-verbose lines collected in slurmstepd, printed by the tasks.
    std::vector<std::string> verbose_lines;
    std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();

    void defer(const std::string& message) { deferred_errors.push_back(message); }
    void note(const std::string& phase);  // verbose: "aihpc: [12.3ms] phase"
};

PluginState& state();

}  // namespace aihpc::plugin
