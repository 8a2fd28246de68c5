// The hook side of the release check (slurm_release.cpp), for dispatch.cpp.
#pragma once
#include "plugin/spank_api.hpp"

namespace aihpc::plugin {

// Logs `aihpc: ...` naming both versions when the loading Slurm is of another release
// than the one aihpc.so was built against. Returns -1 where refusing is safe (srun,
// sbatch, salloc, slurmd), else 0 (the error is deferred to task_init on a node, and
// only logged in the prolog and epilog).
int refuse_other_slurm_release(const Spank& spank) noexcept;

}  // namespace aihpc::plugin
