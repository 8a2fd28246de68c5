// The node's shared cache (shared_cache.hpp): root's side, and shared_user's read.
#include "stage/shared_cache.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <optional>

#include "common/error.hpp"
#include "common/paths.hpp"
#include "common/process.hpp"
#include "common/saturating.hpp"
#include "common/text.hpp"
#include "stage/cache_ledger.hpp"
#include "stage/fs.hpp"
#include "stage/node_layout.hpp"
#include "stage/stage_in.hpp"

namespace aihpc::stage {

std::string shared_cache_dir(const std::string& local_root) { return join_path(local_root, "shared"); }

std::string not_world_readable(const Manifest& manifest) {
    for (const ManifestEntry& e : manifest.entries) {
        if (e.type == EntryType::file && (e.mode & 0004) == 0) return e.path;
        if (e.type == EntryType::directory && (e.mode & 0005) != 0005) return e.path;
    }
    return {};
}

namespace {

// Nesting deeper than this is no dataset; it would only cost root a deep recursion.
constexpr unsigned adopt_depth_max = 1024;
// An incoming copy older than this lost its producer (killed with its step), for no
// production runs longer than its step's stage_timeout.
constexpr std::chrono::hours incoming_stale_after{48};

void same_inode_or_throw(int fd, const struct stat& seen, const std::string& shown) {
    struct stat now {};
    if (::fstat(fd, &now) != 0 || now.st_ino != seen.st_ino || now.st_dev != seen.st_dev)
        throw Error(shown + " changed while root took it over");
}

// Root takes over what shared_user copied: every entry must be shared_user's own, a
// directory, a regular file with one name (no link to a file elsewhere, whose owner
// root would change) or a symlink. Each becomes root's, read-only for everyone, without
// set-id bits. Nothing is followed; every file is changed through its own descriptor.
void adopt_entry(int parent_fd, const char* name, uid_t reader, unsigned depth, const std::string& shown) {
    if (depth > adopt_depth_max) throw Error(shown + " is nested more than " + std::to_string(adopt_depth_max) + " deep");
    struct stat st {};
    if (::fstatat(parent_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) throw_errno("cannot stat " + shown);
    if (st.st_uid != reader) throw Error(shown + " is not the shared reader's copy (it belongs to uid " + std::to_string(st.st_uid) + ")");
    if (S_ISLNK(st.st_mode)) {
        if (::fchownat(parent_fd, name, 0, 0, AT_SYMLINK_NOFOLLOW) != 0) throw_errno("cannot take over " + shown);
        return;
    }
    if (S_ISREG(st.st_mode)) {
        if (st.st_nlink != 1) throw Error(shown + " has more than one name");
        UniqueFd file(::openat(parent_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
        if (!file) throw_errno("cannot open " + shown);
        same_inode_or_throw(file.get(), st, shown);
        // The owner first: the kernel drops set-id bits on a chown, and the mode is set after.
        if (::fchown(file.get(), 0, 0) != 0 || ::fchmod(file.get(), (st.st_mode & 0111) ? 0555 : 0444) != 0)
            throw_errno("cannot take over " + shown);
        return;
    }
    if (!S_ISDIR(st.st_mode)) throw Error(shown + " is neither a file, a directory nor a symlink");
    UniqueFd dir(::openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!dir) throw_errno("cannot open " + shown);
    same_inode_or_throw(dir.get(), st, shown);
    DirectoryNames names(dir.get(), shown);
    for (std::size_t i = 0; i < names.size(); ++i)
        adopt_entry(dir.get(), names.c_str(i), reader, depth + 1, shown + "/" + std::string(names[i]));
    if (::fchown(dir.get(), 0, 0) != 0 || ::fchmod(dir.get(), 0555) != 0) throw_errno("cannot take over " + shown);
}

UniqueFd open_subdir(int parent_fd, const std::string& name, const std::string& shown) {
    UniqueFd fd(::openat(parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) throw_errno("cannot open " + shown);
    return fd;
}

// Copies that lost their producer: removed, so that a killed step's copy never fills
// the disk. A live production is younger than incoming_stale_after.
void remove_stale_incoming(int incoming_fd) {
    DirectoryNames names(incoming_fd, "shared/incoming");
    auto now = std::chrono::system_clock::now();
    for (std::size_t i = 0; i < names.size(); ++i) {
        struct stat st {};
        if (::fstatat(incoming_fd, names.c_str(i), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        auto mtime = std::chrono::system_clock::from_time_t(st.st_mtim.tv_sec);
        if (now - mtime > incoming_stale_after) remove_tree_at(incoming_fd, names.c_str(i));
    }
}

// What every user's cache holds, as root's ledger last measured it.
std::uint64_t users_cache_bytes(int local_root_fd) {
    UniqueFd cache_root(::openat(local_root_fd, "cache", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    // No uid is (uid_t)-1: "other users" of it are all of them.
    return cache_root ? read_cache_ledger(cache_root.get()).other_users_bytes(static_cast<uid_t>(-1)) : 0;
}

// The shared cache's limits: cache_shared_max, and never more than what the users' caches
// (root's ledger) leave of cache_max.
CacheLimits shared_limits(const SharedStageRequest& r, int local_root_fd) {
    CacheLimits limits;
    if (r.cache_max == 0) return limits;
    std::uint64_t max = std::min(r.shared_max ? r.shared_max : r.cache_max, saturating_sub(r.cache_max, users_cache_bytes(local_root_fd)));
    limits.max_bytes = std::max<std::uint64_t>(max, 1);
    long double low_share = static_cast<long double>(std::min(r.cache_low, r.cache_max)) / static_cast<long double>(r.cache_max);
    limits.low_bytes = static_cast<std::uint64_t>(static_cast<long double>(limits.max_bytes) * low_share);
    return limits;
}

// What the shared cache's entries hold, from their root-written info files.
std::uint64_t shared_inodes(const SharedStageRequest& r, const CacheLimits& limits) {
    std::uint64_t used = 0;
    for (const CacheEntryInfo& e : NodeCache(shared_cache_dir(r.local_root), limits, CacheAccess::shared_root).list())
        used = saturating_add(used, e.inodes.value_or(saturating_add(e.files, 1)));
    return used;
}

// Root's part once shared_user's copy is whole: taken over, checked, published.
SharedStageResult publish_copy(const SharedStageRequest& r, int incoming_fd, const std::string& incoming_shown,
                               const std::map<std::string, std::string>& read, const CacheLimits& limits) {
    const std::string& key = read.at("key");
    const std::string& shared_key = read.at("shared_key");
    std::string entry_shown = join_path(incoming_shown, "cache/entries/" + key);
    UniqueFd cache_dir = open_subdir(incoming_fd, "cache", incoming_shown + "/cache");
    UniqueFd entries = open_subdir(cache_dir.get(), "entries", incoming_shown + "/cache/entries");
    if (key.size() != 32 || key.find_first_not_of("0123456789abcdef") != std::string::npos)
        throw Error("the shared reader named no cache entry");
    UniqueFd entry = open_subdir(entries.get(), key, entry_shown);
    std::optional<std::string> text = read_small_file_at(entry.get(), "manifest", manifest_file_max);
    if (!text) throw Error(entry_shown + " has no manifest");
    Manifest manifest = Manifest::parse(*text);
    if (std::string path = not_world_readable(manifest); !path.empty())
        return {false, "not shared: " + (path == "." ? r.src : join_path(r.src, path)) +
                           " may not be read by every user (the shared cache takes only files others may read, "
                           "in directories others may list)"};
    adopt_entry(entry.get(), "data", r.reader.uid, 0, join_path(entry_shown, "data"));

    NodeCache shared(shared_cache_dir(r.local_root), limits, CacheAccess::shared_root);
    std::vector<std::string> info = {"src=" + r.src, "realpath=" + read.at("realpath"), "kind=" + read.at("kind"),
                                     "manifest_hash=" + read.at("manifest_hash"),
                                     "inodes=" + std::to_string(manifest.entries.size() + 1)};
    Obtained got = shared.obtain(shared_key, manifest.byte_count(), info, [&](int entry_fd, const std::string& entry_path) {
        if (::renameat(entry.get(), "data", entry_fd, "data") != 0) throw_errno("cannot move the shared copy into " + entry_path);
        return manifest;
    });
    return {true, got.hit ? "another job put it into the node's shared cache meanwhile"
                          : "read as " + r.reader_name + " (shared_user) into the node's shared cache, " +
                                std::to_string(manifest.byte_count()) + " bytes"};
}

}  // namespace

SharedStageResult stage_into_shared_cache(const SharedStageRequest& r) {
    UniqueFd root = open_local_root(r.local_root, false);
    UniqueFd shared_dir = root_dir_at(root.get(), "shared", shared_cache_dir(r.local_root));
    std::string incoming_shown = join_path(shared_cache_dir(r.local_root), "incoming");
    UniqueFd incoming = ensure_dir_at(shared_dir.get(), "incoming", 0700, incoming_shown);
    struct stat st {};
    if (::fstat(incoming.get(), &st) != 0 || st.st_uid != 0 || (st.st_mode & 077) != 0)
        throw Error(incoming_shown + " must be root's and private to root; remove it");
    remove_stale_incoming(incoming.get());
    // The shared cache's own directories exist before the reader looks into them.
    CacheLimits limits = shared_limits(r, root.get());
    { NodeCache made(shared_cache_dir(r.local_root), limits, CacheAccess::shared_root); }

    std::string name = unique_suffix();
    std::string shown = join_path(incoming_shown, name);
    if (::mkdirat(incoming.get(), name.c_str(), 0700) != 0) throw_errno("cannot create " + shown);
    TemporaryTree copy(incoming.get(), name);
    UniqueFd dir = open_subdir(incoming.get(), name, shown);
    if (::fchown(dir.get(), r.reader.uid, r.reader.gid) != 0) throw_errno("cannot give " + shown + " to shared_user");

    std::string max_inodes = "-";
    if (r.inode_cap) max_inodes = std::to_string(saturating_sub(r.inode_cap, shared_inodes(r, limits)));
    std::vector<std::string> argv = {r.reader_program, "shared-read", r.src, r.base_dir, std::to_string(r.threads),
                                     std::to_string(limits.max_bytes), max_inodes, shared_cache_dir(r.local_root)};
    argv.insert(argv.end(), r.allow.begin(), r.allow.end());
    CaptureOptions as_reader;
    as_reader.user = r.reader;
    as_reader.fd3 = dir.get();
    CommandOutput out = capture_output_with(argv, as_reader);
    if (out.status != 0) return {false, "not shared: " + failure_line(out, "the read as shared_user")};
    std::map<std::string, std::string> read = parse_info(out.out);
    for (const char* needed : {"cache", "key", "shared_key", "realpath", "kind", "manifest_hash"})
        if (!read.contains(needed)) return {false, "not shared: the read as shared_user said nothing of its " + std::string(needed)};
    if (read["cache"] == "shared") return {true, "already in the node's shared cache"};
    try {
        return publish_copy(r, dir.get(), shown, read, limits);
    } catch (const Error& e) {
        return {false, std::string("not shared: ") + e.what()};
    }
}

std::uint64_t keep_shared_cache_to_its_cap(const std::string& local_root, std::uint64_t cap, std::uint64_t cache_max,
                                           double low_share) {
    UniqueFd root(::open(local_root.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    UniqueFd shared = root ? UniqueFd(::openat(root.get(), "shared", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) : UniqueFd();
    if (!shared) return 0;
    // An empty shared cache, the common case, costs no read of the ledger.
    std::uint64_t held = cache_bytes_at(shared.get());
    if (held == 0) return 0;
    if (cache_max != 0) {
        std::uint64_t left = saturating_sub(cache_max, users_cache_bytes(root.get()));
        cap = cap == 0 ? left : std::min(cap, left);
    }
    if (cache_max == 0 && cap == 0) return held;
    if (held <= cap) return held;
    NodeCache cache(shared_cache_dir(local_root), CacheLimits{}, CacheAccess::shared_root);
    cache.collect(static_cast<std::uint64_t>(static_cast<long double>(cap) * std::clamp(low_share, 0.0, 1.0)));
    return cache_bytes_at(shared.get());
}

void record_shared_uses(const std::string& local_root, std::uint32_t job_id) {
    UniqueFd root(::open(local_root.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    UniqueFd locks = root ? UniqueFd(::openat(root.get(), "shared/locks", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) : UniqueFd();
    UniqueFd jobs = root ? UniqueFd(::openat(root.get(), "jobs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) : UniqueFd();
    if (!locks || !jobs) return;
    UniqueFd meta(::openat(jobs.get(), (std::to_string(job_id) + ".aihpc").c_str(),
                           O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!meta) return;
    std::optional<std::string> text = read_small_file_at(meta.get(), "items", small_file_max);
    if (!text) return;
    for (const JobItem& item : parse_job_items(*text)) {
        const std::string& key = item.key;
        if (key.size() != 32 || key.find_first_not_of("0123456789abcdef") != std::string::npos) continue;
        struct stat st {};
        std::string lock = key + ".lock";
        if (::fstatat(locks.get(), lock.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) && st.st_uid == 0)
            ::utimensat(locks.get(), lock.c_str(), nullptr, AT_SYMLINK_NOFOLLOW);
    }
}

int shared_read_main(int argc, char** argv) {
    if (argc < 8) {
        std::fputs("usage: aihpc-node shared-read SRC BASE_DIR THREADS MAX_BYTES MAX_INODES SHARED_DIR [ALLOW...]\n", stderr);
        return 2;
    }
    try {
        // Everything is made below the directory root gave this process as descriptor 3,
        // whose path shared_user may not even traverse.
        if (::fchdir(3) != 0) throw_errno("cannot enter the incoming directory (descriptor 3)");
        StageSettings settings;
        settings.to_dir = "link";
        settings.cache_dir = "cache";
        settings.shared_dir = argv[7];
        std::optional<std::uint64_t> threads = parse_uint(argv[4]), max = parse_uint(argv[5]);
        if (!threads || !max || *threads == 0 || *threads > 256) throw Error("bad THREADS or MAX_BYTES");
        settings.threads = static_cast<unsigned>(*threads);
        settings.limits.max_bytes = *max;
        settings.limits.low_bytes = *max;
        if (std::string(argv[6]) != "-") {
            settings.limits.max_inodes = parse_uint(argv[6]);
            if (!settings.limits.max_inodes) throw Error("bad MAX_INODES");
        }
        settings.mount_by_root = true;  // nothing is mounted: the copy is all that is wanted
        // Root flushes the copy once it has taken it over, before it publishes it in the
        // shared cache; a flush here too would make the first stage pay the disk twice.
        settings.flush_cache_entries = false;
        settings.uid = ::getuid();
        settings.base_dir = argv[3];
        for (int i = 8; i < argc; ++i) settings.allow.emplace_back(argv[i]);
        StagedItem item = stage_in(argv[2], "data", settings);
        // Root reads these lines back: a path with a newline could forge a key.
        if (item.realpath.find('\n') != std::string::npos) throw Error("the source's path holds a newline");
        std::printf("cache=%s\nkey=%s\nshared_key=%s\nkind=%s\nmanifest_hash=%s\nrealpath=%s\n",
                    item.cache == "shared" ? "shared" : "reader", item.key.c_str(),
                    shared_cache_key(item.realpath, item.kind, item.freshness).c_str(), to_string(item.kind),
                    item.manifest_hash.c_str(), item.realpath.c_str());
        return std::fflush(stdout) == 0 ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "aihpc-node: %s\n", e.what());
        return 1;
    }
}

}  // namespace aihpc::stage
