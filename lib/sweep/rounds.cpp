#include "sweep/rounds.hpp"

#include <sys/stat.h>

#include <cmath>

#include "common/error.hpp"
#include "common/json.hpp"
#include "common/text.hpp"
#include "sweep/spec.hpp"
#include "sweep/sweep_dir.hpp"

namespace aihpc::sweep {

namespace {

std::string get_text(json_object* o, const char* key) {
    auto* v = json_member(o, key);
    return v && !json_object_is_type(v, json_type_null) ? json_object_get_string(v) : "";
}

std::uint64_t get_uint(json_object* o, const char* key, std::uint64_t fallback = 0) {
    auto* v = json_member(o, key);
    if (!v || !json_object_is_type(v, json_type_int)) return fallback;
    auto n = json_object_get_int64(v);
    return n < 0 ? fallback : static_cast<std::uint64_t>(n);
}

std::vector<std::string> get_words(json_object* o, const char* key) {
    std::vector<std::string> out;
    auto* v = json_member(o, key);
    if (!v || !json_object_is_type(v, json_type_array)) return out;
    for (std::size_t i = 0; i < json_object_array_length(v); ++i) {
        json_object* word = json_object_array_get_idx(v, i);
        if (!json_object_is_type(word, json_type_string))
            throw Error(std::string("rounds.json is damaged (") + key + "[" + std::to_string(i) +
                        "] is not a string); the closed loop cannot go on");
        out.push_back(json_object_get_string(word));
    }
    return out;
}

}  // namespace

std::pair<std::string, bool> parse_metric_direction(const std::string& text, std::string_view option) {
    std::string opt(option);
    std::string name = text;
    bool maximize = false;
    auto colon = text.rfind(':');
    if (colon != std::string::npos) {
        auto dir = text.substr(colon + 1);
        if (dir != "min" && dir != "max") throw Error(opt + ": direction must be min or max, not '" + dir + "'");
        maximize = dir == "max";
        name.resize(colon);
    }
    if (name.empty()) throw Error(opt + " needs a name, as in " + opt + " loss:min");
    return {name, maximize};
}

std::string rounds_json(const RoundsRecord& r) {
    const auto& p = r.plan;
    std::string out = "{\"rounds\":" + std::to_string(p.rounds) + ",\"metric\":" + json_quote(p.metric) + ",\"direction\":\"" +
                      (p.maximize ? "max" : "min") + "\",\"top\":" + std::to_string(p.top) + ",\"shrink\":" + format_double(p.shrink) +
                      ",\"aggregate\":" +
                      (p.aggregate == Aggregate::mean ? "\"mean\"" : p.aggregate == Aggregate::median ? "\"median\"" : "null") +
                      ",\"trials\":" + (p.trials ? std::to_string(*p.trials) : std::string("null")) +
                      ",\"throttle\":" + std::to_string(p.throttle) + ",\"max_array_size\":" + std::to_string(p.max_array_size) +
                      ",\"pack\":" + std::to_string(p.pack) + ",\"sbatch\":" + json_string_array(p.sbatch) + ",\"tool\":" + json_quote(p.tool) +
                      ",\"state\":" + json_quote(r.state) + ",\"message\":" + json_quote_or_null(r.message) +
                      ",\n\"history\":[";
    for (std::size_t i = 0; i < r.history.size(); ++i) {
        const auto& h = r.history[i];
        out += std::string(i ? ",\n" : "\n") + "{\"round\":" + std::to_string(h.round) + ",\"dir\":" + json_quote(h.dir) +
               ",\"tasks\":" + std::to_string(h.tasks) + ",\"jobs\":" + json_string_array(h.jobs) +
               ",\"controller\":" + json_quote_or_null(h.controller) + ",\"best\":";
        if (h.best)
            out += "{\"index\":" + std::to_string(h.best->index) + ",\"metric\":" +
                   (std::isfinite(h.best->metric) ? format_double(h.best->metric) : std::string("null")) +
                   ",\"params\":" + (h.best->params_json.empty() ? "null" : h.best->params_json) + "}";
        else
            out += "null";
        out += "}";
    }
    out += "]";
    // The best of the whole loop, which need not be the last round's.
    if (auto best = overall_best(r))
        out += ",\n\"best\":{\"round\":" + std::to_string(best->first) + ",\"index\":" + std::to_string(best->second.index) +
               ",\"metric\":" + format_double(best->second.metric) +
               ",\"params\":" + (best->second.params_json.empty() ? "null" : best->second.params_json) + "}";
    return out + "}\n";
}

std::optional<std::pair<std::uint64_t, RoundBest>> overall_best(const RoundsRecord& r) {
    std::optional<std::pair<std::uint64_t, RoundBest>> best;
    for (const auto& h : r.history) {
        if (!h.best || !std::isfinite(h.best->metric)) continue;
        bool better = !best || (r.plan.maximize ? h.best->metric > best->second.metric : h.best->metric < best->second.metric);
        if (better) best = std::make_pair(h.round, *h.best);
    }
    return best;
}

RoundsRecord parse_rounds_json(const std::string& text) {
    JsonRef doc = parse_json(text);
    if (!doc.get() || !json_object_is_type(doc.get(), json_type_object) || !json_member(doc.get(), "history") ||
        !json_object_is_type(json_member(doc.get(), "history"), json_type_array))
        throw Error("rounds.json is damaged (no history); the closed loop cannot go on");
    RoundsRecord r;
    auto& p = r.plan;
    p.rounds = get_uint(doc.get(), "rounds", 1);
    p.metric = get_text(doc.get(), "metric");
    p.maximize = get_text(doc.get(), "direction") == "max";
    p.top = get_uint(doc.get(), "top", 1);
    if (auto* v = json_member(doc.get(), "shrink")) p.shrink = json_object_get_double(v);
    // Absent in the rounds.json of older loops: each configuration by its best replicate.
    if (auto* v = json_member(doc.get(), "aggregate"); v && json_object_is_type(v, json_type_string)) p.aggregate = parse_aggregate(json_object_get_string(v));
    if (auto* v = json_member(doc.get(), "trials"); v && json_object_is_type(v, json_type_int)) p.trials = get_uint(doc.get(), "trials");
    p.throttle = get_uint(doc.get(), "throttle");
    p.max_array_size = get_uint(doc.get(), "max_array_size", 1001);
    p.pack = get_uint(doc.get(), "pack", 1);
    p.sbatch = get_words(doc.get(), "sbatch");
    p.tool = get_text(doc.get(), "tool");
    r.state = get_text(doc.get(), "state");
    r.message = get_text(doc.get(), "message");
    auto* hist = json_member(doc.get(), "history");
    for (std::size_t i = 0; i < json_object_array_length(hist); ++i) {
        auto* h = json_object_array_get_idx(hist, i);
        if (!json_object_is_type(h, json_type_object))
            throw Error("rounds.json is damaged (history[" + std::to_string(i) + "] is not an object); the closed loop cannot go on");
        Round round;
        round.round = get_uint(h, "round", i + 1);
        round.dir = get_text(h, "dir");
        round.tasks = get_uint(h, "tasks");
        round.jobs = get_words(h, "jobs");
        round.controller = get_text(h, "controller");
        if (auto* b = json_member(h, "best"); b && json_object_is_type(b, json_type_object)) {
            RoundBest best;
            best.index = get_uint(b, "index");
            if (auto* m = json_member(b, "metric")) best.metric = json_object_get_double(m);
            if (auto* ps = json_member(b, "params")) best.params_json = json_object_to_json_string_ext(ps, JSON_C_TO_STRING_PLAIN);
            round.best = best;
        }
        r.history.push_back(std::move(round));
    }
    if (r.history.empty()) throw Error("rounds.json records no round; the closed loop cannot go on");
    return r;
}

std::string round_dir(const std::string& root, std::uint64_t round) {
    return round <= 1 ? root : root + "/rounds/" + std::to_string(round);
}

std::optional<std::pair<std::string, bool>> closed_loop_goal(const std::string& sweep_path) {
    std::string parent = sweep_path.substr(0, sweep_path.find_last_of('/'));
    std::vector<std::string> candidates{sweep_path + "/rounds.json"};
    if (parent.size() >= 7 && parent.compare(parent.size() - 7, 7, "/rounds") == 0)
        candidates.push_back(parent.substr(0, parent.size() - 7) + "/rounds.json");
    for (const std::string& path : candidates) {
        struct stat st {};
        if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
        try {
            RoundsRecord record = parse_rounds_json(read_file(path));
            if (!record.plan.metric.empty()) return std::make_pair(record.plan.metric, record.plan.maximize);
        } catch (const Error&) {
            // A damaged record only costs the reader its direction; advance reports it.
        }
    }
    return std::nullopt;
}

std::string controller_script_path(const std::string& root) { return root + "/scripts/advance.sh"; }

std::string controller_script(const std::string& root, const std::string& sweep_name, const std::string& tool, const std::string& tool_version) {
    return "#!/bin/sh\n"
           "#SBATCH --job-name=" + sweep_name + ".advance\n"
           "#SBATCH --output=" + root + "/logs/advance-%j.out\n"
           "#SBATCH --ntasks=1\n"
           "#SBATCH --cpus-per-task=1\n"
           "#SBATCH --time=00:10:00\n"
           "# Written by aihpc-sweep " + tool_version + ": the controller of the closed loop. It ranks the\n"
           "# round that just ended, writes the next one under rounds/, submits it and the next controller.\n"
           "exec " + shell_quote(tool) + " advance " + shell_quote(root) + "\n";
}

std::vector<std::string> placement_args(const std::vector<std::string>& words) {
    static const char* long_names[] = {"--partition", "--account", "--qos", "--reservation", "--clusters", "--wckey"};
    static const char* short_names[] = {"-p", "-A", "-q", "-M"};
    std::vector<std::string> out;
    for (std::size_t i = 0; i < words.size(); ++i) {
        const auto& w = words[i];
        bool take = false, with_value = false;
        for (auto* n : long_names) {
            std::string name(n);
            if (w == name) take = with_value = true;
            else if (starts_with(w, name + "=")) take = true;
        }
        for (auto* n : short_names) {
            std::string name(n);
            if (w == name) take = with_value = true;
            else if (starts_with(w, name) && w.size() > name.size() && w[1] != '-') take = true;
        }
        if (!take) continue;
        out.push_back(w);
        if (with_value && i + 1 < words.size()) out.push_back(words[++i]);
    }
    return out;
}

std::vector<std::string> controller_argv(const std::string& script, const std::vector<std::string>& jobs,
                                         const std::vector<std::string>& placement) {
    if (jobs.empty()) throw Error("a round without jobs cannot hold a controller");
    std::vector<std::string> out = {"sbatch", "--parsable", "--dependency=afterany:" + join(jobs, ":")};
    out.insert(out.end(), placement.begin(), placement.end());
    out.push_back(script);
    return out;
}

}  // namespace aihpc::sweep
