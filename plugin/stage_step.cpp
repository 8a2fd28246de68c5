// Staging in the plugin: contexts and users are given at each function in
// capabilities.hpp. The engine lives in lib/stage, the node-local layout below
// local_root in lib/stage/node_layout.hpp.
//
// slurmstepd does none of the work itself: aihpc-node does it (plugin/node_work.hpp),
// as root for the directories under local_root and the user's share of the cache, as
// the job's user for everything that reads or writes the user's data. The step holds
// a lease on each cache entry it uses until it ends: a process of the user's own holds
// them (lib/stage/lease_holder.hpp), and slurmstepd only a pipe and a pidfd of it, so
// slurmstepd never opens, holds or closes a file in the user's cache.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <limits>
#include <optional>
#include <string_view>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/text.hpp"
#include "affinity/dist_env.hpp"
#include "common/user_process.hpp"
#include "plugin/capabilities.hpp"
#include "plugin/node_work.hpp"
#include "plugin/task_argv.hpp"
#include "stage/lease_holder.hpp"
#include "stage/node_layout.hpp"
#include "stage/source.hpp"

namespace aihpc::plugin {

namespace {

// What this slurmstepd keeps between hooks.
struct StepStaging {
    bool active = false;
    stage::JobLayout layout;
    std::vector<stage::JobItem> items;
    std::vector<UniqueFd> leases;  // the lease holder's pipe and pidfd; O_CLOEXEC
    std::uint32_t task_exits = 0;
    bool requeue_after_checkpoint = false;  // a task exited 75 under --aihpc-checkpoint
};

StepStaging& staging() {
    static StepStaging instance;
    return instance;
}

bool wants_staging(const config::UserOptions& options) { return !options.stage.empty() || !options.stage_out.empty(); }

}  // namespace

void stage_check_at_submit(const config::UserOptions& options, const config::SiteConfig& site) {
    char cwd[4096];
    std::string base = ::getcwd(cwd, sizeof cwd) ? cwd : "/";
    for (const config::StageItem& item : options.stage) {
        // A FIFO, socket or device would block the open below, or stream forever.
        std::string path = item.src.starts_with('/') ? item.src : base + "/" + item.src;
        struct stat st {};
        if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
            throw Error("--aihpc-stage: " + item.src + " is not a regular file or a directory (a FIFO, socket or device); " +
                        "stage files, directories or archives");
        try {
            stage::OpenSource source = stage::open_source(item.src, base, site.stage_allow);
        } catch (const Error& e) {
            throw Error(std::string("--aihpc-stage: ") + e.what());
        }
    }
}

void stage_user_init(const Spank& spank, PluginState& st) {
    if (!wants_staging(st.options)) return;
    StepStaging& s = staging();
    s.layout = stage::job_layout(st.site.local_root_for(st.step.node_name), st.step.job_id, st.step.uid);
    if (st.options.stage.empty()) {
        node_work(st, "prepare", RunAs::root);
        s.active = true;
        return;
    }
    // One exec: root's part, then the stage-in after the helper dropped to the user.
    stage::NodeRequest request = step_request(st);
    request.groups = st.step.groups;
    // A step over several nodes reads each one-file source once, on its node 0
    // (lib/stage/fanout.hpp), which is the first of the step's node list.
    if (st.site.stage_fanout && st.step.node_count > 1 && !st.step.is_batch_step) {
        std::string nodes = spank.getenv("SLURM_STEP_NODELIST").value_or(spank.getenv("SLURM_JOB_NODELIST").value_or(""));
        request.fanout_sender = affinity::first_host(nodes);
        if (!request.fanout_sender.empty() && request.fanout_sender.find('/') == std::string::npos) {
            request.fanout_nodes = st.step.node_count;
            request.fanout_nodelist = nodes;
            request.fanout_index = st.step.node_index;
        }
    }
    HelperOutcome staged = node_work(st, "prepare-stage-in", RunAs::root, request);
    for (const std::string& note : staged.notes) st.note(note);
    s.items = stage::parse_job_items(staged.result);
    s.leases = std::move(staged.fds);
    s.active = true;
    // World-readable sources the node's shared cache lacks: root reads them into it as
    // shared_user, and the stager's second pass links them from there (or takes what
    // could not be shared into the user's cache). The first pass's leases go once the
    // second pass holds its own.
    for (const stage::JobItem& item : s.items)
        if (item.outcome == "shared-wanted") request.shared_items.push_back(item.name);
    if (!request.shared_items.empty()) {
        HelperOutcome again = node_work(st, "prepare-stage-in", RunAs::root, request);
        for (const std::string& note : again.notes) st.note(note);
        stage::end_lease_holder(s.leases);
        s.items = stage::parse_job_items(again.result);
        s.leases = std::move(again.fds);
    }
    // squashfs images the stager found unmounted: root mounts them for the user, since
    // the stager runs with no_new_privs and fusermount3 cannot act for it.
    stage::NodeRequest mount = step_request(st);
    mount.groups = st.step.groups;
    for (const stage::JobItem& item : s.items)
        if (item.mount == "wanted") mount.mounts.push_back(item.name);
    if (!mount.mounts.empty())
        for (const std::string& note : node_work(st, "mount-images", RunAs::root, mount).notes) st.note(note);
    // Root's books change only when something was copied, into the cache or privately.
    bool copied = std::any_of(s.items.begin(), s.items.end(),
                              [](const stage::JobItem& i) { return i.outcome == "miss" || i.outcome == "private"; });
    // The account step also announces the node's warm sources to Slurm (data gravity).
    if (copied)
        for (const std::string& note : node_work(st, "account", RunAs::root).notes) st.note(note);
}

bool stage_step_active() { return staging().active; }

void stage_step_exit(PluginState&) { stage::end_lease_holder(staging().leases); }

void stage_task_init(const Spank& spank, PluginState& st) {
    StepStaging& s = staging();
    if (!s.active) return;
    spank.setenv("AIHPC_STAGE_DIR", s.layout.stage_dir);
    std::vector<std::string> manifests;
    for (const stage::JobItem& item : s.items) {
        spank.setenv("AIHPC_DATA_" + env_name_part(item.name), item.path);
        manifests.push_back(item.name + "=" + item.manifest_hash);
    }
    spank.setenv("AIHPC_STAGE_MANIFESTS", join(manifests, ","));
    (void)st;
}

void stage_task_exit(const Spank& spank, PluginState& st) {
    StepStaging& s = staging();
    if (!s.active || st.options.stage_out.empty()) return;
    std::optional<int> status = spank.task_exit_status();
    if (st.options.checkpoint && status && WIFEXITED(*status) && WEXITSTATUS(*status) == config::checkpoint_requeue_exit)
        s.requeue_after_checkpoint = true;
    if (++s.task_exits < st.step.local_task_count) return;
    // After the tasks ended only slurmstepd's log reaches the job's output. Root's record
    // (kept/<jobid>, made before the tasks started) keeps the stage dir until root hears
    // here that the step delivered; any other end leaves it kept.
    bool delivered = false;
    try {
        HelperOutcome outcome = node_work(st, "stage-out", RunAs::user);
        for (const std::string& note : outcome.notes) slurm_error("aihpc: %s", note.c_str());
        delivered = outcome.result == "delivered";
    } catch (const Error& e) {
        slurm_error("aihpc: %s", e.what());
    }
    try {
        if (delivered) {
            node_work(st, "delivered", RunAs::root);
        } else {
            for (const std::string& note : node_work(st, "keep", RunAs::root).notes)
                slurm_info("aihpc: %s", note.c_str());
        }
    } catch (const Error& e) {
        slurm_error("aihpc: %s", e.what());
    }
    // Last: the requeue ends this run, and with it this step's helpers. Asked for any
    // earlier, it would cut root's record of the delivery (the task wrapper leaves it
    // here for a step that stages out).
    if (!s.requeue_after_checkpoint) return;
    try {
        for (const std::string& note : node_work(st, "requeue", RunAs::user).notes)
            slurm_info("aihpc: %s", note.c_str());
    } catch (const Error& e) {
        slurm_error("aihpc: %s", e.what());
    }
}

void stage_job_epilog(const Spank& spank, PluginState& st) {
    std::optional<std::uint32_t> job = spank.u32(S_JOB_ID);
    if (!job || *job == 0) return;  // no job id: nothing is removed on a guess
    std::string node = spank.getenv("SLURMD_NODENAME").value_or("");
    if (node.empty()) {
        char host[256] = {};
        ::gethostname(host, sizeof host - 1);
        node = host;
    }
    st.step.job_id = *job;
    st.step.node_name = node;
    st.step.uid = 0;
    st.step.gid = 0;
    st.step.identified = true;
    st.raw_options.clear();
    try {
        HelperOutcome cleanup = node_work(st, "epilog", RunAs::root);
        for (const std::string& note : cleanup.notes) slurm_info("aihpc: %s", note.c_str());
        // A stage-out the job's end cut short: the epilog finishes it, as the user whom
        // root's record names, within epilog_deliver_timeout; then root releases what
        // was delivered. Whatever is left stays kept for `aihpc-stage deliver`.
        std::string_view result = cleanup.result;
        if (!result.starts_with("deliver ")) return;
        auto uid = parse_uint(result.substr(8));
        if (!uid || *uid == 0 || *uid > std::numeric_limits<uid_t>::max() - 1) return;
        std::optional<UserIds> user = user_ids_of(static_cast<uid_t>(*uid));
        if (!user) {
            slurm_info("aihpc: job %u: uid %u is not in the user database, so its kept stage-out is left for aihpc-stage deliver",
                       *job, static_cast<unsigned>(*uid));
            return;
        }
        st.step.uid = user->uid;
        st.step.gid = user->gid;
        st.step.groups = user->groups;
        HelperOutcome delivery;
        try {
            delivery = node_work(st, "deliver-kept", RunAs::user);
        } catch (const std::exception& e) {
            slurm_info("aihpc: job %u: the epilog did not finish its stage-out (%s); it stays kept: run 'aihpc-stage deliver %u' in a job on %s",
                       *job, e.what(), *job, node.c_str());
        }
        for (const std::string& note : delivery.notes) slurm_info("aihpc: job %u: %s", *job, note.c_str());
        st.step.uid = 0;
        st.step.gid = 0;
        st.step.groups.clear();
        if (delivery.result != "delivered") return;
        node_work(st, "epilog", RunAs::root);
        slurm_info("aihpc: job %u: the epilog finished its stage-out, and its kept stage dir is released", *job);
    } catch (const std::exception& e) {
        slurm_info("aihpc: stage cleanup: %s", e.what());
    }
}

}  // namespace aihpc::plugin
