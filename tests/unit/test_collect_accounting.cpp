// lib/collect/accounting: sacct's runs of each array element, why each ended badly, and
// the join to a sweep's failed and missing tasks that aihpc-collect --why prints.
#include <algorithm>
#include <string>
#include <vector>

#include "cmocka_cxx.hpp"
#include "collect/accounting.hpp"
#include "common/text.hpp"
#include "temp_dir.hpp"

using namespace aihpc;
using namespace aihpc::collect;

namespace {

// `sacct --duplicates --noheader --parsable2 -o JobID,JobIDRaw,State,ExitCode,Elapsed,
// MaxRSS,ReqMem,NodeList,AdminComment` on the mini-cluster (Slurm 22.05) for an array of five:
// 0 over its time limit, 1 over --mem, 2 cancelled, 3 preempted by a job of the urgent
// partition and requeued (pending again), 4 still pending.
const char* kSample =
    "40_0|41|TIMEOUT|0:0|00:01:31||200M|n1|\n"
    "40_0.batch|41|CANCELLED|0:15|00:01:32|1876K|200M|n1|\n"
    "40_0.extern|41|COMPLETED|0:0|00:01:31|0|200M|n1|\n"
    "40_1|42|FAILED|0:9|00:00:03||200M|n2|\n"
    "40_1.batch|42|OUT_OF_MEMORY|0:9|00:00:03|412M|200M|n2|\n"
    "40_1.extern|42|COMPLETED|0:0|00:00:03|0|200M|n2|\n"
    "40_2|43|CANCELLED by 1001|0:15|00:00:04||200M|n2|\n"
    "40_2.batch|43|CANCELLED|0:15|00:00:05|1024K|200M|n2|\n"
    "40_3|40|PREEMPTED|0:15|00:00:07||200M|n1|\n"
    "40_3.batch|40|CANCELLED|0:15|00:00:08|2.5M|200M|n1|\n"
    "40_3|40|PENDING|0:0|00:00:00||200M|None assigned|\n"
    "40_[4]|44|PENDING|0:0|00:00:00||200M|None assigned|kept|a|b\n"
    "77|77|COMPLETED|0:0|00:00:01||200M|n1|\n";

ResultTable table_of(std::uint64_t tasks) {
    ResultTable t;
    t.tasks = tasks;
    return t;
}

std::vector<sweep::ArraySubmission> one_array(const std::string& job, std::uint64_t count, const std::string& phase = "main") {
    sweep::ArraySubmission a;
    a.phase = phase;
    a.job_id = job;
    a.offset = 0;
    a.count = count;
    a.array = "0-" + std::to_string(count - 1) + "%4";
    return {a};
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

static void each_element_line_is_a_run_and_its_steps_follow_it(void**) {
    auto t = parse_accounting(kSample);
    assert_int_equal(t.size(), 5);  // 40_0..40_4; the job that is no array element is left out
    auto& timeout = t.at({"40", 0});
    assert_int_equal(timeout.size(), 1);
    assert_string_equal(timeout[0].state.c_str(), "TIMEOUT");
    assert_string_equal(timeout[0].job_id.c_str(), "41");
    assert_string_equal(timeout[0].max_rss.c_str(), "1876K");
    assert_string_equal(timeout[0].node_list.c_str(), "n1");
    assert_int_equal(timeout[0].step_states.size(), 2);
    assert_string_equal(t.at({"40", 2})[0].state.c_str(), "CANCELLED");  // "by 1001" dropped
    auto& preempted = t.at({"40", 3});
    assert_int_equal(preempted.size(), 2);
    assert_string_equal(preempted[0].state.c_str(), "PREEMPTED");
    assert_string_equal(preempted[0].max_rss.c_str(), "2.5M");
    assert_int_equal(preempted[0].step_states.size(), 1);
    assert_string_equal(preempted[1].state.c_str(), "PENDING");
    assert_int_equal(preempted[1].step_states.size(), 0);
    assert_string_equal(t.at({"40", 4})[0].comment.c_str(), "kept|a|b");  // the separator inside the last field
}

static void the_reason_is_the_decisive_state_of_the_run_or_of_a_step(void**) {
    auto t = parse_accounting(kSample);
    assert_string_equal(run_reason(t.at({"40", 0})[0]).c_str(), "TIMEOUT");
    assert_string_equal(run_reason(t.at({"40", 1})[0]).c_str(), "OUT_OF_MEMORY");  // the batch step's
    assert_string_equal(run_reason(t.at({"40", 2})[0]).c_str(), "CANCELLED");
    assert_string_equal(run_reason(t.at({"40", 3})[0]).c_str(), "PREEMPTED");
    assert_string_equal(run_reason(t.at({"40", 3})[1]).c_str(), "");
    AccountingRun r;
    for (const char* s : {"COMPLETED", "RUNNING", "PENDING"}) {
        r.state = s;
        assert_string_equal(run_reason(r).c_str(), "");
    }
    for (const char* s : {"NODE_FAIL", "FAILED", "DEADLINE", "BOOT_FAIL"}) {
        r.state = s;
        assert_string_equal(run_reason(r).c_str(), s);
    }
}

static void a_step_killed_over_its_request_ran_out_of_memory(void**) {
    // jobacct_gather's OverMemoryKill (no cgroup): Slurm records FAILED, signal 9.
    auto t = parse_accounting(
        "5_0|6|FAILED|0:9|00:00:01||100M|n1|\n"
        "5_0.batch|6.batch|CANCELLED by 0|0:9|00:00:01|114612K|100M|n1|\n"
        "5_1|7|FAILED|1:0|00:00:01||100Mn|n1|\n"
        "5_1.batch|7.batch|FAILED|1:0|00:00:01|90M|100Mn|n1|\n");
    assert_string_equal(run_reason(t.at({"5", 0})[0]).c_str(), "OUT_OF_MEMORY");
    assert_string_equal(run_reason(t.at({"5", 1})[0]).c_str(), "FAILED");
    auto j = join_accounting({0}, table_of(2), one_array("5", 2), {"main"}, t);
    assert_string_equal(accounting_lines(j.at(0), false).at(0).c_str(),
                        "  sacct: OUT_OF_MEMORY after 00:00:01 on n1, exit 0:9, MaxRSS 114612K over ReqMem 100M (job 5_0, 6)");
}

static void garbage_and_short_lines_are_skipped(void**) {
    auto t = parse_accounting("\nnot sacct\n1_2|3\n||||||||\n12_x|1|FAILED|1:0|00:00:01||1G|n1|\n12_1.batch|5|FAILED|1:0|1|9K|1G|n1|\n");
    assert_int_equal(t.size(), 0);
}

static void failed_and_missing_tasks_are_joined_through_the_arrays(void**) {
    auto acct = parse_accounting(kSample);
    auto table = table_of(5);
    auto arrays = one_array("40", 5);
    std::set<std::uint64_t> tasks{0, 1, 2, 3, 4};
    auto jobs = accounting_jobs(tasks, table, arrays);
    assert_int_equal(jobs.size(), 1);
    assert_string_equal(jobs.begin()->c_str(), "40");
    auto j = join_accounting(tasks, table, arrays, {"main"}, acct);
    assert_int_equal(j.size(), 5);
    auto line = [&](std::uint64_t i) { return accounting_lines(j.at(i), false).at(0); };
    assert_string_equal(line(0).c_str(), "  sacct: TIMEOUT after 00:01:31 on n1, MaxRSS 1876K (job 40_0, 41)");
    assert_string_equal(line(1).c_str(), "  sacct: OUT_OF_MEMORY after 00:00:03 on n2, exit 0:9, MaxRSS 412M (job 40_1, 42)");
    assert_true(contains(line(2), "CANCELLED after 00:00:04 on n2"));
    assert_string_equal(line(3).c_str(), "  sacct: PREEMPTED after 00:00:07 on n1, exit 0:15, MaxRSS 2.5M (job 40_3, 40), requeued; now PENDING");
    assert_string_equal(line(4).c_str(), "  sacct: now PENDING");
    assert_string_equal(accounting_lines(j.at(4), false).at(1).c_str(), "  comment: kept|a|b");
}

static void a_result_names_its_element_and_later_phases_are_not_blamed(void**) {
    auto acct = parse_accounting(
        "50_0|51|FAILED|1:0|00:00:02||200M|n1|\n"
        "60_0|61|COMPLETED|0:0|00:00:02||200M|n2|\n"
        "70_1|71|NODE_FAIL|0:0|00:00:09||200M|n2|\n"
        "80_1|81|CANCELLED|0:0|00:00:00||200M|None assigned|\n");
    std::vector<sweep::ArraySubmission> arrays = one_array("50", 2, "prep");
    arrays.push_back(one_array("70", 2, "prep")[0]);  // a resubmission of prep: it ran task 1 last
    arrays.push_back(one_array("80", 2, "train")[0]);
    auto table = table_of(2);
    ResultRow row;
    row.index = 0;
    row.state = TaskState::failed;
    row.phase = "prep";
    row.array_job_id = "50";
    row.array_task_id = "0";
    table.rows.push_back(row);
    auto j = join_accounting({0, 1}, table, arrays, {"prep", "train"}, acct);
    assert_string_equal(j.at(0).array_job_id.c_str(), "50");
    assert_string_equal(j.at(0).phase.c_str(), "prep");
    assert_string_equal(j.at(1).array_job_id.c_str(), "70");  // prep's node failure, not train's cancel
    assert_string_equal(j.at(1).phase.c_str(), "prep");
    assert_true(contains(accounting_lines(j.at(1), false).at(0), "NODE_FAIL after 00:00:09 on n2 (job 70_1, 71)"));
    auto jobs = accounting_jobs({0, 1}, table, arrays);
    assert_int_equal(jobs.size(), 3);
}

static void a_requeued_run_that_failed_again_shows_both(void**) {
    auto acct = parse_accounting(
        "9_2|10|PREEMPTED|0:15|00:00:30||200M|n1|\n"
        "9_2|10|TIMEOUT|0:0|00:01:00||200M|n2|\n");
    auto j = join_accounting({2}, table_of(3), one_array("9", 3), {"main"}, acct);
    assert_string_equal(accounting_lines(j.at(2), false).at(0).c_str(),
                        "  sacct: PREEMPTED after 00:00:30 on n1, exit 0:15 (job 9_2, 10), requeued; then TIMEOUT after 00:01:00 on n2 (job 9_2, 10)");
}

static void a_stage_out_names_the_kept_dir_on_its_node(void**) {
    auto acct = parse_accounting(kSample);
    auto j = join_accounting({0, 4}, table_of(5), one_array("40", 5), {"main"}, acct);
    auto lines = accounting_lines(j.at(0), true);
    assert_int_equal(lines.size(), 2);
    assert_string_equal(lines[1].c_str(),
                        "  kept: unless its stage-out finished, its stage dir is kept/41 on n1 (aihpc-stage kept, then aihpc-stage "
                        "deliver 41, in a job on n1)");
    assert_int_equal(accounting_lines(j.at(4), true).size(), 2);  // never ran: no kept line, the comment only
    auto spec = sweep::parse_spec(
        R"({"axes": [{"param": "x", "values": [1]}], "command": ["true"],
            "phases": [{"name": "a"}, {"name": "b", "after": "a", "aihpc": ["--aihpc-stage-out=out:/tmp/r"]}]})");
    assert_false(phase_stages_out(spec, "a"));
    assert_true(phase_stages_out(spec, "b"));
}

static void tasks_no_array_ran_or_sacct_forgot_are_left_out(void**) {
    auto acct = parse_accounting(kSample);
    auto arrays = one_array("40", 5);
    arrays[0].array = "0-2";
    auto j = join_accounting({3, 4, 7}, table_of(8), arrays, {"main"}, acct);
    assert_int_equal(j.size(), 0);
    assert_int_equal(accounting_jobs({3, 4, 7}, table_of(8), arrays).size(), 0);
}

// A stand-in sacct on the PATH: what it was asked goes to its log.
static void sacct_is_asked_per_hundred_jobs_and_no_accounting_is_a_note(void**) {
    TempDir tmp;
    tmp.make_dir("bin");
    tmp.make_dir("empty");
    std::string log = tmp.path() + "/sacct.log";
    tmp.write("bin/sacct",
              "#!/bin/sh\necho \"$*\" >>" + log + "\n[ -f " + tmp.path() +
                  "/off ] && { echo 'sacct: error: Slurm accounting storage is disabled' >&2; exit 1; }\n"
                  "printf '7_0|8|TIMEOUT|0:0|00:01:00||1G|n1|\\n'\n",
              0755);
    std::string saved = ::getenv("PATH") ? ::getenv("PATH") : "";
    ::setenv("PATH", (tmp.path() + "/bin:" + saved).c_str(), 1);
    std::set<std::string> jobs;
    for (int i = 0; i < 150; ++i) jobs.insert(std::to_string(1000 + i));
    std::string note;
    auto t = query_accounting(jobs, note);
    assert_string_equal(note.c_str(), "");
    assert_int_equal(t.at({"7", 0}).size(), 2);  // one run from each of the two calls
    assert_string_equal(t.at({"7", 0})[0].state.c_str(), "TIMEOUT");
    assert_string_equal(t.at({"7", 0})[0].node_list.c_str(), "n1");
    assert_string_equal(t.at({"7", 0})[0].comment.c_str(), "");
    auto asked = split(file_text(log), '\n');
    assert_int_equal(asked.size(), 3);  // two lines and the last newline
    assert_true(starts_with(asked[0], "--duplicates --noheader --parsable2 -j 1000,1001,"));
    assert_true(contains(asked[0], " -o JobID,JobIDRaw,State,ExitCode,Elapsed,MaxRSS,ReqMem,NodeList,AdminComment"));
    assert_true(starts_with(asked[1], "--duplicates --noheader --parsable2 -j 1100,"));

    tmp.write("off", "");
    t = query_accounting({"5"}, note);
    assert_int_equal(t.size(), 0);
    assert_string_equal(note.c_str(),
                        "no job accounting (sacct: Slurm accounting storage is disabled), so --why shows no job "
                        "states (TIMEOUT, OUT_OF_MEMORY, PREEMPTED, NODE_FAIL, CANCELLED)");
    ::setenv("PATH", (tmp.path() + "/empty").c_str(), 1);
    note.clear();
    t = query_accounting({"5"}, note);
    ::setenv("PATH", saved.c_str(), 1);
    assert_int_equal(t.size(), 0);
    assert_true(starts_with(note, "sacct is not available"));
}

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(each_element_line_is_a_run_and_its_steps_follow_it),
        cmocka_unit_test(the_reason_is_the_decisive_state_of_the_run_or_of_a_step),
        cmocka_unit_test(a_step_killed_over_its_request_ran_out_of_memory),
        cmocka_unit_test(garbage_and_short_lines_are_skipped),
        cmocka_unit_test(failed_and_missing_tasks_are_joined_through_the_arrays),
        cmocka_unit_test(a_result_names_its_element_and_later_phases_are_not_blamed),
        cmocka_unit_test(a_requeued_run_that_failed_again_shows_both),
        cmocka_unit_test(a_stage_out_names_the_kept_dir_on_its_node),
        cmocka_unit_test(tasks_no_array_ran_or_sacct_forgot_are_left_out),
        cmocka_unit_test(sacct_is_asked_per_hundred_jobs_and_no_accounting_is_a_note),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
