// Context: local (srun) and allocator (sbatch, salloc). User: the submitting user.
// Calls: once per command, after all options are parsed.
//
// Every check that can be made before anything is queued is made here, so a bad value
// fails the command with an aihpc: message and no job exists.
#include "common/error.hpp"
#include "plugin/hooks.hpp"
#include "plugin/options.hpp"
#include "plugin/plugin_state.hpp"
#include "plugin/capabilities.hpp"

namespace aihpc::plugin {

void submit_init_post_opt(const Spank& spank) {
    resolve_options(spank);
    const config::UserOptions& options = state().options;
    // srun knows its node count here; sbatch's stage-out belongs to the one-node batch step.
    if (spank.context() == S_CTX_LOCAL) {
        if (auto nodes = spank.u32(S_JOB_NNODES)) config::check_job_shape(options, *nodes);
    }
    stage_check_at_submit(options, state().site);
    container_check_at_submit(options, state().site);
}

}  // namespace aihpc::plugin
