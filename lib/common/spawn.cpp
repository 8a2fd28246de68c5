#include "common/spawn.hpp"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/error.hpp"
#include "common/fd.hpp"

extern char** environ;

namespace aihpc {

namespace {

// Everything the child reads, made before the fork.
struct Prepared {
    std::vector<std::string> words;
    std::vector<char*> argv;
    std::string program;
    std::vector<std::string> env_words;
    std::vector<char*> envp;  // empty: this process's environment at the exec
    // The sources of the fd map, copied above every target (close-on-exec), so that no
    // dup2 in the child overwrites a source another entry still needs.
    std::vector<UniqueFd> sources;
    std::vector<int> targets;         // in the order of `sources`
    std::vector<int> sorted_targets;  // for closing the rest
    int max_fd = 65536;        // for closing one by one where close_range is missing
    pid_t parent = 0;
    sigset_t mask;
};

Prepared prepare(const SpawnPlan& plan, const sigset_t& caller_mask, bool runs_program) {
    Prepared p;
    if (runs_program) {
        if (plan.argv.empty()) throw Error("internal: spawning " + plan.purpose + " without a command");
        p.words = plan.argv;
        for (std::string& w : p.words) p.argv.push_back(w.data());
        p.argv.push_back(nullptr);
        p.program = plan.program.empty() ? plan.argv[0] : plan.program;
        if (plan.env) {
            p.env_words = *plan.env;
            for (std::string& e : p.env_words) p.envp.push_back(e.data());
            p.envp.push_back(nullptr);
        }
    }
    int floor = 3;
    for (const FdMapping& m : plan.fds) floor = std::max(floor, m.child + 1);
    std::vector<FdMapping> ordered = plan.fds;
    // report_fd's entry first: a failure after it reaches whoever reads it.
    std::stable_partition(ordered.begin(), ordered.end(), [&](const FdMapping& m) { return m.child == plan.report_fd; });
    for (const FdMapping& m : ordered) {
        int copy = ::fcntl(m.parent, F_DUPFD_CLOEXEC, floor);
        if (copy < 0) throw_errno("cannot prepare the descriptors of " + plan.purpose + " (fd " + std::to_string(m.parent) + ")");
        p.sources.emplace_back(copy);
        p.targets.push_back(m.child);
    }
    p.sorted_targets = p.targets;
    std::sort(p.sorted_targets.begin(), p.sorted_targets.end());
    struct rlimit files {};
    if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY)
        p.max_fd = static_cast<int>(std::min<rlim_t>(files.rlim_cur, 1 << 20));
    p.parent = ::getpid();
    p.mask = plan.signal_mask ? *plan.signal_mask : caller_mask;
    return p;
}

// ---- the child: async-signal-safe calls only

[[noreturn]] void fail(const SpawnPlan& plan, ChildStep step) noexcept {
    int err = errno;
    if (plan.on_failure) plan.on_failure(step, err, plan.failure_context);
    ::_exit(127);
}

void child_signals(const SpawnPlan& plan, const sigset_t& mask) noexcept {
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        struct sigaction now {};
        if (plan.default_signal_actions ||
            (::sigaction(sig, nullptr, &now) == 0 && now.sa_handler != SIG_DFL && now.sa_handler != SIG_IGN))
            ::sigaction(sig, &dfl, nullptr);
    }
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    for (int sig : plan.ignored_signals) ::sigaction(sig, &ignore, nullptr);
    ::sigprocmask(SIG_SETMASK, &mask, nullptr);
}

void close_from(int first, int last, int max_fd) noexcept {
    if (first > last) return;
    if (::syscall(SYS_close_range, static_cast<unsigned>(first), static_cast<unsigned>(last), 0u) == 0) return;
    for (int fd = first; fd <= std::min(last, max_fd); ++fd) ::close(fd);  // a kernel before 5.9
}

void child_descriptors(const SpawnPlan& plan, const Prepared& p) noexcept {
    for (std::size_t i = 0; i < p.sources.size(); ++i) {
        if (::dup2(p.sources[i].get(), p.targets[i]) >= 0) continue;
        if (p.targets[i] == plan.report_fd) ::_exit(127);  // nowhere to say so
        fail(plan, ChildStep::descriptors);
    }
    if (plan.keep_other_fds) {
        for (const UniqueFd& copy : p.sources) ::close(copy.get());
        return;
    }
    int next = 0;
    for (int target : p.sorted_targets) {
        close_from(next, target - 1, p.max_fd);
        next = target + 1;
    }
    close_from(next, ~0u >> 1, p.max_fd);
}

void child_credentials(const SpawnPlan& plan) noexcept {
    if (plan.regain_root && ::setresuid(static_cast<uid_t>(-1), 0, static_cast<uid_t>(-1)) != 0)
        fail(plan, ChildStep::regain_root);
    if (plan.reset_oom_score) {
        int oom = ::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        if (oom >= 0) {
            (void)!::write(oom, "0", 1);
            ::close(oom);
        }
    }
    if (plan.user) {
        if (std::optional<ChildStep> failed = drop_to_user(*plan.user)) fail(plan, *failed);
    } else if (plan.become_root) {
        if (::setresuid(0, 0, 0) != 0 || ::setgroups(0, nullptr) != 0 || ::setresgid(0, 0, 0) != 0)
            fail(plan, ChildStep::become_root);
    }
}

// Steps 1 to 5 of spawn.hpp.
void child_setup(const SpawnPlan& plan, const Prepared& p) noexcept {
    // The group or session first, before any descriptor shared with the caller closes:
    // whoever waits for the caller's descriptors to close may kill the caller's group the
    // moment they do (run_helper does), and a child still in that group would go with
    // it. A failure is told once report_fd is in place.
    int group_error = 0;
    if (plan.group == ChildGroup::own_group && ::setpgid(0, 0) != 0) group_error = errno;
    if (plan.group == ChildGroup::own_session && ::setsid() < 0) group_error = errno;
    child_signals(plan, p.mask);
    child_descriptors(plan, p);
    if (group_error != 0) {
        errno = group_error;
        fail(plan, ChildStep::group);
    }
    child_credentials(plan);
    if (plan.die_with_parent) {
        if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) fail(plan, ChildStep::parent_death);
        if (::getppid() != p.parent) ::_exit(127);  // the parent died before the line above
    }
    if (plan.no_new_privs && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail(plan, ChildStep::no_new_privs);
}

[[noreturn]] void child_exec(const SpawnPlan& plan, const Prepared& p) noexcept {
    child_setup(plan, p);
    char* const* envp = p.envp.empty() ? environ : p.envp.data();
    if (plan.search_path) ::execvpe(p.program.c_str(), p.argv.data(), envp);
    else ::execve(p.program.c_str(), p.argv.data(), envp);
    fail(plan, ChildStep::exec);
}

// Forks with every signal blocked, so that no handler of the caller's runs in the
// child before child_signals; the caller's mask is back before this returns.
ChildProcess fork_child(const SpawnPlan& plan, ChildBody body, const void* context) {
    sigset_t all, caller;
    sigfillset(&all);
    ::sigprocmask(SIG_SETMASK, &all, &caller);
    pid_t pid = -1;
    int fork_errno = 0;
    try {
        Prepared p = prepare(plan, caller, body == nullptr);
        pid = ::fork();
        if (pid == 0) {
            if (!body) child_exec(plan, p);
            child_setup(plan, p);
            body(context);
            ::_exit(0);
        }
        fork_errno = errno;
    } catch (...) {
        ::sigprocmask(SIG_SETMASK, &caller, nullptr);
        throw;
    }
    ::sigprocmask(SIG_SETMASK, &caller, nullptr);
    if (pid < 0) throw SystemError(plan.start_error.empty() ? "cannot start " + plan.purpose : plan.start_error, fork_errno);
    // The child may not have made its group yet: setting it here too closes the race.
    if (plan.group == ChildGroup::own_group) ::setpgid(pid, pid);
    return ChildProcess(pid);
}

}  // namespace

ChildProcess spawn(const SpawnPlan& plan) { return fork_child(plan, nullptr, nullptr); }

ChildProcess spawn_function(const SpawnPlan& plan, ChildBody body, const void* context) {
    if (!body) throw Error("internal: spawning " + plan.purpose + " without a body");
    return fork_child(plan, body, context);
}

std::optional<ChildStep> drop_to_user(const UserIds& user) noexcept {
    if (::setgroups(user.groups.size(), user.groups.empty() ? nullptr : user.groups.data()) != 0)
        return ChildStep::set_groups;
    if (::setresgid(user.gid, user.gid, user.gid) != 0) return ChildStep::set_gid;
    if (::setresuid(user.uid, user.uid, user.uid) != 0) return ChildStep::set_uid;
    uid_t r, e, s;
    gid_t gr, ge, gs;
    if (::getresuid(&r, &e, &s) != 0 || r != user.uid || e != user.uid || s != user.uid || ::getresgid(&gr, &ge, &gs) != 0 ||
        gr != user.gid || ge != user.gid || gs != user.gid) {
        errno = EPERM;
        return ChildStep::check_drop;
    }
    return std::nullopt;
}

void report_failure_on_stderr(ChildStep step, int error, const void* context) noexcept {
    const char* parts[] = {static_cast<const char*>(context), ": ", strerrordesc_np(error), "\n"};
    if (!parts[0]) parts[0] = "cannot start a child process";
    if (!parts[2]) parts[2] = "Unknown error";
    // One write, so that the line is not split among other output.
    char line[4096];
    std::size_t n = 0;
    for (const char* part : parts)
        for (const char* c = part; *c && n < sizeof line - 1; ++c) line[n++] = *c;
    if (line[n - 1] != '\n') line[n++] = '\n';
    (void)!::write(2, line, n);
    ::_exit(step == ChildStep::exec && error != ENOENT ? 126 : 127);
}

// ---- capture

namespace {

// Reads both pipes to their end, or until `give_up`; false when it came first.
bool read_both(int out, int err, Captured& result, std::optional<std::chrono::steady_clock::time_point> give_up,
               const std::string& purpose) {
    struct pollfd fds[2] = {{out, POLLIN, 0}, {err, POLLIN, 0}};
    std::string* sinks[2] = {&result.out, &result.err};
    int open = 2;
    char buf[8192];
    while (open > 0) {
        int timeout = -1;
        if (give_up) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*give_up - std::chrono::steady_clock::now());
            if (left.count() <= 0) return false;
            timeout = static_cast<int>(std::min<long long>(left.count(), 1000));
        }
        int ready = ::poll(fds, 2, timeout);
        if (ready < 0) {
            if (errno == EINTR) continue;
            throw_errno("cannot read the output of " + purpose);
        }
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
            if (n > 0) {
                sinks[i]->append(buf, static_cast<std::size_t>(n));
            } else if (n == 0 || errno != EINTR) {
                fds[i].fd = -1;
                --open;
            }
        }
    }
    return true;
}

}  // namespace

Captured capture(SpawnPlan plan, std::optional<std::chrono::milliseconds> deadline) {
    Pipe out, err;
    std::erase_if(plan.fds, [](const FdMapping& m) { return m.child == 1 || m.child == 2; });
    plan.fds.push_back({1, out.write.get()});
    plan.fds.push_back({2, err.write.get()});
    std::optional<std::chrono::steady_clock::time_point> give_up;
    if (deadline) give_up = std::chrono::steady_clock::now() + *deadline;
    ChildProcess child = spawn(plan);
    out.write.reset();
    err.write.reset();
    Captured result;
    if (!read_both(out.read.get(), err.read.get(), result, give_up, plan.purpose)) {
        // A grandchild may hold the pipes open: what was read so far is what there is.
        result.timed_out = true;
        if (plan.group != ChildGroup::inherit) ::kill(-child.pid(), SIGKILL);
        ::kill(child.pid(), SIGKILL);
    }
    result.status = child.wait();
    return result;
}

}  // namespace aihpc
