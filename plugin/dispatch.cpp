// The exported SPANK hooks. Each one catches everything: no exception may cross into
// Slurm, and a plugin fault must never take slurmstepd or slurmd down. Hooks route by
// spank_context() to one file per context (submit.cpp, slurmstepd.cpp, job_script.cpp).
//
// Return values: -1 (never a positive ESPANK code) only where failing is safe and
// wanted: at submit time, and in task_init, which fails one task. Remote init,
// init_post_opt and user_init return 0, since a failure there on a batch job drains the
// node; their errors are deferred to task_init. On Slurm 25.05 and later, which reads
// slurm_spank_init_failure_mode, a remote init that cannot read the site's keys fails
// the job at once and leaves the node up. 25.05 also counts any non-zero return of a
// hook as an error: these hooks return only 0 or -1, so nothing else changes.
#include "config.h"

#include <exception>
#include <string>

#include "common/error.hpp"
#include "config/site_config.hpp"
#include "plugin/hooks.hpp"
#include "plugin/options.hpp"
#include "plugin/plugin_state.hpp"
#include "plugin/slurm_release_check.hpp"

// The plugin is built with -fvisibility=hidden: the hooks and the plugin identity below
// are the only symbols Slurm may see (the linker version script says the same).
#pragma GCC visibility push(default)

extern "C" {
// Declared extern "C" before SPANK_PLUGIN defines them: in C++ a const global has
// internal linkage, and Slurm would not find the symbols.
extern const char plugin_name[];
extern const char plugin_type[];
extern const unsigned int plugin_version;
extern const unsigned int spank_plugin_version;
SPANK_PLUGIN(aihpc, 1)
#if HAVE_DECL_SLURM_SPANK_INIT_FAILURE_MODE
// Slurm 25.05 and later: a failing slurm_spank_init fails the job, not the node. Before,
// a failure there drained a batch job's node, so the error waits for task_init instead.
int slurm_spank_init_failure_mode = ESPANK_JOB_FAILURE;
#endif
}

namespace aihpc::plugin {
namespace {

bool is_remote(const Spank& spank) { return spank.context() == S_CTX_REMOTE; }

#if HAVE_DECL_SLURM_SPANK_INIT_FAILURE_MODE
constexpr bool init_failure_fails_the_job = true;
#else
constexpr bool init_failure_fails_the_job = false;
#endif

// What a hook does with an error: fail the command (srun, sbatch: nothing is queued);
// defer it to task_init (slurmstepd before the tasks: failing there drains the node on a
// batch job); or only log it (after the tasks, and in the epilog, where nobody is left to
// tell and failing would drain the node).
enum class OnError { fail, defer, log };

// Runs a hook body; no exception of any kind crosses into Slurm.
template <typename Body>
int guarded(const char* hook, OnError on_error, Body&& body) {
    std::string reason;
    try {
        return body();
    } catch (const std::exception& e) {
        reason = e.what();
    } catch (...) {
        reason = std::string("internal error in ") + hook;
    }
    switch (on_error) {
    case OnError::fail:
        slurm_error("aihpc: %s", reason.c_str());
        return -1;
    case OnError::defer:
        state().defer(reason);
        slurm_error("aihpc: %s (in %s; reported when the tasks start)", reason.c_str(), hook);
        return 0;
    case OnError::log:
        slurm_error("aihpc: %s (in %s)", reason.c_str(), hook);
        return 0;
    }
    return 0;
}

bool fails_at_submit(const Spank& spank) {
    return spank.context() == S_CTX_LOCAL || spank.context() == S_CTX_ALLOCATOR;
}

std::vector<std::string> to_args(int ac, char** av) {
    std::vector<std::string> args;
    for (int i = 0; i < ac; ++i) args.emplace_back(av[i]);
    return args;
}

}  // namespace
}  // namespace aihpc::plugin

using namespace aihpc::plugin;

extern "C" {

// Every context, once per process. The site config is parsed here, so a bad key makes
// the plugin refuse to load at submit; on a node the error is deferred to task_init.
int slurm_spank_init(spank_t sp, int ac, char** av) {
    Spank spank(sp);
    if (refuse_other_slurm_release(spank) != 0) return -1;
    bool remote = is_remote(spank);
    // Only srun and sbatch may fail here; on a node an error is kept for task_init.
    return guarded("init", fails_at_submit(spank) ? OnError::fail : (remote ? OnError::defer : OnError::log), [&] {
        try {
            state().site_args = to_args(ac, av);
            state().site = aihpc::config::parse_site_config(state().site_args);
        } catch (const aihpc::Error& e) {
            std::string message = std::string("plugstack.conf: ") + e.what();
            if (remote && init_failure_fails_the_job) {
                slurm_error("aihpc: %s; the job fails, and this node stays up", message.c_str());
                return -1;
            } else if (remote) {
                state().site_error = message;
                slurm_error("aihpc: %s", message.c_str());
            } else if (fails_at_submit(spank)) {
                slurm_error("aihpc: %s; the plugin refuses to load until the site config is fixed", message.c_str());
                return -1;
            } else {
                // slurmd and job_script contexts: never fail (a failing epilog drains).
                slurm_error("aihpc: %s", message.c_str());
            }
        }
        switch (spank.context()) {
        case S_CTX_LOCAL:
        case S_CTX_ALLOCATOR:
        case S_CTX_REMOTE:
            return remote ? (register_options(spank), 0) : register_options(spank);
        default:
            return 0;
        }
    });
}

int slurm_spank_init_post_opt(spank_t sp, int, char**) {
    Spank spank(sp);
    switch (spank.context()) {
    case S_CTX_LOCAL:
    case S_CTX_ALLOCATOR:
        return guarded("init_post_opt", OnError::fail, [&] { submit_init_post_opt(spank); return 0; });
    case S_CTX_REMOTE:
        return guarded("init_post_opt", OnError::defer, [&] { step_init_post_opt(spank); return 0; });
    default:
        return 0;
    }
}

int slurm_spank_local_user_init(spank_t sp, int, char**) {
    Spank spank(sp);
    if (spank.context() != S_CTX_LOCAL) return 0;
    return guarded("local_user_init", OnError::fail, [&] { submit_local_user_init(spank); return 0; });
}

int slurm_spank_user_init(spank_t sp, int, char**) {
    Spank spank(sp);
    if (!is_remote(spank)) return 0;
    return guarded("user_init", OnError::defer, [&] { step_user_init(spank); return 0; });
}

int slurm_spank_task_init(spank_t sp, int, char**) {
    Spank spank(sp);
    if (!is_remote(spank)) return 0;
    return guarded("task_init", OnError::fail, [&] { return step_task_init(spank); });
}

int slurm_spank_task_exit(spank_t sp, int, char**) {
    Spank spank(sp);
    if (!is_remote(spank)) return 0;
    return guarded("task_exit", OnError::log, [&] { step_task_exit(spank); return 0; });
}

int slurm_spank_exit(spank_t sp, int, char**) {
    Spank spank(sp);
    if (!is_remote(spank)) return 0;
    return guarded("exit", OnError::log, [&] { step_exit(spank); return 0; });
}

// Slurm 22.05 runs no slurm_spank_init before the epilog, so the site keys are read here.
int slurm_spank_job_epilog(spank_t sp, int ac, char** av) {
    Spank spank(sp);
    guarded("job_epilog", OnError::log, [&] {
        state().site_args = to_args(ac, av);
        state().site = aihpc::config::parse_site_config(state().site_args);
        job_epilog(spank);
        return 0;
    });
    return 0;
}

}  // extern "C"

#pragma GCC visibility pop
