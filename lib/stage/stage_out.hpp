// Stage-out: copies LOCAL (below the job's stage dir) to DEST beside-then-rename, never
// replacing an existing DEST. The local data is never removed here.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/error.hpp"
#include "stage/node_layout.hpp"
#include "stage/tree_copy.hpp"

namespace aihpc::stage {

// Pure: DEST with %j (job id), %n (node name) and %% expanded. Throws aihpc::Error on
// any other %-sequence.
std::string expand_dest(const std::string& dest, const std::string& job_id, const std::string& node);

// Pure: where the copy goes. DEST when free, else DEST.<jobid>; nullopt when both exist.
struct OutTarget {
    std::string path;
    bool diverted = false;  // DEST existed, so the copy went to DEST.<jobid>
};
std::optional<OutTarget> choose_out_target(const std::string& dest, const std::string& job_id,
                                           const std::function<bool(const std::string&)>& exists);

// LOCAL does not exist: the job wrote nothing there, so there is nothing to keep.
class NothingToStageOut : public Error {
public:
    using Error::Error;
};

struct StageOutResult {
    std::string local;
    std::string dest;   // where the data now is
    bool diverted = false;
    std::uint64_t files = 0;
    std::uint64_t bytes = 0;
    double seconds = 0;
    std::string message() const;  // one line for the user: says when DEST existed
};

// Pure: the one-line JSON object aihpc-stage out --json prints for an item.
std::string stage_out_result_json(const StageOutResult& result);

// Copies local_path (a file or a tree; symlinks are copied as links) to the target for
// `dest` (already expanded). The copy is written beside the target under a hidden temp
// name, flushed to disk (fsync of its files and directories, in parallel) and renamed
// with RENAME_NOREPLACE, and the rename is
// flushed too (fsync of the parent), so the local data may be removed once this
// returns. On failure the temp is removed and the Error names local_path as kept.
StageOutResult stage_out(const std::string& local_path, const std::string& dest, const std::string& job_id,
                         unsigned threads, CopyProgress* progress = nullptr);

// What one delivery of a step's --aihpc-stage-out did.
struct DeliveryReport {
    std::vector<std::string> notes;     // diverted to DEST.<jobid>, nothing at LOCAL
    std::vector<std::string> failures;  // one line per item that did not arrive
    std::vector<std::string> delivered; // the DEST of each item delivered by this call
    bool complete() const { return failures.empty(); }
};

// As the job's user: each item of `step` that meta_dir does not mark delivered, copied
// from the stage dir to its DEST with stage_out(). After each rename at DEST the item is
// marked (delivered_marker(step, i)), and the step once all are (delivered_marker(step)),
// so a try cut short is taken up where it stopped and never redone over a DEST it made.
// A LOCAL that does not exist has nothing to deliver, and counts as delivered. On a
// failure, meta_dir/stage-out-failed (and its .<step> twin) say why.
// With `clear_interrupted`, copies that an earlier try of this job left beside DEST
// under their hidden temporary names are removed first: only for a job that has ended.
DeliveryReport deliver_step(const JobLayout& layout, const std::vector<KeptDelivery>& deliveries, std::uint32_t step,
                            const std::string& job_id, unsigned threads, bool clear_interrupted = false);

// As the job's user, once the job has ended: each step that root's record keeps
// undelivered, delivered with deliver_step (clearing the copies an earlier try left
// beside DEST). The one delivery both `aihpc-stage deliver` and the epilog run.
struct KeptJobDelivery {
    std::vector<std::pair<std::uint32_t, DeliveryReport>> steps;  // (step, its report)
    bool complete() const {
        for (const auto& [step, report] : steps)
            if (!report.complete()) return false;
        return true;
    }
};
KeptJobDelivery deliver_kept_job(const JobLayout& layout, const KeptJob& kept, unsigned threads);

// The hidden name a copy to DEST is written under, and its prefix for one job.
std::string interrupted_copy_prefix(const std::string& dest_base, const std::string& job_id);

}  // namespace aihpc::stage
