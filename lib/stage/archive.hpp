// Archives (.tar, .tar.gz, .tar.zst) as staging sources, extracted with libarchive.
// Every entry is checked before anything is written: an archive with one hostile entry
// (absolute path, "..", a link leading out of the item) is refused whole.
#pragma once
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

struct ExtractResult {
    Manifest manifest;  // of the extracted tree, with content hashes when asked
    CopyStats stats;
};

// Extracts the archive open as archive_fd into dst_parent_fd/dst_name (a new directory).
// read_only: the cache-entry modes of tree_copy.hpp. hash: each file's xxh3 is taken from
// the archive's bytes as they are written. On failure the partial directory is left for
// the caller to remove. Changes the working directory for the duration (extraction is
// path-based in libarchive) and restores it.
ExtractResult extract_archive(int archive_fd, int dst_parent_fd, const std::string& dst_name, bool read_only,
                              bool hash, CopyProgress* progress, const std::string& shown_src,
                              const std::string& shown_dst);

// The xxh3 of every regular file in an archive, by normalized path, read without
// extracting: what a verified cache hit compares an extracted entry against.
std::map<std::string, std::string> archive_content_hashes(int archive_fd, const std::string& shown_src);

}  // namespace aihpc::stage
