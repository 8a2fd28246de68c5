// The node cache of one user: one read-only copy per (user, source, manifest) per node.
//
// Layout of the cache directory (mode 0700, owned by the user):
//   entries/<key>/data       the staged item (a directory tree, or one file)
//   entries/<key>/manifest   its manifest (manifest.hpp text form)
//   entries/<key>/info       key=value lines: src, realpath, kind, manifest_hash, bytes, files
//   entries/.tmp.<key>.*     an entry being produced; renamed to <key> when whole
//   locks/<key>.lock         flock: LOCK_EX while producing or evicting, LOCK_SH per lease;
//                            its mtime is the entry's last use (LRU order)
//   log                      one line per hit and miss, for provenance and accounting
//
// A key names the source's real path, its kind, the user and the hash of its metadata
// manifest, so a changed source gets a new key and a stale entry is never served. An
// entry is produced once, under its key's exclusive lock; a producer that dies drops the
// lock with its process and the next one starts over from a clean temporary directory.
#pragma once
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/fd.hpp"
#include "stage/cache_promises.hpp"
#include "stage/manifest.hpp"

namespace aihpc::stage {

// squashfs: an image (.sqsh, .squashfs), staged as one file and mounted (squashfs_mount.hpp).
enum class SourceKind { tree, file, archive, squashfs };
const char* to_string(SourceKind kind);

// The cache key: xxh3-128 of the user, the source's real path, its kind and its
// metadata manifest hash.
std::string cache_key(uid_t uid, const std::string& realpath, SourceKind kind, const std::string& manifest_hash);
// The same for the shared cache (shared_cache.hpp), whose entries belong to no user.
std::string shared_cache_key(const std::string& realpath, SourceKind kind, const std::string& manifest_hash);

// Who opens a cache directory, and so what it may make there.
//   owner          a user's own cache (or a tool's): made 0700, everything the owner's
//   shared_root    root's shared cache: directories 0755, lock files and the log 0644,
//                  so that every user may read an entry and lease it
//   shared_reader  a job's user reading the shared cache: nothing is made, written or
//                  touched; lock files are opened read-only, for a lease alone
enum class CacheAccess { owner, shared_root, shared_reader };

// A shared flock on the key's lock file, held as long as the object lives (and by the
// kernel until the last descriptor closes, so a lease dies with the step holding it).
class Lease {
public:
    Lease() = default;
    Lease(UniqueFd fd, std::string key) : fd_(std::move(fd)), key_(std::move(key)) {}
    const std::string& key() const { return key_; }
    int fd() const { return fd_.get(); }
    explicit operator bool() const { return static_cast<bool>(fd_); }

private:
    UniqueFd fd_;
    std::string key_;
};

struct CacheEntryInfo {
    std::string key;
    std::string src;
    std::string realpath;
    std::string kind;
    std::string manifest_hash;
    std::uint64_t bytes = 0;
    std::uint64_t files = 0;
    // Files, directories and links, the entry's own directory included, where its info
    // file says (the shared cache's); else nullopt.
    std::optional<std::uint64_t> inodes;
    std::int64_t last_used_ns = 0;
    bool in_use = false;
};

// Pure: an info file's key=value lines; a line without '=' is skipped, a later key wins.
std::map<std::string, std::string> parse_info(const std::string& text);

// Pure: the one-line JSON objects aihpc-stage cache ls and verify --json print; an empty
// `failure` is a verified entry.
std::string cache_entry_json(const CacheEntryInfo& entry);
std::string cache_verdict_json(const std::string& key, const std::string& failure);

// Pure: which entries to evict, least recently used first, skipping those in use, so
// that `used + incoming` falls to `low` or below. Returns the keys in eviction order.
std::vector<std::string> plan_eviction(const std::vector<CacheEntryInfo>& entries, std::uint64_t incoming,
                                       std::uint64_t low);

// Bytes held by the published entries of a cache directory open as cache_fd, read from
// their info files without creating, locking or following anything: how root accounts
// for other users' caches against the node-wide cache_max.
std::uint64_t cache_bytes_at(int cache_fd);

// What one user's stager may hold in its own cache, counted as that stager counts: the
// `bytes=` of its entries' info files. Root computes it (cache_ledger.hpp) from what it
// measured itself, so that the cache stays within both that user's share and the room the
// node has left; the stager evicts only its own entries to keep to it.
struct CacheLimits {
    std::uint64_t max_bytes = 0;  // 0: no cap
    std::uint64_t low_bytes = 0;  // eviction target when max_bytes would be exceeded
    // Files, directories and links a new entry may add (none: no cap; 0: no new entry,
    // while hits are still served): the site's cache_user_inodes less what root counted
    // in the user's cache.
    std::optional<std::uint64_t> max_inodes{};
    std::uint64_t inode_cap = 0;  // cache_user_inodes itself, for messages
    // The two sides of max_bytes (plan_user_cache_limits): the user's share and the node's
    // room, each less what the user's cache holds beyond its entries. 0 with no cap.
    std::uint64_t share_left = 0;
    std::uint64_t node_left = 0;
};

struct Obtained {
    Lease lease;
    bool hit = false;
    std::string data_path;  // entries/<key>/data
};

// Produces the entry's data inside a temporary entry directory (writes `data` below
// entry_fd) and returns the manifest to store beside it.
using Producer = std::function<Manifest(int entry_fd, const std::string& entry_path)>;
// The same, told the room left for the entry: the user's share less what the cache holds,
// and never more than the file system's free space. A producer whose output size is only
// known as it is written (an archive) stops once over it.
using SizedProducer = std::function<Manifest(int entry_fd, const std::string& entry_path, std::uint64_t room)>;

class NodeCache {
public:
    // Opens the cache directory, creating it (0700) and its subdirectories if missing.
    explicit NodeCache(const std::string& dir, CacheLimits limits = {}, CacheAccess access = CacheAccess::owner);

    const std::string& dir() const { return dir_; }

    // A hit returns a lease on the published entry at once. Otherwise one caller per key
    // produces it (making room first) while the others wait on the key's lock and then
    // share the result. `info` lines are stored in the entry's info file.
    Obtained obtain(const std::string& key, std::uint64_t incoming_bytes, const std::vector<std::string>& info,
                    const Producer& produce);
    Obtained obtain(const std::string& key, std::uint64_t incoming_bytes, const std::vector<std::string>& info,
                    const SizedProducer& produce);

    // The longest wait for a key's lock (a producer of the same key holds it while it
    // copies; the user may hold it forever). Past it, obtain and lease throw, naming the
    // lock file. Default: default_lock_wait.
    void set_lock_wait(std::chrono::milliseconds wait) { lock_wait_ = wait; }
    // Workers that flush a new entry to disk before it is published.
    void set_sync_threads(unsigned threads) { sync_threads_ = threads; }
    // Whether a new entry's files are flushed to disk before it is published (the
    // default). Off only where the copy is published again elsewhere, by whoever flushes
    // it there: a second flush would cost the disk's time once more for nothing.
    void set_flush_to_disk(bool flush) { flush_to_disk_ = flush; }
    // The book of copies in flight that root opened (cache_promises.hpp): a producer then
    // promises its bytes there before it copies, within the limits less what others
    // promised since. Not owned; null: the limits alone.
    void set_promises(RoomPromises* promises) { promises_ = promises; }

    // A lease on an already published entry, or nullopt when there is none.
    std::optional<Lease> lease(const std::string& key);

    std::string entry_path(const std::string& key) const;
    std::optional<Manifest> stored_manifest(const std::string& key) const;
    // What the entry's info file says (not last_used_ns nor in_use), or nullopt when the
    // entry or its info file is missing. Cheap: a hit needs its totals, not its manifest.
    std::optional<CacheEntryInfo> stored_info(const std::string& key) const;

    std::vector<CacheEntryInfo> list() const;
    // Evicts entries not in use, least recently used first, until the cache holds at
    // most `target` bytes (0: every unused entry), and removes leftovers of dead
    // producers and evictions. Returns the evicted keys.
    std::vector<std::string> collect(std::uint64_t target);
    // Removes one entry unless it is in use; true when removed.
    bool evict(const std::string& key);
    // Evicts down to low_bytes when `incoming` would not fit; returns the room then left.
    // With a book of promises, under its lock, and `incoming` is promised there. A
    // private copy asks it too: it takes the same disk, within the same share.
    std::uint64_t make_room(std::uint64_t incoming);

private:
    UniqueFd lock_key(const std::string& key, int operation, bool create) const;
    bool published(const std::string& key) const;
    std::uint64_t make_room_within(std::uint64_t max_bytes, std::uint64_t incoming);
    // Temporaries of `key`, whose lock the caller holds exclusively.
    void remove_leftovers(const std::string& key);
    // Temporaries whose producer is gone (its key's lock free or absent) and entries an
    // evictor unpublished; a live producer's temporary is never touched.
    void remove_orphans();
    void log(const std::string& what, const std::string& key, const std::vector<std::string>& info) const;

    std::string dir_;
    CacheLimits limits_;
    CacheAccess access_ = CacheAccess::owner;
    std::chrono::milliseconds lock_wait_ = std::chrono::hours(1);
    unsigned sync_threads_ = 32;
    bool flush_to_disk_ = true;
    RoomPromises* promises_ = nullptr;
    UniqueFd dir_fd_, entries_fd_, locks_fd_;
};

}  // namespace aihpc::stage
