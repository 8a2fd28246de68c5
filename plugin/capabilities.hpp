// The plugin's capabilities, each in a file of its own (stage_step.cpp, bind_step.cpp,
// container_step.cpp). slurmstepd.cpp, submit.cpp and job_script.cpp call them at fixed
// points; each function says its context and user. Remote functions throw aihpc::Error
// on failure: the caller defers it to task_init (never failing remote init/user_init).
#pragma once
#include "config/site_config.hpp"
#include "config/user_options.hpp"
#include "plugin/plugin_state.hpp"
#include "plugin/spank_api.hpp"

namespace aihpc::plugin {

// ---- staging (stage_step.cpp)
// local/allocator, as the submitting user: sources exist, readable, under stage_allow.
void stage_check_at_submit(const config::UserOptions& options, const config::SiteConfig& site);
// remote user_init, euid = user (aihpc-node stages as the user): stage in, once per
// node per job; fills what stage_task_init exports.
void stage_user_init(const Spank& spank, PluginState& st);
// remote task_init, as the user, in the task: AIHPC_STAGE_DIR, AIHPC_DATA_*, ...
void stage_task_init(const Spank& spank, PluginState& st);
// remote task_init, as the user: for a step with --aihpc-stage-out or
// --aihpc-checkpoint, puts aihpc-node run-task in front of the task's command (after the
// container's launcher). The wrapper takes the task's signals, sends the checkpoint
// signal, requeues the job on the checkpoint's exit status, and stages out as the step's
// last task on the node (task_wrapper.cpp).
void task_wrapper_task_init(const Spank& spank, PluginState& st);
// remote task_exit, as root in slurmstepd, once the node's tasks ended: the stage-out
// that killed tasks could not do (aihpc-node, as the user).
void stage_task_exit(const Spank& spank, PluginState& st);
// remote exit, as root in slurmstepd at the step's end: the cache lease holder ends
// (lease_holder.hpp), stopped or not.
void stage_step_exit(PluginState& st);
// remote, any hook after user_init: whether this step has a stage dir on this node.
bool stage_step_active();
// job_script epilog, as root: remove private copies and the job's stage dir.
void stage_job_epilog(const Spank& spank, PluginState& st);

// ---- data gravity (gravity.cpp)
// local/allocator, as the submitting user: the announced features of the job's sources,
// for contrib/job_submit.lua to turn into --prefer; never fails the submission.
void gravity_at_submit(const Spank& spank, PluginState& st);

// ---- affinity and distributed-training env (bind_step.cpp)
void bind_step_init(const Spank& spank, PluginState& st);   // remote init_post_opt, root: topology
void bind_user_init(const Spank& spank, PluginState& st);   // plan once per step per node
void bind_task_init(const Spank& spank, PluginState& st);   // apply one task's slice

// ---- containers (container_step.cpp)
void container_check_at_submit(const config::UserOptions& options, const config::SiteConfig& site);
// remote init_post_opt, root: the user's cache/<uid> below local_root, for the digest cache
void container_step_init(const Spank& spank, PluginState& st);
void container_user_init(const Spank& spank, PluginState& st);
void container_task_init(const Spank& spank, PluginState& st);  // last: may exec

}  // namespace aihpc::plugin
