#include "plugin/plugin_state.hpp"

#include <cstdio>

namespace aihpc::plugin {

PluginState& state() {
    static PluginState instance;
    return instance;
}

void PluginState::note(const std::string& phase) {
    if (!options.verbose) return;
    auto elapsed = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started);
    char stamp[32];
    std::snprintf(stamp, sizeof stamp, "%.1fms", elapsed.count());
    verbose_lines.push_back(std::string("aihpc: [") + stamp + "] " + phase);
}

}  // namespace aihpc::plugin
