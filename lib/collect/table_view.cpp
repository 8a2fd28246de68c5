// The table as the writers show it: sorted, cut to its top rows, replicates aggregated,
// its columns and each cell's text (what result_table.hpp declares beside the reading).
#include "collect/result_table.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <unordered_set>

#include "common/error.hpp"
#include "common/json.hpp"
#include "common/text.hpp"
#include "sweep/results.hpp"

namespace aihpc::collect {

namespace {

const sweep::Scalar* find_value(const sweep::Assignment& values, const std::string& name) {
    for (auto& [k, v] : values)
        if (k == name) return &v;
    return nullptr;
}

}  // namespace

SortSource fixed_sort_source(const ResultTable& header, const std::string& column) {
    if (std::find(header.param_names.begin(), header.param_names.end(), column) != header.param_names.end()) return SortSource::param;
    if (column == "index") return SortSource::index;
    if (column == "exit_code") return SortSource::exit_code;
    if (column == "elapsed_s") return SortSource::elapsed_s;
    return SortSource::none;
}

std::optional<double> sort_value(const ResultRow& row, SortSource source, const std::string& column) {
    switch (source) {
    case SortSource::none: return std::nullopt;
    case SortSource::metric:
        // "Best" is never a failed run: a metric ranks only a task that succeeded, and a
        // failed task's partial metric sorts with the rows that have none.
        if (row.state != TaskState::done) return std::nullopt;
        if (auto* s = find_value(row.metrics, column)) return number_of(*s);
        return std::nullopt;
    case SortSource::param:
        if (auto* s = find_value(row.params, column)) return number_of(*s);
        return std::nullopt;
    case SortSource::index: return static_cast<double>(row.index);
    case SortSource::exit_code:
        if (row.exit_code) return static_cast<double>(*row.exit_code);
        return std::nullopt;
    case SortSource::elapsed_s: return row.elapsed_s;
    }
    return std::nullopt;
}

void throw_unknown_sort_column(const std::string& column, const std::vector<std::string>& metric_names, const std::string& phase) {
    throw Error("--sort: no result" + (phase.empty() ? std::string() : " of phase '" + phase + "'") + " reports a metric '" + column + "'" +
                (metric_names.empty() ? std::string(" (the results have no metrics)") : " (metrics: " + join(metric_names, ", ") + ")") +
                (phase.empty() ? std::string() : "; --phase NAME collects the metrics of an earlier phase"));
}

SortSource sort_rows(ResultTable& table, const SortKey& key) {
    bool is_metric = std::find(table.metric_names.begin(), table.metric_names.end(), key.column) != table.metric_names.end();
    SortSource source = is_metric ? SortSource::metric : fixed_sort_source(table, key.column);
    if (source == SortSource::none) {
        if (table.rows.empty()) return source;
        throw_unknown_sort_column(key.column, table.metric_names, table.multi_phase ? table.phase : std::string());
    }
    // The keys are computed once: a strtod per comparison would dominate on large sweeps.
    std::vector<std::pair<std::optional<double>, std::size_t>> keys;
    keys.reserve(table.rows.size());
    for (std::size_t i = 0; i < table.rows.size(); ++i) keys.emplace_back(sort_value(table.rows[i], source, key.column), i);
    std::stable_sort(keys.begin(), keys.end(), [&](const auto& a, const auto& b) {
        if (a.first.has_value() != b.first.has_value()) return a.first.has_value();
        if (a.first && *a.first != *b.first) return key.maximize ? *a.first > *b.first : *a.first < *b.first;
        return table.rows[a.second].index < table.rows[b.second].index;
    });
    std::vector<ResultRow> sorted;
    sorted.reserve(table.rows.size());
    for (auto& k : keys) sorted.push_back(std::move(table.rows[k.second]));
    table.rows = std::move(sorted);
    return source;
}

void keep_top(ResultTable& table, std::size_t top, bool successes_only) {
    if (top == 0) return;
    if (successes_only)
        std::erase_if(table.rows, [](const ResultRow& row) { return row.state != TaskState::done; });
    if (table.rows.size() > top) table.rows.resize(top);
}

void aggregate_replicates(ResultTable& table, sweep::Aggregate how, bool replicates) {
    struct Group {
        std::size_t first;  // the row of its first replicate
        std::vector<std::size_t> rows;
    };
    std::vector<Group> groups;
    std::map<std::string, std::size_t> by_key;
    std::vector<ResultRow> others;
    for (std::size_t r = 0; r < table.rows.size(); ++r) {
        auto& row = table.rows[r];
        if (row.state != TaskState::done) continue;
        auto key = sweep::configuration_key(row.params, replicates);
        auto [it, fresh] = by_key.emplace(key, groups.size());
        if (fresh) groups.push_back({r, {}});
        groups[it->second].rows.push_back(r);
    }
    std::vector<ResultRow> out;
    out.reserve(groups.size());
    for (auto& g : groups) {
        ResultRow row = table.rows[g.first];
        if (replicates) std::erase_if(row.params, [](const auto& p) { return p.first == "repeat"; });
        row.replicates = g.rows.size();
        row.metrics.clear();
        row.non_finite.clear();
        // Each metric over the replicates that report it: numbers aggregated, any other
        // value (text) as the first replicate has it.
        for (auto r : g.rows)
            for (auto& [name, value] : table.rows[r].metrics) {
                bool seen = false;
                for (auto& m : row.metrics) seen = seen || m.first == name;
                if (seen) continue;
                std::vector<double> numbers;
                for (auto q : g.rows)
                    for (auto& [n, v] : table.rows[q].metrics)
                        if (n == name)
                            if (auto d = number_of(v)) numbers.push_back(*d);
                if (numbers.empty()) row.metrics.emplace_back(name, value);
                else row.metrics.emplace_back(name, sweep::scalar_double(sweep::aggregate_of(numbers, how)));
            }
        std::vector<double> elapsed;
        for (auto r : g.rows)
            if (table.rows[r].elapsed_s) elapsed.push_back(*table.rows[r].elapsed_s);
        if (!elapsed.empty()) row.elapsed_s = sweep::aggregate_of(elapsed, how);
        for (auto r : g.rows)
            if (table.rows[r].node != row.node) row.node.clear();  // replicates on several nodes
        out.push_back(std::move(row));
    }
    for (auto& row : table.rows)
        if (row.state != TaskState::done) out.push_back(std::move(row));
    table.rows = std::move(out);
    if (replicates) std::erase(table.param_names, std::string("repeat"));
    table.aggregated = true;
}

std::vector<Column> columns(const ResultTable& table) {
    std::vector<Column> out = {{Column::index, "index", ""}, {Column::state, "status", ""}};
    if (table.multi_phase) out.push_back({Column::phase, "phase", ""});
    std::unordered_set<std::string> taken = {"index", "status", "phase", "exit_code", "elapsed_s", "node"};
    for (auto& p : table.param_names) {
        out.push_back({Column::param, p, p});
        taken.insert(p);
    }
    if (table.aggregated) {
        out.push_back({Column::replicates, "replicates", ""});
        taken.insert("replicates");
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
    for (auto& c : out)
        if (c.kind == Column::param || c.kind == Column::metric) c.precision = table.precision;
    if (table.shown_columns.empty()) return out;
    std::vector<Column> shown;
    for (const auto& name : table.shown_columns) {
        auto it = std::find_if(out.begin(), out.end(), [&](const Column& c) { return c.name == name; });
        if (it == out.end()) {
            std::vector<std::string> names;
            for (auto& c : out) names.push_back(c.name);
            throw Error("--columns: there is no column '" + name + "' (columns: " + join(names, ", ") + ")");
        }
        shown.push_back(*it);
    }
    return shown;
}

namespace {

std::string elapsed_text(double s) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3f", s);
    return buf;
}

// A value's text with `precision` significant digits when it is a float (integers, text
// and booleans as they are).
std::string rounded(const sweep::Scalar& value, int precision) {
    const auto& j = value.json;
    if (precision <= 0 || j.empty() || j[0] == '"' || j.find_first_of(".eE") == std::string::npos) return value.plain;
    auto d = number_of(value);
    if (!d) return value.plain;
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*g", precision, *d);
    return buf;
}

}  // namespace

std::string cell_text(const ResultRow& row, const Column& c) {
    switch (c.kind) {
    case Column::index: return std::to_string(row.index);
    case Column::state: return task_state_name(row.state);
    case Column::phase: return row.phase;
    case Column::param:
        if (auto* v = find_value(row.params, c.key)) return rounded(*v, c.precision);
        return "";
    case Column::metric:
        if (auto* v = find_value(row.metrics, c.key)) return rounded(*v, c.precision);
        return "";
    case Column::replicates: return row.replicates ? std::to_string(row.replicates) : "";
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
    case Column::replicates: return row.replicates ? std::to_string(row.replicates) : "null";
    case Column::exit_code: return row.exit_code ? std::to_string(*row.exit_code) : "null";
    case Column::elapsed_s: return row.elapsed_s ? elapsed_text(*row.elapsed_s) : "null";
    default: {
        auto t = cell_text(row, c);
        return json_quote_or_null(t);
    }
    }
}

}  // namespace aihpc::collect
