// Checks of user options against the site config that need the submit host's view:
// sources and images exist, lie under stage_allow and image_allow, and the runtime is
// allowed. Each capability adds its checks in submit_checks.cpp.
#pragma once
#include "config/site_config.hpp"
#include "config/user_options.hpp"

namespace aihpc::plugin {

// Throws aihpc::Error with a complete message.
void check_at_submit(const config::UserOptions& options, const config::SiteConfig& site);

}  // namespace aihpc::plugin
