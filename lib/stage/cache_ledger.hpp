// Root's books of the node cache. Every user's cache dir, its info files and lock files
// belong to that user, so nothing in them is believed: root measures what each cache
// occupies from the kernel (st_blocks, walking fd-relative without following a link or
// crossing a mount, and bounded by entries) and keeps the result in
// LOCAL_ROOT/cache/ledger, root 0600, written atomically, which no user can write.
//
// The ledger keeps one measure per cache entry, keyed by the entry's inode and ctime, so
// an entry is walked again only when it changed (or once its measure is
// ledger_remeasure_after old), and the rest of a user's cache dir (temporaries of live
// and killed producers, leftovers of evictions, lock files, digests, the log) on every
// refresh, so a killed producer's temporary tree is counted until it is removed. Each
// user's job dirs in local_root/jobs count against that user too: those root keeps
// after a failed stage-out (node_layout.hpp, kept/), and those of running jobs, whose
// private copies and outputs take the same disk. A prepare and an account measure one
// user again, the one staging, and take every other user's measures as recorded, so
// that no user's file count slows another's stage; refresh_cache_ledger measures
// everyone.
//
// A stage-in is three steps: root_cache_limits as root (the user's share), the stage-in
// as the user (NodeCache keeps to those limits, evicting only the user's own entries; a
// private copy is held to them too), and root_account_user_cache as root (what the
// user's cache and job dirs now hold).
#pragma once
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "config/site_config.hpp"
#include "stage/cache_promises.hpp"
#include "stage/node_cache.hpp"

namespace aihpc::stage {

// One measure in the ledger.
struct LedgerRecord {
    enum Kind : char { entry = 'e', rest = 'r', job_dir = 'k' };
    uid_t uid = 0;
    Kind kind = entry;
    std::string name;             // entry: its name in entries/; rest: "."; job_dir: its name in jobs/
    std::uint64_t dev = 0, ino = 0;
    std::int64_t ctime_ns = 0;    // of the measured directory (or file) itself
    std::uint64_t bytes = 0;      // st_blocks * 512 of everything below, itself included
    std::uint64_t inodes = 0;     // distinct inodes below, itself included
    // Holds a file with more than one name: walked again at every refresh, so that its
    // inode is counted once in its user's cache, whichever names it has.
    bool linked = false;
    std::int64_t measured_at = 0; // seconds since the epoch
    bool complete = true;         // false: the walk stopped at its bound
};

struct CacheLedger {
    std::vector<LedgerRecord> records;

    std::string serialize() const;
    // Malformed lines are skipped: a damaged ledger costs a remeasure, never a wrong number.
    static CacheLedger parse(const std::string& text);

    // Saturating sums.
    std::uint64_t user_bytes(uid_t uid) const;
    std::uint64_t other_users_bytes(uid_t uid) const;
    std::uint64_t user_inodes(uid_t uid) const;
};

// A measure older than this is taken again even if its entry's ctime did not change (a
// user may change the inside of a published entry without touching its top directory).
inline constexpr std::chrono::seconds ledger_remeasure_after{6 * 3600};
// Entries walked by one refresh at most; past it, measures are partial (never larger).
inline constexpr std::uint64_t ledger_walk_budget = 4'000'000;

// The (device, inode) of every file with more than one name seen so far in one user's
// cache: 2,000 hard links to one 1 GiB file are 1 GiB and one inode, not 2 TB.
using SeenInodes = std::set<std::pair<std::uint64_t, std::uint64_t>>;

struct TreeMeasure {
    std::uint64_t bytes = 0;    // st_blocks * 512 of each inode once, saturating
    std::uint64_t entries = 0;  // names walked
    std::uint64_t inodes = 0;   // distinct inodes
    bool linked = false;        // some file has more than one name
    bool complete = true;
};
// Measures `name` below parent_fd (a file or a whole tree): fstatat with
// AT_SYMLINK_NOFOLLOW, fd-relative, never following a link nor entering another device.
// Each entry costs one unit of *budget; at zero the walk stops and the measure is
// incomplete. A file with several names counts once in `seen` (a set of its own when
// null). Never throws: what cannot be read is not counted.
TreeMeasure measure_tree_at(int parent_fd, const std::string& name, std::uint64_t* budget, SeenInodes* seen = nullptr);

// As root: removes from a user's cache dir (open as user_fd) the temporaries of producers
// that were killed (".tmp.<key>.<pid>.<n>" whose process is gone) and entries evictors
// unpublished (".dead.*"), fd-relative, never following a link nor crossing a mount,
// until `deadline`; the rest is left for the next call.
void remove_dead_temporaries(int user_fd, std::chrono::steady_clock::time_point deadline);
// How long one prepare spends on it at most.
inline constexpr std::chrono::milliseconds temporaries_budget{1000};

// Pure: a user's CacheLimits from root's measures.
//   cap      = min(cache_user_max (0: cache_max), cache_max - others_measured)
//   overhead = own_measured - own_claimed: what the user's cache holds beyond what its
//              stager counts (temporaries, job dirs, blocks, forged low claims)
//   max      = cap - overhead (at least 1, since 0 means no cap)
// and low likewise from cache_low, scaled to the user's share. own_claimed is the sum of
// the user's own `bytes=` lines: a forged number can only lower that user's own room.
// Copies in flight (cache_promises.hpp) count as held: the user's own other ones in the
// overhead, everyone else's with others_measured. share_left and node_left are the two
// sides of max before the min, which the stager narrows by what is promised later.
CacheLimits plan_user_cache_limits(std::uint64_t cache_max, std::uint64_t cache_low, std::uint64_t cache_user_max,
                                   std::uint64_t own_measured, std::uint64_t own_claimed, std::uint64_t others_measured,
                                   const PromisedBytes& promised = {});

// As root: brings the ledger below the open cache/ up to date for every user (and their
// job dirs, found beside cache/ in local_root), writes it, and returns it. shown_path names
// cache/ in messages.
CacheLedger refresh_cache_ledger(int cache_root_fd, const std::string& shown_path);

// As root, before a user's stage-in: the limits that user's NodeCache must keep to. The
// user's dead temporaries are removed first (remove_dead_temporaries). Only that user's
// cache and job dirs are measured again; other users count as the ledger last
// recorded them (at their own prepare or stage-in), so the cost never depends on what
// other users hold.
// cache_max and cache_low are the node-wide limits in bytes, cache_user_max the user's
// share (0: cache_max), cache_user_inodes the inodes the user's cache may hold (0: no
// cap); max_inodes is the room left under it, 0 once the user's cache is at the cap (hits
// are served, new entries refused). With `promises`, the book of copies in flight is
// handed over open, for the stager to promise its own copies in. shared_bytes is what
// the node's shared cache holds (shared_cache.hpp, root's own entries): it takes the
// same disk, so it counts as another user's.
CacheLimits root_cache_limits(int cache_root_fd, uid_t uid, std::uint64_t cache_max, std::uint64_t cache_low,
                              std::uint64_t cache_user_max, const std::string& shown_path,
                              std::uint64_t cache_user_inodes = config::default_cache_user_inodes,
                              RoomPromises* promises = nullptr, std::uint64_t shared_bytes = 0);

// As root, after a user's stage-in: measures that user's cache and job dirs again (only
// what changed) and records it in the ledger.
void root_account_user_cache(int cache_root_fd, uid_t uid, const std::string& shown_path);

// The ledger as last written, or an empty one when there is none (or it is not root's).
CacheLedger read_cache_ledger(int cache_root_fd);

}  // namespace aihpc::stage
