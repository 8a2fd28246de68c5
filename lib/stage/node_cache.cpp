#include "stage/node_cache.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>

#include "common/error.hpp"
#include "common/saturating.hpp"
#include "common/json.hpp"
#include "common/paths.hpp"
#include "common/text.hpp"
#include "stage/fs.hpp"
#include "stage/tree_flush.hpp"

namespace aihpc::stage {

namespace {

// Whether the file system of fd keeps its files in memory only (tmpfs, ramfs): nothing
// written there outlives a crash or a reboot, so flushing an entry would cost a walk and
// a reopen of every file for no durability at all.
bool memory_backed(int fd) {
    struct statfs fs {};
    return ::fstatfs(fd, &fs) == 0 && (fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC);
}

}  // namespace

const char* to_string(SourceKind kind) {
    switch (kind) {
    case SourceKind::tree: return "tree";
    case SourceKind::file: return "file";
    case SourceKind::archive: return "archive";
    case SourceKind::squashfs: return "squashfs";
    }
    return "?";
}

namespace {

std::string key_of(const std::string& owner, const std::string& realpath, SourceKind kind, const std::string& manifest_hash) {
    std::string text = "aihpc-cache-v1";
    for (const std::string& part : {owner, realpath, std::string(to_string(kind)), manifest_hash}) {
        text += '\0';
        text += part;
    }
    return hash_bytes(text.data(), text.size());
}

}  // namespace

std::string cache_key(uid_t uid, const std::string& realpath, SourceKind kind, const std::string& manifest_hash) {
    return key_of(std::to_string(uid), realpath, kind, manifest_hash);
}

// "shared" is no uid's decimal form, so no user's key can equal a shared one.
std::string shared_cache_key(const std::string& realpath, SourceKind kind, const std::string& manifest_hash) {
    return key_of("shared", realpath, kind, manifest_hash);
}

std::string cache_entry_json(const CacheEntryInfo& e) {
    char numbers[160];
    std::snprintf(numbers, sizeof numbers, "\"bytes\": %" PRIu64 ", \"files\": %" PRIu64 ", \"last_used\": %" PRId64,
                  e.bytes, e.files, e.last_used_ns / 1000000000);
    return "{\"key\": " + json_quote(e.key) + ", \"src\": " + json_quote(e.src) + ", \"kind\": " + json_quote(e.kind) +
           ", " + numbers + ", \"in_use\": " + (e.in_use ? "true" : "false") +
           ", \"manifest_hash\": " + json_quote(e.manifest_hash) + "}";
}

std::string cache_verdict_json(const std::string& key, const std::string& failure) {
    return "{\"key\": " + json_quote(key) + ", \"ok\": " + (failure.empty() ? "true" : "false") +
           (failure.empty() ? std::string() : ", \"error\": " + json_quote(failure)) + "}";
}

std::vector<std::string> plan_eviction(const std::vector<CacheEntryInfo>& entries, std::uint64_t incoming,
                                       std::uint64_t low) {
    // Saturating: an info file may claim any number, and a wrapped sum would evict nothing.
    std::uint64_t used = 0;
    for (const CacheEntryInfo& e : entries) used = e.bytes > UINT64_MAX - used ? UINT64_MAX : used + e.bytes;
    std::vector<const CacheEntryInfo*> order;
    for (const CacheEntryInfo& e : entries)
        if (!e.in_use) order.push_back(&e);
    std::stable_sort(order.begin(), order.end(), [](const CacheEntryInfo* a, const CacheEntryInfo* b) {
        return a->last_used_ns != b->last_used_ns ? a->last_used_ns < b->last_used_ns : a->key < b->key;
    });
    std::vector<std::string> out;
    for (const CacheEntryInfo* e : order) {
        if (incoming <= low && used <= low - incoming) break;
        out.push_back(e->key);
        used -= std::min(used, e->bytes);
    }
    return out;
}

namespace {

// The cache's own directories are never reached through a symlink; a reader makes none.
UniqueFd cache_subdir(int parent_fd, const char* name, const std::string& shown, CacheAccess access) {
    if (access == CacheAccess::shared_reader) {
        UniqueFd fd(::openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!fd) throw_errno("cannot open " + shown);
        return fd;
    }
    UniqueFd fd = ensure_dir_at(parent_fd, name, access == CacheAccess::shared_root ? 0755 : 0700, shown);
    struct stat st {};
    if (access == CacheAccess::shared_root && (::fstat(fd.get(), &st) != 0 || st.st_uid != 0 || (st.st_mode & 022)))
        throw Error(shown + " must be owned by root and writable by no one else; remove it");
    return fd;
}

bool is_key_name(const std::string& name) {
    return name.size() == 32 && std::all_of(name.begin(), name.end(), [](char c) {
               return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
           });
}

std::vector<std::string> list_names(int dir_fd) {
    std::vector<std::string> names;
    int fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return names;
    UniqueFd listing(fd);
    try {
        DirectoryNames listed(listing.get(), "the cache");
        for (std::size_t i = 0; i < listed.size(); ++i) names.emplace_back(listed[i]);
    } catch (const Error&) {
        names.clear();
    }
    return names;
}

}  // namespace

std::map<std::string, std::string> parse_info(const std::string& text) {
    std::map<std::string, std::string> out;
    for (const std::string& line : split(text, '\n')) {
        std::size_t eq = line.find('=');
        if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
    }
    return out;
}

std::uint64_t cache_bytes_at(int cache_fd) {
    int fd = ::openat(cache_fd, "entries", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return 0;
    UniqueFd entries(fd);
    std::uint64_t total = 0;
    for (const std::string& name : list_names(entries.get())) {
        if (!is_key_name(name)) continue;
        int entry_fd = ::openat(entries.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (entry_fd < 0) continue;
        UniqueFd entry(entry_fd);
        auto info = parse_info(read_small_file_at(entry.get(), "info", small_file_max).value_or(""));
        std::uint64_t bytes = parse_uint(info["bytes"]).value_or(0);
        total = bytes > UINT64_MAX - total ? UINT64_MAX : total + bytes;
    }
    return total;
}

NodeCache::NodeCache(const std::string& dir, CacheLimits limits, CacheAccess access)
    : dir_(dir), limits_(limits), access_(access) {
    // Parents may be missing for a tool's private cache; the last component is ours.
    // The shared cache's directory is made by root (shared_cache.hpp) before it is used.
    if (access == CacheAccess::owner) make_directories(dir, 0700, "the cache directory");
    // The shared cache's directory is root's 0711: a reader may enter it, not list it.
    int fd = ::open(dir.c_str(), (access == CacheAccess::shared_reader ? O_PATH : O_RDONLY) | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) throw_errno("cannot open the cache directory " + dir);
    dir_fd_.reset(fd);
    struct stat st {};
    if (access == CacheAccess::owner && ::fstat(dir_fd_.get(), &st) == 0 && st.st_uid == ::geteuid() && (st.st_mode & 077))
        ::fchmod(dir_fd_.get(), 0700);  // other users must never read a user's cache
    entries_fd_ = cache_subdir(dir_fd_.get(), "entries", join_path(dir, "entries"), access);
    locks_fd_ = cache_subdir(dir_fd_.get(), "locks", join_path(dir, "locks"), access);
}

std::string NodeCache::entry_path(const std::string& key) const { return join_path(join_path(dir_, "entries"), key); }

UniqueFd NodeCache::lock_key(const std::string& key, int operation, bool create) const {
    std::string name = key + ".lock";
    std::string shown = join_path(join_path(dir_, "locks"), name);
    for (int attempt = 0; attempt < 1000; ++attempt) {
        // flock takes a lease on a read-only descriptor too: a reader of the shared cache
        // needs no write access to its lock files.
        bool reader = access_ == CacheAccess::shared_reader;
        UniqueFd lock = open_lock_file_at(locks_fd_.get(), name, create && !reader, shown,
                                          access_ == CacheAccess::shared_root ? 0644 : 0600, reader);
        if (!lock) return UniqueFd();
        if (!lock_with_deadline(lock.get(), operation, lock_wait_, shown)) return UniqueFd();
        // An evictor unlinks the lock file while holding it: a lock on the unlinked
        // inode protects nothing, so start again with the current file.
        struct stat held {}, current {};
        if (::fstat(lock.get(), &held) == 0 && ::fstatat(locks_fd_.get(), name.c_str(), &current, AT_SYMLINK_NOFOLLOW) == 0 &&
            held.st_ino == current.st_ino && held.st_dev == current.st_dev)
            return lock;
        if (!create) return UniqueFd();
    }
    throw Error("cannot lock the cache entry " + key + " in " + dir_ + ": its lock file keeps changing");
}

bool NodeCache::published(const std::string& key) const {
    struct stat st {};
    return ::fstatat(entries_fd_.get(), key.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

namespace {

// A lease on a shared entry is a shared flock on its directory, which every user may
// open, and no one but root may write. Its lock file stays root's alone: a user who
// holds an entry's directory locked keeps that entry and delays its readers, who then
// take the source from their own cache, but never stops root producing or evicting any
// other entry.
bool entry_dir_in_use(int entries_fd, const std::string& key) {
    UniqueFd dir(::openat(entries_fd, key.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    return dir && ::flock(dir.get(), LOCK_EX | LOCK_NB) != 0;
}

}  // namespace

std::optional<Lease> NodeCache::lease(const std::string& key) {
    if (!is_key_name(key)) return std::nullopt;
    if (access_ != CacheAccess::owner) {
        std::string shown = entry_path(key);
        UniqueFd dir(::openat(entries_fd_.get(), key.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!dir || !lock_with_deadline(dir.get(), LOCK_SH, lock_wait_, shown)) return std::nullopt;
        // An evictor renames the entry away before it removes it: a lease on a directory
        // no longer published protects nothing.
        struct stat held {}, current {};
        if (::fstat(dir.get(), &held) != 0 || ::fstatat(entries_fd_.get(), key.c_str(), &current, AT_SYMLINK_NOFOLLOW) != 0 ||
            held.st_ino != current.st_ino || held.st_dev != current.st_dev)
            return std::nullopt;
        return Lease(std::move(dir), key);
    }
    UniqueFd fd = lock_key(key, LOCK_SH, false);
    if (!fd || !published(key)) return std::nullopt;
    return Lease(std::move(fd), key);
}

std::optional<Manifest> NodeCache::stored_manifest(const std::string& key) const {
    int fd = ::openat(entries_fd_.get(), key.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return std::nullopt;
    UniqueFd entry(fd);
    auto text = read_small_file_at(entry.get(), "manifest", manifest_file_max);
    if (!text) return std::nullopt;
    return Manifest::parse(*text);
}

void NodeCache::log(const std::string& what, const std::string& key, const std::vector<std::string>& info) const {
    // O_NONBLOCK: a FIFO planted as the log must not hang the stager; only a regular
    // file is written.
    if (access_ == CacheAccess::shared_reader) return;
    int fd = ::openat(dir_fd_.get(), "log", O_WRONLY | O_APPEND | O_CREAT | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC,
                      access_ == CacheAccess::shared_root ? 0644 : 0600);
    if (fd < 0) return;
    UniqueFd file(fd);
    struct stat st {};
    if (::fstat(file.get(), &st) != 0 || !S_ISREG(st.st_mode)) return;
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    std::string line = std::to_string(::time(nullptr)) + " " + host + " pid=" + std::to_string(::getpid()) + " " + what +
                       " " + key;
    for (const std::string& item : info)
        if (item.rfind("src=", 0) == 0) line += " " + escape_path(item);
    for (const std::string& item : info)
        if (item.rfind("bytes=", 0) == 0) line += " " + item;
    line += "\n";
    // One write with O_APPEND: lines of concurrent stagers never interleave.
    [[maybe_unused]] ssize_t written = ::write(file.get(), line.data(), line.size());
}

void NodeCache::remove_leftovers(const std::string& key) {
    // The caller holds the key's lock exclusively: every temporary of that key belongs
    // to a producer that died.
    for (const std::string& name : list_names(entries_fd_.get()))
        if (name.rfind(".tmp." + key, 0) == 0) remove_tree_at(entries_fd_.get(), name);
}

void NodeCache::remove_orphans() {
    for (const std::string& name : list_names(entries_fd_.get())) {
        if (name.rfind(".dead.", 0) == 0) {
            // Unpublished by an evictor; removing it twice is harmless.
            remove_tree_at(entries_fd_.get(), name);
            continue;
        }
        if (name.rfind(".tmp.", 0) != 0 || name.size() < 5 + 32) continue;
        std::string key = name.substr(5, 32);
        if (!is_key_name(key)) continue;
        // A live producer holds its key's lock file exclusively until it publishes, and
        // no evictor unlinks a lock file held by someone else: a missing lock file means
        // a dead producer. The probe never creates a lock file.
        struct stat st {};
        bool no_lock_file = ::fstatat(locks_fd_.get(), (key + ".lock").c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT;
        UniqueFd lock;
        if (!no_lock_file) lock = lock_key(key, LOCK_EX | LOCK_NB, false);
        if (no_lock_file || lock) remove_tree_at(entries_fd_.get(), name);
    }
}

Obtained NodeCache::obtain(const std::string& key, std::uint64_t incoming_bytes, const std::vector<std::string>& info,
                           const Producer& produce) {
    return obtain(key, incoming_bytes, info,
                  [&](int entry_fd, const std::string& entry_path, std::uint64_t) { return produce(entry_fd, entry_path); });
}

Obtained NodeCache::obtain(const std::string& key, std::uint64_t incoming_bytes, const std::vector<std::string>& info,
                           const SizedProducer& produce) {
    if (!is_key_name(key)) throw Error("bad cache key '" + key + "'");
    if (access_ == CacheAccess::shared_reader) throw Error("the shared cache " + dir_ + " is only read by a job's user");
    UniqueFd lock = lock_key(key, LOCK_SH, true);
    if (!published(key)) {
        // Converting to LOCK_EX drops the shared lock first; the lock may have been
        // replaced in between, so take it afresh.
        lock.reset();
        lock = lock_key(key, LOCK_EX, true);
    }
    Obtained result;
    result.data_path = join_path(entry_path(key), "data");
    if (published(key)) {
        // Downgrading an exclusive lock never waits.
        if (::flock(lock.get(), LOCK_SH) != 0) throw_errno("cannot share the cache lock of " + key);
        ::futimens(lock.get(), nullptr);
        log("hit", key, info);
        result.hit = true;
        result.lease = Lease(std::move(lock), key);
        return result;
    }

    // This process is the producer. Whatever a dead producer left is removed first.
    remove_leftovers(key);
    std::uint64_t room = make_room(incoming_bytes);
    std::string temp = ".tmp." + key + "." + unique_suffix();
    std::string temp_path = join_path(join_path(dir_, "entries"), temp);
    if (::mkdirat(entries_fd_.get(), temp.c_str(), 0700) != 0) throw_errno("cannot create " + temp_path);
    TemporaryTree unpublished(entries_fd_.get(), temp);
    UniqueFd entry(::openat(entries_fd_.get(), temp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!entry) throw_errno("cannot open " + temp_path);

    Manifest manifest = produce(entry.get(), temp_path, room);
    write_file_atomic_at(entry.get(), "manifest", manifest.serialize(), 0444, join_path(temp_path, "manifest"));
    std::string info_text = "key=" + key + "\n";
    for (const std::string& line : info) info_text += line + "\n";
    info_text += "bytes=" + std::to_string(manifest.byte_count()) + "\nfiles=" + std::to_string(manifest.file_count()) + "\n";
    write_file_atomic_at(entry.get(), "info", info_text, 0444, join_path(temp_path, "info"));
    // A published entry is trusted by metadata alone: its content must reach the disk
    // before its name does, or a crash could leave a complete-looking, empty entry. Only
    // the entry's own files are flushed, in parallel; other writers' data is not ours to
    // wait for. Flushed while the entry is still writable, then its mode once more. A
    // cache in memory (a tmpfs local_root) has no disk to reach.
    if (flush_to_disk_ && !memory_backed(entry.get())) fsync_tree(entry.get(), sync_threads_, temp_path);
    if (::fchmod(entry.get(), 0555) != 0) throw_errno("cannot make " + temp_path + " read-only");
    if (::fsync(entry.get()) != 0) throw_errno("cannot flush " + temp_path + " to disk");
    // Same parent, so renaming a read-only directory needs no write access to it; the
    // entry appears whole or not at all.
    if (::renameat(entries_fd_.get(), temp.c_str(), entries_fd_.get(), key.c_str()) != 0)
        throw_errno("cannot publish the cache entry " + entry_path(key));
    unpublished.keep();
    ::fsync(entries_fd_.get());
    if (::flock(lock.get(), LOCK_SH) != 0) throw_errno("cannot share the cache lock of " + key);
    ::futimens(lock.get(), nullptr);
    std::vector<std::string> logged = info;
    logged.push_back("bytes=" + std::to_string(manifest.byte_count()));
    log("miss", key, logged);
    result.lease = Lease(std::move(lock), key);
    return result;
}

std::optional<CacheEntryInfo> NodeCache::stored_info(const std::string& key) const {
    if (!is_key_name(key)) return std::nullopt;
    int fd = ::openat(entries_fd_.get(), key.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return std::nullopt;
    UniqueFd entry(fd);
    std::optional<std::string> text = read_small_file_at(entry.get(), "info", small_file_max);
    if (!text) return std::nullopt;
    auto info = parse_info(*text);
    CacheEntryInfo e;
    e.key = key;
    e.src = info["src"];
    e.realpath = info["realpath"];
    e.kind = info["kind"];
    e.manifest_hash = info["manifest_hash"];
    e.bytes = parse_uint(info["bytes"]).value_or(0);
    e.files = parse_uint(info["files"]).value_or(0);
    if (info.contains("inodes")) e.inodes = parse_uint(info["inodes"]);
    return e;
}

std::vector<CacheEntryInfo> NodeCache::list() const {
    std::vector<CacheEntryInfo> out;
    for (const std::string& name : list_names(entries_fd_.get())) {
        if (!is_key_name(name)) continue;
        std::optional<CacheEntryInfo> stored = stored_info(name);
        if (!stored) {
            // An entry without its info file still holds space and may be evicted.
            struct stat st {};
            if (::fstatat(entries_fd_.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode)) continue;
            stored = CacheEntryInfo{};
            stored->key = name;
        }
        CacheEntryInfo e = std::move(*stored);
        std::string lock_name = name + ".lock";
        struct stat st {};
        if (::fstatat(locks_fd_.get(), lock_name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0)
            e.last_used_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
        int lock = ::openat(locks_fd_.get(), lock_name.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
        if (lock >= 0) {
            UniqueFd probe(lock);
            struct stat opened {};
            // Whatever is not a regular file is no lock, and no lease protects the entry.
            e.in_use = ::fstat(probe.get(), &opened) == 0 && S_ISREG(opened.st_mode) &&
                       ::flock(probe.get(), LOCK_EX | LOCK_NB) != 0;
        }
        if (access_ != CacheAccess::owner && !e.in_use) e.in_use = entry_dir_in_use(entries_fd_.get(), name);
        out.push_back(std::move(e));
    }
    return out;
}

bool NodeCache::evict(const std::string& key) {
    if (!is_key_name(key)) return false;
    UniqueFd lock = lock_key(key, LOCK_EX | LOCK_NB, false);
    if (!lock) {
        // No lock file at all: an entry nobody ever leased through this cache.
        struct stat st {};
        if (::fstatat(locks_fd_.get(), (key + ".lock").c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 || !published(key))
            return false;
        lock = lock_key(key, LOCK_EX | LOCK_NB, true);
        if (!lock) return false;
    }
    if (!published(key)) return false;
    // A shared entry's readers lease its directory: held by any of them, it stays.
    UniqueFd readers;
    if (access_ != CacheAccess::owner) {
        readers.reset(::openat(entries_fd_.get(), key.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!readers || ::flock(readers.get(), LOCK_EX | LOCK_NB) != 0) return false;
    }
    // Unpublish atomically first, so no new reader finds a half-removed entry.
    std::string dead = ".dead." + key + "." + unique_suffix();
    if (::renameat(entries_fd_.get(), key.c_str(), entries_fd_.get(), dead.c_str()) != 0) return false;
    remove_tree_at(entries_fd_.get(), dead);
    ::unlinkat(locks_fd_.get(), (key + ".lock").c_str(), 0);
    return true;
}

std::uint64_t NodeCache::make_room(std::uint64_t incoming) {
    if (!promises_ || limits_.max_bytes == 0) return make_room_within(limits_.max_bytes, incoming);
    return promises_->promise(incoming, [&](const PromisedBytes& since) {
        // What other copies were promised since root planned the limits narrows them:
        // the user's own against their share, everyone's against the node's room.
        std::uint64_t everyone = saturating_add(since.own, since.others);
        std::uint64_t max = std::min(limits_.max_bytes, std::min(saturating_sub(limits_.share_left, since.own),
                                                                 saturating_sub(limits_.node_left, everyone)));
        return make_room_within(std::max<std::uint64_t>(max, 1), incoming);
    });
}

std::uint64_t NodeCache::make_room_within(std::uint64_t max_bytes, std::uint64_t incoming) {
    std::uint64_t free_bytes = free_space(entries_fd_.get());
    if (max_bytes == 0) return free_bytes;
    std::vector<CacheEntryInfo> entries = list();
    std::uint64_t used = 0;
    // Saturating: an info file may claim any number, and only its own user pays for it.
    for (const CacheEntryInfo& e : entries) used = e.bytes > UINT64_MAX - used ? UINT64_MAX : used + e.bytes;
    if (used > max_bytes || incoming > max_bytes - used) {
        for (const std::string& key : plan_eviction(entries, incoming, limits_.low_bytes)) {
            auto it = std::find_if(entries.begin(), entries.end(), [&](const CacheEntryInfo& e) { return e.key == key; });
            if (evict(key)) used -= std::min(used, it->bytes);
        }
    }
    if (used > max_bytes || incoming > max_bytes - used)
        throw Error("the node cache " + dir_ + " cannot take " + std::to_string(incoming) + " bytes: " +
                    std::to_string(used) + " bytes are held by running jobs and this user's share of the node cache is " +
                    std::to_string(max_bytes) +
                    " bytes (cache_user_max, and cache_max less what other users hold, and what this user's private copies and job dirs take); let this user's other jobs on the node end, or use a node with more local disk");
    return std::min(max_bytes - used, free_bytes);
}

std::vector<std::string> NodeCache::collect(std::uint64_t target) {
    remove_orphans();
    std::vector<std::string> evicted;
    for (const std::string& key : plan_eviction(list(), 0, target))
        if (evict(key)) evicted.push_back(key);
    return evicted;
}

}  // namespace aihpc::stage
