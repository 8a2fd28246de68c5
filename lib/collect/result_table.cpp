#include "collect/result_table.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <unordered_set>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/json.hpp"
#include "common/text.hpp"
#include "sweep/results.hpp"
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

}  // namespace

ResultRow parse_result(std::string_view text) {
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
            for (const auto& [name, value] : v.as_object("metrics")) {
                if (value.is_non_finite()) {
                    row.metrics.emplace_back(name, sweep::Scalar{"null", "NaN"});
                    row.non_finite.push_back(name);
                } else {
                    row.metrics.emplace_back(name, scalar_of(value));
                }
            }
        }
    }
    // A metric listed as non-finite is null in JSON and NaN as text.
    for (auto& name : row.non_finite)
        for (auto& [m, value] : row.metrics)
            if (m == name && value.json == "null") value.plain = "NaN";
    return row;
}

namespace {

std::optional<ResultRow> row_of(std::string_view text) {
    try {
        auto row = parse_result(text);
        return row;
    } catch (const Error&) {
        return std::nullopt;  // not a whole result: the task counts as missing
    }
}

// Reads whole files into one reused buffer.
class FileText {
public:
    bool read(int dir_fd, const char* name) {
        UniqueFd fd(::openat(dir_fd, name, O_RDONLY | O_CLOEXEC));
        if (!fd) return false;
        buf_.clear();
        char chunk[16384];
        for (;;) {
            ssize_t n = ::read(fd.get(), chunk, sizeof chunk);
            if (n < 0) {
                if (errno == EINTR) continue;
                return false;
            }
            if (n == 0) break;
            buf_.append(chunk, static_cast<std::size_t>(n));
            // Results are published whole by rename: a short read is the end of the file,
            // and saves a read() per result.
            if (static_cast<std::size_t>(n) < sizeof chunk) break;
        }
        return true;
    }
    const std::string& text() const { return buf_; }

private:
    std::string buf_;
};

struct ResultFile {
    std::uint64_t index;
    std::string name;
};

// Every <index>.json directly in `dir` (no .prev, no temporary files), below `tasks`.
std::vector<ResultFile> list_results(const std::string& dir, std::uint64_t tasks) {
    std::vector<ResultFile> out;
    std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
    if (!d) {
        if (errno == ENOENT) return out;
        throw_errno("cannot read " + dir);
    }
    while (auto* e = ::readdir(d.get())) {
        std::string_view name(e->d_name);
        if (!ends_with(name, ".json")) continue;
        auto index = parse_uint(name.substr(0, name.size() - 5));
        if (index && *index < tasks) out.push_back({*index, std::string(name)});
    }
    return out;
}

// Runs work(begin, end) over [0, n) split among worker threads; small jobs stay on this
// thread. The first exception of any worker is rethrown here, after all have ended.
template <typename Work>
void in_parallel(std::size_t n, Work work) {
    unsigned workers = std::max(1u, std::min(8u, std::thread::hardware_concurrency()));
    if (n < 2048 || workers == 1) {
        work(std::size_t{0}, n);
        return;
    }
    std::vector<std::exception_ptr> errors(workers);
    {
        std::vector<std::jthread> threads;
        for (unsigned w = 0; w < workers; ++w)
            threads.emplace_back([&, w] {
                try {
                    work(n * w / workers, n * (w + 1) / workers);
                } catch (...) {
                    errors[w] = std::current_exception();
                }
            });
    }
    for (auto& e : errors)
        if (e) std::rethrow_exception(e);
}

// Opens a results dir for reading relative to its fd.
class ResultDir {
public:
    explicit ResultDir(const std::string& path) : fd_(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {}
    int fd() const { return fd_.get(); }
    explicit operator bool() const { return static_cast<bool>(fd_); }

private:
    UniqueFd fd_;
};

// The parameters of task i, from its line in tasks.jsonl.
sweep::Assignment params_of(const sweep::TaskIndex& index, std::uint64_t i) {
    try {
        return sweep::parse_task_line(index.line(i)).params;
    } catch (const Error& e) {
        throw Error("task " + std::to_string(i) + ": " + e.what());
    }
}

enum : std::uint8_t { kNone = 0, kDone = 1, kFailed = 2 };

}  // namespace

ResultTable read_results(const sweep::SweepDir& sweep, const ReadOptions& options) {
    ResultTable table;
    table.tasks = sweep.tasks;
    table.multi_phase = sweep.spec.phases.size() > 1;
    table.param_names = sweep::parameter_names(sweep.spec);
    const auto& last = sweep.spec.final_phase().name;
    // One byte per task: cheaper than set inserts from many threads.
    std::vector<std::uint8_t> state(sweep.tasks, kNone);
    std::mutex merge;

    // Earlier phases only matter when they failed: a quick look at the exit code first,
    // a full parse only then (such a task has no result of the last phase to show).
    std::map<std::uint64_t, ResultRow> failed_early;
    for (const auto& phase : sweep.spec.phases) {
        if (phase.name == last) continue;
        std::string path = sweep::results_dir(sweep, phase);
        auto files = list_results(path, sweep.tasks);
        ResultDir dir(path);
        if (files.empty() || !dir) continue;
        in_parallel(files.size(), [&](std::size_t begin, std::size_t end) {
            FileText file;
            std::vector<ResultRow> found;
            for (std::size_t k = begin; k < end; ++k) {
                if (!file.read(dir.fd(), files[k].name.c_str())) continue;
                auto code = sweep::result_exit_code(file.text());
                if (!code || *code == 0) continue;
                auto row = row_of(file.text());
                if (!row) row = ResultRow{};
                row->index = files[k].index;
                row->exit_code = code;
                if (row->phase.empty()) row->phase = phase.name;
                row->state = TaskState::failed;
                found.push_back(std::move(*row));
            }
            std::lock_guard lock(merge);
            for (auto& row : found) failed_early.emplace(row.index, std::move(row));  // the first phase that failed wins
        });
    }

    sweep::TaskIndex index(sweep.path);
    std::string path = sweep::results_dir(sweep, sweep.spec.final_phase());
    auto files = list_results(path, sweep.tasks);
    ResultDir dir(path);
    if (!dir && !files.empty()) throw_errno("cannot open " + path);
    std::vector<std::vector<ResultRow>> parts;
    in_parallel(files.size(), [&](std::size_t begin, std::size_t end) {
        FileText file;
        std::vector<ResultRow> rows;
        rows.reserve(end - begin);
        for (std::size_t k = begin; k < end; ++k) {
            if (!file.read(dir.fd(), files[k].name.c_str())) continue;
            auto row = row_of(file.text());
            if (!row || !row->exit_code) continue;  // not a whole result: the task counts as missing
            std::uint64_t i = files[k].index;
            row->index = i;
            if (row->phase.empty()) row->phase = last;
            row->state = *row->exit_code != 0 ? TaskState::failed : TaskState::done;
            state[i] = row->state == TaskState::failed ? kFailed : kDone;
            row->params = params_of(index, i);
            rows.push_back(std::move(*row));
        }
        std::lock_guard lock(merge);
        parts.push_back(std::move(rows));
    });
    std::size_t total = failed_early.size();
    for (auto& p : parts) total += p.size();
    table.rows.reserve(total);
    for (auto& p : parts)
        for (auto& row : p) table.rows.push_back(std::move(row));
    parts.clear();

    for (auto& row : table.rows)
        if (auto early = failed_early.find(row.index); early != failed_early.end()) {
            // A later phase's result cannot hide an earlier failure: the row shows the
            // phase that failed, and why.
            auto params = std::move(row.params);
            row = std::move(early->second);
            row.params = std::move(params);
            row.state = TaskState::failed;
            state[row.index] = kFailed;
        }
    for (auto& [i, row] : failed_early) {
        if (state[i] != kNone) continue;
        state[i] = kFailed;
        row.params = params_of(index, i);
        table.rows.push_back(std::move(row));
    }
    if (options.include_missing) {
        for (std::uint64_t i = 0; i < sweep.tasks; ++i)
            if (state[i] == kNone) {
                ResultRow row;
                row.index = i;
                row.state = TaskState::missing;
                row.params = params_of(index, i);
                table.rows.push_back(std::move(row));
            }
    }
    for (std::uint64_t i = 0; i < sweep.tasks; ++i) {
        if (state[i] == kDone) table.done.insert(table.done.end(), i);
        else if (state[i] == kFailed) table.failed.insert(table.failed.end(), i);
    }
    std::sort(table.rows.begin(), table.rows.end(), [](const ResultRow& a, const ResultRow& b) { return a.index < b.index; });

    std::unordered_set<std::string> seen;
    for (auto& row : table.rows)
        for (auto& [name, value] : row.metrics)
            if (seen.insert(name).second) table.metric_names.push_back(name);
    return table;
}

namespace {

const sweep::Scalar* find_value(const sweep::Assignment& values, const std::string& name) {
    for (auto& [k, v] : values)
        if (k == name) return &v;
    return nullptr;
}

}  // namespace

void sort_rows(ResultTable& table, const SortKey& key) {
    bool is_metric = std::find(table.metric_names.begin(), table.metric_names.end(), key.column) != table.metric_names.end();
    bool is_param = std::find(table.param_names.begin(), table.param_names.end(), key.column) != table.param_names.end();
    bool builtin = key.column == "index" || key.column == "exit_code" || key.column == "elapsed_s";
    if (!is_metric && !is_param && !builtin) {
        if (table.rows.empty()) return;
        throw Error("--sort: no result reports a metric '" + key.column + "'" +
                    (table.metric_names.empty() ? std::string(" (the results have no metrics)")
                                                : " (metrics: " + join(table.metric_names, ", ") + ")"));
    }
    // The keys are computed once: a strtod per comparison would dominate on large sweeps.
    std::vector<std::pair<std::optional<double>, std::size_t>> keys;
    keys.reserve(table.rows.size());
    for (std::size_t i = 0; i < table.rows.size(); ++i) {
        const auto& row = table.rows[i];
        std::optional<double> v;
        if (is_metric) {
            if (auto* s = find_value(row.metrics, key.column)) v = number_of(*s);
        } else if (is_param) {
            if (auto* s = find_value(row.params, key.column)) v = number_of(*s);
        } else if (key.column == "index") v = static_cast<double>(row.index);
        else if (key.column == "exit_code" && row.exit_code) v = static_cast<double>(*row.exit_code);
        else if (key.column == "elapsed_s") v = row.elapsed_s;
        keys.emplace_back(v, i);
    }
    std::stable_sort(keys.begin(), keys.end(), [&](const auto& a, const auto& b) {
        if (a.first.has_value() != b.first.has_value()) return a.first.has_value();
        if (a.first && *a.first != *b.first) return key.maximize ? *a.first > *b.first : *a.first < *b.first;
        return table.rows[a.second].index < table.rows[b.second].index;
    });
    std::vector<ResultRow> sorted;
    sorted.reserve(table.rows.size());
    for (auto& k : keys) sorted.push_back(std::move(table.rows[k.second]));
    table.rows = std::move(sorted);
}

void keep_top(ResultTable& table, std::size_t top) {
    if (top > 0 && table.rows.size() > top) table.rows.resize(top);
}

std::vector<Column> columns(const ResultTable& table) {
    std::vector<Column> out = {{Column::index, "index", ""}, {Column::state, "status", ""}};
    if (table.multi_phase) out.push_back({Column::phase, "phase", ""});
    std::unordered_set<std::string> taken = {"index", "status", "phase", "exit_code", "elapsed_s", "node"};
    for (auto& p : table.param_names) {
        out.push_back({Column::param, p, p});
        taken.insert(p);
    }
    // A metric named like a parameter or a fixed column keeps its own column.
    for (auto& m : table.metric_names) out.push_back({Column::metric, taken.count(m) ? "metrics." + m : m, m});
    out.push_back({Column::exit_code, "exit_code", ""});
    out.push_back({Column::elapsed_s, "elapsed_s", ""});
    out.push_back({Column::node, "node", ""});
    if (table.with_sacct) {
        out.push_back({Column::sacct_state, "State", ""});
        out.push_back({Column::sacct_exit_code, "ExitCode", ""});
        out.push_back({Column::sacct_elapsed, "Elapsed", ""});
        out.push_back({Column::sacct_max_rss, "MaxRSS", ""});
    }
    return out;
}

namespace {

std::string elapsed_text(double s) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3f", s);
    return buf;
}

}  // namespace

std::string cell_text(const ResultRow& row, const Column& c) {
    switch (c.kind) {
    case Column::index: return std::to_string(row.index);
    case Column::state: return task_state_name(row.state);
    case Column::phase: return row.phase;
    case Column::param:
        if (auto* v = find_value(row.params, c.key)) return v->plain;
        return "";
    case Column::metric:
        if (auto* v = find_value(row.metrics, c.key)) return v->plain;
        return "";
    case Column::exit_code: return row.exit_code ? std::to_string(*row.exit_code) : "";
    case Column::elapsed_s: return row.elapsed_s ? elapsed_text(*row.elapsed_s) : "";
    case Column::node: return row.node;
    case Column::sacct_state: return row.sacct ? row.sacct->state : "";
    case Column::sacct_exit_code: return row.sacct ? row.sacct->exit_code : "";
    case Column::sacct_elapsed: return row.sacct ? row.sacct->elapsed : "";
    case Column::sacct_max_rss: return row.sacct ? row.sacct->max_rss : "";
    }
    return "";
}

std::string cell_json(const ResultRow& row, const Column& c) {
    switch (c.kind) {
    case Column::index: return std::to_string(row.index);
    case Column::param:
        if (auto* v = find_value(row.params, c.key)) return v->json;
        return "null";
    case Column::metric:
        if (auto* v = find_value(row.metrics, c.key)) return v->json;
        return "null";
    case Column::exit_code: return row.exit_code ? std::to_string(*row.exit_code) : "null";
    case Column::elapsed_s: return row.elapsed_s ? elapsed_text(*row.elapsed_s) : "null";
    default: {
        auto t = cell_text(row, c);
        return json_quote_or_null(t);
    }
    }
}

bool column_is_numeric(const ResultTable& table, const Column& c) {
    switch (c.kind) {
    case Column::index:
    case Column::exit_code:
    case Column::elapsed_s: return true;
    case Column::param:
    case Column::metric: {
        bool any = false;
        for (auto& row : table.rows) {
            auto* v = find_value(c.kind == Column::param ? row.params : row.metrics, c.key);
            if (!v) continue;
            if (!number_of(*v)) return false;
            any = true;
        }
        return any;
    }
    default: return false;
    }
}

}  // namespace aihpc::collect
