// The task wrapper and the requeue after a checkpoint (task_wrapper.hpp).
#include "stage/task_wrapper.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/child_process.hpp"
#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/process.hpp"
#include "common/spawn.hpp"
#include "common/text.hpp"
#include "config/user_options.hpp"
#include "stage/fs.hpp"
#include "stage/node_layout.hpp"
#include "stage/node_steps.hpp"
#include "stage/stage_out.hpp"

namespace aihpc::stage {

using node::job_text;
using node::layout;
using node::batch_step_id;
using node::planned_deliveries;
using node::stage_threads;

namespace {

// Counts this task's end in the job's meta dir; true for the step's last task here.
bool last_task_to_end(const NodeRequest& r) {
    stage::JobLayout l = layout(r);
    UniqueFd meta = stage::open_dir(l.meta_dir);
    std::string name = "tasks-ended." + std::to_string(r.step_id);
    UniqueFd counter(::openat(meta.get(), name.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600));
    if (!counter) throw_errno("cannot open " + stage::join_path(l.meta_dir, name));
    while (::flock(counter.get(), LOCK_EX) != 0)
        if (errno != EINTR) throw_errno("cannot lock " + stage::join_path(l.meta_dir, name));
    char buf[32] = {};
    ssize_t n = ::pread(counter.get(), buf, sizeof buf - 1, 0);
    std::uint64_t ended = (n > 0 ? parse_uint(std::string(buf, static_cast<std::size_t>(n))).value_or(0) : 0) + 1;
    std::string text = std::to_string(ended);
    if (::ftruncate(counter.get(), 0) != 0 || ::pwrite(counter.get(), text.data(), text.size(), 0) < 0)
        throw_errno("cannot update " + stage::join_path(l.meta_dir, name));
    return ended >= r.local_tasks;
}

// The signals passed on to the task's command: those Slurm sends at a time limit, a
// cancel, a preemption or --signal, and those users send.
constexpr int forwarded_signals[] = {SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGCONT, SIGHUP};

void task_signals(sigset_t* set) {
    sigemptyset(set);
    for (int sig : forwarded_signals) sigaddset(set, sig);
}

std::string stage_out_interrupt_note;
volatile sig_atomic_t stage_out_interrupted = 0;

void note_interrupted_stage_out(int) {
    if (stage_out_interrupted) return;
    stage_out_interrupted = 1;
    (void)!::write(2, stage_out_interrupt_note.data(), stage_out_interrupt_note.size());
}

// Waits for the command, passing on each signal this wrapper takes to its process
// group, which the command shares. Slurm signals every process of a step itself
// (proctrack), so what slurmstepd (this wrapper's parent) sends already reached the
// command and is not sent twice; what anyone else sends the wrapper alone is passed on.
// The wrapper's own forwards come back to it through the group, and are dropped. At
// `alarm`, when given, `on_alarm` runs once.
int wait_passing_signals(pid_t pid, const sigset_t& taken, std::optional<std::chrono::steady_clock::time_point> alarm,
                         const std::function<void()>& on_alarm) {
    const pid_t self = ::getpid(), slurmstepd = ::getppid();
    while (true) {
        int status = 0;
        pid_t done = ::waitpid(pid, &status, WNOHANG);
        if (done == pid) return status;
        if (done < 0 && errno != EINTR) return W_EXITCODE(1, 0);
        siginfo_t info{};
        int sig;
        if (alarm) {
            auto left = *alarm - std::chrono::steady_clock::now();
            if (left <= std::chrono::steady_clock::duration::zero()) {
                alarm.reset();
                on_alarm();
                continue;
            }
            auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
            struct timespec wait = {static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
            sig = ::sigtimedwait(&taken, &info, &wait);
        } else {
            sig = ::sigwaitinfo(&taken, &info);
        }
        if (sig < 0 || sig == SIGCHLD) continue;
        bool sent_by_process = info.si_code == SI_USER || info.si_code == SI_QUEUE || info.si_code == SI_TKILL;
        if (sent_by_process && (info.si_pid == self || info.si_pid == slurmstepd)) continue;
        ::kill(0, sig);
    }
}

// ---- the checkpoint signal and the requeue (--aihpc-checkpoint)

// When the checkpoint signal is due: SECS before the job's time limit, as the controller
// says now; nullopt for a job without a limit, or when the controller does not answer.
std::optional<std::chrono::steady_clock::time_point> checkpoint_signal_time(const NodeRequest& r) {
    CommandOutput out = capture_output({"squeue", "-h", "-j", job_text(r), "-o", "%T %L"});
    WatchedJob job = parse_job_state(out.status == 0 ? out.out : "");
    if (!job.seconds_left) return std::nullopt;
    std::int64_t in = static_cast<std::int64_t>(*job.seconds_left) - r.options.checkpoint->seconds;
    return std::chrono::steady_clock::now() + std::chrono::seconds(std::max<std::int64_t>(in, 0));
}

// Whether the job runs steps of its own now (srun), besides the batch and extern steps.
bool job_runs_steps(const NodeRequest& r) {
    CommandOutput out = capture_output({"squeue", "-h", "-s", "-j", job_text(r), "-o", "%i"});
    for (const std::string& line : split(out.out, '\n')) {
        auto dot = line.find('.');
        if (dot != std::string::npos && parse_uint(trim(line.substr(dot + 1)))) return true;
    }
    return false;
}

// Sends the checkpoint signal to the command. The tasks of srun steps get it from their
// own wrapper; the batch script gets it only when it is the application itself, that is
// when no step runs: srun passes signals on to its tasks, which would get it twice.
void send_checkpoint_signal(const NodeRequest& r) {
    const config::CheckpointRequest& c = *r.options.checkpoint;
    if (r.step_id == batch_step_id && job_runs_steps(r)) return;
    std::fprintf(stderr, "aihpc: SIG%s to the task: %u s before the job's time limit (--aihpc-checkpoint); exit %d "
                         "once the checkpoint is written, and the job is requeued\n",
                 c.signal_name.c_str(), c.seconds, config::checkpoint_requeue_exit);
    ::kill(0, c.signal);
}

// Makes AIHPC_CHECKPOINT_DIR and its missing parents, as the job's user.
void make_checkpoint_dir(const std::string& dir) {
    std::string path;
    for (const std::string& part : split(dir, '/')) {
        if (part.empty()) continue;
        path += "/" + part;
        if (::mkdir(path.c_str(), 0777) != 0 && errno != EEXIST)
            throw_errno("--aihpc-checkpoint: cannot make the checkpoint dir " + dir + " (at " + path + ")");
    }
}

// Requeues the job after its command wrote its checkpoint: Slurm ends this run and starts
// the job again under its id, with SLURM_RESTART_COUNT one higher. The message, or the
// reason it failed.
std::pair<bool, std::string> requeue_job(const NodeRequest& r) {
    CommandOutput out = capture_output({"scontrol", "requeue", job_text(r)});
    if (out.status != 0)
        return {false, "the task exited " + std::to_string(config::checkpoint_requeue_exit) +
                           " after its checkpoint, and job " + job_text(r) + " could not be requeued: " +
                           std::string(trim(out.err)) + " (is it submitted with --no-requeue?)"};
    return {true, "the task exited " + std::to_string(config::checkpoint_requeue_exit) + " after its checkpoint: job " +
                      job_text(r) + " is requeued, and resumes from " + r.checkpoint_dir.value_or("")};
}

void requeue_after_checkpoint(const NodeRequest& r) {
    std::fprintf(stderr, "aihpc: %s\n", requeue_job(r).second.c_str());
}

// The stage-out of a step, by its last task to end on the node. Whether everything was
// delivered; what was not is said on stderr.
bool deliver_if_last_task(const NodeRequest& r) {
    try {
        if (!last_task_to_end(r)) return true;
        stage::DeliveryReport report =
            stage::deliver_step(layout(r), planned_deliveries(r), r.step_id, job_text(r), stage_threads(r.site));
        for (const std::string& note : report.notes) std::fprintf(stderr, "aihpc: %s\n", note.c_str());
        if (report.failures.empty()) return true;
        for (const std::string& failure : report.failures) std::fprintf(stderr, "aihpc: %s\n", failure.c_str());
        std::fprintf(stderr, "aihpc: the task fails because its stage-out did not deliver; the stage dir %s is kept\n",
                     layout(r).stage_dir.c_str());
        return false;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "aihpc: stage-out failed: %s; the task fails\n", e.what());
        return false;
    }
}

// The wrapper's own end, as its command's (`status`): the same signal or exit code, and a
// failure where the command succeeded but its stage-out did not deliver.
int end_as_command(int status, bool delivered) {
    if (WIFSIGNALED(status)) {
        // The task ends as its command did, without a core of this program.
        struct rlimit none {};
        ::setrlimit(RLIMIT_CORE, &none);
        ::signal(WTERMSIG(status), SIG_DFL);
        sigset_t just;
        sigemptyset(&just);
        sigaddset(&just, WTERMSIG(status));
        ::sigprocmask(SIG_UNBLOCK, &just, nullptr);
        ::raise(WTERMSIG(status));
        return 128 + WTERMSIG(status);
    }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    return code == 0 && !delivered ? 1 : code;
}

}  // namespace

// As the user, from slurmstepd after a step that stages out recorded its delivery: the
// requeue that the task wrapper leaves to it, so that the requeue's end of this run
// cannot cut the stage-out or root's record of it.
void node::requeue(const NodeRequest& r, const HelperChannel& channel) {
    auto [requeued, message] = requeue_job(r);
    if (!requeued) throw Error(message);
    channel.note(message);
}

// The task's command runs as this program's child; when it ends, the step's last task
// on the node stages out, as the user, before the task's status goes to Slurm. So a
// stage-out that delivered nothing fails the task, the step and a batch job: afterok
// never sees such a job COMPLETED.
int run_task(int argc, char** argv) {
    const char* text = std::getenv("AIHPC_TASK_REQUEST");
    if (!text) {
        std::fputs("aihpc-node: run-task is started by the aihpc plugin for a step with --aihpc-stage-out or "
                   "--aihpc-checkpoint\n",
                   stderr);
        return 2;
    }
    NodeRequest r;
    try {
        r = stage::parse_node_request(text);
        if (r.options.checkpoint && r.checkpoint_dir) make_checkpoint_dir(*r.checkpoint_dir);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "aihpc: cannot start the task: %s\n", e.what());
        return 1;
    }
    ::unsetenv("AIHPC_TASK_REQUEST");
    const bool stages_out = !r.options.stage_out.empty();
    std::vector<std::string> command;
    if (r.argv0) command.push_back(*r.argv0);
    for (int i = r.argv0 ? 1 : 2; i < argc; ++i) command.emplace_back(argv[i]);
    if (command.empty()) {
        std::fputs("aihpc: the task has no command to run\n", stderr);
        return 1;
    }
    const std::string cannot_run = "aihpc: cannot run " + command[0];
    SpawnPlan plan;
    plan.argv = command;
    plan.search_path = true;
    // The command runs in the task's place: it keeps every descriptor the task was given
    // (an MPI launcher's among them).
    plan.keep_other_fds = true;
    plan.on_failure = report_failure_on_stderr;
    plan.failure_context = cannot_run.c_str();
    plan.purpose = "the task";
    std::fflush(nullptr);
    // The signals a task gets from Slurm and users are taken here, never by default
    // action: this wrapper outlives its command, so that the command has all of its
    // KillWait, and the stage-out runs after it.
    sigset_t taken, original;
    task_signals(&taken);
    sigaddset(&taken, SIGCHLD);
    ::sigprocmask(SIG_BLOCK, &taken, &original);
    plan.signal_mask = original;
    ChildProcess child(-1);
    try {
        child = spawn(plan);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "aihpc: %s\n", e.what());
        return 1;
    }
    const pid_t pid = child.pid();
    std::optional<std::chrono::steady_clock::time_point> signal_at;
    if (r.options.checkpoint) signal_at = checkpoint_signal_time(r);
    int status = wait_passing_signals(pid, taken, signal_at, [&] { send_checkpoint_signal(r); });
    child.forget();  // reaped by wait_passing_signals
    // A time limit or a cancel during the stage-out: the copy goes on until Slurm kills
    // the task, and what is not delivered by then stays kept on the node.
    if (stages_out)
        stage_out_interrupt_note =
            "aihpc: the task was signalled during its stage-out, which goes on until Slurm stops it; what it does not "
            "deliver stays on " + r.node + "; the job's epilog tries to finish it, and 'aihpc-stage deliver " + job_text(r) +
            "' in a job there finishes what is left\n";
    struct sigaction note {};
    note.sa_handler = note_interrupted_stage_out;
    sigemptyset(&note.sa_mask);
    for (int sig : forwarded_signals)
        if (sig != SIGCONT) ::sigaction(sig, &note, nullptr);
    ::sigprocmask(SIG_SETMASK, &original, nullptr);
    const bool delivered = !stages_out || deliver_if_last_task(r);
    // After the stage-out, which delivers what the checkpoint wrote: the requeue ends this
    // run. A step that stages out leaves it to slurmstepd, which records the delivery first.
    if (r.options.checkpoint && WIFEXITED(status) && WEXITSTATUS(status) == config::checkpoint_requeue_exit) {
        if (stages_out)
            std::fprintf(stderr, "aihpc: the task exited %d after its checkpoint: job %s is requeued once its stage-out "
                                 "is recorded, and resumes from %s\n",
                         config::checkpoint_requeue_exit, job_text(r).c_str(), r.checkpoint_dir.value_or("").c_str());
        else
            requeue_after_checkpoint(r);
    }
    std::fflush(stderr);
    return end_as_command(status, delivered);
}

}  // namespace aihpc::stage
