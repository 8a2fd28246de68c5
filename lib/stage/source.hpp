// Where a staging source is, and whether the user may stage it: resolved to its real
// path, checked against stage_allow, and opened beneath the allowed root without
// following any symlink, so a path swapped after the check cannot redirect the copy.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "common/fd.hpp"
#include "stage/node_cache.hpp"

namespace aihpc::stage {

// Pure: SRC made absolute against base_dir (the submit directory) and lexically cleaned
// ("a/./b//c" -> "a/b/c"; ".." is kept for realpath to judge).
std::string absolute_source(const std::string& src, const std::string& base_dir);

// Pure: whether `path` is `root` or lies below it, component-wise ("/data2" is not under
// "/data"). Both must be absolute and clean.
bool path_is_under(const std::string& path, const std::string& root);

// Pure: the first root of `allow` that holds `realpath`, or nullopt. An empty list
// allows everything and yields "/".
std::optional<std::string> allowing_root(const std::string& realpath, const std::vector<std::string>& allow);

struct OpenSource {
    std::string given;     // as the user wrote it
    std::string realpath;
    SourceKind kind = SourceKind::tree;
    UniqueFd fd;           // the directory, or the file, opened beneath its allowed root
};

// Resolves, checks and opens a source. Errors name the source and say what to do.
// `allow` entries are resolved with realpath before comparing.
OpenSource open_source(const std::string& src, const std::string& base_dir, const std::vector<std::string>& allow);

}  // namespace aihpc::stage
