// Context: job_script (prolog/epilog). User: root. Calls: once per job per node.
// Always returns 0: a failing epilog of a required plugin drains the node.
#include "plugin/capabilities.hpp"
#include "plugin/hooks.hpp"
#include "plugin/plugin_state.hpp"

namespace aihpc::plugin {

void job_epilog(const Spank& spank) { stage_job_epilog(spank, state()); }

}  // namespace aihpc::plugin
