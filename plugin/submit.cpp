// Context: local (srun) and allocator (sbatch, salloc). User: the submitting user.
// Calls: init_post_opt once per command, after all options are parsed;
// local_user_init once per srun, after the step is created and before it launches.
//
// Every check that can be made before anything is queued is made here, so a bad value
// fails the command with an aihpc: message and no job exists.
#include "common/error.hpp"
#include "plugin/capabilities.hpp"
#include "plugin/hooks.hpp"
#include "plugin/options.hpp"
#include "plugin/plugin_state.hpp"

namespace aihpc::plugin {

void submit_init_post_opt(const Spank& spank) {
    resolve_options(spank);
    const config::UserOptions& options = state().options;
    stage_check_at_submit(options, state().site);
    container_check_at_submit(options, state().site);
    gravity_at_submit(spank, state());
}

// srun learns its node count only once the step exists; this runs before any task
// does, so a stage-out that would collide across nodes fails srun before it starts.
// (sbatch's stage-out belongs to the batch step, which runs on one node.)
void submit_local_user_init(const Spank& spank) {
    if (auto nodes = spank.u32(S_JOB_NNODES)) config::check_job_shape(state().options, *nodes);
}

}  // namespace aihpc::plugin
