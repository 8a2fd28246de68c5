#include "collect/queue.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <optional>

#include "common/error.hpp"
#include "common/json.hpp"
#include "common/text.hpp"
#include "common/process.hpp"
#include "sweep/results.hpp"

namespace aihpc::collect {

namespace {

std::string field_text(json_object* obj, const char* key) {
    json_object* v = nullptr;
    if (!json_object_object_get_ex(obj, key, &v) || !v || json_object_is_type(v, json_type_null)) return "";
    return json_object_get_string(v);
}

std::uint64_t field_uint(json_object* obj, const char* key) {
    json_object* v = nullptr;
    if (!json_object_object_get_ex(obj, key, &v)) return 0;
    auto n = json_object_get_int64(v);
    return n > 0 ? static_cast<std::uint64_t>(n) : 0;
}

// Array task ids of a squeue or sacct field: "4", "[0-9%2]", "[1,3-5]".
std::set<std::uint64_t> task_ids(std::string_view text) {
    std::string t(trim(text));
    if (!t.empty() && t.front() == '[') t = t.substr(1, t.find(']') == std::string::npos ? std::string::npos : t.find(']') - 1);
    if (auto pct = t.find('%'); pct != std::string::npos) t.resize(pct);
    try {
        return sweep::parse_index_list(t);
    } catch (const Error&) {
        return {};  // N/A: not an array element
    }
}

}  // namespace

std::vector<sweep::ArraySubmission> read_arrays(const std::string& sweep_dir) {
    std::string path = sweep_dir + "/chunks.json";
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return {};
    JsonRef doc = parse_json(sweep::read_file(path));
    json_object* arrays = nullptr;
    if (!doc || !json_object_object_get_ex(doc.get(), "arrays", &arrays) || !json_object_is_type(arrays, json_type_array))
        throw Error(path + " is damaged (no arrays list); the sweep's job ids are unknown");
    std::vector<sweep::ArraySubmission> out;
    for (std::size_t i = 0; i < json_object_array_length(arrays); ++i) {
        json_object* a = json_object_array_get_idx(arrays, i);
        sweep::ArraySubmission s;
        s.phase = field_text(a, "phase");
        s.label = field_text(a, "label");
        s.offset = field_uint(a, "offset");
        s.count = field_uint(a, "count");
        s.pack = std::max<std::uint64_t>(1, field_uint(a, "pack"));
        s.array = field_text(a, "array");
        s.after = field_text(a, "after");
        s.job_id = field_text(a, "job_id");
        out.push_back(std::move(s));
    }
    return out;
}

QueueSnapshot parse_squeue(const std::string& text) {
    QueueSnapshot out;
    for (auto& line : split(text, '\n')) {
        auto words = split(std::string(trim(line)), ' ');
        words.erase(std::remove(words.begin(), words.end(), ""), words.end());
        if (words.size() < 3) continue;
        const auto& state = words[2];
        QueueState s;
        if (state == "RUNNING" || state == "COMPLETING" || state == "CONFIGURING" || state == "STAGE_OUT" || state == "SIGNALING")
            s = QueueState::running;
        else if (state == "PENDING" || state == "REQUEUED" || state == "REQUEUE_HOLD" || state == "REQUEUE_FED" || state == "SUSPENDED" ||
                 state == "RESIZING" || state == "STOPPED")
            s = QueueState::pending;
        else
            continue;  // ended: its result says the rest
        for (auto id : task_ids(words[1])) out[{words[0], id}] = s;
    }
    return out;
}

StatusCounts count_status(std::uint64_t tasks, const std::set<std::uint64_t>& done, const std::set<std::uint64_t>& failed,
                          const std::vector<sweep::ArraySubmission>& arrays, const QueueSnapshot& queue) {
    std::set<std::uint64_t> running, pending;
    std::map<std::string, std::vector<const sweep::ArraySubmission*>> by_job;
    for (auto& a : arrays)
        if (!a.job_id.empty()) by_job[a.job_id].push_back(&a);
    for (auto& [key, state] : queue) {
        auto it = by_job.find(key.first);
        if (it == by_job.end()) continue;
        for (auto* a : it->second)
            for (auto i : sweep::element_tasks(key.second, a->offset, a->count, a->pack))
                (state == QueueState::running ? running : pending).insert(i);
    }
    StatusCounts c;
    c.tasks = tasks;
    for (std::uint64_t i = 0; i < tasks; ++i) {
        if (failed.count(i)) ++c.failed;
        else if (done.count(i)) ++c.done;
        else if (running.count(i)) ++c.running;
        else if (pending.count(i)) ++c.pending;
        else ++c.missing;
    }
    return c;
}

std::string status_text(const StatusCounts& c) {
    std::string out;
    for (auto [name, n] : {std::pair<const char*, std::uint64_t>{"tasks", c.tasks}, {"done", c.done}, {"failed", c.failed},
                           {"missing", c.missing}, {"running", c.running}, {"pending", c.pending}}) {
        std::string label = name;
        label.resize(9, ' ');
        out += label + std::to_string(n) + "\n";
    }
    return out;
}

std::string status_json(const StatusCounts& c) {
    return "{\"tasks\":" + std::to_string(c.tasks) + ",\"done\":" + std::to_string(c.done) + ",\"failed\":" + std::to_string(c.failed) +
           ",\"missing\":" + std::to_string(c.missing) + ",\"running\":" + std::to_string(c.running) +
           ",\"pending\":" + std::to_string(c.pending) + "}\n";
}

QueueSnapshot query_queue(const std::vector<sweep::ArraySubmission>& arrays, std::size_t group) {
    std::vector<std::string> ids;
    for (auto& a : arrays)
        if (!a.job_id.empty() && std::find(ids.begin(), ids.end(), a.job_id) == ids.end()) ids.push_back(a.job_id);
    QueueSnapshot out;
    for (std::size_t first = 0; first < ids.size(); first += group) {
        std::vector<std::string> part(ids.begin() + static_cast<long>(first),
                                      ids.begin() + static_cast<long>(std::min(ids.size(), first + group)));
        auto r = capture_output({"squeue", "-h", "-r", "-j", join(part, ","), "-o", "%F %K %T"});
        if (r.status != 0) {
            // squeue refuses a lone job id that slurmctld has already forgotten: nothing queued.
            if (r.err.find("Invalid job id") != std::string::npos) continue;
            throw Error("squeue failed (exit " + std::to_string(r.status) + "): " + std::string(trim(r.err)) +
                        "; --status and --watch need a reachable slurmctld");
        }
        for (auto& kv : parse_squeue(r.out)) out.insert(kv);
    }
    return out;
}

double rss_bytes(const std::string& text) {
    auto t = trim(text);
    if (t.empty()) return 0;
    char* end = nullptr;
    std::string s(t);
    double v = std::strtod(s.c_str(), &end);
    switch (*end) {
    case 'K': v *= 1024; break;
    case 'M': v *= 1024.0 * 1024; break;
    case 'G': v *= 1024.0 * 1024 * 1024; break;
    case 'T': v *= 1024.0 * 1024 * 1024 * 1024; break;
    default: break;
    }
    return v;
}

SacctTable parse_sacct(const std::string& text) {
    SacctTable out;
    for (auto& line : split(text, '\n')) {
        auto f = split(line, '|');
        if (f.size() < 5) continue;
        const std::string& id = f[0];
        auto dot = id.find('.');
        std::string element = id.substr(0, dot);
        auto us = element.find('_');
        if (us == std::string::npos) continue;  // not an array element
        std::string job = element.substr(0, us);
        for (auto task : task_ids(element.substr(us + 1))) {
            auto& rec = out[{job, task}];
            if (dot == std::string::npos) {
                rec.state = f[1];
                rec.exit_code = f[2];
                rec.elapsed = f[3];
            }
            if (!f[4].empty() && (rec.max_rss.empty() || rss_bytes(f[4]) > rss_bytes(rec.max_rss))) rec.max_rss = f[4];
        }
    }
    return out;
}

namespace {

// Which array element of the last phase ran a task: the latest submission wins, since a
// resubmission replaces the first run, and a resubmission runs only the ids it lists.
class LastRun {
public:
    LastRun(const std::vector<sweep::ArraySubmission>& arrays, const std::string& last_phase) {
        for (auto& a : arrays)
            if (a.phase == last_phase && !a.job_id.empty()) arrays_.push_back({&a, task_ids(a.array)});
    }
    std::optional<std::pair<std::string, std::uint64_t>> find(std::uint64_t index) const {
        for (auto it = arrays_.rbegin(); it != arrays_.rend(); ++it) {
            const auto& a = *it->first;
            if (index < a.offset || index >= a.offset + a.count) continue;
            std::uint64_t e = (index - a.offset) / a.pack;
            if (it->second.count(e)) return std::make_pair(a.job_id, e);
        }
        return std::nullopt;
    }

private:
    std::vector<std::pair<const sweep::ArraySubmission*, std::set<std::uint64_t>>> arrays_;
};

}  // namespace

void join_sacct(ResultTable& table, const SacctTable& sacct, const std::vector<sweep::ArraySubmission>& arrays,
                const std::string& last_phase) {
    table.with_sacct = true;
    LastRun runs(arrays, last_phase);
    for (auto& row : table.rows) {
        std::pair<std::string, std::uint64_t> key;
        auto task = parse_uint(row.array_task_id);
        if (!row.array_job_id.empty() && task) {
            key = {row.array_job_id, *task};
        } else {
            auto found = runs.find(row.index);
            if (!found) continue;
            key = *found;
        }
        auto it = sacct.find(key);
        if (it != sacct.end()) row.sacct = it->second;
    }
}

SacctTable query_sacct(const ResultTable& table, const std::vector<sweep::ArraySubmission>& arrays, const std::string& last_phase) {
    std::set<std::string> jobs;
    LastRun runs(arrays, last_phase);
    for (auto& row : table.rows) {
        if (!row.array_job_id.empty()) {
            jobs.insert(row.array_job_id);
            continue;
        }
        if (auto found = runs.find(row.index)) jobs.insert(found->first);
    }
    SacctTable out;
    for (auto& job : jobs) {
        auto r = capture_output({"sacct", "-j", job, "-n", "-P", "-o", "JobID,State,ExitCode,Elapsed,MaxRSS"});
        std::string why = std::string(trim(r.err.empty() ? r.out : r.err));
        if (r.status != 0)
            throw Error("sacct failed for array job " + job + " (exit " + std::to_string(r.status) + "): " + why +
                        "; --sacct needs Slurm accounting storage (AccountingStorageType in slurm.conf): collect without --sacct");
        for (auto& kv : parse_sacct(r.out)) out.insert(kv);
    }
    return out;
}

}  // namespace aihpc::collect
