// The task wrapper (aihpc-node run-task): a task of a step with --aihpc-stage-out or
// --aihpc-checkpoint runs its command as this wrapper's child, with the signals Slurm
// and users send passed on to it and, with --aihpc-checkpoint, the checkpoint signal
// sent before the job's time limit. When the command ends, the step's last task on the
// node stages out, as the user, and the job is requeued after a checkpoint; the wrapper
// then ends as its command did, or fails where the stage-out did not deliver. No Slurm
// API: the controller is asked through squeue and scontrol.
#pragma once

#include "common/node_helper.hpp"
#include "stage/node_request.hpp"

namespace aihpc::stage {

// The wrapper's main: its request in AIHPC_TASK_REQUEST, the command in argv (after
// "run-task", or from r.argv0 on). The exit code the task ends with, unless it ends by
// its command's signal.
int run_task(int argc, char** argv);

namespace node {
// As the user, from slurmstepd after a step that stages out recorded its delivery: the
// requeue after a checkpoint that the task wrapper left to it.
void requeue(const NodeRequest& r, const HelperChannel& channel);
}  // namespace node

}  // namespace aihpc::stage
