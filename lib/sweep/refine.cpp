#include "sweep/refine.hpp"

#include <dirent.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>
#include <set>

#include "common/error.hpp"
#include "common/json.hpp"
#include "common/text.hpp"
#include "sweep/expand.hpp"
#include "sweep/results.hpp"
#include "sweep/runner.hpp"

namespace aihpc::sweep {

namespace {

void widen(std::map<std::string, ParamRange>& out, const std::string& name, ParamRange r) {
    if (r.lo > r.hi) std::swap(r.lo, r.hi);
    auto it = out.find(name);
    if (it == out.end()) {
        out[name] = r;
        return;
    }
    it->second.lo = std::min(it->second.lo, r.lo);
    it->second.hi = std::max(it->second.hi, r.hi);
    it->second.log = it->second.log && r.log;
    it->second.integer = it->second.integer && r.integer;
    // Lists stay a list only when every source is one: their values together.
    if (it->second.list.empty() || r.list.empty()) {
        it->second.list.clear();
    } else {
        for (auto& v : r.list)
            if (std::find(it->second.list.begin(), it->second.list.end(), v) == it->second.list.end()) it->second.list.push_back(v);
        std::stable_sort(it->second.list.begin(), it->second.list.end(),
                         [](const Scalar& a, const Scalar& b) { return std::strtod(a.json.c_str(), nullptr) < std::strtod(b.json.c_str(), nullptr); });
    }
}

// Listed values: numbers give their span (integers stay integers only when every value
// is one), anything else makes the parameter categorical.
void widen_values(std::map<std::string, ParamRange>& out, std::set<std::string>& categorical, const std::string& name,
                  const std::vector<Scalar>& values, bool may_be_log = false, bool is_list = false) {
    ParamRange r{INFINITY, -INFINITY, may_be_log, true, {}};
    if (is_list) {
        r.list = values;
        std::stable_sort(r.list.begin(), r.list.end(),
                         [](const Scalar& a, const Scalar& b) { return std::strtod(a.json.c_str(), nullptr) < std::strtod(b.json.c_str(), nullptr); });
    }
    for (auto& v : values) {
        char* end = nullptr;
        double d = std::strtod(v.json.c_str(), &end);
        if (v.json.empty() || *end || v.json[0] == '"' || v.json == "true" || v.json == "false" || !std::isfinite(d)) {
            categorical.insert(name);
            return;
        }
        r.lo = std::min(r.lo, d);
        r.hi = std::max(r.hi, d);
        r.integer = r.integer && v.json.find_first_of(".eE") == std::string::npos;
        r.log = r.log && d > 0;
    }
    if (!values.empty()) widen(out, name, r);
}

void collect(const std::vector<Axis>& axes, std::map<std::string, ParamRange>& out, std::set<std::string>& categorical) {
    for (const auto& a : axes) {
        switch (a.kind) {
        case AxisKind::range: {
            bool all_int = a.args[0].is_int && a.args[1].is_int && a.args[2].is_int;
            widen(out, a.param, {a.args[0].value(), a.args[1].value() - (all_int ? (a.args[2].value() > 0 ? 1 : -1) : 0), false, all_int, {}});
            break;
        }
        case AxisKind::linspace: widen(out, a.param, {a.args[0].value(), a.args[1].value(), false, false, {}}); break;
        case AxisKind::logspace:
        case AxisKind::loguniform: widen(out, a.param, {a.args[0].value(), a.args[1].value(), true, false, {}}); break;
        case AxisKind::uniform: widen(out, a.param, {a.args[0].value(), a.args[1].value(), false, false, {}}); break;
        case AxisKind::int_: widen(out, a.param, {a.args[0].value(), a.args[1].value(), false, true, {}}); break;
        case AxisKind::normal:
            widen(out, a.param, {a.args[0].value() - 3 * a.args[1].value(), a.args[0].value() + 3 * a.args[1].value(), false, false, {}});
            break;
        case AxisKind::values: widen_values(out, categorical, a.param, a.values, false, true); break;
        case AxisKind::union_:
            // A union member's numbers widen like any other: a fixed number is one point
            // of its parameter's span.
            for (auto& b : a.branches) {
                for (auto& [k, v] : b.fixed) widen_values(out, categorical, k, {v}, true);
                collect(b.axes, out, categorical);
            }
            break;
        case AxisKind::zip:
            for (std::size_t c = 0; c < a.zip_names.size(); ++c) widen_values(out, categorical, a.zip_names[c], a.zip_columns[c], false, true);
            break;
        case AxisKind::repeat: break;
        }
    }
}

// A metric by name; a dotted name (val.loss) also reaches into nested objects, as
// aihpc-collect flattens them.
const JsonValue* find_metric(const JsonValue& metrics, const std::string& name) {
    if (const JsonValue* v = metrics.find(name)) return v;
    for (auto dot = name.find('.'); dot != std::string::npos; dot = name.find('.', dot + 1))
        if (const JsonValue* inner = metrics.find(name.substr(0, dot)); inner && inner->is_object())
            if (const JsonValue* v = find_metric(*inner, name.substr(dot + 1))) return v;
    return nullptr;
}

std::optional<double> metric_of(const JsonValue& result, const std::string& name) {
    const JsonValue* metrics = result.find("metrics");
    const JsonValue* v = metrics ? find_metric(*metrics, name) : nullptr;
    if (!v || !v->is_number() || v->is_non_finite()) return std::nullopt;
    double d = v->as_double(name);
    return std::isfinite(d) ? std::optional<double>(d) : std::nullopt;
}

}  // namespace

std::map<std::string, ParamRange> param_ranges(const SweepSpec& spec) {
    std::map<std::string, ParamRange> out;
    std::set<std::string> categorical;
    collect(spec.axes, out, categorical);
    // A name that is categorical anywhere is categorical everywhere.
    for (auto& c : categorical) out.erase(c);
    return out;
}

std::vector<RankedTask> best_tasks(const SweepDir& sweep, const std::string& metric, bool maximize, std::size_t top, Aggregate how) {
    TaskIndex index(sweep.path);
    bool replicates = has_repeat_axis(sweep.spec);
    struct Configuration {
        TaskRecord first;
        std::vector<double> values;
    };
    std::map<std::string, Configuration> configurations;
    std::string dir = results_dir(sweep, sweep.spec.final_phase());
    double top_budget = -1;
    std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
    if (!d) throw_errno("cannot read " + dir);
    while (auto* e = ::readdir(d.get())) {
        std::string_view name(e->d_name);
        if (!ends_with(name, ".json")) continue;
        auto i = parse_uint(name.substr(0, name.size() - 5));
        if (!i || *i >= index.size()) continue;
        std::optional<double> m;
        double budget = 0;
        try {
            auto text = read_file(dir + "/" + std::string(name));
            // The verdict every command gives a result file: only a task that succeeded
            // is ranked, never a failed, unreadable or misplaced one.
            if (judge_result(text, *i).verdict != Verdict::done) continue;
            JsonValue r = parse_json_value(text, JsonReadOptions{true});
            m = metric_of(r, metric);
            if (const JsonValue* b = r.find("budget"); b && b->is_number() && !b->is_non_finite()) budget = b->as_double("budget");
        } catch (const Error&) {
            continue;  // not a whole result
        }
        if (!m) continue;
        if (sweep.spec.schedule) {
            // A configuration stopped at a small budget is no rival of one that ran the
            // full budget: only the results at the highest budget any reached are ranked.
            if (budget < top_budget) continue;
            if (budget > top_budget) {
                configurations.clear();
                top_budget = budget;
            }
        }
        TaskRecord task = index.task(*i);
        auto& c = configurations[configuration_key(task.params, replicates)];
        if (c.values.empty() || task.index < c.first.index) c.first = task;
        c.values.push_back(*m);
    }
    if (configurations.empty()) throw Error("no finished task of " + sweep.path + " reports the metric '" + metric + "'");
    auto better = [maximize](double a, double b) { return maximize ? a > b : a < b; };
    std::vector<RankedTask> all;
    for (auto& [key, c] : configurations) {
        double value = how != Aggregate::none ? aggregate_of(c.values, how)
                                              : *std::min_element(c.values.begin(), c.values.end(), better);
        all.push_back({std::move(c.first), value, c.values.size()});
    }
    std::sort(all.begin(), all.end(), [&](const RankedTask& a, const RankedTask& b) {
        if (a.metric != b.metric) return better(a.metric, b.metric);
        return a.task.index < b.task.index;
    });
    if (all.size() > top) all.resize(top);
    return all;
}

SweepSpec refine_spec(const SweepSpec& spec, const std::vector<TaskRecord>& best, double shrink, std::uint64_t trials) {
    if (!(shrink > 0 && shrink <= 1)) throw Error("--shrink must be in (0, 1]");
    if (best.empty()) throw Error("no task to refine around");
    auto ranges = param_ranges(spec);
    bool has_repeat = false;
    for (auto& a : spec.axes) has_repeat = has_repeat || a.kind == AxisKind::repeat;

    SweepSpec out = spec;
    out.seed = spec.seed + 1;
    out.method = Method::random;
    out.trials = trials;
    out.axes.clear();
    Axis u;
    u.kind = AxisKind::union_;
    u.path = "axes[0]";
    std::set<std::string> seen;
    for (const auto& task : best) {
        Branch b;
        std::string key;
        for (const auto& [name, value] : task.params) {
            if (name == "repeat" && has_repeat) continue;
            key += name + "=" + value.json + ";";
            auto r = ranges.find(name);
            double v = std::strtod(value.json.c_str(), nullptr);
            if (r == ranges.end() || r->second.lo >= r->second.hi) {
                b.fixed.emplace_back(name, value);
                continue;
            }
            const auto& pr = r->second;
            Axis a;
            a.param = name;
            a.path = u.path;
            if (!pr.list.empty()) {
                // A list stays a list: the best value and its neighbours, as many on each
                // side as the shrunk share of the list (at least one).
                auto at = std::find(pr.list.begin(), pr.list.end(), value);
                if (at == pr.list.end()) {
                    b.fixed.emplace_back(name, value);
                    continue;
                }
                auto pos = static_cast<std::size_t>(at - pr.list.begin());
                auto radius = std::max<std::size_t>(1, static_cast<std::size_t>(std::lround(static_cast<double>(pr.list.size() - 1) * shrink / 2)));
                std::size_t from = pos >= radius ? pos - radius : 0, to = std::min(pr.list.size() - 1, pos + radius);
                a.kind = AxisKind::values;
                a.values.assign(pr.list.begin() + static_cast<long>(from), pr.list.begin() + static_cast<long>(to) + 1);
                if (a.values.size() < 2) b.fixed.emplace_back(name, value);
                else b.axes.push_back(std::move(a));
                continue;
            }
            double lo, hi;
            if (pr.log && !pr.integer && v > 0 && pr.lo > 0) {
                double f = std::pow(pr.hi / pr.lo, shrink / 2);
                lo = std::max(pr.lo, v / f);
                hi = std::min(pr.hi, v * f);
                a.kind = AxisKind::loguniform;
            } else {
                double w = (pr.hi - pr.lo) * shrink / 2;
                lo = std::max(pr.lo, v - w);
                hi = std::min(pr.hi, v + w);
                a.kind = pr.integer ? AxisKind::int_ : AxisKind::uniform;
            }
            if (a.kind == AxisKind::int_) {
                lo = std::ceil(lo);
                hi = std::floor(hi);
                a.args = {Number{true, static_cast<std::int64_t>(lo), 0}, Number{true, static_cast<std::int64_t>(hi), 0}};
            } else {
                a.args = {Number{false, 0, lo}, Number{false, 0, hi}};
            }
            if (!(lo < hi)) b.fixed.emplace_back(name, value);
            else b.axes.push_back(std::move(a));
        }
        if (seen.insert(key).second) u.branches.push_back(std::move(b));
    }
    out.axes.push_back(std::move(u));
    if (has_repeat)
        for (auto& a : spec.axes)
            if (a.kind == AxisKind::repeat) out.axes.push_back(a);
    // Round-trip through the text form, so that the result is validated like any spec.
    return parse_spec(normalize(out));
}

ExpandOptions refined_expand_options() {
    ExpandOptions o;
    o.allow_empty_exclude = true;
    o.max_tasks = kMaxSweepTasks;
    return o;
}

}  // namespace aihpc::sweep
