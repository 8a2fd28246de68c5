// Which runtime runs an image, and whether the site allows it. The classification and
// the choice are pure; check_image() and find_runtime() look at the file system.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/paths.hpp"
#include "config/site_config.hpp"

namespace aihpc::container {

enum class Runtime { apptainer, singularity, charliecloud, enroot, podman };

// The site-key name ("charliecloud") and the program that runs it ("ch-run").
const char* runtime_name(Runtime runtime);
const char* runtime_program(Runtime runtime);
std::optional<Runtime> parse_runtime(std::string_view name);

enum class ImageKind {
    sif,        // apptainer/singularity image file
    squashfs,   // enroot .sqsh
    directory,  // an unpacked root file system (charliecloud; podman --rootfs)
    registry,   // docker://..., or a podman image name that podman may pull
    named,      // a container the runtime keeps by name (enroot create NAME)
};
const char* kind_name(ImageKind kind);

struct ImageRef {
    std::string text;                // as the user gave it
    std::string image;               // the part after any RUNTIME: prefix
    ImageKind kind = ImageKind::directory;
    std::vector<Runtime> candidates; // empty: the site's default runtime
    bool explicit_runtime = false;   // RUNTIME:IMAGE
    bool is_path() const { return kind == ImageKind::sif || kind == ImageKind::squashfs || kind == ImageKind::directory; }
};

// Pure. `is_directory` says whether the image path names a directory (the caller looks).
// Throws aihpc::Error when nothing tells the runtime.
ImageRef classify_image(const std::string& text, bool is_directory);

// Pure. Picks the runtime for `ref` under the site's container_runtimes,
// container_default and registry keys. `installed` says whether a runtime's program is
// on this node; at submit nobody knows, so pass a function that says yes. Among allowed
// candidates, container_default wins, then the first installed one, then the first one
// (so that a later error names it). Throws aihpc::Error naming the refused runtime.
Runtime choose_runtime(const ImageRef& ref, const config::SiteConfig& site,
                       const std::function<bool(Runtime)>& installed);

// Pure. True when `path` is one of `dirs` or lies below one of them.
bool path_is_under(const std::string& path, const std::vector<std::string>& dirs);

// Pure. A relative image path is taken from `base` (the submit dir).
std::string absolute_image_path(const std::string& image, const std::string& base);

struct ResolvedImage {
    ImageRef ref;
    Runtime runtime = Runtime::charliecloud;
    std::string location;   // real path for path kinds, else the reference
};

// Acting: resolves the image against `base`, checks that it exists and lies under
// image_allow (by real path), and chooses its runtime. Used at submit (installed: any)
// and on the node. Throws aihpc::Error with the reason and what to do.
ResolvedImage check_image(const std::string& text, const config::SiteConfig& site, const std::string& base,
                          const std::function<bool(Runtime)>& installed);

// The directories where runtimes are looked up: runtime_path, else `process_path`
// (slurmd's PATH, never the job's).
std::vector<std::string> runtime_search_path(const config::SiteConfig& site, const char* process_path);

// Acting: the first executable regular file `program` in `dirs` (common/paths.hpp).
using aihpc::find_program;

}  // namespace aihpc::container
