#include "collect/result_table.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_set>

#include "collect/result_files.hpp"
#include "collect/result_json.hpp"
#include "common/error.hpp"
#include "common/json.hpp"
#include "sweep/results.hpp"
#include "sweep/rungs.hpp"
#include "sweep/runner.hpp"

namespace aihpc::collect {

const char* task_state_name(TaskState state) {
    switch (state) {
    case TaskState::done: return "done";
    case TaskState::failed: return "failed";
    case TaskState::missing: return "missing";
    }
    return "?";
}

std::optional<double> number_of(const sweep::Scalar& value) {
    const auto& t = value.json;
    if (t.empty() || !(t[0] == '-' || (t[0] >= '0' && t[0] <= '9'))) return std::nullopt;
    char* end = nullptr;
    double d = std::strtod(t.c_str(), &end);
    if (*end || !std::isfinite(d)) return std::nullopt;
    return d;
}

std::set<std::uint64_t> ResultTable::missing() const {
    std::set<std::uint64_t> out;
    for (std::uint64_t i = 0; i < tasks; ++i)
        if (!done.count(i) && !failed.count(i)) out.insert(out.end(), i);
    return out;
}

std::set<std::uint64_t> ResultTable::failed_or_missing() const {
    std::set<std::uint64_t> out;
    for (std::uint64_t i = 0; i < tasks; ++i)
        if (!done.count(i)) out.insert(out.end(), i);
    return out;
}

namespace {

std::string text_of(const JsonValue& v) {
    if (v.is_null()) return "";
    if (v.is_string()) return v.text();
    return v.to_json();
}

sweep::Scalar scalar_of(const JsonValue& v) {
    if (v.is_string()) return sweep::scalar_string(v.text());
    sweep::Scalar s;
    s.json = v.to_json();
    s.plain = s.json;
    return s;
}

const JsonReadOptions kLenient{true};

// Metrics as columns: a nested object's members are flattened with dots
// ({"val":{"loss":1}} is val.loss), as W&B and MLflow users name them.
void add_metrics(ResultRow& row, const std::vector<JsonValue::Member>& members, const std::string& prefix) {
    for (const auto& [key, value] : members) {
        std::string name = prefix + key;
        if (value.is_object() && !value.members().empty()) {
            add_metrics(row, value.members(), name + ".");
        } else if (value.is_non_finite()) {
            row.metrics.emplace_back(name, sweep::Scalar{"null", "NaN"});
            row.non_finite.push_back(name);
        } else {
            // A flattened name may meet a member of that very name ("val.loss" and
            // val: {loss}); the first one read is kept, as a reader of the file would see it.
            bool taken = false;
            for (auto& m : row.metrics) taken = taken || m.first == name;
            if (!taken) row.metrics.emplace_back(name, scalar_of(value));
        }
    }
}

}  // namespace

ResultRow parse_result_tree(std::string_view text) {
    // Results written before NaN became null may hold it bare, as Python writes it.
    JsonValue doc = parse_json_value(text, kLenient);
    ResultRow row;
    for (const auto& [k, v] : doc.as_object("")) {
        if (k == "index") row.index = v.as_uint64("index");
        else if (k == "exit_code") row.exit_code = static_cast<long>(v.as_int64("exit_code"));
        else if (k == "elapsed_s") row.elapsed_s = v.as_double("elapsed_s");
        else if (k == "phase") row.phase = text_of(v);
        else if (k == "node") row.node = text_of(v);
        else if (k == "start") row.start = text_of(v);
        else if (k == "end") row.end = text_of(v);
        else if (k == "job_id") row.job_id = text_of(v);
        else if (k == "array_job_id") row.array_job_id = text_of(v);
        else if (k == "array_task_id") row.array_task_id = text_of(v);
        else if (k == "signal") row.signal = text_of(v);
        else if (k == "error") row.error = text_of(v);
        else if (k == "stderr_tail") {
            for (std::size_t i = 0; const auto& line : v.as_array("stderr_tail")) row.stderr_tail.push_back(line.as_string(json_index_path("stderr_tail", i++)));
        } else if (k == "non_finite") {
            for (std::size_t i = 0; const auto& name : v.as_array("non_finite")) row.non_finite.push_back(name.as_string(json_index_path("non_finite", i++)));
        } else if (k == "metrics") {
            add_metrics(row, v.as_object("metrics"), "");
        }
    }
    // A metric listed as non-finite is null in JSON and NaN as text.
    for (auto& name : row.non_finite)
        for (auto& [m, value] : row.metrics)
            if (m == name && value.json == "null") value.plain = "NaN";
    return row;
}

sweep::Assignment task_params(std::string_view line) {
    sweep::Assignment params;
    if (scan_task_params(line, params)) return params;
    return sweep::parse_task_line(line).params;
}

ResultRow parse_result(std::string_view text) {
    ResultRow row;
    if (scan_result(text, row)) return row;
    return parse_result_tree(text);
}

namespace {

std::optional<ResultRow> row_of(std::string_view text, std::string* problem = nullptr) {
    try {
        auto row = parse_result(text);
        return row;
    } catch (const Error& e) {
        if (problem) *problem = std::string("is not a result: ") + e.what();
        return std::nullopt;  // not a whole result: the task counts as missing
    }
}

// The parameters of task i, from its line in tasks.jsonl.
sweep::Assignment params_of(const TaskLines& index, std::uint64_t i) {
    try {
        return task_params(index.line(i));
    } catch (const Error& e) {
        throw Error("task " + std::to_string(i) + ": " + e.what());
    }
}

// The tasks that failed in a phase before `shown`, each with the row of the first phase
// it failed in. Earlier phases only matter when they failed: a quick look at the exit
// code first, a full parse only then (such a task has no result of the shown phase).
template <typename CannotRead>
std::map<std::uint64_t, ResultRow> failed_before(const sweep::SweepDir& sweep, const std::string& shown,
                                                 CannotRead& cannot_read) {
    std::map<std::uint64_t, ResultRow> failed_early;
    std::mutex merge;
    for (const auto& phase : sweep.spec.phases) {
        if (phase.name == shown) break;  // the phases after the one shown do not count
        std::string path = sweep::results_dir(sweep, phase);
        auto files = list_results(path, sweep.tasks);
        ResultDir dir(path);
        if (files.empty() || !dir) continue;
        in_parallel(files.size(), [&](unsigned, std::size_t begin, std::size_t end) {
            FileText file;
            char buf[32];
            std::vector<ResultRow> found;
            for (std::size_t k = begin; k < end; ++k) {
                if (!file.read(dir.fd(), files.name(k, buf))) continue;
                auto verdict = sweep::judge_result(file.text(), files.index(k));
                if (verdict.verdict == sweep::Verdict::unreadable) cannot_read(path, files.name(k, buf), verdict.problem);
                if (verdict.verdict != sweep::Verdict::failed) continue;
                auto row = row_of(file.text());
                if (!row) row = ResultRow{};
                row->index = files.index(k);
                row->exit_code = verdict.exit_code;
                if (row->phase.empty()) row->phase = phase.name;
                row->state = TaskState::failed;
                found.push_back(std::move(*row));
            }
            std::lock_guard lock(merge);
            for (auto& row : found) failed_early.emplace(row.index, std::move(row));  // the first phase that failed wins
        });
    }
    return failed_early;
}

}  // namespace

unsigned reader_threads() { return std::max(1u, std::min(8u, std::thread::hardware_concurrency())); }

std::vector<TaskState> for_each_row(const sweep::SweepDir& sweep, bool include_missing, const RowConsumer& add_row,
                                    std::vector<sweep::UnreadableResult>* unreadable, const std::string& phase_name) {
    // A scheduled sweep's row shows its configuration at the highest rung it reached.
    std::vector<sweep::RungPlace> places;
    if (sweep.spec.schedule) places = sweep::rung_places(sweep);
    RowConsumer add = add_row;
    if (sweep.spec.schedule)
        add = [&](unsigned worker, ResultRow&& row) {
            if (row.index < places.size()) sweep::add_rung_place(row.params, places[row.index], sweep.spec.schedule->resource);
            add_row(worker, std::move(row));
        };
    const sweep::Phase& shown = sweep::find_phase(sweep.spec, phase_name);
    const auto& last = shown.name;
    std::vector<TaskState> state(sweep.tasks, TaskState::missing);
    std::mutex merge;
    auto cannot_read = [&](const std::string& dir, const char* name, std::string problem) {
        if (!unreadable) return;
        std::lock_guard lock(merge);
        unreadable->push_back({dir + "/" + name, std::move(problem)});
    };

    std::map<std::uint64_t, ResultRow> failed_early = failed_before(sweep, last, cannot_read);

    TaskLines index(sweep.path);
    std::string path = sweep::results_dir(sweep, shown);
    auto files = list_results(path, sweep.tasks);
    ResultDir dir(path);
    if (!dir && !files.empty()) throw_errno("cannot open " + path);
    in_parallel(files.size(), [&](unsigned worker, std::size_t begin, std::size_t end) {
        FileText file;
        char buf[32];
        std::size_t released = begin;
        for (std::size_t k = begin; k < end; ++k) {
            if (k - released >= 4096) {
                index.release(files.index(released), files.index(k));
                released = k;
            }
            if (!file.read(dir.fd(), files.name(k, buf))) continue;
            std::uint64_t i = files.index(k);
            // sweep::judge_result decides, as for every other command; a document it
            // takes that the row reader still refuses (a member of the wrong type) is
            // just as unreadable. Such a task counts as missing.
            auto verdict = sweep::judge_result(file.text(), i);
            std::string problem = verdict.problem;
            std::optional<ResultRow> row;
            if (verdict.verdict != sweep::Verdict::unreadable) row = row_of(file.text(), &problem);
            if (!row) {
                cannot_read(path, files.name(k, buf), problem);
                continue;
            }
            if (auto early = failed_early.find(i); early != failed_early.end()) {
                // A later phase's result cannot hide an earlier failure: the row shows the
                // phase that failed, and why.
                ResultRow failed = early->second;
                failed.params = params_of(index, i);
                failed.state = TaskState::failed;
                state[i] = TaskState::failed;
                add(worker, std::move(failed));
                continue;
            }
            row->index = i;
            if (row->phase.empty()) row->phase = last;
            row->state = *row->exit_code != 0 ? TaskState::failed : TaskState::done;
            state[i] = row->state;
            row->params = params_of(index, i);
            add(worker, std::move(*row));
        }
    });
    for (auto& [i, row] : failed_early) {
        if (state[i] != TaskState::missing) continue;
        state[i] = TaskState::failed;
        row.params = params_of(index, i);
        add(0, std::move(row));
    }
    if (include_missing) {
        ResultRow row;
        for (std::uint64_t i = 0; i < sweep.tasks; ++i)
            if (state[i] == TaskState::missing) {
                row.index = i;
                row.state = TaskState::missing;
                row.params = params_of(index, i);
                add(0, ResultRow(row));
            }
    }
    return state;
}

ResultTable read_results(const sweep::SweepDir& sweep, const ReadOptions& options) {
    ResultTable table;
    table.tasks = sweep.tasks;
    table.multi_phase = sweep.spec.phases.size() > 1;
    table.phase = sweep::find_phase(sweep.spec, options.phase).name;
    table.param_names = sweep::parameter_names(sweep.spec);
    for (auto& name : sweep::rung_columns(sweep.spec)) table.param_names.push_back(name);
    std::vector<std::vector<ResultRow>> parts(reader_threads());
    auto state = for_each_row(
        sweep, options.include_missing, [&](unsigned worker, ResultRow&& row) { parts[worker].push_back(std::move(row)); }, &table.unreadable,
        options.phase);
    std::size_t total = 0;
    for (auto& p : parts) total += p.size();
    table.rows.reserve(total);
    for (auto& p : parts) {
        for (auto& row : p) table.rows.push_back(std::move(row));
        p = {};
    }
    for (std::uint64_t i = 0; i < sweep.tasks; ++i) {
        if (state[i] == TaskState::done) table.done.insert(table.done.end(), i);
        else if (state[i] == TaskState::failed) table.failed.insert(table.failed.end(), i);
    }
    std::sort(table.rows.begin(), table.rows.end(), [](const ResultRow& a, const ResultRow& b) { return a.index < b.index; });

    std::unordered_set<std::string> seen;
    for (auto& row : table.rows)
        for (auto& [name, value] : row.metrics)
            if (seen.insert(name).second) table.metric_names.push_back(name);
    return table;
}

}  // namespace aihpc::collect
