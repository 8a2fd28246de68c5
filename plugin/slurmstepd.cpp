// Context: remote (slurmstepd), once per step per node; the task hooks once per task.
// Users: init_post_opt as root; user_init with euid = the job's user; task_init as the
// user, in the forked task just before exec; task_exit as root in slurmstepd.
//
// Nothing here returns an error before task_init: errors are deferred, and task_init
// prints them on the task's stderr and fails the task, so the job ends FAILED with the
// reason in its output and the node stays up.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <optional>

#include "common/error.hpp"
#include "plugin/capabilities.hpp"
#include "plugin/hooks.hpp"
#include "plugin/options.hpp"
#include "plugin/plugin_state.hpp"

namespace aihpc::plugin {

namespace {

// Slurm's reserved step ids (slurm.h), which spank.h does not carry.
constexpr std::uint32_t batch_step_id = 0xfffffffb;

StepInfo read_step(const Spank& spank) {
    StepInfo step;
    std::optional<std::uint32_t> job = spank.u32(S_JOB_ID), step_id = spank.u32(S_JOB_STEPID);
    std::optional<uid_t> uid = spank.uid();
    std::optional<gid_t> gid = spank.gid();
    step.identified = job && *job != 0 && step_id && uid && gid;
    step.job_id = job.value_or(0);
    step.step_id = step_id.value_or(0);
    step.uid = uid.value_or(static_cast<uid_t>(-1));
    step.gid = gid.value_or(static_cast<gid_t>(-1));
    step.groups = spank.supplementary_gids();
    step.node_count = spank.u32(S_JOB_NNODES).value_or(1);
    step.node_index = spank.u32(S_JOB_NODEID).value_or(0);
    step.local_task_count = spank.u32(S_JOB_LOCAL_TASK_COUNT).value_or(1);
    step.total_task_count = spank.u32(S_JOB_TOTAL_TASK_COUNT).value_or(1);
    step.step_cores = spank.str(S_STEP_ALLOC_CORES).value_or("");
    step.is_batch_step = step.step_id == batch_step_id;
    // slurmd puts the node's name in slurmstepd's own environment. The job env's copy
    // is stale in steps of a batch job (it names the batch node), so it is not used.
    if (const char* node = std::getenv("SLURMD_NODENAME")) step.node_name = node;
    if (step.node_name.empty()) {
        char host[256] = {};
        if (gethostname(host, sizeof host - 1) == 0) step.node_name = host;
    }
    step.submit_dir = spank.getenv("SLURM_SUBMIT_DIR").value_or("");
    return step;
}

}  // namespace

void step_init_post_opt(const Spank& spank) {
    PluginState& st = state();
    st.step = read_step(spank);
    if (st.site_error) st.defer(*st.site_error);
    resolve_options(spank);
    std::string given;
    for (const auto& [name, value] : st.raw_options) given += " --" + name + (value.empty() ? "" : "=" + value);
    st.note("step " + std::to_string(st.step.job_id) + "." +
            (st.step.is_batch_step ? std::string("batch") : std::to_string(st.step.step_id)) + " on " +
            st.step.node_name + ", options:" + (given.empty() ? " none" : given));
    // Normally refused by srun already; a step launched another way is checked here.
    // The batch step runs on one node, whatever the job's size.
    if (!st.step.is_batch_step) config::check_job_shape(st.options, st.step.node_count);
    if (st.deferred_errors.empty()) {
        bind_step_init(spank, st);
        container_step_init(spank, st);
    }
    if (st.step.is_batch_step) {
        // Stage-out belongs to the batch step: steps it launches must not repeat it.
        for (const config::OptionSpec& spec : config::option_table()) {
            if (!spec.step_local) continue;
            spank.unsetenv(spec.env_var);
            spank.unsetenv(forwarded_option_variable(spec));
        }
    }
}

// Capabilities run in order and stop at the first failure: that is the one the user
// needs to read, and later phases would only add noise.
void step_user_init(const Spank& spank) {
    PluginState& st = state();
    if (!st.deferred_errors.empty()) return;
    try {
        stage_user_init(spank, st);
        bind_user_init(spank, st);
        container_user_init(spank, st);
    } catch (const std::exception& e) {
        st.defer(e.what());
    }
    st.note("user_init done");
}

int step_task_init(const Spank& spank) {
    PluginState& st = state();
    // The task's stderr is the job's: verbose lines and errors land where the user reads.
    if (spank.task_id().value_or(0) == 0)
        for (const std::string& line : st.verbose_lines) std::fprintf(stderr, "%s\n", line.c_str());
    if (!st.deferred_errors.empty()) {
        for (const std::string& message : st.deferred_errors) std::fprintf(stderr, "aihpc: %s\n", message.c_str());
        std::fflush(stderr);
        return -1;
    }
    try {
        stage_task_init(spank, st);
        bind_task_init(spank, st);
        container_task_init(spank, st);
        task_wrapper_task_init(spank, st);  // last: it goes in front of the container's launcher
    } catch (const std::exception& e) {
        // On the task's stderr, where the user reads it; Slurm's log would hide it.
        std::fprintf(stderr, "aihpc: %s\n", e.what());
        std::fflush(stderr);
        return -1;
    }
    return 0;
}

void step_task_exit(const Spank& spank) { stage_task_exit(spank, state()); }

void step_exit(const Spank&) { stage_step_exit(state()); }

}  // namespace aihpc::plugin
