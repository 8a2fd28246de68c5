// What plan and a dry run show before anything is queued: the chunks of a sweep, each
// array's sbatch line, the closed loop's controller, and a scheduled sweep's brackets and
// first rungs. Job ids not known yet stand as {LABEL}. The scripts the lines name are
// written, so that they can be read before submitting, unless the sweep was submitted
// already: then its arrays keep those they were submitted with.
#pragma once
#include <ostream>
#include <string>
#include <vector>

#include "sweep/rungs.hpp"
#include "sweep/submit_plan.hpp"
#include "sweep/sweep_dir.hpp"

namespace aihpc::sweep {

// plan's summary of a sweep without a schedule: its chunks, one line each.
void print_chunks(const SweepDir& sweep, const SubmitOptions& options, std::ostream& out);

// Each array's sbatch line, with the options its script gives it when `script_words`
// (a resubmission's scripts exist already: only the words after -- are new on its lines).
void print_dry_run(const SweepDir& sweep, const std::vector<ArraySubmission>& subs, const SubmitOptions& options, bool script_words,
                   std::ostream& out);

// submit --dry-run of a sweep without a schedule: its scripts, its arrays' lines and,
// for a closed loop, the line of round 1's controller.
void print_submit_dry_run(const SweepDir& sweep, const std::vector<ArraySubmission>& subs, const SubmitOptions& options,
                          bool closed_loop, std::ostream& out);

// How the rungs of a scheduled sweep are submitted, from submit's options.
RungsPlan rungs_plan(const SubmitOptions& options);

// plan's summary of a scheduled sweep: its brackets, and every rung's array.
void print_schedule_plan(const SweepDir& sweep, const SubmitOptions& options, std::ostream& out);

// submit --dry-run of a scheduled sweep: the rung script, and the lines of each bracket's
// first rung and of the controller that promotes out of it.
void print_schedule_dry_run(const SweepDir& sweep, const RungsPlan& plan, const std::string& tool_version, std::ostream& out);

}  // namespace aihpc::sweep
