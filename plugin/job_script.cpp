// Context: job_script (prolog/epilog). User: root. Calls: once per job per node.
// Always returns 0: a failing epilog of a required plugin drains the node.
#include "plugin/hooks.hpp"

namespace aihpc::plugin {

void job_epilog(const Spank& /*spank*/) {}

}  // namespace aihpc::plugin
