// Context: remote task_init, as the user, in the forked task just before exec.
//
// The task wrapper (aihpc-node run-task) goes in front of the task's command for a step
// that stages out or asks for a checkpoint signal. It is the task's process: it takes the
// task's signals and waits for the command, sends the checkpoint signal before the time
// limit, requeues the job when the command exits with the checkpoint's status, and, as
// the step's last task on the node, stages out. What it needs comes in the node request
// in AIHPC_TASK_REQUEST, which it removes from the command's environment.
#include <optional>
#include <string>

#include "common/error.hpp"
#include "common/text.hpp"
#include "plugin/capabilities.hpp"
#include "plugin/node_work.hpp"
#include "plugin/task_argv.hpp"

namespace aihpc::plugin {

namespace {

// AIHPC_CHECKPOINT_DIR: a sweep task's own place in its sweep dir, so that a rerun of the
// task finds it; for other jobs checkpoint_root/<jobid>, which a requeue keeps.
std::string checkpoint_dir(const Spank& spank, const PluginState& st) {
    std::optional<std::string> sweep = spank.getenv("AIHPC_SWEEP_DIR");
    std::optional<std::string> index = spank.getenv("AIHPC_TASK_INDEX");
    if (sweep && !sweep->empty() && index && parse_uint(*index))
        return *sweep + "/checkpoints/" + *index;
    std::string root = st.site.checkpoint_root;
    if (root.empty()) {
        std::string home = spank.getenv("HOME").value_or("");
        if (home.empty() || home[0] != '/')
            throw Error("--aihpc-checkpoint: the job has no HOME for its checkpoint dir; ask the administrators to set "
                        "the site key checkpoint_root");
        root = home + "/.aihpc/checkpoints";
    }
    std::string user = spank.getenv("SLURM_JOB_USER").value_or(spank.getenv("USER").value_or(""));
    std::string expanded;
    for (std::size_t i = 0; i < root.size(); ++i) {
        if (root[i] == '%' && i + 1 < root.size() && root[i + 1] == 'u') {
            if (user.empty()) throw Error("--aihpc-checkpoint: checkpoint_root uses %u, and the job's user name is unknown");
            expanded += user;
            ++i;
        } else {
            expanded += root[i];
        }
    }
    return expanded + "/" + std::to_string(st.step.job_id);
}

}  // namespace

void task_wrapper_task_init(const Spank& spank, PluginState& st) {
    bool stages_out = stage_step_active() && !st.options.stage_out.empty();
    if (!stages_out && !st.options.checkpoint) return;
    stage::NodeRequest request = step_request(st);
    if (st.options.checkpoint) {
        std::string dir = checkpoint_dir(spank, st);
        // slurmctld puts SLURM_RESTART_COUNT in a requeued batch job's environment, and
        // its steps inherit it; S_SLURM_RESTART_COUNT stays 0 in a batch step on 22.05.
        std::uint64_t restarts = parse_uint(spank.getenv("SLURM_RESTART_COUNT").value_or("")).value_or(
            spank.u32(S_SLURM_RESTART_COUNT).value_or(0));
        if (!spank.setenv("AIHPC_CHECKPOINT_DIR", dir) || !spank.setenv("AIHPC_RESTART_COUNT", std::to_string(restarts)))
            throw Error("--aihpc-checkpoint: cannot set the task's AIHPC_CHECKPOINT_DIR");
        request.checkpoint_dir = dir;
    }
    std::string program = node_helper_program();
    std::optional<std::string> displaced =
        put_in_front_of_task(spank, {program, "run-task"}, stages_out ? "--aihpc-stage-out" : "--aihpc-checkpoint");
    request.argv0 = displaced;
    if (!spank.setenv("AIHPC_TASK_REQUEST", stage::format_node_request(request)))
        throw Error("cannot pass the task wrapper its request");
}

}  // namespace aihpc::plugin
