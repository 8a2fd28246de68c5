// Affinity and the distributed-training env in the plugin: contexts and users are given
// at each function in capabilities.hpp. The planner lives in lib/affinity.
#include "plugin/capabilities.hpp"

namespace aihpc::plugin {

void bind_user_init(const Spank&, PluginState&) {}
void bind_task_init(const Spank&, PluginState&) {}

}  // namespace aihpc::plugin
