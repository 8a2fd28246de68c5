// What the results/ folder says about a sweep's tasks, from the result files alone.
#pragma once
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "sweep/sweep_dir.hpp"

namespace aihpc::sweep {

// What one result file says about its task: the one verdict that every command (status,
// --failed, --all, --sort, resubmit, refine) gives it.
enum class Verdict : std::uint8_t {
    done,        // exit code 0
    failed,      // a non-zero exit code
    unreadable,  // not a whole JSON object, no exit_code, or the result of another task:
                 // no result at all, so the task counts as missing (and is warned of)
};

struct ResultVerdict {
    Verdict verdict = Verdict::unreadable;
    std::optional<long> exit_code;
    std::string problem;  // unreadable: what is wrong, for the warning
};

// The verdict on `text`, the content of the result file of task `index`. It checks the
// whole document's syntax (strict JSON; bare NaN and Infinity, as Python writes them,
// are numbers) in one pass without building it, the top-level index against the file
// name, and the top-level exit_code.
ResultVerdict judge_result(std::string_view text, std::uint64_t index);

// A result file that could not be taken as its task's result, and why.
struct UnreadableResult {
    std::string path;
    std::string problem;
};

// The warning lines for unreadable result files (the first few, then a count), each
// starting with `tool`: ("aihpc-collect: warning: ...").
std::string unreadable_warnings(const std::string& tool, std::vector<UnreadableResult> unreadable);

struct ResultScan {
    std::set<std::uint64_t> done;    // the last phase ended with exit code 0
    std::set<std::uint64_t> failed;  // some phase ended with a non-zero exit code
    std::vector<UnreadableResult> unreadable;  // their tasks count as missing
    std::set<std::uint64_t> missing(std::uint64_t tasks) const;
};

ResultScan scan_results(const SweepDir& sweep);

// The top-level exit_code of one result document, or nullopt if it has none; a
// parameter or metric named exit_code is not it.
std::optional<long> result_exit_code(std::string_view text);

// Replicates (the tasks of a repeat axis that differ only in `repeat`) taken together:
// none keeps each task on its own (a ranking takes each configuration's best replicate),
// mean and median give a configuration the mean or median of its replicates' metric.
enum class Aggregate : std::uint8_t { none, mean, median };
Aggregate parse_aggregate(const std::string& text);  // "mean" or "median"; throws otherwise
double aggregate_of(std::vector<double> values, Aggregate how);  // values not empty; none: the first

// Whether the spec has a repeat axis anywhere: then the parameter `repeat` numbers
// replicates, and is no part of a configuration.
bool has_repeat_axis(const SweepSpec& spec);

// A configuration's identity: its parameters as JSON text, `repeat` left out when it
// numbers replicates.
std::string configuration_key(const Assignment& params, bool replicates);

// Slurm array syntax, "3,7,12-15", into indices; throws on anything else.
std::set<std::uint64_t> parse_index_list(const std::string& text);

}  // namespace aihpc::sweep
