// What a staged item is made of: one record per file, directory and symlink, with the
// metadata that decides staleness, and optionally an xxh3 hash of each file's content.
#pragma once
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace aihpc::stage {

enum class EntryType : char { file = 'f', directory = 'd', symlink = 'l' };

struct ManifestEntry {
    std::string path;        // relative to the item's root, '/'-separated; "." for a lone file
    EntryType type = EntryType::file;
    mode_t mode = 0;         // permission bits only
    std::uint64_t size = 0;  // files: bytes; symlinks: target length; dirs: 0
    std::int64_t mtime_ns = 0;
    std::string target;      // symlinks only
    std::optional<std::string> content_hash;  // xxh3-128 hex of a file's bytes

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
    bool has_content_hashes() const;

    std::string serialize() const;
    static Manifest parse(const std::string& text);  // throws aihpc::Error on malformed text
};

// Scans the tree below an open directory, never following a symlink. Sockets, FIFOs and
// device files are refused: they cannot be staged faithfully.
// With threads > 1, directories are listed by that many workers (the warm path of a
// cache hit is this scan, and it is bound by one stat per entry).
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
