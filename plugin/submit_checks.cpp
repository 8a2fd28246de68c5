#include "plugin/submit_checks.hpp"

namespace aihpc::plugin {

void check_at_submit(const config::UserOptions& /*options*/, const config::SiteConfig& /*site*/) {}

}  // namespace aihpc::plugin
