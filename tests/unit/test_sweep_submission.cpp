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
#include "sweep_fixture.hpp"
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

// Whether the result of task `index` is set aside (results/<index>.json.prev) or in place.
void expect_aside(const SweepDir& sweep, std::uint64_t index, bool aside) {
    std::string path = sweep.path + "/results/" + std::to_string(index) + ".json";
    assert_true(exists(path + ".prev") == aside);
    assert_true(exists(path) == !aside);
}

// The resubmission of tasks 1 and 4, which failed, of a sweep of six chunked by three:
// two arrays, one for each task.
struct Resubmission {
    TempDir tmp;
    SweepDir sweep;
    SubmitOptions options = options_of(3);
    std::set<std::uint64_t> indices{1, 4};
    FakeSbatch sbatch;
    std::vector<ArraySubmission> subs;
    Resubmission() : sweep(make_sweep(tmp, R"({"axes":[{"param":"a","range":[0,6]}],"command":"true"})")) {
        write_result(sweep, 1, 1, "0.5");
        write_result(sweep, 4, 1, "0.5");
    }
    void run() {
        subs = plan_resubmit(sweep, indices, options, "r1-");
        resubmit_tasks(sweep, subs, indices, options, sbatch.submitter());
    }
};

// A sweep of five tasks in two phases, chunked by three: four arrays, prep's then train's.
struct TwoPhases {
    TempDir tmp;
    SweepDir sweep;
    SubmitOptions options = options_of(3);
    std::vector<ArraySubmission> subs;
    FakeSbatch sbatch;
    TwoPhases()
        : sweep(make_sweep(tmp, R"({"name":"tp","axes":[{"param":"a","range":[0,5]}],"command":"run {a}",
            "phases":[{"name":"prep"},{"name":"train","after":"prep"}]})")),
          subs(plan_submit(sweep, options)) {}
    void submit(std::ostream* progress = nullptr) { submit_sweep(sweep, subs, options, sbatch.submitter(progress)); }
};

}  // namespace

// ---- submission and chunks.json

static void arrays_are_submitted_in_order_each_waiting_on_its_phase_before(void**) {
    TwoPhases t;
    auto& subs = t.subs;
    assert_int_equal(subs.size(), 4);
    std::ostringstream progress;
    t.submit(&progress);
    assert_int_equal(t.sbatch.lines.size(), 4);
    // A train chunk waits on the prep chunk of the same tasks, by its job id.
    assert_string_equal(subs[2].phase.c_str(), "train");
    assert_true(holds(t.sbatch.lines[2], "--dependency=aftercorr:" + subs[0].job_id));
    assert_true(holds(t.sbatch.lines[3], "--dependency=aftercorr:" + subs[1].job_id));
    assert_string_equal(subs[0].job_id.c_str(), "100");  // the cluster after ';' dropped
    assert_true(exists(script_path(t.sweep, "prep")) && exists(script_path(t.sweep, "train")));
    auto recorded = recorded_arrays(t.sweep);
    assert_int_equal(recorded.size(), 4);
    assert_string_equal(recorded[3].second.c_str(), "103");
    assert_non_null(std::strstr(progress.str().c_str(), ("aihpc-sweep: submitted " + subs[0].label + " (tasks 0-2) as job 100\n").c_str()));
    expect_error_containing([&] { t.submit(); }, "was already submitted (see chunks.json); use aihpc-sweep resubmit");
}

static void a_submission_cut_short_records_what_was_queued_and_nothing_when_nothing_was(void**) {
    {
        TwoPhases t;
        t.sbatch.fail_at = 1;
        expect_error_containing([&] { t.submit(); }, "(exit 1): sbatch: error: refused for the test; no array was submitted");
        // The sweep can simply be submitted again.
        assert_false(exists(t.sweep.path + "/chunks.json"));
    }
    TwoPhases t;
    t.sbatch.fail_at = 3;
    t.sbatch.garbage = "Submitted batch job soon";
    expect_error_containing([&] { t.submit(); }, "sbatch printed no job id for " + t.subs[2].label +
                                                     ": 'Submitted batch job soon'; the arrays submitted so far are in " + t.sweep.path +
                                                     "/chunks.json");
    auto recorded = recorded_arrays(t.sweep);
    assert_int_equal(recorded.size(), 4);
    assert_string_equal(recorded[1].second.c_str(), "101");
    assert_string_equal(recorded[2].second.c_str(), "");  // null: not queued
}

static void appended_chunks_keep_the_arrays_recorded_before(void**) {
    TwoPhases t;
    auto& sweep = t.sweep;
    auto& options = t.options;
    auto& subs = t.subs;
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
    Resubmission r;
    auto first = plan_submit(r.sweep, r.options);
    submit_sweep(r.sweep, first, r.options, r.sbatch.submitter());
    r.run();
    assert_int_equal(r.subs.size(), 2);
    expect_aside(r.sweep, 1, true);
    expect_aside(r.sweep, 4, true);
    assert_string_equal(r.subs[1].job_id.c_str(), "103");
    auto recorded = recorded_arrays(r.sweep);
    assert_int_equal(recorded.size(), 4);
    assert_string_equal(recorded[3].first.c_str(), r.subs[1].label.c_str());
    assert_string_equal(recorded[3].second.c_str(), "103");
}

static void a_resubmission_cut_short_puts_back_the_results_of_what_was_not_queued(void**) {
    Resubmission r;
    // A sweep without scripts gets them, without the words after resubmit's --.
    r.options.sbatch_args = {"--time=5"};
    r.sbatch.fail_at = 2;
    expect_error_containing([&] { r.run(); }, "sbatch failed for main.r1-1 (exit 1)");
    assert_true(exists(script_path(r.sweep, "main")));
    assert_null(std::strstr(file_text(script_path(r.sweep, "main")).c_str(), "--time=5"));
    assert_true(holds(r.sbatch.lines[0], "--time=5"));
    // Task 1's array was queued: its result stays aside; task 4's is back.
    expect_aside(r.sweep, 1, true);
    expect_aside(r.sweep, 4, false);
    auto recorded = recorded_arrays(r.sweep);
    assert_int_equal(recorded.size(), 1);
    assert_string_equal(recorded[0].second.c_str(), "100");
}

static void a_result_that_cannot_be_set_aside_submits_nothing_and_puts_back_the_rest(void**) {
    Resubmission r;
    // A directory where task 4's result would be set aside: rename refuses it.
    ::mkdir((r.sweep.path + "/results/4.json.prev").c_str(), 0755);
    expect_error_containing([&] { r.run(); }, "cannot set aside " + r.sweep.path + "/results/4.json: Is a directory; nothing was submitted");
    assert_int_equal(r.sbatch.lines.size(), 0);
    expect_aside(r.sweep, 1, false);
    assert_false(exists(r.sweep.path + "/chunks.json"));
}

// ---- the closed loop

namespace {

RoundsRecord read_record(const SweepDir& sweep) { return parse_rounds_json(file_text(sweep.path + "/rounds.json")); }

// A two-round loop over a sweep of four tasks, as submit --rounds 2 --metric loss --top 1
// --trials 3 makes it: round 1 submitted (job 100), then the loop started.
struct Loop {
    TempDir tmp;
    SweepDir sweep;
    FakeSbatch sbatch;
    std::vector<ArraySubmission> subs;
    RoundsRecord record;
    std::ostringstream out, err;
    Loop() : sweep(make_sweep(tmp, R"({"name":"loop","axes":[{"param":"x","range":[0,4]}],"command":"run {x}"})")) {
        auto options = options_of(1001);
        subs = plan_submit(sweep, options);
        submit_sweep(sweep, subs, options, sbatch.submitter());
        record.plan.rounds = 2;
        record.plan.metric = "loss";
        record.plan.top = 1;
        record.plan.trials = 3;
        record.plan.tool = "/bin/aihpc-sweep";
    }
    LoopStep step() { return LoopStep{"test", "/bin/aihpc-sweep", sbatch.submitter()}; }
    std::string start() { return start_closed_loop(sweep, record, subs, step()); }
    void advance() {
        out.str("");
        advance_rounds(sweep, "S", step(), out, err);
    }
};

}  // namespace

static void the_loop_starts_with_round_one_and_its_controller(void**) {
    {
        Loop loop;
        assert_string_equal(loop.start().c_str(), "101");
        assert_true(holds(loop.sbatch.lines[1], "--dependency=afterany:100"));
        assert_true(exists(controller_script_path(loop.sweep.path)));
        auto r = read_record(loop.sweep);
        assert_string_equal(r.state.c_str(), "running");
        assert_int_equal(r.history.size(), 1);
        assert_int_equal(r.history[0].tasks, 4);
        assert_string_equal(r.history[0].controller.c_str(), "101");
    }
    // A controller sbatch refuses stops the loop; the round itself runs on.
    Loop loop;
    loop.sbatch.fail_at = 2;
    expect_error_containing([&] { loop.start(); }, "sbatch failed for the controller of round 1 (exit 1): sbatch: error: refused for the "
                                                   "test; the round runs, but the loop stops after it");
    assert_string_equal(read_record(loop.sweep).state.c_str(), "stopped");
}

static void advance_refines_and_submits_each_round_then_ends_the_loop(void**) {
    Loop loop;
    loop.start();
    for (std::uint64_t i = 0; i < 4; ++i) write_result(loop.sweep, i, 0, i == 2 ? "0.1" : "0.5");
    loop.advance();
    std::string next = loop.sweep.path + "/rounds/2";
    auto round2 = open_sweep(next);
    assert_string_equal(loop.out.str().c_str(), ("round 1: best loss 0.1 (task 2 {\"x\":2})\nround 2: " + std::to_string(round2.tasks) +
                                                 " tasks in " + next + ", jobs 102\nadvance.2 103\n").c_str());
    auto r = read_record(loop.sweep);
    assert_int_equal(r.history.size(), 2);
    assert_int_equal(r.history[0].best->index, 2);
    assert_string_equal(r.history[1].dir.c_str(), next.c_str());
    assert_string_equal(r.history[1].controller.c_str(), "103");
    assert_true(exists(next + "/chunks.json"));
    // The last round: the loop is done, and says its best over every round.
    for (std::uint64_t i = 0; i < round2.tasks; ++i) write_result(round2, i, 0, i == 0 ? "0.05" : "0.7");
    loop.advance();
    assert_non_null(std::strstr(loop.out.str().c_str(), "closed loop done after 2 round(s)\nbest over all rounds: loss 0.05 (round 2, task 0 "));
    assert_string_equal(read_record(loop.sweep).state.c_str(), "done");
    assert_int_equal(loop.sbatch.lines.size(), 4);
    // A requeued controller finds nothing to do.
    loop.advance();
    assert_true(loop.out.str().empty());
    assert_string_equal(loop.err.str().c_str(), "aihpc-sweep: the closed loop of S is done; nothing to do\n");
}

static void a_round_without_results_or_a_refused_next_round_stops_the_loop(void**) {
    Loop loop;
    expect_error_containing([&] { loop.advance(); }, "S has no rounds.json: it was not submitted with --rounds");
    loop.start();
    auto running = file_text(loop.sweep.path + "/rounds.json");
    expect_error_containing([&] { loop.advance(); }, "; the loop stops here");
    auto r = read_record(loop.sweep);
    assert_string_equal(r.state.c_str(), "stopped");
    assert_true(r.message.rfind("round 1: ", 0) == 0);

    write_file_atomic(loop.sweep.path + "/rounds.json", running);
    for (std::uint64_t i = 0; i < 4; ++i) write_result(loop.sweep, i, 0, "0.5");
    loop.sbatch.fail_at = loop.sbatch.lines.size() + 1;
    expect_error_containing([&] { loop.advance(); }, "sbatch failed for");
    r = read_record(loop.sweep);
    assert_string_equal(r.state.c_str(), "stopped");
    assert_true(r.message.rfind("round 2 could not be submitted: sbatch failed for", 0) == 0);
    assert_int_equal(r.history.size(), 1);

    // A step cut short after it refined round 2 (as if killed before it recorded
    // anything): run again, it keeps that round's dir and submits it.
    write_file_atomic(loop.sweep.path + "/rounds.json", running);
    loop.sbatch.fail_at = 0;
    loop.advance();
    assert_non_null(std::strstr(loop.out.str().c_str(), (" tasks in " + loop.sweep.path + "/rounds/2, jobs ").c_str()));
    assert_int_equal(read_record(loop.sweep).history.size(), 2);
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
