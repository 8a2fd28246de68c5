#include "container/digest_cache.hpp"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <map>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/text.hpp"

namespace aihpc::container {

namespace {

constexpr const char* entry_header = "aihpc-image-digest 1";
constexpr std::size_t max_entry_bytes = 16384;

std::int64_t ns_of(const struct timespec& t) {
    return static_cast<std::int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec;
}

std::int64_t now_ns() {
    struct timespec t {};
    ::clock_gettime(CLOCK_REALTIME, &t);
    return ns_of(t);
}

std::string error_text(const std::string& what) { return what + ": " + std::strerror(errno); }

// The user's digests directory, made when missing: theirs alone, or not used at all,
// since whoever else could write there could choose the digests they are served.
UniqueFd open_cache_dir(const std::string& dir, std::string& problem) {
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
        problem = error_text("cannot create " + dir);
        return UniqueFd();
    }
    UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) {
        problem = error_text("cannot open " + dir);
        return fd;
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
        problem = error_text("cannot stat " + dir);
        return UniqueFd();
    }
    if (st.st_uid != ::geteuid() || (st.st_mode & 077) != 0) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        problem = dir + " is owned by uid " + std::to_string(st.st_uid) + " with mode " + mode +
                  ", not private to uid " + std::to_string(::geteuid());
        return UniqueFd();
    }
    return fd;
}

std::optional<std::string> read_entry(int dir_fd, const std::string& name) {
    UniqueFd fd(::openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!fd) return std::nullopt;
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || static_cast<std::size_t>(st.st_size) > max_entry_bytes)
        return std::nullopt;
    std::string text(max_entry_bytes, '\0');
    std::size_t got = 0;
    while (got < text.size()) {
        ssize_t n = ::read(fd.get(), text.data() + got, text.size() - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return std::nullopt;
        if (n == 0) break;
        got += static_cast<std::size_t>(n);
    }
    text.resize(got);
    return text;
}

// Temp file and rename: a reader sees the old entry or the new one, never half of one.
// A crash can leave a torn entry behind, which fails to parse and is rewritten.
void write_entry(int dir_fd, const std::string& dir, const std::string& name, const std::string& text) {
    std::string temp = ".tmp." + name + "." + std::to_string(::getpid());
    UniqueFd fd(::openat(dir_fd, temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd) throw_errno("cannot create " + dir + "/" + temp);
    std::size_t done = 0;
    while (done < text.size()) {
        ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int saved = errno;
            ::unlinkat(dir_fd, temp.c_str(), 0);
            errno = saved ? saved : EIO;
            throw_errno("cannot write " + dir + "/" + temp);
        }
        done += static_cast<std::size_t>(n);
    }
    if (::renameat(dir_fd, temp.c_str(), dir_fd, name.c_str()) != 0) {
        int saved = errno;
        ::unlinkat(dir_fd, temp.c_str(), 0);
        errno = saved;
        throw_errno("cannot rename " + dir + "/" + temp + " to " + name);
    }
}

}  // namespace

ImageFileIdentity image_file_identity(const std::string& realpath, const struct stat& st) {
    ImageFileIdentity id;
    id.realpath = realpath;
    id.device = static_cast<std::uint64_t>(st.st_dev);
    id.inode = static_cast<std::uint64_t>(st.st_ino);
    id.size = static_cast<std::uint64_t>(st.st_size);
    id.mtime_ns = ns_of(st.st_mtim);
    id.ctime_ns = ns_of(st.st_ctim);
    return id;
}

std::string digest_entry_name(const std::string& realpath) {
    XXH128_hash_t h = XXH3_128bits(realpath.data(), realpath.size());
    char buf[40];
    std::snprintf(buf, sizeof buf, "%016" PRIx64 "%016" PRIx64, static_cast<std::uint64_t>(h.high64),
                  static_cast<std::uint64_t>(h.low64));
    return buf;
}

// The real path is written hex-encoded, so that a path with a newline cannot forge a
// field of its own.
std::string format_digest_entry(const ImageFileIdentity& id, const std::string& digest) {
    std::string path_hex;
    char byte[3];
    for (unsigned char c : id.realpath) {
        std::snprintf(byte, sizeof byte, "%02x", c);
        path_hex += byte;
    }
    return std::string(entry_header) + "\nrealpath=" + path_hex + "\ndevice=" + std::to_string(id.device) +
           "\ninode=" + std::to_string(id.inode) + "\nsize=" + std::to_string(id.size) +
           "\nmtime_ns=" + std::to_string(id.mtime_ns) + "\nctime_ns=" + std::to_string(id.ctime_ns) +
           "\ndigest=" + digest + "\n";
}

std::optional<std::string> digest_from_entry(const std::string& text, const ImageFileIdentity& id) {
    // Only the exact text this identity would be written as matches: any damage, a
    // missing field or a field of another file all read as a miss.
    std::string::size_type at = text.rfind("\ndigest=");
    if (at == std::string::npos || text.back() != '\n') return std::nullopt;
    std::string digest = text.substr(at + 8, text.size() - at - 9);
    if (digest.size() != 21 || digest.compare(0, 5, "xxh3:") != 0) return std::nullopt;
    for (char c : digest.substr(5))
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return std::nullopt;
    if (text != format_digest_entry(id, digest)) return std::nullopt;
    return digest;
}

CachedDigest cached_file_digest(const std::string& path, const DigestCacheSettings& settings) {
    char real[PATH_MAX];
    if (!::realpath(path.c_str(), real)) throw_errno("cannot read image " + path + " for its digest");
    std::string realpath = real;
    // Opened as the caller first: the cache never answers for an image its user cannot read.
    UniqueFd image(::open(realpath.c_str(), O_RDONLY | O_CLOEXEC));
    if (!image) throw_errno("cannot read image " + realpath + " for its digest");
    struct stat st {};
    if (::fstat(image.get(), &st) != 0) throw_errno("cannot stat image " + realpath + " for its digest");
    ImageFileIdentity id = image_file_identity(realpath, st);

    CachedDigest result;
    UniqueFd dir;
    if (settings.dir.empty())
        result.cache_problem = "no digest cache on this node";
    else if (!S_ISREG(st.st_mode))
        result.cache_problem = realpath + " is not a regular file";
    else
        dir = open_cache_dir(settings.dir, result.cache_problem);
    std::string name = digest_entry_name(realpath);
    if (dir) {
        if (std::optional<std::string> text = read_entry(dir.get(), name)) {
            if (std::optional<std::string> digest = digest_from_entry(*text, id)) {
                result.digest = *digest;
                result.from_cache = true;
                return result;
            }
        }
    }

    std::int64_t started = now_ns();
    result.digest = settings.hasher(image.get(), realpath);
    if (!dir) return result;
    struct stat after {};
    if (::fstat(image.get(), &after) != 0 || !(image_file_identity(realpath, after) == id)) {
        result.cache_problem = realpath + " changed while it was hashed";
        return result;
    }
    if (id.ctime_ns > started - settings.settle_ns) {
        result.cache_problem = realpath + " changed too recently to cache its digest";
        return result;
    }
    try {
        write_entry(dir.get(), settings.dir, name, format_digest_entry(id, result.digest));
        result.stored = true;
    } catch (const Error& e) {
        result.cache_problem = e.what();
    }
    return result;
}

ImageDigest image_digest(const ResolvedImage& image, const DigestCacheSettings& cache,
                         const std::string& cache_unavailable) {
    switch (image.ref.kind) {
    case ImageKind::sif:
    case ImageKind::squashfs: {
        CachedDigest d = cached_file_digest(image.location, cache);
        if (d.from_cache) return {d.digest, "digest from the node's digest cache " + cache.dir};
        if (d.stored) return {d.digest, "digest computed, stored in the node's digest cache " + cache.dir};
        return {d.digest, "digest computed, not cached: " + (d.cache_problem.empty() ? cache_unavailable : d.cache_problem)};
    }
    case ImageKind::directory:
        // A directory's own identity misses changes deep inside it, and a complete check
        // is the very metadata walk the digest is: it is computed each time.
        return {directory_digest(image.location), "digest computed from the directory's manifest"};
    case ImageKind::registry:
    case ImageKind::named: break;
    }
    return {"", "no local image to digest"};
}

std::string format_digest_result(const ResolvedImage& image, const ImageDigest& digest) {
    return digest.digest + "\n" + digest.provenance + "\n" + runtime_name(image.runtime) + "\n" +
           (image.ref.kind == ImageKind::directory ? "1" : "0") + "\n" + image.location;
}

DigestResult parse_digest_result(const std::string& image_text, const std::string& result) {
    // Four lines, then the location, which may itself hold a newline.
    std::vector<std::string> lines;
    std::size_t at = 0;
    for (int i = 0; i < 4 && at <= result.size(); ++i) {
        std::size_t end = result.find('\n', at);
        if (end == std::string::npos) break;
        lines.push_back(result.substr(at, end - at));
        at = end + 1;
    }
    if (lines.size() == 4) lines.push_back(result.substr(at));
    std::optional<Runtime> runtime = lines.size() == 5 ? parse_runtime(lines[2]) : std::nullopt;
    if (!runtime || (lines[3] != "0" && lines[3] != "1") || lines[0].empty() || lines[4].empty())
        throw Error("--aihpc-container: the image helper gave an answer of another shape; reinstall aihpc on this node");
    DigestResult out;
    out.digest = lines[0];
    out.provenance = lines[1];
    out.image.ref = classify_image(image_text, lines[3] == "1");
    out.image.runtime = *runtime;
    out.image.location = lines[4];
    return out;
}

}  // namespace aihpc::container
