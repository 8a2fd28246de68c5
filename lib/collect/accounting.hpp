// Why a sweep's tasks ended badly, as Slurm's accounting recorded it (aihpc-collect
// --why): every run of each array element from `sacct --duplicates` (a preempted and
// requeued job has one record per run), joined to the tasks. The parser, the reasons
// and the join are pure; query_accounting runs sacct.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "collect/result_table.hpp"
#include "sweep/spec.hpp"
#include "sweep/submit_plan.hpp"
#include "sweep/sweep_dir.hpp"

namespace aihpc::collect {

// The sacct fields parse_accounting reads, in this order (AdminComment last: it is free
// text and may hold the separator).
extern const char* const kAccountingFields;

// One run of an array element.
struct AccountingRun {
    std::string job_id;                    // JobIDRaw: the element's own job id
    std::string state;                     // its first word: "CANCELLED by 1001" is CANCELLED
    std::string exit_code, elapsed, max_rss, req_mem, node_list, comment;
    std::vector<std::string> step_states;  // the first word of each step's state
};

// (array job id, array task id) -> the element's runs, oldest first.
using AccountingTable = std::map<std::pair<std::string, std::uint64_t>, std::vector<AccountingRun>>;

// `sacct --duplicates --noheader --parsable2 -o <kAccountingFields>` output. A step's line
// (JOB_TASK.batch, .extern, .0) belongs to the run whose line came last before it; it
// adds its state and raises the run's MaxRSS. Lines that are not array elements are
// skipped.
AccountingTable parse_accounting(const std::string& text);

// Why a run ended badly: TIMEOUT, OUT_OF_MEMORY, PREEMPTED, NODE_FAIL, CANCELLED,
// FAILED, DEADLINE, BOOT_FAIL or REQUEUED; "" for a run that completed, or that is still
// pending or running. OUT_OF_MEMORY is the run's state or any of its steps' (the kernel
// killed it in its cgroup), or a run that failed or was cancelled with a MaxRSS over its
// ReqMem (jobacct_gather's OverMemoryKill, where Slurm records no OUT_OF_MEMORY).
std::string run_reason(const AccountingRun& run);

// What accounting says about one task: the element of the phase that ended it badly.
struct TaskAccounting {
    std::string phase;
    std::string array_job_id;
    std::uint64_t array_task_id = 0;
    std::vector<AccountingRun> runs;
};

// The element of each task in `indices` (failed or missing): the one its result names,
// else, phase by phase in `phases` order, the element of the latest array that ran the
// task, the first whose runs include a bad one (else the last one found). Tasks no
// array ran, or that sacct does not know, are left out.
std::map<std::uint64_t, TaskAccounting> join_accounting(const std::set<std::uint64_t>& indices, const ResultTable& table,
                                                        const std::vector<sweep::ArraySubmission>& arrays,
                                                        const std::vector<std::string>& phases, const AccountingTable& accounting);

// The array jobs join_accounting may look up for these tasks.
std::set<std::string> accounting_jobs(const std::set<std::uint64_t>& indices, const ResultTable& table,
                                      const std::vector<sweep::ArraySubmission>& arrays);

// The lines --why prints under a task, each starting with two spaces:
//   "  sacct: TIMEOUT after 00:01:31 on n1, exit 0:15, MaxRSS 1.2M (job 12_0, 13)"
//   "  sacct: PREEMPTED after 00:00:07 on n2 (job 12_3, 16), requeued: now PENDING"
//   "  kept: ..." when `stage_out` and the last bad run ran on a node; "  comment: ..."
std::vector<std::string> accounting_lines(const TaskAccounting& task, bool stage_out);

// Whether a phase's jobs stage out: an --aihpc-stage-out option among the spec's or the
// phase's sbatch or aihpc words.
bool phase_stages_out(const sweep::SweepSpec& spec, const std::string& phase);

// Runs `sacct` for these jobs (100 ids per call). When sacct is missing or accounting is
// off, returns nothing and sets `note` to one line saying so.
AccountingTable query_accounting(const std::set<std::string>& jobs, std::string& note);

// All of it for a sweep: the lines under each of `tasks` (failed or missing) that
// accounting knows, from chunks.json's arrays and one sacct call per 100 array jobs.
// `note` as query_accounting sets it.
std::map<std::uint64_t, std::vector<std::string>> why_lines(const sweep::SweepDir& sweep, const ResultTable& table,
                                                            const std::set<std::uint64_t>& tasks, std::string& note);

}  // namespace aihpc::collect
