// lib/sweep's submission, resubmit and closed loop against an sbatch of the test's own:
// arrays queued in order with their dependencies, chunks.json as they go, earlier results
// set aside and put back, and the closed loop's rounds.json through every step.
#include <stdlib.h>
#include <sys/stat.h>

#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "common/json.hpp"
#include "sweep/closed_loop.hpp"
#include "sweep/resubmit.hpp"
#include "sweep/rounds.hpp"
#include "sweep/submission.hpp"
#include "sweep/submit_plan.hpp"
#include "sweep/sweep_dir.hpp"
#include "cmocka_cxx.hpp"
#include "temp_dir.hpp"

using namespace aihpc;
using namespace aihpc::sweep;

namespace {

// An sbatch that records each line and answers job ids from 100 on; the line numbered
// `fail_at` (from 1) fails as sbatch would, or prints `garbage` instead of a job id.
struct FakeSbatch {
    std::vector<std::vector<std::string>> lines;
    std::size_t fail_at = 0;
    std::string garbage;
    Submitter submitter(std::ostream* progress = nullptr) {
        Submitter s;
        s.sbatch = [this](const std::vector<std::string>& argv) {
            CommandOutput r;
            if (lines.size() + 1 == fail_at) {
                if (!garbage.empty()) {
                    r.status = 0;
                    r.out = garbage;
                } else {
                    r.status = 1;
                    r.err = "sbatch: error: refused for the test\n";
                }
                return r;
            }
            lines.push_back(argv);
            r.status = 0;
            r.out = std::to_string(99 + lines.size()) + ";cluster\n";
            return r;
        };
        s.progress = progress;
        return s;
    }
};

SweepDir make_sweep(const TempDir& tmp, const std::string& spec_json) {
    std::string dir = tmp.path() + "/sweep";
    write_sweep_dir(parse_spec(spec_json), dir, Provenance{"test", "2026-01-01T00:00:00+00:00", ""});
    return open_sweep(dir);
}

SubmitOptions options_of(std::uint64_t max_array_size) {
    SubmitOptions o;
    o.max_array_size = max_array_size;
    o.tool_path = "/bin/aihpc-sweep";
    o.tool_version = "test";
    return o;
}

bool exists(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0;
}

bool holds(const std::vector<std::string>& words, const std::string& word) {
    for (auto& w : words)
        if (w == word) return true;
    return false;
}

// The arrays chunks.json records: label and job id ("" for null) of each.
std::vector<std::pair<std::string, std::string>> recorded_arrays(const SweepDir& sweep) {
    JsonRef doc = parse_json(file_text(sweep.path + "/chunks.json"));
    json_object* arrays = nullptr;
    if (!doc.get() || !json_object_object_get_ex(doc.get(), "arrays", &arrays)) fail_msg("chunks.json has no arrays");
    std::vector<std::pair<std::string, std::string>> out;
    for (std::size_t i = 0; i < json_object_array_length(arrays); ++i) {
        json_object *a = json_object_array_get_idx(arrays, i), *label = nullptr, *job = nullptr;
        json_object_object_get_ex(a, "label", &label);
        json_object_object_get_ex(a, "job_id", &job);
        out.push_back({json_object_get_string(label), job ? json_object_get_string(job) : ""});
    }
    return out;
}

void write_result(const SweepDir& sweep, std::uint64_t index, int exit_code, const std::string& loss) {
    write_file_atomic(sweep.path + "/results/" + std::to_string(index) + ".json",
                      "{\"index\":" + std::to_string(index) + ",\"exit_code\":" + std::to_string(exit_code) +
                          ",\"metrics\":{\"loss\":" + loss + "}}\n");
}

const char* kTwoPhases = R"({"name":"tp","axes":[{"param":"a","range":[0,5]}],"command":"run {a}",
    "phases":[{"name":"prep"},{"name":"train","after":"prep"}]})";

}  // namespace

// ---- submission and chunks.json

static void arrays_are_submitted_in_order_each_waiting_on_its_phase_before(void**) {
    TempDir tmp;
    auto sweep = make_sweep(tmp, kTwoPhases);
    auto options = options_of(3);
    auto subs = plan_submit(sweep, options);
    assert_int_equal(subs.size(), 4);  // two phases of two chunks
    FakeSbatch sbatch;
    std::ostringstream progress;
    submit_sweep(sweep, subs, options, sbatch.submitter(&progress));
    assert_int_equal(sbatch.lines.size(), 4);
    // A train chunk waits on the prep chunk of the same tasks, by its job id.
    assert_string_equal(subs[2].phase.c_str(), "train");
    assert_true(holds(sbatch.lines[2], "--dependency=aftercorr:" + subs[0].job_id));
    assert_true(holds(sbatch.lines[3], "--dependency=aftercorr:" + subs[1].job_id));
    assert_string_equal(subs[0].job_id.c_str(), "100");  // the cluster after ';' dropped
    assert_true(exists(script_path(sweep, "prep")) && exists(script_path(sweep, "train")));
    auto recorded = recorded_arrays(sweep);
    assert_int_equal(recorded.size(), 4);
    assert_string_equal(recorded[3].second.c_str(), "103");
    assert_non_null(std::strstr(progress.str().c_str(), ("aihpc-sweep: submitted " + subs[0].label + " (tasks 0-2) as job 100\n").c_str()));
    expect_error_containing([&] { submit_sweep(sweep, subs, options, sbatch.submitter()); },
                            "was already submitted (see chunks.json); use aihpc-sweep resubmit");
}

static void a_submission_cut_short_records_what_was_queued_and_nothing_when_nothing_was(void**) {
    {
        TempDir tmp;
        auto sweep = make_sweep(tmp, kTwoPhases);
        auto options = options_of(3);
        auto subs = plan_submit(sweep, options);
        FakeSbatch sbatch;
        sbatch.fail_at = 1;
        expect_error_containing([&] { submit_sweep(sweep, subs, options, sbatch.submitter()); },
                                "(exit 1): sbatch: error: refused for the test; no array was submitted");
        // The sweep can simply be submitted again.
        assert_false(exists(sweep.path + "/chunks.json"));
    }
    TempDir tmp;
    auto sweep = make_sweep(tmp, kTwoPhases);
    auto options = options_of(3);
    auto subs = plan_submit(sweep, options);
    FakeSbatch sbatch;
    sbatch.fail_at = 3;
    sbatch.garbage = "Submitted batch job soon";
    expect_error_containing([&] { submit_sweep(sweep, subs, options, sbatch.submitter()); },
                            "sbatch printed no job id for " + subs[2].label + ": 'Submitted batch job soon'; the arrays submitted so far are in " +
                                sweep.path + "/chunks.json");
    auto recorded = recorded_arrays(sweep);
    assert_int_equal(recorded.size(), 4);
    assert_string_equal(recorded[1].second.c_str(), "101");
    assert_string_equal(recorded[2].second.c_str(), "");  // null: not queued
}

static void appended_chunks_keep_the_arrays_recorded_before(void**) {
    TempDir tmp;
    auto sweep = make_sweep(tmp, kTwoPhases);
    auto options = options_of(3);
    auto subs = plan_submit(sweep, options);
    subs[0].job_id = "7";
    // No chunks.json yet: it is written with these alone.
    append_chunks(sweep, {subs[0]}, options);
    assert_int_equal(recorded_arrays(sweep).size(), 1);
    append_chunks(sweep, {subs[1], subs[2]}, options_of(1000));
    auto recorded = recorded_arrays(sweep);
    assert_int_equal(recorded.size(), 3);
    assert_string_equal(recorded[0].second.c_str(), "7");
    assert_string_equal(recorded[2].first.c_str(), subs[2].label.c_str());
    // The settings of the first submission stay.
    assert_non_null(std::strstr(file_text(sweep.path + "/chunks.json").c_str(), "\"max_array_size\":3"));
    // A record without a list of arrays is replaced.
    write_file_atomic(sweep.path + "/chunks.json", "{\"max_array_size\":3}\n");
    append_chunks(sweep, {subs[3]}, options);
    assert_int_equal(recorded_arrays(sweep).size(), 1);
}

static void the_job_environment_is_forgotten_but_slurm_conf(void**) {
    ::setenv("SLURM_JOB_ID", "41", 1);
    ::setenv("SLURM_ARRAY_TASK_ID", "3", 1);
    ::setenv("SLURM_CONF", "/etc/slurm/test.conf", 1);
    ::setenv("AIHPC_TEST_KEPT", "1", 1);
    forget_job_environment();
    assert_null(::getenv("SLURM_JOB_ID"));
    assert_null(::getenv("SLURM_ARRAY_TASK_ID"));
    assert_string_equal(::getenv("SLURM_CONF"), "/etc/slurm/test.conf");
    assert_string_equal(::getenv("AIHPC_TEST_KEPT"), "1");
    ::unsetenv("SLURM_CONF");
    ::unsetenv("AIHPC_TEST_KEPT");
}

// ---- resubmit

static void resubmit_names_the_listed_failed_and_missing_tasks(void**) {
    TempDir tmp;
    auto sweep = make_sweep(tmp, R"({"axes":[{"param":"a","range":[0,6]}],"command":"true"})");
    write_result(sweep, 0, 0, "0.1");
    write_result(sweep, 1, 2, "0.1");
    write_result(sweep, 2, 0, "0.1");
    write_file_atomic(sweep.path + "/results/3.json", "{\"index\":3,");  // torn: warned, counts as missing
    std::ostringstream warnings;
    auto failed = tasks_to_resubmit(sweep, std::nullopt, true, false, warnings);
    assert_true(failed == (std::set<std::uint64_t>{1}));
    assert_non_null(std::strstr(warnings.str().c_str(), "/results/3.json"));
    auto missing = tasks_to_resubmit(sweep, std::nullopt, false, true, warnings);
    assert_true(missing == (std::set<std::uint64_t>{3, 4, 5}));
    auto both = tasks_to_resubmit(sweep, std::string("0,2"), true, false, warnings);
    assert_true(both == (std::set<std::uint64_t>{0, 1, 2}));
    std::ostringstream none;
    assert_true(tasks_to_resubmit(sweep, std::string("4-5"), false, false, none) == (std::set<std::uint64_t>{4, 5}));
    assert_true(none.str().empty());  // no scan, no warning
}

static void resubmit_sets_earlier_results_aside_and_appends_its_arrays(void**) {
    TempDir tmp;
    auto sweep = make_sweep(tmp, R"({"axes":[{"param":"a","range":[0,6]}],"command":"true"})");
    auto options = options_of(3);
    auto first = plan_submit(sweep, options);
    FakeSbatch sbatch;
    submit_sweep(sweep, first, options, sbatch.submitter());
    write_result(sweep, 1, 1, "0.5");
    write_result(sweep, 4, 1, "0.5");
    std::set<std::uint64_t> indices{1, 4};
    auto subs = plan_resubmit(sweep, indices, options, "r1-");
    assert_int_equal(subs.size(), 2);
    resubmit_tasks(sweep, subs, indices, options, sbatch.submitter());
    for (auto i : {"1", "4"}) {
        assert_false(exists(sweep.path + "/results/" + i + ".json"));
        assert_true(exists(sweep.path + "/results/" + i + ".json.prev"));
    }
    assert_string_equal(subs[1].job_id.c_str(), "103");
    auto recorded = recorded_arrays(sweep);
    assert_int_equal(recorded.size(), 4);
    assert_string_equal(recorded[3].first.c_str(), subs[1].label.c_str());
    assert_string_equal(recorded[3].second.c_str(), "103");
}

static void a_resubmission_cut_short_puts_back_the_results_of_what_was_not_queued(void**) {
    TempDir tmp;
    auto sweep = make_sweep(tmp, R"({"axes":[{"param":"a","range":[0,6]}],"command":"true"})");
    auto options = options_of(3);
    std::set<std::uint64_t> indices{1, 4};
    write_result(sweep, 1, 1, "0.5");
    write_result(sweep, 4, 1, "0.5");
    // A sweep without scripts gets them, without the words after resubmit's --.
    options.sbatch_args = {"--time=5"};
    auto subs = plan_resubmit(sweep, indices, options, "r1-");
    FakeSbatch sbatch;
    sbatch.fail_at = 2;
    expect_error_containing([&] { resubmit_tasks(sweep, subs, indices, options, sbatch.submitter()); },
                            "sbatch failed for " + subs[1].label + " (exit 1)");
    assert_true(exists(script_path(sweep, "main")));
    assert_null(std::strstr(file_text(script_path(sweep, "main")).c_str(), "--time=5"));
    assert_true(holds(sbatch.lines[0], "--time=5"));
    // Task 1's array was queued: its result stays aside; task 4's is back.
    assert_true(exists(sweep.path + "/results/1.json.prev"));
    assert_false(exists(sweep.path + "/results/1.json"));
    assert_true(exists(sweep.path + "/results/4.json"));
    assert_false(exists(sweep.path + "/results/4.json.prev"));
    auto recorded = recorded_arrays(sweep);
    assert_int_equal(recorded.size(), 1);
    assert_string_equal(recorded[0].second.c_str(), "100");
}

static void a_result_that_cannot_be_set_aside_submits_nothing_and_puts_back_the_rest(void**) {
    TempDir tmp;
    auto sweep = make_sweep(tmp, R"({"axes":[{"param":"a","range":[0,6]}],"command":"true"})");
    auto options = options_of(3);
    std::set<std::uint64_t> indices{1, 4};
    write_result(sweep, 1, 1, "0.5");
    write_result(sweep, 4, 1, "0.5");
    // A directory where task 4's result would be set aside: rename refuses it.
    ::mkdir((sweep.path + "/results/4.json.prev").c_str(), 0755);
    auto subs = plan_resubmit(sweep, indices, options, "r1-");
    FakeSbatch sbatch;
    expect_error_containing([&] { resubmit_tasks(sweep, subs, indices, options, sbatch.submitter()); },
                            "cannot set aside " + sweep.path + "/results/4.json: Is a directory; nothing was submitted");
    assert_int_equal(sbatch.lines.size(), 0);
    assert_true(exists(sweep.path + "/results/1.json"));
    assert_false(exists(sweep.path + "/results/1.json.prev"));
    assert_false(exists(sweep.path + "/chunks.json"));
}

// ---- the closed loop

namespace {

// A two-round loop over the sweep, started as submit --rounds 2 starts it.
RoundsRecord start_loop(const SweepDir& sweep, FakeSbatch& sbatch, std::vector<ArraySubmission>& subs) {
    auto options = options_of(1001);
    subs = plan_submit(sweep, options);
    submit_sweep(sweep, subs, options, sbatch.submitter());
    RoundsRecord record;
    record.plan.rounds = 2;
    record.plan.metric = "loss";
    record.plan.top = 1;
    record.plan.trials = 3;
    record.plan.tool = "/bin/aihpc-sweep";
    return record;
}

LoopStep step_of(FakeSbatch& sbatch) { return LoopStep{"test", "/bin/aihpc-sweep", sbatch.submitter()}; }

RoundsRecord read_record(const SweepDir& sweep) { return parse_rounds_json(file_text(sweep.path + "/rounds.json")); }

const char* kLoopSpec = R"({"name":"loop","axes":[{"param":"x","range":[0,4]}],"command":"run {x}"})";

}  // namespace

static void the_loop_starts_with_round_one_and_its_controller(void**) {
    TempDir tmp;
    auto sweep = make_sweep(tmp, kLoopSpec);
    FakeSbatch sbatch;
    std::vector<ArraySubmission> subs;
    auto record = start_loop(sweep, sbatch, subs);
    assert_string_equal(start_closed_loop(sweep, record, subs, step_of(sbatch)).c_str(), "101");
    assert_true(holds(sbatch.lines[1], "--dependency=afterany:100"));
    assert_true(exists(controller_script_path(sweep.path)));
    auto r = read_record(sweep);
    assert_string_equal(r.state.c_str(), "running");
    assert_int_equal(r.history.size(), 1);
    assert_int_equal(r.history[0].tasks, 4);
    assert_string_equal(r.history[0].controller.c_str(), "101");
    // A controller sbatch refuses stops the loop; the round itself runs on.
    TempDir tmp2;
    auto other = make_sweep(tmp2, kLoopSpec);
    FakeSbatch refusing;
    record = start_loop(other, refusing, subs);
    refusing.fail_at = 2;
    expect_error_containing([&] { start_closed_loop(other, record, subs, step_of(refusing)); },
                            "sbatch failed for the controller of round 1 (exit 1): sbatch: error: refused for the test; the round runs, "
                            "but the loop stops after it");
    assert_string_equal(read_record(other).state.c_str(), "stopped");
}

static void advance_refines_and_submits_each_round_then_ends_the_loop(void**) {
    TempDir tmp;
    auto sweep = make_sweep(tmp, kLoopSpec);
    FakeSbatch sbatch;
    std::vector<ArraySubmission> subs;
    auto record = start_loop(sweep, sbatch, subs);
    start_closed_loop(sweep, record, subs, step_of(sbatch));
    for (int i = 0; i < 4; ++i) write_result(sweep, static_cast<std::uint64_t>(i), 0, i == 2 ? "0.1" : "0.5");
    std::ostringstream out, err;
    advance_rounds(sweep, "S", step_of(sbatch), out, err);
    std::string next = sweep.path + "/rounds/2";
    auto round2 = open_sweep(next);
    assert_string_equal(out.str().c_str(), ("round 1: best loss 0.1 (task 2 {\"x\":2})\nround 2: " + std::to_string(round2.tasks) +
                                            " tasks in " + next + ", jobs 102\nadvance.2 103\n").c_str());
    auto r = read_record(sweep);
    assert_int_equal(r.history.size(), 2);
    assert_int_equal(r.history[0].best->index, 2);
    assert_string_equal(r.history[1].dir.c_str(), next.c_str());
    assert_string_equal(r.history[1].controller.c_str(), "103");
    assert_true(exists(next + "/chunks.json"));
    // The last round: the loop is done, and says its best over every round.
    for (std::uint64_t i = 0; i < round2.tasks; ++i) write_result(round2, i, 0, i == 0 ? "0.05" : "0.7");
    out.str("");
    advance_rounds(sweep, "S", step_of(sbatch), out, err);
    assert_non_null(std::strstr(out.str().c_str(), "closed loop done after 2 round(s)\nbest over all rounds: loss 0.05 (round 2, task 0 "));
    assert_string_equal(read_record(sweep).state.c_str(), "done");
    assert_int_equal(sbatch.lines.size(), 4);
    // A requeued controller finds nothing to do.
    out.str("");
    advance_rounds(sweep, "S", step_of(sbatch), out, err);
    assert_true(out.str().empty());
    assert_string_equal(err.str().c_str(), "aihpc-sweep: the closed loop of S is done; nothing to do\n");
}

static void a_round_without_results_or_a_refused_next_round_stops_the_loop(void**) {
    TempDir tmp;
    auto sweep = make_sweep(tmp, kLoopSpec);
    std::ostringstream out, err;
    FakeSbatch sbatch;
    expect_error_containing([&] { advance_rounds(sweep, "S", step_of(sbatch), out, err); },
                            "S has no rounds.json: it was not submitted with --rounds");
    std::vector<ArraySubmission> subs;
    auto record = start_loop(sweep, sbatch, subs);
    start_closed_loop(sweep, record, subs, step_of(sbatch));
    auto running = file_text(sweep.path + "/rounds.json");
    expect_error_containing([&] { advance_rounds(sweep, "S", step_of(sbatch), out, err); }, "; the loop stops here");
    auto r = read_record(sweep);
    assert_string_equal(r.state.c_str(), "stopped");
    assert_true(r.message.rfind("round 1: ", 0) == 0);

    write_file_atomic(sweep.path + "/rounds.json", running);
    for (std::uint64_t i = 0; i < 4; ++i) write_result(sweep, i, 0, "0.5");
    sbatch.fail_at = sbatch.lines.size() + 1;
    expect_error_containing([&] { advance_rounds(sweep, "S", step_of(sbatch), out, err); }, "sbatch failed for");
    r = read_record(sweep);
    assert_string_equal(r.state.c_str(), "stopped");
    assert_true(r.message.rfind("round 2 could not be submitted: sbatch failed for", 0) == 0);
    assert_int_equal(r.history.size(), 1);

    // A step cut short after it refined round 2 (as if killed before it recorded
    // anything): run again, it keeps that round's dir and submits it.
    write_file_atomic(sweep.path + "/rounds.json", running);
    sbatch.fail_at = 0;
    out.str("");
    advance_rounds(sweep, "S", step_of(sbatch), out, err);
    assert_non_null(std::strstr(out.str().c_str(), (" tasks in " + sweep.path + "/rounds/2, jobs ").c_str()));
    assert_int_equal(read_record(sweep).history.size(), 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(arrays_are_submitted_in_order_each_waiting_on_its_phase_before),
        cmocka_unit_test(a_submission_cut_short_records_what_was_queued_and_nothing_when_nothing_was),
        cmocka_unit_test(appended_chunks_keep_the_arrays_recorded_before),
        cmocka_unit_test(the_job_environment_is_forgotten_but_slurm_conf),
        cmocka_unit_test(resubmit_names_the_listed_failed_and_missing_tasks),
        cmocka_unit_test(resubmit_sets_earlier_results_aside_and_appends_its_arrays),
        cmocka_unit_test(a_resubmission_cut_short_puts_back_the_results_of_what_was_not_queued),
        cmocka_unit_test(a_result_that_cannot_be_set_aside_submits_nothing_and_puts_back_the_rest),
        cmocka_unit_test(the_loop_starts_with_round_one_and_its_controller),
        cmocka_unit_test(advance_refines_and_submits_each_round_then_ends_the_loop),
        cmocka_unit_test(a_round_without_results_or_a_refused_next_round_stops_the_loop),
    };
    return cmocka_run_group_tests_name("sweep_submission", tests, nullptr, nullptr);
}
