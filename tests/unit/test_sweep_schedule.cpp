// lib/sweep/schedule: Hyperband's brackets and rungs against tables worked out by hand
// from Li et al. (JMLR 2018), the promotion rules of SHA and ASHA, and the spec's
// schedule object.
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "common/paths.hpp"
#include "sweep/refine.hpp"
#include "sweep/rungs.hpp"
#include "sweep/schedule.hpp"
#include "sweep/spec.hpp"
#include "sweep/sweep_dir.hpp"
#include "cmocka_cxx.hpp"
#include "temp_dir.hpp"

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

static void rung_records_read_back_and_know_what_is_unsubmitted(void**) {
    RungRecord r;
    r.bracket = 2;
    r.rung = 1;
    r.budget = "15.625";
    r.configs = {1, 4, 7};
    r.arrays = {{"101", {1, 4}}};
    auto back = parse_rung_record(rung_record_json(r));
    assert_int_equal(back.bracket, 2);
    assert_int_equal(back.rung, 1);
    assert_string_equal(back.budget.c_str(), "15.625");
    assert_true(back.configs == r.configs);
    assert_int_equal(back.arrays.size(), 1);
    assert_string_equal(back.arrays[0].job_id.c_str(), "101");
    assert_true(back.controller.empty());
    assert_true(back.unsubmitted() == std::vector<std::uint64_t>{7});
    expect_error_containing([] { parse_rung_record("{\"bracket\":1}"); }, "rung record");
}

namespace {

// A sweep dir of 17 configurations under Hyperband (1, 9, 3), not submitted.
SweepDir hyperband_sweep(const TempDir& tmp) {
    auto spec = parse_spec(R"({"name":"hb","axes":[{"param":"x","range":[0,17]}],"command":"run {x} {epochs}",
        "schedule":{"type":"hyperband","resource":"epochs","min":1,"max":9,"eta":3,"metric":"val_loss"}})");
    write_sweep_dir(spec, tmp.path() + "/hb", Provenance{"test", "2026-01-01T00:00:00Z", ""});
    return open_sweep(tmp.path() + "/hb");
}

// An sbatch that records each line and answers job ids from 100 on.
struct FakeSbatch {
    std::vector<std::vector<std::string>> lines;
    std::string refuse;  // a line holding this word fails
    Sbatch fn() {
        return [this](const std::vector<std::string>& argv) {
            for (auto& w : argv)
                if (!refuse.empty() && w == refuse) throw aihpc::Error("sbatch: refused for the test");
            lines.push_back(argv);
            return std::to_string(99 + lines.size());
        };
    }
};

void write_result(const SweepDir& sweep, std::uint64_t bracket, std::uint64_t rung, std::uint64_t config, const std::string& exit_and_metrics) {
    std::string dir = rungs_dir(sweep.path) + "/b" + std::to_string(bracket) + ".r" + std::to_string(rung);
    ::mkdir(dir.c_str(), 0777);
    write_file_atomic(rung_result_path(sweep.path, bracket, rung, config), "{\"index\":" + std::to_string(config) + "," + exit_and_metrics + "}\n");
}

}  // namespace

static void rung_arrays_keep_array_ids_below_max_array_size(void**) {
    TempDir tmp;
    auto sweep = hyperband_sweep(tmp);
    RungsPlan plan;
    plan.max_array_size = 5;
    plan.throttle = 2;
    plan.tool = "/bin/aihpc-sweep";
    auto subs = plan_rung_arrays(sweep, plan, 2, 1, {3, 4, 6, 12});
    assert_int_equal(subs.size(), 3);
    assert_int_equal(subs[0].offset, 0);
    assert_string_equal(subs[0].argv[2].c_str(), "--array=3-4%2");
    assert_int_equal(subs[1].offset, 5);
    assert_string_equal(subs[1].argv[2].c_str(), "--array=1%2");
    assert_int_equal(subs[2].offset, 10);
    assert_string_equal(subs[2].argv[2].c_str(), "--array=2%2");
    assert_string_equal(subs[2].argv.back().c_str(), "10");
}

static void a_promotion_cut_short_is_finished_by_the_next_advance_and_never_decided_twice(void**) {
    TempDir tmp;
    auto sweep = hyperband_sweep(tmp);
    RungsPlan plan;
    plan.tool = "/bin/aihpc-sweep";
    FakeSbatch sbatch;
    std::ostringstream out;
    submit_schedule(sweep, plan, "test", sbatch.fn(), out);
    // Three first rungs (9, 5 and 3 configurations), two controllers (bracket 0 has one rung).
    assert_int_equal(sbatch.lines.size(), 5);
    expect_error_containing([&] { submit_schedule(sweep, plan, "test", sbatch.fn(), out); }, "already submitted");

    // Bracket 2, rung 0: lower is better, so 8, 7, 6 would win; 8 fails and 7 gives NaN.
    for (std::uint64_t c = 0; c < 8; ++c)
        write_result(sweep, 2, 0, c, c == 7 ? R"("exit_code":0,"metrics":{"val_loss":NaN})"
                                            : R"("exit_code":0,"metrics":{"val_loss":)" + std::to_string(9 - c) + "}");
    AdvanceRequest by_hand;
    advance_schedule(sweep, by_hand, sbatch.fn(), out);
    assert_false(aihpc::path_exists(rung_record_path(sweep.path, 2, 1)));  // one result still missing
    write_result(sweep, 2, 0, 8, R"("exit_code":1,"metrics":{"val_loss":0.5})");

    // sbatch fails after the decision is written: the decision stays, nothing runs it.
    sbatch.refuse = "--job-name=hb.b2.r1";
    expect_error_containing([&] { advance_schedule(sweep, by_hand, sbatch.fn(), out); }, "cannot submit rung 1 of bracket 2");
    auto decided = parse_rung_record(read_file(rung_record_path(sweep.path, 2, 1)));
    assert_true((decided.configs == std::vector<std::uint64_t>{4, 5, 6}));
    assert_true(decided.arrays.empty());

    // The next advance submits what the record lacks, with the same configurations.
    sbatch.refuse.clear();
    auto before = sbatch.lines.size();
    advance_schedule(sweep, by_hand, sbatch.fn(), out);
    auto done = parse_rung_record(read_file(rung_record_path(sweep.path, 2, 1)));
    assert_true(done.configs == decided.configs);
    assert_int_equal(done.arrays.size(), 1);
    assert_false(done.controller.empty());
    assert_int_equal(sbatch.lines.size(), before + 2);  // the array and its controller
    assert_string_equal(sbatch.lines[before][2].c_str(), "--array=4-6");

    // Once more: nothing new.
    advance_schedule(sweep, by_hand, sbatch.fn(), out);
    assert_int_equal(sbatch.lines.size(), before + 2);
    assert_string_equal(read_file(rung_record_path(sweep.path, 2, 1)).c_str(), rung_record_json(done).c_str());
}

static void a_rung_whose_arrays_ended_is_decided_with_the_missing_ranked_worst(void**) {
    TempDir tmp;
    auto sweep = hyperband_sweep(tmp);
    RungsPlan plan;
    plan.tool = "/bin/aihpc-sweep";
    FakeSbatch sbatch;
    std::ostringstream out;
    submit_schedule(sweep, plan, "test", sbatch.fn(), out);
    // Bracket 1 holds configurations 9-13; only 12 and 13 left a result.
    write_result(sweep, 1, 0, 12, R"("exit_code":0,"metrics":{"val_loss":2.0})");
    write_result(sweep, 1, 0, 13, R"("exit_code":0,"metrics":{"val_loss":1.0})");
    AdvanceRequest controller;
    controller.bracket = 1;
    controller.rung = 0;
    advance_schedule(sweep, controller, sbatch.fn(), out);
    assert_false(aihpc::path_exists(rung_record_path(sweep.path, 1, 1)));
    controller.arrays_ended = true;
    advance_schedule(sweep, controller, sbatch.fn(), out);
    auto next = parse_rung_record(read_file(rung_record_path(sweep.path, 1, 1)));
    assert_true(next.configs == std::vector<std::uint64_t>{13});  // floor(5 / 3) = 1
    assert_string_equal(next.budget.c_str(), "9");
    // The controller of bracket 1 leaves bracket 2 alone.
    assert_false(aihpc::path_exists(rung_record_path(sweep.path, 2, 1)));
}

static void plan_json_gives_every_rung_with_null_arrays_after_the_first(void**) {
    TempDir tmp;
    auto sweep = hyperband_sweep(tmp);
    auto text = planned_arrays_json(planned_arrays(sweep, {}, 0, 1001));
    assert_non_null(strstr(text.c_str(), R"({"phase":"main","label":"b2.r0","bracket":2,"rung":0,"tasks":9,"budget":1,"after":null,"array":"0-8","offset":0})"));
    assert_non_null(strstr(text.c_str(), R"({"phase":"main","label":"b2.r2","bracket":2,"rung":2,"tasks":1,"budget":9,"after":"b2.r1","array":null,"offset":0})"));
    assert_non_null(strstr(text.c_str(), R"("label":"b0.r0","bracket":0,"rung":0,"tasks":3,"budget":9,"after":null,"array":"14-16")"));
}

static void refine_after_hyperband_ranks_the_full_budget_only_and_keeps_the_schedule(void**) {
    TempDir tmp;
    auto spec = parse_spec(R"({"name":"hb","axes":[{"param":"lr","loguniform":[1e-4,1e-1],"count":17}],"command":"run {lr} {epochs}",
        "schedule":{"type":"hyperband","resource":"epochs","min":1,"max":9,"eta":3,"metric":"val_loss"}})");
    write_sweep_dir(spec, tmp.path() + "/hb", Provenance{"test", "2026-01-01T00:00:00Z", ""});
    auto sweep = open_sweep(tmp.path() + "/hb");
    auto result = [&](std::uint64_t i, int budget, double loss) {
        write_file_atomic(sweep.path + "/results/" + std::to_string(i) + ".json",
                          "{\"index\":" + std::to_string(i) + ",\"exit_code\":0,\"budget\":" + std::to_string(budget) +
                              ",\"metrics\":{\"val_loss\":" + std::to_string(loss) + "}}\n");
    };
    result(0, 1, 0.1);  // best, but stopped at the first budget
    result(3, 9, 0.5);
    result(14, 9, 0.4);
    result(15, 3, 0.2);
    auto ranked = best_tasks(sweep, "val_loss", false, 2, Aggregate::none);
    assert_int_equal(ranked.size(), 2);
    assert_int_equal(ranked[0].task.index, 14);
    assert_int_equal(ranked[1].task.index, 3);
    std::vector<TaskRecord> best;
    for (auto& r : ranked) best.push_back(r.task);
    auto next = refine_spec(sweep.spec, best, 0.5, sweep.tasks);
    assert_true(next.schedule.has_value());
    write_sweep_dir(next, tmp.path() + "/round2", Provenance{"test", "2026-01-01T00:00:00Z", ""});
    assert_int_equal(open_sweep(tmp.path() + "/round2").tasks, 17);
}

static void an_outcome_reads_nested_metrics_and_ranks_the_rest_worst(void**) {
    TempDir tmp;
    auto write = [&](const std::string& name, const std::string& text) {
        write_file_atomic(tmp.path() + "/" + name, text);
        return tmp.path() + "/" + name;
    };
    auto nested = write("a.json", R"({"index":1,"exit_code":0,"metrics":{"val":{"loss":0.25}}})");
    assert_true(read_outcome(nested, 1, "val.loss").metric == 0.25);
    assert_false(read_outcome(nested, 1, "val.acc").metric.has_value());
    auto flat = write("b.json", R"({"index":2,"exit_code":0,"metrics":{"val.loss":0.5,"acc":"high"}})");
    assert_true(read_outcome(flat, 2, "val.loss").metric == 0.5);
    assert_false(read_outcome(flat, 2, "acc").metric.has_value());  // not a number
    auto failed = write("c.json", R"({"index":3,"exit_code":2,"metrics":{"val.loss":0.1}})");
    assert_false(read_outcome(failed, 3, "val.loss").metric.has_value());
    auto nan = write("d.json", R"({"index":4,"exit_code":0,"metrics":{"val.loss":NaN}})");
    assert_false(read_outcome(nan, 4, "val.loss").metric.has_value());
    auto torn = write("e.json", R"({"index":5,"exit_code":0,"metr)");
    assert_false(read_outcome(torn, 5, "val.loss").metric.has_value());
    assert_false(read_outcome(tmp.path() + "/none.json", 6, "val.loss").metric.has_value());
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
        cmocka_unit_test(rung_records_read_back_and_know_what_is_unsubmitted),
        cmocka_unit_test(rung_arrays_keep_array_ids_below_max_array_size),
        cmocka_unit_test(a_promotion_cut_short_is_finished_by_the_next_advance_and_never_decided_twice),
        cmocka_unit_test(a_rung_whose_arrays_ended_is_decided_with_the_missing_ranked_worst),
        cmocka_unit_test(plan_json_gives_every_rung_with_null_arrays_after_the_first),
        cmocka_unit_test(refine_after_hyperband_ranks_the_full_budget_only_and_keeps_the_schedule),
        cmocka_unit_test(an_outcome_reads_nested_metrics_and_ranks_the_rest_worst),
    };
    return cmocka_run_group_tests_name("sweep_schedule", tests, nullptr, nullptr);
}
