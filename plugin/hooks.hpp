// The functions each context file implements; dispatch.cpp routes every SPANK hook here.
#pragma once
#include <string>
#include <vector>

#include "plugin/spank_api.hpp"

namespace aihpc::plugin {

// submit.cpp: srun (local) and sbatch/salloc (allocator). Run as the submitting user.
void submit_init_post_opt(const Spank& spank);
// srun only, once the step's shape is known and before any task starts.
void submit_local_user_init(const Spank& spank);

// slurmstepd.cpp: remote context, once per step per node (tasks: once per task).
void step_init_post_opt(const Spank& spank);
void step_user_init(const Spank& spank);
int step_task_init(const Spank& spank);
void step_task_exit(const Spank& spank);
// The step's end on this node (slurm_spank_exit), as root in slurmstepd.
void step_exit(const Spank& spank);

// job_script.cpp: prolog/epilog context, as root, once per job per node.
void job_epilog(const Spank& spank);

}  // namespace aihpc::plugin
