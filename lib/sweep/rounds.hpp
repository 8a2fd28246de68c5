// The closed loop of `aihpc-sweep submit --rounds R`: after each round a small
// controller job, held by --dependency=afterany on every array of the round, runs
// `aihpc-sweep advance`, which ranks the round's results, refines the next round into
// SWEEP/rounds/<r+1>, submits it and the next controller. SWEEP/rounds.json records
// the plan and every round. Everything here is pure: text in, text out.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sweep/submit_plan.hpp"
#include "sweep/results.hpp"

namespace aihpc::sweep {

struct RoundsPlan {
    std::uint64_t rounds = 1;
    std::string metric;
    bool maximize = false;
    std::uint64_t top = 1;
    double shrink = 0.5;
    Aggregate aggregate = Aggregate::none;  // how a configuration's replicates rank it
    std::optional<std::uint64_t> trials;  // default: the first round's task count
    std::uint64_t throttle = 0, max_array_size = 1001, pack = 1;
    std::vector<std::string> sbatch;      // for every round's arrays
    std::string tool;                     // absolute path of aihpc-sweep
};

struct RoundBest {
    std::uint64_t index = 0;
    double metric = 0;
    std::string params_json;
};

struct Round {
    std::uint64_t round = 1;
    std::string dir;                      // absolute; round 1 is SWEEP itself
    std::uint64_t tasks = 0;
    std::vector<std::string> jobs;        // every array job id of the round
    std::string controller;               // the job that advances after it
    std::optional<RoundBest> best;
};

struct RoundsRecord {
    RoundsPlan plan;
    std::vector<Round> history;
    std::string state = "running";        // running, done, stopped
    std::string message;
};

std::string rounds_json(const RoundsRecord& record);
// The best task over every round so far (its round and its best), in the plan's direction;
// earlier rounds win ties.
std::optional<std::pair<std::uint64_t, RoundBest>> overall_best(const RoundsRecord& record);
RoundsRecord parse_rounds_json(const std::string& text);  // throws aihpc::Error

// "loss", "loss:min", "acc:max" -> name and direction (true: maximize); errors name
// `option` (--metric, --sort).
std::pair<std::string, bool> parse_metric_direction(const std::string& text, std::string_view option = "--metric");

// SWEEP for round 1, SWEEP/rounds/<r> after.
std::string round_dir(const std::string& root, std::uint64_t round);

// The metric and direction (true: maximize) of the closed loop the sweep at sweep_path
// belongs to: SWEEP/rounds.json for round 1, and for a later round's SWEEP/rounds/<r>,
// SWEEP/rounds.json two levels up. Nothing when there is no loop or its record is
// damaged: a reader that only wants the direction goes on without it.
std::optional<std::pair<std::string, bool>> closed_loop_goal(const std::string& sweep_path);

// The controller job script: tiny resources, its log in SWEEP/logs.
std::string controller_script(const std::string& root, const std::string& sweep_name, const std::string& tool, const std::string& tool_version);
std::string controller_script_path(const std::string& root);

// The sbatch words of the options that say where a job may run (partition, account,
// QOS, reservation), which the controller needs too; resources stay with the arrays.
std::vector<std::string> placement_args(const std::vector<std::string>& sbatch_args);

// sbatch argv for the controller held until every job of the round has ended.
std::vector<std::string> controller_argv(const std::string& script, const std::vector<std::string>& round_jobs,
                                         const std::vector<std::string>& placement);

}  // namespace aihpc::sweep
