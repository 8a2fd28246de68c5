// Data gravity: each node says which sources it holds warm, through Slurm itself, so that
// jobs can prefer the nodes that hold their data and `aihpc-stage where` can list them.
//
// A node announces the hottest entries of its caches (local_root/shared and each user's
// local_root/cache/<uid>) in two places of its own node record:
//   features  one per source: aihpc_<k> for a shared entry, aihpc_<k>_u<uid> for a user's,
//             <k> naming the source whatever its version (data_key). Jobs prefer them
//             (--prefer, set by contrib/job_submit.lua from --aihpc-gravity).
//   Comment   "aihpc-warm:" then, comma-separated, <k>:<mode>:<hash>:<last use> for each
//             version held: mode "shared" or "u<uid>", the first 16 hex digits of the
//             entry's manifest hash, and its last use in seconds since the epoch. What
//             `where` reads to tell the current version from an older one. Written only
//             where the Comment is empty or already ours.
// Every part that reads or writes Slurm goes through scontrol with a deadline; a failure is
// a note, never a job's failure.
#pragma once
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "stage/node_cache.hpp"

namespace aihpc::stage::warm {

inline constexpr const char* feature_prefix = "aihpc_";
inline constexpr const char* comment_tag = "aihpc-warm:";
// The manifest hash's part a Comment keeps: enough to tell versions apart, short enough
// for 16 entries in one Comment.
inline constexpr std::size_t hash_prefix_length = 16;
// The longest an scontrol call may take on a node or at submit before it is given up.
inline constexpr std::chrono::milliseconds scontrol_deadline{5000};
// The most entries of one cache that a node looks at: a user's cache may hold any number,
// and the epilog that lists them must stay short.
inline constexpr std::size_t entries_per_cache = 4096;

// Pure: "aihpc_" and 16 hex digits of xxh3-64 over "KIND\0REALPATH": one name per source
// whatever its version, and a valid Slurm feature name (letters, digits, underscore).
std::string data_key(const std::string& kind, const std::string& realpath);
std::string data_key(SourceKind kind, const std::string& realpath);

// One warm cache entry of a node, as announced.
struct WarmEntry {
    std::string key;            // data_key
    bool shared = false;        // local_root/shared; else a user's cache
    uid_t uid = 0;              // the user's, for a user's entry
    std::string manifest_hash;  // whole in a cache's info file; a prefix once announced
    std::int64_t last_use = 0;  // seconds since the epoch (the lock file's mtime)
};

// Pure: aihpc_<k> or aihpc_<k>_u<uid>; "shared" or "user".
std::string feature_name(const WarmEntry& entry);
const char* mode_name(const WarmEntry& entry);
bool is_announced_feature(const std::string& feature);

// Pure: the entries of the `n` most recently used features, each feature's versions kept
// (most recent first), newest feature first.
std::vector<WarmEntry> hottest(std::vector<WarmEntry> entries, std::size_t n);

// Pure: the node's features with every aihpc_* one replaced by those of `warm`; the
// site's own stay, in their order, first.
std::vector<std::string> merge_features(const std::vector<std::string>& current, const std::vector<WarmEntry>& warm);

// Pure: the Comment for `warm`, and back: nullopt for a Comment that is not ours (a
// site's), an empty list for an empty Comment.
std::string format_comment(const std::vector<WarmEntry>& warm);
std::optional<std::vector<WarmEntry>> parse_comment(const std::string& comment);

// How far a use may be ahead of the one the node's Comment shows before the Comment is
// rewritten for it alone: every job's epilog would otherwise send slurmctld an update.
inline constexpr std::int64_t last_use_resolution_s = 300;

// Pure: whether the node's Comment `announced` already says what `warm` would: the same
// entries (source, whose, version), in any order, each last used at most
// last_use_resolution_s later than it shows.
bool comment_is_current(const std::string& announced, const std::vector<WarmEntry>& warm);

// One node's record, as `scontrol show node -o` prints it.
struct NodeRecord {
    std::string name;
    std::vector<std::string> available;  // AvailableFeatures
    std::vector<std::string> active;     // ActiveFeatures
    std::string comment;                 // "" when unset
    std::string state;                   // State, as IDLE, MIXED, ALLOCATED+DRAIN
    std::vector<std::string> partitions; // Partitions
};

// Pure: the records of `scontrol show node -o` (one line per node; a value with spaces,
// such as a Reason or a site's Comment, runs to the next KEY=).
std::vector<NodeRecord> parse_show_node(const std::string& text);

// A node that holds a source, for `where` and for --aihpc-gravity.
struct WarmNode {
    std::string node;
    WarmEntry entry;
    bool stale = false;  // it holds another version than the current one
};

// Pure: the nodes that announce `key` for everyone or for `uid`, whose Comment names the
// version `manifest_hash` (a stale version only with include_stale). A node whose Comment
// is not ours announces no version: listed only with include_stale, as stale. Most
// recently used first.
std::vector<WarmNode> nodes_holding(const std::vector<NodeRecord>& nodes, const std::string& key,
                                    const std::string& manifest_hash, uid_t uid, bool include_stale);

// Pure: the features of `keys` (shared, and this uid's) that some node announces.
std::vector<std::string> announced_features(const std::vector<NodeRecord>& nodes, const std::vector<std::string>& keys,
                                            uid_t uid);

// aihpc-stage where: the nodes that hold SRC (resolved and scanned as a stage-in does,
// stage_in.hpp source_version) warm for everyone or for `uid`, the current version only
// unless include_stale.
std::vector<WarmNode> where(const std::string& src, const std::string& base_dir, const std::vector<std::string>& allow,
                            unsigned threads, uid_t uid, bool include_stale);
// Pure: "NODE MODE LAST_USE" (UTC, ISO 8601), and " stale" for an older version; and the
// JSON object of one node.
std::string iso_time(std::int64_t seconds);
std::string where_line(const WarmNode& node);
std::string where_json(const WarmNode& node);

// Pure: the nodes that are idle now (State IDLE, with no flag such as DRAIN or
// COMPLETING): where a job can start at once.
std::vector<NodeRecord> idle_nodes(const std::vector<NodeRecord>& nodes);
// Pure: the nodes that announce any of `features`, in their order.
std::vector<std::string> nodes_announcing(const std::vector<NodeRecord>& nodes, const std::vector<std::string>& features);
// Pure: the partitions of the nodes named, each once, in order.
std::vector<std::string> partitions_of(const std::vector<NodeRecord>& nodes, const std::vector<std::string>& names);
// Pure: the value of KEY in `scontrol show config` ("KEY = VALUE" lines), "" when absent
// or (null); and whether a JobSubmitPlugins value names lua.
std::string config_value(const std::string& show_config, const std::string& key);
bool has_lua(const std::string& job_submit_plugins);

// The published warm entries of local_root's caches: shared/ and cache/<uid>/ for each
// user, read as root without creating, locking or following anything. A missing cache is
// no entry.
std::vector<WarmEntry> list_warm_entries(const std::string& local_root);

// As root on `node`: the hottest `count` entries announced, under a lock below local_root
// so that two epilogs do not interleave. Returns notes for the log (what changed, what
// failed); never throws for Slurm's failures.
std::vector<std::string> announce(const std::string& local_root, const std::string& node, std::size_t count);

// `scontrol show node -o` (all nodes, or `node`), with the deadline. Throws aihpc::Error
// saying what failed.
std::vector<NodeRecord> read_nodes(const std::string& node = "");

}  // namespace aihpc::stage::warm
