// Running a short external command (git, scontrol, sbatch, mksquashfs) and capturing its
// output.
#pragma once
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "common/user_process.hpp"

namespace aihpc {

struct CommandOutput {
    int status = -1;  // exit status; 128+N if killed by signal N; 127 if it could not run
    std::string out;
    std::string err;
    bool timed_out = false;  // killed at CaptureOptions::deadline (status 137)
};

struct CaptureOptions {
    // Run as this user (from root): groups, gid and uid set, checked, and no_new_privs.
    std::optional<UserIds> user;
    int fd3 = -1;  // given to the command as its descriptor 3
    // The longest the command may run (a call to Slurm from an epilog must never hang
    // it); past it the command is killed. Nullopt: no limit.
    std::optional<std::chrono::milliseconds> deadline;
};

// Runs argv (looked up on PATH) with stdin from /dev/null and no other descriptor of
// the caller; waits for it.
CommandOutput capture_output(const std::vector<std::string>& argv);
// Why a command failed, in one line for a message: the last line it wrote on stderr, or
// "PROGRAM exited N" when it wrote none.
std::string failure_line(const CommandOutput& out, const std::string& program);

CommandOutput capture_output_with(const std::vector<std::string>& argv, const CaptureOptions& options);

}  // namespace aihpc
