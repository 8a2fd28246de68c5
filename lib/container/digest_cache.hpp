// A per-user, per-node cache of image digests, so that an unchanged SIF or SquashFS file
// is read once per node rather than once per step: one small text file per image, named
// for its real path, in LOCAL_ROOT/cache/<uid>/digests/ (the user's own, mode 0700).
//
// An entry is served only for the very file it was made from: same real path, device,
// inode, size, mtime and ctime (both in ns), as fstat() sees the image once the user
// has opened it. ctime is there because mtime alone can be set back (touch -d, cp -p,
// rsync -t) after the bytes changed; ctime cannot be set by anyone but the kernel.
// The image is always opened as the caller (the job's user) before the cache is
// consulted, so the user's read permission decides, cached or not.
//
// Directory images are not cached: their digest is already a walk of their metadata,
// and the directory's own identity does not change when a file deep inside does, so a
// complete staleness check would be that same walk.
#pragma once
#include <sys/stat.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "container/digest.hpp"

namespace aihpc::container {

// An image file as the cache compares it.
struct ImageFileIdentity {
    std::string realpath;
    std::uint64_t device = 0;
    std::uint64_t inode = 0;
    std::uint64_t size = 0;
    std::int64_t mtime_ns = 0;
    std::int64_t ctime_ns = 0;
    bool operator==(const ImageFileIdentity&) const = default;
};
ImageFileIdentity image_file_identity(const std::string& realpath, const struct stat& st);

// The entry's file name: xxh3-128 of the real path, in hex, so any path fits.
std::string digest_entry_name(const std::string& realpath);
// One key=value line per field, the digest last.
std::string format_digest_entry(const ImageFileIdentity& id, const std::string& digest);
// The digest an entry records for exactly this identity; nothing for an entry of
// another identity, or text that does not parse (a torn or damaged file).
std::optional<std::string> digest_from_entry(const std::string& text, const ImageFileIdentity& id);

// Reads and hashes an open image file (hash_open_file); a test counts the reads here.
using FileHasher = std::function<std::string(int fd, const std::string& shown_path)>;

struct DigestCacheSettings {
    // LOCAL_ROOT/cache/<uid>/digests; its last component is made (0700) when missing.
    // Empty: no cache, the digest is computed.
    std::string dir;
    // An image whose ctime is this recent is hashed but not stored: a write within the
    // file system's timestamp granularity after the hash could leave its identity as
    // it was, and the entry would then outlive the bytes it describes.
    std::int64_t settle_ns = 2'000'000'000;
    FileHasher hasher = hash_open_file;
};

struct CachedDigest {
    std::string digest;
    bool from_cache = false;
    bool stored = false;        // computed and written to the cache
    std::string cache_problem;  // why the cache was not used or not updated; empty if it was
};

// The digest of the image file at `path`, from the cache when the file is unchanged.
// Throws aihpc::Error when the image cannot be opened or read; a cache that cannot be
// used only fills cache_problem.
CachedDigest cached_file_digest(const std::string& path, const DigestCacheSettings& settings);

// The digest of any image for AIHPC_CONTAINER_DIGEST, and a few words on where it came
// from for the verbose line: an image file through the cache in `cache`, a directory
// from its manifest, a registry or named image none (""). `cache_unavailable` says why
// there is no cache when cache.dir is empty.
struct ImageDigest {
    std::string digest;
    std::string provenance;
};
ImageDigest image_digest(const ResolvedImage& image, const DigestCacheSettings& cache,
                         const std::string& cache_unavailable);

// Pure: the digest helper's answer, one line each: the digest, where it came from, the
// runtime's name, 1 for a directory image (else 0), the image's location. And back;
// throws aihpc::Error on an answer of another shape.
std::string format_digest_result(const ResolvedImage& image, const ImageDigest& digest);
struct DigestResult {
    ResolvedImage image;
    std::string digest;
    std::string provenance;
};
DigestResult parse_digest_result(const std::string& image_text, const std::string& result);


}  // namespace aihpc::container
