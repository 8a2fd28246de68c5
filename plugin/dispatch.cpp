// The exported SPANK hooks. Each one catches everything: no exception may cross into
// Slurm, and a plugin fault must never take slurmstepd or slurmd down. Hooks route by
// spank_context() to one file per context (submit.cpp, slurmstepd.cpp, job_script.cpp).
//
// Return values: -1 (never a positive ESPANK code) only where failing is safe and
// wanted: at submit time, and in task_init, which fails one task. Remote init,
// init_post_opt and user_init always return 0, since a failure there on a batch job
// drains the node; their errors are deferred to task_init.
#include <exception>
#include <string>

#include "common/error.hpp"
#include "config/site_config.hpp"
#include "plugin/hooks.hpp"
#include "plugin/options.hpp"
#include "plugin/plugin_state.hpp"

extern "C" {
// Declared extern "C" before SPANK_PLUGIN defines them: in C++ a const global has
// internal linkage, and Slurm would not find the symbols.
extern const char plugin_name[];
extern const char plugin_type[];
extern const unsigned int plugin_version;
extern const unsigned int spank_plugin_version;
SPANK_PLUGIN(aihpc, 1)
}

namespace aihpc::plugin {
namespace {

bool is_remote(const Spank& spank) { return spank.context() == S_CTX_REMOTE; }

// Runs a hook body; turns any exception into an aihpc: message. In contexts where a
// failure must not be returned, it is deferred instead.
template <typename Body>
int guarded(const char* hook, bool may_fail, Body&& body) {
    try {
        return body();
    } catch (const std::exception& e) {
        std::string message = std::string("aihpc: ") + e.what();
        if (!may_fail) {
            state().defer(e.what());
            slurm_error("%s (in %s; deferred to task start)", message.c_str(), hook);
            return 0;
        }
        slurm_error("%s", message.c_str());
    } catch (...) {
        if (!may_fail) {
            state().defer(std::string("internal error in ") + hook);
            slurm_error("aihpc: internal error in %s (deferred to task start)", hook);
            return 0;
        }
        slurm_error("aihpc: internal error in %s", hook);
    }
    return -1;
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
    bool remote = is_remote(spank);
    return guarded("init", true, [&] {
        try {
            state().site = aihpc::config::parse_site_config(to_args(ac, av));
        } catch (const aihpc::Error& e) {
            std::string message = std::string("plugstack.conf: ") + e.what();
            if (remote) {
                state().site_error = message;
                slurm_error("aihpc: %s", message.c_str());
            } else if (spank.context() == S_CTX_LOCAL || spank.context() == S_CTX_ALLOCATOR) {
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
        return guarded("init_post_opt", true, [&] { submit_init_post_opt(spank); return 0; });
    case S_CTX_REMOTE:
        return guarded("init_post_opt", false, [&] { step_init_post_opt(spank); return 0; });
    default:
        return 0;
    }
}

int slurm_spank_local_user_init(spank_t sp, int, char**) {
    Spank spank(sp);
    if (spank.context() != S_CTX_LOCAL) return 0;
    return guarded("local_user_init", true, [&] { submit_local_user_init(spank); return 0; });
}

int slurm_spank_user_init(spank_t sp, int, char**) {
    Spank spank(sp);
    if (!is_remote(spank)) return 0;
    return guarded("user_init", false, [&] { step_user_init(spank); return 0; });
}

int slurm_spank_task_init(spank_t sp, int, char**) {
    Spank spank(sp);
    if (!is_remote(spank)) return 0;
    return guarded("task_init", true, [&] { return step_task_init(spank); });
}

int slurm_spank_task_exit(spank_t sp, int, char**) {
    Spank spank(sp);
    if (!is_remote(spank)) return 0;
    return guarded("task_exit", false, [&] { step_task_exit(spank); return 0; });
}

// Slurm 22.05 runs no slurm_spank_init before the epilog, so the site keys are read here.
int slurm_spank_job_epilog(spank_t sp, int ac, char** av) {
    Spank spank(sp);
    guarded("job_epilog", false, [&] {
        state().site = aihpc::config::parse_site_config(to_args(ac, av));
        job_epilog(spank);
        return 0;
    });
    return 0;
}

}  // extern "C"
