// The runtime command line for one task: a pure function of what the plugin decided
// (LaunchRequest), what the task looks like when Slurm is about to exec it (TaskView),
// and, for charliecloud, which mount points the image has.
//
// What each runtime gets:
//   apptainer, singularity: `exec`; the environment passes through as the runtime does
//     by default (no --cleanenv), --bind SRC:DST[:ro], --pwd, --nv or --rocm.
//   charliecloud: ch-run passes the environment through; -b SRC:DST (DST must exist in
//     the read-only image, so missing ones are moved to /mnt/aihpc or /mnt/0-9 and the
//     AIHPC_STAGE_DIR/AIHPC_DATA_* values follow); --cd; TMPDIR=/tmp, where ch-run puts
//     the host's $TMPDIR. GPUs: /dev is the host's; libraries come from ch-fromhost.
//   enroot: `start`, --env NAME for each job variable, --mount SRC:DST:FLAGS,
//     NVIDIA_VISIBLE_DEVICES for enroot's NVIDIA hook; no working-directory option, so
//     the image's /bin/sh changes to it (`sh -c 'cd "$1" && shift && exec "$@"'`).
//   podman: `run --rm -i --network=host --userns=keep-id`, --env NAME for each job
//     variable, -v SRC:DST[:ro], -w, CDI devices nvidia.com/gpu=N or /dev/kfd,/dev/dri.
// Every runtime starts the task in its working directory when a mount shows it inside
// (apptainer mounts it itself); else charliecloud, enroot and podman warn, naming it,
// when the command names a file there.
// PATH, LD_LIBRARY_PATH, LD_PRELOAD and HOME stay the image's for enroot and podman:
// the host's values point at host paths.
// Staged data: the node's local_root (the stage root) is bound whole, not the stage
// dir, because a cached item is a relative link jobs/<jobid>/NAME ->
// ../../cache/<uid>/entries/<key>/data that must resolve inside too. Other users' dirs
// below it are 0700 and stay unreadable, as the container runs as the job's user.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "config/user_options.hpp"
#include "container/image.hpp"

namespace aihpc::container {

// What the plugin decides in slurmstepd, handed to aihpc-launch in the task's env.
struct LaunchRequest {
    Runtime runtime = Runtime::charliecloud;
    std::string program;                        // absolute path of the runtime's program
    std::string image;                          // real path, or the reference
    ImageKind kind = ImageKind::directory;
    std::vector<config::ContainerMount> binds;  // --aihpc-container-bind
    // The node's local_root, holding jobs/ and cache/, when the task has a stage dir;
    // bound at its own path (charliecloud: /mnt/aihpc when the image lacks it).
    std::optional<std::string> stage_root;
    bool batch_script = false;                  // the command is the batch script in slurmd's spool
    std::optional<std::string> argv0;           // set when Slurm's argv[0] was replaced by the launcher
    bool verbose = false;
};

// The file a sweep task writes its metrics to (aihpc-sweep sets it on the host): its
// directory is bound into the container and the variable names it inside.
inline constexpr const char* metrics_file_var = "AIHPC_METRICS_FILE";

// The environment variable that carries a LaunchRequest to aihpc-launch.
inline constexpr const char* launch_env_var = "AIHPC_LAUNCH_REQUEST";

std::string encode_request(const LaunchRequest& request);
LaunchRequest decode_request(const std::string& text);  // throws aihpc::Error

struct GpuSet {
    enum class Vendor { none, nvidia, amd } vendor = Vendor::none;
    std::vector<std::string> devices;   // physical indices (or UUIDs) as Slurm gave them
};

// Pure: the task's GPUs, from Slurm's variables (SLURM_STEP_GPUS, SLURM_JOB_GPUS) and
// CUDA_VISIBLE_DEVICES or ROCR_VISIBLE_DEVICES.
GpuSet detect_gpus(const std::vector<std::string>& env);

// The task as Slurm would exec it.
struct TaskView {
    std::vector<std::string> argv;
    std::vector<std::string> env;   // NAME=VALUE
    std::string cwd;
    GpuSet gpus;
    // Whether a path relative to cwd names a file on the host: a command word that does
    // is one the task will not find when cwd is not in the container. Empty: not asked.
    std::function<bool(const std::string& relative_path)> exists_on_host;
};

enum class PathKind { none, directory, file };
// Says what a path is inside the image (charliecloud only).
using ImageProbe = std::function<PathKind(const std::string& path_in_image)>;

struct RuntimeCommand {
    std::vector<std::string> argv;   // argv[0] is the runtime's program
    std::vector<std::string> env;
    // What the task should know before it starts, such as a working directory the
    // container cannot see (full sentences, without the aihpc: prefix).
    std::vector<std::string> warnings;
};

// Pure. Throws aihpc::Error when the runtime cannot honour the request (a charliecloud
// bind target missing from the image, no free mount point).
RuntimeCommand build_runtime_command(const LaunchRequest& request, const TaskView& task, const ImageProbe& probe);

// Pure: from a plugin at `plugin_path`, where aihpc-launch may be, in order: the build
// tree (plugin/.libs/aihpc.so -> tools/aihpc-launch), then `installed_path`.
std::vector<std::string> launcher_candidates(const std::string& plugin_path, const std::string& installed_path);
// Where `make install` puts aihpc-launch ($(pkglibexecdir)/aihpc-launch).
const char* installed_launcher_path();

// Pure: whether this Slurm's task argv is the step's argv array (so that replacing
// argv[0] from task_init changes what Slurm execs). Checked on 20.11 to 23.02.
bool task_argv_is_step_argv(unsigned major, unsigned minor);

// Env helpers (pure).
std::optional<std::string> env_get(const std::vector<std::string>& env, const std::string& name);
void env_set(std::vector<std::string>& env, const std::string& name, const std::string& value);
void env_unset(std::vector<std::string>& env, const std::string& name);

}  // namespace aihpc::container
