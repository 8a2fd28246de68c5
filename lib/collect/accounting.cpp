#include "collect/accounting.hpp"

#include <algorithm>

#include "collect/queue.hpp"
#include "common/error.hpp"
#include "common/text.hpp"
#include "common/process.hpp"
#include "sweep/results.hpp"

namespace aihpc::collect {

const char* const kAccountingFields = "JobID,JobIDRaw,State,ExitCode,Elapsed,MaxRSS,ReqMem,NodeList,AdminComment";

namespace {

// Array task ids of a sacct JobID's task part or of an --array value: "4", "[0-9%2]",
// "0-5%2", "[1,3-5]"; empty when it is none.
std::set<std::uint64_t> ids_of(std::string_view text) {
    std::string t(trim(text));
    if (!t.empty() && t.front() == '[') {
        auto close = t.find(']');
        t = t.substr(1, close == std::string::npos ? std::string::npos : close - 1);
    }
    if (auto pct = t.find('%'); pct != std::string::npos) t.resize(pct);
    try {
        return sweep::parse_index_list(t);
    } catch (const Error&) {
        return {};
    }
}

std::string first_word(std::string_view text) {
    auto t = trim(text);
    return std::string(t.substr(0, t.find(' ')));
}

// ReqMem ("100M"; "100Mn" or "100Mc" before Slurm 21.08) in bytes; 0 when none.
double requested_bytes(std::string text) {
    if (!text.empty() && (text.back() == 'n' || text.back() == 'c')) text.pop_back();
    return rss_bytes(text);
}

bool over_request(const AccountingRun& run) {
    double req = requested_bytes(run.req_mem);
    return req > 0 && rss_bytes(run.max_rss) > req;
}

bool bad_run(const AccountingRun& run) { return !run_reason(run).empty(); }

// The submitted arrays with their element ids parsed once, in submission order.
struct Ran {
    const sweep::ArraySubmission* array;
    std::set<std::uint64_t> elements;

    // The element of this array that ran task `index`, if one did.
    std::optional<std::uint64_t> element(std::uint64_t index) const {
        if (index < array->offset || index >= array->offset + array->count) return std::nullopt;
        std::uint64_t e = (index - array->offset) / std::max<std::uint64_t>(1, array->pack);
        if (!elements.count(e)) return std::nullopt;
        return e;
    }
};

std::vector<Ran> submitted(const std::vector<sweep::ArraySubmission>& arrays) {
    std::vector<Ran> out;
    for (const auto& a : arrays)
        if (!a.job_id.empty()) out.push_back({&a, ids_of(a.array)});
    return out;
}

// The element of the latest array of `phase` that ran task `index`.
std::optional<std::pair<std::string, std::uint64_t>> element_of(std::uint64_t index, const std::string& phase,
                                                                const std::vector<Ran>& ran) {
    for (auto it = ran.rbegin(); it != ran.rend(); ++it) {
        if (it->array->phase != phase) continue;
        if (auto e = it->element(index)) return std::make_pair(it->array->job_id, *e);
    }
    return std::nullopt;
}

std::map<std::uint64_t, const ResultRow*> rows_by_index(const ResultTable& table) {
    std::map<std::uint64_t, const ResultRow*> out;
    for (const auto& row : table.rows) out[row.index] = &row;
    return out;
}

// The element a task's result names, if it names one.
std::optional<std::pair<std::string, std::uint64_t>> named_element(const ResultRow* row) {
    if (!row || row->array_job_id.empty()) return std::nullopt;
    auto task = parse_uint(row->array_task_id);
    if (!task) return std::nullopt;
    return std::make_pair(row->array_job_id, *task);
}

bool shown(const std::string& field) { return !field.empty() && field != "None assigned" && field != "0"; }

std::string describe(const AccountingRun& run, const std::string& what, const std::string& element) {
    std::string out = what;
    if (shown(run.elapsed) && run.elapsed != "00:00:00") out += " after " + run.elapsed;
    if (shown(run.node_list)) out += " on " + run.node_list;
    if (shown(run.exit_code) && run.exit_code != "0:0") out += ", exit " + run.exit_code;
    if (shown(run.max_rss)) out += ", MaxRSS " + run.max_rss;
    if (what == "OUT_OF_MEMORY" && run.state != what && over_request(run) &&
        std::find(run.step_states.begin(), run.step_states.end(), what) == run.step_states.end())
        out += " over ReqMem " + run.req_mem;
    out += " (job " + element;
    if (!run.job_id.empty() && run.job_id != element) out += ", " + run.job_id;
    return out + ")";
}

}  // namespace

AccountingTable parse_accounting(const std::string& text) {
    AccountingTable out;
    // The runs the last element line opened, which its step lines add to.
    std::vector<AccountingRun*> current;
    std::string current_element;
    for (auto& line : split(text, '\n')) {
        auto f = split(line, '|');
        if (f.size() < 9) continue;
        if (f.size() > 9) {
            std::vector<std::string> rest(f.begin() + 8, f.end());
            f.resize(8);
            f.push_back(join(rest, "|"));
        }
        const std::string& id = f[0];
        auto dot = id.find('.');
        std::string element = id.substr(0, dot);
        auto us = element.find('_');
        if (us == std::string::npos) continue;  // not an array element
        if (dot != std::string::npos) {
            if (element != current_element) continue;  // a step of no run seen
            for (auto* run : current) {
                run->step_states.push_back(first_word(f[2]));
                if (!f[5].empty() && (run->max_rss.empty() || rss_bytes(f[5]) > rss_bytes(run->max_rss))) run->max_rss = f[5];
            }
            continue;
        }
        std::string job = element.substr(0, us);
        current.clear();
        current_element = element;
        AccountingRun run;
        run.job_id = f[1];
        run.state = first_word(f[2]);
        run.exit_code = f[3];
        run.elapsed = f[4];
        run.max_rss = f[5];
        run.req_mem = f[6];
        run.node_list = f[7];
        run.comment = std::string(trim(f[8]));
        for (auto task : ids_of(element.substr(us + 1))) {
            auto& runs = out[{job, task}];
            runs.push_back(run);
            current.push_back(&runs.back());
        }
        // A later push_back into the same vector would move the runs: one element line
        // adds one run to each of its tasks, so the pointers stay valid until the next.
    }
    return out;
}

std::string run_reason(const AccountingRun& run) {
    static const char* const decisive[] = {"TIMEOUT", "OUT_OF_MEMORY", "PREEMPTED", "NODE_FAIL", "DEADLINE", "BOOT_FAIL"};
    for (auto* s : decisive)
        if (run.state == s) return run.state;
    for (auto& s : run.step_states)
        if (s == "OUT_OF_MEMORY") return s;
    if ((run.state == "FAILED" || run.state == "CANCELLED") && over_request(run)) return "OUT_OF_MEMORY";
    if (run.state == "CANCELLED" || run.state == "FAILED" || run.state == "REQUEUED" || run.state == "REVOKED") return run.state;
    return "";
}

std::set<std::string> accounting_jobs(const std::set<std::uint64_t>& indices, const ResultTable& table,
                                      const std::vector<sweep::ArraySubmission>& arrays) {
    std::set<std::string> jobs;
    auto rows = rows_by_index(table);
    auto ran = submitted(arrays);
    for (auto index : indices) {
        auto it = rows.find(index);
        if (auto named = named_element(it == rows.end() ? nullptr : it->second)) jobs.insert(named->first);
        for (const auto& r : ran)
            if (r.element(index)) jobs.insert(r.array->job_id);
    }
    return jobs;
}

std::map<std::uint64_t, TaskAccounting> join_accounting(const std::set<std::uint64_t>& indices, const ResultTable& table,
                                                        const std::vector<sweep::ArraySubmission>& arrays,
                                                        const std::vector<std::string>& phases, const AccountingTable& accounting) {
    std::map<std::uint64_t, TaskAccounting> out;
    auto rows = rows_by_index(table);
    auto ran = submitted(arrays);
    for (auto index : indices) {
        auto row_it = rows.find(index);
        const ResultRow* row = row_it == rows.end() ? nullptr : row_it->second;
        if (auto named = named_element(row)) {
            auto it = accounting.find(*named);
            if (it != accounting.end()) {
                out[index] = TaskAccounting{row->phase, named->first, named->second, it->second};
                continue;
            }
        }
        std::optional<TaskAccounting> found;
        for (const auto& phase : phases) {
            auto element = element_of(index, phase, ran);
            if (!element) continue;
            auto it = accounting.find(*element);
            if (it == accounting.end()) continue;
            found = TaskAccounting{phase, element->first, element->second, it->second};
            if (std::any_of(it->second.begin(), it->second.end(), bad_run)) break;
        }
        if (found) out[index] = std::move(*found);
    }
    return out;
}

std::vector<std::string> accounting_lines(const TaskAccounting& task, bool stage_out) {
    std::vector<std::string> out;
    if (task.runs.empty()) return out;
    std::string element = task.array_job_id + "_" + std::to_string(task.array_task_id);
    std::string line = "  sacct: ";
    const AccountingRun* last_bad = nullptr;
    bool first = true;
    for (std::size_t i = 0; i < task.runs.size(); ++i) {
        const auto& run = task.runs[i];
        bool last = i + 1 == task.runs.size();
        auto reason = run_reason(run);
        if (!reason.empty()) {
            line += (first ? "" : "; then ") + describe(run, reason, element);
            if (!last && reason != "REQUEUED") line += ", requeued";
            last_bad = &run;
            first = false;
        } else if (last) {
            if (run.state == "PENDING" || run.state == "RUNNING" || run.state == "REQUEUED")
                line += (first ? "" : "; ") + std::string("now ") + run.state;
            else
                line += (first ? "" : "; then ") + describe(run, run.state, element);
            first = false;
        }
    }
    out.push_back(line);
    if (stage_out && last_bad && shown(last_bad->node_list) && !last_bad->job_id.empty())
        out.push_back("  kept: unless its stage-out finished, its stage dir is kept/" + last_bad->job_id + " on " +
                      last_bad->node_list + " (aihpc-stage kept, then aihpc-stage deliver " + last_bad->job_id + ", in a job on " +
                      last_bad->node_list + ")");
    if (!task.runs.back().comment.empty()) out.push_back("  comment: " + task.runs.back().comment);
    return out;
}

bool phase_stages_out(const sweep::SweepSpec& spec, const std::string& phase) {
    auto stages = [](const std::vector<std::string>& words) {
        return std::any_of(words.begin(), words.end(), [](const std::string& w) { return starts_with(w, "--aihpc-stage-out"); });
    };
    if (stages(spec.slurm.sbatch) || stages(spec.slurm.aihpc)) return true;
    for (const auto& p : spec.phases)
        if (p.name == phase && (stages(p.sbatch) || stages(p.aihpc))) return true;
    return false;
}

AccountingTable query_accounting(const std::set<std::string>& jobs, std::string& note) {
    AccountingTable out;
    std::vector<std::string> ids(jobs.begin(), jobs.end());
    const std::size_t group = 100;
    for (std::size_t first = 0; first < ids.size(); first += group) {
        std::vector<std::string> part(ids.begin() + static_cast<long>(first),
                                      ids.begin() + static_cast<long>(std::min(ids.size(), first + group)));
        auto r = capture_output(
            {"sacct", "--duplicates", "--noheader", "--parsable2", "-j", join(part, ","), "-o", kAccountingFields});
        if (r.status == 127) {
            note = "sacct is not available, so --why shows no job states (TIMEOUT, OUT_OF_MEMORY, PREEMPTED, NODE_FAIL, CANCELLED)";
            return {};
        }
        if (r.status != 0) {
            auto why = split(std::string(trim(r.err.empty() ? r.out : r.err)), '\n');
            std::string first = why.empty() || why.front().empty() ? "exit " + std::to_string(r.status) : why.front();
            for (const char* prefix : {"sacct: ", "error: "})
                if (starts_with(first, prefix)) first = first.substr(std::string(prefix).size());
            note = "no job accounting (sacct: " + first +
                   "), so --why shows no job states (TIMEOUT, OUT_OF_MEMORY, PREEMPTED, NODE_FAIL, CANCELLED)";
            return {};
        }
        for (auto& [key, runs] : parse_accounting(r.out)) {
            auto& into = out[key];
            into.insert(into.end(), runs.begin(), runs.end());
        }
    }
    return out;
}

std::map<std::uint64_t, std::vector<std::string>> why_lines(const sweep::SweepDir& sweep, const ResultTable& table,
                                                            const std::set<std::uint64_t>& tasks, std::string& note) {
    std::map<std::uint64_t, std::vector<std::string>> out;
    auto arrays = read_arrays(sweep.path);
    auto jobs = accounting_jobs(tasks, table, arrays);
    if (jobs.empty()) return out;
    auto accounting = query_accounting(jobs, note);
    std::vector<std::string> phases;
    for (const auto& p : sweep.spec.phases) phases.push_back(p.name);
    for (auto& [index, task] : join_accounting(tasks, table, arrays, phases, accounting))
        out[index] = accounting_lines(task, phase_stages_out(sweep.spec, task.phase));
    return out;
}

}  // namespace aihpc::collect
