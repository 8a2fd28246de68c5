// aihpc-node: the node work that the aihpc plugin hands out of slurmstepd.
//
// The plugin forks and at once execs this program (lib/common/node_helper.hpp): as the
// job's user for the user's work (stage-out, image digests), as root for root's (the
// directories under local_root, the epilog's cleanup). A step's stage-in starts it once,
// as root (prepare-stage-in): root's part, then the stage-in after the program dropped
// to the job's user for good, as the plugin would before an exec. It reads one request
// on fd 3 and answers on fd 4: notes, an error, a result, and the cache leases the step
// holds, as descriptors. Everything it needs comes in the request, from slurmstepd: the
// site's plugstack arguments, the job's raw --aihpc-* options and the step's identity,
// which this program parses with the same code as the plugin. Not meant to be run by
// hand.
#include <fcntl.h>
#include <spawn.h>
#include <grp.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/json.hpp"
#include "common/node_helper.hpp"
#include "common/text.hpp"
#include "config.h"
#include "config/site_config.hpp"
#include "config/user_options.hpp"
#include "container/digest_cache.hpp"
#include "container/image.hpp"
#include "stage/cache_ledger.hpp"
#include "stage/fs.hpp"
#include "stage/node_cache.hpp"
#include "stage/node_layout.hpp"
#include "stage/node_request.hpp"
#include "stage/stage_in.hpp"
#include "stage/stage_out.hpp"
#include "stage/tree_copy.hpp"

extern char** environ;

using namespace aihpc;

namespace {

constexpr const char* usage =
    "Usage: aihpc-node prepare|stage-in|prepare-stage-in|account|stage-out|keep|digest|epilog\n"
    "       aihpc-node run-task COMMAND...   (with AIHPC_STAGE_OUT_TASK set)\n"
    "Does one piece of aihpc's node work for slurmstepd, which starts it with a request\n"
    "on fd 3 and reads the answer on fd 4. It is not meant to be run by hand.\n"
    "\n"
    "  --help      show this help\n"
    "  --version   show the version\n"
    "\n"
    "See aihpc(8), section SECURITY.\n";

using stage::NodeRequest;

std::string local_root(const NodeRequest& r) { return r.site.local_root_for(r.node); }
std::string job_text(const NodeRequest& r) { return std::to_string(r.job_id); }
stage::JobLayout layout(const NodeRequest& r) { return stage::job_layout(local_root(r), r.job_id, r.uid); }

unsigned stage_threads(const config::SiteConfig& site) {
    return site.stage_threads ? site.stage_threads : stage::default_copy_threads();
}

// How long a lock may be waited for: nine tenths of stage_timeout, so that the wait
// ends with its own message before the helper is stopped.
std::chrono::milliseconds lock_wait(const NodeRequest& r) {
    return std::chrono::milliseconds(static_cast<std::uint64_t>(r.site.stage_timeout_s) * 900);
}

bool needs_cache_limits(const config::UserOptions& options) {
    return !options.stage.empty() && options.stage_mode != config::StageMode::private_;
}

// ---- the job's state, watched while the work runs

// Slurm cannot tell a step that is still starting that its job was cancelled: slurmd
// waits for the step to finish starting before it signals it, so the node would stay
// COMPLETING for as long as a stage-in ran. The helper asks instead: every few seconds
// squeue says whether the job still runs, and once it does not, the work stops and the
// helper exits. A squeue that fails (no controller) says nothing, and the work goes on.
class JobWatch {
public:
    explicit JobWatch(std::uint32_t job_id) : job_(std::to_string(job_id)), thread_([this] { watch(); }) {}
    JobWatch(const JobWatch&) = delete;
    JobWatch& operator=(const JobWatch&) = delete;
    ~JobWatch() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            done_ = true;
        }
        wake_.notify_all();
        thread_.join();
    }

private:
    // The job's state as squeue prints it, or "" when squeue could not say.
    std::string job_state() const {
        int out[2];
        if (::pipe2(out, O_CLOEXEC) != 0) return "";
        UniqueFd read_end(out[0]), write_end(out[1]);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, write_end.get(), 1);
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
        std::string job = job_;
        char* argv[] = {const_cast<char*>("squeue"), const_cast<char*>("-h"), const_cast<char*>("-j"), job.data(),
                        const_cast<char*>("-o"), const_cast<char*>("%T"), nullptr};
        pid_t pid = -1;
        int rc = ::posix_spawnp(&pid, "squeue", &actions, nullptr, argv, environ);
        posix_spawn_file_actions_destroy(&actions);
        write_end.reset();
        if (rc != 0) return "";
        std::string text;
        char buf[256];
        ssize_t n;
        while ((n = ::read(read_end.get(), buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
            if (n > 0) text.append(buf, static_cast<std::size_t>(n));
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        std::string state(trim(text));
        // An unknown job id: squeue exits 1 ("Invalid job id"); the job is gone.
        if (WIFEXITED(status) && WEXITSTATUS(status) == 1 && state.empty()) return "GONE";
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return "";
        return state.empty() ? "GONE" : state;
    }

    void watch() {
        std::unique_lock<std::mutex> lock(mutex_);
        while (!wake_.wait_for(lock, std::chrono::seconds(5), [this] { return done_; })) {
            lock.unlock();
            std::string state = job_state();
            lock.lock();
            if (done_ || state.empty() || state == "RUNNING" || state == "CONFIGURING" || state == "SUSPENDED") continue;
            std::fprintf(stderr, "aihpc-node: job %s is %s; stopping its node work\n", job_.c_str(), state.c_str());
            std::fflush(stderr);
            // Nothing half-made becomes visible: every copy is published by rename.
            ::_exit(3);
        }
    }

    std::string job_;
    std::mutex mutex_;
    std::condition_variable wake_;
    bool done_ = false;
    std::thread thread_;
};

// As root: the job's and the user's directories under the root-owned local_root, and,
// for a cache-mode stage-in, the user's share of the node cache (else zeros).
stage::CacheLimits prepare_node(const NodeRequest& r) {
    if (r.uid == 0) throw Error("root's jobs are not staged; run the job as a regular user");
    std::string root_path = local_root(r);
    stage::JobLayout l = layout(r);
    UniqueFd root = stage::open_local_root(root_path, true);
    // What earlier epilogs left in trash/ goes first, within a small budget.
    stage::empty_trash(root_path, std::chrono::milliseconds(500));
    UniqueFd cache = stage::root_dir_at(root.get(), "cache", stage::join_path(root_path, "cache"));
    stage::user_dir_at(cache.get(), std::to_string(r.uid), r.uid, r.gid, l.cache_dir);
    if (!r.options.stage.empty() || !r.options.stage_out.empty()) {
        UniqueFd jobs = stage::root_dir_at(root.get(), "jobs", stage::join_path(root_path, "jobs"));
        stage::user_dir_at(jobs.get(), job_text(r), r.uid, r.gid, l.stage_dir);
        stage::user_dir_at(jobs.get(), job_text(r) + ".aihpc", r.uid, r.gid, l.meta_dir);
    }
    if (!needs_cache_limits(r.options)) return {};
    struct statvfs fs {};
    std::uint64_t fs_bytes = ::fstatvfs(cache.get(), &fs) == 0 ? static_cast<std::uint64_t>(fs.f_blocks) * fs.f_frsize : 0;
    // Root's own measures of every user's cache (the ledger), never a number a user wrote.
    stage::CacheLimits limits = stage::root_cache_limits(cache.get(), r.uid, r.site.cache_max.resolve(fs_bytes),
                                                         r.site.cache_low_bytes(fs_bytes),
                                                         r.site.cache_user_max_bytes(fs_bytes),
                                                         stage::join_path(root_path, "cache"));
    return limits;
}

// As root. Result: "MAX LOW".
void prepare(const NodeRequest& r, const HelperChannel& channel) {
    stage::CacheLimits limits = prepare_node(r);
    channel.result(std::to_string(limits.max_bytes) + " " + std::to_string(limits.low_bytes));
}

// As root, after the user's stage-in: what the user's cache now holds, into the ledger.
void account(const NodeRequest& r, const HelperChannel&) {
    std::string root_path = local_root(r);
    UniqueFd root = stage::open_local_root(root_path, false);
    UniqueFd cache = stage::root_dir_at(root.get(), "cache", stage::join_path(root_path, "cache"));
    stage::root_account_user_cache(cache.get(), r.uid, stage::join_path(root_path, "cache"));
}

// As root, after a stage-out that did not deliver: root's own record that the job's
// stage dir stays (keep_failed_days), which the epilog honours and the ledger counts.
void keep(const NodeRequest& r, const HelperChannel& channel) {
    stage::mark_job_kept(local_root(r), r.job_id, r.uid, "stage-out failed");
    channel.note("job " + job_text(r) + ": stage-out failed, so " + layout(r).stage_dir + " is kept for " +
                 std::to_string(r.site.keep_failed_days) + " days");
}

// As the user: every item staged, its lease handed to slurmstepd, the list recorded in
// the job's meta dir for the steps that follow. Result: the items (format_job_items).
void stage_in(const NodeRequest& r, const HelperChannel& channel) {
    stage::JobLayout l = layout(r);
    UniqueFd meta = stage::open_dir(l.meta_dir);
    // Steps of one job starting together on a node stage one after the other: the
    // second finds the first one's work. A lock the user holds forever costs a bounded
    // wait, a little under the helper's own deadline, and a message naming it.
    UniqueFd job_lock = stage::lock_job_meta(meta.get(), lock_wait(r), l.meta_dir);

    std::map<std::string, stage::JobItem> before;
    for (stage::JobItem& i :
         stage::parse_job_items(stage::read_small_file_at(meta.get(), "items", stage::small_file_max).value_or("")))
        before[i.name] = i;

    stage::StageSettings settings;
    settings.to_dir = l.stage_dir;
    settings.cache_dir = l.cache_dir;
    settings.limits = r.limits;
    settings.private_mode = r.options.stage_mode == config::StageMode::private_;
    settings.verify = r.options.stage_verify;
    settings.threads = stage_threads(r.site);
    settings.uid = r.uid;
    settings.base_dir = r.submit_dir;
    settings.allow = r.site.stage_allow;
    settings.lock_wait = lock_wait(r);

    std::vector<stage::JobItem> recorded;
    std::vector<stage::Lease> leases;
    for (const config::StageItem& item : r.options.stage) {
        auto old = before.find(item.name);
        if (settings.private_mode && old != before.end() && old->second.outcome == "private") {
            recorded.push_back(old->second);  // the job's own writable copy: never redone
            continue;
        }
        stage::StagedItem staged = stage::stage_in(item.src, item.name, settings);
        channel.note("stage-in " + item.name + ": " + stage::to_string(staged.outcome) + ", " + std::to_string(staged.files) +
                     " files, " + std::to_string(staged.bytes) + " bytes, " + std::to_string(staged.seconds) + "s");
        recorded.push_back({staged.name, staged.path, staged.manifest_hash, staged.key, stage::to_string(staged.outcome)});
        if (staged.lease) leases.push_back(std::move(staged.lease));
    }
    stage::write_file_atomic_at(meta.get(), "items", stage::format_job_items(recorded), 0600,
                                stage::join_path(l.meta_dir, "items"));
    std::vector<int> fds;
    for (const stage::Lease& lease : leases) fds.push_back(lease.fd());
    // The descriptors first: slurmstepd takes the result as the sign that all arrived.
    channel.send_fds(fds);
    channel.result(stage::format_job_items(recorded));
}

// Drops this process to the job's user for good, as the plugin does before it execs the
// user's work (lib/common/node_helper.cpp): every descriptor but the request, result and
// output ones closed first (root's opened only root-owned paths under local_root), then
// the groups, gid and uid, checked. The kernel makes a process that changed its
// credentials undumpable, so the user can neither trace it nor read what root's part
// left in its memory; it also clears the parent-death signal, which is set again.
void become_job_user(const NodeRequest& r) {
    if (r.uid == 0) throw Error("refusing to stage in as root for a job of uid 0");
    if (::syscall(SYS_close_range, 5u, ~0u, 0u) != 0) throw_errno("cannot close root's descriptors before the stage-in");
    if (::setgroups(r.groups.size(), r.groups.empty() ? nullptr : r.groups.data()) != 0)
        throw_errno("cannot set the job's supplementary groups");
    if (::setresgid(r.gid, r.gid, r.gid) != 0) throw_errno("cannot set the job's gid");
    if (::setresuid(r.uid, r.uid, r.uid) != 0) throw_errno("cannot set the job's uid");
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    if (::getresuid(&ru, &eu, &su) != 0 || ru != r.uid || eu != r.uid || su != r.uid || ::getresgid(&rg, &eg, &sg) != 0 ||
        rg != r.gid || eg != r.gid || sg != r.gid)
        throw Error("could not drop to the job's user; the stage-in was not done");
    pid_t parent = ::getppid();
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) throw_errno("cannot set the parent-death signal");
    if (::getppid() != parent || parent == 1) throw Error("slurmstepd went away before the stage-in");
}

// As root, then as the user, in one start of this program: prepare, then the stage-in
// with prepare's limits, after dropping to the job's user for good. A step's hit in the
// cache thus costs one exec, not two. The result is stage-in's.
void prepare_stage_in(NodeRequest& r, const HelperChannel& channel) {
    r.limits = prepare_node(r);
    become_job_user(r);
    JobWatch watch(r.job_id);
    stage_in(r, channel);
}

// Written in the job's meta dir once a step's stage-out was tried on this node, so that
// it is tried once: by the step's last task (run-task) or, when the tasks were killed
// before they could, by slurmstepd afterwards.
std::string stage_out_tried_marker(const NodeRequest& r) { return "stage-out-tried." + std::to_string(r.step_id); }

struct StageOutReport {
    std::vector<std::string> notes;
    std::vector<std::string> failures;
};

// As the user: each LOCAL of --aihpc-stage-out to its DEST. On any failure the stage dir
// is marked to be kept, and the failures say why.
StageOutReport stage_out_items(const NodeRequest& r) {
    stage::JobLayout l = layout(r);
    UniqueFd meta = stage::open_dir(l.meta_dir);
    stage::write_file_atomic_at(meta.get(), stage_out_tried_marker(r), "", 0600,
                                stage::join_path(l.meta_dir, stage_out_tried_marker(r)));
    StageOutReport report;
    for (const config::StageOutItem& item : r.options.stage_out) {
        std::string dest = stage::expand_dest(item.dest, job_text(r), r.node);
        if (dest.empty() || dest[0] != '/') dest = stage::join_path(r.submit_dir, dest);
        try {
            stage::StageOutResult result =
                stage::stage_out(stage::join_path(l.stage_dir, item.local), dest, job_text(r), stage_threads(r.site));
            if (result.diverted) report.notes.push_back(result.message());
        } catch (const stage::NothingToStageOut& e) {
            report.notes.push_back(e.what());  // nothing to keep, so no reason to keep the stage dir
        } catch (const Error& e) {
            report.failures.push_back(e.what());
        }
    }
    if (!report.failures.empty())
        stage::write_file_atomic_at(meta.get(), stage::stage_out_failed_marker, join(report.failures, "\n") + "\n", 0600,
                                    stage::join_path(l.meta_dir, stage::stage_out_failed_marker));
    return report;
}

// As the user, from slurmstepd once the step's tasks on this node ended: the stage-out
// that the last task could not do because it was killed first.
void stage_out(const NodeRequest& r, const HelperChannel& channel) {
    stage::JobLayout l = layout(r);
    UniqueFd meta = stage::open_dir(l.meta_dir);
    struct stat st {};
    if (::fstatat(meta.get(), stage_out_tried_marker(r).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        // The step's last task tried; the result says whether root is to keep the dir.
        bool failed = ::fstatat(meta.get(), stage::stage_out_failed_marker, &st, AT_SYMLINK_NOFOLLOW) == 0;
        return channel.result(failed ? "failed" : "delivered");
    }
    StageOutReport report = stage_out_items(r);
    for (const std::string& note : report.notes) channel.note(note);
    if (!report.failures.empty())
        throw Error("stage-out failed: " + join(report.failures, "; ") + "; the stage dir " + l.stage_dir + " is kept");
    channel.result("delivered");
}

// ---- run-task: a task of a step with --aihpc-stage-out

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

// The task's command runs as this program's child; when it ends, the step's last task
// on the node stages out, as the user, before the task's status goes to Slurm. So a
// stage-out that delivered nothing fails the task, the step and a batch job: afterok
// never sees such a job COMPLETED.
int run_task(int argc, char** argv) {
    const char* text = std::getenv("AIHPC_STAGE_OUT_TASK");
    if (!text) {
        std::fputs("aihpc-node: run-task is started by the aihpc plugin for a step with --aihpc-stage-out\n", stderr);
        return 2;
    }
    NodeRequest r;
    try {
        r = stage::parse_node_request(text);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "aihpc: cannot start the task: %s\n", e.what());
        return 1;
    }
    ::unsetenv("AIHPC_STAGE_OUT_TASK");
    std::vector<std::string> command;
    if (r.argv0) command.push_back(*r.argv0);
    for (int i = r.argv0 ? 1 : 2; i < argc; ++i) command.emplace_back(argv[i]);
    if (command.empty()) {
        std::fputs("aihpc: the task has no command to run\n", stderr);
        return 1;
    }
    std::vector<char*> words;
    for (std::string& w : command) words.push_back(w.data());
    words.push_back(nullptr);
    std::fflush(nullptr);
    pid_t pid = ::fork();
    if (pid < 0) {
        std::fprintf(stderr, "aihpc: cannot start the task: %s\n", std::strerror(errno));
        return 1;
    }
    if (pid == 0) {
        ::execvp(words[0], words.data());
        std::fprintf(stderr, "aihpc: cannot run %s: %s\n", words[0], std::strerror(errno));
        ::_exit(errno == ENOENT ? 127 : 126);
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            status = W_EXITCODE(1, 0);
            break;
        }
    bool delivered = true;
    try {
        if (last_task_to_end(r)) {
            StageOutReport report = stage_out_items(r);
            for (const std::string& note : report.notes) std::fprintf(stderr, "aihpc: %s\n", note.c_str());
            if (!report.failures.empty()) {
                delivered = false;
                for (const std::string& failure : report.failures) std::fprintf(stderr, "aihpc: %s\n", failure.c_str());
                std::fprintf(stderr, "aihpc: the task fails because its stage-out did not deliver; the stage dir %s is kept\n",
                             layout(r).stage_dir.c_str());
            }
        }
    } catch (const std::exception& e) {
        delivered = false;
        std::fprintf(stderr, "aihpc: stage-out failed: %s; the task fails\n", e.what());
    }
    std::fflush(stderr);
    if (WIFSIGNALED(status)) {
        // The task ends as its command did, without a core of this program.
        struct rlimit none {};
        ::setrlimit(RLIMIT_CORE, &none);
        ::signal(WTERMSIG(status), SIG_DFL);
        ::raise(WTERMSIG(status));
        return 128 + WTERMSIG(status);
    }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    return code == 0 && !delivered ? 1 : code;
}

// As the user: the image's content hash, through the user's digest cache.
// Result: the digest, a newline, where it came from.
void digest(const NodeRequest& r, const HelperChannel& channel) {
    std::vector<std::string> dirs = container::runtime_search_path(r.site, std::getenv("PATH"));
    auto installed = [&](container::Runtime rt) {
        return container::find_program(container::runtime_program(rt), dirs).has_value();
    };
    container::ResolvedImage image = container::check_image(r.options.container, r.site, r.submit_dir, installed);
    container::DigestCacheSettings cache;
    if (!r.no_cache && r.uid != 0) cache.dir = layout(r).cache_dir + "/digests";
    container::ImageDigest d = container::image_digest(image, cache, r.no_cache ? "the user's cache directory is missing" : "");
    channel.result(d.digest + "\n" + d.provenance);
}

// As root, from the job epilog: the job's stage dirs go to trash/ at once (unless root
// kept them after a failed stage-out), and are removed within a time budget; what is
// left goes with the next epilog.
void epilog(const NodeRequest& r, const HelperChannel& channel) {
    std::string root_path = local_root(r);
    stage::JobCleanup cleanup =
        stage::retire_job_dirs(root_path, r.job_id, r.site.keep_failed_days, std::chrono::seconds(2));
    std::string name = job_text(r);
    if (cleanup.kept_after_failed_stage_out)
        channel.note("job " + name + ": stage-out failed, so " + root_path + "/jobs/" + name + " is kept for " +
                     std::to_string(r.site.keep_failed_days) + " days");
    else if (!cleanup.error.empty())
        channel.note("job " + name + ": could not remove all of its stage dir: " + cleanup.error);
    for (std::uint32_t expired : cleanup.expired)
        channel.note("job " + std::to_string(expired) + ": its kept stage dir expired (keep_failed_days) and is removed");
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 2 && std::strcmp(argv[1], "--help") == 0) {
        std::fputs(usage, stdout);
        return 0;
    }
    if (argc == 2 && std::strcmp(argv[1], "--version") == 0) {
        std::printf("aihpc-node %s\n", PACKAGE_VERSION);
        return 0;
    }
    if (std::getenv("AIHPC_STAGE_OUT_TASK")) return run_task(argc, argv);
    if (argc != 2) {
        std::fputs(usage, stderr);
        return 2;
    }
    const std::map<std::string, void (*)(const NodeRequest&, const HelperChannel&)> commands = {
        {"prepare", prepare}, {"account", account}, {"stage-in", stage_in}, {"stage-out", stage_out},
        {"keep", keep},       {"digest", digest},   {"epilog", epilog}, {"prepare-stage-in", nullptr}};
    auto command = commands.find(argv[1]);
    if (command == commands.end()) {
        std::fprintf(stderr, "aihpc-node: unknown command '%s'\n%s", argv[1], usage);
        return 2;
    }
    HelperChannel channel;
    struct stat st {};
    if (::fstat(helper_request_fd, &st) != 0 || ::fstat(helper_result_fd, &st) != 0) {
        std::fputs("aihpc-node: started without its request and result descriptors; it is run by the aihpc plugin\n", stderr);
        return 2;
    }
    try {
        NodeRequest request = stage::parse_node_request(read_helper_request());
        if (command->first == "prepare-stage-in") {
            prepare_stage_in(request, channel);
            return 0;
        }
        // Only the user's work can take long; the epilog runs after the job anyway.
        std::optional<JobWatch> watch;
        bool users_work = command->first == "stage-in" || command->first == "stage-out" || command->first == "digest";
        if (users_work) watch.emplace(request.job_id);
        command->second(request, channel);
        return 0;
    } catch (const std::exception& e) {
        channel.error(e.what());
    }
    return 1;
}
