// Running a short external command (git, scontrol, sbatch, mksquashfs) and capturing its
// output.
#pragma once
#include <string>
#include <vector>

namespace aihpc {

struct CommandOutput {
    int status = -1;  // exit status; 128+N if killed by signal N; 127 if it could not run
    std::string out;
    std::string err;
};

// Runs argv (looked up on PATH) with stdin from /dev/null and no other descriptor of
// the caller; waits for it.
CommandOutput capture_output(const std::vector<std::string>& argv);

}  // namespace aihpc
