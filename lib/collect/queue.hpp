// What Slurm says about a sweep's arrays: squeue for the tasks still queued or running
// (--status, --watch) and sacct for the accounting of finished ones (--sacct). The
// parsers and the counting are pure; query_* run the Slurm commands.
#pragma once
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "collect/result_table.hpp"
#include "sweep/submit_plan.hpp"
#include "sweep/sweep_dir.hpp"

namespace aihpc::collect {

// The arrays chunks.json records (every phase, chunk and resubmission), in order; empty
// when the sweep was never submitted.
std::vector<sweep::ArraySubmission> read_arrays(const std::string& sweep_dir);

enum class QueueState { pending, running };

// Array elements in the queue: (array job id, array task id) -> state.
using QueueSnapshot = std::map<std::pair<std::string, std::uint64_t>, QueueState>;

// `squeue -h -r -o '%F %K %T'` output.
QueueSnapshot parse_squeue(const std::string& text);

struct StatusCounts {
    std::uint64_t tasks = 0, done = 0, failed = 0, missing = 0, running = 0, pending = 0;
    bool queued() const { return running + pending > 0; }
};

// A task with a result is done or failed; a task without one is running or pending when
// an element of one of its arrays is in the queue, else missing.
StatusCounts count_status(std::uint64_t tasks, const std::set<std::uint64_t>& done, const std::set<std::uint64_t>& failed,
                          const std::vector<sweep::ArraySubmission>& arrays, const QueueSnapshot& queue);

std::string status_text(const StatusCounts& counts);  // aligned "name count" lines
std::string status_json(const StatusCounts& counts);

// One squeue call per group of at most `group` array jobs.
QueueSnapshot query_queue(const std::vector<sweep::ArraySubmission>& arrays, std::size_t group = 100);

// sacct records keyed like the queue: (array job id, array task id).
using SacctTable = std::map<std::pair<std::string, std::uint64_t>, SacctRecord>;

// `sacct -n -P -o JobID,State,ExitCode,Elapsed,MaxRSS` output: the element's line gives
// State, ExitCode and Elapsed; its steps' lines the largest MaxRSS.
SacctTable parse_sacct(const std::string& text);

// Bytes of a MaxRSS value (1234K, 2.5M, 0); 0 when empty.
double rss_bytes(const std::string& text);

// Adds sacct's record to every row that names its array element, or that one of the
// last phase's arrays ran; marks the table as carrying sacct columns.
void join_sacct(ResultTable& table, const SacctTable& sacct, const std::vector<sweep::ArraySubmission>& arrays,
                const std::string& last_phase);

// One sacct call per array job the rows ran in; throws aihpc::Error when sacct fails.
SacctTable query_sacct(const ResultTable& table, const std::vector<sweep::ArraySubmission>& arrays, const std::string& last_phase);

}  // namespace aihpc::collect
