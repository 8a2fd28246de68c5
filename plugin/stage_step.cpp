// Staging in the plugin: contexts and users are given at each function in
// capabilities.hpp. The engine itself lives in lib/stage.
//
// Node-local layout below local_root (which must be owned by root and writable by no
// one else):
//   jobs/                 root, 0711: users reach their own job dirs, list nobody's
//   jobs/<jobid>/         the job's user, 0700: AIHPC_STAGE_DIR; NAME -> cache entry,
//                         or a private copy
//   jobs/<jobid>.aihpc/   the job's user, 0700: what was staged (items), the job's
//                         staging lock, and a marker when stage-out failed
//   cache/                root, 0711
//   cache/<uid>/          the user, 0700: that user's NodeCache (lib/stage/node_cache.hpp)
//
// All work on user data runs in a forked child that has dropped to the job's uid, gid
// and groups. The child is root only long enough to create the user's directories
// under root-owned ones, fd-relative and without following links.
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>

#include "common/error.hpp"
#include "common/text.hpp"
#include "plugin/capabilities.hpp"
#include "stage/fs.hpp"
#include "stage/node_cache.hpp"
#include "stage/source.hpp"
#include "stage/stage_in.hpp"
#include "stage/stage_out.hpp"

namespace aihpc::plugin {

namespace {

struct RecordedItem {
    std::string name, path, manifest_hash, key, outcome;
};

// What this slurmstepd keeps between hooks.
struct StepStaging {
    bool active = false;
    std::string stage_dir, meta_dir, cache_dir;
    std::vector<RecordedItem> items;
    std::vector<stage::Lease> leases;  // O_CLOEXEC: tasks never inherit them
    std::uint32_t task_exits = 0;
};

StepStaging& staging() {
    static StepStaging instance;
    return instance;
}

bool wants_staging(const config::UserOptions& options) { return !options.stage.empty() || !options.stage_out.empty(); }

std::string job_text(const StepInfo& step) { return std::to_string(step.job_id); }

// ---- running as the user

class Pipe {
public:
    Pipe() {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0) throw_errno("cannot create a pipe for the staging child");
        read_.reset(fds[0]);
        write_.reset(fds[1]);
    }
    UniqueFd read_, write_;
};

void write_text(int fd, const std::string& text) {
    std::size_t done = 0;
    while (done < text.size()) {
        ssize_t n = ::write(fd, text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        done += static_cast<std::size_t>(n);
    }
}

std::string read_all(int fd) {
    std::string text;
    char buf[4096];
    while (true) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        text.append(buf, static_cast<std::size_t>(n));
    }
    return text;
}

void drop_to_user(const StepInfo& step) {
    if (::geteuid() != 0 && ::seteuid(0) != 0) throw_errno("cannot regain root to drop to the job's user");
    std::vector<gid_t> groups = step.groups;
    if (::setgroups(groups.size(), groups.empty() ? nullptr : groups.data()) != 0) throw_errno("setgroups");
    if (::setregid(step.gid, step.gid) != 0) throw_errno("setregid");
    if (::setreuid(step.uid, step.uid) != 0) throw_errno("setreuid");
    if (::getuid() != step.uid || ::geteuid() != step.uid || ::getegid() != step.gid)
        throw Error("could not drop to uid " + std::to_string(step.uid));
}

// Runs `root_part` as root, then `user_part` as the job's user, in a child. The child's
// messages come back through a pipe: lines "N text" are notes, "E text" the error.
std::vector<std::string> run_as_user(const StepInfo& step, const std::function<void(int report_fd)>& root_part,
                                     const std::function<void(int report_fd)>& user_part) {
    Pipe pipe;
    pid_t pid = ::fork();
    if (pid < 0) throw_errno("cannot fork the staging child");
    if (pid == 0) {
        pipe.read_.reset();
        int status = 0;
        try {
            if (::geteuid() != 0 && ::seteuid(0) != 0) throw_errno("cannot regain root in the staging child");
            // Root's own directories must not take the user's group.
            if (::setegid(0) != 0) throw_errno("cannot regain group root in the staging child");
            root_part(pipe.write_.get());
            drop_to_user(step);
            user_part(pipe.write_.get());
        } catch (const std::exception& e) {
            write_text(pipe.write_.get(), std::string("E ") + e.what() + "\n");
            status = 1;
        }
        ::_exit(status);
    }
    pipe.write_.reset();
    std::string text = read_all(pipe.read_.get());
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    std::vector<std::string> notes;
    std::string error;
    for (const std::string& line : split(text, '\n')) {
        if (line.rfind("E ", 0) == 0) error = line.substr(2);
        else if (line.rfind("N ", 0) == 0) notes.push_back(line.substr(2));
    }
    if (!error.empty()) throw Error(error);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        throw Error("the staging child died (" +
                    std::string(WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "exit " + std::to_string(WEXITSTATUS(status))) +
                    "); the cache stays consistent, and the next step will stage again");
    return notes;
}

// ---- root-owned directories, fd-relative

UniqueFd open_local_root(const std::string& local_root, bool create) {
    if (create) {
        std::string partial;
        for (const std::string& part : split(local_root, '/')) {
            if (part.empty()) continue;
            partial += "/" + part;
            if (::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) throw_errno("cannot create local_root " + partial);
        }
    }
    int fd = ::open(local_root.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) throw_errno("cannot open local_root " + local_root);
    UniqueFd root(fd);
    struct stat st {};
    if (::fstat(root.get(), &st) != 0) throw_errno("cannot stat local_root " + local_root);
    if (st.st_uid != 0 || (st.st_mode & 022))
        throw Error("local_root " + local_root + " must be owned by root and writable by no one else (it is uid " +
                    std::to_string(st.st_uid) + ", mode " + [&] {
                        char m[8];
                        std::snprintf(m, sizeof m, "%04o", st.st_mode & 07777);
                        return std::string(m);
                    }() + "); ask the administrators to fix it");
    return root;
}

UniqueFd root_dir_at(int parent, const std::string& name, const std::string& shown) {
    UniqueFd dir = stage::ensure_dir_at(parent, name, 0711, shown);
    struct stat st {};
    if (::fstat(dir.get(), &st) != 0 || st.st_uid != 0 || (st.st_mode & 022))
        throw Error(shown + " must be owned by root and writable by no one else; ask the administrators to fix it");
    return dir;
}

// A directory for the user below a root-owned one: created by root, given to the user.
void user_dir_at(int parent, const std::string& name, const StepInfo& step, const std::string& shown) {
    bool created = ::mkdirat(parent, name.c_str(), 0700) == 0;
    if (!created && errno != EEXIST) throw_errno("cannot create " + shown);
    int fd = ::openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) throw_errno("cannot open " + shown);
    UniqueFd dir(fd);
    struct stat st {};
    if (::fstat(dir.get(), &st) != 0) throw_errno("cannot stat " + shown);
    if (created || (st.st_uid == 0 && st.st_gid == 0 && (st.st_mode & 07777) == 0700)) {
        if (::fchown(dir.get(), step.uid, step.gid) != 0) throw_errno("cannot give " + shown + " to uid " + std::to_string(step.uid));
        if (::fchmod(dir.get(), 0700) != 0) throw_errno("cannot set the mode of " + shown);
    } else if (st.st_uid != step.uid) {
        throw Error(shown + " belongs to uid " + std::to_string(st.st_uid) + ", not to the job's user; ask the administrators to remove it");
    }
}

// Bytes the other users' caches hold on this node, read as root from their info files,
// so the node-wide cache_max holds while each user evicts only their own entries.
std::uint64_t other_users_cache_bytes(int cache_fd, uid_t uid) {
    std::uint64_t total = 0;
    for (const std::string& name : [&] {
             std::vector<std::string> names;
             int fd = ::openat(cache_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
             if (fd < 0) return names;
             DIR* dir = ::fdopendir(fd);
             if (!dir) {
                 ::close(fd);
                 return names;
             }
             while (struct dirent* ent = ::readdir(dir))
                 if (ent->d_name[0] != '.') names.emplace_back(ent->d_name);
             ::closedir(dir);
             return names;
         }()) {
        if (name == std::to_string(uid)) continue;
        int fd = ::openat(cache_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) continue;
        UniqueFd user_cache(fd);
        total += stage::cache_bytes_at(user_cache.get());
    }
    return total;
}

unsigned stage_threads(const config::SiteConfig& site) {
    if (site.stage_threads) return site.stage_threads;
    cpu_set_t set;
    CPU_ZERO(&set);
    unsigned n = ::sched_getaffinity(0, sizeof set, &set) == 0 ? static_cast<unsigned>(CPU_COUNT(&set)) : 4;
    return std::clamp(n, 1u, 16u);
}

std::string serialize_items(const std::vector<RecordedItem>& items) {
    std::string text;
    for (const RecordedItem& i : items)
        text += stage::escape_path(i.name) + " " + stage::escape_path(i.path) + " " + i.manifest_hash + " " +
                (i.key.empty() ? "-" : i.key) + " " + i.outcome + "\n";
    return text;
}

std::vector<RecordedItem> parse_items(const std::string& text) {
    std::vector<RecordedItem> items;
    for (const std::string& line : split(text, '\n')) {
        std::vector<std::string> w = split(line, ' ');
        if (w.size() != 5) continue;
        RecordedItem i{stage::unescape_path(w[0]).value_or(""), stage::unescape_path(w[1]).value_or(""), w[2],
                       w[3] == "-" ? "" : w[3], w[4]};
        items.push_back(i);
    }
    return items;
}

// The child's work as the user: stage every item, then record what was staged.
void stage_items_as_user(const PluginState& st, const StepStaging& paths, const stage::CacheLimits& limits, int report_fd) {
    UniqueFd meta = stage::open_dir(paths.meta_dir);
    UniqueFd job_lock(::openat(meta.get(), "lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!job_lock) throw_errno("cannot open " + stage::join_path(paths.meta_dir, "lock"));
    // Steps of one job starting together on a node stage one after the other: the
    // second finds the first one's work.
    while (::flock(job_lock.get(), LOCK_EX) != 0)
        if (errno != EINTR) throw_errno("cannot lock " + stage::join_path(paths.meta_dir, "lock"));

    std::map<std::string, RecordedItem> before;
    for (RecordedItem& i : parse_items(stage::read_small_file_at(meta.get(), "items").value_or("")))
        before[i.name] = i;

    stage::StageSettings settings;
    settings.to_dir = paths.stage_dir;
    settings.cache_dir = paths.cache_dir;
    settings.limits = limits;
    settings.private_mode = st.options.stage_mode == config::StageMode::private_;
    settings.verify = st.options.stage_verify;
    settings.threads = stage_threads(st.site);
    settings.uid = st.step.uid;
    settings.base_dir = st.step.submit_dir;
    settings.allow = st.site.stage_allow;

    std::vector<RecordedItem> recorded;
    for (const config::StageItem& item : st.options.stage) {
        auto old = before.find(item.name);
        if (settings.private_mode && old != before.end() && old->second.outcome == "private") {
            recorded.push_back(old->second);  // the job's own writable copy: never redone
            continue;
        }
        stage::StagedItem staged = stage::stage_in(item.src, item.name, settings);
        write_text(report_fd, "N stage-in " + item.name + ": " + stage::to_string(staged.outcome) + ", " +
                                  std::to_string(staged.files) + " files, " + std::to_string(staged.bytes) + " bytes, " +
                                  std::to_string(staged.seconds) + "s\n");
        recorded.push_back({staged.name, staged.path, staged.manifest_hash, staged.key, stage::to_string(staged.outcome)});
    }
    stage::write_file_atomic_at(meta.get(), "items", serialize_items(recorded), 0600, stage::join_path(paths.meta_dir, "items"));
}

}  // namespace

void stage_check_at_submit(const config::UserOptions& options, const config::SiteConfig& site) {
    char cwd[4096];
    std::string base = ::getcwd(cwd, sizeof cwd) ? cwd : "/";
    for (const config::StageItem& item : options.stage) {
        try {
            stage::OpenSource source = stage::open_source(item.src, base, site.stage_allow);
        } catch (const Error& e) {
            throw Error(std::string("--aihpc-stage: ") + e.what());
        }
    }
}

void stage_user_init(const Spank&, PluginState& st) {
    if (!wants_staging(st.options)) return;
    StepStaging& s = staging();
    const StepInfo& step = st.step;
    std::string local_root = st.site.local_root_for(step.node_name);
    s.stage_dir = stage::join_path(stage::join_path(local_root, "jobs"), job_text(step));
    s.meta_dir = s.stage_dir + ".aihpc";
    s.cache_dir = stage::join_path(stage::join_path(local_root, "cache"), std::to_string(step.uid));

    for (int attempt = 0; attempt < 3; ++attempt) {
        stage::CacheLimits limits;
        auto root_part = [&](int) {
            UniqueFd root = open_local_root(local_root, true);
            UniqueFd jobs = root_dir_at(root.get(), "jobs", stage::join_path(local_root, "jobs"));
            UniqueFd cache = root_dir_at(root.get(), "cache", stage::join_path(local_root, "cache"));
            user_dir_at(jobs.get(), job_text(step), step, s.stage_dir);
            user_dir_at(jobs.get(), job_text(step) + ".aihpc", step, s.meta_dir);
            user_dir_at(cache.get(), std::to_string(step.uid), step, s.cache_dir);
            struct statvfs fs {};
            std::uint64_t fs_bytes = ::fstatvfs(cache.get(), &fs) == 0 ? static_cast<std::uint64_t>(fs.f_blocks) * fs.f_frsize : 0;
            std::uint64_t others = other_users_cache_bytes(cache.get(), step.uid);
            std::uint64_t max = st.site.cache_max.resolve(fs_bytes), low = st.site.cache_low_bytes(fs_bytes);
            limits.max_bytes = max > others ? max - others : 1;
            limits.low_bytes = low > others ? low - others : 0;
        };
        auto user_part = [&](int report_fd) {
            if (!st.options.stage.empty()) stage_items_as_user(st, s, limits, report_fd);
        };
        for (const std::string& note : run_as_user(step, root_part, user_part)) st.note(note);

        // The step holds a lease on each cache entry it uses until it ends; taken here,
        // as the user, after the child published, and checked against eviction between.
        UniqueFd meta = stage::open_dir(s.meta_dir);
        s.items = parse_items(stage::read_small_file_at(meta.get(), "items").value_or(""));
        s.leases.clear();
        bool all_leased = true;
        if (std::any_of(s.items.begin(), s.items.end(), [](const RecordedItem& i) { return !i.key.empty(); })) {
            stage::NodeCache cache(s.cache_dir);
            for (const RecordedItem& item : s.items) {
                if (item.key.empty()) continue;
                std::optional<stage::Lease> lease = cache.lease(item.key);
                if (!lease) {
                    all_leased = false;
                    break;
                }
                s.leases.push_back(std::move(*lease));
            }
        }
        if (all_leased) {
            s.active = true;
            return;
        }
    }
    throw Error("stage-in: the node cache " + s.cache_dir + " evicted the staged data three times in a row; the node's cache is too small for this job");
}

bool stage_step_active() { return staging().active; }

void stage_task_init(const Spank& spank, PluginState& st) {
    StepStaging& s = staging();
    if (!s.active) return;
    spank.setenv("AIHPC_STAGE_DIR", s.stage_dir);
    std::vector<std::string> manifests;
    for (const RecordedItem& item : s.items) {
        spank.setenv("AIHPC_DATA_" + env_name_part(item.name), item.path);
        manifests.push_back(item.name + "=" + item.manifest_hash);
    }
    spank.setenv("AIHPC_STAGE_MANIFESTS", join(manifests, ","));
    (void)st;
}

void stage_task_exit(const Spank&, PluginState& st) {
    StepStaging& s = staging();
    if (!s.active || st.options.stage_out.empty()) return;
    if (++s.task_exits < st.step.local_task_count) return;
    const StepInfo& step = st.step;
    std::vector<std::string> notes;
    try {
        notes = run_as_user(
            step, [](int) {},
            [&](int report_fd) {
                std::vector<std::string> failures;
                for (const config::StageOutItem& item : st.options.stage_out) {
                    std::string dest = stage::expand_dest(item.dest, job_text(step), step.node_name);
                    if (dest[0] != '/') dest = stage::join_path(step.submit_dir, dest);
                    try {
                        stage::StageOutResult r = stage::stage_out(stage::join_path(s.stage_dir, item.local), dest,
                                                                   job_text(step), stage_threads(st.site));
                        if (r.diverted) write_text(report_fd, "N " + r.message() + "\n");
                    } catch (const Error& e) {
                        failures.push_back(e.what());
                    }
                }
                if (!failures.empty()) {
                    UniqueFd meta = stage::open_dir(s.meta_dir);
                    stage::write_file_atomic_at(meta.get(), "stage-out-failed", join(failures, "\n") + "\n", 0600,
                                                stage::join_path(s.meta_dir, "stage-out-failed"));
                    throw Error(join(failures, "; "));
                }
            });
    } catch (const Error& e) {
        // After the tasks ended only slurmstepd's log reaches the job's output.
        slurm_error("aihpc: %s", e.what());
        return;
    }
    for (const std::string& note : notes) slurm_error("aihpc: %s", note.c_str());
}

void stage_job_epilog(const Spank& spank, const config::SiteConfig& site) {
    try {
        std::optional<std::uint32_t> job = spank.u32(S_JOB_ID);
        if (!job) return;
        std::string node = spank.getenv("SLURMD_NODENAME").value_or("");
        if (node.empty()) {
            char host[256] = {};
            ::gethostname(host, sizeof host - 1);
            node = host;
        }
        std::string local_root = site.local_root_for(node);
        UniqueFd root = open_local_root(local_root, false);
        int jobs_raw = ::openat(root.get(), "jobs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (jobs_raw < 0) return;
        UniqueFd jobs(jobs_raw);
        std::string name = std::to_string(*job);
        struct stat st {};
        std::string marker = name + ".aihpc/stage-out-failed";
        if (::fstatat(jobs.get(), marker.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
            slurm_info("aihpc: job %s: stage-out failed, so %s/jobs/%s is kept", name.c_str(), local_root.c_str(), name.c_str());
            return;
        }
        std::string error;
        if (!stage::remove_tree_at(jobs.get(), name, &error))
            slurm_info("aihpc: job %s: could not remove all of its stage dir: %s", name.c_str(), error.c_str());
        stage::remove_tree_at(jobs.get(), name + ".aihpc");
    } catch (const std::exception& e) {
        slurm_info("aihpc: stage cleanup: %s", e.what());
    }
}

}  // namespace aihpc::plugin
