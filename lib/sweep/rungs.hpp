// Early stopping with no live driver: the rungs of a scheduled sweep in its sweep dir.
//
//   SWEEP/rungs/plan.json         how later rungs are submitted (throttle, sbatch words, tool)
//   SWEEP/rungs/b<s>.r<k>.json    rung k of bracket s: its configurations, budget, the
//                                 arrays that run them and the controller that follows
//   SWEEP/rungs/b<s>.r<k>/<I>.json  the result of configuration I at that rung
//   SWEEP/rungs/lock              held while a promotion is decided and submitted
//
// A promotion is one atomic rename: the next rung's record, with its configurations and
// no arrays yet. Whoever finds such a record (the controller, a rerun of advance, the
// next ASHA task) submits what it lacks, so a promotion killed halfway loses nothing.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "sweep/schedule.hpp"
#include "sweep/submit_plan.hpp"
#include "sweep/sweep_dir.hpp"

namespace aihpc::sweep {

struct RungArray {
    std::string job_id;
    std::vector<std::uint64_t> configs;
};

struct RungRecord {
    std::uint64_t bracket = 0, rung = 0;
    std::string budget;                   // budget_text
    std::vector<std::uint64_t> configs;   // ascending
    std::vector<RungArray> arrays;        // submitted so far
    std::string controller;               // the advance job that follows the rung, if any

    // Configurations of the rung no array runs yet.
    std::vector<std::uint64_t> unsubmitted() const;
};

std::string rung_record_json(const RungRecord& record);
RungRecord parse_rung_record(const std::string& text);  // throws aihpc::Error

// How later rungs are submitted, fixed at submit time.
struct RungsPlan {
    std::uint64_t throttle = 0, max_array_size = 1001;
    std::vector<std::string> sbatch;  // the words after submit's --
    std::string tool;                 // absolute path of aihpc-sweep
};
std::string rungs_plan_json(const RungsPlan& plan);
RungsPlan parse_rungs_plan(const std::string& text);

std::string rungs_dir(const std::string& sweep_path);
std::string rung_record_path(const std::string& sweep_path, std::uint64_t bracket, std::uint64_t rung);
std::string rung_result_path(const std::string& sweep_path, std::uint64_t bracket, std::uint64_t rung, std::uint64_t config);
std::string checkpoint_dir(const std::string& sweep_path, std::uint64_t config);

// The brackets of a scheduled sweep (throws when it has no schedule).
std::vector<BracketPlan> sweep_brackets(const SweepDir& sweep);

// One result file's outcome for ranking: no metric when the file is missing or unreadable,
// the task failed, or the metric is absent, not a number, NaN or infinite.
RungOutcome read_outcome(const std::string& path, std::uint64_t config, const std::string& metric);

// The array of one rung: sparse configurations chunked so that array ids stay below
// max_array_size (id = config - offset). Pure.
struct RungSubmission {
    std::uint64_t offset = 0;
    std::vector<std::uint64_t> configs;
    std::vector<std::string> argv;  // sbatch ...
};
std::vector<RungSubmission> plan_rung_arrays(const SweepDir& sweep, const RungsPlan& plan, std::uint64_t bracket, std::uint64_t rung,
                                             const std::vector<std::uint64_t>& configs);
std::string rung_script_path(const std::string& sweep_path);
std::string rung_script(const SweepDir& sweep, const RungsPlan& plan, const std::string& tool_version);
std::string rung_controller_script_path(const std::string& sweep_path);
std::string rung_controller_script(const SweepDir& sweep, const RungsPlan& plan, const std::string& tool_version);
std::vector<std::string> rung_controller_argv(const SweepDir& sweep, const RungsPlan& plan, std::uint64_t bracket, std::uint64_t rung,
                                              const std::vector<std::string>& jobs);

// Runs one sbatch line and returns the job id; throws aihpc::Error saying what failed.
using Sbatch = std::function<std::string(const std::vector<std::string>& argv)>;
Sbatch real_sbatch();

// Submits the first rung of every bracket (and, for sha and hyperband, its controller);
// writes plan.json and the rung records. Refuses a sweep already submitted.
void submit_schedule(const SweepDir& sweep, const RungsPlan& plan, const std::string& tool_version, const Sbatch& sbatch,
                     std::ostream& out);

struct AdvanceRequest {
    std::optional<std::uint64_t> bracket, rung;  // the controller names its rung
    bool arrays_ended = false;  // the rung's arrays have ended: decide even with results missing
    bool dry_run = false;       // decide and print, write and submit nothing
};

// One step of the schedule, under the lock: decides every rung that is due (sha and
// hyperband: all its configurations have a result, or its arrays ended; asha: whatever is
// in the top 1/eta of what completed), and submits what a decided rung still lacks.
// Prints what it did on `out`. Safe to run any number of times.
void advance_schedule(const SweepDir& sweep, const AdvanceRequest& request, const Sbatch& sbatch, std::ostream& out);

// One line per bracket and rung: budget, configurations, results, promoted and stopped.
void print_schedule_status(const SweepDir& sweep, std::ostream& out);

// Whether configuration `config`, at its latest rung `rung` of bracket `bracket`, was
// promoted to the next rung (for collect's column).
struct RungState {
    std::vector<BracketPlan> brackets;
    // (bracket, rung) -> configurations of that rung
    std::vector<std::pair<std::pair<std::uint64_t, std::uint64_t>, std::set<std::uint64_t>>> rungs;
    bool promoted(std::uint64_t bracket, std::uint64_t rung, std::uint64_t config) const;
};
RungState read_rung_state(const SweepDir& sweep);

// Where each configuration stands, for collect's columns: the bracket and the highest
// rung it has a result at, that rung's budget, and whether it was promoted beyond it.
struct RungPlace {
    bool known = false;  // no result at any rung yet
    std::uint64_t bracket = 0, rung = 0;
    Budget budget;
    bool promoted = false;
};
std::vector<RungPlace> rung_places(const SweepDir& sweep);

// The columns a scheduled sweep's rows add to its parameters: bracket, rung, budget,
// promoted (none without a schedule).
std::vector<std::string> rung_columns(const SweepSpec& spec);

// The row's parameters with its place: the resource at the rung's budget, and the four
// rung_columns.
void add_rung_place(Assignment& params, const RungPlace& place, const std::string& resource);

}  // namespace aihpc::sweep

namespace aihpc::sweep {

// One array that submit would make, as `plan --json` shows it (aihpc-sweep(1), COMMANDS,
// plan):
// bracket, rung and budget are null without a schedule; the array of a later rung is
// null, since its configurations are known only once the rung before it is decided.
struct PlannedArray {
    std::string phase, label;
    std::optional<std::uint64_t> bracket, rung;
    std::uint64_t tasks = 0;
    std::string budget;   // JSON number text; empty: null
    std::string after;    // label; empty: null
    std::string array;    // --array value; empty: null
    std::uint64_t offset = 0;
};

std::vector<PlannedArray> planned_arrays(const SweepDir& sweep, const std::vector<ArraySubmission>& subs, std::uint64_t throttle,
                                         std::uint64_t max_array_size);
std::string planned_arrays_json(const std::vector<PlannedArray>& arrays);

}  // namespace aihpc::sweep
