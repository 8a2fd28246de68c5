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
//   cache/ledger          root, 0600: root's measure of every user's cache (cache_ledger.hpp)
//   shared/               root, 0711: the shared cache of world-readable sources, every
//                         user's to read and no user's to write (shared_cache.hpp)
//   kept/<jobid>          root, 0644 in a root 0755 dir: the job's dirs outlive it, since
//                         root has not seen its stage-out deliver; written by root alone,
//                         so no user can keep (or forge keeping) a job dir. It lists what
//                         is to be delivered where (aihpc-stage kept, deliver), and
//                         expires after keep_failed_days.
//   trash/                root, 0700: job dirs retired by the epilog, removed a time
//                         budget at a time
//   topology.xml          root, 0644: the node's topology, cached by lib/affinity
// Root makes the root-owned directories and each user's top directory, fd-relative and
// without following links; everything below those is made as the user.
#pragma once
#include <sys/stat.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
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

// In meta_dir when a stage-out failed, written by the user's stager: the user's account
// of the failure, shown to them. It decides nothing; root's kept/<jobid> does.
inline constexpr const char* stage_out_failed_marker = "stage-out-failed";
// ... and its twin for one step, which says that step's stage-out was tried and failed
// for a reason another try would meet again: it is not tried twice.
inline std::string stage_out_failed_marker_of(std::uint32_t step) {
    return std::string(stage_out_failed_marker) + "." + std::to_string(step);
}

// One --aihpc-stage-out item of a step, as root recorded it before the step's tasks
// started: LOCAL below the stage dir, and DEST with %j and %n expanded, absolute.
struct KeptDelivery {
    std::uint32_t step = 0;
    std::string local;
    std::string dest;
};

// What the job epilog did with jobs/<jobid> and jobs/<jobid>.aihpc.
struct JobCleanup {
    bool kept_after_failed_stage_out = false;  // kept: its stage-out did not deliver
    std::vector<KeptDelivery> undelivered;     // then: what is still to be delivered
    std::vector<std::uint32_t> delivered_later;  // ended kept jobs released now, delivered
    std::string error;     // the first thing that could not be removed; empty if none
    bool finished = true;  // false: the time budget ran out, and trash/ holds the rest
    std::vector<std::uint32_t> expired;  // kept jobs whose keep_failed_days ran out now
};

// A job whose dirs root keeps (kept/<jobid>): a stage-out that root has not seen deliver,
// because it is still to run, runs now, failed, or was cut short (time limit, scancel,
// preemption, a killed slurmstepd).
struct KeptJob {
    std::uint32_t job_id = 0;
    uid_t uid = 0;
    std::int64_t since = 0;  // seconds since the epoch
    std::string reason;
    std::vector<std::uint32_t> pending_steps;  // steps whose delivery root has not seen
    std::vector<KeptDelivery> deliveries;      // what those steps are to deliver
    bool ended = false;  // the job's epilog ran: no step of this run of the job is left
};

// In meta_dir, written by the user's stager after DEST's rename: delivered.<step>.<i>
// for item i of a step, and delivered.<step> once all of them are. Root reads only
// their names, and believes them only for the user's own data.
std::string delivered_marker(std::uint32_t step);
std::string delivered_marker(std::uint32_t step, std::size_t item);

// As root, before the tasks of a step with --aihpc-stage-out start: the job is kept
// until root learns that this step delivered. "Delivered" is never assumed: whatever
// ends the step before then leaves the stage dir kept and counted. Creates kept/ (root
// 0755: users list their own) if missing.
void keep_until_delivered(const std::string& local_root, std::uint32_t job_id, uid_t uid, std::uint32_t step,
                          const std::vector<KeptDelivery>& deliveries);

// As root, after the step's stager reported that every item reached its DEST: the step
// is no longer pending. True when the job is no longer kept for any step.
bool record_delivered(const std::string& local_root, std::uint32_t job_id, std::uint32_t step);

// As root, when the job's stage-out failed on this node: the reason the user is shown.
// Creates the record when missing. Throws aihpc::Error when local_root is not
// root-private.
void mark_job_kept(const std::string& local_root, std::uint32_t job_id, uid_t uid, const std::string& reason);

// The kept jobs recorded below the open local_root; a marker root did not write (not a
// root-owned regular file) is ignored.
std::vector<KeptJob> kept_jobs_at(int local_root_fd);

// The kept record of one job; nullopt when there is none.
std::optional<KeptJob> kept_job_at(int local_root_fd, std::uint32_t job_id);

// Pure: the record's text, and back.
std::string format_kept_job(const KeptJob& job);
std::optional<KeptJob> parse_kept_job(std::uint32_t job_id, const std::string& text);

// As root, in the job epilog: moves jobs/<jobid> and jobs/<jobid>.aihpc into trash/ by
// rename (instant whatever their size), unless root kept the job and a pending step's
// delivered marker is missing; then the record says the job ended. Kept jobs that ended
// earlier and have since been delivered (aihpc-stage deliver), or are older than
// keep_failed_days (0: none is kept), are retired likewise. Then removes what trash/
// holds until `budget` has passed, leaving the rest for the next call (or empty_trash).
// Never follows a link or crosses a mount. Nothing to do when local_root does not exist;
// throws aihpc::Error when it is not root-private.
JobCleanup retire_job_dirs(const std::string& local_root, std::uint32_t job_id, unsigned keep_failed_days,
                           std::chrono::milliseconds budget);

// As root: removes what trash/ holds until `budget` has passed. True when trash/ is empty
// (or missing); the first failure in *error when given.
bool empty_trash(const std::string& local_root, std::chrono::milliseconds budget, std::string* error = nullptr);

// As the job's user: the job's staging lock (meta_dir/lock), so that steps of one job
// starting together on a node stage one after the other. Opened O_NONBLOCK|O_NOFOLLOW and
// refused unless a regular file; waits at most `wait`, then throws aihpc::Error naming it.
UniqueFd lock_job_meta(int meta_fd, std::chrono::milliseconds wait, const std::string& shown_meta_dir);

// An item a job staged on this node, as jobs/<jobid>.aihpc/items records it for the
// step's later hooks and for later steps of the job.
struct JobItem {
    std::string name;           // NAME of --aihpc-stage
    std::string path;           // DIR/NAME, what AIHPC_DATA_<NAME> gives
    std::string manifest_hash;  // the source's manifest hash, for AIHPC_STAGE_MANIFESTS
    std::string key;            // the cache entry the step leases; empty for a private copy
    std::string outcome;        // hit, miss or private (stage::to_string(StageOutcome))
    // A squashfs image: "kept" (its mount answers), "wanted" (root mounts it next),
    // "mounted"; empty for any other item.
    std::string mount;
};
// One line per item, its fields separated by spaces; names and paths escaped as in
// manifests, so any byte may appear in them.
std::string format_job_items(const std::vector<JobItem>& items);
// The items of format_job_items' text; a line that is not five or six fields is skipped.
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

// local_root/topology.xml when local_root is (or can be made) root-private; empty
// otherwise, and then the topology is discovered afresh for each step.
std::string topology_cache_path(const std::string& local_root);

}  // namespace aihpc::stage
