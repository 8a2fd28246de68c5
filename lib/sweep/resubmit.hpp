// Resubmitting tasks of a sweep that was submitted: which tasks, and their arrays queued
// again with their earlier results set aside (results/<index>.json.prev), so that status
// and collection see only the new run.
#pragma once
#include <cstdint>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "sweep/submission.hpp"
#include "sweep/submit_plan.hpp"
#include "sweep/sweep_dir.hpp"

namespace aihpc::sweep {

// The tasks that resubmit names: those of the index list (--indices), and the failed or
// missing ones. Results that cannot be read are warned about on `warnings`.
std::set<std::uint64_t> tasks_to_resubmit(const SweepDir& sweep, const std::optional<std::string>& list, bool failed, bool missing,
                                          std::ostream& warnings);

// Submits `subs` (plan_resubmit's arrays for `indices`) and appends them to chunks.json.
// The phase scripts are written first where the sweep has none yet. The earlier results
// of the tasks are set aside before anything is queued; when that or sbatch fails, those
// of every array that was not submitted are put back, and the error says which could not
// be. Fills in the job ids.
void resubmit_tasks(const SweepDir& sweep, std::vector<ArraySubmission>& subs, const std::set<std::uint64_t>& indices,
                    const SubmitOptions& options, const Submitter& submitter);

}  // namespace aihpc::sweep
