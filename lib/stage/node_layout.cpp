#include "stage/node_layout.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <sys/file.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "common/error.hpp"
#include "common/paths.hpp"
#include "common/text.hpp"
#include "stage/cache_ledger.hpp"
#include "stage/fs.hpp"
#include "stage/manifest.hpp"

namespace aihpc::stage {

JobLayout job_layout(const std::string& local_root, std::uint32_t job_id, uid_t uid) {
    JobLayout layout;
    layout.stage_dir = join_path(join_path(local_root, "jobs"), std::to_string(job_id));
    layout.meta_dir = layout.stage_dir + ".aihpc";
    layout.cache_dir = join_path(join_path(local_root, "cache"), std::to_string(uid));
    return layout;
}

namespace {

// A root-owned directory below the open local_root that only root may enter.
UniqueFd root_only_dir_at(int root_fd, const std::string& name, const std::string& shown_path) {
    UniqueFd dir = ensure_dir_at(root_fd, name, 0700, shown_path);
    struct stat st {};
    if (::fstat(dir.get(), &st) != 0 || st.st_uid != 0 || (st.st_mode & 077) != 0)
        throw Error(shown_path + " must be owned by root and open to no one else; ask the administrators to fix it");
    return dir;
}

std::optional<std::uint32_t> job_id_name(std::string_view name) {
    auto n = parse_uint(name);
    if (!n || *n > UINT32_MAX || std::to_string(*n) != name) return std::nullopt;
    return static_cast<std::uint32_t>(*n);
}

// Moves jobs/<name> into trash/ under a unique name; false when it was not there.
bool move_to_trash(int jobs_fd, int trash_fd, const std::string& name, std::string* error) {
    std::string trashed = name + "." + unique_suffix();
    if (::renameat(jobs_fd, name.c_str(), trash_fd, trashed.c_str()) == 0) return true;
    if (errno == ENOENT) return false;
    // Another file system below local_root (a site's mount): removed in place instead.
    if (errno == EXDEV) {
        remove_tree_at(jobs_fd, name, error);
        return true;
    }
    if (error && error->empty()) *error = "cannot move " + name + " into trash: " + std::strerror(errno);
    return false;
}

// A directory stream from the start of an open directory, on a descriptor of its own (a
// dup would share, and keep, the position of the last pass), closed with it.
struct DirStream {
    DIR* dir = nullptr;
    explicit DirStream(int dir_fd) {
        int fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0 && !(dir = ::fdopendir(fd))) ::close(fd);
    }
    ~DirStream() {
        if (dir) ::closedir(dir);
    }
    DirStream(const DirStream&) = delete;
    DirStream& operator=(const DirStream&) = delete;
};

// The removal of what trash/ holds, in slices. A tree is never walked down: each
// directory met inside one is renamed to the top of trash/ and emptied there in its turn,
// so any depth costs one descriptor and no stack, and a directory of millions of names is
// read and unlinked a batch at a time, never listed whole. What one call leaves is simply
// what trash/ still holds, and the next call goes on from there.
struct TrashRemoval {
    int trash_fd;
    dev_t device = 0;
    std::chrono::steady_clock::time_point deadline;
    std::string* error;
    unsigned since_check = 0;
    bool out_of_time = false;
    bool progress = false;

    void note(const std::string& what) {
        if (error && error->empty()) *error = what;
    }

    // Every call gets a first slice whatever its budget, so trash/ always shrinks.
    bool expired() {
        if (out_of_time) return true;
        if (++since_check % 256 != 0) return false;
        out_of_time = std::chrono::steady_clock::now() >= deadline;
        return out_of_time;
    }

    // Moves dir_fd/name to the top of trash/ under a new name; false when it cannot move
    // (a mount point, say), which leaves it and its parent in place.
    bool hoist(int dir_fd, const char* name) {
        for (int attempt = 0; attempt < 8; ++attempt) {
            std::string top = "d." + unique_suffix();
            if (::renameat2(dir_fd, name, trash_fd, top.c_str(), RENAME_NOREPLACE) == 0) return true;
            if (errno != EEXIST) break;
        }
        note(std::string("cannot move ") + name + " to the top of trash: " + std::strerror(errno));
        return false;
    }

    // Empties the directory trash/<name> of files, moves its directories up, then removes
    // it. True when it is gone.
    bool remove_top(const char* name) {
        struct stat st {};
        if (::fstatat(trash_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return errno == ENOENT;
        if (!S_ISDIR(st.st_mode)) {
            if (::unlinkat(trash_fd, name, 0) == 0 || errno == ENOENT) return progress = true;
            note(std::string("cannot remove trash/") + name + ": " + std::strerror(errno));
            return false;
        }
        UniqueFd dir(::openat(trash_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        struct stat opened {};
        if (!dir || ::fstat(dir.get(), &opened) != 0 || opened.st_ino != st.st_ino || opened.st_dev != device) {
            note(std::string("trash/") + name + " cannot be opened, or is a mount point; left in place");
            return false;
        }
        bool stuck = false;
        while (!stuck) {
            DirStream stream(dir.get());
            if (!stream.dir) {
                note(std::string("cannot list trash/") + name + ": " + std::strerror(errno));
                return false;
            }
            bool any = false, moved = false;
            errno = 0;
            while (struct dirent* e = ::readdir(stream.dir)) {
                if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
                if (expired()) return false;
                any = true;
                if (::unlinkat(dir.get(), e->d_name, 0) == 0 || errno == ENOENT) {
                    progress = moved = true;
                } else if (errno == EISDIR || errno == EPERM) {
                    if (hoist(dir.get(), e->d_name)) progress = moved = true;
                } else {
                    note(std::string("cannot remove ") + e->d_name + " in trash: " + std::strerror(errno));
                }
            }
            if (!any) break;
            stuck = !moved;
        }
        if (::unlinkat(trash_fd, name, AT_REMOVEDIR) == 0 || errno == ENOENT) return progress = true;
        note(std::string("cannot remove trash/") + name + ": " + std::strerror(errno));
        return false;
    }
};

bool empty_trash_at(int trash_fd, std::chrono::steady_clock::time_point deadline, std::string* error) {
    struct stat self {};
    if (::fstat(trash_fd, &self) != 0) return false;
    TrashRemoval r{trash_fd, self.st_dev, deadline, error};
    // Passes over the top of trash/ until one finds it empty, or one changes nothing (what
    // is left cannot be removed; the error says why), or time runs out.
    while (true) {
        DirStream stream(trash_fd);
        if (!stream.dir) return false;
        bool empty = true;
        r.progress = false;
        while (struct dirent* e = ::readdir(stream.dir)) {
            if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
            empty = false;
            if (r.expired()) return false;
            std::string name = e->d_name;
            r.remove_top(name.c_str());
            if (r.out_of_time) return false;
        }
        if (empty) return true;
        if (!r.progress) return false;
    }
}

}  // namespace

std::string delivered_marker(std::uint32_t step) { return "delivered." + std::to_string(step); }
std::string delivered_marker(std::uint32_t step, std::size_t item) {
    return delivered_marker(step) + "." + std::to_string(item);
}

std::string format_kept_job(const KeptJob& job) {
    std::string text = "uid=" + std::to_string(job.uid) + "\nsince=" + std::to_string(job.since) +
                       "\nreason=" + escape_path(job.reason) + "\n";
    if (job.ended) text += "ended=1\n";
    for (std::uint32_t step : job.pending_steps) text += "pending=" + std::to_string(step) + "\n";
    for (const KeptDelivery& d : job.deliveries)
        text += "deliver=" + std::to_string(d.step) + " " + escape_path(d.local) + " " + escape_path(d.dest) + "\n";
    return text;
}

std::optional<KeptJob> parse_kept_job(std::uint32_t job_id, const std::string& text) {
    KeptJob k;
    k.job_id = job_id;
    bool have_uid = false;
    auto step_of = [](std::string_view word) -> std::optional<std::uint32_t> {
        auto n = parse_uint(word);
        if (!n || *n > UINT32_MAX) return std::nullopt;
        return static_cast<std::uint32_t>(*n);
    };
    for (const std::string& line : split(text, '\n')) {
        if (line.rfind("uid=", 0) == 0) {
            auto n = parse_uint(line.substr(4));
            if (n && *n < UINT32_MAX) k.uid = static_cast<uid_t>(*n), have_uid = true;
        } else if (line.rfind("since=", 0) == 0) {
            if (auto n = parse_uint(line.substr(6))) k.since = static_cast<std::int64_t>(*n);
        } else if (line.rfind("reason=", 0) == 0) {
            k.reason = unescape_path(line.substr(7)).value_or("");
        } else if (line == "ended=1") {
            k.ended = true;
        } else if (line.rfind("pending=", 0) == 0) {
            if (auto step = step_of(line.substr(8))) k.pending_steps.push_back(*step);
        } else if (line.rfind("deliver=", 0) == 0) {
            std::vector<std::string> w = split(line.substr(8), ' ');
            auto step = w.size() == 3 ? step_of(w[0]) : std::nullopt;
            auto local = w.size() == 3 ? unescape_path(w[1]) : std::nullopt;
            auto dest = w.size() == 3 ? unescape_path(w[2]) : std::nullopt;
            if (step && local && dest) k.deliveries.push_back({*step, *local, *dest});
        }
    }
    if (!have_uid) return std::nullopt;
    return k;
}

namespace {

// kept/ below the open local_root: root 0755, so that users can list their own kept jobs
// (aihpc-stage kept); one made 0700 by an earlier release is opened up.
UniqueFd kept_dir_at(int root_fd, const std::string& shown_path) {
    UniqueFd dir = ensure_dir_at(root_fd, "kept", 0755, shown_path);
    struct stat st {};
    if (::fstat(dir.get(), &st) != 0 || st.st_uid != 0 || (st.st_mode & 022) != 0)
        throw Error(shown_path + " must be owned by root and writable by no one else; ask the administrators to fix it");
    if ((st.st_mode & 0755) != 0755) ::fchmod(dir.get(), 0755);
    return dir;
}

// Steps of one job end on a node at once: their changes to the record are made one at a
// time, under a lock on the root-only kept/ itself.
class KeptRecord {
public:
    KeptRecord(const std::string& local_root, std::uint32_t job_id)
        : root_(open_local_root(local_root, false)),
          dir_(kept_dir_at(root_.get(), join_path(local_root, "kept"))),
          name_(std::to_string(job_id)),
          shown_(join_path(join_path(local_root, "kept"), name_)) {
        while (::flock(dir_.get(), LOCK_EX) != 0)
            if (errno != EINTR) throw_errno("cannot lock " + join_path(local_root, "kept"));
        job_ = kept_job_at(root_.get(), job_id);
    }
    std::optional<KeptJob>& job() { return job_; }
    // The record of this job for `uid`: the one on disk, or a new one when there is none
    // (or one of another user's, left by a job id that Slurm has since reused).
    KeptJob& job_of(std::uint32_t job_id, uid_t uid) {
        if (!job_ || job_->uid != uid) {
            job_ = KeptJob{};
            job_->job_id = job_id;
            job_->uid = uid;
            job_->since = ::time(nullptr);
        }
        return *job_;
    }
    void save() {
        write_file_atomic_at(dir_.get(), name_, format_kept_job(*job_), 0644, shown_);
    }
    void remove() { ::unlinkat(dir_.get(), name_.c_str(), 0); }

private:
    UniqueFd root_, dir_;
    std::string name_, shown_;
    std::optional<KeptJob> job_;
};

}  // namespace

void keep_until_delivered(const std::string& local_root, std::uint32_t job_id, uid_t uid, std::uint32_t step,
                          const std::vector<KeptDelivery>& deliveries) {
    KeptRecord record(local_root, job_id);
    KeptJob& k = record.job_of(job_id, uid);
    // A requeued job runs again under its id: its new steps are this run's.
    if (k.ended) k.ended = false;
    k.reason = "the stage-out of step " + std::to_string(step) + " has not delivered yet";
    if (std::find(k.pending_steps.begin(), k.pending_steps.end(), step) == k.pending_steps.end())
        k.pending_steps.push_back(step);
    std::erase_if(k.deliveries, [&](const KeptDelivery& d) { return d.step == step; });
    k.deliveries.insert(k.deliveries.end(), deliveries.begin(), deliveries.end());
    record.save();
}

bool record_delivered(const std::string& local_root, std::uint32_t job_id, std::uint32_t step) {
    KeptRecord record(local_root, job_id);
    if (!record.job()) return true;
    KeptJob& k = *record.job();
    std::erase(k.pending_steps, step);
    std::erase_if(k.deliveries, [&](const KeptDelivery& d) { return d.step == step; });
    if (k.pending_steps.empty()) {
        record.remove();
        return true;
    }
    record.save();
    return false;
}

void mark_job_kept(const std::string& local_root, std::uint32_t job_id, uid_t uid, const std::string& reason) {
    KeptRecord record(local_root, job_id);
    record.job_of(job_id, uid).reason = reason;
    record.save();
}

std::optional<KeptJob> kept_job_at(int local_root_fd, std::uint32_t job_id) {
    UniqueFd kept(::openat(local_root_fd, "kept", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!kept) return std::nullopt;
    struct stat dir {};
    if (::fstat(kept.get(), &dir) != 0 || dir.st_uid != 0 || (dir.st_mode & 022) != 0) return std::nullopt;
    std::string name = std::to_string(job_id);
    struct stat st {};
    if (::fstatat(kept.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) || st.st_uid != 0)
        return std::nullopt;
    std::optional<std::string> text = read_small_file_at(kept.get(), name.c_str(), small_file_max);
    if (!text) return std::nullopt;
    std::optional<KeptJob> k = parse_kept_job(job_id, *text);
    if (k && k->since == 0) k->since = st.st_mtim.tv_sec;
    return k;
}

std::vector<KeptJob> kept_jobs_at(int local_root_fd) {
    std::vector<KeptJob> out;
    UniqueFd kept(::openat(local_root_fd, "kept", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!kept) return out;
    struct stat dir {};
    if (::fstat(kept.get(), &dir) != 0 || dir.st_uid != 0 || (dir.st_mode & 022) != 0) return out;
    UniqueFd listing(::openat(kept.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!listing) return out;
    DirectoryNames names(listing.get(), "kept");
    for (std::size_t i = 0; i < names.size(); ++i) {
        std::optional<std::uint32_t> job = job_id_name(names[i]);
        if (!job) continue;
        if (std::optional<KeptJob> k = kept_job_at(local_root_fd, *job)) out.push_back(std::move(*k));
    }
    return out;
}

namespace {

// Whether the user's stager says every pending step of a kept job delivered: names in
// the job's meta dir, looked at without following a link or reading a byte.
bool all_pending_delivered(int jobs_fd, const KeptJob& k) {
    if (k.pending_steps.empty()) return false;
    if (jobs_fd < 0) return false;
    UniqueFd meta(::openat(jobs_fd, (std::to_string(k.job_id) + ".aihpc").c_str(),
                           O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!meta) return false;
    for (std::uint32_t step : k.pending_steps) {
        struct stat st {};
        if (::fstatat(meta.get(), delivered_marker(step).c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            return false;
    }
    return true;
}

}  // namespace

JobCleanup retire_job_dirs(const std::string& local_root, std::uint32_t job_id, unsigned keep_failed_days,
                           std::chrono::milliseconds budget) {
    const auto deadline = std::chrono::steady_clock::now() + budget;
    JobCleanup cleanup;
    struct stat exists {};
    if (::lstat(local_root.c_str(), &exists) != 0 && errno == ENOENT) return cleanup;
    UniqueFd root = open_local_root(local_root, false);
    UniqueFd jobs(::openat(root.get(), "jobs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    UniqueFd trash = root_only_dir_at(root.get(), "trash", join_path(local_root, "trash"));
    UniqueFd kept_dir(::openat(root.get(), "kept", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));

    const std::int64_t now = ::time(nullptr);
    const std::int64_t keep_seconds = static_cast<std::int64_t>(keep_failed_days) * 86400;
    auto retire = [&](std::uint32_t job) {
        if (!jobs) return;
        const std::string name = std::to_string(job);
        move_to_trash(jobs.get(), trash.get(), name, &cleanup.error);
        move_to_trash(jobs.get(), trash.get(), name + ".aihpc", &cleanup.error);
    };
    auto forget = [&](std::uint32_t job) {
        if (kept_dir) ::unlinkat(kept_dir.get(), std::to_string(job).c_str(), 0);
    };
    bool this_job_kept = false;
    for (const KeptJob& k : kept_jobs_at(root.get())) {
        bool expired = keep_failed_days == 0 || now - k.since >= keep_seconds;
        if (expired) {
            // The dirs go first: a marker without its dirs is harmless, dirs without their
            // marker would be retired by their job's epilog alone, which has run.
            retire(k.job_id);
            forget(k.job_id);
            if (k.job_id != job_id) cleanup.expired.push_back(k.job_id);
            continue;
        }
        // Another job's record is looked at only once that job ended: until then its
        // steps may still be delivering.
        if (k.job_id != job_id && !k.ended) continue;
        if (all_pending_delivered(jobs ? jobs.get() : -1, k)) {
            retire(k.job_id);
            forget(k.job_id);
            if (k.job_id != job_id) cleanup.delivered_later.push_back(k.job_id);
            continue;
        }
        if (k.job_id != job_id) continue;
        this_job_kept = true;
        for (const KeptDelivery& d : k.deliveries)
            if (std::find(k.pending_steps.begin(), k.pending_steps.end(), d.step) != k.pending_steps.end())
                cleanup.undelivered.push_back(d);
        if (!k.ended) {
            KeptJob ended = k;
            ended.ended = true;
            if (kept_dir)
                write_file_atomic_at(kept_dir.get(), std::to_string(k.job_id), format_kept_job(ended), 0644,
                                     join_path(join_path(local_root, "kept"), std::to_string(k.job_id)));
        }
    }
    if (this_job_kept) cleanup.kept_after_failed_stage_out = true;
    else retire(job_id);
    cleanup.finished = empty_trash_at(trash.get(), deadline, &cleanup.error);
    return cleanup;
}

bool empty_trash(const std::string& local_root, std::chrono::milliseconds budget, std::string* error) {
    const auto deadline = std::chrono::steady_clock::now() + budget;
    struct stat exists {};
    if (::lstat(local_root.c_str(), &exists) != 0 && errno == ENOENT) return true;
    UniqueFd root = open_local_root(local_root, false);
    UniqueFd trash(::openat(root.get(), "trash", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!trash) return true;
    struct stat st {};
    if (::fstat(trash.get(), &st) != 0 || st.st_uid != 0 || (st.st_mode & 077) != 0)
        throw Error(join_path(local_root, "trash") + " must be owned by root and open to no one else; ask the administrators to fix it");
    return empty_trash_at(trash.get(), deadline, error);
}

UniqueFd lock_job_meta(int meta_fd, std::chrono::milliseconds wait, const std::string& shown_meta_dir) {
    std::string shown = join_path(shown_meta_dir, "lock");
    UniqueFd lock = open_lock_file_at(meta_fd, "lock", true, shown);
    lock_with_deadline(lock.get(), LOCK_EX, wait, shown);
    return lock;
}

std::string format_job_items(const std::vector<JobItem>& items) {
    std::string text;
    for (const JobItem& i : items)
        text += escape_path(i.name) + " " + escape_path(i.path) + " " + i.manifest_hash + " " + (i.key.empty() ? "-" : i.key) +
                " " + i.outcome + (i.mount.empty() ? "" : " " + i.mount) + "\n";
    return text;
}

std::vector<JobItem> parse_job_items(const std::string& text) {
    std::vector<JobItem> items;
    for (const std::string& line : split(text, '\n')) {
        std::vector<std::string> w = split(line, ' ');
        if (w.size() != 5 && w.size() != 6) continue;
        items.push_back({unescape_path(w[0]).value_or(""), unescape_path(w[1]).value_or(""), w[2], w[3] == "-" ? "" : w[3], w[4],
                         w.size() == 6 ? w[5] : std::string()});
    }
    return items;
}

bool is_root_private(const struct stat& st) { return S_ISDIR(st.st_mode) && st.st_uid == 0 && (st.st_mode & 022) == 0; }

UniqueFd open_local_root(const std::string& local_root, bool create) {
    return UniqueFd(open_root_owned_dir(local_root, create, 0755, "local_root"));
}

UniqueFd root_dir_at(int parent_fd, const std::string& name, const std::string& shown_path) {
    UniqueFd dir = ensure_dir_at(parent_fd, name, 0711, shown_path);
    struct stat st {};
    if (::fstat(dir.get(), &st) != 0 || !is_root_private(st))
        throw Error(shown_path + " must be owned by root and writable by no one else; ask the administrators to fix it");
    return dir;
}

void user_dir_at(int parent_fd, const std::string& name, uid_t uid, gid_t gid, const std::string& shown_path) {
    bool created = ::mkdirat(parent_fd, name.c_str(), 0700) == 0;
    if (!created && errno != EEXIST) throw_errno("cannot create " + shown_path);
    UniqueFd dir(::openat(parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!dir) throw_errno("cannot open " + shown_path);
    struct stat st {};
    if (::fstat(dir.get(), &st) != 0) throw_errno("cannot stat " + shown_path);
    bool left_by_root = st.st_uid == 0 && st.st_gid == 0 && (st.st_mode & 07777) == 0700;
    if (created || left_by_root) {
        if (::fchown(dir.get(), uid, gid) != 0) throw_errno("cannot give " + shown_path + " to uid " + std::to_string(uid));
        if (::fchmod(dir.get(), 0700) != 0) throw_errno("cannot set the mode of " + shown_path);
    } else if (st.st_uid != uid) {
        throw Error(shown_path + " belongs to uid " + std::to_string(st.st_uid) + ", not to uid " + std::to_string(uid) +
                    "; ask the administrators to remove it");
    }
}

std::string topology_cache_path(const std::string& local_root) {
    try {
        open_local_root(local_root, true);
    } catch (const Error&) {
        return "";
    }
    return join_path(local_root, "topology.xml");
}

}  // namespace aihpc::stage
