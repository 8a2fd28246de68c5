// The one place where a process starts another: fork, then in the child only
// async-signal-safe calls (dup2, close, setsid, setgroups/setresgid/setresuid, prctl,
// sigaction, sigprocmask) before the exec. Everything the child needs (argv, envp, the
// descriptor map, the user's ids) is made before the fork, so that the child allocates
// nothing: slurmstepd is multi-threaded, and a forked copy that ran its code could
// deadlock on a lock another thread held at fork time.
//
// The parent blocks every signal across the fork, so that none of its handlers runs in
// the child; the child resets each handled signal to its default (as an exec would),
// then sets the mask the plan asks for.
//
// In the child, in this order:
//   1. a process group (own_group) or a session (own_session) of its own, before any
//      descriptor shared with the caller closes: a caller's parent that waits for those
//      to close and then kills the caller's group (run_helper, at a helper's end) must
//      not take a child meant to outlive the caller, such as the cache lease holder; a
//      failure here is reported after step 3;
//   2. signals: every action to its default (default_signal_actions), the ignored ones
//      ignored, then the mask;
//   3. descriptors: child fd N gets parent fd M for each entry of `fds` (report_fd's
//      first), and every other descriptor is closed, unless keep_other_fds;
//   4. credentials: root regained (regain_root), oom_score_adj reset, then dropped to
//      `user` for good (drop_to_user) or made root wholly (become_root);
//   5. the parent-death signal (die_with_parent), set after the credential change,
//      which clears it; no_new_privs;
//   6. the exec, or the body of a spawn_function child.
// A step that fails calls on_failure (which may _exit itself), then _exit(127).
#pragma once
#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/child_process.hpp"
#include "common/user_process.hpp"

namespace aihpc {

// Child fd `child` is a copy of parent fd `parent`, without close-on-exec.
struct FdMapping {
    int child;
    int parent;
};

enum class ChildGroup { inherit, own_group, own_session };

// The step of the child's setup that failed, for on_failure.
enum class ChildStep {
    descriptors,
    group,
    regain_root,
    set_groups,
    set_gid,
    set_uid,
    check_drop,  // the ids read back are not the user's (errno EPERM)
    become_root,
    parent_death,
    no_new_privs,
    exec,
};

// Runs in the child when a step fails, with that step's errno: async-signal-safe calls
// only. `context` is the plan's failure_context.
using ChildFailureHook = void (*)(ChildStep step, int error, const void* context) noexcept;

struct SpawnPlan {
    // What the child runs: argv[0] is the program, looked up on PATH when search_path
    // and it has no '/'. Unused by spawn_function.
    std::vector<std::string> argv;
    std::string program;  // the file run, when argv[0] is not it
    bool search_path = false;
    std::optional<std::vector<std::string>> env;  // "NAME=value"; nullopt: this process's
    std::vector<FdMapping> fds;
    // A command run in the caller's place (a task wrapper's, a sweep's) keeps whatever
    // the caller was given, such as an MPI launcher's descriptors; only `fds` change.
    bool keep_other_fds = false;
    ChildGroup group = ChildGroup::inherit;
    std::optional<sigset_t> signal_mask;  // nullopt: the caller's at the call
    bool default_signal_actions = false;  // ignored signals too, not only handled ones
    std::vector<int> ignored_signals;
    bool regain_root = false;      // setresuid(-1, 0, -1), for a caller whose euid is a user's
    bool reset_oom_score = false;  // oom_score_adj 0: the child is ordinary work
    std::optional<UserIds> user;   // drop to this user for good
    bool become_root = false;      // real, effective and saved uid and gid 0, no groups
    bool die_with_parent = false;  // SIGKILL when the parent dies; exit 127 if it already has
    bool no_new_privs = false;
    ChildFailureHook on_failure = nullptr;
    const void* failure_context = nullptr;
    int report_fd = -1;  // the child fd that on_failure writes on: mapped before the others
    std::string purpose = "a child process";  // for messages: "cannot start PURPOSE: ..."
    std::string start_error;                  // the message when fork fails, if not that one
};

// Starts the child; throws aihpc::SystemError when it cannot fork. The handle kills and
// reaps the child if its owner leaves without waiting.
ChildProcess spawn(const SpawnPlan& plan);

// The child runs `body(context)` instead of an exec, after the same setup, and exits 0
// if it returns. Only for a process that must keep descriptors no program could be
// handed, such as the cache lease holder: `body` may make async-signal-safe calls only.
using ChildBody = void (*)(const void* context) noexcept;
ChildProcess spawn_function(const SpawnPlan& plan, ChildBody body, const void* context);

// Drops the calling process to `user` for good: supplementary groups, gid, uid, then
// the ids read back and checked, so that a half-done drop never goes on. Async-signal-
// safe. Nullopt when done; else the step that failed, with errno set.
std::optional<ChildStep> drop_to_user(const UserIds& user) noexcept;

// An on_failure for a command run as a shell would: "CONTEXT: STRERROR" on the child's
// stderr, CONTEXT a const char* such as "aihpc: cannot run X", then exit 127 for a
// program not found and 126 for one that could not run.
void report_failure_on_stderr(ChildStep step, int error, const void* context) noexcept;

// A command's output, both streams, captured whole.
struct Captured {
    int status = 0;  // waitpid's status
    std::string out;
    std::string err;
    bool timed_out = false;  // killed (SIGKILL to it, and to its group if it leads one) at the deadline
};

// Spawns `plan` with stdout and stderr into pipes (fds 1 and 2 of the plan are
// replaced) and waits for it, at most `deadline` when given.
Captured capture(SpawnPlan plan, std::optional<std::chrono::milliseconds> deadline = std::nullopt);

}  // namespace aihpc
