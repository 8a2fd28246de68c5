// The pieces of a step's staging that aihpc-node does on a node for slurmstepd, as root
// or as the job's user (node_steps.hpp).
#include "stage/node_steps.hpp"

#include <fcntl.h>
#include <sys/prctl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/process.hpp"
#include "common/spawn.hpp"
#include "common/text.hpp"
#include "container/digest_cache.hpp"
#include "container/image.hpp"
#include "stage/cache_ledger.hpp"
#include "stage/cache_promises.hpp"
#include "stage/fanout.hpp"
#include "stage/fs.hpp"
#include "stage/lease_holder.hpp"
#include "stage/node_cache.hpp"
#include "stage/shared_cache.hpp"
#include "stage/squashfs_mount.hpp"
#include "stage/squashfs_pack.hpp"
#include "stage/stage_in.hpp"
#include "stage/stage_out.hpp"
#include "stage/tree_copy.hpp"
#include "stage/warm_data.hpp"

namespace aihpc::stage::node {

std::string local_root(const NodeRequest& r) { return r.site.local_root_for(r.node); }
std::string job_text(const NodeRequest& r) { return std::to_string(r.job_id); }
stage::JobLayout layout(const NodeRequest& r) { return stage::job_layout(local_root(r), r.job_id, r.uid); }

unsigned stage_threads(const config::SiteConfig& site) {
    return site.stage_threads ? site.stage_threads : stage::default_copy_threads();
}

// Each --aihpc-stage-out item of the step: LOCAL, and DEST expanded and made absolute.
std::vector<stage::KeptDelivery> planned_deliveries(const NodeRequest& r) {
    std::vector<stage::KeptDelivery> out;
    for (const config::StageOutItem& item : r.options.stage_out) {
        std::string dest = stage::expand_dest(item.dest, job_text(r), r.node);
        if (dest.empty() || dest[0] != '/') dest = stage::join_path(r.submit_dir, dest);
        out.push_back({r.step_id, item.local, dest});
    }
    return out;
}

namespace {

// How long a lock may be waited for: nine tenths of stage_timeout, so that the wait
// ends with its own message before the helper is stopped.
std::chrono::milliseconds lock_wait(const NodeRequest& r) {
    return std::chrono::milliseconds(static_cast<std::uint64_t>(r.site.stage_timeout_s) * 900);
}

// A private copy takes the same disk as the cache, so it is held to the same limits.
bool needs_cache_limits(const config::UserOptions& options) { return !options.stage.empty(); }

// As root, as a step with --aihpc-stage-out starts: the markers that an earlier run of
// this step left in the job's meta dir go. A requeued job runs again under its id and
// step ids; what its first run delivered says nothing of the new run's output, which
// would otherwise never be copied. Known names only, fd-relative, nothing followed.
void forget_earlier_deliveries(int local_root_fd, const NodeRequest& r, std::size_t items) {
    UniqueFd jobs(::openat(local_root_fd, "jobs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    UniqueFd meta(jobs ? ::openat(jobs.get(), (job_text(r) + ".aihpc").c_str(),
                                  O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
                       : -1);
    if (!meta) throw_errno("cannot open the job's meta dir " + layout(r).meta_dir);
    ::unlinkat(meta.get(), stage::delivered_marker(r.step_id).c_str(), 0);
    ::unlinkat(meta.get(), stage::stage_out_failed_marker_of(r.step_id).c_str(), 0);
    for (std::size_t i = 0; i < items; ++i) ::unlinkat(meta.get(), stage::delivered_marker(r.step_id, i).c_str(), 0);
}

// The size of the file system holding fd, which percentages of site keys are of; 0 when
// it cannot be told.
std::uint64_t filesystem_bytes(int fd) {
    struct statvfs fs {};
    return ::fstatvfs(fd, &fs) == 0 ? static_cast<std::uint64_t>(fs.f_blocks) * fs.f_frsize : 0;
}

// The book of copies in flight that prepare opened as root, for this process's stage-in
// after it dropped to the user (prepare-stage-in).
stage::RoomPromises room_promises;

// As root: the job's and the user's directories under the root-owned local_root, and,
// for a cache-mode stage-in, the user's share of the node cache (else zeros).
stage::CacheLimits prepare_node(const NodeRequest& r) {
    if (r.uid == 0) throw Error("root's jobs are not staged; run the job as a regular user");
    std::string root_path = local_root(r);
    stage::JobLayout l = layout(r);
    UniqueFd root = stage::open_local_root(root_path, true);
    // What earlier epilogs left in trash/ goes first, within a small budget.
    stage::empty_trash(root_path, std::chrono::milliseconds(500));
    UniqueFd cache = stage::root_dir_at(root.get(), "cache", stage::join_path(root_path, "cache"));
    stage::user_dir_at(cache.get(), std::to_string(r.uid), r.uid, r.gid, l.cache_dir);
    if (!r.options.stage.empty() || !r.options.stage_out.empty()) {
        UniqueFd jobs = stage::root_dir_at(root.get(), "jobs", stage::join_path(root_path, "jobs"));
        stage::user_dir_at(jobs.get(), job_text(r), r.uid, r.gid, l.stage_dir);
        stage::user_dir_at(jobs.get(), job_text(r) + ".aihpc", r.uid, r.gid, l.meta_dir);
    }
    // Before any task runs: the job is kept until root hears that this step delivered.
    if (!r.options.stage_out.empty()) {
        std::vector<stage::KeptDelivery> deliveries = planned_deliveries(r);
        stage::keep_until_delivered(root_path, r.job_id, r.uid, r.step_id, deliveries);
        forget_earlier_deliveries(root.get(), r, deliveries.size());
    }
    if (!needs_cache_limits(r.options)) return {};
    std::uint64_t fs_bytes = filesystem_bytes(cache.get());
    // Root's own measures of every user's cache (the ledger), never a number a user wrote.
    // The shared cache's entries are root's own: their info files are believed.
    std::uint64_t cache_max = r.site.cache_max.resolve(fs_bytes);
    std::uint64_t shared_bytes = stage::keep_shared_cache_to_its_cap(
        root_path, r.site.cache_shared_max_bytes(fs_bytes), cache_max,
        cache_max ? static_cast<double>(r.site.cache_low_bytes(fs_bytes)) / static_cast<double>(cache_max) : 1.0);
    stage::CacheLimits limits = stage::root_cache_limits(cache.get(), r.uid, cache_max,
                                                         r.site.cache_low_bytes(fs_bytes),
                                                         r.site.cache_user_max_bytes(fs_bytes),
                                                         stage::join_path(root_path, "cache"), r.site.cache_user_inodes,
                                                         &room_promises, shared_bytes);
    return limits;
}

// As root: what was kept, in the job's accounting record too (sacct -o AdminComment),
// where the user looks once the job is over. slurmctld takes it only while the job has
// not finished (a stage-out that failed on its own, not one cut by a cancel or the time
// limit); nothing depends on it, and a refusal costs a note in slurmd's log.
void record_in_admin_comment(const NodeRequest& r, const HelperChannel& channel, const std::string& text) {
    try {
        CommandOutput out =
            capture_output({"scontrol", "update", "JobId=" + job_text(r), "AdminComment=aihpc: " + text});
        if (out.status != 0)
            channel.note("job " + job_text(r) + ": what was kept is not in its AdminComment: " + std::string(trim(out.err)));
    } catch (const Error& e) {
        channel.note("job " + job_text(r) + ": what was kept is not in its AdminComment: " + e.what());
    }
}

// A step over several nodes, in cache mode, with stage_fanout=auto: node 0 reads each
// one-file source and sends it on (lib/stage/fanout.hpp); the others take it from there.
struct FromNodeZero : stage::PeerSource {
    stage::FanoutStep step;
    std::size_t item = 0;
    std::optional<UniqueFd> receive(const stage::Manifest& source, std::string* why) override {
        return stage::receive_from_peer(step, item, source, why);
    }
};

// Node 0's part for one item: the file it staged, the archive it copied before the
// extraction, or a tar of the tree it staged goes to the other nodes; an archive it
// found extracted cannot.
std::string send_on(const FromNodeZero& f, int meta_fd, std::size_t item, const stage::StagedItem& staged,
                    const stage::StageSettings& settings) {
    if (!staged.archive_copy.empty() && stage::sent_before(meta_fd, f.step, staged.key)) ::unlink(staged.archive_copy.c_str());
    if (stage::sent_before(meta_fd, f.step, staged.key))
        return stage::send_nothing_to_peers(f.step, item, "sent to these nodes by an earlier step of the job, so not again");
    if (staged.kind == stage::SourceKind::archive && staged.archive_copy.empty())
        return stage::send_nothing_to_peers(f.step, item, "found extracted in this node's cache, so not sent");
    std::string sent = staged.data_path;
    if (staged.kind == stage::SourceKind::archive) sent = staged.archive_copy;
    if (staged.kind == stage::SourceKind::tree) {
        sent = stage::fanout_data_path(f.step, item) + ".tar";
        try {
            stage::write_staged_tree_tar(settings, staged, sent);
        } catch (const std::exception& e) {
            ::unlink(sent.c_str());
            return stage::send_nothing_to_peers(f.step, item, std::string("no tar of the tree was made (") + e.what() + ")");
        }
    }
    std::string line = stage::send_to_peers(f.step, item, sent, staged.outcome == stage::StageOutcome::miss);
    if (sent != staged.data_path) ::unlink(sent.c_str());
    if (line.starts_with("sent to ")) stage::record_sent(meta_fd, f.step, staged.key);
    return line;
}

std::optional<FromNodeZero> fanout_of(const NodeRequest& r) {
    if (r.fanout_nodes < 2 || !r.site.stage_fanout || r.options.stage_mode == config::StageMode::private_) return std::nullopt;
    FromNodeZero f;
    f.step.job_id = r.job_id;
    f.step.step_id = r.step_id;
    f.step.nodes = r.fanout_nodes;
    f.step.index = r.fanout_index;
    f.step.sender = r.fanout_sender;
    f.step.nodelist = r.fanout_nodelist;
    f.step.dir = stage::job_layout(r.site.local_root_for(r.fanout_sender), r.job_id, r.uid).meta_dir;
    f.step.wait = std::chrono::seconds(std::max(30u, r.site.stage_timeout_s / 2));
    // local_root per node name on one host (the mini-cluster): every node sees the
    // sender's dir, and the one copy there serves them all.
    f.step.sender_keeps_copy = r.site.local_root.find("%n") != std::string::npos;
    return f;
}

// Drops this process to the job's user for good, as the plugin does before it execs the
// user's work (lib/common/node_helper.cpp): every descriptor but the request, result and
// output ones closed first (root's opened only root-owned paths under local_root), then
// the groups, gid and uid, checked (drop_to_user, the plugin's own code). The kernel
// makes a process that changed its credentials undumpable, so the user can neither trace
// it nor read what root's part left in its memory; it also clears the parent-death
// signal, which is set again.
void become_job_user(const NodeRequest& r) {
    if (r.uid == 0) throw Error("refusing to stage in as root for a job of uid 0");
    // Root's descriptors go, but for the book of copies in flight (cache_promises.hpp),
    // which the stager writes its promises through: it is moved to fd 5 first.
    unsigned first_closed = 5;
    if (room_promises.open()) {
        room_promises.move_to(5);
        first_closed = 6;
    }
    if (::syscall(SYS_close_range, first_closed, ~0u, 0u) != 0) throw_errno("cannot close root's descriptors before the stage-in");
    if (std::optional<ChildStep> failed = drop_to_user(UserIds{r.uid, r.gid, r.groups})) {
        if (*failed == ChildStep::set_groups) throw_errno("cannot set the job's supplementary groups");
        if (*failed == ChildStep::set_gid) throw_errno("cannot set the job's gid");
        if (*failed == ChildStep::set_uid) throw_errno("cannot set the job's uid");
        throw Error("could not drop to the job's user; the stage-in was not done");
    }
    pid_t parent = ::getppid();
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) throw_errno("cannot set the parent-death signal");
    if (::getppid() != parent || parent == 1) throw Error("slurmstepd went away before the stage-in");
}

bool meta_has(int meta_fd, const std::string& name) {
    struct stat st {};
    return ::fstatat(meta_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

}  // namespace

// As root. Result: "MAX LOW".
void prepare(const NodeRequest& r, const HelperChannel& channel) {
    stage::CacheLimits limits = prepare_node(r);
    channel.result(std::to_string(limits.max_bytes) + " " + std::to_string(limits.low_bytes));
}

namespace {

// As root: the node's warm sources, announced to Slurm (warm_data.hpp). Its notes go to
// slurmd's log; a failure never fails the step or the epilog.
void announce_warm_data(const NodeRequest& r, const HelperChannel& channel) {
    if (r.site.gravity_features == 0 || r.node.empty()) return;
    for (const std::string& note : stage::warm::announce(local_root(r), r.node, r.site.gravity_features))
        channel.note(note);
}

}  // namespace

// As root, after the user's stage-in copied: what the user's cache now holds, into the
// ledger, and the node's warm sources announced, so that the next job finds them.
void account(const NodeRequest& r, const HelperChannel& channel) {
    std::string root_path = local_root(r);
    UniqueFd root = stage::open_local_root(root_path, false);
    UniqueFd cache = stage::root_dir_at(root.get(), "cache", stage::join_path(root_path, "cache"));
    stage::root_account_user_cache(cache.get(), r.uid, stage::join_path(root_path, "cache"));
    announce_warm_data(r, channel);
}

// As root, after a stage-out that did not deliver: root's own record that the job's
// stage dir stays (keep_failed_days), which the epilog honours and the ledger counts.
void keep(const NodeRequest& r, const HelperChannel& channel) {
    stage::mark_job_kept(local_root(r), r.job_id, r.uid,
                         "the stage-out of step " + std::to_string(r.step_id) + " did not deliver");
    std::string text = "stage-out did not deliver, so " + layout(r).stage_dir + " is kept on " + r.node + " for " +
                       std::to_string(r.site.keep_failed_days) + " days; 'aihpc-stage deliver " + job_text(r) +
                       "' in a job on " + r.node + " finishes it";
    channel.note("job " + job_text(r) + ": " + text);
    record_in_admin_comment(r, channel, text);
}

// As the user: every item staged, its lease handed to slurmstepd, the list recorded in
// the job's meta dir for the steps that follow. Result: the items (format_job_items).
void stage_in(const NodeRequest& r, const HelperChannel& channel) {
    stage::JobLayout l = layout(r);
    UniqueFd meta = stage::open_dir(l.meta_dir);
    // Steps of one job starting together on a node stage one after the other: the
    // second finds the first one's work. A lock the user holds forever costs a bounded
    // wait, a little under the helper's own deadline, and a message naming it.
    UniqueFd job_lock = stage::lock_job_meta(meta.get(), lock_wait(r), l.meta_dir);

    std::map<std::string, stage::JobItem> before;
    for (stage::JobItem& i :
         stage::parse_job_items(stage::read_small_file_at(meta.get(), "items", stage::small_file_max).value_or("")))
        before[i.name] = i;

    stage::StageSettings settings;
    settings.to_dir = l.stage_dir;
    settings.cache_dir = l.cache_dir;
    settings.limits = r.limits;
    if (room_promises.open()) settings.promises = &room_promises;
    settings.private_mode = r.options.stage_mode == config::StageMode::private_;
    settings.verify = r.options.stage_verify;
    settings.mount_by_root = true;
    settings.threads = stage_threads(r.site);
    settings.uid = r.uid;
    settings.base_dir = r.submit_dir;
    settings.allow = r.site.stage_allow;
    settings.lock_wait = lock_wait(r);
    std::optional<FromNodeZero> fanout = fanout_of(r);
    if (fanout && fanout->step.index > 0) settings.peer = &*fanout;
    if (r.site.cache_shared && r.options.stage_mode == config::StageMode::cache) {
        settings.shared_dir = stage::shared_cache_dir(local_root(r));
        // What the shared cache lacks is left for root to put there, then staged again
        // (prepare_stage_in with shared_items). A step over several nodes reads each
        // source once, on its node 0, into the user's cache: were each node to read it
        // for the shared cache, every node would read it.
        settings.shared_defer = r.shared_items.empty() && !fanout;
    }

    std::vector<stage::JobItem> recorded;
    std::vector<stage::Lease> leases;
    for (const config::StageItem& item : r.options.stage) {
        if (fanout) fanout->item = recorded.size();
        settings.archive_copy_path =
            fanout && fanout->step.index == 0 ? stage::fanout_data_path(fanout->step, recorded.size()) + ".archive" : "";
        auto old = before.find(item.name);
        // An image's private copy is read through its mount, which a later step may have
        // to make again: it goes through stage_in, which reuses the copy.
        if (settings.private_mode && old != before.end() && old->second.outcome == "private" &&
            !stage::is_squashfs_name(item.src)) {
            recorded.push_back(old->second);  // the job's own writable copy: never redone
            continue;
        }
        stage::StagedItem staged = stage::stage_in(item.src, item.name, settings);
        // Put into the shared cache by root for this step: a miss, as far as the job goes.
        bool produced_now = std::find(r.shared_items.begin(), r.shared_items.end(), item.name) != r.shared_items.end();
        if (staged.outcome == stage::StageOutcome::hit && staged.cache == "shared" && produced_now)
            staged.outcome = stage::StageOutcome::miss;
        if (staged.outcome == stage::StageOutcome::deferred) {
            recorded.push_back({staged.name, staged.path, staged.manifest_hash, staged.key, stage::to_string(staged.outcome), ""});
            continue;
        }
        channel.note("stage-in " + item.name + ": " + stage::to_string(staged.outcome) + ", " + std::to_string(staged.files) +
                     " files, " + std::to_string(staged.bytes) + " bytes, " + std::to_string(staged.seconds) + "s" +
                     (staged.cache.empty() ? "" : ", in the " + staged.cache + " cache") +
                     (staged.mount == "kept" ? ", its mount kept" : ""));
        if (fanout && fanout->step.index == 0)
            channel.note("stage-in " + item.name + ": " + send_on(*fanout, meta.get(), recorded.size(), staged, settings));
        else if (fanout && staged.via == "received")
            channel.note("stage-in " + item.name + ": received from " + fanout->step.sender + " through sbcast; the source was not read here");
        else if (fanout && !staged.via.empty())
            channel.note("stage-in " + item.name + ": read from the source here, since " + staged.via);
        recorded.push_back(
            {staged.name, staged.path, staged.manifest_hash, staged.key, stage::to_string(staged.outcome), staged.mount});
        if (staged.lease) leases.push_back(std::move(staged.lease));
    }
    stage::write_file_atomic_at(meta.get(), "items", stage::format_job_items(recorded), 0600,
                                stage::join_path(l.meta_dir, "items"));
    // slurmstepd holds these descriptors until the step ends and then closes them: each
    // must be a plain file on local_root's own file system. A file system the user
    // mounted over their cache dir (FUSE, whose flush on close may never return) has a
    // device of its own, and is refused here, before slurmstepd ever holds a descriptor.
    struct stat root_st {};
    if (::stat(local_root(r).c_str(), &root_st) != 0) throw_errno("cannot stat local_root " + local_root(r));
    std::vector<int> fds;
    for (const stage::Lease& lease : leases) {
        // A user cache's lease is its lock file; a shared one's, the entry's directory.
        struct stat st {};
        if (::fstat(lease.fd(), &st) != 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) || st.st_dev != root_st.st_dev)
            throw Error("a cache lease of this job lies on another file system than " + local_root(r) +
                        " (something is mounted in " + l.cache_dir + "); unmount it, or stage with --aihpc-stage-mode=private");
        fds.push_back(lease.fd());
    }
    // The leases stay with a process of the user's own until the step ends; slurmstepd
    // gets only its pipe and pidfd (lease_holder.hpp). The descriptors go first:
    // slurmstepd takes the result as the sign that all arrived.
    std::optional<stage::LeaseHolder> holder;
    if (!fds.empty()) holder = stage::hold_leases(fds);
    channel.send_fds(holder ? std::vector<int>{holder->release.get(), holder->pidfd.get()} : std::vector<int>{});
    channel.result(stage::format_job_items(recorded));
}

namespace {

// As root, before the stager's second pass: the items its first pass found missing from
// the shared cache go there, each read as shared_user (shared_cache.hpp). One that
// cannot be shared is said so, and the second pass takes it into the user's cache.
void stage_shared_items(const NodeRequest& r, const HelperChannel& channel) {
    if (r.shared_items.empty()) return;
    std::optional<UserIds> reader = user_ids_of_name(r.site.shared_user);
    if (!reader || reader->uid == 0) {
        channel.note("stage-in: the shared cache is not used: shared_user " + r.site.shared_user +
                     " is no unprivileged user on " + r.node + "; ask the administrators to fix the site key shared_user");
        return;
    }
    std::string root_path = local_root(r);
    UniqueFd root = stage::open_local_root(root_path, false);
    std::uint64_t fs_bytes = filesystem_bytes(root.get());
    for (const config::StageItem& item : r.options.stage) {
        if (std::find(r.shared_items.begin(), r.shared_items.end(), item.name) == r.shared_items.end()) continue;
        stage::SharedStageRequest request;
        request.local_root = root_path;
        request.src = item.src;
        request.base_dir = r.submit_dir;
        request.allow = r.site.stage_allow;
        request.threads = stage_threads(r.site);
        request.reader = *reader;
        request.reader_name = r.site.shared_user;
        request.reader_program = "/proc/self/exe";
        request.cache_max = r.site.cache_max.resolve(fs_bytes);
        request.cache_low = r.site.cache_low_bytes(fs_bytes);
        request.shared_max = r.site.cache_shared_max_bytes(fs_bytes);
        request.inode_cap = r.site.cache_user_inodes;
        stage::SharedStageResult result = stage::stage_into_shared_cache(request);
        channel.note("stage-in " + item.name + ": " + result.note);
    }
}

}  // namespace

// As root, then as the user, in one start of this program: prepare, then the stage-in
// with prepare's limits, after dropping to the job's user for good. A step's hit in the
// cache thus costs one exec, not two. The result is stage-in's.
void prepare_stage_in(NodeRequest& r, const HelperChannel& channel) {
    r.limits = prepare_node(r);
    stage_shared_items(r, channel);
    become_job_user(r);
    stage_in(r, channel);
}

// As root, after the stage-in: each squashfs item whose mount the stager found missing
// or dead is mounted for the user (squashfs_mount.hpp), at the job's stage dir as root
// resolves it, never at a path the user wrote.
void mount_images(const NodeRequest& r, const HelperChannel& channel) {
    if (r.uid == 0) throw Error("refusing to mount images for a job of uid 0");
    std::string root_path = local_root(r);
    char real[PATH_MAX];
    if (!::realpath(root_path.c_str(), real)) throw_errno("cannot resolve local_root " + root_path);
    std::string job_dir = stage::job_layout(real, r.job_id, r.uid).stage_dir;
    std::set<std::string> images;
    for (const config::StageItem& item : r.options.stage)
        if (stage::is_squashfs_name(item.src)) images.insert(item.name);
    for (const std::string& name : r.mounts) {
        if (!images.contains(name)) throw Error(name + " is not a squashfs item of this job, so it is not mounted");
        stage::mount_image_for_user(job_dir, name, {r.uid, r.gid, r.groups});
        channel.note("stage-in " + name + ": mounted with squashfuse at " + stage::join_path(job_dir, name));
    }
    channel.result("mounted");
}

// As the user, from slurmstepd once the step's tasks on this node ended: the stage-out
// that the last task did not finish, because it was killed first or never got to it.
void stage_out(const NodeRequest& r, const HelperChannel& channel) {
    stage::JobLayout l = layout(r);
    UniqueFd meta = stage::open_dir(l.meta_dir);
    if (meta_has(meta.get(), stage::delivered_marker(r.step_id))) return channel.result("delivered");
    if (meta_has(meta.get(), stage::stage_out_failed_marker_of(r.step_id))) return channel.result("failed");
    stage::DeliveryReport report =
        stage::deliver_step(l, planned_deliveries(r), r.step_id, job_text(r), stage_threads(r.site));
    for (const std::string& note : report.notes) channel.note(note);
    if (!report.failures.empty())
        throw Error("stage-out failed: " + join(report.failures, "; ") + "; the stage dir " + l.stage_dir + " is kept");
    channel.result("delivered");
}

// As root, once the step's stage-out delivered: root's record of it, after the renames.
void delivered(const NodeRequest& r, const HelperChannel&) { stage::record_delivered(local_root(r), r.job_id, r.step_id); }

// As the user: the image resolved (its real path, kind and runtime) and its content hash,
// through the user's digest cache. slurmstepd itself never stats, resolves or reads the
// user's image, which may lie on a hung file system or a user's FUSE mount.
// Result: format_digest_result.
void digest(const NodeRequest& r, const HelperChannel& channel) {
    std::vector<std::string> dirs = container::runtime_search_path(r.site, std::getenv("PATH"));
    auto installed = [&](container::Runtime rt) {
        return r.any_runtime || container::find_program(container::runtime_program(rt), dirs).has_value();
    };
    container::ResolvedImage image = container::check_image(r.options.container, r.site, r.submit_dir, installed);
    container::DigestCacheSettings cache;
    if (!r.no_cache && r.uid != 0) cache.dir = layout(r).cache_dir + "/digests";
    container::ImageDigest d = container::image_digest(image, cache, r.no_cache ? "the user's cache directory is missing" : "");
    channel.result(format_digest_result(image, d));
}

// As the job's user, from its epilog: the stage-out that the job's end cut short (a time
// limit, a cancel, a killed slurmstepd), finished from root's record with the site's
// epilog_deliver_timeout as deadline. What is not delivered by then stays kept, and
// `aihpc-stage deliver` finishes it. Result: delivered, kept, or nothing (no record of
// this user's ended job).
void deliver_kept(const NodeRequest& r, const HelperChannel& channel) {
    UniqueFd root = stage::open_dir(local_root(r));
    std::optional<stage::KeptJob> kept = stage::kept_job_at(root.get(), r.job_id);
    if (!kept || !kept->ended || kept->uid != ::getuid()) return channel.result("nothing");
    stage::KeptJobDelivery delivery = stage::deliver_kept_job(layout(r), *kept, stage_threads(r.site));
    for (const auto& [step, report] : delivery.steps) {
        for (const std::string& dest : report.delivered)
            channel.note("the epilog delivered " +
                         (step == batch_step_id ? std::string("the batch step") : "step " + std::to_string(step)) + " to " + dest);
        for (const std::string& note : report.notes) channel.note(note);
        for (const std::string& failure : report.failures) channel.note(failure);
    }
    channel.result(delivery.complete() ? "delivered" : "kept");
}

// As root, from the job epilog: the job's stage dirs go to trash/ at once (unless root
// kept them after a failed stage-out), and are removed within a time budget; what is
// left goes with the next epilog.
void epilog(const NodeRequest& r, const HelperChannel& channel) {
    std::string root_path = local_root(r);
    // The job's squashfs mounts go first (their squashfuse may be dead or alive): a
    // mount point cannot be removed, and root may not even look into a user's FUSE mount.
    if (char real[PATH_MAX]; ::realpath(root_path.c_str(), real))
        for (const std::string& stayed : stage::unmount_below(stage::job_layout(real, r.job_id, 0).stage_dir))
            channel.note("job " + job_text(r) + ": could not unmount " + stayed);
    stage::record_shared_uses(root_path, r.job_id);
    stage::JobCleanup cleanup =
        stage::retire_job_dirs(root_path, r.job_id, r.site.keep_failed_days, std::chrono::seconds(2));
    // The job's hits moved its entries' last use, and evictions may have dropped some.
    announce_warm_data(r, channel);
    std::string name = job_text(r);
    if (cleanup.kept_after_failed_stage_out) {
        std::string what;
        for (const stage::KeptDelivery& d : cleanup.undelivered)
            what += (what.empty() ? "" : ", ") + d.local + " to " + d.dest;
        std::string text = "stage-out of " + (what.empty() ? std::string("the job") : what) + " was not delivered; " +
                           root_path + "/jobs/" + name + " is kept on " + r.node + " for " +
                           std::to_string(r.site.keep_failed_days) + " days: run 'aihpc-stage deliver " + name +
                           "' in a job on " + r.node + " to finish it";
        channel.note("job " + name + ": " + text);
        // The epilog's own try, as the user (deliver-kept), within epilog_deliver_timeout.
        UniqueFd root = stage::open_dir(root_path);
        std::optional<stage::KeptJob> kept = stage::kept_job_at(root.get(), r.job_id);
        if (kept && kept->ended && !cleanup.undelivered.empty() && r.site.epilog_deliver_timeout_s > 0)
            channel.result("deliver " + std::to_string(kept->uid));
    } else if (!cleanup.error.empty()) {
        channel.note("job " + name + ": could not remove all of its stage dir: " + cleanup.error);
    }
    for (std::uint32_t later : cleanup.delivered_later)
        channel.note("job " + std::to_string(later) + ": its kept stage dir was delivered (aihpc-stage deliver) and is removed");
    for (std::uint32_t expired : cleanup.expired)
        channel.note("job " + std::to_string(expired) + ": its kept stage dir expired (keep_failed_days) and is removed");
}

}  // namespace aihpc::stage::node
