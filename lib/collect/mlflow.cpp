#include "collect/mlflow.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <ctime>
#include <memory>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/json.hpp"
#include "common/paths.hpp"
#include "common/text.hpp"

namespace aihpc::collect {

std::string mlflow_run_id(std::string_view seed) {
    XXH128_hash_t h = XXH3_128bits(seed.data(), seed.size());
    char buf[33];
    std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(h.high64), static_cast<unsigned long long>(h.low64));
    return buf;
}

std::optional<std::int64_t> rfc3339_millis(std::string_view text) {
    std::string t(text);
    std::tm tm{};
    const char* rest = ::strptime(t.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
    if (!rest) return std::nullopt;
    double frac = 0;
    if (*rest == '.') {
        char* end = nullptr;
        frac = std::strtod(rest, &end);
        rest = end;
    }
    long offset = 0;
    if (*rest == 'Z' || *rest == 'z') {
        ++rest;
    } else if (*rest == '+' || *rest == '-') {
        int sign = *rest == '-' ? -1 : 1;
        int hh = 0, mm = 0;
        if (std::sscanf(rest + 1, "%2d:%2d", &hh, &mm) != 2) return std::nullopt;
        offset = sign * (hh * 3600L + mm * 60L);
        rest += 6;
    } else {
        return std::nullopt;
    }
    if (*rest) return std::nullopt;
    std::int64_t secs = static_cast<std::int64_t>(::timegm(&tm)) - offset;
    return secs * 1000 + static_cast<std::int64_t>(frac * 1000 + 0.5);
}

std::string yaml_quote(std::string_view text) {
    std::string out = "'";
    for (char c : text) {
        if (c == '\'') out += '\'';
        out += c;
    }
    return out + "'";
}

bool mlflow_name_ok(std::string_view name) {
    // MLflow's own check: only these characters, and a name that posixpath.normpath
    // leaves as it is, that is not '.', and that does not start with '..' or '/'.
    if (name.empty() || name.front() == '/' || name.substr(0, 2) == "..") return false;
    if (!std::all_of(name.begin(), name.end(), [](char c) {
            return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.' ||
                   c == ' ' || c == '/';
        }))
        return false;
    for (auto& part : split(std::string(name), '/'))
        if (part.empty() || part == "." || part == "..") return false;
    return true;
}

std::string mlflow_escaped_name(std::string_view name) {
    std::string out;
    for (char c : name) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.' ||
                  c == ' ' || c == '/';
        out += ok ? c : '_';
    }
    std::string joined;
    for (auto& part : split(out, '/')) {
        std::string p = part.empty() || part == "." || part == ".." ? "_" : part;
        joined += (joined.empty() ? "" : "/") + p;
    }
    if (joined.substr(0, 2) == "..") joined[0] = '_';
    if (joined.empty()) joined = "_";
    return joined;
}

namespace {

void write_text(const std::string& path, std::string_view text) {
    auto slash = path.rfind('/');
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666));
    if (!fd && errno == ENOENT && slash != std::string::npos) {
        make_directories(path.substr(0, slash));  // a name with '/' nests, as MLflow stores it
        fd = UniqueFd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666));
    }
    if (!fd) throw_errno("cannot create " + path);
    const char* p = text.data();
    std::size_t left = text.size();
    while (left) {
        ssize_t n = ::write(fd.get(), p, left);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("cannot write " + path);
        }
        p += n;
        left -= static_cast<std::size_t>(n);
    }
}

void remove_tree(const std::string& path) {
    if (!path_exists(path)) return;
    ::nftw(path.c_str(), [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }, 16, FTW_DEPTH | FTW_PHYS);
}

std::int64_t now_millis() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string user_name() {
    struct passwd pw, *found = nullptr;
    char buf[4096];
    if (::getpwuid_r(::getuid(), &pw, buf, sizeof buf, &found) == 0 && found) return pw.pw_name;
    return std::to_string(::getuid());
}

std::string yaml_unquote(std::string_view v) {
    v = trim(v);
    if (v.size() >= 2 && v.front() == '\'' && v.back() == '\'') {
        std::string out;
        for (std::size_t i = 1; i + 1 < v.size(); ++i) {
            out += v[i];
            if (v[i] == '\'' && v[i + 1] == '\'') ++i;
        }
        return out;
    }
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') return std::string(v.substr(1, v.size() - 2));
    return std::string(v);
}

std::string experiment_meta(const std::string& root, const std::string& id, const std::string& name, std::int64_t now) {
    return "artifact_location: " + yaml_quote("file://" + root + "/" + id) + "\ncreation_time: " + std::to_string(now) +
           "\nexperiment_id: " + yaml_quote(id) + "\nlast_update_time: " + std::to_string(now) +
           "\nlifecycle_stage: active\nname: " + yaml_quote(name) + "\n";
}

// The experiment named `name`, or a new one with the next free integer id.
std::string find_or_create_experiment(const std::string& root, const std::string& name) {
    std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(root.c_str()), ::closedir);
    if (!d) throw_errno("cannot read " + root);
    std::uint64_t highest = 0;
    while (auto* e = ::readdir(d.get())) {
        auto id = parse_uint(e->d_name);
        if (!id) continue;
        highest = std::max(highest, *id);
        std::string meta = root + "/" + e->d_name + "/meta.yaml";
        if (!path_exists(meta)) continue;
        for (auto& line : split(sweep::read_file(meta), '\n'))
            if (starts_with(line, "name:") && yaml_unquote(std::string_view(line).substr(5)) == name) return e->d_name;
    }
    // A deleted experiment keeps its id in .trash, and MLflow restores it there: never
    // reuse it.
    if (std::unique_ptr<DIR, int (*)(DIR*)> trash(::opendir((root + "/.trash").c_str()), ::closedir); trash)
        while (auto* e = ::readdir(trash.get()))
            if (auto id = parse_uint(e->d_name)) highest = std::max(highest, *id);
    std::string id = std::to_string(highest + 1);
    make_directory(root + "/" + id);
    write_text(root + "/" + id + "/meta.yaml", experiment_meta(root, id, name, now_millis()));
    return id;
}

struct Run {
    std::string id, name;
    int status = 3;  // RunStatus: RUNNING 1, FINISHED 3, FAILED 4
    std::optional<std::int64_t> start, end;
    std::vector<std::pair<std::string, std::string>> params, tags;
    std::vector<std::pair<std::string, std::string>> metrics;  // name, value text
    // A metric the task wrote as a list of numbers: one value per step, 0, 1, ...
    std::vector<std::pair<std::string, std::vector<std::string>>> metric_steps;
    std::vector<std::pair<std::string, std::string>> artifacts;  // file name, text
    std::int64_t metric_time = 0;
};

// The numbers of a metric written as a JSON list ([0.9, 0.7, 0.5]); nullopt for anything
// else (a list holding text, an empty one).
std::optional<std::vector<std::string>> step_values(const sweep::Scalar& value) {
    if (value.json.empty() || value.json[0] != '[') return std::nullopt;
    try {
        JsonValue list = parse_json_value(value.json);
        std::vector<std::string> out;
        for (const auto& item : list.as_array("")) {
            if (!item.is_number()) return std::nullopt;
            out.push_back(item.text());
        }
        if (out.empty()) return std::nullopt;
        return out;
    } catch (const Error&) {
        return std::nullopt;
    }
}

// Writes the run beside its final place, then swaps it in, so that a reader never
// sees half a run.
void write_run(const std::string& root, const std::string& experiment, const Run& run, const std::string& user,
               std::vector<std::string>& skipped) {
    std::string final_dir = root + "/" + experiment + "/" + run.id;
    std::string dir = final_dir + ".tmp." + std::to_string(::getpid());
    remove_tree(dir);
    make_directory(dir);
    // Whatever fails below, no half-written run stays where MLflow would read it.
    struct RemoveUnlessRenamed {
        const std::string& path;
        bool renamed = false;
        ~RemoveUnlessRenamed() {
            if (!renamed) remove_tree(path);
        }
    } guard{dir};
    for (auto sub : {"/params", "/metrics", "/tags", "/artifacts"}) make_directory(dir + sub);
    auto ms = [](const std::optional<std::int64_t>& v) { return v ? std::to_string(*v) : std::string("null"); };
    write_text(dir + "/meta.yaml", "artifact_uri: " + yaml_quote("file://" + final_dir + "/artifacts") +
                                       "\nend_time: " + ms(run.end) + "\nentry_point_name: ''\nexperiment_id: " + yaml_quote(experiment) +
                                       "\nlifecycle_stage: active\nrun_id: " + run.id + "\nrun_name: " + yaml_quote(run.name) +
                                       "\nrun_uuid: " + run.id + "\nsource_name: ''\nsource_type: 4\nsource_version: ''\nstart_time: " +
                                       ms(run.start) + "\nstatus: " + std::to_string(run.status) + "\ntags: []\nuser_id: " +
                                       yaml_quote(user) + "\n");
    auto put = [&](const char* sub, const std::string& name, const std::string& text) {
        if (!mlflow_name_ok(name)) {
            if (std::find(skipped.begin(), skipped.end(), name) == skipped.end()) skipped.push_back(name);
            return;
        }
        write_text(dir + sub + name, text);
    };
    for (auto& [k, v] : run.params) put("/params/", k, v);
    for (auto& [k, v] : run.tags) put("/tags/", k, v);
    for (auto& [k, v] : run.metrics) put("/metrics/", k, std::to_string(run.metric_time) + " " + v + " 0\n");
    for (auto& [k, values] : run.metric_steps) {
        std::string lines;
        for (std::size_t step = 0; step < values.size(); ++step)
            lines += std::to_string(run.metric_time) + " " + values[step] + " " + std::to_string(step) + "\n";
        put("/metrics/", k, lines);
    }
    for (auto& [name, text] : run.artifacts) write_text(dir + "/artifacts/" + name, text);
    remove_tree(final_dir);
    if (::rename(dir.c_str(), final_dir.c_str()) != 0) throw_errno("cannot rename " + dir + " to " + final_dir);
    guard.renamed = true;
}

std::string absolute(const std::string& path) {
    char buf[PATH_MAX];
    if (!::realpath(path.c_str(), buf)) throw_errno("cannot resolve " + path);
    return buf;
}

std::string base_name(const std::string& path) {
    auto slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

MlflowSummary write_mlflow(const ResultTable& table, const sweep::SweepDir& sweep, const std::string& dir) {
    MlflowSummary out;
    make_directories(dir);
    out.root = absolute(dir);
    make_directory(out.root + "/.trash");
    if (!path_exists(out.root + "/0/meta.yaml")) {
        make_directory(out.root + "/0");
        write_text(out.root + "/0/meta.yaml", experiment_meta(out.root, "0", "Default", now_millis()));
    }
    out.experiment_id = find_or_create_experiment(out.root, sweep.spec.name);
    std::string user = user_name();
    std::string seed = sweep.spec_hash + "\n" + sweep.path;
    out.parent_run_id = mlflow_run_id(seed);
    std::string sweep_name = base_name(sweep.path);

    Run parent;
    parent.id = out.parent_run_id;
    parent.name = sweep_name;
    std::uint64_t missing = table.tasks - table.done.size() - table.failed.size();
    parent.status = missing ? 1 : (table.failed.empty() ? 3 : 4);
    parent.tags = {{"mlflow.runName", sweep_name},
                   {"mlflow.user", user},
                   {"aihpc.sweep_dir", sweep.path},
                   {"aihpc.spec_hash", sweep.spec_hash},
                   {"aihpc.tasks", std::to_string(table.tasks)},
                   {"aihpc.done", std::to_string(table.done.size())},
                   {"aihpc.failed", std::to_string(table.failed.size())},
                   {"aihpc.missing", std::to_string(missing)}};
    if (!sweep.git_commit.empty()) parent.tags.emplace_back("mlflow.source.git.commit", sweep.git_commit);

    for (const auto& row : table.rows) {
        if (row.state == TaskState::missing) continue;
        Run run;
        run.id = mlflow_run_id(seed + "\n" + std::to_string(row.index));
        run.name = sweep_name + "-" + std::to_string(row.index);
        run.status = row.state == TaskState::done ? 3 : 4;
        run.start = rfc3339_millis(row.start);
        run.end = rfc3339_millis(row.end);
        if (run.start && (!parent.start || *run.start < *parent.start)) parent.start = run.start;
        if (run.end && (!parent.end || *run.end > *parent.end)) parent.end = run.end;
        run.metric_time = run.end.value_or(now_millis());
        for (auto& [k, v] : row.params) run.params.emplace_back(k, v.plain);
        for (auto& [k, v] : row.metrics) {
            bool non_finite = std::find(row.non_finite.begin(), row.non_finite.end(), k) != row.non_finite.end();
            // A metric name MLflow refuses goes under its escaped name, and a tag keeps the
            // original.
            std::string name = mlflow_name_ok(k) ? k : mlflow_escaped_name(k);
            if (name != k) run.tags.emplace_back("aihpc.metric_name." + name, k);
            // NaN as MLflow's file store writes it (str of a float): "nan".
            if (non_finite && v.json == "null") run.metrics.emplace_back(name, "nan");
            else if (number_of(v)) run.metrics.emplace_back(name, v.json);
            else if (auto steps = step_values(v)) run.metric_steps.emplace_back(name, std::move(*steps));
            else run.tags.emplace_back("aihpc.metric." + name, v.plain);  // MLflow metrics are numbers
        }
        if (!row.non_finite.empty()) run.tags.emplace_back("aihpc.non_finite", join(row.non_finite, ","));
        run.tags.insert(run.tags.begin(), {{"mlflow.parentRunId", parent.id},
                                           {"mlflow.runName", run.name},
                                           {"mlflow.user", user},
                                           {"aihpc.index", std::to_string(row.index)},
                                           {"aihpc.status", task_state_name(row.state)}});
        if (row.exit_code) run.tags.emplace_back("aihpc.exit_code", std::to_string(*row.exit_code));
        for (auto [k, v] : {std::pair<const char*, const std::string*>{"aihpc.phase", &row.phase},
                            {"aihpc.node", &row.node},
                            {"aihpc.job_id", &row.job_id},
                            {"aihpc.array_job_id", &row.array_job_id},
                            {"aihpc.array_task_id", &row.array_task_id}})
            if (!v->empty()) run.tags.emplace_back(k, *v);
        if (!sweep.git_commit.empty()) run.tags.emplace_back("mlflow.source.git.commit", sweep.git_commit);
        if (row.state == TaskState::failed) {
            // Why it failed, where an MLflow reader looks: the run's note, and its stderr
            // tail as an artifact.
            std::string why = "Failed";
            if (!row.phase.empty()) why += " in phase " + row.phase;
            if (!row.signal.empty()) why += ", killed by " + row.signal;
            else if (row.exit_code) why += ", exit code " + std::to_string(*row.exit_code);
            if (!row.error.empty()) why += ": " + row.error;
            if (!row.stderr_tail.empty()) why += "\n\nLast lines of stderr:\n\n    " + join(row.stderr_tail, "\n    ");
            run.tags.emplace_back("mlflow.note.content", why);
            if (!row.stderr_tail.empty()) run.artifacts.emplace_back("stderr_tail.txt", join(row.stderr_tail, "\n") + "\n");
        }
        write_run(out.root, out.experiment_id, run, user, out.skipped);
        ++out.child_runs;
    }
    if (parent.status != 1 && !parent.end) parent.end = now_millis();
    if (parent.status == 1) parent.end.reset();
    if (!parent.start) parent.start = now_millis();
    write_run(out.root, out.experiment_id, parent, user, out.skipped);
    return out;
}

}  // namespace aihpc::collect
