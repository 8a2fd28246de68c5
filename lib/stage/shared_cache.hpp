// The node's shared cache: one read-only copy of each world-readable source for every
// user of the node, in local_root/shared (a NodeCache with CacheAccess::shared_root: root
// owns everything in it, and every user may read an entry and lease it).
//
// A source goes in only once it was read as the site's shared_user (nobody by default),
// never on the strength of mode bits that root parsed:
//   1. root makes shared/incoming/<random>/ (incoming is root's, 0700) and gives that one
//      directory to shared_user;
//   2. `aihpc-node shared-read`, run as shared_user with no_new_privs and that directory
//      as its descriptor 3 and working directory, stages the source there exactly as a
//      user's stager would: resolved beneath stage_allow without following links,
//      scanned, copied in parallel and checked against its manifest as it goes, an image
//      listed whole. A source it cannot read fails there, and is not shared;
//   3. root takes the copy over: everything below it must be a directory, a regular file
//      with one name, or a link, and shared_user's; root makes it its own, read-only for
//      everyone, set-id bits gone. The manifest must say that others may read every file
//      and list every directory of the source, so that the copy shows no one anything the
//      source did not already show them;
//   4. root publishes it under shared_cache_key, within cache_shared_max and what the
//      users' caches leave of cache_max, evicting shared entries no job leases.
// Before a job uses an entry, its own stager has scanned the source as the job's user:
// a user who can no longer read the source gets no lease on the entry.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <cstddef>
#include <string>
#include <vector>

#include "common/user_process.hpp"
#include "stage/node_cache.hpp"

namespace aihpc::stage {

// local_root/shared
std::string shared_cache_dir(const std::string& local_root);

// One source for root to put into the shared cache.
struct SharedStageRequest {
    std::string local_root;
    std::string src;
    std::string base_dir;            // a relative src is resolved against it
    std::vector<std::string> allow;  // stage_allow
    unsigned threads = 4;
    UserIds reader;                  // shared_user's ids
    std::string reader_name;         // ... and name, for messages
    std::string reader_program;      // aihpc-node, run as shared_user
    // The node's limits: cache_max, its low mark, cache_shared_max (0: no cap).
    std::uint64_t cache_max = 0;
    std::uint64_t cache_low = 0;
    std::uint64_t shared_max = 0;
    // cache_user_inodes: the shared cache holds no more files, directories and links
    // than one user's cache may (0: no cap).
    std::uint64_t inode_cap = 0;
};

struct SharedStageResult {
    bool shared = false;  // the shared cache holds the source now
    std::string note;     // what happened, for --aihpc-verbose: where from, or why not shared
};

// As root. Never throws for a source that cannot be shared: the result says why, and
// the job's stager takes it into the user's cache. Throws aihpc::Error when local_root
// itself is wrong.
SharedStageResult stage_into_shared_cache(const SharedStageRequest& request);

// As root, before a user's limits are planned: the bytes the shared cache holds, after
// its unused entries were evicted, least recently used first, down to low_share of the
// smaller of `cap` (cache_shared_max) and what the users' caches leave of cache_max
// (root's ledger), where it held more. Shared entries give way first: every user can
// stage into their own share even when the shared cache is full, and any user's job
// puts a source back into it. Each user's share counts the bytes left as another
// user's. 0 without a shared cache.
std::uint64_t keep_shared_cache_to_its_cap(const std::string& local_root, std::uint64_t cap, std::uint64_t cache_max,
                                           double low_share);

// As root, in the job epilog: the shared entries the job used are marked used now (their
// lock files' mtime, the LRU order of eviction and the last use `aihpc-stage where`
// shows), since a reader cannot touch root's files. The keys come from the job's items
// record, which its user may have written: a forged key can only make a shared entry
// look recently used, which running a job that stages its source would do as well.
void record_shared_uses(const std::string& local_root, std::uint32_t job_id);

// `aihpc-node shared-read SRC BASE_DIR THREADS MAX_BYTES MAX_INODES SHARED_DIR [ALLOW...]`
// (MAX_INODES: "-" for no cap), as
// shared_user, with the incoming directory as descriptor 3: stages SRC there (step 2
// above) and prints key=value lines: cache (shared when the shared cache already held
// it, else reader), key, shared_key, realpath, kind, manifest_hash. Returns the exit
// status; errors go to stderr as "aihpc-node: ...".
int shared_read_main(int argc, char** argv);

// Pure: whether every file of the manifest may be read by others and every directory
// listed and entered by them; empty when so, else the first path that may not.
std::string not_world_readable(const Manifest& manifest);

}  // namespace aihpc::stage
