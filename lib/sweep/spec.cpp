#include "sweep/spec.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <set>

#include "common/error.hpp"
#include "common/json.hpp"
#include "common/text.hpp"
#include "sweep/command.hpp"

namespace aihpc::sweep {

// ---- scalars and JSON text

std::string format_double(double value) {
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, value);
    std::string text(buf, r.ptr);
    // A float stays a float when read back (1.0, not 1; -0.0, not -0), as Python and
    // JSON readers that tell the two apart expect.
    if (text.find_first_of(".eEni") == std::string::npos) text += ".0";
    return text;
}

Scalar scalar_int(std::int64_t value) {
    auto text = std::to_string(value);
    return {text, text};
}

Scalar scalar_double(double value) {
    if (!std::isfinite(value)) throw Error("a parameter value is not a finite number");
    auto text = format_double(value);
    return {text, text};
}

Scalar scalar_string(std::string_view value) { return {json_quote(value), std::string(value)}; }

Scalar scalar_bool(bool value) {
    std::string text = value ? "true" : "false";
    return {text, text};
}

const char* schedule_type_name(ScheduleType type) {
    switch (type) {
    case ScheduleType::sha: return "sha";
    case ScheduleType::hyperband: return "hyperband";
    case ScheduleType::asha: return "asha";
    }
    return "?";
}

const char* axis_kind_name(AxisKind kind) {
    switch (kind) {
    case AxisKind::values: return "values";
    case AxisKind::range: return "range";
    case AxisKind::linspace: return "linspace";
    case AxisKind::logspace: return "logspace";
    case AxisKind::uniform: return "uniform";
    case AxisKind::loguniform: return "loguniform";
    case AxisKind::int_: return "int";
    case AxisKind::normal: return "normal";
    case AxisKind::zip: return "zip";
    case AxisKind::union_: return "union";
    case AxisKind::repeat: return "repeat";
    }
    return "?";
}

namespace {

// ---- the document walked with its path, so that every error can name it

[[noreturn]] void fail(const std::string& path, const std::string& what) {
    throw Error("sweep spec: " + (path.empty() ? std::string("(top level)") : path) + ": " + what);
}

std::string member_path(const std::string& path, std::string_view key) { return json_member_path(path, key); }

std::string index_path(const std::string& path, std::size_t i) { return json_index_path(path, i); }

// The typed reads of the JSON reader, with its errors given the spec's prefix.
template <typename Read>
auto typed(Read read) -> decltype(read()) {
    try {
        return read();
    } catch (const JsonError& e) {
        throw Error(std::string("sweep spec: ") + e.what());
    }
}

void check_keys(const JsonValue& obj, const std::string& path, std::initializer_list<std::string_view> allowed) {
    for (const auto& [key, value] : obj.members()) {
        (void)value;
        bool ok = false;
        for (auto a : allowed) ok = ok || a == key;
        if (!ok) fail(path, "unknown key '" + key + "'");
    }
}

const std::vector<JsonValue::Member>& need_object(const JsonValue& v, const std::string& path) {
    return typed([&]() -> const std::vector<JsonValue::Member>& { return v.as_object(path); });
}

const std::vector<JsonValue>& need_array(const JsonValue& v, const std::string& path) {
    return typed([&]() -> const std::vector<JsonValue>& { return v.as_array(path); });
}

std::string get_string(const JsonValue& v, const std::string& path) {
    return typed([&] { return v.as_string(path); });
}

std::uint64_t get_uint(const JsonValue& v, const std::string& path, std::uint64_t min = 0) {
    if (!v.is_integer() || (!v.text().empty() && v.text()[0] == '-')) fail(path, "must be an integer >= " + std::to_string(min));
    auto n = typed([&] { return v.as_uint64(path); });
    if (n < min) fail(path, "must be an integer >= " + std::to_string(min));
    return n;
}

Number get_number(const JsonValue& v, const std::string& path) {
    if (v.is_integer()) return Number{true, typed([&] { return v.as_int64(path); }), 0};
    double d = typed([&] { return v.as_double(path); });
    if (!std::isfinite(d)) fail(path, "must be a finite number");
    return Number{false, 0, d};
}

Scalar get_scalar(const JsonValue& v, const std::string& path) {
    switch (v.kind()) {
    case JsonValue::Kind::integer: return scalar_int(typed([&] { return v.as_int64(path); }));
    case JsonValue::Kind::number: {
        double d = v.as_double(path);
        if (!std::isfinite(d)) fail(path, "must be a finite number");
        return scalar_double(d);
    }
    case JsonValue::Kind::string: return scalar_string(v.text());
    case JsonValue::Kind::boolean: return scalar_bool(v.boolean());
    default: fail(path, "a parameter value must be a number, a string or a boolean");
    }
}

std::vector<std::string> get_words(const JsonValue& v, const std::string& path) {
    const auto& items = need_array(v, path);
    std::vector<std::string> words;
    for (std::size_t i = 0; i < items.size(); ++i) words.push_back(get_string(items[i], index_path(path, i)));
    return words;
}

std::vector<std::string> get_command(const JsonValue& v, const std::string& path) {
    std::vector<std::string> words;
    if (v.is_string()) {
        try {
            words = split_command(v.text());
        } catch (const Error& e) {
            fail(path, e.what());
        }
    } else if (v.is_array()) {
        words = get_words(v, path);
    } else {
        fail(path, "must be a string or an array of words");
    }
    if (words.empty()) fail(path, "is empty");
    return words;
}

Assignment get_assignment(const JsonValue& v, const std::string& path) {
    Assignment out;
    for (const auto& [key, value] : need_object(v, path)) {
        if (key.empty()) fail(path, "a parameter name is empty");
        out.emplace_back(key, get_scalar(value, member_path(path, key)));
    }
    return out;
}

void check_param_name(const std::string& name, const std::string& path) {
    if (name.empty()) fail(path, "the parameter name is empty");
    for (char c : name)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-'))
            fail(path, "parameter name '" + name + "' may hold only letters, digits, '_', '.' and '-'");
    // MLflow stores a parameter as a file named after it, and refuses these.
    if (name == "." || name.rfind("..", 0) == 0) fail(path, "parameter name '" + name + "' is one MLflow refuses ('.' or starting with '..')");
    if (name == "index" || name == "task_seed" || name == "phase")
        fail(path, "'" + name + "' is reserved for the command template");
    // The top-level fields of a result: a parameter of the same name would be mistaken
    // for them in results and in collect's table.
    static constexpr std::string_view result_fields[] = {"exit_code", "signal", "forwarded_signal", "error", "start", "end",
                                                         "elapsed_s", "node", "job_id", "array_job_id", "array_task_id",
                                                         "command", "metrics", "provenance", "params"};
    for (auto field : result_fields)
        if (name == field) fail(path, "'" + name + "' is a field of every result; give the parameter another name");
}

struct Parser {
    Method method = Method::grid;

    std::vector<Axis> parse_axes(const JsonValue& v, const std::string& path) {
        const auto& items = need_array(v, path);
        std::vector<Axis> axes;
        for (std::size_t i = 0; i < items.size(); ++i) axes.push_back(parse_axis(items[i], index_path(path, i), false));
        return axes;
    }

    // A zip's columns: named like parameters, all of one non-zero length.
    void parse_zip_columns(const JsonValue& z, const std::string& zpath, Axis& axis) {
        std::size_t rows = 0;
        for (const auto& [key, column] : need_object(z, zpath)) {
            auto cpath = member_path(zpath, key);
            check_param_name(key, cpath);
            const auto& cells = need_array(column, cpath);
            std::size_t n = cells.size();
            if (axis.zip_names.empty()) rows = n;
            else if (n != rows)
                fail(zpath, "columns have lengths " + std::to_string(rows) + " and " + std::to_string(n));
            std::vector<Scalar> values;
            for (std::size_t i = 0; i < n; ++i) values.push_back(get_scalar(cells[i], index_path(cpath, i)));
            axis.zip_names.emplace_back(key);
            axis.zip_columns.push_back(std::move(values));
        }
        if (axis.zip_names.empty()) fail(zpath, "has no columns");
        if (rows == 0) fail(zpath, "columns are empty");
    }

    // The numbers of a range, linspace, logspace or distribution (`n` of them as written,
    // at bpath), and a distribution's count.
    void check_args(const JsonValue& v, const std::string& path, const std::string& bpath, std::size_t n, Axis& axis) {
        switch (axis.kind) {
        case AxisKind::range: {
            if (n != 2 && n != 3) fail(bpath, "must be [start, stop] or [start, stop, step]");
            if (n == 2) axis.args.push_back(Number{true, 1, 0});
            if (axis.args[2].value() == 0) fail(bpath, "step must not be 0");
            double span = (axis.args[1].value() - axis.args[0].value()) / axis.args[2].value();
            if (!(span > 0)) fail(bpath, "is empty: stop is not beyond start in the direction of step");
            if (span > 1e12) fail(bpath, "has too many values");
            break;
        }
        case AxisKind::linspace:
        case AxisKind::logspace:
            if (n != 3 || !axis.args[2].is_int || axis.args[2].i < 1)
                fail(bpath, "must be [first, last, n] with n a positive integer");
            if (axis.kind == AxisKind::logspace && (axis.args[0].value() <= 0 || axis.args[1].value() <= 0))
                fail(bpath, "both ends must be positive");
            break;
        default: {
            if (n != 2) fail(bpath, std::string("must be [") + (axis.kind == AxisKind::normal ? "mean, stddev]" : "low, high]"));
            double a = axis.args[0].value(), b = axis.args[1].value();
            if (axis.kind == AxisKind::normal && b < 0) fail(bpath, "stddev must not be negative");
            if (axis.kind != AxisKind::normal && a > b) fail(bpath, "low must not exceed high");
            if (axis.kind == AxisKind::loguniform && a <= 0) fail(bpath, "both ends must be positive");
            if (axis.kind == AxisKind::int_ && !(axis.args[0].is_int && axis.args[1].is_int)) fail(bpath, "both ends must be integers");
            if (const JsonValue* c = v.find("count")) axis.count = get_uint(*c, member_path(path, "count"), 1);
            else if (method == Method::grid) fail(path, "a '" + std::string(axis_kind_name(axis.kind)) + "' axis needs a count in a grid sweep");
            if (method == Method::grid && axis.kind == AxisKind::int_ && axis.count) {
                // The draws never repeat, so there can be no more of them than integers.
                auto span = static_cast<std::uint64_t>(axis.args[1].i) - static_cast<std::uint64_t>(axis.args[0].i) + 1;
                if (span != 0 && axis.count > span)
                    fail(member_path(path, "count"), "asks for " + std::to_string(axis.count) + " distinct integers of [" +
                                                         std::to_string(axis.args[0].i) + ", " + std::to_string(axis.args[1].i) + "], which has " +
                                                         std::to_string(span));
            }
        }
        }
    }

    Axis parse_axis(const JsonValue& v, const std::string& path, bool in_union) {
        need_object(v, path);
        Axis axis;
        axis.path = path;
        if (const JsonValue* u = v.find("union")) {
            check_keys(v, path, {"union"});
            axis.kind = AxisKind::union_;
            auto upath = member_path(path, "union");
            const auto& members = need_array(*u, upath);
            if (members.empty()) fail(upath, "has no members");
            for (std::size_t i = 0; i < members.size(); ++i) axis.branches.push_back(parse_branch(members[i], index_path(upath, i)));
            return axis;
        }
        if (const JsonValue* r = v.find("repeat")) {
            check_keys(v, path, in_union ? std::initializer_list<std::string_view>{"repeat", "fixed"} : std::initializer_list<std::string_view>{"repeat"});
            axis.kind = AxisKind::repeat;
            axis.param = "repeat";
            axis.repeat = get_uint(*r, member_path(path, "repeat"), 1);
            return axis;
        }
        if (const JsonValue* z = v.find("zip")) {
            check_keys(v, path, in_union ? std::initializer_list<std::string_view>{"zip", "fixed"} : std::initializer_list<std::string_view>{"zip"});
            axis.kind = AxisKind::zip;
            parse_zip_columns(*z, member_path(path, "zip"), axis);
            return axis;
        }
        const JsonValue* p = v.find("param");
        if (!p) fail(path, "an axis needs one of 'param', 'zip', 'union' or 'repeat'");
        axis.param = get_string(*p, member_path(path, "param"));
        check_param_name(axis.param, member_path(path, "param"));
        static const std::pair<const char*, AxisKind> kinds[] = {
            {"values", AxisKind::values},       {"range", AxisKind::range},     {"linspace", AxisKind::linspace},
            {"logspace", AxisKind::logspace},   {"uniform", AxisKind::uniform}, {"loguniform", AxisKind::loguniform},
            {"int", AxisKind::int_},            {"normal", AxisKind::normal}};
        if (in_union)
            check_keys(v, path, {"param", "values", "range", "linspace", "logspace", "uniform", "loguniform", "int", "normal", "count", "fixed"});
        else
            check_keys(v, path, {"param", "values", "range", "linspace", "logspace", "uniform", "loguniform", "int", "normal", "count"});
        const JsonValue* body = nullptr;
        int found = 0;
        for (auto& [name, kind] : kinds)
            if (const JsonValue* b = v.find(name)) {
                body = b;
                axis.kind = kind;
                ++found;
            }
        if (found != 1)
            fail(path, found == 0 ? "parameter '" + axis.param + "' needs one of values, range, linspace, logspace, uniform, loguniform, int or normal"
                                  : "parameter '" + axis.param + "' has more than one kind of values");
        bool distribution = axis.kind == AxisKind::uniform || axis.kind == AxisKind::loguniform ||
                            axis.kind == AxisKind::int_ || axis.kind == AxisKind::normal;
        if (distribution)
            check_keys(v, path, in_union ? std::initializer_list<std::string_view>{"param", axis_kind_name(axis.kind), "count", "fixed"}
                                         : std::initializer_list<std::string_view>{"param", axis_kind_name(axis.kind), "count"});
        else
            check_keys(v, path, in_union ? std::initializer_list<std::string_view>{"param", axis_kind_name(axis.kind), "fixed"}
                                         : std::initializer_list<std::string_view>{"param", axis_kind_name(axis.kind)});
        auto bpath = member_path(path, axis_kind_name(axis.kind));
        const auto& items = need_array(*body, bpath);
        std::size_t n = items.size();
        if (axis.kind == AxisKind::values) {
            if (n == 0) fail(bpath, "is empty");
            for (std::size_t i = 0; i < n; ++i) axis.values.push_back(get_scalar(items[i], index_path(bpath, i)));
            return axis;
        }
        for (std::size_t i = 0; i < n; ++i) axis.args.push_back(get_number(items[i], index_path(bpath, i)));
        check_args(v, path, bpath, n, axis);
        return axis;
    }

    Branch parse_branch(const JsonValue& v, const std::string& path) {
        need_object(v, path);
        Branch branch;
        if (const JsonValue* f = v.find("fixed")) {
            branch.fixed = get_assignment(*f, member_path(path, "fixed"));
            for (auto& [k, value] : branch.fixed) check_param_name(k, member_path(path, "fixed." + k));
        }
        if (v.find("axes") || (v.find("fixed") && v.members().size() == 1)) {
            check_keys(v, path, {"fixed", "axes"});
            if (const JsonValue* a = v.find("axes")) branch.axes = parse_axes(*a, member_path(path, "axes"));
        } else {
            branch.axes.push_back(parse_axis(v, path, true));
        }
        return branch;
    }
};

// Each name may come from one axis only; the branches of one union may share names.
std::set<std::string> check_names(const std::vector<Axis>& axes, const Assignment& fixed) {
    std::set<std::string> all;
    auto add = [&](const std::string& name, const std::string& path) {
        if (!all.insert(name).second) fail(path, "parameter '" + name + "' is given twice");
    };
    for (auto& [k, v] : fixed) add(k, "fixed");
    for (const auto& axis : axes) {
        std::set<std::string> mine;
        switch (axis.kind) {
        case AxisKind::zip:
            for (auto& n : axis.zip_names) if (!mine.insert(n).second) fail(axis.path, "parameter '" + n + "' is given twice");
            break;
        case AxisKind::union_:
            for (const auto& b : axis.branches) {
                auto names = check_names(b.axes, b.fixed);
                mine.insert(names.begin(), names.end());
            }
            break;
        default: mine.insert(axis.param);
        }
        for (auto& n : mine) add(n, axis.path);
    }
    return all;
}

void collect_names(const std::vector<Axis>& axes, std::vector<std::string>& out) {
    auto add = [&](const std::string& n) {
        for (auto& o : out) if (o == n) return;
        out.push_back(n);
    };
    for (const auto& axis : axes) {
        if (axis.kind == AxisKind::zip) for (auto& n : axis.zip_names) add(n);
        else if (axis.kind == AxisKind::union_)
            for (const auto& b : axis.branches) {
                for (auto& [k, v] : b.fixed) add(k);
                collect_names(b.axes, out);
            }
        else add(axis.param);
    }
}

void check_template(const std::vector<std::string>& words, const std::vector<std::string>& names, const std::string& path) {
    for (auto& ref : template_references(words)) {
        if (ref == "index" || ref == "task_seed" || ref == "phase") continue;
        bool known = false;
        for (auto& n : names) known = known || n == ref;
        if (!known) fail(path, "{" + ref + "} names no parameter (use {{ and }} for literal braces)");
    }
}

}  // namespace

namespace {

void check_values(const std::vector<Axis>& axes) {
    for (const auto& axis : axes) {
        if (axis.kind == AxisKind::union_)
            for (const auto& b : axis.branches) check_values(b.axes);
        if (axis.kind != AxisKind::values) continue;
        // Each value makes its own tasks: the same one twice runs them twice. (1 and 1.0
        // differ: an integer and a float.) A sorted copy keeps long lists fast.
        auto bpath = member_path(axis.path, "values");
        std::vector<std::pair<std::string_view, std::size_t>> sorted;
        for (std::size_t i = 0; i < axis.values.size(); ++i) sorted.emplace_back(axis.values[i].json, i);
        std::sort(sorted.begin(), sorted.end());
        for (std::size_t i = 1; i < sorted.size(); ++i)
            if (sorted[i].first == sorted[i - 1].first) {
                auto [a, b] = std::minmax(sorted[i - 1].second, sorted[i].second);
                fail(index_path(bpath, b), "is " + axis.values[b].json + " again (as " + index_path(bpath, a) + "): each value makes its own tasks");
            }
    }
}

void check_closed(const std::vector<std::string>& words, const std::string& path) {
    if (auto open = unclosed_reference(words))
        fail(path, "'" + *open + "' is not closed: write " + *open + "} to substitute the parameter (or {{ for a literal brace)");
}

}  // namespace

void check_spec_to_expand(const SweepSpec& spec) {
    auto names = parameter_names(spec);
    std::map<std::string, std::string> variables;
    for (const auto& n : names) {
        // It would read as an option in --NAME=VALUE arguments and on the command line.
        if (!n.empty() && n[0] == '-') fail("axes", "parameter name '" + n + "' must not start with '-' (it would read as an option)");
        // A task sees each parameter as AIHPC_PARAM_NAME too: two names that give the same
        // variable (model.depth and model_depth, lr and LR) would lose one of them there.
        auto [it, fresh] = variables.emplace(env_name_part(n), n);
        if (!fresh)
            fail("axes", "parameters '" + it->second + "' and '" + n + "' both become the variable AIHPC_PARAM_" + it->first +
                             " in a task's environment; rename one of them");
    }
    check_values(spec.axes);
    check_closed(spec.command, "command");
    for (std::size_t i = 0; i < spec.phases.size(); ++i)
        if (spec.phases[i].command_given) check_closed(spec.phases[i].command, member_path(index_path("phases", i), "command"));
}

namespace {

void collect_counts(const std::vector<Axis>& axes, std::vector<std::string>& out) {
    for (const auto& a : axes) {
        if (a.kind == AxisKind::union_)
            for (const auto& b : a.branches) collect_counts(b.axes, out);
        else if (a.count && std::find(out.begin(), out.end(), a.param) == out.end())
            out.push_back(a.param);
    }
}

}  // namespace

std::vector<std::string> counts_unused(const SweepSpec& spec) {
    std::vector<std::string> out;
    if (spec.method == Method::random) collect_counts(spec.axes, out);
    return out;
}

std::vector<std::string> parameter_names(const SweepSpec& spec) {
    std::vector<std::string> out;
    collect_names(spec.axes, out);
    if (spec.schedule) out.push_back(spec.schedule->resource);
    return out;
}

namespace {

// The largest budget a schedule may name: its products (configurations times eta^s)
// stay far inside 64 bits.
constexpr std::uint64_t kMaxScheduleBudget = std::uint64_t{1} << 40;

Schedule parse_schedule(const JsonValue& v, const std::vector<std::string>& axis_names) {
    const std::string path = "schedule";
    need_object(v, path);
    check_keys(v, path, {"type", "resource", "min", "max", "eta", "metric", "mode"});
    Schedule s;
    const JsonValue* type = v.find("type");
    if (!type) fail(path, "needs \"type\": \"sha\", \"hyperband\" or \"asha\"");
    auto t = get_string(*type, "schedule.type");
    if (t == "sha") s.type = ScheduleType::sha;
    else if (t == "hyperband") s.type = ScheduleType::hyperband;
    else if (t == "asha") s.type = ScheduleType::asha;
    else fail("schedule.type", "must be \"sha\", \"hyperband\" or \"asha\", not \"" + t + "\"");
    const JsonValue* resource = v.find("resource");
    if (!resource) fail(path, "needs \"resource\": the parameter that carries each rung's budget (epochs, steps)");
    s.resource = get_string(*resource, "schedule.resource");
    check_param_name(s.resource, "schedule.resource");
    if (s.resource == "repeat") fail("schedule.resource", "'repeat' numbers replicates; name the budget parameter (epochs, steps)");
    for (auto& n : axis_names)
        if (n == s.resource)
            fail("schedule.resource", "parameter '" + s.resource + "' is given by an axis, but the schedule sets it to each rung's budget; "
                                      "remove its axis (the schedule adds the parameter)");
    // collect shows these beside the parameters of a scheduled sweep's rows.
    for (auto& n : axis_names)
        if (n == "bracket" || n == "rung" || n == "budget" || n == "promoted")
            fail("axes", "parameter '" + n + "' is a column of a scheduled sweep's results; give the parameter another name");
    if (s.resource == "bracket" || s.resource == "rung" || s.resource == "budget" || s.resource == "promoted")
        fail("schedule.resource", "'" + s.resource + "' is a column of a scheduled sweep's results; name it for what it counts (epochs, steps)");
    auto bound = [&](const char* key, std::uint64_t min) -> std::uint64_t {
        const JsonValue* b = v.find(key);
        if (!b) fail(path, std::string("needs \"") + key + "\", an integer >= " + std::to_string(min));
        auto n = get_uint(*b, member_path(path, key), min);
        if (n > kMaxScheduleBudget) fail(member_path(path, key), "must be at most " + std::to_string(kMaxScheduleBudget));
        return n;
    };
    s.min = bound("min", 1);
    s.max = bound("max", 1);
    s.eta = bound("eta", 2);
    if (s.max < s.min)
        fail("schedule.max", "is " + std::to_string(s.max) + ", below schedule.min (" + std::to_string(s.min) + "); max is the full budget");
    const JsonValue* metric = v.find("metric");
    if (!metric) fail(path, "needs \"metric\": the name of the metric that ranks a rung (val_loss)");
    s.metric = get_string(*metric, "schedule.metric");
    if (s.metric.empty()) fail("schedule.metric", "is empty");
    if (const JsonValue* mode = v.find("mode")) {
        auto m = get_string(*mode, "schedule.mode");
        if (m == "max") s.maximize = true;
        else if (m != "min") fail("schedule.mode", "must be \"min\" or \"max\", not \"" + m + "\"");
    }
    return s;
}

// The "slurm" member: the arrays' throttle, size and packing, and the words for sbatch.
void parse_slurm(const JsonValue& s, SlurmOptions& slurm) {
    need_object(s, "slurm");
    check_keys(s, "slurm", {"throttle", "max_array_size", "pack", "sbatch", "aihpc"});
    if (const JsonValue* v = s.find("throttle")) slurm.throttle = get_uint(*v, "slurm.throttle");
    if (const JsonValue* v = s.find("pack")) slurm.pack = get_uint(*v, "slurm.pack", 1);
    if (const JsonValue* v = s.find("max_array_size")) {
        if (v->is_string()) {
            if (get_string(*v, "slurm.max_array_size") != "auto") fail("slurm.max_array_size", "must be a positive integer or \"auto\"");
        } else {
            slurm.max_array_size = get_uint(*v, "slurm.max_array_size", 1);
        }
    }
    if (const JsonValue* v = s.find("sbatch")) slurm.sbatch = get_words(*v, "slurm.sbatch");
    if (const JsonValue* v = s.find("aihpc")) slurm.aihpc = get_words(*v, "slurm.aihpc");
    for (std::size_t i = 0; i < slurm.aihpc.size(); ++i)
        if (slurm.aihpc[i].rfind("--aihpc-", 0) != 0) fail(index_path("slurm.aihpc", i), "must be an --aihpc-* option");
}

// The "phases" member: each phase's name (unique), the earlier phase it runs after, its
// sbatch and aihpc words and its own command, whose placeholders are `names`.
void parse_phases(const JsonValue& p, const std::vector<std::string>& names, std::vector<Phase>& phases) {
    const std::string phases_path = "phases";
    const auto& list = need_array(p, phases_path);
    if (list.empty()) fail("phases", "is empty");
    for (std::size_t i = 0; i < list.size(); ++i) {
        auto path = index_path("phases", i);
        const JsonValue& v = list[i];
        need_object(v, path);
        check_keys(v, path, {"name", "after", "sbatch", "aihpc", "command"});
        Phase phase;
        const JsonValue* n = v.find("name");
        if (!n) fail(path, "needs a name");
        phase.name = get_string(*n, member_path(path, "name"));
        for (char c : phase.name)
            if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'))
                fail(member_path(path, "name"), "may hold only letters, digits, '_' and '-'");
        if (phase.name.empty()) fail(member_path(path, "name"), "is empty");
        for (auto& other : phases)
            if (other.name == phase.name) fail(member_path(path, "name"), "phase '" + phase.name + "' is given twice");
        if (const JsonValue* a = v.find("after")) {
            phase.after = get_string(*a, member_path(path, "after"));
            bool earlier = false;
            for (auto& other : phases) earlier = earlier || other.name == phase.after;
            if (!earlier) fail(member_path(path, "after"), "'" + phase.after + "' is not an earlier phase");
        }
        if (const JsonValue* s = v.find("sbatch")) phase.sbatch = get_words(*s, member_path(path, "sbatch"));
        if (const JsonValue* s = v.find("aihpc")) phase.aihpc = get_words(*s, member_path(path, "aihpc"));
        if (const JsonValue* c = v.find("command")) {
            phase.command = get_command(*c, member_path(path, "command"));
            phase.command_given = true;
            check_template(phase.command, names, member_path(path, "command"));
        }
        phases.push_back(std::move(phase));
    }
}

}  // namespace

SweepSpec parse_spec(std::string_view json_text) {
    JsonValue doc;
    try {
        doc = parse_json_value(json_text);
    } catch (const JsonError& e) {
        throw Error(std::string("sweep spec: not valid JSON: ") + e.what());
    }
    const JsonValue& root = doc;
    need_object(root, "");
    check_keys(root, "", {"name", "seed", "method", "trials", "axes", "exclude", "command", "slurm", "phases", "schedule"});
    SweepSpec spec;
    Parser parser;
    if (const JsonValue* v = root.find("name")) {
        spec.name = get_string(*v, "name");
        // It goes into #SBATCH --job-name= lines unquoted.
        if (spec.name.empty()) fail("name", "is empty");
        for (char c : spec.name)
            if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.'))
                fail("name", "may hold only letters, digits, '_', '-' and '.'");
    }
    if (const JsonValue* v = root.find("seed")) spec.seed = get_uint(*v, "seed");
    if (const JsonValue* v = root.find("method")) {
        auto m = get_string(*v, "method");
        if (m == "grid") spec.method = Method::grid;
        else if (m == "random") spec.method = Method::random;
        else fail("method", "must be \"grid\" or \"random\", not \"" + m + "\"");
    }
    parser.method = spec.method;
    if (const JsonValue* v = root.find("trials")) {
        if (spec.method != Method::random) fail("trials", "is only for \"method\": \"random\"");
        spec.trials = get_uint(*v, "trials", 1);
    } else if (spec.method == Method::random) {
        fail("", "a random sweep needs \"trials\"");
    }
    const JsonValue* axes = root.find("axes");
    if (!axes) fail("", "needs \"axes\"");
    spec.axes = parser.parse_axes(*axes, "axes");
    if (spec.axes.empty()) fail("axes", "is empty");
    check_names(spec.axes, {});
    if (const JsonValue* v = root.find("schedule")) spec.schedule = parse_schedule(*v, parameter_names(spec));
    auto names = parameter_names(spec);

    if (const JsonValue* v = root.find("exclude")) {
        const std::string exclude_path = "exclude";  // named: a reference result must not hang on a temporary argument
        const auto& rules = need_array(*v, exclude_path);
        for (std::size_t i = 0; i < rules.size(); ++i) {
            auto path = index_path("exclude", i);
            auto rule = get_assignment(rules[i], path);
            if (rule.empty()) fail(path, "is empty: it would exclude every task");
            for (auto& [k, val] : rule) {
                bool known = false;
                for (auto& n : names) known = known || n == k;
                if (!known) fail(path, "'" + k + "' is not a parameter");
            }
            spec.exclude.push_back(std::move(rule));
        }
    }
    if (const JsonValue* v = root.find("command")) {
        spec.command = get_command(*v, "command");
        check_template(spec.command, names, "command");
    }
    if (const JsonValue* s = root.find("slurm")) parse_slurm(*s, spec.slurm);
    if (const JsonValue* p = root.find("phases")) {
        parse_phases(*p, names, spec.phases);
    } else {
        spec.phases.push_back(Phase{"main", "", {}, {}, {}, false});
    }
    // A rung runs a sparse set of configurations, which aftercorr cannot chain task by task.
    if (spec.schedule && spec.phases.size() > 1)
        fail("phases", "a sweep with a schedule runs one phase; put the steps of a task in its command");
    return spec;
}

void require_commands(const SweepSpec& spec) {
    for (const auto& phase : spec.phases) {
        if (!spec.command_of(phase).empty()) continue;
        if (spec.phases.size() == 1)
            throw Error("sweep spec: (top level): there is no command to run; give \"command\" in the spec, or the command template "
                        "after -- (aihpc-sweep expand ... -o SWEEP -- python train.py --lr {lr})");
        throw Error("sweep spec: phase '" + phase.name + "' has no command; give it a \"command\", or give the spec one (or the words "
                    "after -- at expand) for the phases without their own");
    }
}

// ---- normalized form

namespace {

void put_words(std::string& out, const std::vector<std::string>& words) {
    out += '[';
    for (std::size_t i = 0; i < words.size(); ++i) {
        if (i) out += ',';
        out += json_quote(words[i]);
    }
    out += ']';
}

void put_number(std::string& out, const Number& n) { out += n.is_int ? std::to_string(n.i) : format_double(n.d); }

void put_assignment(std::string& out, const Assignment& a) {
    out += '{';
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (i) out += ',';
        out += json_quote(a[i].first) + ':' + a[i].second.json;
    }
    out += '}';
}

void put_axes(std::string& out, const std::vector<Axis>& axes);

void put_axis(std::string& out, const Axis& axis) {
    switch (axis.kind) {
    case AxisKind::repeat: out += "{\"repeat\":" + std::to_string(axis.repeat) + "}"; return;
    case AxisKind::zip:
        out += "{\"zip\":{";
        for (std::size_t c = 0; c < axis.zip_names.size(); ++c) {
            if (c) out += ',';
            out += json_quote(axis.zip_names[c]) + ":[";
            for (std::size_t r = 0; r < axis.zip_columns[c].size(); ++r) out += (r ? "," : "") + axis.zip_columns[c][r].json;
            out += ']';
        }
        out += "}}";
        return;
    case AxisKind::union_:
        out += "{\"union\":[";
        for (std::size_t b = 0; b < axis.branches.size(); ++b) {
            if (b) out += ',';
            out += "{\"fixed\":";
            put_assignment(out, axis.branches[b].fixed);
            out += ",\"axes\":";
            put_axes(out, axis.branches[b].axes);
            out += '}';
        }
        out += "]}";
        return;
    default: break;
    }
    out += "{\"param\":" + json_quote(axis.param) + ",\"" + axis_kind_name(axis.kind) + "\":[";
    if (axis.kind == AxisKind::values)
        for (std::size_t i = 0; i < axis.values.size(); ++i) out += (i ? "," : "") + axis.values[i].json;
    else
        for (std::size_t i = 0; i < axis.args.size(); ++i) {
            if (i) out += ',';
            put_number(out, axis.args[i]);
        }
    out += ']';
    if (axis.count) out += ",\"count\":" + std::to_string(axis.count);
    out += '}';
}

void put_axes(std::string& out, const std::vector<Axis>& axes) {
    out += '[';
    for (std::size_t i = 0; i < axes.size(); ++i) {
        if (i) out += ',';
        put_axis(out, axes[i]);
    }
    out += ']';
}

}  // namespace

std::string normalize(const SweepSpec& spec) {
    std::string out = "{\"name\":" + json_quote(spec.name) + ",\"seed\":" + std::to_string(spec.seed) +
                      ",\"method\":" + (spec.method == Method::grid ? "\"grid\"" : "\"random\"");
    if (spec.method == Method::random) out += ",\"trials\":" + std::to_string(spec.trials);
    out += ",\"axes\":";
    put_axes(out, spec.axes);
    out += ",\"exclude\":[";
    for (std::size_t i = 0; i < spec.exclude.size(); ++i) {
        if (i) out += ',';
        put_assignment(out, spec.exclude[i]);
    }
    out += ']';
    if (!spec.command.empty()) {
        out += ",\"command\":";
        put_words(out, spec.command);
    }
    out += ",\"slurm\":{\"throttle\":" + std::to_string(spec.slurm.throttle) + ",\"max_array_size\":" +
           (spec.slurm.max_array_size ? std::to_string(spec.slurm.max_array_size) : std::string("\"auto\"")) +
           ",\"pack\":" + std::to_string(spec.slurm.pack) + ",\"sbatch\":";
    put_words(out, spec.slurm.sbatch);
    out += ",\"aihpc\":";
    put_words(out, spec.slurm.aihpc);
    out += "},\"phases\":[";
    for (std::size_t i = 0; i < spec.phases.size(); ++i) {
        const auto& p = spec.phases[i];
        if (i) out += ',';
        out += "{\"name\":" + json_quote(p.name);
        if (!p.after.empty()) out += ",\"after\":" + json_quote(p.after);
        out += ",\"sbatch\":";
        put_words(out, p.sbatch);
        out += ",\"aihpc\":";
        put_words(out, p.aihpc);
        if (p.command_given) {
            out += ",\"command\":";
            put_words(out, p.command);
        }
        out += '}';
    }
    out += "]";
    if (const auto& s = spec.schedule)
        out += ",\"schedule\":{\"type\":\"" + std::string(schedule_type_name(s->type)) + "\",\"resource\":" + json_quote(s->resource) +
               ",\"min\":" + std::to_string(s->min) + ",\"max\":" + std::to_string(s->max) + ",\"eta\":" + std::to_string(s->eta) +
               ",\"metric\":" + json_quote(s->metric) + ",\"mode\":\"" + (s->maximize ? "max" : "min") + "\"}";
    out += "}";
    return out;
}

}  // namespace aihpc::sweep
