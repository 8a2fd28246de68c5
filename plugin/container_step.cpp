// Containers in the plugin: contexts and users are given at each function in
// capabilities.hpp. Detection, policy and argv building live in lib/container.
//
// How a task enters its container: task_init (as the user, in the task, before Slurm
// runs TaskProlog, makes TMPDIR and sets the resource limits) puts aihpc-launch where
// Slurm will exec the task's command, and the request in AIHPC_LAUNCH_REQUEST. On Slurm
// 23.11+ that is spank_prepend_task_argv. On 22.05 to 23.02 the argv that S_JOB_ARGV
// hands back is the array the task is exec'd from (slurmstepd_job.c), so argv[0] is
// replaced and its old value travels in the request. Slurm then finishes its setup
// exactly as for a task outside, and aihpc-launch execs the runtime in its own place.
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
#include "container/digest.hpp"
#include "container/digest_cache.hpp"
#include "container/image.hpp"
#include "container/launch.hpp"
#include "plugin/capabilities.hpp"
#include "stage/node_layout.hpp"

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
};

std::optional<StepContainer>& step_container() {
    static std::optional<StepContainer> value;
    return value;
}

// The user's digests directory (LOCAL_ROOT/cache/<uid>/digests), or why there is none:
// root makes cache/<uid> in init_post_opt, the user makes digests/ below it.
struct DigestCachePlace {
    std::string dir;
    std::string problem;
};

DigestCachePlace& digest_cache_place() {
    static DigestCachePlace value;
    return value;
}

bool runs_inside(const PluginState& st) {
    if (st.options.container.empty() || st.step.step_id == extern_step_id) return false;
    // scope=steps: the batch script stays on the host; its srun steps inherit the option.
    return !(st.step.is_batch_step && st.options.container_scope == config::ContainerScope::steps);
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

#if !HAVE_DECL_SPANK_PREPEND_TASK_ARGV
// Slurm 22.05 to 23.02: the task is exec'd from the step's argv array, so the launcher
// goes into argv[0]. Checked before anything changes; the version guard keeps this off
// the Slurm versions where that is not so.
char** step_argv(const Spank& spank) {
    auto major = parse_uint(spank.str(S_SLURM_VERSION_MAJOR).value_or(""));
    auto minor = parse_uint(spank.str(S_SLURM_VERSION_MINOR).value_or(""));
    if (!major || !minor ||
        !container::task_argv_is_step_argv(static_cast<unsigned>(*major), static_cast<unsigned>(*minor)))
        throw Error("--aihpc-container: this Slurm (" + spank.str(S_SLURM_VERSION).value_or("unknown version") +
                    ") cannot start tasks in containers through aihpc; rebuild aihpc against its headers");
    int argc = 0;
    char** argv = nullptr;
    if (spank_get_item(spank.handle(), S_JOB_ARGV, &argc, &argv) != ESPANK_SUCCESS || !argv || argc < 1 || !argv[0])
        throw Error("--aihpc-container: the task has no command to run in the container");
    return argv;
}
#endif

}  // namespace

void container_check_at_submit(const config::UserOptions& options, const config::SiteConfig& site) {
    if (options.container.empty()) return;
    char cwd[PATH_MAX];
    std::string base = ::getcwd(cwd, sizeof cwd) ? cwd : "";
    // Which runtimes a node has is unknown here: only the site's list is enforced.
    container::check_image(options.container, site, base, [](container::Runtime) { return true; });
}

void container_step_init(const Spank& /*spank*/, PluginState& st) {
    DigestCachePlace& place = digest_cache_place();
    place = {};
    if (!runs_inside(st)) return;
    const StepInfo& step = st.step;
    std::string local_root = st.site.local_root_for(step.node_name);
    std::string user_dir = stage::job_layout(local_root, step.job_id, step.uid).cache_dir;
    // Only the directories: the image is read later, as the user, so that the user's
    // read permission decides. Without them the digest is computed, never refused.
    try {
        if (step.uid == 0) throw Error("root's steps keep no digest cache");
        UniqueFd root = stage::open_local_root(local_root, true);
        UniqueFd cache = stage::root_dir_at(root.get(), "cache", local_root + "/cache");
        stage::user_dir_at(cache.get(), std::to_string(step.uid), step.uid, step.gid, user_dir);
        place.dir = user_dir + "/digests";
    } catch (const Error& e) {
        place.problem = e.what();
    }
}

void container_user_init(const Spank& /*spank*/, PluginState& st) {
    step_container().reset();
    if (!runs_inside(st)) return;
    StepContainer sc;
    std::vector<std::string> dirs = container::runtime_search_path(st.site, std::getenv("PATH"));
    auto installed = [&](container::Runtime r) {
        return container::find_program(container::runtime_program(r), dirs).has_value();
    };
    sc.image = container::check_image(st.options.container, st.site, st.step.submit_dir, installed);
    const char* program = container::runtime_program(sc.image.runtime);
    auto found = container::find_program(program, dirs);
    if (!found)
        throw Error("--aihpc-container: the container runtime " + std::string(program) + " (" +
                    container::runtime_name(sc.image.runtime) + ", for " + sc.image.location +
                    ") is not installed on node " + st.step.node_name + ": not found in " +
                    (st.site.runtime_path.empty() ? "slurmd's PATH " : "runtime_path=") + join(dirs, ":") +
                    "; ask the site to install it, or name another runtime as RUNTIME:IMAGE");
    sc.program = *found;
    container::DigestCacheSettings cache;
    cache.dir = digest_cache_place().dir;
    auto [digest, origin] = container::image_digest(sc.image, cache, digest_cache_place().problem);
    sc.digest = std::move(digest);
    sc.launcher = find_launcher();
    st.note("container: " + std::string(container::runtime_name(sc.image.runtime)) + " " + sc.image.location + " " +
            sc.digest + " (" + origin + ")");
    step_container() = std::move(sc);
}

void container_task_init(const Spank& spank, PluginState& st) {
    if (!step_container()) return;
    const StepContainer& sc = *step_container();
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
#if HAVE_DECL_SPANK_PREPEND_TASK_ARGV
    if (!spank.setenv(container::launch_env_var, container::encode_request(request)))
        throw Error("--aihpc-container: cannot pass the container request to the task");
    const char* launcher_argv[] = {sc.launcher.c_str()};
    if (spank_prepend_task_argv(spank.handle(), 1, launcher_argv) != ESPANK_SUCCESS)
        throw Error("--aihpc-container: Slurm refused to start the task through aihpc-launch");
#else
    char** argv = step_argv(spank);
    request.argv0 = argv[0];
    char* launcher = ::strdup(sc.launcher.c_str());
    if (!launcher) throw Error("out of memory while starting the container");
    if (!spank.setenv(container::launch_env_var, container::encode_request(request))) {
        std::free(launcher);
        throw Error("--aihpc-container: cannot pass the container request to the task");
    }
    // The array is Slurm's, in this task's own memory; the task execs right after.
    argv[0] = launcher;
#endif
}

}  // namespace aihpc::plugin
