#include "stage/node_layout.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "common/error.hpp"
#include "common/paths.hpp"
#include "common/text.hpp"
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

JobCleanup remove_job_dirs(const std::string& local_root, std::uint32_t job_id) {
    JobCleanup cleanup;
    UniqueFd root = open_local_root(local_root, false);
    UniqueFd jobs(::openat(root.get(), "jobs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!jobs) return cleanup;
    const std::string name = std::to_string(job_id);
    const std::string marker = name + ".aihpc/" + stage_out_failed_marker;
    struct stat st {};
    if (::fstatat(jobs.get(), marker.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        cleanup.kept_after_failed_stage_out = true;
        return cleanup;
    }
    remove_tree_at(jobs.get(), name, &cleanup.error);
    remove_tree_at(jobs.get(), name + ".aihpc");
    return cleanup;
}

std::string format_job_items(const std::vector<JobItem>& items) {
    std::string text;
    for (const JobItem& i : items)
        text += escape_path(i.name) + " " + escape_path(i.path) + " " + i.manifest_hash + " " + (i.key.empty() ? "-" : i.key) +
                " " + i.outcome + "\n";
    return text;
}

std::vector<JobItem> parse_job_items(const std::string& text) {
    std::vector<JobItem> items;
    for (const std::string& line : split(text, '\n')) {
        std::vector<std::string> w = split(line, ' ');
        if (w.size() != 5) continue;
        items.push_back({unescape_path(w[0]).value_or(""), unescape_path(w[1]).value_or(""), w[2], w[3] == "-" ? "" : w[3], w[4]});
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

std::uint64_t other_users_cache_bytes(int cache_fd, uid_t uid, const std::string& shown_path) {
    // A descriptor of its own: listing reads the directory's position to its end.
    UniqueFd listing(::openat(cache_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!listing) throw_errno("cannot open " + shown_path);
    DirectoryNames names(listing.get(), shown_path);
    const std::string own = std::to_string(uid);
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < names.size(); ++i) {
        if (names[i].starts_with('.') || names[i] == own) continue;
        UniqueFd user_cache(::openat(cache_fd, names.c_str(i), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (user_cache) total += cache_bytes_at(user_cache.get());
    }
    return total;
}

CacheLimits user_cache_limits(std::uint64_t node_max_bytes, std::uint64_t node_low_bytes, std::uint64_t other_users_bytes) {
    CacheLimits limits;
    limits.max_bytes = node_max_bytes > other_users_bytes ? node_max_bytes - other_users_bytes : 1;
    limits.low_bytes = node_low_bytes > other_users_bytes ? node_low_bytes - other_users_bytes : 0;
    return limits;
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
