#include "stage/source.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "common/error.hpp"
#include "common/text.hpp"
#include "stage/archive.hpp"
#include "stage/fs.hpp"
#include "stage/squashfs_mount.hpp"
#include "stage/squashfs_pack.hpp"

namespace aihpc::stage {

std::string absolute_source(const std::string& src, const std::string& base_dir) {
    std::string path = (!src.empty() && src[0] == '/') ? src : join_path(base_dir.empty() ? "/" : base_dir, src);
    std::vector<std::string> kept;
    for (const std::string& part : split(path, '/'))
        if (!part.empty() && part != ".") kept.push_back(part);
    return "/" + join(kept, "/");
}

bool path_is_under(const std::string& path, const std::string& root) {
    if (root == "/") return !path.empty() && path[0] == '/';
    if (path == root) return true;
    return path.size() > root.size() && path.compare(0, root.size(), root) == 0 && path[root.size()] == '/';
}

std::optional<std::string> allowing_root(const std::string& realpath, const std::vector<std::string>& allow) {
    if (allow.empty()) return std::string("/");
    for (const std::string& root : allow)
        if (path_is_under(realpath, root)) return root;
    return std::nullopt;
}

OpenSource open_source(const std::string& src, const std::string& base_dir, const std::vector<std::string>& allow) {
    OpenSource out;
    out.given = src;
    std::string absolute = absolute_source(src, base_dir);
    char resolved[PATH_MAX];
    if (!::realpath(absolute.c_str(), resolved)) {
        int err = errno;
        if (err == ENOENT || err == ENOTDIR)
            throw Error("stage source " + src + " does not exist (looked for " + absolute + ")");
        if (err == EACCES) throw Error("stage source " + src + " is not readable by you (" + absolute + ")");
        throw SystemError("cannot resolve the stage source " + absolute, err);
    }
    out.realpath = resolved;

    std::vector<std::string> real_allow;
    for (const std::string& root : allow) {
        char real_root[PATH_MAX];
        if (::realpath(root.c_str(), real_root)) real_allow.emplace_back(real_root);
    }
    auto root = allowing_root(out.realpath, real_allow);
    if (!root || (!allow.empty() && real_allow.empty()))
        throw Error("stage source " + src + " (real path " + out.realpath + ") is not under stage_allow=" + join(allow, ":") +
                    "; copy it under one of those directories first");

    UniqueFd root_fd(::open(root->c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!root_fd) throw_errno("cannot open " + *root);
    std::string relative = *root == "/" ? out.realpath.substr(1) : out.realpath.substr(std::min(out.realpath.size(), root->size() + 1));
    // O_NONBLOCK: a FIFO at the path must not hang the stage; the fstat below refuses it.
    int fd = open_beneath(root_fd.get(), relative, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        int err = errno;
        if (err == EACCES) throw Error("stage source " + src + " is not readable by you (" + out.realpath + ")");
        if (err == ELOOP || err == EXDEV)
            throw Error("stage source " + src + " changed into a symlink while being checked; stage it again");
        throw SystemError("cannot open the stage source " + out.realpath, err);
    }
    out.fd.reset(fd);
    struct stat st {};
    if (::fstat(out.fd.get(), &st) != 0) throw_errno("cannot stat " + out.realpath);
    if (S_ISDIR(st.st_mode)) {
        out.kind = SourceKind::tree;
    } else if (S_ISREG(st.st_mode)) {
        if (is_squashfs_name(src) || is_squashfs_name(out.realpath)) {
            out.kind = SourceKind::squashfs;
            // Its superblock is read at once: a truncated or foreign image is refused at
            // submit time, not on the node.
            check_image_superblock(out.fd.get(), src);
        } else {
            out.kind = (is_archive_name(basename_of(src)) || is_archive_name(out.realpath)) ? SourceKind::archive
                                                                                           : SourceKind::file;
        }
    } else {
        throw Error("stage source " + src + " is neither a file nor a directory");
    }
    return out;
}

}  // namespace aihpc::stage
