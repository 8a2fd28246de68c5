#include "common/node_helper.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/child_process.hpp"
#include "common/paths.hpp"
#include "common/spawn.hpp"
#include "common/text.hpp"

namespace aihpc {

namespace {

using Clock = std::chrono::steady_clock;

// ---- records on the result socket: a kind, the length in decimal, ':', the text

void write_all(int fd, std::string_view bytes) noexcept {
    while (!bytes.empty()) {
        ssize_t n = ::write(fd, bytes.data(), bytes.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;  // the parent is gone: nobody is left to tell
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
}

void write_record(int fd, char kind, std::string_view text) noexcept {
    try {
        std::string record = kind + std::to_string(text.size()) + ":";
        record.append(text);
        write_all(fd, record);
    } catch (...) {
        // Out of memory while reporting: the exit status still tells the parent.
    }
}

struct Records {
    std::vector<std::string> notes;
    std::string result;
    std::string error;
    bool has_error = false;
};

// Complete records are taken off the front of `text`; an unfinished one stays.
void take_records(std::string& text, Records& out) {
    std::size_t at = 0;
    while (text.size() - at > 2) {
        char kind = text[at];
        std::size_t colon = text.find(':', at);
        if (colon == std::string::npos || colon - at > 12) break;
        std::size_t length = 0;
        for (std::size_t i = at + 1; i < colon; ++i) {
            if (text[i] < '0' || text[i] > '9') {
                text.clear();  // not our protocol: drop it rather than misread it
                return;
            }
            length = length * 10 + static_cast<std::size_t>(text[i] - '0');
        }
        if (text.size() - colon - 1 < length) break;
        std::string body = text.substr(colon + 1, length);
        at = colon + 1 + length;
        if (kind == 'N') out.notes.push_back(std::move(body));
        else if (kind == 'R') out.result = std::move(body);
        else if (kind == 'E') { out.error = std::move(body); out.has_error = true; }
    }
    text.erase(0, at);
}

// ---- the child, between fork and exec: async-signal-safe calls only

const char* step_text(ChildStep step) noexcept {
    switch (step) {
    case ChildStep::descriptors: return "set up the helper's descriptors";
    case ChildStep::group: return "start a process group for the helper";
    case ChildStep::regain_root: return "regain root for the helper";
    case ChildStep::set_groups: return "set the job's supplementary groups";
    case ChildStep::set_gid: return "set the job's gid";
    case ChildStep::set_uid: return "set the job's uid";
    case ChildStep::check_drop: return "drop to the job's user";
    case ChildStep::become_root: return "become root for the helper";
    case ChildStep::parent_death: return "set the helper's parent-death signal";
    case ChildStep::no_new_privs: return "set no_new_privs for the helper";
    case ChildStep::exec: return "execute the helper";
    }
    return "start the helper";
}

// A failure before the exec: "cannot <what> (errno N)" on the result socket. No
// strerror, no allocation: neither is async-signal-safe.
void report_to_parent(ChildStep step, int err, const void*) noexcept {
    char buf[200];
    std::size_t n = 0;
    auto put = [&](const char* s) { while (*s && n < sizeof buf - 16) buf[n++] = *s++; };
    put("cannot ");
    put(step_text(step));
    put(" (errno ");
    char digits[12];
    int d = 0;
    unsigned v = static_cast<unsigned>(err);
    do { digits[d++] = static_cast<char>('0' + v % 10); v /= 10; } while (v && d < 11);
    while (d) buf[n++] = digits[--d];
    buf[n++] = ')';
    // The record header: 'E', the length, ':'.
    char header[16];
    std::size_t h = 0;
    header[h++] = 'E';
    d = 0;
    v = static_cast<unsigned>(n);
    do { digits[d++] = static_cast<char>('0' + v % 10); v /= 10; } while (v && d < 11);
    while (d) header[h++] = digits[--d];
    header[h++] = ':';
    (void)!::write(helper_result_fd, header, h);
    (void)!::write(helper_result_fd, buf, n);
    ::_exit(127);
}

void set_nonblocking(int fd) {
    int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) throw_errno("cannot prepare the helper's pipes");
}

std::string how_it_ended(int status) {
    if (WIFSIGNALED(status)) return std::string("killed by ") + strsignal(WTERMSIG(status));
    if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
    return "status " + std::to_string(status);
}

std::string seconds_text(std::chrono::milliseconds ms) {
    if (ms.count() % 1000 == 0) return std::to_string(ms.count() / 1000) + "s";
    return std::to_string(ms.count()) + "ms";
}

// Receives what the socket holds now: bytes into `text`, descriptors into `fds`.
// Returns false at end of stream.
bool receive(int fd, std::string& text, std::vector<UniqueFd>& fds) {
    char data[8192];
    alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * 64)];
    struct iovec iov = {data, sizeof data};
    struct msghdr msg {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0) return errno == EINTR || errno == EAGAIN;
    for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const unsigned char* at = CMSG_DATA(c);
        for (std::size_t i = 0; i < count; ++i) {
            int received;
            std::memcpy(&received, at + i * sizeof(int), sizeof(int));
            fds.emplace_back(received);
        }
    }
    text.append(data, static_cast<std::size_t>(n));
    return n > 0;
}

// Reaps the helper, waiting at most `limit`. Its pipes closed as it exited, which is a
// moment before the kernel makes it reapable: a pidfd wakes the parent at that moment
// instead of after a fixed sleep. Returns false for a child still not gone (stuck in the
// kernel), which is then left as it is.
bool reap_within(pid_t pid, std::chrono::milliseconds limit, int& status) {
    const Clock::time_point give_up = Clock::now() + limit;
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    while (true) {
        int s = 0;
        pid_t r = ::waitpid(pid, &s, WNOHANG);
        if (r == pid) {
            status = s;
            return true;
        }
        if (r < 0 && errno != EINTR) return false;
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(give_up - Clock::now()).count();
        if (left <= 0) return false;
        if (pidfd) {
            struct pollfd exited = {pidfd.get(), POLLIN, 0};
            if (::poll(&exited, 1, static_cast<int>(left)) < 0 && errno != EINTR) pidfd.reset();
        } else {
            ::usleep(1000);  // a kernel without pidfd_open (before 5.3)
        }
    }
}

// One query of the job's state, in flight: a child (fork, then at once exec) whose
// standard output comes back through a pipe that the helper's loop polls. It runs with
// the caller's identity and none of its descriptors.
class JobStateQuery {
public:
    JobStateQuery(const std::vector<std::string>& command, const std::vector<std::string>& env) {
        const std::string& name = command.at(0);
        const char* path = std::getenv("PATH");
        std::string program = name.find('/') != std::string::npos
                                  ? name
                                  : find_program(name, split(path ? path : "/usr/bin:/bin", ':')).value_or("");
        if (program.empty()) return;
        int out[2];
        if (::pipe2(out, O_CLOEXEC) != 0) return;
        UniqueFd read_end(out[0]), write_end(out[1]);
        UniqueFd devnull(::open("/dev/null", O_RDWR | O_CLOEXEC));
        if (!devnull) return;
        SpawnPlan plan;
        plan.argv = command;
        plan.program = program;
        plan.env = env;
        plan.fds = {{0, devnull.get()}, {1, write_end.get()}, {2, devnull.get()}};
        sigemptyset(&plan.signal_mask.emplace());
        plan.purpose = "the job-state query";
        try {
            child_ = spawn(plan);
        } catch (const Error&) {
            return;  // no query this time: nothing is concluded
        }
        started_ = Clock::now();
        output_ = std::move(read_end);
        set_nonblocking(output_.get());
    }
    JobStateQuery(const JobStateQuery&) = delete;
    JobStateQuery& operator=(const JobStateQuery&) = delete;

    bool started() const { return child_.pid() > 0; }
    int fd() const { return output_.get(); }
    Clock::time_point started_at() const { return started_; }

    // Reads what is there; true once the query is over, its answer in *job (an empty
    // state when it failed).
    bool read_some(WatchedJob* job) {
        char buf[512];
        ssize_t n = ::read(output_.get(), buf, sizeof buf);
        if (n > 0) {
            if (text_.size() < 4096) text_.append(buf, static_cast<std::size_t>(n));
            return false;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return false;
        int status = child_.wait();
        bool gone = WIFEXITED(status) && WEXITSTATUS(status) == 1 && trim(text_).empty();
        bool answered = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        // squeue says "Invalid job id" (exit 1) for a job that has left the controller.
        *job = gone ? WatchedJob{"GONE", std::nullopt} : answered ? parse_job_state(text_) : WatchedJob{};
        return true;
    }

private:
    ChildProcess child_{-1};  // killed and reaped if the query is dropped
    Clock::time_point started_{};
    UniqueFd output_;
    std::string text_;
};

}  // namespace

WatchedJob parse_job_state(std::string_view squeue_output) {
    std::vector<std::string> words;
    for (const std::string& w : split(std::string(trim(squeue_output)), ' '))
        if (!w.empty()) words.push_back(w);
    WatchedJob job;
    if (words.empty()) return job;
    for (char c : words[0])
        if (!(c >= 'A' && c <= 'Z') && c != '_') return job;
    job.state = words[0];
    if (words.size() < 2) return job;
    // squeue's %L: [DAYS-][HOURS:]MINUTES:SECONDS, or UNLIMITED, NOT_SET, INVALID.
    std::string left = words[1];
    std::uint64_t days = 0;
    if (auto dash = left.find('-'); dash != std::string::npos) {
        auto d = parse_uint(left.substr(0, dash));
        if (!d) return job;
        days = *d;
        left = left.substr(dash + 1);
    }
    std::vector<std::string> parts = split(left, ':');
    if (parts.size() < 2 || parts.size() > 3) return job;
    std::uint64_t seconds = 0;
    for (const std::string& part : parts) {
        auto v = parse_uint(part);
        if (!v || *v > 1000000) return job;
        seconds = seconds * 60 + *v;
    }
    if (parts.size() == 2 && days) return job;  // "D-MM:SS" is no form squeue prints
    job.seconds_left = seconds + days * 86400;
    return job;
}

bool job_still_runs(const WatchedJob& job) {
    return job.state.empty() || job.state == "RUNNING" || job.state == "CONFIGURING" || job.state == "SUSPENDED";
}

// ---- OutputTail

void OutputTail::append(std::string_view bytes) {
    for (char c : bytes) {
        if (c == '\n') {
            if (!partial_.empty()) kept_.push_back(std::move(partial_));
            partial_.clear();
            if (kept_.size() > lines_) kept_.erase(kept_.begin());
        } else if (partial_.size() < line_bytes_) {
            partial_ += (c == '\t' || (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f)) ? c : '?';
        }
    }
}

std::string OutputTail::text() const {
    std::vector<std::string> all = kept_;
    if (!partial_.empty()) all.push_back(partial_);
    if (all.size() > lines_) all.erase(all.begin(), all.end() - static_cast<std::ptrdiff_t>(lines_));
    return join(all, " | ");
}

// ---- HelperChannel

void HelperChannel::note(std::string_view text) const noexcept { write_record(fd_, 'N', text); }
void HelperChannel::error(std::string_view text) const noexcept { write_record(fd_, 'E', text); }
void HelperChannel::result(std::string_view text) const noexcept { write_record(fd_, 'R', text); }

void HelperChannel::send_fds(const std::vector<int>& fds) const {
    for (std::size_t at = 0; at < fds.size(); at += 64) {
        std::size_t count = std::min<std::size_t>(64, fds.size() - at);
        char marker = 'F';
        struct iovec iov = {&marker, 1};
        alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * 64)] = {};
        struct msghdr msg {};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * count);
        struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * count);
        std::memcpy(CMSG_DATA(c), fds.data() + at, sizeof(int) * count);
        while (::sendmsg(fd_, &msg, 0) < 0)
            if (errno != EINTR) throw_errno("cannot hand descriptors to slurmstepd");
        // The marker byte is no record: "F0:" keeps the stream in step.
        write_all(fd_, "0:");
    }
}

std::string read_helper_request(std::size_t limit) {
    std::string text;
    char buf[8192];
    while (true) {
        ssize_t n = ::read(helper_request_fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw_errno("cannot read the request from slurmstepd on fd 3");
        if (n == 0) break;
        text.append(buf, static_cast<std::size_t>(n));
        if (text.size() > limit) throw Error("the request from slurmstepd is larger than " + std::to_string(limit) + " bytes");
    }
    return text;
}

// ---- run_helper

namespace {

// True once PID has exited; it stays a zombie, holding its pid and process group id,
// until it is reaped.
bool helper_has_exited(pid_t pid) {
    siginfo_t info{};
    return ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid;
}

}  // namespace

HelperOutcome run_helper(const HelperRun& run) {
    std::vector<std::string> words;
    words.push_back(run.program);
    words.insert(words.end(), run.args.begin(), run.args.end());
    // slurmd's own PATH and SLURM_CONF (never the job's), so that the helper finds the
    // Slurm commands it asks whether the job still runs.
    const char* path = std::getenv("PATH");
    std::vector<std::string> env = {std::string("PATH=") + (path ? path : "/usr/sbin:/usr/bin:/sbin:/bin"), "LC_ALL=C"};
    if (const char* conf = std::getenv("SLURM_CONF")) env.push_back(std::string("SLURM_CONF=") + conf);

    int request_pipe[2], output_pipe[2], sockets[2];
    if (::pipe2(request_pipe, O_CLOEXEC) != 0) throw_errno("cannot create the " + run.purpose + " helper's request pipe");
    UniqueFd request_read(request_pipe[0]), request_write(request_pipe[1]);
    if (::pipe2(output_pipe, O_CLOEXEC) != 0) throw_errno("cannot create the " + run.purpose + " helper's output pipe");
    UniqueFd output_read(output_pipe[0]), output_write(output_pipe[1]);
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets) != 0)
        throw_errno("cannot create the " + run.purpose + " helper's result socket");
    UniqueFd result_parent(sockets[0]), result_child(sockets[1]);
    UniqueFd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!devnull) throw_errno("cannot prepare the helper's descriptors");
    if (run.user && run.user->uid == 0)
        throw Error("refusing to run the " + run.purpose + " helper as root for a job of uid 0");

    SpawnPlan plan;
    plan.argv = std::move(words);
    plan.env = env;
    // Signals: an empty mask and default actions, since both survive exec. The result
    // socket first, so that a later failure reaches the parent on fd 4.
    sigemptyset(&plan.signal_mask.emplace());
    plan.default_signal_actions = true;
    plan.fds = {{helper_result_fd, result_child.get()}, {0, devnull.get()}, {1, output_write.get()},
                {2, output_write.get()}, {helper_request_fd, request_read.get()}};
    plan.report_fd = helper_result_fd;
    plan.on_failure = report_to_parent;
    plan.group = ChildGroup::own_group;
    // Back to root wholly (user_init runs with euid = the user, saved uid 0), then, for
    // the user's work, down to the user for good.
    plan.regain_root = true;
    plan.reset_oom_score = true;
    plan.user = run.user;
    plan.become_root = !run.user;
    // The parent-death signal comes after the credential change, which clears it: a
    // helper must not outlive a slurmstepd that crashed.
    plan.die_with_parent = true;
    plan.no_new_privs = true;
    plan.purpose = "the " + run.purpose + " helper";
    ChildProcess child = spawn(plan);
    const pid_t pid = child.pid();
    request_read.reset();
    result_child.reset();
    output_write.reset();
    devnull.reset();
    set_nonblocking(request_write.get());
    set_nonblocking(output_read.get());

    std::string_view unsent = run.request;
    if (unsent.empty()) request_write.reset();
    std::string record_text;
    Records records;
    HelperOutcome outcome;
    OutputTail tail;
    bool result_open = true, output_open = true;
    Clock::time_point deadline = Clock::now() + run.deadline;
    int signals_sent = 0;  // 0 none, 1 SIGTERM, 2 SIGKILL
    bool timed_out = false;
    Clock::time_point kill_at{};
    // The job's state, watched from here: the helper may be stopped.
    const Clock::time_point started = Clock::now();
    Clock::time_point next_query = started + run.watch_after;
    std::chrono::milliseconds query_every = run.watch_every;
    std::optional<JobStateQuery> query;
    WatchedJob ended;            // the state of a job that stopped running
    bool clamped = false;        // the deadline was brought down to the job's time left
    std::size_t received = 0;    // bytes on the result socket, bounded
    constexpr std::size_t received_max = 1u << 24;
    constexpr std::size_t fds_max = 4096;
    // The helper's own exit ends the wait, not the end of its pipes: a process it left
    // in its group may hold them open as long as it likes, and is killed below.
    // Once it has exited, what it wrote is all in the pipes: it is read to the end (however
    // late this process gets the CPU), then anything still writing is cut off.
    UniqueFd exit_watch(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    std::optional<Clock::time_point> exited_at;
    bool last_pass = false;  // read what is there, without waiting for more
    constexpr auto wait_after_exit = std::chrono::milliseconds(200);
    constexpr auto read_after_exit = std::chrono::seconds(2);

    while (result_open || output_open) {
        Clock::time_point now = Clock::now();
        if (!exited_at && helper_has_exited(pid)) exited_at = now;
        if (exited_at && now >= *exited_at + wait_after_exit) last_pass = true;
        if (exited_at && now >= *exited_at + read_after_exit) break;  // a leftover that never stops writing
        if (!run.job_state_command.empty() && signals_sent == 0) {
            if (!query && now >= next_query) {
                query.emplace(run.job_state_command, env);
                if (!query->started()) query.reset();
                next_query = now + query_every;
                query_every = std::min(query_every * 2, std::max(run.watch_every_max, run.watch_every));
            } else if (query && now - query->started_at() > std::chrono::seconds(20)) {
                query.reset();  // a controller that does not answer says nothing
            }
        }
        if (now >= deadline && signals_sent == 0) {
            timed_out = true;
            ::kill(-pid, SIGTERM);
            signals_sent = 1;
            kill_at = now + run.grace;
        } else if (signals_sent == 1 && now >= kill_at) {
            ::kill(-pid, SIGKILL);
            signals_sent = 2;
            kill_at = now + std::chrono::seconds(10);
        } else if (signals_sent == 2 && now >= kill_at) {
            break;  // a process stuck in the kernel: stop waiting on its pipes
        }
        Clock::time_point wake = signals_sent == 0 ? deadline : kill_at;
        if (signals_sent == 0 && !run.job_state_command.empty() && !query) wake = std::min(wake, next_query);
        if (exited_at) wake = std::min(wake, last_pass ? now : *exited_at + wait_after_exit);
        auto wait_ms = std::chrono::duration_cast<std::chrono::milliseconds>(wake - now).count();
        struct pollfd fds[5];
        nfds_t n = 0;
        int result_slot = -1, output_slot = -1, request_slot = -1, query_slot = -1;
        if (exit_watch && !exited_at) fds[n++] = {exit_watch.get(), POLLIN, 0};
        if (result_open) { result_slot = static_cast<int>(n); fds[n++] = {result_parent.get(), POLLIN, 0}; }
        if (output_open) { output_slot = static_cast<int>(n); fds[n++] = {output_read.get(), POLLIN, 0}; }
        if (request_write) { request_slot = static_cast<int>(n); fds[n++] = {request_write.get(), POLLOUT, 0}; }
        if (query) { query_slot = static_cast<int>(n); fds[n++] = {query->fd(), POLLIN, 0}; }
        int ready = ::poll(fds, n, static_cast<int>(std::clamp<long long>(wait_ms, 0, 1000)));
        if (ready < 0 && errno != EINTR) throw_errno("cannot wait for the " + run.purpose + " helper");
        if (ready == 0 && last_pass) break;  // everything the helper wrote is read
        if (ready <= 0) continue;
        if (query_slot >= 0 && fds[query_slot].revents) {
            WatchedJob job;
            if (query->read_some(&job)) {
                query.reset();
                if (!job_still_runs(job) && signals_sent == 0) {
                    // SIGKILL: a stopped helper does not take SIGTERM until it is continued.
                    ended = job;
                    ::kill(-pid, SIGKILL);
                    signals_sent = 2;
                    kill_at = Clock::now() + std::chrono::seconds(10);
                } else if (job.seconds_left && !clamped) {
                    clamped = true;
                    deadline = std::min(deadline, Clock::now() + std::chrono::seconds(*job.seconds_left));
                }
            }
        }
        if (request_slot >= 0 && fds[request_slot].revents) {
            ssize_t w = ::write(request_write.get(), unsent.data(), unsent.size());
            if (w > 0) unsent.remove_prefix(static_cast<std::size_t>(w));
            if (unsent.empty() || (w < 0 && errno != EAGAIN && errno != EINTR)) request_write.reset();
        }
        if (result_slot >= 0 && fds[result_slot].revents) {
            std::size_t before = record_text.size();
            result_open = receive(result_parent.get(), record_text, outcome.fds);
            received += record_text.size() - before;
            take_records(record_text, records);
            // A runaway (or tampered-with) helper is cut off, and its work counts as failed.
            if (received > received_max || outcome.fds.size() > fds_max) {
                result_open = false;
                records.has_error = true;
                records.error = "the " + run.purpose + " helper sent more than " + std::to_string(received_max) +
                                " bytes or " + std::to_string(fds_max) + " descriptors, and was stopped";
                outcome.fds.clear();
            }
        }
        if (output_slot >= 0 && fds[output_slot].revents) {
            char buf[4096];
            ssize_t r = ::read(output_read.get(), buf, sizeof buf);
            if (r > 0) tail.append(std::string_view(buf, static_cast<std::size_t>(r)));
            else if (r == 0 || (errno != EAGAIN && errno != EINTR)) output_open = false;
        }
    }
    request_write.reset();
    // Whatever the helper left behind in its group goes with it.
    ::kill(-pid, SIGKILL);
    int status = W_EXITCODE(255, 0);
    bool reaped = reap_within(pid, std::chrono::seconds(1), status);
    // One stuck in the kernel is left as it is: a hung slurmstepd would be worse.
    child.forget();

    std::string output = tail.text();
    std::string printed = output.empty() ? "" : "; it printed: " + output;
    if (!ended.state.empty())
        throw HelperFailed("the job is " + ended.state + ", so its " + run.purpose + " was stopped" + printed, false, true);
    if (timed_out && clamped)
        throw HelperFailed("the " + run.purpose + " did not finish before the job's time limit and was stopped" + printed,
                           true);
    if (timed_out)
        throw HelperFailed("the " + run.purpose + " did not finish within " + seconds_text(run.deadline) +
                               " (site key stage_timeout) and was stopped" + printed,
                           true);
    if (records.has_error) throw HelperFailed(records.error, false);
    if (!reaped || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        throw HelperFailed("the " + run.purpose + " helper " + run.program + " ended without finishing (" +
                               (reaped ? how_it_ended(status) : std::string("not reaped")) + ")" + printed,
                           false);
    outcome.notes = std::move(records.notes);
    outcome.result = std::move(records.result);
    return outcome;
}

}  // namespace aihpc
