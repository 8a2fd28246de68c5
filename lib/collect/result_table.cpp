#include "collect/result_table.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <unordered_set>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/text.hpp"
#include "sweep/results.hpp"

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

struct JsonTokener {
    json_tokener* p = json_tokener_new();
    ~JsonTokener() { json_tokener_free(p); }
    JsonTokener() = default;
    JsonTokener(const JsonTokener&) = delete;
    JsonTokener& operator=(const JsonTokener&) = delete;
};

struct JsonRef {
    json_object* p = nullptr;
    explicit JsonRef(json_object* o) : p(o) {}
    ~JsonRef() { json_object_put(p); }
    JsonRef(const JsonRef&) = delete;
    JsonRef& operator=(const JsonRef&) = delete;
};

std::string text_of(json_object* v) {
    if (!v || json_object_is_type(v, json_type_null)) return "";
    if (json_object_is_type(v, json_type_string)) return json_object_get_string(v);
    return json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
}

sweep::Scalar scalar_of(json_object* v) {
    if (json_object_is_type(v, json_type_string)) return sweep::scalar_string(json_object_get_string(v));
    sweep::Scalar s;
    s.json = v ? json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN) : "null";
    s.plain = s.json;
    return s;
}

std::optional<ResultRow> row_of(json_object* doc) {
    if (!doc || !json_object_is_type(doc, json_type_object)) return std::nullopt;
    ResultRow row;
    bool has_index = false;
    json_object_object_foreach(doc, key, v) {
        std::string_view k(key);
        if (k == "index" && json_object_is_type(v, json_type_int)) {
            row.index = static_cast<std::uint64_t>(json_object_get_int64(v));
            has_index = json_object_get_int64(v) >= 0;
        } else if (k == "exit_code" && json_object_is_type(v, json_type_int)) {
            row.exit_code = static_cast<long>(json_object_get_int64(v));
        } else if (k == "elapsed_s" && (json_object_is_type(v, json_type_double) || json_object_is_type(v, json_type_int))) {
            row.elapsed_s = json_object_get_double(v);
        } else if (k == "phase") row.phase = text_of(v);
        else if (k == "node") row.node = text_of(v);
        else if (k == "start") row.start = text_of(v);
        else if (k == "end") row.end = text_of(v);
        else if (k == "job_id") row.job_id = text_of(v);
        else if (k == "array_job_id") row.array_job_id = text_of(v);
        else if (k == "array_task_id") row.array_task_id = text_of(v);
        else if (k == "metrics" && json_object_is_type(v, json_type_object)) {
            json_object_object_foreach(v, name, value) row.metrics.emplace_back(name, scalar_of(value));
        }
    }
    if (!has_index) return std::nullopt;
    return row;
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
        }
        return true;
    }
    const std::string& text() const { return buf_; }

private:
    std::string buf_;
};

// Visits every <index>.json directly in `dir` (no .prev, no temporary files).
template <typename Fn>
void each_result_file(const std::string& dir, std::uint64_t tasks, Fn fn) {
    std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
    if (!d) {
        if (errno == ENOENT) return;
        throw_errno("cannot read " + dir);
    }
    FileText file;
    while (auto* e = ::readdir(d.get())) {
        std::string_view name(e->d_name);
        if (!ends_with(name, ".json")) continue;
        auto index = parse_uint(name.substr(0, name.size() - 5));
        if (!index || *index >= tasks) continue;
        if (!file.read(::dirfd(d.get()), e->d_name)) continue;
        fn(*index, file.text());
    }
}

std::optional<ResultRow> parse_with(json_tokener* tok, std::string_view text) {
    json_tokener_reset(tok);
    JsonRef doc(json_tokener_parse_ex(tok, text.data(), static_cast<int>(text.size())));
    if (json_tokener_get_error(tok) != json_tokener_success) return std::nullopt;
    return row_of(doc.p);
}

}  // namespace

std::optional<ResultRow> parse_result(std::string_view text) {
    JsonTokener tok;
    return parse_with(tok.p, text);
}

ResultTable read_results(const sweep::SweepDir& sweep, const ReadOptions& options) {
    ResultTable table;
    table.tasks = sweep.tasks;
    table.multi_phase = sweep.spec.phases.size() > 1;
    table.param_names = sweep::parameter_names(sweep.spec);
    const auto& last = sweep.spec.final_phase().name;
    JsonTokener tok;

    // Earlier phases only matter when they failed: a quick look at the exit code first,
    // a full parse only then (such a task has no result of the last phase to show).
    std::map<std::uint64_t, ResultRow> failed_early;
    for (const auto& phase : sweep.spec.phases) {
        if (phase.name == last) continue;
        each_result_file(sweep.path + "/results/" + phase.name, sweep.tasks, [&](std::uint64_t i, const std::string& text) {
            auto code = sweep::result_exit_code(text);
            if (!code || *code == 0 || failed_early.count(i)) return;
            auto row = parse_with(tok.p, text);
            if (!row) row = ResultRow{};
            row->index = i;
            row->exit_code = code;
            if (row->phase.empty()) row->phase = phase.name;
            row->state = TaskState::failed;
            failed_early.emplace(i, std::move(*row));
        });
    }
    each_result_file(sweep.path + "/results", sweep.tasks, [&](std::uint64_t i, const std::string& text) {
        auto row = parse_with(tok.p, text);
        if (!row || !row->exit_code) return;  // not a whole result: the task counts as missing
        row->index = i;
        if (row->phase.empty()) row->phase = last;
        bool failed = *row->exit_code != 0 || failed_early.count(i);
        row->state = failed ? TaskState::failed : TaskState::done;
        (failed ? table.failed : table.done).insert(i);
        table.rows.push_back(std::move(*row));
    });
    for (auto& [i, row] : failed_early) {
        if (table.failed.count(i) || table.done.count(i)) continue;
        table.failed.insert(i);
        table.rows.push_back(std::move(row));
    }
    if (options.include_missing) {
        for (std::uint64_t i = 0; i < sweep.tasks; ++i)
            if (!table.done.count(i) && !table.failed.count(i)) {
                ResultRow row;
                row.index = i;
                row.state = TaskState::missing;
                table.rows.push_back(std::move(row));
            }
    }
    std::sort(table.rows.begin(), table.rows.end(), [](const ResultRow& a, const ResultRow& b) { return a.index < b.index; });

    sweep::TaskIndex index(sweep.path);
    std::unordered_set<std::string> seen;
    for (auto& row : table.rows) {
        row.params = index.task(row.index).params;
        for (auto& [name, value] : row.metrics)
            if (seen.insert(name).second) table.metric_names.push_back(name);
    }
    return table;
}

SortKey parse_sort_key(const std::string& text) {
    SortKey key;
    key.column = text;
    auto colon = text.rfind(':');
    if (colon != std::string::npos) {
        auto dir = text.substr(colon + 1);
        if (dir != "min" && dir != "max") throw Error("--sort: direction must be min or max, not '" + dir + "'");
        key.maximize = dir == "max";
        key.column.resize(colon);
    }
    if (key.column.empty()) throw Error("--sort needs a metric name, as in --sort loss:min");
    return key;
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
        return t.empty() ? "null" : sweep::json_quote(t);
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
