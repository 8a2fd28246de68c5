// The release check at load (see slurm_release.hpp). It runs first in slurm_spank_init,
// in every context, as whichever user loads the plugin (root in slurmd and slurmstepd,
// the submitting user in srun, sbatch and salloc), once per process.
#include "plugin/slurm_release_check.hpp"

#include <slurm/slurm_version.h>

#include <exception>
#include <string>

#include "plugin/plugin_state.hpp"
#include "plugin/slurm_release.hpp"

namespace aihpc::plugin {
namespace {

// The version of the headers this file was compiled with, as Slurm prints versions.
std::string built_version() {
    return std::to_string(SLURM_VERSION_MAJOR(SLURM_VERSION_NUMBER)) + "." +
           (SLURM_VERSION_MINOR(SLURM_VERSION_NUMBER) < 10 ? "0" : "") +
           std::to_string(SLURM_VERSION_MINOR(SLURM_VERSION_NUMBER)) + "." +
           std::to_string(SLURM_VERSION_MICRO(SLURM_VERSION_NUMBER));
}

}  // namespace

int refuse_other_slurm_release(const Spank& spank) noexcept {
    try {
        auto running = spank.str(S_SLURM_VERSION);
        if (!running) return 0;
        auto message = slurm_release_mismatch(built_version(), *running);
        if (!message) return 0;
        switch (spank.context()) {
        case S_CTX_LOCAL:
        case S_CTX_ALLOCATOR:
        case S_CTX_SLURMD:
            // srun and sbatch stop before anything is queued; slurmd does not start.
            slurm_error("aihpc: %s", message->c_str());
            return -1;
        case S_CTX_REMOTE:
            // Failing here would drain the node on a batch job: the tasks fail instead.
            slurm_error("aihpc: %s", message->c_str());
            state().defer(*message);
            return 0;
        default:
            // Prolog and epilog must not fail: that drains the node.
            slurm_error("aihpc: %s", message->c_str());
            return 0;
        }
    } catch (const std::exception&) {
        return 0;
    }
}

}  // namespace aihpc::plugin
