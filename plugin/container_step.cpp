// Containers in the plugin: contexts and users are given at each function in
// capabilities.hpp. Detection, policy and argv building live in lib/container.
//
// How a task enters its container: task_init (as the user, in the task, before Slurm
// runs TaskProlog, makes TMPDIR and sets the resource limits) puts aihpc-launch in front
// of the task's command (plugin/task_argv.hpp), with the request in
// AIHPC_LAUNCH_REQUEST. Slurm then finishes its setup exactly as for a task outside,
// and aihpc-launch execs the runtime in its own place.
//
// aihpc-launch is looked for beside the plugin (the build tree's plugin/.libs/aihpc.so
// finds tools/aihpc-launch), then at the installed $(pkglibexecdir)/aihpc-launch.
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <optional>
#include <utility>

#include "config.h"
#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/text.hpp"
#include "container/digest_cache.hpp"
#include "container/image.hpp"
#include "container/launch.hpp"
#include "plugin/capabilities.hpp"
#include "plugin/node_work.hpp"
#include "plugin/task_argv.hpp"

namespace aihpc::plugin {

namespace {

// Slurm's reserved step ids (slurm.h), which spank.h does not carry.
constexpr std::uint32_t extern_step_id = 0xfffffffc;

// Decided once per step per node in user_init; the forked tasks inherit it.
struct StepContainer {
    container::ResolvedImage image;
    std::string program;
    std::string digest;
    std::string launcher;
    // The batch script of --aihpc-container-scope=steps: it stays on the host and is
    // told the image its steps run in (aihpc-sweep records it), but enters nothing.
    bool host_batch = false;
};

std::optional<StepContainer>& step_container() {
    static std::optional<StepContainer> value;
    return value;
}

bool runs_inside(const PluginState& st) {
    if (st.options.container.empty() || st.step.step_id == extern_step_id) return false;
    // scope=steps: the batch script stays on the host; its srun steps inherit the option.
    return !(st.step.is_batch_step && st.options.container_scope == config::ContainerScope::steps);
}

bool host_batch_of_steps(const PluginState& st) {
    return !st.options.container.empty() && st.step.is_batch_step &&
           st.options.container_scope == config::ContainerScope::steps;
}

std::string plugin_path() {
    Dl_info info{};
    if (::dladdr(reinterpret_cast<void*>(&runs_inside), &info) == 0 || !info.dli_fname) return "";
    return info.dli_fname;
}

std::string find_launcher() {
    std::vector<std::string> tried;
    for (const std::string& candidate :
         container::launcher_candidates(plugin_path(), container::installed_launcher_path())) {
        char real[PATH_MAX];
        if (::realpath(candidate.c_str(), real) && ::faccessat(AT_FDCWD, real, X_OK, AT_EACCESS) == 0) return real;
        tried.push_back(candidate);
    }
    throw Error("the container launcher aihpc-launch is missing (looked at " + join(tried, ", ") +
                "); reinstall aihpc on this node");
}

}  // namespace

void container_check_at_submit(const config::UserOptions& options, const config::SiteConfig& site) {
    if (options.container.empty()) return;
    char cwd[PATH_MAX];
    std::string base = ::getcwd(cwd, sizeof cwd) ? cwd : "";
    // Which runtimes a node has is unknown here: only the site's list is enforced.
    container::check_image(options.container, site, base, [](container::Runtime) { return true; });
}

void container_step_init(const Spank& /*spank*/, PluginState& /*st*/) {}

void container_user_init(const Spank& /*spank*/, PluginState& st) {
    step_container().reset();
    StepContainer sc;
    sc.host_batch = host_batch_of_steps(st);
    if (!runs_inside(st) && !sc.host_batch) return;
    // The image is looked at by aihpc-node alone, as the user: the user's read permission
    // decides, and a FIFO, a hung file system or the user's FUSE mount stalls the helper,
    // which slurmstepd watches, never slurmstepd itself. Root first makes the user's cache
    // directory, where the digest is remembered; a staging step has made it already.
    std::string origin;
    if (st.step.uid != 0 && !stage_step_active()) {
        try {
            node_work(st, "prepare", RunAs::root);
        } catch (const HelperFailed& e) {
            if (e.timed_out()) throw;
            origin = std::string("no digest cache: ") + e.what();
        }
    }
    stage::NodeRequest request = step_request(st);
    request.no_cache = !origin.empty();
    // The host batch script runs no runtime: its steps may land on other nodes.
    request.any_runtime = sc.host_batch;
    container::DigestResult resolved =
        container::parse_digest_result(st.options.container, node_work(st, "digest", RunAs::user, request).result);
    sc.image = resolved.image;
    sc.digest = resolved.digest;
    if (origin.empty()) origin = resolved.provenance;
    std::vector<std::string> dirs = container::runtime_search_path(st.site, std::getenv("PATH"));
    const char* program = container::runtime_program(sc.image.runtime);
    auto found = container::find_program(program, dirs);
    if (!found && !sc.host_batch)
        throw Error("--aihpc-container: the container runtime " + std::string(program) + " (" +
                    container::runtime_name(sc.image.runtime) + ", for " + sc.image.location +
                    ") is not installed on node " + st.step.node_name + ": not found in " +
                    (st.site.runtime_path.empty() ? "slurmd's PATH " : "runtime_path=") + join(dirs, ":") +
                    "; ask the site to install it, or name another runtime as RUNTIME:IMAGE");
    if (found) sc.program = *found;
    if (!sc.host_batch) sc.launcher = find_launcher();
    st.note("container: " + std::string(container::runtime_name(sc.image.runtime)) + " " + sc.image.location + " " +
            sc.digest + " (" + origin + ")");
    step_container() = std::move(sc);
}

void container_task_init(const Spank& spank, PluginState& st) {
    if (!step_container()) return;
    const StepContainer& sc = *step_container();
    if (sc.host_batch) {
        spank.setenv("AIHPC_CONTAINER_IMAGE", sc.image.location);
        spank.setenv("AIHPC_CONTAINER_DIGEST", sc.digest);
        return;
    }
    // task_init runs as the job's user; the runtime must never start as root.
    if (::geteuid() != st.step.uid || ::geteuid() == 0)
        throw Error("--aihpc-container: refusing to start a container as uid " + std::to_string(::geteuid()) +
                    "; containers run as the job's (non-root) user");
    spank.setenv("AIHPC_CONTAINER_IMAGE", sc.image.location);
    spank.setenv("AIHPC_CONTAINER_DIGEST", sc.digest);

    container::LaunchRequest request;
    request.runtime = sc.image.runtime;
    request.program = sc.program;
    request.image = sc.image.location;
    request.kind = sc.image.ref.kind;
    request.binds = st.options.container_binds;
    // The whole local_root goes in: a cached item is a relative link from jobs/<jobid>/
    // into cache/, and both must resolve inside.
    if (stage_step_active()) request.stage_root = st.site.local_root_for(st.step.node_name);
    request.batch_script = st.step.is_batch_step;
    request.verbose = st.options.verbose;
    // On 22.05 the displaced argv[0] travels in the request.
    request.argv0 = put_in_front_of_task(spank, {sc.launcher}, "--aihpc-container");
    if (!spank.setenv(container::launch_env_var, container::encode_request(request)))
        throw Error("--aihpc-container: cannot pass the container request to the task");
}

}  // namespace aihpc::plugin
