// A dataset directory packed into one squashfs image, which aihpc stages as one file:
// a million small files cost one read of one file instead of a million metadata round
// trips. The image is made with mksquashfs (squashfs-tools) and good defaults:
//   zstd, 1 MiB blocks (large reads, a good ratio), no extended attributes, every file
//   owned by root and every time 0, so that packing the same tree twice, by anyone, gives
//   the same bytes (mksquashfs sorts each directory itself).
// Only files, directories and symlinks go in, and no setuid or setgid file: a dataset
// needs neither, and refusing them here says so before any node sees the image.
// OUT is written beside its final name and renamed into place once whole; an existing
// OUT is never replaced.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace aihpc::stage {

// True for a name squashfs images go by: .sqsh or .squashfs.
bool is_squashfs_name(std::string_view path);

struct PackReport {
    std::uint64_t files = 0;        // regular files packed
    std::uint64_t bytes = 0;        // their bytes
    std::uint64_t image_bytes = 0;  // the image's size
};

// Throws aihpc::Error: what was refused, or what mksquashfs said.
PackReport pack_squashfs(const std::string& dir, const std::string& out, unsigned threads);

}  // namespace aihpc::stage
