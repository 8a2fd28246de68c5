// Putting a program of aihpc's in front of a task's command, so that Slurm finishes the
// task's setup (TaskProlog, TMPDIR, limits, later plugins) exactly as for any task and
// then execs that program, which runs the command its own way.
//
// On Slurm 23.11 and later that is spank_prepend_task_argv. On 22.05 to 23.02 the argv
// that S_JOB_ARGV hands back is the very array the task is exec'd from
// (slurmstepd_job.c), so argv[0] is replaced and the displaced value is returned for
// the program to restore; a version guard keeps this off the Slurm versions where that
// is not so.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "plugin/spank_api.hpp"

namespace aihpc::plugin {

// remote task_init, as the user, in the task. `words` are the program and its leading
// arguments; on 22.05 only the program takes argv[0]'s place, and the leading arguments
// are dropped (the caller passes them another way). Returns the displaced argv[0] there,
// nullopt where the words were prepended. Throws aihpc::Error naming `what`.
std::optional<std::string> put_in_front_of_task(const Spank& spank, const std::vector<std::string>& words,
                                                const std::string& what);

}  // namespace aihpc::plugin
