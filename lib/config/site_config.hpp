// Site keys: the key=value arguments after aihpc.so in plugstack.conf.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "config/user_options.hpp"

namespace aihpc::config {

// A size in bytes, or a share of the file system that holds it.
struct SizeLimit {
    bool is_percent = true;
    double percent = 50.0;     // when is_percent
    std::uint64_t bytes = 0;   // otherwise

    std::uint64_t resolve(std::uint64_t filesystem_bytes) const;
    std::string text() const;
};

// "80%", "512M", "2G", "1T", "4096". Throws aihpc::Error naming `what`.
SizeLimit parse_size_limit(const std::string& what, const std::string& text);

// "90", "90s", "15m", "1h", "2d": a duration in seconds, from 1 s to 30 days. Throws
// aihpc::Error naming `what`.
unsigned parse_duration(const std::string& what, const std::string& text);

// One user's node cache holds at most this many inodes by default: an archive of ten
// million empty files costs no bytes, and would fill the file system's inode table.
inline constexpr std::uint64_t default_cache_user_inodes = 1'000'000;
inline constexpr std::uint64_t cache_user_inodes_max = std::uint64_t{1} << 40;

struct SiteConfig {
    std::string local_root = "/var/lib/aihpc";      // may contain %n; root-owned, see aihpc(8)
    SizeLimit cache_max;                            // 50%
    std::optional<SizeLimit> cache_low;             // default: 90% of cache_max
    std::optional<SizeLimit> cache_user_max;        // one user's share; default: cache_max
    std::uint64_t cache_user_inodes = default_cache_user_inodes;  // files, directories and links one user's cache may hold
    unsigned stage_timeout_s = 3600;                // a stage-in or stage-out is killed after this
    unsigned keep_failed_days = 7;                  // a stage dir kept after a failed stage-out expires
    // How long the epilog spends finishing a stage-out that the job's end cut short; 0:
    // it leaves that to `aihpc-stage deliver`. The node stays COMPLETING meanwhile.
    unsigned epilog_deliver_timeout_s = 60;
    std::vector<std::string> stage_allow;           // empty: anything the user can read
    unsigned stage_threads = 0;                     // 0: the default cap, 64; the engine adapts below it
    // A step over several nodes reads each file, archive or image source on its first
    // node only, which sends it to the others with sbcast (lib/stage/fanout.hpp).
    bool stage_fanout = true;
    // World-readable sources are staged once per node for every user, under
    // local_root/shared, read as shared_user, within cache_shared_max (default: half of
    // cache_max) (lib/stage/shared_cache.hpp).
    bool cache_shared = true;
    std::string shared_user = "nobody";
    std::optional<SizeLimit> cache_shared_max;
    // How many of its most recently used cached sources a node announces to Slurm as
    // features, for jobs that prefer the nodes holding their data (--aihpc-gravity,
    // lib/stage/warm_data.hpp); 0: none, and the node's record is left alone.
    unsigned gravity_features = 16;
    // Whether a job that stages data prefers the nodes that hold it warm when it does not
    // say (--aihpc-gravity): the site-wide form of data gravity. Off, a submission never
    // asks Slurm which nodes hold its data unless the user asked for gravity.
    bool gravity_default = false;
    std::vector<std::string> container_runtimes;    // empty: all found on runtime_path
    std::string container_default;                  // empty: first allowed
    std::vector<std::string> image_allow;           // empty: any
    bool registry = false;
    std::vector<std::string> runtime_path;          // empty: slurmd's PATH
    BindMode bind_default = BindMode::none;
    DistKind dist_default = DistKind::none;
    // Where AIHPC_CHECKPOINT_DIR lives for jobs that are not sweep tasks: <dir>/<jobid>.
    // %u is the user name; empty: $HOME/.aihpc/checkpoints.
    std::string checkpoint_root;

    // local_root with %n replaced by the node name.
    std::string local_root_for(const std::string& node_name) const;
    // cache_low in bytes for a file system of the given size.
    std::uint64_t cache_low_bytes(std::uint64_t filesystem_bytes) const;
    // cache_user_max in bytes, never above cache_max.
    std::uint64_t cache_user_max_bytes(std::uint64_t filesystem_bytes) const;
    // cache_shared_max in bytes, never above cache_max.
    std::uint64_t cache_shared_max_bytes(std::uint64_t filesystem_bytes) const;
};

// The runtimes aihpc knows, in the order container_default falls back to.
const std::vector<std::string>& known_runtimes();

// Parses plugstack arguments. An unknown key, a repeated key or a bad value throws
// aihpc::Error naming the key, so the plugin refuses to load.
SiteConfig parse_site_config(const std::vector<std::string>& args);

}  // namespace aihpc::config
