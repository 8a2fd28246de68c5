// Context: allocator (sbatch, salloc) and local (an srun that makes its own job). User:
// the submitting user. Calls: once per submission, from init_post_opt.
//
// Data gravity at submit (lib/stage/warm_data.hpp): a SPANK plugin cannot add --prefer to
// the job it submits, so it tells the controller through the job's control environment
// (spank_job_control_setenv, which lands in job_desc.spank_job_env), where aihpc's
// contrib/job_submit.lua reads it and sets the job's --prefer:
//   AIHPC_GRAVITY_FEATURES  the features of the job's sources that the nodes able to take
//                           it at once announce, "a|b" (an OR)
//   AIHPC_GRAVITY_NODES     how many such nodes there are
//   AIHPC_GRAVITY_PARTITIONS  their partitions: Slurm refuses a job whose --prefer no
//                           node of its partition (or of its node list, or outside its
//                           excluded nodes) can satisfy
//   AIHPC_GRAVITY_ASKED     "prefer": the job wants gravity, by --aihpc-gravity or by the
//                           site key gravity=prefer (site-wide gravity); the lua applies
//                           it to no other job
// A job that does not want gravity sets none of these and asks Slurm nothing: a
// submission pays for `scontrol show node` only when it can use the answer.
// Names of their own: AIHPC_GRAVITY is the option's variable, which steps read.
//
// Before Slurm 26.05 the main scheduler does not fall back from --prefer when the
// preferred nodes are busy: the job waits for the next backfill pass (bf_interval, 30 s
// by default), measured on the mini-cluster with 22.05 (18 s) and 24.11 (26 s), against
// 2 s without --prefer; 26.05 falls back at once (1.5 s). So before 26.05 only warm
// nodes that are idle now count, which the scheduler can honour at once, and the lua
// applies them to jobs of at most that many nodes. Pinning the job to a warm node
// (req_nodes) would be worse: a requirement, it waits for that node if it got busy.
//
// Nothing here fails a submission: gravity is a preference, and Slurm is asked with a
// deadline.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/process.hpp"
#include "common/text.hpp"
#include "plugin/capabilities.hpp"
#include "stage/source.hpp"
#include "stage/warm_data.hpp"

extern "C" {
#include <slurm/slurm_version.h>
}

namespace aihpc::plugin {

namespace {

void say(const std::string& line) {
    std::fprintf(stderr, "aihpc: %s\n", line.c_str());
    std::fflush(stderr);
}

// JobSubmitPlugins as `scontrol show config` prints it, or nullopt when Slurm did not
// answer.
std::optional<std::string> job_submit_plugins() {
    CaptureOptions options;
    options.deadline = stage::warm::scontrol_deadline;
    CommandOutput out = capture_output_with({"scontrol", "show", "config"}, options);
    if (out.status != 0) return std::nullopt;
    return stage::warm::config_value(out.out, "JobSubmitPlugins");
}

// The data keys of the job's sources: version-independent, so no scan is needed here.
std::vector<std::string> source_keys(const config::UserOptions& options, const config::SiteConfig& site) {
    char cwd[4096];
    std::string base = ::getcwd(cwd, sizeof cwd) ? cwd : "/";
    std::vector<std::string> keys;
    for (const config::StageItem& item : options.stage) {
        stage::OpenSource source = stage::open_source(item.src, base, site.stage_allow);
        keys.push_back(stage::warm::data_key(source.kind, source.realpath));
    }
    return keys;
}

// Whether this release's main scheduler falls back from --prefer at once (measured on
// 26.05; 25.05 and 25.11 were not).
constexpr bool prefer_falls_back = SLURM_VERSION_NUMBER >= SLURM_VERSION_NUM(26, 5, 0);

bool set_control(const Spank& spank, const char* name, const std::string& value) {
    return spank_job_control_setenv(spank.handle(), name, value.c_str(), 1) == ESPANK_SUCCESS;
}

}  // namespace

void gravity_at_submit(const Spank& spank, PluginState& st) {
    const config::UserOptions& options = st.options;
    if (options.stage.empty() || !options.gravity.value_or(st.site.gravity_default)) return;
    // An srun inside a job makes a step, which is placed on the job's nodes already.
    if (spank.context() == S_CTX_LOCAL && std::getenv("SLURM_JOB_ID")) return;
    // The user's own word is answered on stderr; the site's default works silently.
    bool asked = options.gravity.value_or(false);
    try {
        if (asked) {
            std::optional<std::string> plugins = job_submit_plugins();
            if (plugins && !stage::warm::has_lua(*plugins)) {
                say("--aihpc-gravity: this cluster's JobSubmitPlugins (" + (plugins->empty() ? "none" : *plugins) +
                    ") has no lua, so the job is placed without data gravity; a site enables it with aihpc's "
                    "job_submit.lua beside slurm.conf and JobSubmitPlugins=lua (see aihpc(8), DATA GRAVITY)");
                return;
            }
        }
        std::vector<stage::warm::NodeRecord> nodes = stage::warm::read_nodes();
        std::vector<std::string> keys = source_keys(options, st.site);
        std::vector<std::string> features = stage::warm::announced_features(nodes, keys, ::getuid());
        std::vector<std::string> holders = stage::warm::nodes_announcing(nodes, features);
        std::vector<stage::warm::NodeRecord> usable = prefer_falls_back ? nodes : stage::warm::idle_nodes(nodes);
        std::vector<std::string> usable_features = stage::warm::announced_features(usable, keys, ::getuid());
        std::vector<std::string> usable_holders = stage::warm::nodes_announcing(usable, usable_features);
        if (asked && options.verbose)
            say(holders.empty()          ? "--aihpc-gravity: no node holds this job's data warm; Slurm places it as usual"
                : usable_holders.empty() ? "--aihpc-gravity: " + join(holders, ",") + " hold this job's data warm and are busy; "
                                               "Slurm places the job as usual (a job preferring busy nodes would wait for "
                                               "the next backfill pass)"
                : prefer_falls_back      ? "--aihpc-gravity: " + join(holders, ",") + " hold this job's data warm; the job "
                                               "prefers them and waits for none"
                                         : "--aihpc-gravity: " + join(holders, ",") + " hold this job's data warm; the job "
                                               "prefers those idle now (" + join(usable_holders, ",") + ") and waits for none");
        if (usable_features.empty()) return;
        bool sent = set_control(spank, "AIHPC_GRAVITY_FEATURES", join(usable_features, "|"));
        sent = set_control(spank, "AIHPC_GRAVITY_NODES", std::to_string(usable_holders.size())) && sent;
        sent = set_control(spank, "AIHPC_GRAVITY_PARTITIONS", join(stage::warm::partitions_of(usable, usable_holders), ",")) &&
               sent;
        sent = set_control(spank, "AIHPC_GRAVITY_ASKED", "prefer") && sent;
        if (!sent && asked) say("--aihpc-gravity: Slurm did not take the job's control variables; the job is placed without data gravity");
    } catch (const std::exception& e) {
        if (asked) say(std::string("--aihpc-gravity: the job is placed without data gravity: ") + e.what());
    }
}

}  // namespace aihpc::plugin
