// The container images a sweep's arrays would ask for, checked before anything is queued.
// Apart from submit_plan, so that only what checks images links the container module.
#pragma once
#include <string>
#include <vector>

namespace aihpc::sweep {

// For each --aihpc-container among sbatch words: the plugin's own reading of the image
// (container::classify_image), and, for an image that is a path (a .sif or .sqsh file,
// an image directory), that it exists, a relative path taken from `base` (the submit
// dir), as sbatch checks it at submit. Throws aihpc::Error naming `where` and the image.
void check_container_images(const std::vector<std::string>& words, const std::string& where, const std::string& base);

}  // namespace aihpc::sweep
