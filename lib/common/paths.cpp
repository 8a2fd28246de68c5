#include "common/paths.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "common/error.hpp"
#include "common/fd.hpp"
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

std::vector<std::string> helper_program_candidates(const std::string& plugin_path, const std::string& name,
                                                   const std::string& installed_path) {
    std::vector<std::string> out;
    std::size_t slash = plugin_path.rfind('/');
    std::string dir = slash == std::string::npos ? "." : plugin_path.substr(0, slash);
    if (dir.ends_with("/.libs")) out.push_back(dir + "/../../tools/" + name);
    else if (dir.ends_with("/plugin")) out.push_back(dir + "/../tools/" + name);
    if (!installed_path.empty()) out.push_back(installed_path);
    return out;
}

namespace {

std::string mode_octal(mode_t mode) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
    return buf;
}

// Root-owned and writable by no one else. An ancestor may be a root-owned sticky
// world-writable directory (/tmp): the sticky bit protects the root-owned directory below
// it from being renamed or removed. The directory itself (`last`) may not: in a sticky
// directory users can still create names, and would make the directories aihpc expects
// to create there, or plant the files root reads from it.
void check_trusted(int fd, const std::string& shown, std::string_view what, bool last) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw_errno("cannot stat " + shown);
    bool sticky_shared = !last && (st.st_mode & S_ISVTX) && st.st_uid == 0;
    if (st.st_uid != 0 || ((st.st_mode & 022) && !sticky_shared))
        throw Error(std::string(what) + ": " + shown + " must be owned by root and writable by no one else (it is uid " +
                    std::to_string(st.st_uid) + ", mode " + mode_octal(st.st_mode) +
                    "); aihpc refuses to act until an administrator fixes it");
}

}  // namespace

int open_root_owned_dir(const std::string& path, bool create, mode_t mode, std::string_view what) {
    if (!path.starts_with('/')) throw Error(std::string(what) + ": " + path + " is not an absolute path");
    UniqueFd dir(::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir) throw_errno("cannot open /");
    std::vector<std::string> parts;
    for (const std::string& part : split(path, '/'))
        if (!part.empty() && part != ".") parts.push_back(part);
    check_trusted(dir.get(), "/", what, parts.empty());
    std::string shown;
    for (std::size_t i = 0; i < parts.size(); ++i) {
        const std::string& part = parts[i];
        if (part == "..") throw Error(std::string(what) + ": " + path + " must not contain '..'");
        shown += "/" + part;
        if (create && ::mkdirat(dir.get(), part.c_str(), mode) != 0 && errno != EEXIST)
            throw_errno("cannot create " + std::string(what) + " " + shown);
        UniqueFd next(::openat(dir.get(), part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!next) {
            if (errno == ELOOP || errno == ENOTDIR)
                throw Error(std::string(what) + ": " + shown + " is not a directory (a symbolic link or a file); aihpc " +
                            "refuses to act until an administrator fixes it");
            throw_errno("cannot open " + std::string(what) + " " + shown);
        }
        check_trusted(next.get(), shown, what, i + 1 == parts.size());
        dir = std::move(next);
    }
    return dir.release();
}

std::optional<std::string> find_program(const std::string& program, const std::vector<std::string>& dirs) {
    for (const std::string& dir : dirs) {
        if (dir.empty()) continue;
        std::string path = dir + (dir.back() == '/' ? "" : "/") + program;
        struct stat st {};
        if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::faccessat(AT_FDCWD, path.c_str(), X_OK, AT_EACCESS) == 0)
            return path;
    }
    return std::nullopt;
}

}  // namespace aihpc
