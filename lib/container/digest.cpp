#include "container/digest.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <xxhash.h>

#include "config.h"
#ifdef HAVE_LINUX_OPENAT2_H
#include <linux/openat2.h>
#endif

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <memory>
#include <vector>

#include "common/error.hpp"
#include "common/fd.hpp"

namespace aihpc::container {

namespace {

struct Xxh3 {
    XXH3_state_t* state = XXH3_createState();
    Xxh3() {
        if (!state) throw Error("out of memory for the image digest");
        XXH3_64bits_reset(state);
    }
    ~Xxh3() { XXH3_freeState(state); }
    Xxh3(const Xxh3&) = delete;
    Xxh3& operator=(const Xxh3&) = delete;
    void update(const void* data, std::size_t size) { XXH3_64bits_update(state, data, size); }
    std::string hex() const {
        char buf[32];
        std::snprintf(buf, sizeof buf, "xxh3:%016" PRIx64, static_cast<std::uint64_t>(XXH3_64bits_digest(state)));
        return buf;
    }
};

struct DirCloser {
    void operator()(DIR* dir) const { ::closedir(dir); }
};

struct Entry {
    std::string path;
    std::string line;
};

void walk(int dir_fd, const std::string& prefix, const std::string& root, std::vector<Entry>& out) {
    int fd = ::dup(dir_fd);
    if (fd < 0) throw_errno("cannot read image directory " + root + "/" + prefix);
    std::unique_ptr<DIR, DirCloser> dir(::fdopendir(fd));
    if (!dir) {
        ::close(fd);
        throw_errno("cannot read image directory " + root + "/" + prefix);
    }
    while (dirent* d = ::readdir(dir.get())) {
        std::string name = d->d_name;
        if (name == "." || name == "..") continue;
        std::string rel = prefix.empty() ? name : prefix + "/" + name;
        struct stat st {};
        if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
            throw_errno("cannot stat " + root + "/" + rel + " for the image digest");
        char line[160];
        std::snprintf(line, sizeof line, "\t%o\t%" PRIu64 "\t%" PRId64 ".%09ld", static_cast<unsigned>(st.st_mode),
                      static_cast<std::uint64_t>(S_ISDIR(st.st_mode) ? 0 : st.st_size),
                      static_cast<std::int64_t>(st.st_mtim.tv_sec), st.st_mtim.tv_nsec);
        Entry entry{rel, line};
        if (S_ISLNK(st.st_mode)) {
            std::vector<char> target(static_cast<std::size_t>(st.st_size) + 2);
            ssize_t n = ::readlinkat(dir_fd, name.c_str(), target.data(), target.size() - 1);
            if (n >= 0) entry.line += "\t" + std::string(target.data(), static_cast<std::size_t>(n));
        }
        out.push_back(std::move(entry));
        if (S_ISDIR(st.st_mode)) {
            UniqueFd sub(::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            // A directory the user cannot read is part of the identity as an entry only.
            if (!sub) {
                if (errno == EACCES) continue;
                throw_errno("cannot open " + root + "/" + rel + " for the image digest");
            }
            walk(sub.get(), rel, root, out);
        }
    }
}

}  // namespace

std::string hash_open_file(int fd, const std::string& shown_path) {
    Xxh3 hash;
    std::vector<char> buf(1 << 20);
    off_t offset = 0;
    while (true) {
        ssize_t n = ::pread(fd, buf.data(), buf.size(), offset);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("cannot read image " + shown_path + " for its digest");
        }
        if (n == 0) break;
        hash.update(buf.data(), static_cast<std::size_t>(n));
        offset += n;
    }
    return hash.hex();
}

std::string file_digest(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) throw_errno("cannot read image " + path + " for its digest");
    return hash_open_file(fd.get(), path);
}

std::string directory_digest(const std::string& root) {
    UniqueFd fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) throw_errno("cannot open image directory " + root + " for its digest");
    std::vector<Entry> entries;
    walk(fd.get(), "", root, entries);
    std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.path < b.path; });
    Xxh3 hash;
    for (const Entry& e : entries) {
        hash.update(e.path.data(), e.path.size());
        hash.update(e.line.data(), e.line.size());
        hash.update("\n", 1);
    }
    return hash.hex();
}

PathKind path_kind_in_image(const std::string& root, const std::string& path_in_image) {
    UniqueFd root_fd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!root_fd) return PathKind::none;
    std::string rel = path_in_image;
    while (!rel.empty() && rel.front() == '/') rel.erase(0, 1);
    if (rel.empty()) return PathKind::directory;
#if defined(HAVE_LINUX_OPENAT2_H) && defined(SYS_openat2)
    struct open_how how {};
    how.flags = O_PATH | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    UniqueFd fd(static_cast<int>(::syscall(SYS_openat2, root_fd.get(), rel.c_str(), &how, sizeof how)));
    if (!fd && errno != ENOSYS) return PathKind::none;
    if (fd) {
        struct stat st {};
        if (::fstat(fd.get(), &st) != 0) return PathKind::none;
        return S_ISDIR(st.st_mode) ? PathKind::directory : PathKind::file;
    }
#endif
    struct stat st {};
    if (::fstatat(root_fd.get(), rel.c_str(), &st, 0) != 0) return PathKind::none;
    return S_ISDIR(st.st_mode) ? PathKind::directory : PathKind::file;
}

}  // namespace aihpc::container
