// Node work out of slurmstepd: every piece that touches a user's files or may block
// (stage-in, stage-out, image digests, the epilog's cleanup) runs in aihpc-node, which
// this file forks and execs at once (lib/common/node_helper.hpp). slurmstepd itself
// opens no path a user controls; it only reads the helper's answer.
#pragma once
#include <string>
#include <vector>

#include "common/node_helper.hpp"
#include "plugin/plugin_state.hpp"
#include "stage/node_request.hpp"

namespace aihpc::plugin {

enum class RunAs { user, root };

// The step's request (site arguments, raw options, identity), to which a piece of work
// adds what it needs besides (lib/stage/node_request.hpp writes and reads it).
stage::NodeRequest step_request(const PluginState& st);

// Runs `aihpc-node COMMAND` for this step with `request` (by default the step's own).
// Throws HelperFailed; the message names the work and quotes the helper's last lines.
HelperOutcome node_work(const PluginState& st, const std::string& command, RunAs as);
HelperOutcome node_work(const PluginState& st, const std::string& command, RunAs as, const stage::NodeRequest& request);

// Where aihpc-node is: beside the plugin in a build tree, else where it is installed.
std::string node_helper_program();

}  // namespace aihpc::plugin
