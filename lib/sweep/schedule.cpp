#include "sweep/schedule.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common/error.hpp"

namespace aihpc::sweep {

std::string budget_text(const Budget& budget) {
    if (budget.integral()) return std::to_string(budget.numerator / budget.denominator);
    return format_double(budget.value());
}

Scalar budget_scalar(const Budget& budget) {
    if (budget.integral()) return scalar_int(static_cast<std::int64_t>(budget.numerator / budget.denominator));
    return scalar_double(budget.value());
}

namespace {

std::uint64_t power(std::uint64_t base, std::uint64_t exponent) {
    std::uint64_t out = 1;
    for (std::uint64_t i = 0; i < exponent; ++i) out *= base;
    return out;
}

// max * eta^-(steps), reduced; integers all the way, so that 81 / 3^4 is exactly 1.
Budget budget_below_max(std::uint64_t max, std::uint64_t eta, std::uint64_t steps) {
    Budget b{max, power(eta, steps)};
    auto g = std::gcd(b.numerator, b.denominator);
    b.numerator /= g;
    b.denominator /= g;
    return b;
}

void check_schedule(const Schedule& schedule) {
    if (schedule.min < 1 || schedule.max < schedule.min || schedule.eta < 2)
        throw Error("schedule: min " + std::to_string(schedule.min) + ", max " + std::to_string(schedule.max) + ", eta " +
                    std::to_string(schedule.eta) + " are not 1 <= min <= max and eta >= 2");
}

}  // namespace

std::uint64_t max_bracket(std::uint64_t min, std::uint64_t max, std::uint64_t eta) {
    // min * eta^(s+1) <= max, tested as eta^(s+1) <= max / min in integers: floor
    // division keeps the comparison exact (a * eta <= floor(max / min) iff
    // min * a * eta <= max), where a floating logarithm puts log_3(243) at 4.999...
    std::uint64_t ratio = max / min, reach = 1, s = 0;
    while (reach <= ratio / eta) {
        reach *= eta;
        ++s;
    }
    return s;
}

BracketPlan hyperband_bracket(const Schedule& schedule, std::uint64_t s) {
    check_schedule(schedule);
    std::uint64_t s_max = max_bracket(schedule.min, schedule.max, schedule.eta);
    if (s > s_max) throw Error("schedule: bracket " + std::to_string(s) + " is beyond s_max = " + std::to_string(s_max));
    BracketPlan plan;
    plan.bracket = s;
    // ceil((s_max + 1) / (s + 1) * eta^s) as one integer division.
    std::uint64_t numerator = (s_max + 1) * power(schedule.eta, s);
    plan.configs = (numerator + s) / (s + 1);
    for (std::uint64_t i = 0; i <= s; ++i) {
        RungPlan rung;
        rung.rung = i;
        rung.configs = plan.configs / power(schedule.eta, i);
        rung.budget = budget_below_max(schedule.max, schedule.eta, s - i);
        rung.promote = i < s ? rung.configs / schedule.eta : 0;
        plan.rungs.push_back(rung);
    }
    return plan;
}

std::vector<BracketPlan> plan_brackets(const Schedule& schedule, std::uint64_t tasks) {
    check_schedule(schedule);
    std::uint64_t s_max = max_bracket(schedule.min, schedule.max, schedule.eta);
    std::vector<BracketPlan> out;
    if (schedule.type == ScheduleType::asha) {
        BracketPlan plan;
        plan.bracket = s_max;
        plan.configs = tasks;
        for (std::uint64_t k = 0; k <= s_max; ++k) {
            RungPlan rung;
            rung.rung = k;
            rung.configs = tasks / power(schedule.eta, k);
            rung.budget = budget_below_max(schedule.max, schedule.eta, s_max - k);
            rung.promote = k < s_max ? rung.configs / schedule.eta : 0;
            plan.rungs.push_back(rung);
        }
        out.push_back(std::move(plan));
        return out;
    }
    std::uint64_t first = 0;
    for (std::uint64_t s = s_max + 1; s-- > 0;) {
        BracketPlan plan = hyperband_bracket(schedule, s);
        plan.first_config = first;
        first += plan.configs;
        out.push_back(std::move(plan));
        if (schedule.type == ScheduleType::sha) break;
    }
    return out;
}

std::uint64_t configurations_needed(const Schedule& schedule) {
    if (schedule.type == ScheduleType::asha) return 1;
    std::uint64_t total = 0;
    for (auto& b : plan_brackets(schedule, 0)) total += b.configs;
    return total;
}

std::optional<std::uint64_t> bracket_of(const std::vector<BracketPlan>& brackets, std::uint64_t config) {
    for (auto& b : brackets)
        if (config >= b.first_config && config - b.first_config < b.configs) return b.bracket;
    return std::nullopt;
}

const BracketPlan& find_bracket(const std::vector<BracketPlan>& brackets, std::uint64_t s) {
    for (auto& b : brackets)
        if (b.bracket == s) return b;
    std::string have;
    for (auto& b : brackets) have += (have.empty() ? "" : ", ") + std::to_string(b.bracket);
    throw Error("the schedule has no bracket " + std::to_string(s) + " (brackets: " + have + ")");
}

namespace {

// Strict weak order: a metric before none, then by value in the goal's direction, then
// by configuration. A NaN never reaches here (it is no metric).
struct RankOrder {
    bool maximize;
    bool operator()(const RungOutcome& a, const RungOutcome& b) const {
        if (a.metric.has_value() != b.metric.has_value()) return a.metric.has_value();
        if (a.metric && *a.metric != *b.metric) return maximize ? *a.metric > *b.metric : *a.metric < *b.metric;
        return a.config < b.config;
    }
};

void drop_non_finite(std::vector<RungOutcome>& outcomes) {
    for (auto& o : outcomes)
        if (o.metric && !std::isfinite(*o.metric)) o.metric.reset();
}

}  // namespace

std::vector<std::uint64_t> top_configs(std::vector<RungOutcome> outcomes, std::uint64_t keep, bool maximize) {
    drop_non_finite(outcomes);
    auto k = static_cast<std::size_t>(std::min<std::uint64_t>(keep, outcomes.size()));
    // Only the kept ones need an order: O(n log k), not a sort of the whole rung.
    std::partial_sort(outcomes.begin(), outcomes.begin() + static_cast<std::ptrdiff_t>(k), outcomes.end(), RankOrder{maximize});
    std::vector<std::uint64_t> out;
    out.reserve(k);
    for (std::size_t i = 0; i < k; ++i) out.push_back(outcomes[i].config);
    return out;
}

std::vector<std::uint64_t> asha_promotions(const std::vector<RungOutcome>& completed, const std::set<std::uint64_t>& promoted,
                                           std::uint64_t eta, bool maximize) {
    if (eta < 2) throw Error("schedule: eta must be at least 2");
    std::vector<std::uint64_t> out;
    for (auto config : top_configs(completed, completed.size() / eta, maximize))
        if (!promoted.count(config)) out.push_back(config);
    // A worst outcome in the top means the rung has no better one yet: wait for it.
    std::set<std::uint64_t> finite;
    for (auto& o : completed)
        if (o.metric && std::isfinite(*o.metric)) finite.insert(o.config);
    std::erase_if(out, [&](std::uint64_t c) { return !finite.count(c); });
    return out;
}

}  // namespace aihpc::sweep
