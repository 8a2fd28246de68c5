// A sweep's arrays handed to sbatch, and chunks.json, the record of them: written as
// each array is queued, appended to by a resubmission. What runs sbatch and where each
// submission is reported come from the caller, so that a test gives its own sbatch.
#pragma once
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "common/process.hpp"
#include "sweep/submit_plan.hpp"
#include "sweep/sweep_dir.hpp"

namespace aihpc::sweep {

// How arrays reach Slurm: the sbatch to run (its exit status and output read as
// capture_output gives them), and where each submission is reported (none: quietly).
struct Submitter {
    std::function<CommandOutput(const std::vector<std::string>& argv)> sbatch = capture_output;
    std::ostream* progress = nullptr;
};

// Takes the environment of the calling job out of what sbatch sees: a controller or a
// task submits from inside its own job, whose SLURM_* variables would shape the new one
// (sbatch reads some of them). SLURM_CONF stays.
void forget_job_environment();

// MaxArraySize of the cluster, from `scontrol show config`. A preview (plan, a dry run)
// may go on without Slurm, planned with Slurm's default (1001) and a note on `notes`,
// where a submission must stop.
std::uint64_t cluster_max_array_size(bool preview, std::ostream& notes);

// Writes each phase's batch script (scripts/<phase>.sh), executable.
void write_scripts(const SweepDir& sweep, const SubmitOptions& options);

// Submits `subs` in order, since each dependency needs the job id of the array before it,
// and fills in their job ids. `record` runs after each array is queued, and before an
// error is thrown once any array was: nothing is recorded while nothing was submitted,
// so that the sweep can simply be submitted again.
void submit_arrays(const SweepDir& sweep, std::vector<ArraySubmission>& subs, const std::function<void()>& record,
                   const Submitter& submitter);

// Submits `subs`, plan_submit's every phase and chunk of a sweep that was never
// submitted, with their scripts; fills in their job ids, recorded in chunks.json.
void submit_sweep(const SweepDir& sweep, std::vector<ArraySubmission>& subs, const SubmitOptions& options,
                  const Submitter& submitter);

// Adds `subs` to the arrays chunks.json records, or writes it with them alone when there
// is none (or it has no list of arrays).
void append_chunks(const SweepDir& sweep, const std::vector<ArraySubmission>& subs, const SubmitOptions& options);

// The job ids of submitted arrays, in order.
std::vector<std::string> job_ids(const std::vector<ArraySubmission>& subs);

}  // namespace aihpc::sweep
