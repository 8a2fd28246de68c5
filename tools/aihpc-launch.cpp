// aihpc-launch: runs one Slurm task inside its container.
//
// The plugin puts this program in the task's argv[0] (Slurm 22.05 to 23.02, whose task
// argv is the step's array) or in front of argv (spank_prepend_task_argv, Slurm 23.11+),
// and the request in AIHPC_LAUNCH_REQUEST. Slurm then finishes the task's setup as for
// any task (TaskProlog and its variables, TMPDIR, resource limits, later plugins) and
// execs this program as the job's user, which execs the runtime in its own place: the
// runtime's exit status is the task's.
#include <pwd.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/text.hpp"
#include "config.h"
#include "container/digest.hpp"
#include "container/launch.hpp"

extern char** environ;

using namespace aihpc;
using namespace aihpc::container;

namespace {

// The descriptors an MPI library hands its ranks by number in the environment: the
// PMI-2 wire-up socket that Slurm's mpi/pmi2 (and MPICH's and Intel MPI's launchers)
// pass in PMI_FD. PMIx reaches its server by a socket path, not a descriptor.
std::vector<int> descriptors_named_in_env(const std::vector<std::string>& env) {
    std::vector<int> keep;
    for (const std::string& entry : env) {
        for (const char* name : {"PMI_FD=", "PMI_CONTROL_FD="}) {
            if (!entry.starts_with(name)) continue;
            auto fd = parse_uint(entry.substr(std::strlen(name)));
            if (fd && *fd > 2 && *fd < (1u << 20)) keep.push_back(static_cast<int>(*fd));
        }
    }
    return keep;
}

// Marks every descriptor above stderr close-on-exec, but those in `keep`: close_range
// where the kernel has CLOSE_RANGE_CLOEXEC (5.11), else one fcntl per entry of
// /proc/self/fd.
void close_inherited_descriptors(std::vector<int> keep) {
    std::sort(keep.begin(), keep.end());
#if defined(HAVE_CLOSE_RANGE) && defined(CLOSE_RANGE_CLOEXEC)
    unsigned from = 3;
    bool ranges_done = true;
    for (int fd : keep) {
        if (static_cast<unsigned>(fd) > from && ::close_range(from, static_cast<unsigned>(fd) - 1, CLOSE_RANGE_CLOEXEC) != 0)
            ranges_done = false;
        from = static_cast<unsigned>(fd) + 1;
    }
    if (ranges_done && ::close_range(from, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return;
#endif
    UniqueFd fds(::open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fds) throw SystemError("cannot list the open descriptors in /proc/self/fd", errno);
    DIR* dir = ::fdopendir(fds.get());
    if (!dir) throw SystemError("cannot list the open descriptors in /proc/self/fd", errno);
    fds.release();  // the DIR owns it now
    std::unique_ptr<DIR, int (*)(DIR*)> owned(dir, ::closedir);
    const int listing = ::dirfd(dir);
    while (struct dirent* entry = ::readdir(dir)) {
        auto fd = parse_uint(entry->d_name);
        if (!fd || *fd <= 2 || static_cast<int>(*fd) == listing) continue;
        if (std::binary_search(keep.begin(), keep.end(), static_cast<int>(*fd))) continue;
        int flags = ::fcntl(static_cast<int>(*fd), F_GETFD);
        if (flags >= 0) ::fcntl(static_cast<int>(*fd), F_SETFD, flags | FD_CLOEXEC);
    }
}


constexpr const char* usage =
    "Usage: aihpc-launch [ARG...]\n"
    "Runs a Slurm task inside its container. The aihpc plugin starts it in place of the\n"
    "task's command, with the request in $AIHPC_LAUNCH_REQUEST; it is not meant to be run\n"
    "by hand. It execs the container runtime (apptainer, singularity, ch-run, enroot or\n"
    "podman) with the task's command, environment and working directory.\n"
    "\n"
    "  --help      show this help\n"
    "  --version   show the version\n"
    "\n"
    "Exit status: the task's, once the runtime runs; 1 if it cannot be started; 2 on a\n"
    "usage error. See aihpc(8), section CONTAINERS.\n";

std::vector<std::string> current_env() {
    std::vector<std::string> env;
    for (char** e = environ; e && *e; ++e) env.emplace_back(*e);
    return env;
}

std::vector<char*> c_strings(std::vector<std::string>& words) {
    std::vector<char*> out;
    for (std::string& w : words) out.push_back(w.data());
    out.push_back(nullptr);
    return out;
}

int run(int argc, char** argv) {
    const char* encoded = std::getenv(launch_env_var);
    if (!encoded) {
        if (argc == 2 && std::strcmp(argv[1], "--help") == 0) {
            std::fputs(usage, stdout);
            return 0;
        }
        if (argc == 2 && std::strcmp(argv[1], "--version") == 0) {
            std::printf("aihpc-launch %s\n", PACKAGE_VERSION);
            return 0;
        }
        std::fprintf(stderr, "aihpc-launch: no %s in the environment; the aihpc plugin starts this program\n%s",
                     launch_env_var, usage);
        return 2;
    }
    LaunchRequest request = decode_request(encoded);
    // The runtimes are unprivileged by design here; a root task would give the job root
    // inside an image the user controls.
    if (::geteuid() == 0 || ::getuid() == 0)
        throw Error("refusing to start a container runtime as root; containers run as the job's user");

    TaskView task;
    if (request.argv0) task.argv.push_back(*request.argv0);
    for (int i = 1; i < argc; ++i) task.argv.emplace_back(argv[i]);
    task.env = current_env();
    env_unset(task.env, launch_env_var);
    // ch-run needs $USER; a job submitted without one still has a user.
    if (!env_get(task.env, "USER"))
        if (const passwd* pw = ::getpwuid(::getuid())) env_set(task.env, "USER", pw->pw_name);
    char cwd[4096];
    if (::getcwd(cwd, sizeof cwd)) task.cwd = cwd;
    task.exists_on_host = [](const std::string& relative) {
        struct stat st;
        return ::stat(relative.c_str(), &st) == 0;  // relative to our working directory, the task's
    };
    task.gpus = detect_gpus(task.env);

    const std::string image_root = request.image;
    RuntimeCommand command = build_runtime_command(request, task, [&](const std::string& path) {
        return path_kind_in_image(image_root, path);
    });
    for (const std::string& warning : command.warnings) std::fprintf(stderr, "aihpc: warning: %s\n", warning.c_str());
    if (request.verbose) {
        std::vector<std::string> quoted;
        for (const std::string& w : command.argv) quoted.push_back(shell_quote(w));
        std::fprintf(stderr, "aihpc: container: %s\n", join(quoted, " ").c_str());
    }
    std::fflush(nullptr);
    // Descriptors Slurm or a TaskProlog left open do not belong in the container; those
    // the MPI library was handed do (PMI_FD), or its ranks could not wire up.
    close_inherited_descriptors(descriptors_named_in_env(command.env));
    std::vector<char*> c_argv = c_strings(command.argv);
    std::vector<char*> c_env = c_strings(command.env);
    ::execve(command.argv[0].c_str(), c_argv.data(), c_env.data());
    throw SystemError("cannot start the container runtime " + command.argv[0], errno);
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "aihpc-launch: %s\n", e.what());
        return 1;
    }
}
