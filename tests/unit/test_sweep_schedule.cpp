// lib/sweep/schedule: Hyperband's brackets and rungs against tables worked out by hand
// from Li et al. (JMLR 2018), the promotion rules of SHA and ASHA, and the spec's
// schedule object.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "cmocka_cxx.hpp"
#include "sweep/schedule.hpp"
#include "sweep/spec.hpp"

using namespace aihpc::sweep;

namespace {

Schedule schedule_of(ScheduleType type, std::uint64_t min, std::uint64_t max, std::uint64_t eta) {
    Schedule s;
    s.type = type;
    s.resource = "epochs";
    s.min = min;
    s.max = max;
    s.eta = eta;
    s.metric = "val_loss";
    return s;
}

// One bracket as the paper's table gives it: s, then (n_i, r_i) per rung.
struct Row {
    std::uint64_t s;
    std::vector<std::pair<std::uint64_t, std::string>> rungs;
};

void check_table(std::uint64_t min, std::uint64_t max, std::uint64_t eta, std::uint64_t s_max, const std::vector<Row>& table) {
    auto schedule = schedule_of(ScheduleType::hyperband, min, max, eta);
    assert_int_equal(max_bracket(min, max, eta), s_max);
    auto brackets = plan_brackets(schedule, 0);
    assert_int_equal(brackets.size(), table.size());
    std::uint64_t first = 0;
    for (std::size_t b = 0; b < table.size(); ++b) {
        const auto& got = brackets[b];
        const auto& want = table[b];
        assert_int_equal(got.bracket, want.s);
        assert_int_equal(got.first_config, first);
        assert_int_equal(got.configs, want.rungs.front().first);
        assert_int_equal(got.rungs.size(), want.rungs.size());
        for (std::size_t i = 0; i < want.rungs.size(); ++i) {
            assert_int_equal(got.rungs[i].rung, i);
            assert_int_equal(got.rungs[i].configs, want.rungs[i].first);
            assert_string_equal(budget_text(got.rungs[i].budget).c_str(), want.rungs[i].second.c_str());
            // Each rung keeps floor(n_i / eta) for the next; the last keeps none.
            std::uint64_t promote = i + 1 < want.rungs.size() ? want.rungs[i].first / eta : 0;
            assert_int_equal(got.rungs[i].promote, promote);
            if (i + 1 < want.rungs.size()) assert_int_equal(got.rungs[i].promote, want.rungs[i + 1].first);
        }
        first += want.rungs.front().first;
    }
    assert_int_equal(configurations_needed(schedule), first);
}

}  // namespace

// The table of section 2.3 of the paper.
static void hyperband_1_81_3_matches_the_paper(void**) {
    check_table(1, 81, 3, 4,
                {{4, {{81, "1"}, {27, "3"}, {9, "9"}, {3, "27"}, {1, "81"}}},
                 {3, {{34, "3"}, {11, "9"}, {3, "27"}, {1, "81"}}},
                 {2, {{15, "9"}, {5, "27"}, {1, "81"}}},
                 {1, {{8, "27"}, {2, "81"}}},
                 {0, {{5, "81"}}}});
}

// s_max = 3; n = ceil(4/(s+1) * 3^s) = 27, 12, 6, 4.
static void hyperband_1_27_3(void**) {
    check_table(1, 27, 3, 3,
                {{3, {{27, "1"}, {9, "3"}, {3, "9"}, {1, "27"}}},
                 {2, {{12, "3"}, {4, "9"}, {1, "27"}}},
                 {1, {{6, "9"}, {2, "27"}}},
                 {0, {{4, "27"}}}});
}

// s_max = 4; n = ceil(5/(s+1) * 2^s) = 16, 10, 7, 5, 5.
static void hyperband_1_16_2(void**) {
    check_table(1, 16, 2, 4,
                {{4, {{16, "1"}, {8, "2"}, {4, "4"}, {2, "8"}, {1, "16"}}},
                 {3, {{10, "2"}, {5, "4"}, {2, "8"}, {1, "16"}}},
                 {2, {{7, "4"}, {3, "8"}, {1, "16"}}},
                 {1, {{5, "8"}, {2, "16"}}},
                 {0, {{5, "16"}}}});
}

// max/min = 100, so s_max = 3 (64 <= 100 < 256); budgets max * 4^-s are fractions.
static void hyperband_10_1000_4_keeps_fractional_budgets_exact(void**) {
    check_table(10, 1000, 4, 3,
                {{3, {{64, "15.625"}, {16, "62.5"}, {4, "250"}, {1, "1000"}}},
                 {2, {{22, "62.5"}, {5, "250"}, {1, "1000"}}},
                 {1, {{8, "250"}, {2, "1000"}}},
                 {0, {{4, "1000"}}}});
    auto b = hyperband_bracket(schedule_of(ScheduleType::hyperband, 10, 1000, 4), 3);
    assert_true(b.rungs[0].budget == (Budget{125, 8}));
    assert_string_equal(budget_scalar(b.rungs[0].budget).json.c_str(), "15.625");
    assert_string_equal(budget_scalar(b.rungs[2].budget).json.c_str(), "250");
}

// Where a floating logarithm errs: log_3(243) computes as 4.999...
static void s_max_is_computed_in_integers(void**) {
    assert_int_equal(max_bracket(1, 243, 3), 5);
    assert_int_equal(max_bracket(1, 242, 3), 4);
    assert_int_equal(max_bracket(1, 1000, 10), 3);
    assert_int_equal(max_bracket(2, 9, 3), 1);
    assert_int_equal(max_bracket(5, 5, 2), 0);
    assert_int_equal(max_bracket(1, std::uint64_t{1} << 40, 2), 40);
}

static void sha_is_the_most_aggressive_bracket_alone(void**) {
    auto brackets = plan_brackets(schedule_of(ScheduleType::sha, 1, 9, 3), 100);
    assert_int_equal(brackets.size(), 1);
    assert_int_equal(brackets[0].bracket, 2);
    assert_int_equal(brackets[0].configs, 9);
    assert_int_equal(brackets[0].rungs.size(), 3);
    assert_int_equal(configurations_needed(schedule_of(ScheduleType::sha, 1, 9, 3)), 9);
    // Hyperband (1, 9, 3): 9 + 5 + 3 configurations, taken in bracket order.
    auto hb = plan_brackets(schedule_of(ScheduleType::hyperband, 1, 9, 3), 17);
    assert_int_equal(hb.size(), 3);
    assert_int_equal(*bracket_of(hb, 0), 2);
    assert_int_equal(*bracket_of(hb, 8), 2);
    assert_int_equal(*bracket_of(hb, 9), 1);
    assert_int_equal(*bracket_of(hb, 14), 0);
    assert_false(bracket_of(hb, 17).has_value());
}

static void asha_starts_every_configuration_at_the_smallest_budget(void**) {
    auto brackets = plan_brackets(schedule_of(ScheduleType::asha, 1, 9, 3), 20);
    assert_int_equal(brackets.size(), 1);
    assert_int_equal(brackets[0].configs, 20);
    assert_int_equal(brackets[0].rungs[0].configs, 20);
    assert_string_equal(budget_text(brackets[0].rungs[0].budget).c_str(), "1");
    assert_int_equal(brackets[0].rungs[1].configs, 6);  // at most floor(20 / 3)
    assert_string_equal(budget_text(brackets[0].rungs[2].budget).c_str(), "9");
}

static void promotion_keeps_the_top_floor_n_over_eta_in_both_modes(void**) {
    std::vector<RungOutcome> rung = {{0, 0.5}, {1, 0.1}, {2, 0.9}, {3, 0.3}, {4, 0.7}, {5, 0.2}, {6, 0.8}, {7, 0.4}, {8, 0.6}};
    auto sched = schedule_of(ScheduleType::sha, 1, 9, 3);
    auto keep = plan_brackets(sched, 9)[0].rungs[0].promote;
    assert_int_equal(keep, 3);
    auto low = top_configs(rung, keep, false);
    assert_int_equal(low.size(), 3);
    assert_int_equal(low[0], 1);
    assert_int_equal(low[1], 5);
    assert_int_equal(low[2], 3);
    auto high = top_configs(rung, keep, true);
    assert_int_equal(high[0], 2);
    assert_int_equal(high[1], 6);
    assert_int_equal(high[2], 4);
}

static void ties_go_to_the_lower_index(void**) {
    std::vector<RungOutcome> rung = {{7, 1.0}, {3, 1.0}, {5, 2.0}, {1, 1.0}, {9, 0.5}};
    auto got = top_configs(rung, 3, false);
    assert_int_equal(got[0], 9);
    assert_int_equal(got[1], 1);
    assert_int_equal(got[2], 3);
    auto maxed = top_configs(rung, 2, true);
    assert_int_equal(maxed[0], 5);
    assert_int_equal(maxed[1], 1);
}

static void nan_missing_and_failed_rank_worst_in_both_modes(void**) {
    double nan = std::numeric_limits<double>::quiet_NaN();
    double inf = std::numeric_limits<double>::infinity();
    for (bool maximize : {false, true}) {
        std::vector<RungOutcome> rung = {{0, nan}, {1, std::nullopt}, {2, 5.0}, {3, inf}, {4, -inf}, {5, 6.0}};
        auto got = top_configs(rung, 6, maximize);
        assert_int_equal(got.size(), 6);
        assert_int_equal(got[0], maximize ? 5 : 2);
        assert_int_equal(got[1], maximize ? 2 : 5);
        // The worst, by index.
        assert_int_equal(got[2], 0);
        assert_int_equal(got[3], 1);
        assert_int_equal(got[4], 3);
        assert_int_equal(got[5], 4);
    }
    // More to keep than there are outcomes, or none at all: no crash.
    assert_int_equal(top_configs({}, 3, false).size(), 0);
    assert_int_equal(top_configs({{0, nan}}, 3, false).size(), 1);
}

static void asha_promotes_once_in_the_top_third_of_what_completed(void**) {
    std::vector<RungOutcome> done = {{0, 0.5}, {1, 0.9}};
    assert_int_equal(asha_promotions(done, {}, 3, false).size(), 0);  // floor(2/3) = 0
    done.push_back({2, 0.7});
    auto first = asha_promotions(done, {}, 3, false);
    assert_int_equal(first.size(), 1);
    assert_int_equal(first[0], 0);
    // Once promoted, never again; a later better result takes the next place.
    done.insert(done.end(), {{3, 0.1}, {4, 0.95}, {5, 0.99}});
    auto second = asha_promotions(done, {0}, 3, false);
    assert_int_equal(second.size(), 1);
    assert_int_equal(second[0], 3);
    // A failed outcome is never promoted, even when it would be in the top.
    std::vector<RungOutcome> failed = {{0, std::nullopt}, {1, std::nullopt}, {2, std::nullopt}};
    assert_int_equal(asha_promotions(failed, {}, 3, false).size(), 0);
}

static void schedule_object_is_checked_field_by_field(void**) {
    auto spec = [](const std::string& schedule) {
        return "{\"axes\":[{\"param\":\"lr\",\"values\":[1,2]}],\"command\":\"run {lr} {epochs}\",\"schedule\":" + schedule + "}";
    };
    auto ok = parse_spec(spec(R"({"type":"hyperband","resource":"epochs","min":1,"max":81,"eta":3,"metric":"val_loss"})"));
    assert_true(ok.schedule.has_value());
    assert_int_equal(ok.schedule->max, 81);
    assert_false(ok.schedule->maximize);
    // The resource is a parameter: the command may name it, and the normal form keeps it.
    auto names = parameter_names(ok);
    assert_string_equal(names.back().c_str(), "epochs");
    auto again = parse_spec(normalize(ok));
    assert_true(again.schedule.has_value());
    assert_string_equal(normalize(again).c_str(), normalize(ok).c_str());
    expect_error_containing([&] { parse_spec(spec(R"({"type":"bohb","resource":"epochs","min":1,"max":9,"eta":3,"metric":"m"})")); },
                            "schedule.type: must be");
    expect_error_containing([&] { parse_spec(spec(R"({"type":"sha","resource":"epochs","min":1.5,"max":9,"eta":3,"metric":"m"})")); },
                            "schedule.min: must be an integer");
    expect_error_containing([&] { parse_spec(spec(R"({"type":"sha","resource":"epochs","min":0,"max":9,"eta":3,"metric":"m"})")); },
                            "schedule.min: must be an integer >= 1");
    expect_error_containing([&] { parse_spec(spec(R"({"type":"sha","resource":"epochs","min":1,"max":9,"eta":1,"metric":"m"})")); },
                            "schedule.eta: must be an integer >= 2");
    expect_error_containing([&] { parse_spec(spec(R"({"type":"sha","resource":"epochs","min":10,"max":9,"eta":3,"metric":"m"})")); },
                            "schedule.max: is 9, below schedule.min");
    expect_error_containing([&] { parse_spec(spec(R"({"type":"sha","resource":"epochs","min":1,"max":9,"eta":3})")); },
                            "needs \"metric\"");
    expect_error_containing([&] { parse_spec(spec(R"({"type":"sha","min":1,"max":9,"eta":3,"metric":"m"})")); }, "needs \"resource\"");
    expect_error_containing(
        [&] { parse_spec(spec(R"({"type":"sha","resource":"lr","min":1,"max":9,"eta":3,"metric":"m"})")); },
        "schedule.resource: parameter 'lr' is given by an axis");
    expect_error_containing(
        [&] { parse_spec(spec(R"({"type":"sha","resource":"epochs","min":1,"max":9,"eta":3,"metric":"m","mode":"up"})")); },
        "schedule.mode: must be \"min\" or \"max\"");
    expect_error_containing(
        [&] { parse_spec(spec(R"({"type":"sha","resource":"epochs","min":1,"max":9,"eta":3,"metric":"m","rate":2})")); },
        "unknown key 'rate'");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hyperband_1_81_3_matches_the_paper),
        cmocka_unit_test(hyperband_1_27_3),
        cmocka_unit_test(hyperband_1_16_2),
        cmocka_unit_test(hyperband_10_1000_4_keeps_fractional_budgets_exact),
        cmocka_unit_test(s_max_is_computed_in_integers),
        cmocka_unit_test(sha_is_the_most_aggressive_bracket_alone),
        cmocka_unit_test(asha_starts_every_configuration_at_the_smallest_budget),
        cmocka_unit_test(promotion_keeps_the_top_floor_n_over_eta_in_both_modes),
        cmocka_unit_test(ties_go_to_the_lower_index),
        cmocka_unit_test(nan_missing_and_failed_rank_worst_in_both_modes),
        cmocka_unit_test(asha_promotes_once_in_the_top_third_of_what_completed),
        cmocka_unit_test(schedule_object_is_checked_field_by_field),
    };
    return cmocka_run_group_tests_name("sweep_schedule", tests, nullptr, nullptr);
}
