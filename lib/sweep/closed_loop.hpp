// The closed loop of `aihpc-sweep submit --rounds R` in the sweep dir: rounds.json
// written as the loop goes, the controller job that follows each round, and advance,
// the controller's step: rank the round, then refine, submit and follow the next one.
// rounds.hpp holds the pure part (the record's text, the controller's script and argv).
#pragma once
#include <ostream>
#include <string>
#include <vector>

#include "sweep/rounds.hpp"
#include "sweep/submission.hpp"
#include "sweep/submit_plan.hpp"
#include "sweep/sweep_dir.hpp"

namespace aihpc::sweep {

// What a step of the loop needs from the program that runs it.
struct LoopStep {
    std::string tool_version;
    std::string tool_path;  // this aihpc-sweep, for a loop whose plan names none
    Submitter submitter;
};

// Writes SWEEP/rounds.json.
void write_rounds(const std::string& root, const RoundsRecord& record);

// Starts the loop of a sweep whose first round, `subs`, was just submitted: records it
// as round 1 of `record` (its plan filled in) and submits its controller. Returns the
// controller's job id.
std::string start_closed_loop(const SweepDir& sweep, RoundsRecord& record, const std::vector<ArraySubmission>& subs,
                              const LoopStep& step);

// Submits the controller that advances the loop once every job of the record's last
// round has ended, and records its job id. When sbatch fails the loop is recorded as
// stopped (the round itself runs on) and the error says so.
std::string submit_controller(const SweepDir& root, RoundsRecord& record, const LoopStep& step);

// One step of the loop of the sweep `root` (`dir`, as the user named it), under a lock
// on rounds.json so that a requeued controller never advances a round twice: ranks the
// round that ended and records its best; then either records the loop done, or refines
// the next round into SWEEP/rounds/<r+1> (kept when a cut-short step wrote it already),
// submits it and its controller. A round without a result to rank, or a next round that
// cannot be submitted, stops the loop, recorded with why. A loop no longer running is
// said on `err` and left alone. What it did is printed on `out`.
void advance_rounds(const SweepDir& root, const std::string& dir, const LoopStep& step, std::ostream& out, std::ostream& err);

}  // namespace aihpc::sweep
