// The release comparison (see slurm_release.hpp); no Slurm here, so the unit tests
// build it on its own.
#include "plugin/slurm_release.hpp"

#include <cctype>

namespace aihpc::plugin {

std::optional<std::string> slurm_release_of(std::string_view version) {
    std::size_t i = 0;
    auto number = [&]() {
        std::size_t start = i;
        while (i < version.size() && std::isdigit(static_cast<unsigned char>(version[i]))) ++i;
        return i > start && i - start <= 2;  // YY and MM
    };
    if (!number() || i >= version.size() || version[i] != '.') return std::nullopt;
    ++i;
    if (!number()) return std::nullopt;
    if (i < version.size() && std::isdigit(static_cast<unsigned char>(version[i]))) return std::nullopt;
    return std::string(version.substr(0, i));
}

std::optional<std::string> slurm_release_mismatch(std::string_view built, std::string_view running) {
    auto built_release = slurm_release_of(built);
    auto running_release = slurm_release_of(running);
    if (!built_release || !running_release || *built_release == *running_release) return std::nullopt;
    return "this aihpc.so was built against Slurm " + std::string(built) + " (release " + *built_release +
           ") but is loaded by Slurm " + std::string(running) + " (release " + *running_release +
           "), and a plugin works only with the release it was built for: rebuild and reinstall aihpc "
           "against Slurm " + *running_release + "'s headers (libslurm-dev)";
}

}  // namespace aihpc::plugin
