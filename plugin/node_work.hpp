// Node work out of slurmstepd: every piece that touches a user's files or may block
// (stage-in, stage-out, image digests, the epilog's cleanup) runs in aihpc-node, which
// this file forks and execs at once (lib/common/node_helper.hpp). slurmstepd itself
// opens no path a user controls; it only reads the helper's answer.
#pragma once
#include <string>
#include <vector>

#include "common/node_helper.hpp"
#include "plugin/plugin_state.hpp"

namespace aihpc::plugin {

enum class RunAs { user, root };

// Runs `aihpc-node COMMAND` for this step with the step's request (site arguments, raw
// options, identity) plus `extra` members (JSON text of an object's members, or "").
// Throws HelperFailed; the message names the work and quotes the helper's last lines.
HelperOutcome node_work(const PluginState& st, const std::string& command, RunAs as, const std::string& extra = "");

// The request aihpc-node reads: the step's site arguments, raw options and identity,
// plus `extra` members.
std::string node_request(const PluginState& st, const std::string& extra = "");

// Where aihpc-node is: beside the plugin in a build tree, else where it is installed.
std::string node_helper_program();

}  // namespace aihpc::plugin
