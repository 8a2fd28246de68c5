// The request slurmstepd's plugin hands aihpc-node on fd 3 (or a task wrapper in its
// environment): one JSON object naming the
// step (job, user, node), the site's plugstack arguments and the user's --aihpc options,
// with what one piece of node work needs besides. The helper often runs as root, so the
// text is read by a parser that checks every member's type and refuses, never guesses:
// a request that names no job, user or node is an error, never "job 0 as uid 0".
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "config/site_config.hpp"
#include "config/user_options.hpp"
#include "stage/node_cache.hpp"

namespace aihpc::stage {

struct NodeRequest {
    std::vector<std::string> site_args;  // plugstack.conf's arguments, as given
    config::SiteConfig site;             // ... and parsed
    config::RawOptions raw_options;      // the user's --aihpc-* options, as given
    config::UserOptions options;         // ... and parsed
    std::uint32_t job_id = 0;
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups;  // prepare-stage-in: the job's supplementary groups
    std::string node;
    std::string submit_dir;
    CacheLimits limits;         // stage-in: what prepare measured
    bool no_cache = false;      // digest: prepare could not make the user's cache dir
    std::uint32_t step_id = 0;
    std::uint32_t local_tasks = 1;
    std::optional<std::string> argv0;  // run-task on Slurm < 23.11: the task's own argv[0]
    std::optional<std::string> checkpoint_dir;  // run-task with --aihpc-checkpoint: AIHPC_CHECKPOINT_DIR
    // mount-images: the squashfs items (NAMEs) whose mount the stager found missing or
    // dead; root mounts only names that are squashfs items of `options`.
    std::vector<std::string> mounts;
    // prepare-stage-in: the items (NAMEs) the stager found missing from the shared cache
    // on its first pass; root produces them there (shared_cache.hpp) before the stager's
    // second pass, which then takes whatever is not shared from the user's cache.
    std::vector<std::string> shared_items;
    bool any_runtime = false;
    // stage-in of a step over several nodes (fanout.hpp): the step's node count, this
    // node's index in it, and the name of its node 0, which reads the sources.
    std::uint32_t fanout_nodes = 0;
    std::uint32_t fanout_index = 0;
    std::string fanout_sender;
    std::string fanout_nodelist;  // the step's nodes, as Slurm lists them   // digest for a host batch script: its steps run the runtime, maybe elsewhere
};

// The request's text, as slurmstepd's plugin hands it over: site_args and raw_options
// as given (site and options are what the helper parses from them), the identity, and
// each optional member only when it is set. parse_node_request(format_node_request(r))
// gives r back.
std::string format_node_request(const NodeRequest& r);

// Throws aihpc::Error naming the member that is missing or of the wrong type, or what
// the site arguments or user options got wrong.
NodeRequest parse_node_request(const std::string& text);

}  // namespace aihpc::stage
