// Context: remote (slurmstepd) and job_script (epilog), as root or with euid = the user;
// the helper's own user is set between fork and exec. See node_work.hpp.
#include "plugin/node_work.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>

#include "common/error.hpp"
#include "common/paths.hpp"
#include "common/text.hpp"

namespace aihpc::plugin {

namespace {

std::string plugin_path() {
    Dl_info info{};
    if (::dladdr(reinterpret_cast<void*>(&node_helper_program), &info) == 0 || !info.dli_fname) return "";
    return info.dli_fname;
}

}  // namespace

stage::NodeRequest step_request(const PluginState& st) {
    const StepInfo& step = st.step;
    stage::NodeRequest r;
    r.site_args = st.site_args;
    r.raw_options = st.raw_options;
    r.job_id = step.job_id;
    r.uid = step.uid;
    r.gid = step.gid;
    r.node = step.node_name;
    r.submit_dir = step.submit_dir;
    r.step_id = step.step_id;
    r.local_tasks = step.local_task_count;
    return r;
}

std::string node_helper_program() {
    static std::string found;
    if (!found.empty()) return found;
    std::vector<std::string> tried;
    for (const std::string& candidate : helper_program_candidates(plugin_path(), "aihpc-node", AIHPC_NODE_PATH)) {
        char real[PATH_MAX];
        if (::realpath(candidate.c_str(), real) && ::faccessat(AT_FDCWD, real, X_OK, AT_EACCESS) == 0) return found = real;
        tried.push_back(candidate);
    }
    throw Error("the node helper aihpc-node is missing (looked at " + join(tried, ", ") + "); reinstall aihpc on this node");
}

HelperOutcome node_work(const PluginState& st, const std::string& command, RunAs as) {
    return node_work(st, command, as, step_request(st));
}

HelperOutcome node_work(const PluginState& st, const std::string& command, RunAs as, const stage::NodeRequest& request) {
    if (!st.step.identified)
        throw Error("cannot read this step's job id, uid or gid from Slurm, so aihpc does nothing for it (" + command + ")");
    HelperRun run;
    run.program = node_helper_program();
    run.args = {command};
    run.request = stage::format_node_request(request);
    if (as == RunAs::user) run.user = UserIds{st.step.uid, st.step.gid, st.step.groups};
    run.deadline = std::chrono::seconds(st.site.stage_timeout_s);
    // The epilog's delivery runs after the job, while the node waits: its own budget.
    if (command == "deliver-kept") run.deadline = std::chrono::seconds(st.site.epilog_deliver_timeout_s);
    // The user's work in a step is watched from here, since the user may stop it: it
    // ends once the job does, and never runs past the job's time limit.
    else if (as == RunAs::user || command == "prepare-stage-in")
        run.job_state_command = {"squeue", "-h", "-j", std::to_string(st.step.job_id), "-o", "%T %L"};
    run.purpose = command;
    return run_helper(run);
}

}  // namespace aihpc::plugin
