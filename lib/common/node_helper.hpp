// Node work that slurmstepd hands to a program of its own (aihpc-node), the way pyxis
// hands container work to enroot: fork, then at once exec, with nothing between the two
// but async-signal-safe calls. slurmstepd is multi-threaded; a forked copy that goes on
// running its code can deadlock on any lock another thread held at fork time, and it
// inherits every descriptor. An exec'd helper starts clean.
//
// Before the exec the child (common/spawn.hpp does each step):
//   - drops to the job's user (setgroups, setresgid, setresuid), or becomes root wholly
//     for root's part of the work, then sets PR_SET_NO_NEW_PRIVS;
//   - keeps fd 3 (the request, read to its end) and fd 4 (the result socket), with stdin
//     from /dev/null and stdout and stderr into a pipe whose last lines the parent keeps;
//     every other descriptor is closed;
//   - resets oom_score_adj (slurmstepd protects itself; its helper is ordinary work);
//   - leads a process group of its own, which the parent kills as a whole, and dies with
//     the parent (PR_SET_PDEATHSIG).
// The parent waits with a deadline, then sends SIGTERM to the group and, after a grace
// period, SIGKILL. What the helper says comes back as records on the result socket:
// notes, one error, one result text, and descriptors (SCM_RIGHTS), so that the parent
// never opens a path that a user controls.
#pragma once
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/user_process.hpp"

namespace aihpc {

// The descriptors an exec'd helper finds open.
inline constexpr int helper_request_fd = 3;
inline constexpr int helper_result_fd = 4;

struct HelperRun {
    std::string program;                 // absolute path of the helper
    std::vector<std::string> args;       // argv[1...]
    std::string request;                 // written to its fd 3
    std::optional<UserIds> user;         // drop to this user; nullopt: root's work
    std::chrono::milliseconds deadline{std::chrono::hours(1)};
    std::chrono::milliseconds grace{std::chrono::seconds(5)};  // SIGTERM to SIGKILL
    std::string purpose;                 // "stage-in", for messages
    // The job's state, asked while the helper runs: a program and its arguments that
    // print "STATE TIMELEFT" as `squeue -h -j JOB -o "%T %L"` does. Empty: not watched.
    // A helper the user stopped (SIGSTOP) cannot watch for itself, so the parent does:
    // once the job is no longer running, the helper's group is killed at once, and the
    // deadline is brought down to the job's time left.
    std::vector<std::string> job_state_command;
    std::chrono::milliseconds watch_after{std::chrono::seconds(2)};  // no query for quick work
    // Between queries: watch_every, doubled after each query up to watch_every_max, so
    // that a long stage on a thousand nodes costs the controller a query per node every
    // 15 s, not every 5 s, while a cancel is still seen within seconds of a short one.
    std::chrono::milliseconds watch_every{std::chrono::seconds(5)};
    std::chrono::milliseconds watch_every_max{std::chrono::seconds(15)};
};

// What a job-state query printed, read: the state, and the seconds left before the
// time limit (nullopt: unlimited or unknown). An empty state: nothing could be read, so
// nothing is concluded.
struct WatchedJob {
    std::string state;
    std::optional<std::uint64_t> seconds_left;
};
WatchedJob parse_job_state(std::string_view squeue_output);
// Whether work for a job in this state may go on: running, starting or suspended (or
// unknown, when no answer came).
bool job_still_runs(const WatchedJob& job);

struct HelperOutcome {
    std::vector<std::string> notes;
    std::string result;                  // the helper's result text, if it sent one
    std::vector<UniqueFd> fds;           // descriptors it handed over, in order
};

// A helper that did not finish its work: it reported an error, died, or ran past its
// deadline. The message says which, with the last lines the helper printed.
class HelperFailed : public Error {
public:
    HelperFailed(const std::string& message, bool timed_out, bool job_ended = false)
        : Error(message), timed_out_(timed_out), job_ended_(job_ended) {}
    bool timed_out() const noexcept { return timed_out_; }
    // The job stopped running (cancelled, timed out, preempted) while the helper worked.
    bool job_ended() const noexcept { return job_ended_; }

private:
    bool timed_out_;
    bool job_ended_;
};

// Runs the helper and waits for it (see above). Throws HelperFailed. Root's work needs
// a real uid of 0 in the caller; the user's needs a real or saved uid of 0.
HelperOutcome run_helper(const HelperRun& run);

// The helper's side of the result socket.
class HelperChannel {
public:
    explicit HelperChannel(int fd = helper_result_fd) noexcept : fd_(fd) {}
    void note(std::string_view text) const noexcept;
    void error(std::string_view text) const noexcept;
    void result(std::string_view text) const noexcept;
    // Hands the descriptors to the parent, which receives them in this order.
    void send_fds(const std::vector<int>& fds) const;

private:
    int fd_;
};

// The request on fd 3, read to its end (at most `limit` bytes).
std::string read_helper_request(std::size_t limit = 1 << 20);

// The lines a helper printed last, kept as they come: a bounded tail, not the whole.
class OutputTail {
public:
    explicit OutputTail(std::size_t lines = 10, std::size_t line_bytes = 400) : lines_(lines), line_bytes_(line_bytes) {}
    void append(std::string_view bytes);
    // The kept lines, the unfinished last one included, joined by " | ".
    std::string text() const;

private:
    std::size_t lines_, line_bytes_;
    std::vector<std::string> kept_;
    std::string partial_;
};

}  // namespace aihpc
