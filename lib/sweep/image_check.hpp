// The --aihpc-* options and container images a sweep's arrays would ask for, checked
// before anything is queued.
// Apart from submit_plan, so that only what checks images links the container module.
#pragma once
#include <string>
#include <vector>

#include "sweep/submit_plan.hpp"
#include "sweep/sweep_dir.hpp"

namespace aihpc::sweep {

// For each --aihpc-container among sbatch words: the plugin's own reading of the image
// (container::classify_image), and, for an image that is a path (a .sif or .sqsh file,
// an image directory), that it exists, a relative path taken from `base` (the submit
// dir), as sbatch checks it at submit. Throws aihpc::Error naming `where` and the image.
void check_container_images(const std::vector<std::string>& words, const std::string& where, const std::string& base);

// The --aihpc-* words each phase's arrays would get, read by the plugin's own parser
// (check_aihpc_options), and their images checked as above, `base` the submit dir.
void check_phase_options(const SweepDir& sweep, const SubmitOptions& options, const std::string& base);

}  // namespace aihpc::sweep
