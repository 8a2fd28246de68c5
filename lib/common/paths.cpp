#include "common/paths.hpp"

#include <sys/stat.h>

#include <cerrno>

#include "common/error.hpp"
#include "common/text.hpp"

namespace aihpc {

void make_directory(const std::string& path, mode_t mode, std::string_view what) {
    if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) throw_errno("cannot create " + std::string(what) + " " + path);
}

void make_directories(const std::string& path, mode_t mode, std::string_view what) {
    std::string partial = path.starts_with('/') ? "/" : "";
    for (const std::string& part : split(path, '/')) {
        if (part.empty()) continue;
        if (!partial.empty() && partial.back() != '/') partial += '/';
        partial += part;
        make_directory(partial, mode, what);
    }
}

bool path_exists(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0;
}

}  // namespace aihpc
