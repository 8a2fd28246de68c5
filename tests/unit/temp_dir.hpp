// A scratch directory per test, and reading back what a test made in it.
// POSIX I/O rather than iostreams: cmocka's fail() macro breaks <ios> included after it.
#pragma once
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "cmocka_cxx.hpp"

// Made under /tmp when the test starts; removed with everything in it when the test's
// scope ends, symlinks removed and never followed.
class TempDir {
public:
    TempDir() {
        char tmpl[] = "/tmp/aihpc-test.XXXXXX";
        if (!::mkdtemp(tmpl)) fail_msg("cannot create a scratch directory under /tmp");
        path_ = tmpl;
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir() {
        ::nftw(path_.c_str(), [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }, 16,
               FTW_DEPTH | FTW_PHYS);
    }

    const std::string& path() const { return path_; }

    // mkdir -p of `relative` below the scratch dir; returns its path.
    std::string make_dir(const std::string& relative) const {
        std::string p = path_;
        std::size_t start = 0;
        while (start <= relative.size()) {
            std::size_t end = relative.find('/', start);
            if (end == std::string::npos) end = relative.size();
            p += "/" + relative.substr(start, end - start);
            ::mkdir(p.c_str(), 0755);
            start = end + 1;
        }
        return p;
    }

    // Writes `text` to `relative` with `mode`; returns its path.
    std::string write(const std::string& relative, const std::string& text, mode_t mode = 0644) const {
        std::string p = path_ + "/" + relative;
        int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) fail_msg("cannot create %s", p.c_str());
        bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
        ::close(fd);
        if (!written) fail_msg("cannot write %s", p.c_str());
        ::chmod(p.c_str(), mode);
        return p;
    }

    // What `relative` holds; empty when it cannot be read.
    std::string read(const std::string& relative) const {
        std::string text;
        int fd = ::open((path_ + "/" + relative).c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) return text;
        char buf[65536];
        for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) text.append(buf, static_cast<std::size_t>(n));
        ::close(fd);
        return text;
    }

private:
    std::string path_;
};

// The whole content of a file; empty when it cannot be read.
inline std::string file_text(const std::string& path) {
    std::string text;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return text;
    char buf[65536];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) text.append(buf, static_cast<std::size_t>(n));
    ::close(fd);
    return text;
}
