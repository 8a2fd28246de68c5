// lib/common/spawn: the descriptors a child sees, the user it runs as, its process
// group, its deadline, what it prints, and how a failure before the exec is reported.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "cmocka_cxx.hpp"
#include "common/fd.hpp"
#include "common/spawn.hpp"
#include "temp_dir.hpp"

using namespace aihpc;

namespace {

// uid and gid 65534 are nobody and nogroup on Debian; 65533 needs no name.
const UserIds nobody{65534, 65534, {65534, 65533}};

bool skip_unless_root() {
    if (::geteuid() == 0) return false;
    print_message("skipped: dropping to another user needs root\n");
    return true;
}

UniqueFd open_null(int flags) { return UniqueFd(::open("/dev/null", O_RDONLY | flags)); }

struct FdReport {
    int pipe;                 // the child fd the report goes to
    int file;                 // the child fd that should be the file
    ino_t inode;              // the file's inode
};

// In the child: one byte per open descriptor below 1024, then 'I' if `file` is the
// expected file and not close-on-exec. Async-signal-safe calls only.
void report_fds(const void* context) noexcept {
    const FdReport& r = *static_cast<const FdReport*>(context);
    for (int fd = 0; fd < 1024; ++fd) {
        if (::fcntl(fd, F_GETFD) < 0) continue;
        char c = static_cast<char>(fd);
        (void)!::write(r.pipe, &c, 1);
    }
    struct stat st {};
    if (::fstat(r.file, &st) == 0 && st.st_ino == r.inode && ::fcntl(r.file, F_GETFD) == 0) (void)!::write(r.pipe, "I", 1);
}

std::string read_all(int fd) {
    std::string text;
    char buf[512];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) text.append(buf, static_cast<std::size_t>(n));
    return text;
}

}  // namespace

static void a_child_sees_exactly_the_mapped_descriptors(void**) {
    TempDir dir;
    std::string path = dir.path() + "/file";
    UniqueFd file(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    UniqueFd stray = open_null(0);  // not close-on-exec: a plain fork would pass it on
    Pipe pipe;
    struct stat st {};
    assert_int_equal(::fstat(file.get(), &st), 0);
    SpawnPlan plan;
    // The sources sit where other targets go: fd 7 and fd 5 swap places in effect.
    plan.fds = {{5, pipe.write.get()}, {7, file.get()}};
    FdReport report{5, 7, st.st_ino};
    ChildProcess child = spawn_function(plan, report_fds, &report);
    pipe.write.reset();
    std::string seen = read_all(pipe.read.get());
    int status = child.wait();
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(seen.size(), 3);
    assert_int_equal(seen[0], 5);
    assert_int_equal(seen[1], 7);
    assert_int_equal(seen[2], 'I');
}

static void a_program_gets_the_map_and_no_stray_descriptor(void**) {
    UniqueFd stray = open_null(0);
    std::string check = "test -e /proc/self/fd/" + std::to_string(stray.get()) + " && echo leaked; echo to-six >&6";
    Pipe six;
    SpawnPlan plan;
    plan.argv = {"sh", "-c", check};
    plan.search_path = true;
    plan.fds = {{6, six.write.get()}};
    Captured run = capture(plan);
    six.write.reset();
    assert_true(WIFEXITED(run.status) && WEXITSTATUS(run.status) == 0);
    assert_string_equal(run.out.c_str(), "");
    assert_string_equal(read_all(six.read.get()).c_str(), "to-six\n");

    // A command run in its caller's place keeps what the caller was given.
    plan.fds.clear();
    plan.keep_other_fds = true;
    plan.argv = {"sh", "-c", "test -e /proc/self/fd/" + std::to_string(stray.get()) + " && echo kept"};
    assert_string_equal(capture(plan).out.c_str(), "kept\n");
}

static void capture_returns_both_streams_and_the_status(void**) {
    SpawnPlan plan;
    plan.argv = {"sh", "-c", "echo out; echo err >&2; exit 3"};
    plan.search_path = true;
    Captured run = capture(plan);
    assert_true(WIFEXITED(run.status));
    assert_int_equal(WEXITSTATUS(run.status), 3);
    assert_string_equal(run.out.c_str(), "out\n");
    assert_string_equal(run.err.c_str(), "err\n");
    assert_false(run.timed_out);
}

static void the_environment_is_the_plans_when_given(void**) {
    SpawnPlan plan;
    plan.argv = {"/bin/sh", "-c", "echo \"$ONLY-${HOME:-unset}\""};
    plan.env = std::vector<std::string>{"ONLY=this"};
    assert_string_equal(capture(plan).out.c_str(), "this-unset\n");
}

static void a_child_past_its_deadline_is_killed(void**) {
    SpawnPlan plan;
    plan.argv = {"sleep", "30"};
    plan.search_path = true;
    auto started = std::chrono::steady_clock::now();
    Captured run = capture(plan, std::chrono::milliseconds(200));
    auto took = std::chrono::steady_clock::now() - started;
    assert_true(run.timed_out);
    assert_true(WIFSIGNALED(run.status) && WTERMSIG(run.status) == SIGKILL);
    assert_true(took < std::chrono::seconds(10));
}

static void a_program_that_cannot_run_exits_as_a_shell_would(void**) {
    TempDir dir;
    std::string plain = dir.path() + "/not-executable";
    UniqueFd made(::open(plain.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    SpawnPlan plan;
    plan.on_failure = report_failure_on_stderr;
    plan.failure_context = "aihpc-test: cannot run it";
    plan.argv = {dir.path() + "/missing"};
    Captured run = capture(plan);
    assert_true(WIFEXITED(run.status) && WEXITSTATUS(run.status) == 127);
    assert_string_equal(run.err.c_str(), "aihpc-test: cannot run it: No such file or directory\n");
    plan.argv = {plain};
    run = capture(plan);
    assert_true(WIFEXITED(run.status) && WEXITSTATUS(run.status) == 126);
    assert_string_equal(run.err.c_str(), "aihpc-test: cannot run it: Permission denied\n");
}

static void a_child_drops_to_the_user_for_good(void**) {
    if (skip_unless_root()) skip();
    SpawnPlan plan;
    plan.argv = {"/bin/sh", "-c", "id -u; id -g; id -G; id -ru; id -rg"};
    plan.user = nobody;
    plan.no_new_privs = true;
    Captured run = capture(plan);
    assert_true(WIFEXITED(run.status) && WEXITSTATUS(run.status) == 0);
    assert_string_equal(run.out.c_str(), "65534\n65534\n65534 65533\n65534\n65534\n");
}

static void a_failed_drop_names_its_step(void**) {
    if (::geteuid() == 0) {
        print_message("skipped: as root, every drop succeeds\n");
        skip();
    }
    // Without root, setgroups fails first; nothing after it may run.
    std::optional<ChildStep> failed = drop_to_user(nobody);
    assert_true(failed.has_value());
    assert_true(*failed == ChildStep::set_groups);
}

static void a_child_leads_its_own_group_or_session(void**) {
    SpawnPlan plan;
    plan.argv = {"sleep", "30"};
    plan.search_path = true;
    plan.group = ChildGroup::own_group;
    ChildProcess grouped = spawn(plan);
    assert_int_equal(::getpgid(grouped.pid()), grouped.pid());
    plan.group = ChildGroup::own_session;
    ChildProcess session = spawn(plan);
    pid_t sid = -1;
    for (int i = 0; i < 200 && sid != session.pid(); ++i) {
        sid = ::getsid(session.pid());
        if (sid != session.pid()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    assert_int_equal(sid, session.pid());
    // Both handles kill and reap their child as they go.
}

static void ignored_signals_stay_ignored_and_the_mask_is_the_plans(void**) {
    SpawnPlan plan;
    plan.argv = {"grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"};
    plan.search_path = true;
    plan.ignored_signals = {SIGUSR1};
    sigset_t blocked;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGUSR2);
    plan.signal_mask = blocked;
    Captured run = capture(plan);
    // SIGUSR1 is bit 10 (0x200), SIGUSR2 bit 12 (0x800).
    assert_true(run.out.find("SigBlk:\t0000000000000800") != std::string::npos);
    std::string ign = run.out.substr(run.out.find("SigIgn:"));
    unsigned long long mask = std::stoull(ign.substr(8, 16), nullptr, 16);
    assert_true(mask & (1ull << (SIGUSR1 - 1)));
}

static void on_usr1(int) {}

// In the child: exit 0 when SIGUSR1's action is the default.
void exit_by_usr1_action(const void*) noexcept {
    struct sigaction now {};
    ::sigaction(SIGUSR1, nullptr, &now);
    ::_exit(now.sa_handler == SIG_DFL ? 0 : 1);
}

static void the_callers_handlers_never_run_in_the_child(void**) {
    struct sigaction handler {}, old {};
    handler.sa_handler = on_usr1;
    ::sigaction(SIGUSR1, &handler, &old);
    ChildProcess child = spawn_function(SpawnPlan{}, exit_by_usr1_action, nullptr);
    int status = child.wait();
    ::sigaction(SIGUSR1, &old, nullptr);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void a_handle_moved_or_released_neither_kills_nor_waits_twice(void**) {
    SpawnPlan plan;
    plan.argv = {"sleep", "30"};
    plan.search_path = true;
    ChildProcess first = spawn(plan);
    pid_t pid = first.pid();
    ChildProcess second = std::move(first);
    assert_int_equal(first.pid(), -1);
    assert_int_equal(second.pid(), pid);
    pid_t released = second.release();
    assert_int_equal(released, pid);
    assert_int_equal(::kill(pid, 0), 0);  // still running: nothing killed it
    ChildProcess again(released);         // reaped here, killed first
}

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_child_sees_exactly_the_mapped_descriptors),
        cmocka_unit_test(a_program_gets_the_map_and_no_stray_descriptor),
        cmocka_unit_test(capture_returns_both_streams_and_the_status),
        cmocka_unit_test(the_environment_is_the_plans_when_given),
        cmocka_unit_test(a_child_past_its_deadline_is_killed),
        cmocka_unit_test(a_program_that_cannot_run_exits_as_a_shell_would),
        cmocka_unit_test(a_child_drops_to_the_user_for_good),
        cmocka_unit_test(a_failed_drop_names_its_step),
        cmocka_unit_test(a_child_leads_its_own_group_or_session),
        cmocka_unit_test(ignored_signals_stay_ignored_and_the_mask_is_the_plans),
        cmocka_unit_test(the_callers_handlers_never_run_in_the_child),
        cmocka_unit_test(a_handle_moved_or_released_neither_kills_nor_waits_twice),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
