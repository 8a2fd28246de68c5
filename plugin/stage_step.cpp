// Staging in the plugin: contexts and users are given at each function in
// capabilities.hpp. The engine lives in lib/stage, the node-local layout below
// local_root in lib/stage/node_layout.hpp, and the child that drops to the job's user in
// lib/common/user_process.hpp.
//
// All work on user data runs in a forked child that has dropped to the job's uid, gid
// and groups. The child is root only long enough to create the user's directories
// under root-owned ones, fd-relative and without following links.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <optional>

#include "common/error.hpp"
#include "common/text.hpp"
#include "common/user_process.hpp"
#include "plugin/capabilities.hpp"
#include "stage/fs.hpp"
#include "stage/node_cache.hpp"
#include "stage/node_layout.hpp"
#include "stage/source.hpp"
#include "stage/stage_in.hpp"
#include "stage/stage_out.hpp"
#include "stage/tree_copy.hpp"

namespace aihpc::plugin {

namespace {

// What this slurmstepd keeps between hooks.
struct StepStaging {
    bool active = false;
    stage::JobLayout layout;
    std::vector<stage::JobItem> items;
    std::vector<stage::Lease> leases;  // O_CLOEXEC: tasks never inherit them
    std::uint32_t task_exits = 0;
};

StepStaging& staging() {
    static StepStaging instance;
    return instance;
}

bool wants_staging(const config::UserOptions& options) { return !options.stage.empty() || !options.stage_out.empty(); }

std::string job_text(const StepInfo& step) { return std::to_string(step.job_id); }

UserIds job_user(const StepInfo& step) { return {step.uid, step.gid, step.groups}; }

unsigned stage_threads(const config::SiteConfig& site) {
    return site.stage_threads ? site.stage_threads : stage::default_copy_threads();
}

// The child's work as the user: stage every item, then record what was staged.
void stage_items_as_user(const PluginState& st, const stage::JobLayout& layout, const stage::CacheLimits& limits,
                         const ChildReport& report) {
    UniqueFd meta = stage::open_dir(layout.meta_dir);
    UniqueFd job_lock(::openat(meta.get(), "lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!job_lock) throw_errno("cannot open " + stage::join_path(layout.meta_dir, "lock"));
    // Steps of one job starting together on a node stage one after the other: the
    // second finds the first one's work.
    while (::flock(job_lock.get(), LOCK_EX) != 0)
        if (errno != EINTR) throw_errno("cannot lock " + stage::join_path(layout.meta_dir, "lock"));

    std::map<std::string, stage::JobItem> before;
    for (stage::JobItem& i : stage::parse_job_items(stage::read_small_file_at(meta.get(), "items", stage::small_file_max).value_or("")))
        before[i.name] = i;

    stage::StageSettings settings;
    settings.to_dir = layout.stage_dir;
    settings.cache_dir = layout.cache_dir;
    settings.limits = limits;
    settings.private_mode = st.options.stage_mode == config::StageMode::private_;
    settings.verify = st.options.stage_verify;
    settings.threads = stage_threads(st.site);
    settings.uid = st.step.uid;
    settings.base_dir = st.step.submit_dir;
    settings.allow = st.site.stage_allow;

    std::vector<stage::JobItem> recorded;
    for (const config::StageItem& item : st.options.stage) {
        auto old = before.find(item.name);
        if (settings.private_mode && old != before.end() && old->second.outcome == "private") {
            recorded.push_back(old->second);  // the job's own writable copy: never redone
            continue;
        }
        stage::StagedItem staged = stage::stage_in(item.src, item.name, settings);
        report.note("stage-in " + item.name + ": " + stage::to_string(staged.outcome) + ", " + std::to_string(staged.files) +
                    " files, " + std::to_string(staged.bytes) + " bytes, " + std::to_string(staged.seconds) + "s");
        recorded.push_back({staged.name, staged.path, staged.manifest_hash, staged.key, stage::to_string(staged.outcome)});
    }
    stage::write_file_atomic_at(meta.get(), "items", stage::format_job_items(recorded), 0600,
                                stage::join_path(layout.meta_dir, "items"));
}

bool needs_cache_limits(const config::UserOptions& options) {
    return !options.stage.empty() && options.stage_mode != config::StageMode::private_;
}

// As root, in the child: the job's and the user's directories, and the user's share of
// the node-wide cache limits.
stage::CacheLimits prepare_node_dirs(const PluginState& st, const std::string& local_root, const stage::JobLayout& layout) {
    const StepInfo& step = st.step;
    UniqueFd root = stage::open_local_root(local_root, true);
    UniqueFd jobs = stage::root_dir_at(root.get(), "jobs", stage::join_path(local_root, "jobs"));
    UniqueFd cache = stage::root_dir_at(root.get(), "cache", stage::join_path(local_root, "cache"));
    stage::user_dir_at(jobs.get(), job_text(step), step.uid, step.gid, layout.stage_dir);
    stage::user_dir_at(jobs.get(), job_text(step) + ".aihpc", step.uid, step.gid, layout.meta_dir);
    stage::user_dir_at(cache.get(), std::to_string(step.uid), step.uid, step.gid, layout.cache_dir);
    struct statvfs fs {};
    std::uint64_t fs_bytes = ::fstatvfs(cache.get(), &fs) == 0 ? static_cast<std::uint64_t>(fs.f_blocks) * fs.f_frsize : 0;
    // Only a cache-mode stage-in uses the limits; the scan of every other user's cache
    // is not worth its cost on each step otherwise.
    if (!needs_cache_limits(st.options)) return stage::CacheLimits{};
    std::uint64_t others = stage::other_users_cache_bytes(cache.get(), step.uid, stage::join_path(local_root, "cache"));
    return stage::user_cache_limits(st.site.cache_max.resolve(fs_bytes), st.site.cache_low_bytes(fs_bytes), others);
}

}  // namespace

void stage_check_at_submit(const config::UserOptions& options, const config::SiteConfig& site) {
    char cwd[4096];
    std::string base = ::getcwd(cwd, sizeof cwd) ? cwd : "/";
    for (const config::StageItem& item : options.stage) {
        try {
            stage::OpenSource source = stage::open_source(item.src, base, site.stage_allow);
        } catch (const Error& e) {
            throw Error(std::string("--aihpc-stage: ") + e.what());
        }
    }
}

void stage_user_init(const Spank&, PluginState& st) {
    if (!wants_staging(st.options)) return;
    StepStaging& s = staging();
    const StepInfo& step = st.step;
    std::string local_root = st.site.local_root_for(step.node_name);
    s.layout = stage::job_layout(local_root, step.job_id, step.uid);

    for (int attempt = 0; attempt < 3; ++attempt) {
        stage::CacheLimits limits;
        auto root_part = [&](const ChildReport&) { limits = prepare_node_dirs(st, local_root, s.layout); };
        auto user_part = [&](const ChildReport& report) {
            if (!st.options.stage.empty()) stage_items_as_user(st, s.layout, limits, report);
        };
        std::vector<std::string> notes;
        try {
            notes = run_as_user(job_user(step), "staging", root_part, user_part);
        } catch (const ChildDied& e) {
            throw Error(std::string(e.what()) + "; the cache stays consistent, and the next step will stage again");
        }
        for (const std::string& note : notes) st.note(note);

        // The step holds a lease on each cache entry it uses until it ends; taken here,
        // as the user, after the child published, and checked against eviction between.
        UniqueFd meta = stage::open_dir(s.layout.meta_dir);
        s.items = stage::parse_job_items(stage::read_small_file_at(meta.get(), "items", stage::small_file_max).value_or(""));
        s.leases.clear();
        bool all_leased = true;
        if (std::any_of(s.items.begin(), s.items.end(), [](const stage::JobItem& i) { return !i.key.empty(); })) {
            stage::NodeCache cache(s.layout.cache_dir);
            for (const stage::JobItem& item : s.items) {
                if (item.key.empty()) continue;
                std::optional<stage::Lease> lease = cache.lease(item.key);
                if (!lease) {
                    all_leased = false;
                    break;
                }
                s.leases.push_back(std::move(*lease));
            }
        }
        if (all_leased) {
            s.active = true;
            return;
        }
    }
    throw Error("stage-in: the node cache " + s.layout.cache_dir +
                " evicted the staged data three times in a row; the node's cache is too small for this job");
}

bool stage_step_active() { return staging().active; }

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

void stage_task_exit(const Spank&, PluginState& st) {
    StepStaging& s = staging();
    if (!s.active || st.options.stage_out.empty()) return;
    if (++s.task_exits < st.step.local_task_count) return;
    const StepInfo& step = st.step;
    std::vector<std::string> notes;
    try {
        notes = run_as_user(
            job_user(step), "stage-out", [](const ChildReport&) {},
            [&](const ChildReport& report) {
                std::vector<std::string> failures;
                for (const config::StageOutItem& item : st.options.stage_out) {
                    std::string dest = stage::expand_dest(item.dest, job_text(step), step.node_name);
                    if (dest[0] != '/') dest = stage::join_path(step.submit_dir, dest);
                    try {
                        stage::StageOutResult r = stage::stage_out(stage::join_path(s.layout.stage_dir, item.local), dest,
                                                                   job_text(step), stage_threads(st.site));
                        if (r.diverted) report.note(r.message());
                    } catch (const stage::NothingToStageOut& e) {
                        report.note(e.what());  // nothing to keep, so no reason to keep the stage dir
                    } catch (const Error& e) {
                        failures.push_back(e.what());
                    }
                }
                if (!failures.empty()) {
                    UniqueFd meta = stage::open_dir(s.layout.meta_dir);
                    stage::write_file_atomic_at(meta.get(), stage::stage_out_failed_marker, join(failures, "\n") + "\n", 0600,
                                                stage::join_path(s.layout.meta_dir, stage::stage_out_failed_marker));
                    throw Error(join(failures, "; "));
                }
            });
    } catch (const Error& e) {
        // After the tasks ended only slurmstepd's log reaches the job's output.
        slurm_error("aihpc: %s", e.what());
        return;
    }
    for (const std::string& note : notes) slurm_error("aihpc: %s", note.c_str());
}

void stage_job_epilog(const Spank& spank, const config::SiteConfig& site) {
    try {
        std::optional<std::uint32_t> job = spank.u32(S_JOB_ID);
        if (!job) return;
        std::string node = spank.getenv("SLURMD_NODENAME").value_or("");
        if (node.empty()) {
            char host[256] = {};
            ::gethostname(host, sizeof host - 1);
            node = host;
        }
        std::string local_root = site.local_root_for(node);
        stage::JobCleanup cleanup = stage::remove_job_dirs(local_root, *job);
        std::string name = std::to_string(*job);
        if (cleanup.kept_after_failed_stage_out)
            slurm_info("aihpc: job %s: stage-out failed, so %s/jobs/%s is kept", name.c_str(), local_root.c_str(), name.c_str());
        else if (!cleanup.error.empty())
            slurm_info("aihpc: job %s: could not remove all of its stage dir: %s", name.c_str(), cleanup.error.c_str());
    } catch (const std::exception& e) {
        slurm_info("aihpc: stage cleanup: %s", e.what());
    }
}

}  // namespace aihpc::plugin
