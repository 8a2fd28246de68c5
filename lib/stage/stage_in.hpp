// Stage-in of one item: the source is scanned, looked up in the node cache (or copied
// privately), verified on request, and made visible at DIR/NAME only once whole.
#pragma once
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "stage/node_cache.hpp"
#include "stage/source.hpp"
#include "stage/tree_copy.hpp"

namespace aihpc::stage {

// deferred: missing from the shared cache, and left for root to put there
// (StageSettings::shared_defer); nothing was staged.
enum class StageOutcome { hit, miss, private_copy, deferred };
const char* to_string(StageOutcome outcome);  // "hit", "miss", "private", "shared-wanted"

// Where a miss may take a one-file source's data from instead of the source itself
// (fanout.hpp: what the step's node 0 sent): the open file, or nullopt with `why`, and
// the source is read after all.
struct PeerSource {
    virtual ~PeerSource() = default;
    virtual std::optional<UniqueFd> receive(const Manifest& source, std::string* why) = 0;
};

struct StageSettings {
    std::string to_dir;                   // DIR: created if missing
    std::optional<std::string> cache_dir; // the user's cache; required for cache mode
    // The node's shared cache (shared_cache.hpp), looked into first in cache mode: a hit
    // there is leased and linked like a hit in the user's cache. Empty: not used.
    std::string shared_dir;
    // A source the shared cache lacks comes back StageOutcome::deferred, for root to put
    // there, instead of going into the user's cache.
    bool shared_defer = false;
    CacheLimits limits;
    // The book of copies in flight root opened with the limits (not owned; null: none).
    RoomPromises* promises = nullptr;
    bool private_mode = false;
    bool verify = false;
    // An image is mounted by root next (squashfs_mount.hpp: mount_image_for_user), not
    // here through fusermount3: the stager of a job runs with no_new_privs.
    bool mount_by_root = false;
    PeerSource* peer = nullptr;  // not owned; null: a miss reads the source
    // On the node that sends to its peers (fanout.hpp): an archive that misses is copied
    // whole to this path first and extracted from the copy, so that the copy can be sent
    // on without a second read of the source. Empty: extracted as it is read.
    std::string archive_copy_path;
    unsigned threads = 4;                 // cap on source operations in flight
    uid_t uid = 0;                        // part of the cache key
    std::string base_dir;                 // relative SRC is resolved against it
    std::vector<std::string> allow;       // stage_allow
    CopyProgress* progress = nullptr;
    // The longest wait for a cache entry's lock; see NodeCache::set_lock_wait.
    std::chrono::milliseconds lock_wait = std::chrono::hours(1);
    // Whether a copy entering the user's cache is flushed to disk before it is published;
    // see NodeCache::set_flush_to_disk.
    bool flush_cache_entries = true;
};

struct StagedItem {
    std::string src;
    std::string realpath;
    std::string name;
    std::string path;           // DIR/NAME
    std::string data_path;      // what DIR/NAME resolves to; for an image, the image file
    // An image: "mounted" at DIR/NAME by this stage, "kept" (a live mount of it was
    // there), or "wanted" (StageSettings::mount_by_root: root mounts it next).
    std::string mount;
    // A miss with a peer: "received" (the data came from the peer, the source was only
    // looked at), or why the source was read after all.
    std::string via;
    std::string archive_copy;  // archive_copy_path, when the archive was copied there
    SourceKind kind = SourceKind::tree;
    std::uint64_t files = 0;
    std::uint64_t bytes = 0;
    double seconds = 0;
    StageOutcome outcome = StageOutcome::miss;
    std::string manifest_hash;
    std::string key;            // cache mode only
    std::string cache;          // cache mode only: "shared" or "user", the cache it came from
    std::string freshness;      // the source's freshness hash, part of its key
    Lease lease;                // cache mode only: hold it while the data is used
    // Why a stage took the time it took: source operations (each a round trip on a
    // network file system), how many were in flight at most, the workers that carried
    // them and the median latency of one metadata operation.
    std::uint64_t source_ops = 0;
    std::uint64_t peak_in_flight = 0;
    unsigned workers = 0;
    std::uint64_t op_latency_ns = 0;
};

// Pure: the one-line JSON object aihpc-stage in --json prints for an item.
std::string staged_item_json(const StagedItem& item);

// What a stage-in learns of a source before it looks in the cache: its real path, its kind
// and its metadata manifest hash (the hash the cache's info file and the job's
// AIHPC_STAGE_MANIFESTS record). `aihpc-stage where` compares it with what nodes announce.
struct SourceVersion {
    std::string realpath;
    SourceKind kind = SourceKind::tree;
    std::string manifest_hash;
};
// Resolves SRC against base_dir under `allow` and scans it as stage_in does, with at most
// `threads` workers. Throws aihpc::Error naming the source.
SourceVersion source_version(const std::string& src, const std::string& base_dir, const std::vector<std::string>& allow,
                             unsigned threads);

// Stages `src` as DIR/NAME. Throws aihpc::Error naming the source, the place and what to
// do; on failure nothing is left at DIR/NAME and the cache holds no partial entry.
StagedItem stage_in(const std::string& src, const std::string& name, const StageSettings& settings);

// A tree or a lone file needs no second look: the copy compares every entry with the
// manifest as it goes (copy_item). An archive is read through libarchive, so the archive
// file itself is compared once extracted, against the freshness_hash of its scan: its size
// and mtime, and its ctime and inode too, which catch a rewrite in place whose size and
// mtime were put back. Throws naming the source when it moved.
void check_source_unchanged(const OpenSource& source, const std::string& freshness_hash);

// Checks every file of a staged item against `expected`'s content hashes (taken from the
// source as it was read for a copy, or hashed from the source now for a cache hit), and
// every entry's type, size and mode. Throws naming the differences.
void verify_item(int data_fd_or_file, const Manifest& expected, bool read_only_entry, unsigned threads,
                 const std::string& shown);

// The staged tree `item` (a cache entry) as one tar at `path`, from the entry's own data
// and stored manifest (the source's modes and times): how node 0 sends a tree on to the
// other nodes of a step (fanout.hpp). Throws saying what failed.
void write_staged_tree_tar(const StageSettings& settings, const StagedItem& item, const std::string& path);

}  // namespace aihpc::stage
