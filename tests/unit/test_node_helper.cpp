// lib/common/node_helper: the exec'd helper that does node work for slurmstepd, run for
// real with /bin/bash as the helper program. Dropping to another user needs root, as the
// plugin does; those tests skip without it.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include "cmocka_cxx.hpp"
#include "common/node_helper.hpp"
#include "temp_dir.hpp"

using namespace aihpc;

namespace {

// uid and gid 65534 are nobody and nogroup on Debian; 65533 needs no name.
const UserIds nobody{65534, 65534, {65534, 65533}};

bool skip_unless_root() {
    if (::geteuid() == 0) return false;
    print_message("skipped: the helper's identity is set as root, as in slurmstepd\n");
    return true;
}

// A helper that is a shell command line: bash -c SCRIPT (bash, unlike dash, keeps no
// descriptor of its own open).
HelperRun shell(const std::string& script) {
    HelperRun run;
    run.program = "/bin/bash";
    run.args = {"-c", script};
    run.purpose = "test";
    return run;
}

// Shell code that sends TEXT (a shell word) as the helper's result on fd 4.
std::string send_result(const std::string& text) {
    return "t=" + text + "; printf 'R%d:%s' \"${#t}\" \"$t\" >&4";
}

}  // namespace

static void the_users_work_runs_as_the_user_with_only_fds_0_to_4(void**) {
    if (skip_unless_root()) skip();
    TempDir tmp;
    ::chmod(tmp.path().c_str(), 0777);
    // Listed before any command substitution, which would hold a pipe open in the shell.
    std::string fds = tmp.path() + "/fds";
    HelperRun run = shell("ls /proc/$$/fd >" + fds + "; " + send_result(
        "\"$(id -u) $(id -g) $(id -G | tr ' ' '\\n' | sort -n | tr '\\n' ' ')| $(sort -n " + fds + " | tr '\\n' ' ')| "
        "$(grep NoNewPrivs /proc/$$/status | tr -d ' \\t')\""));
    run.user = nobody;
    HelperOutcome outcome = run_helper(run);
    assert_string_equal(outcome.result.c_str(), "65534 65534 65533 65534 | 0 1 2 3 4 | NoNewPrivs:1");
}

static void roots_work_is_root_even_when_the_caller_had_dropped_its_euid(void**) {
    if (skip_unless_root()) skip();
    // As slurmstepd in user_init: real uid 0, effective ids the job's user's.
    assert_int_equal(::setegid(65534), 0);
    assert_int_equal(::seteuid(65534), 0);
    std::string result;
    bool failed = false;
    try {
        result = run_helper(shell(send_result("\"$(id -u) $(id -g) $(id -G)\""))).result;
    } catch (const Error&) {
        failed = true;
    }
    int back = ::seteuid(0) | ::setegid(0);
    assert_int_equal(back, 0);
    assert_false(failed);
    assert_string_equal(result.c_str(), "0 0 0");
}

static void the_request_arrives_whole_on_fd_3_and_notes_in_order(void**) {
    if (skip_unless_root()) skip();
    HelperRun run = shell("printf 'N5:firstN0:' >&4; " + send_result("\"$(wc -c <&3)\""));
    run.request = std::string(300000, 'r');  // more than a pipe holds
    HelperOutcome outcome = run_helper(run);
    assert_int_equal(outcome.notes.size(), 2);
    assert_string_equal(outcome.notes[0].c_str(), "first");
    assert_string_equal(outcome.notes[1].c_str(), "");
    assert_string_equal(outcome.result.c_str(), "300000");
}

static void an_error_record_fails_the_run_with_its_text(void**) {
    if (skip_unless_root()) skip();
    expect_error_containing([] { run_helper(shell("printf 'E19:no space left here.' >&4; exit 1")); },
                            "no space left here.");
}

static void a_helper_past_its_deadline_is_stopped_and_its_last_lines_quoted(void**) {
    if (skip_unless_root()) skip();
    HelperRun run = shell("echo copying; echo still copying >&2; exec sleep 60");
    run.deadline = std::chrono::milliseconds(300);
    run.grace = std::chrono::milliseconds(200);
    auto started = std::chrono::steady_clock::now();
    bool timed_out = false;
    std::string message;
    try {
        run_helper(run);
    } catch (const HelperFailed& e) {
        timed_out = e.timed_out();
        message = e.what();
    }
    assert_true(timed_out);
    assert_true(message.find("did not finish within 300ms (site key stage_timeout)") != std::string::npos);
    assert_true(message.find("it printed: copying | still copying") != std::string::npos);
    // Well before the 60 s the helper would have slept: it was killed, not waited for.
    assert_true(std::chrono::steady_clock::now() - started < std::chrono::seconds(30));
}

static void a_helper_that_ignores_sigterm_is_killed_after_the_grace_period(void**) {
    if (skip_unless_root()) skip();
    HelperRun run = shell("trap '' TERM; echo stubborn; while :; do sleep 1; done");
    run.deadline = std::chrono::milliseconds(200);
    run.grace = std::chrono::milliseconds(200);
    expect_error_containing([&] { run_helper(run); }, "it printed: stubborn");
}

static void the_helpers_whole_process_group_goes_with_it(void**) {
    if (skip_unless_root()) skip();
    TempDir tmp;
    std::string pid_file = tmp.path() + "/pid";
    // The process left behind holds the helper's output pipe and result socket: the
    // helper's exit, not their end, must end the wait, and the process goes with it.
    HelperRun run = shell("sleep 600 & echo $! >" + pid_file + "; " + send_result("done") + "; exit 0");
    run.deadline = std::chrono::seconds(120);
    const auto started = std::chrono::steady_clock::now();
    HelperOutcome outcome = run_helper(run);
    const auto waited = std::chrono::steady_clock::now() - started;
    assert_string_equal(outcome.result.c_str(), "done");
    if (waited > std::chrono::seconds(30))
        fail_msg("run_helper waited %lld s on what the helper left behind",
                 static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(waited).count()));
    std::ifstream in(pid_file);
    pid_t left = 0;
    in >> left;
    assert_true(left > 0);
    // Orphaned, it is reaped by init once killed; allow for that.
    bool gone = false;
    for (int i = 0; i < 200 && !gone; ++i) {
        std::ifstream status("/proc/" + std::to_string(left) + "/status");
        std::string line;
        gone = !status;
        while (!gone && std::getline(status, line))
            if (line.rfind("State:", 0) == 0) gone = line.find('Z') != std::string::npos;
        if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    assert_true(gone);
}

static void a_helper_killed_by_a_signal_is_reported_with_the_signal(void**) {
    if (skip_unless_root()) skip();
    expect_error_containing([] { run_helper(shell("echo about to die; kill -SEGV $$")); }, "killed by Segmentation fault");
}

static void a_missing_helper_program_is_named(void**) {
    if (skip_unless_root()) skip();
    HelperRun run = shell("");
    run.program = "/nonexistent/aihpc-node";
    expect_error_containing([&] { run_helper(run); }, "cannot execute the helper (errno 2)");
}

static void a_job_of_uid_0_is_never_run_as_the_user(void**) {
    HelperRun run = shell("exit 0");
    run.user = UserIds{0, 0, {}};
    expect_error_containing([&] { run_helper(run); }, "refusing to run the test helper as root");
}

static void a_stopped_helper_of_a_cancelled_job_is_killed_by_the_parents_watch(void**) {
    if (skip_unless_root()) skip();
    // The helper stops itself, as a user's SIGSTOP would: it can no longer watch for itself.
    HelperRun run = shell("echo stopping; kill -STOP $$; sleep 60");
    run.user = nobody;
    run.job_state_command = {"/bin/echo", "CANCELLED", "0:00"};
    run.watch_after = std::chrono::milliseconds(100);
    auto started = std::chrono::steady_clock::now();
    try {
        run_helper(run);
        fail_msg("a helper of a cancelled job finished");
    } catch (const HelperFailed& e) {
        assert_true(e.job_ended());
        assert_non_null(std::strstr(e.what(), "the job is CANCELLED"));
    }
    assert_true(std::chrono::steady_clock::now() - started < std::chrono::seconds(5));
}

static void the_deadline_is_brought_down_to_the_jobs_time_left(void**) {
    if (skip_unless_root()) skip();
    HelperRun run = shell("sleep 60");
    run.job_state_command = {"/bin/echo", "RUNNING", "0:01"};
    run.watch_after = std::chrono::milliseconds(50);
    run.grace = std::chrono::milliseconds(200);
    try {
        run_helper(run);
        fail_msg("the helper outlived the job's time limit");
    } catch (const HelperFailed& e) {
        assert_true(e.timed_out());
        assert_non_null(std::strstr(e.what(), "time limit"));
    }
}

static void a_running_job_with_time_left_lets_the_work_finish(void**) {
    if (skip_unless_root()) skip();
    HelperRun run = shell("sleep 0.5; " + send_result("done"));
    run.job_state_command = {"/bin/echo", "RUNNING", "1-00:00:00"};
    run.watch_after = std::chrono::milliseconds(10);
    run.watch_every = std::chrono::milliseconds(50);
    assert_string_equal(run_helper(run).result.c_str(), "done");
}

static void job_states_and_time_left_are_read_as_squeue_prints_them(void**) {
    WatchedJob j = parse_job_state("RUNNING 1-02:03:04\n");
    assert_string_equal(j.state.c_str(), "RUNNING");
    assert_true(j.seconds_left && *j.seconds_left == 86400 + 2 * 3600 + 3 * 60 + 4);
    j = parse_job_state("RUNNING 05:06");
    assert_true(j.seconds_left && *j.seconds_left == 306);
    j = parse_job_state("RUNNING UNLIMITED");
    assert_string_equal(j.state.c_str(), "RUNNING");
    assert_false(j.seconds_left.has_value());
    assert_true(job_still_runs(j));
    assert_false(job_still_runs(parse_job_state("COMPLETING 0:00")));
    assert_false(job_still_runs(parse_job_state("PREEMPTED 0:00")));
    // Nothing readable: nothing concluded, the work goes on.
    assert_true(parse_job_state("squeue: error: x").state.empty());
    assert_true(job_still_runs(parse_job_state("")));
    assert_false(parse_job_state("RUNNING 1-05:06").seconds_left.has_value());
}

static void output_tail_keeps_the_last_lines_bounded_and_printable(void**) {
    OutputTail tail(3, 10);
    tail.append("one\ntwo\nthree\nfour\n");
    assert_string_equal(tail.text().c_str(), "two | three | four");
    tail.append("a very long line indeed\x01\nend");
    assert_string_equal(tail.text().c_str(), "four | a very lon | end");
    OutputTail control(2, 20);
    control.append("bell\x07here\n");
    assert_string_equal(control.text().c_str(), "bell?here");
}

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_users_work_runs_as_the_user_with_only_fds_0_to_4),
        cmocka_unit_test(roots_work_is_root_even_when_the_caller_had_dropped_its_euid),
        cmocka_unit_test(the_request_arrives_whole_on_fd_3_and_notes_in_order),
        cmocka_unit_test(an_error_record_fails_the_run_with_its_text),
        cmocka_unit_test(a_helper_past_its_deadline_is_stopped_and_its_last_lines_quoted),
        cmocka_unit_test(a_helper_that_ignores_sigterm_is_killed_after_the_grace_period),
        cmocka_unit_test(the_helpers_whole_process_group_goes_with_it),
        cmocka_unit_test(a_helper_killed_by_a_signal_is_reported_with_the_signal),
        cmocka_unit_test(a_missing_helper_program_is_named),
        cmocka_unit_test(a_job_of_uid_0_is_never_run_as_the_user),
        cmocka_unit_test(output_tail_keeps_the_last_lines_bounded_and_printable),
        cmocka_unit_test(a_stopped_helper_of_a_cancelled_job_is_killed_by_the_parents_watch),
        cmocka_unit_test(the_deadline_is_brought_down_to_the_jobs_time_left),
        cmocka_unit_test(a_running_job_with_time_left_lets_the_work_finish),
        cmocka_unit_test(job_states_and_time_left_are_read_as_squeue_prints_them),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
