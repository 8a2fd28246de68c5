// Early stopping, pure: the brackets and rungs of successive halving, Hyperband and ASHA
// (Li et al., JMLR 2018 and MLSys 2020) and the promotion rules, as value functions.
// Nothing here reads the sweep dir or talks to Slurm (see rungs.hpp for that).
#pragma once
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "sweep/spec.hpp"

namespace aihpc::sweep {

// A rung's budget, max * eta^rung / eta^bracket, kept as an exact fraction: (10, 1000, 4)
// gives 15.625 at the first rung of its most aggressive bracket.
struct Budget {
    std::uint64_t numerator = 1;
    std::uint64_t denominator = 1;
    bool integral() const { return numerator % denominator == 0; }
    double value() const { return static_cast<double>(numerator) / static_cast<double>(denominator); }
    bool operator==(const Budget& other) const = default;
};

// "9", or the shortest text of a fraction that round-trips ("15.625").
std::string budget_text(const Budget& budget);
// The same as a parameter value: an integer, or a float.
Scalar budget_scalar(const Budget& budget);

struct RungPlan {
    std::uint64_t rung = 0;
    std::uint64_t configs = 0;   // n_i; for asha, the most that can reach the rung
    Budget budget;               // r_i
    std::uint64_t promote = 0;   // floor(n_i / eta); 0 in the bracket's last rung
};

struct BracketPlan {
    std::uint64_t bracket = 0;       // s
    std::uint64_t first_config = 0;  // the bracket's configurations are the tasks
    std::uint64_t configs = 0;       // [first_config, first_config + configs)
    std::vector<RungPlan> rungs;
};

// s_max = floor(log_eta(max / min)), in integers: the largest s with min * eta^s <= max.
std::uint64_t max_bracket(std::uint64_t min, std::uint64_t max, std::uint64_t eta);

// Bracket s of Hyperband with s_max: n = ceil((s_max + 1) / (s + 1) * eta^s)
// configurations at max * eta^-s, each rung keeping floor(n_i / eta).
BracketPlan hyperband_bracket(const Schedule& schedule, std::uint64_t s);

// Every bracket the schedule runs, in the order their configurations are taken from the
// sweep's tasks: hyperband s = s_max down to 0; sha the bracket s_max alone; asha one
// bracket of s_max + 1 rungs whose base rung is all `tasks` configurations.
std::vector<BracketPlan> plan_brackets(const Schedule& schedule, std::uint64_t tasks);

// The configurations sha and hyperband need from the space (asha: 1, it takes them all).
std::uint64_t configurations_needed(const Schedule& schedule);

// The bracket a configuration belongs to, or nothing when no bracket runs it.
std::optional<std::uint64_t> bracket_of(const std::vector<BracketPlan>& brackets, std::uint64_t config);
const BracketPlan& find_bracket(const std::vector<BracketPlan>& brackets, std::uint64_t s);  // throws aihpc::Error

// One configuration's result at a rung: the metric, or nothing when the task failed, left
// no result, reported no such metric, or reported NaN or an infinity. Nothing ranks worst.
struct RungOutcome {
    std::uint64_t config = 0;
    std::optional<double> metric;
};

// The best `keep` of `outcomes` by metric (smallest first, or largest with `maximize`),
// ties and the worst broken by configuration index; in rank order.
std::vector<std::uint64_t> top_configs(std::vector<RungOutcome> outcomes, std::uint64_t keep, bool maximize);

// ASHA's rule: among the completed outcomes of a rung, those in the top floor(n / eta)
// (n = how many completed) that are not in `promoted` yet, in rank order. A worst outcome
// is never promoted: a better one may still come.
std::vector<std::uint64_t> asha_promotions(const std::vector<RungOutcome>& completed, const std::set<std::uint64_t>& promoted,
                                           std::uint64_t eta, bool maximize);

}  // namespace aihpc::sweep
