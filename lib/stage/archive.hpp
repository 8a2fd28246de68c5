// Archives (.tar, .tar.gz, .tar.zst) as staging sources, extracted with libarchive.
// Every entry is checked before anything is written: an archive with one hostile entry
// (absolute path, "..", a link leading out of the item) is refused whole.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "stage/manifest.hpp"
#include "stage/tree_copy.hpp"

namespace aihpc::stage {

enum class ArchiveEntryKind { file, directory, symlink, hardlink, other };

// Why an archive entry may not be extracted, or nullopt when it is safe. `link_target`
// is the symlink's or hard link's target.
std::optional<std::string> archive_entry_refusal(const std::string& path, ArchiveEntryKind kind,
                                                 const std::string& link_target);

// True for the names staged as archives: .tar, .tar.gz, .tgz, .tar.zst, .tzst.
bool is_archive_name(const std::string& name);

// Bounds on what one extraction may write: an archive's own size says nothing of what it
// expands to. Each entry is charged as it comes (files rounded up to whole 4 KiB blocks,
// each directory one block), before its bytes are written, and the extraction is
// abandoned at the first entry over a bound.
struct ExtractLimits {
    std::uint64_t max_bytes = 0;                    // the room left; 0: no bound
    std::uint64_t max_entries = 10'000'000;         // files, directories and links
    std::uint64_t max_ratio = 1000;                 // extracted bytes per archive byte read...
    std::uint64_t ratio_floor = std::uint64_t{64} << 20;  // ...once this much is extracted
    std::optional<std::uint64_t> max_cache_inodes{};  // entries the user's cache may still hold; none: no bound
};

// What extracting an entry of `size` bytes and this kind costs against ExtractLimits.
std::uint64_t extracted_charge(ArchiveEntryKind kind, std::uint64_t size);

struct ExtractResult {
    Manifest manifest;  // of the extracted tree, with content hashes when asked
    CopyStats stats;
};

// Extracts the archive open as archive_fd into dst_parent_fd/dst_name (a new directory).
// read_only: the cache-entry modes of tree_copy.hpp. hash: each file's xxh3 is taken from
// the archive's bytes as they are written. Throws aihpc::Error when the archive goes past
// `limits`; on any failure the partial directory is left for the caller to remove (its
// temporary name is the caller's), so nothing of an abandoned archive stays. Errors name
// the archive (shown_src) and the member, never the directory written to (shown_dst is
// named only when it cannot be made). Directory modes are set after their contents, as
// GNU tar does, so a mode-000 directory is extracted by its own user. Changes the
// working directory for the duration (extraction is path-based in libarchive) and
// restores it.
ExtractResult extract_archive(int archive_fd, int dst_parent_fd, const std::string& dst_name, bool read_only,
                              bool hash, CopyProgress* progress, const std::string& shown_src,
                              const std::string& shown_dst, const ExtractLimits& limits = {});

// Writes the tree open as tree_fd, as `manifest` lists it (the modes and times there,
// the bytes from the files), as a tar (pax) to out_fd: how a staged tree travels to
// the other nodes of a step as one file (fanout.hpp).
void write_tree_archive(int tree_fd, const Manifest& manifest, int out_fd, const std::string& shown_tree);

// The xxh3 of every regular file in an archive, by normalized path, read without
// extracting: what a verified cache hit compares an extracted entry against.
std::map<std::string, std::string> archive_content_hashes(int archive_fd, const std::string& shown_src);

}  // namespace aihpc::stage
