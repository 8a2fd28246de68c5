// Running tasks inside an array element: resolve the global indices, substitute the
// parameters into the phase's command, run it as a child (signals forwarded), and
// write results/<index>.json atomically. The result text is built by a pure function.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "sweep/sweep_dir.hpp"

namespace aihpc::sweep {

// What the environment of the task says about where and how it runs.
struct TaskContext {
    std::string node;
    std::string job_id, array_job_id, array_task_id;
    std::string cpus, mems, gpus;            // binding
    std::string container, container_digest;
    std::string stage_manifests;             // AIHPC_STAGE_MANIFESTS: name=hash,...
    std::string stage_option;                // AIHPC_STAGE: SRC[:NAME],...
};

TaskContext task_context_from_environment();

struct TaskOutcome {
    int exit_code = 0;
    std::string signal;          // the signal that ended the command, if any
    std::string forwarded;       // the signal aihpc-sweep forwarded to it, if any
    std::string error;           // why it could not be started
    std::string start, end;      // RFC 3339
    double elapsed_s = 0;
    std::string metrics_json = "{}";
    std::vector<std::string> non_finite;   // metrics that were NaN or infinite (null in metrics_json)
    std::vector<std::string> stderr_tail;  // the last lines the command wrote to stderr
};

// How many of the last stderr lines a failed task's result keeps.
constexpr std::size_t kStderrTailLines = 20;

// The metrics a task wrote: a JSON object (Python's bare NaN and Infinity allowed), or
// name=value lines. Integers keep all 64 bits and numbers their text; a NaN or an
// infinity becomes null and its name goes into `non_finite` (dotted for nested ones).
struct Metrics {
    std::string json = "{}";
    std::vector<std::string> non_finite;
};
Metrics parse_metrics(std::string_view text);
std::string metrics_to_json(const std::string& text);  // parse_metrics(text).json

// The last `lines` lines of `text` (a last line without its newline counts), without
// their newlines.
std::vector<std::string> last_lines(std::string_view text, std::size_t lines);

// The words of the phase's command for one task ({name}, {index}, {task_seed}, {phase}).
std::vector<std::string> task_command(const SweepSpec& spec, const Phase& phase, const TaskRecord& task);

// The result object, one line.
// `rung_fields`: ,"bracket":S,"rung":K,"budget":B for a task of a scheduled sweep.
std::string result_json(const SweepDir& sweep, const Phase& phase, const TaskRecord& task, const std::vector<std::string>& command,
                        const TaskOutcome& outcome, const TaskContext& context, const std::string& rung_fields = "");

// The task at a rung of the schedule: the resource parameter set to the rung's budget
// (added to its parameters, which never hold it otherwise).
TaskRecord with_budget(TaskRecord task, const std::string& resource, const Scalar& budget);

// results/ for the last phase, results/<phase>/ for the others.
std::string results_dir(const SweepDir& sweep, const Phase& phase);
// <results_dir>/<index>.json
std::string result_path(const SweepDir& sweep, const Phase& phase, std::uint64_t index);

// What a task sees of itself in its environment: AIHPC_TASK_INDEX, AIHPC_TASK_SEED and
// one AIHPC_PARAM_<NAME> per parameter, in that order.
std::vector<std::pair<std::string, std::string>> task_environment(const TaskRecord& task);

const Phase& find_phase(const SweepSpec& spec, const std::string& name);  // empty: the last

// What `params` prints of task `index` of the sweep in `dir`, in `format`: json (its
// params object), args (--name=value words), env or shell (task_environment, as
// assignments or exports), or cmd: the command `run` would start for it in `phase` (empty:
// the last), as a shell would read it.
std::string task_params_text(const std::string& dir, std::uint64_t index, const std::string& format, const std::string& phase);

// How the commands of an array element reach the sweep's container. When the job asks
// for a container with --aihpc-container-scope=steps (submit adds it), aihpc-sweep runs
// on the host in the batch step and starts each command as a one-task srun step on its
// own node: the plugin puts that step in the image, which needs nothing of aihpc, while
// parsing, results and phase chaining stay on the host. Otherwise (no container, or the
// batch script itself inside one) the command runs as a child.
struct TaskLaunch {
    bool as_step = false;
    std::string node;   // the batch step's node, where the step must run
};

// Pure, from the element's environment (NAME=VALUE): the job's container options as
// Slurm forwards them (SLURM_SPANK__SLURM_SPANK_OPTION_aihpc_aihpc_container...), which
// override AIHPC_CONTAINER and AIHPC_CONTAINER_SCOPE; SLURM_JOB_ID; and SLURM_STEP_ID,
// unset or the batch step's id in the batch step (by release), a number in a step.
TaskLaunch task_launch_from(const std::vector<std::string>& env);

// The words that start one task's command as a step of the element's job.
std::vector<std::string> step_command(const TaskLaunch& launch, const std::vector<std::string>& command);

struct RunRequest {
    std::string phase;                      // empty: the last phase
    std::optional<std::uint64_t> index;     // one task, outside an array
    std::uint64_t offset = 0;
    std::optional<std::uint64_t> count;     // tasks in the chunk; default: to the end
    std::uint64_t pack = 1;
    std::optional<std::uint64_t> bracket, rung;  // a rung of the schedule: OFFSET + array id is the configuration
};

// Runs the element's tasks one after the other and returns the exit status to leave
// with: the first non-zero one, so that aftercorr holds back the next phase.
int run_tasks(const SweepDir& sweep, const RunRequest& request);

}  // namespace aihpc::sweep
