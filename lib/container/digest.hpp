// Content identity of an image, for provenance (AIHPC_CONTAINER_DIGEST), and a look
// inside a directory image (which mount points it has).
#pragma once
#include <string>

#include "container/image.hpp"
#include "container/launch.hpp"

namespace aihpc::container {

// "xxh3:<16 hex>". A file (SIF, SquashFS) hashes its bytes. A directory hashes its
// manifest: one line per entry, sorted by relative path, with type, mode, size, mtime
// (ns) and link target; contents are not read, so a tree of any size costs one walk.
// Registry and named images have no local bytes (see image_digest in digest_cache.hpp).
std::string file_digest(const std::string& path);
// The same hash of a file already open, read from its start.
std::string hash_open_file(int fd, const std::string& shown_path);
std::string directory_digest(const std::string& root);

// What a path is inside a directory image, resolved as the container would see it
// (symbolic links stay inside the image root).
PathKind path_kind_in_image(const std::string& root, const std::string& path_in_image);

}  // namespace aihpc::container
