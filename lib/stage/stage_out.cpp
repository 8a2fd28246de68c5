#include "stage/stage_out.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/json.hpp"
#include "common/text.hpp"
#include "stage/fs.hpp"
#include "stage/manifest.hpp"
#include "stage/tree_flush.hpp"

namespace aihpc::stage {

std::string stage_out_result_json(const StageOutResult& result) {
    char numbers[160];
    std::snprintf(numbers, sizeof numbers, "\"files\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"seconds\": %.6f", result.files,
                  result.bytes, result.seconds);
    return "{\"local\": " + json_quote(result.local) + ", \"dest\": " + json_quote(result.dest) +
           ", \"diverted\": " + (result.diverted ? "true" : "false") + ", " + numbers + "}";
}

std::string expand_dest(const std::string& dest, const std::string& job_id, const std::string& node) {
    std::string out;
    for (std::size_t i = 0; i < dest.size(); ++i) {
        if (dest[i] != '%') {
            out += dest[i];
            continue;
        }
        char next = i + 1 < dest.size() ? dest[i + 1] : '\0';
        if (next == 'j') out += job_id;
        else if (next == 'n') out += node;
        else if (next == '%') out += '%';
        else throw Error("stage-out destination " + dest + ": only %j, %n and %% may follow '%'");
        ++i;
    }
    return out;
}

std::optional<OutTarget> choose_out_target(const std::string& dest, const std::string& job_id,
                                           const std::function<bool(const std::string&)>& exists) {
    if (!exists(dest)) return OutTarget{dest, false};
    std::string diverted = dest + "." + job_id;
    if (!exists(diverted)) return OutTarget{diverted, true};
    return std::nullopt;
}

std::string StageOutResult::message() const {
    if (diverted)
        return "stage-out of " + local + ": " + dest.substr(0, dest.rfind('.')) + " already exists, so the copy went to " + dest;
    return "stage-out of " + local + " to " + dest + " done";
}

StageOutResult stage_out(const std::string& local_path, const std::string& dest, const std::string& job_id,
                         unsigned threads, CopyProgress* progress) {
    auto started = std::chrono::steady_clock::now();
    StageOutResult result;
    result.local = local_path;
    auto kept = [&](const std::string& why) {
        return Error("stage-out of " + local_path + " to " + dest + " failed: " + why + "; the local data is kept in " +
                     local_path);
    };
    try {
        // LOCAL itself may be a staged item's link; below it nothing is followed.
        int src = ::open(local_path.c_str(), O_RDONLY | O_CLOEXEC);
        if (src < 0 && errno == ENOENT)
            // Not a failure to keep anything: there is nothing to keep. Said apart, so the
            // message does not point at data that does not exist.
            throw NothingToStageOut("stage-out of " + local_path + " to " + dest + ": " + local_path +
                                    " does not exist, so nothing was copied; check the LOCAL name "
                                    "(it is relative to $AIHPC_STAGE_DIR)");
        if (src < 0) throw_errno("cannot open " + local_path);
        UniqueFd src_fd(src);
        struct stat st {};
        if (::fstat(src_fd.get(), &st) != 0) throw_errno("cannot stat " + local_path);
        Manifest manifest = S_ISDIR(st.st_mode) ? scan_tree(src_fd.get(), local_path) : scan_file(src_fd.get(), local_path);

        auto exists = [](const std::string& path) {
            struct stat probe {};
            return ::lstat(path.c_str(), &probe) == 0 || errno != ENOENT;
        };
        auto target = choose_out_target(dest, job_id, exists);
        if (!target) throw Error("both " + dest + " and " + dest + "." + job_id + " exist, and neither is replaced");
        std::string parent = dirname_of(target->path);
        UniqueFd parent_fd(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!parent_fd) throw_errno("cannot open the destination directory " + parent);
        std::string base = basename_of(target->path);
        std::string temp = interrupted_copy_prefix(base, job_id) + unique_suffix();
        TemporaryTree copy(parent_fd.get(), temp);

        CopyOptions options;
        options.threads = threads;
        options.progress = progress;
        CopyStats stats = copy_item(src_fd.get(), manifest, parent_fd.get(), temp, options, local_path, join_path(parent, temp));
        // The epilog deletes the local copy once this returns: the copy's data and
        // metadata must be on disk before its name appears, and the name after. Only the
        // copy's own files and directories are flushed, in parallel.
        fsync_item_at(parent_fd.get(), temp, std::max(threads, fsync_threads), join_path(parent, temp));
        if (::renameat2(parent_fd.get(), temp.c_str(), parent_fd.get(), base.c_str(), RENAME_NOREPLACE) != 0) {
            if (errno != EEXIST || target->diverted) throw_errno("cannot rename the copy to " + target->path);
            // DEST appeared meanwhile: divert, never replace.
            target = OutTarget{dest + "." + job_id, true};
            base = basename_of(target->path);
            if (::renameat2(parent_fd.get(), temp.c_str(), parent_fd.get(), base.c_str(), RENAME_NOREPLACE) != 0)
                throw_errno("cannot rename the copy to " + target->path);
        }
        copy.keep();
        if (::fsync(parent_fd.get()) != 0)
            throw_errno("cannot flush the directory " + parent + " after renaming the copy to " + target->path);
        result.dest = target->path;
        result.diverted = target->diverted;
        result.files = stats.files;
        result.bytes = stats.bytes;
    } catch (const NothingToStageOut&) {
        throw;
    } catch (const Error& e) {
        throw kept(e.what());
    }
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    return result;
}

std::string interrupted_copy_prefix(const std::string& dest_base, const std::string& job_id) {
    return "." + dest_base + ".aihpc-out." + job_id + ".";
}

namespace {

// Removes what earlier tries of this job left beside DEST: hidden copies that were never
// renamed. Nothing else in the directory is touched.
void clear_interrupted_copies(const std::string& dest, const std::string& job_id) {
    std::string parent = dirname_of(dest);
    UniqueFd dir(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir) return;
    std::string prefix = interrupted_copy_prefix(basename_of(dest), job_id);
    std::vector<std::string> found;
    {
        UniqueFd listing(::openat(dir.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!listing) return;
        DirectoryNames names(listing.get(), parent);
        for (std::size_t i = 0; i < names.size(); ++i)
            if (names[i].rfind(prefix, 0) == 0) found.emplace_back(names[i]);
    }
    for (const std::string& name : found) remove_tree_at(dir.get(), name, nullptr);
}

}  // namespace

DeliveryReport deliver_step(const JobLayout& layout, const std::vector<KeptDelivery>& deliveries, std::uint32_t step,
                            const std::string& job_id, unsigned threads, bool clear_interrupted) {
    UniqueFd meta = open_dir(layout.meta_dir);
    auto marked = [&](const std::string& name) {
        struct stat st {};
        return ::fstatat(meta.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
    };
    auto mark = [&](const std::string& name, const std::string& text) {
        write_file_atomic_at(meta.get(), name, text, 0600, join_path(layout.meta_dir, name));
    };
    DeliveryReport report;
    std::size_t index = 0;
    for (const KeptDelivery& item : deliveries) {
        if (item.step != step) continue;
        std::size_t i = index++;
        if (marked(delivered_marker(step, i))) continue;
        try {
            if (clear_interrupted) clear_interrupted_copies(item.dest, job_id);
            StageOutResult result = stage_out(join_path(layout.stage_dir, item.local), item.dest, job_id, threads);
            if (result.diverted) report.notes.push_back(result.message());
            mark(delivered_marker(step, i), result.dest + "\n");
            report.delivered.push_back(result.dest);
        } catch (const NothingToStageOut& e) {
            report.notes.push_back(e.what());  // nothing to keep, so no reason to keep the stage dir
            mark(delivered_marker(step, i), "");
        } catch (const Error& e) {
            report.failures.push_back(e.what());
        }
    }
    if (report.complete()) {
        mark(delivered_marker(step), "");
    } else {
        std::string text = join(report.failures, "\n") + "\n";
        mark(stage_out_failed_marker, text);
        mark(stage_out_failed_marker_of(step), text);
    }
    return report;
}

KeptJobDelivery deliver_kept_job(const JobLayout& layout, const KeptJob& kept, unsigned threads) {
    KeptJobDelivery result;
    std::string job = std::to_string(kept.job_id);
    for (std::uint32_t step : kept.pending_steps)
        result.steps.emplace_back(step, deliver_step(layout, kept.deliveries, step, job, threads, true));
    return result;
}

}  // namespace aihpc::stage
