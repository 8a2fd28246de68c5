// Containers in the plugin: contexts and users are given at each function in
// capabilities.hpp. Detection and argv building live in lib/container.
#include "plugin/capabilities.hpp"

namespace aihpc::plugin {

void container_check_at_submit(const config::UserOptions&, const config::SiteConfig&) {}
void container_user_init(const Spank&, PluginState&) {}
void container_task_init(const Spank&, PluginState&) {}

}  // namespace aihpc::plugin
