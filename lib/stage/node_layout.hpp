// The node-local layout below local_root, which every job of every user on the node
// shares, and the checks that keep each user to their own part of it:
//   local_root/           owned by root and writable by no one else (the site's choice)
//   jobs/                 root, 0711: users reach their own job dirs, list nobody's
//   jobs/<jobid>/         the job's user, 0700: AIHPC_STAGE_DIR; NAME -> cache entry,
//                         or a private copy
//   jobs/<jobid>.aihpc/   the job's user, 0700: what was staged, the job's staging lock,
//                         and a marker when stage-out failed
//   cache/                root, 0711
//   cache/<uid>/          the user, 0700: that user's NodeCache (node_cache.hpp)
//   cache/<uid>/digests/  the user, 0700: image digests (container/digest_cache.hpp)
//   topology.xml          root, 0644: the node's topology, cached by lib/affinity
// Root makes the root-owned directories and each user's top directory, fd-relative and
// without following links; everything below those is made as the user.
#pragma once
#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/fd.hpp"
#include "stage/node_cache.hpp"

namespace aihpc::stage {

// Where one job of one user keeps its staging (names only; nothing is touched).
struct JobLayout {
    std::string stage_dir;  // local_root/jobs/<jobid>
    std::string meta_dir;   // local_root/jobs/<jobid>.aihpc
    std::string cache_dir;  // local_root/cache/<uid>
};
JobLayout job_layout(const std::string& local_root, std::uint32_t job_id, uid_t uid);

// In meta_dir when a stage-out failed: the job's directories then outlive the job, so
// that its user can still copy out what could not be.
inline constexpr const char* stage_out_failed_marker = "stage-out-failed";

// What the job epilog did with jobs/<jobid> and jobs/<jobid>.aihpc.
struct JobCleanup {
    bool kept_after_failed_stage_out = false;
    std::string error;  // the first thing that could not be removed; empty if none
};
// As root, once the job has ended on the node: removes the job's two directories (links
// removed, never followed), or keeps both where stage-out failed. Nothing to do when
// local_root has no jobs/. Throws aihpc::Error when local_root is not root-private.
JobCleanup remove_job_dirs(const std::string& local_root, std::uint32_t job_id);

// An item a job staged on this node, as jobs/<jobid>.aihpc/items records it for the
// step's later hooks and for later steps of the job.
struct JobItem {
    std::string name;           // NAME of --aihpc-stage
    std::string path;           // DIR/NAME, what AIHPC_DATA_<NAME> gives
    std::string manifest_hash;  // the source's manifest hash, for AIHPC_STAGE_MANIFESTS
    std::string key;            // the cache entry the step leases; empty for a private copy
    std::string outcome;        // hit, miss or private (stage::to_string(StageOutcome))
};
// One line per item, its fields separated by spaces; names and paths escaped as in
// manifests, so any byte may appear in them.
std::string format_job_items(const std::vector<JobItem>& items);
// The items of format_job_items' text; a line that is not five fields is skipped.
std::vector<JobItem> parse_job_items(const std::string& text);

// Whether a directory, as fstat() saw it, may hold directories given to other users:
// owned by root and writable by neither group nor others.
bool is_root_private(const struct stat& st);

// Opens local_root, first making it and its missing parents (0755) when `create`, and
// refuses one that is not root-private: whoever else may write there could swap jobs/
// or cache/ for their own. Throws aihpc::Error naming its owner and mode.
UniqueFd open_local_root(const std::string& local_root, bool create);

// jobs/ or cache/ below the open local_root: made root 0711 when missing, refused when
// not root-private.
UniqueFd root_dir_at(int parent_fd, const std::string& name, const std::string& shown_path);

// A user's directory below a root-owned one: made 0700 and given to uid:gid. One that
// root made but did not give away yet (root:root 0700, a crash between the two) is given
// now; one that belongs to another uid is refused, never taken over.
void user_dir_at(int parent_fd, const std::string& name, uid_t uid, gid_t gid, const std::string& shown_path);

// Bytes the caches of every user but `uid` hold below the open cache/, read from their
// entries' info files (as root), so that one node-wide cache_max holds while each user
// evicts only their own entries.
std::uint64_t other_users_cache_bytes(int cache_fd, uid_t uid, const std::string& shown_path);

// The node-wide limits less what other users hold: the share one user's cache may fill.
// max_bytes stays at least 1, since 0 would mean no cap at all.
CacheLimits user_cache_limits(std::uint64_t node_max_bytes, std::uint64_t node_low_bytes, std::uint64_t other_users_bytes);

// local_root/topology.xml when local_root is (or can be made) root-private; empty
// otherwise, and then the topology is discovered afresh for each step.
std::string topology_cache_path(const std::string& local_root);

}  // namespace aihpc::stage
