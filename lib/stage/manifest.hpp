// What a staged item is made of: one record per file, directory and symlink, with the
// metadata that decides staleness, and optionally an xxh3 hash of each file's content.
#pragma once
#include <sys/types.h>
#include <time.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace aihpc::stage {

enum class EntryType : char { file = 'f', directory = 'd', symlink = 'l' };

// A file time as the kernel keeps it, seconds and nanoseconds apart: one int64 of
// nanoseconds since the epoch overflows after 2262-04-11, and such a time (which any
// user may give a file) would come back as 1901.
struct FileTime {
    std::int64_t sec = 0;
    std::int64_t nsec = 0;  // 0 to 999999999

    static FileTime of(const struct timespec& t);
    static FileTime of(std::int64_t sec, std::int64_t nsec);  // normalizes nsec
    struct timespec timespec() const;
    // Exact nanoseconds since the epoch in decimal: the manifest's MTIME_NS, the same text
    // as before for every time up to 2262 and exact past it.
    std::string text() const;
    static std::optional<FileTime> parse(const std::string& text);
    friend bool operator==(const FileTime&, const FileTime&) = default;
};

// The kernel's change time as one number, for equality checks only (a freshness
// identity, never a time to restore): wraps instead of overflowing.
std::int64_t change_stamp(std::int64_t sec, std::int64_t nsec);

struct ManifestEntry {
    std::string path;        // relative to the item's root, '/'-separated; "." for a lone file
    EntryType type = EntryType::file;
    mode_t mode = 0;         // permission bits only
    std::uint64_t size = 0;  // files: bytes; symlinks: target length; dirs: 0
    FileTime mtime;
    std::string target;      // symlinks only
    std::optional<std::string> content_hash;  // xxh3-128 hex of a file's bytes
    // Freshness only, from the scan of a source; not in the text form. A change that
    // puts back the size and mtime (`touch -d`) still moves the ctime, and a file
    // replaced by another has another inode.
    std::int64_t ctime_ns = 0;  // change_stamp()
    std::uint64_t inode = 0;
    std::uint64_t blocks = 0;  // 512-byte blocks allocated: fewer than the size needs means holes

    bool same_metadata(const ManifestEntry& other) const;
};

struct Manifest {
    // Sorted by path, a directory before its contents, so a copy can create parents first.
    std::vector<ManifestEntry> entries;

    std::uint64_t file_count() const;
    std::uint64_t byte_count() const;
    // xxh3-128 over the metadata of every entry (never the content hashes): equal for an
    // unchanged source, different after any size, mtime, mode, type, link or name change.
    std::string metadata_hash() const;
    // metadata_hash extended by each entry's ctime and inode, as scanned: what decides
    // whether a cache entry still matches its source. Meaningful only for a manifest
    // from a scan, not from parse().
    std::string freshness_hash() const;
    bool has_content_hashes() const;

    std::string serialize() const;
    static Manifest parse(const std::string& text);  // throws aihpc::Error on malformed text
};

struct SourceOps;

// How a scan runs: at most `cap` operations in flight, starting from `initial` workers
// (0: the usable CPUs) and growing to the latency-sized count (io_pool.hpp).
class IoPool;
struct ScanOptions {
    unsigned cap = 1;
    unsigned initial = 0;
    SourceOps* ops = nullptr;  // counts the scan's operations, when given
    // The workers to run on, shared with the copy that follows, when given (cap and
    // initial are then the pool's own).
    IoPool* pool = nullptr;
};

// What a scan learned about the source, to size the copy that follows.
struct ScanReport {
    unsigned workers = 1;                // workers the scan ended with
    std::uint64_t median_latency_ns = 0; // of one metadata operation; 0 if not measured
};

// Scans the tree below an open directory, never following a symlink. Sockets, FIFOs and
// device files are refused: they cannot be staged faithfully.
// Each directory is read once and each entry costs one statx (plus a readlink for a
// symlink); the statx calls of a directory are spread over the workers, so a warm hit's
// staleness check (this scan) keeps as many in flight as the copy would.
Manifest scan_tree(int dir_fd, const std::string& shown_path, const ScanOptions& options, ScanReport* report = nullptr);
// The same with at most `threads` workers.
Manifest scan_tree(int dir_fd, const std::string& shown_path, unsigned threads = 1);
// A manifest of one regular file, opened as fd, whose entry path is ".".
Manifest scan_file(int file_fd, const std::string& shown_path);

// Streaming xxh3-128, as 32 hex digits.
class ContentHasher {
public:
    ContentHasher();
    ~ContentHasher();
    ContentHasher(const ContentHasher&) = delete;
    ContentHasher& operator=(const ContentHasher&) = delete;
    void update(const void* data, std::size_t size);
    std::string hex();

private:
    void* state_;
};

std::string hash_bytes(const void* data, std::size_t size);
// Hashes a whole open file; throws aihpc::SystemError naming shown_path.
std::string hash_fd(int fd, const std::string& shown_path);

// Fills content_hash for every file of `manifest`, reading them below root_fd with
// `threads` workers. Used by --verify and `cache verify`.
void hash_contents(int root_fd, Manifest& manifest, unsigned threads, const std::string& shown_root);

// The paths whose entries differ between two manifests (added, removed or changed),
// content hashes compared where both have one. Empty means identical.
std::vector<std::string> manifest_differences(const Manifest& expected, const Manifest& actual);

// Path text in a manifest line: '%', whitespace and control bytes are %XX-escaped.
std::string escape_path(const std::string& path);
std::optional<std::string> unescape_path(const std::string& text);

}  // namespace aihpc::stage
