// The rows of a sweep: one per task that left a result, read from SWEEP/results one file
// at a time (each parsed, reduced to its row and freed), with the parameters joined from
// tasks.jsonl through the TaskIndex. A task fails if any phase ended with a non-zero
// exit code, as scan_results() counts it.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "sweep/results.hpp"
#include "sweep/spec.hpp"
#include "sweep/sweep_dir.hpp"

namespace aihpc::collect {

enum class TaskState : std::uint8_t { done, failed, missing };
const char* task_state_name(TaskState state);

// What sacct says about the array element that ran a task (--sacct).
struct SacctRecord {
    std::string state, exit_code, elapsed, max_rss;
};

struct ResultRow {
    std::uint64_t index = 0;
    TaskState state = TaskState::missing;
    std::string phase;                 // the phase whose result the row shows
    std::optional<long> exit_code;
    std::optional<double> elapsed_s;
    std::string node, start, end, job_id, array_job_id, array_task_id;
    sweep::Assignment params;          // from tasks.jsonl
    sweep::Assignment metrics;         // values as JSON text and plain text; NaN and
                                       // infinities are null in JSON and NaN as text
    std::vector<std::string> non_finite;  // the metrics that were NaN or infinite
    // Why a failed task failed: the signal that ended it, why it could not start, and
    // the last lines of its stderr.
    std::string signal, error;
    std::vector<std::string> stderr_tail;
    std::optional<SacctRecord> sacct;
    std::size_t replicates = 0;  // an aggregated row: the successful replicates it stands for
};

// One result document as a row (index, state and params are the caller's), read
// strictly: malformed text is an aihpc::Error naming the path. The text a fuzzer feeds.
ResultRow parse_result(std::string_view text);

// The same row read through a full JSON tree: what parse_result falls back to for any
// document its single pass is not sure of, and the reference the tests hold it to.
ResultRow parse_result_tree(std::string_view text);

// The params of a line of tasks.jsonl, as sweep::parse_task_line reads them (a single
// pass, that reader for any line it is unsure of).
sweep::Assignment task_params(std::string_view line);

// A value of a row's cell as a number, when it is one.
std::optional<double> number_of(const sweep::Scalar& value);

struct ReadOptions {
    bool include_missing = false;  // a row for every task without a result, too
    // The phase whose results the rows show ("": the last). Its metrics are the ones
    // collected; a task counts as done when that phase and every one before it succeeded,
    // whatever the later ones did (--phase NAME).
    std::string phase;
};

struct ResultTable {
    std::vector<ResultRow> rows;          // by index unless sorted
    std::vector<std::string> param_names; // in spec order
    std::vector<std::string> metric_names;// in order of first appearance by index
    std::uint64_t tasks = 0;
    std::set<std::uint64_t> done, failed; // over every task, whatever rows are kept
    std::vector<sweep::UnreadableResult> unreadable;  // result files no command takes
    bool multi_phase = false;
    std::string phase;                    // the phase whose results the rows show
    bool with_sacct = false;
    bool aggregated = false;              // rows of configurations (aggregate_replicates)
    // What columns() gives the writers: only these columns, in this order (--columns;
    // empty: all), and floats of parameters and metrics with this many significant
    // digits (--precision; 0: exact).
    std::vector<std::string> shown_columns;
    int precision = 0;

    std::set<std::uint64_t> missing() const;
    // Failed and missing indices: what `aihpc-sweep resubmit` would run again.
    std::set<std::uint64_t> failed_or_missing() const;
};

ResultTable read_results(const sweep::SweepDir& sweep, const ReadOptions& options = {});

// The threads that read results (at most 8).
unsigned reader_threads();

// Hands every row of a sweep to add(worker, row) as it is read, from up to
// reader_threads() threads at once (worker is the calling thread's number, rows come in
// no order); the rows of earlier failed phases and, with include_missing, of tasks without
// a result come last, from worker 0. Returns each task's state (missing: no result).
// What read_results builds its table from, and what streams rows without keeping them.
// Result files that sweep::judge_result (or the row reader) refuses go to `unreadable`,
// in no order; their tasks count as missing.
using RowConsumer = std::function<void(unsigned worker, ResultRow&& row)>;
std::vector<TaskState> for_each_row(const sweep::SweepDir& sweep, bool include_missing, const RowConsumer& add,
                                    std::vector<sweep::UnreadableResult>* unreadable = nullptr, const std::string& phase = "");

// The rows a writer shows, in order. row(k) stays valid until the next call.
class RowSource {
public:
    virtual ~RowSource() = default;
    virtual std::size_t size() const = 0;
    virtual const ResultRow& row(std::size_t k) const = 0;
};

// The rows of a ResultTable, as they are.
class TableRows : public RowSource {
public:
    explicit TableRows(const ResultTable& table) : table_(table) {}
    std::size_t size() const override { return table_.rows.size(); }
    const ResultRow& row(std::size_t k) const override { return table_.rows[k]; }

private:
    const ResultTable& table_;
};

// --sort METRIC[:min|max] (read with sweep::parse_metric_direction): a metric, a
// parameter, or one of index, exit_code, elapsed_s.
struct SortKey {
    std::string column;
    bool maximize = false;
};

// Where --sort reads its column in a row: a metric when any row reports one of that name,
// else a parameter, else one of the built-in columns.
enum class SortSource { none, metric, param, index, exit_code, elapsed_s };

// Sorts by the key (rows without a numeric value last, ties by index). By a metric, only
// the rows of tasks that succeeded are ranked: failed and missing ones come after them.
// Returns how the column was read (none: no row to sort).
SortSource sort_rows(ResultTable& table, const SortKey& key);

// The reading of a column that is not a metric's: param, a built-in one, or none.
SortSource fixed_sort_source(const ResultTable& header, const std::string& column);
std::optional<double> sort_value(const ResultRow& row, SortSource source, const std::string& column);
// The error of a sort column no reading fits.
// `phase`: the phase whose results were read, in a sweep of several ("" otherwise).
[[noreturn]] void throw_unknown_sort_column(const std::string& column, const std::vector<std::string>& metric_names,
                                            const std::string& phase = "");
// Keeps the first `top` rows when top > 0; with successes_only (a ranking by a metric),
// only rows of tasks that succeeded: the best of a sweep is never a failed run.
void keep_top(ResultTable& table, std::size_t top, bool successes_only = false);

// --aggregate mean|median: the rows of tasks that succeeded become one row per
// configuration (its parameters less `repeat`, at its first replicate's index), each
// numeric metric and elapsed_s the mean or median over its replicates, with a
// `replicates` column. Rows of failed and missing tasks stay as they are, after them.
// A sweep without a repeat axis has one replicate per configuration.
void aggregate_replicates(ResultTable& table, sweep::Aggregate how, bool replicates);

// The columns every writer shows, and one cell's text ("" when the row has none).
struct Column {
    enum Kind { index, state, phase, param, replicates, metric, exit_code, elapsed_s, node, sacct_state, sacct_exit_code, sacct_elapsed, sacct_max_rss };
    Column(Kind k, std::string header, std::string param_or_metric)
        : kind(k), name(std::move(header)), key(std::move(param_or_metric)) {}
    Kind kind;
    std::string name;    // header
    std::string key;     // parameter or metric name
    int precision = 0;   // significant digits of a float in cell_text (0: exact)
};
// Throws aihpc::Error for a name of shown_columns that is no column, naming those there are.
std::vector<Column> columns(const ResultTable& table);
std::string cell_text(const ResultRow& row, const Column& column);
// The cell as JSON (numbers stay numbers; "null" when absent).
std::string cell_json(const ResultRow& row, const Column& column);

}  // namespace aihpc::collect
