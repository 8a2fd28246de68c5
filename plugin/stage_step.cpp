// Staging in the plugin: contexts and users are given at each function in
// capabilities.hpp. The engine itself lives in lib/stage.
#include "plugin/capabilities.hpp"

namespace aihpc::plugin {

void stage_check_at_submit(const config::UserOptions&, const config::SiteConfig&) {}
void stage_user_init(const Spank&, PluginState&) {}
void stage_task_init(const Spank&, PluginState&) {}
void stage_task_exit(const Spank&, PluginState&) {}
void stage_job_epilog(const Spank&, const config::SiteConfig&) {}

}  // namespace aihpc::plugin
