#include "sweep/rungs.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/json.hpp"
#include "common/paths.hpp"
#include "common/text.hpp"
#include "common/process.hpp"
#include "sweep/rounds.hpp"
#include "sweep/runner.hpp"
#include "sweep/submission.hpp"
#include "sweep/submit_plan.hpp"

namespace aihpc::sweep {

std::vector<std::uint64_t> RungRecord::unsubmitted() const {
    std::set<std::uint64_t> running;
    for (auto& a : arrays) running.insert(a.configs.begin(), a.configs.end());
    std::vector<std::uint64_t> out;
    for (auto c : configs)
        if (!running.count(c)) out.push_back(c);
    return out;
}

namespace {

std::string numbers_json(const std::vector<std::uint64_t>& values) {
    std::string out = "[";
    for (std::size_t i = 0; i < values.size(); ++i) out += (i ? "," : "") + std::to_string(values[i]);
    return out + "]";
}

std::vector<std::uint64_t> read_numbers(const JsonValue& v, const std::string& path) {
    std::vector<std::uint64_t> out;
    const auto& items = v.as_array(path);
    for (std::size_t i = 0; i < items.size(); ++i) out.push_back(items[i].as_uint64(json_index_path(path, i)));
    return out;
}

const JsonValue& need(const JsonValue& doc, const char* key, const std::string& what) {
    const JsonValue* v = doc.find(key);
    if (!v) throw Error(what + ": no \"" + key + "\"");
    return *v;
}

}  // namespace

std::string rung_record_json(const RungRecord& r) {
    std::string out = "{\"bracket\":" + std::to_string(r.bracket) + ",\"rung\":" + std::to_string(r.rung) + ",\"budget\":" + json_quote(r.budget) +
                      ",\"configs\":" + numbers_json(r.configs) + ",\"arrays\":[";
    for (std::size_t i = 0; i < r.arrays.size(); ++i)
        out += std::string(i ? "," : "") + "{\"job_id\":" + json_quote(r.arrays[i].job_id) + ",\"configs\":" + numbers_json(r.arrays[i].configs) + "}";
    out += "],\"controller\":" + json_quote_or_null(r.controller) + "}\n";
    return out;
}

RungRecord parse_rung_record(const std::string& text) {
    try {
        JsonValue doc = parse_json_value(text);
        const std::string what = "rung record";
        RungRecord r;
        r.bracket = need(doc, "bracket", what).as_uint64("bracket");
        r.rung = need(doc, "rung", what).as_uint64("rung");
        r.budget = need(doc, "budget", what).as_string("budget");
        r.configs = read_numbers(need(doc, "configs", what), "configs");
        const auto& arrays = need(doc, "arrays", what).as_array("arrays");
        for (std::size_t i = 0; i < arrays.size(); ++i) {
            auto path = json_index_path("arrays", i);
            r.arrays.push_back({need(arrays[i], "job_id", what).as_string(path + ".job_id"),
                                read_numbers(need(arrays[i], "configs", what), path + ".configs")});
        }
        if (const JsonValue* c = doc.find("controller"); c && !c->is_null()) r.controller = c->as_string("controller");
        return r;
    } catch (const JsonError& e) {
        throw Error(std::string("rung record: ") + e.what());
    }
}

std::string rungs_plan_json(const RungsPlan& p) {
    return "{\"throttle\":" + std::to_string(p.throttle) + ",\"max_array_size\":" + std::to_string(p.max_array_size) +
           ",\"sbatch\":" + json_string_array(p.sbatch) + ",\"tool\":" + json_quote(p.tool) + "}\n";
}

RungsPlan parse_rungs_plan(const std::string& text) {
    try {
        JsonValue doc = parse_json_value(text);
        RungsPlan p;
        const std::string what = "rungs/plan.json";
        p.throttle = need(doc, "throttle", what).as_uint64("throttle");
        p.max_array_size = need(doc, "max_array_size", what).as_uint64("max_array_size");
        const auto& words = need(doc, "sbatch", what).as_array("sbatch");
        for (std::size_t i = 0; i < words.size(); ++i) p.sbatch.push_back(words[i].as_string(json_index_path("sbatch", i)));
        p.tool = need(doc, "tool", what).as_string("tool");
        if (p.max_array_size == 0) throw Error("rungs/plan.json: max_array_size is 0");
        return p;
    } catch (const JsonError& e) {
        throw Error(std::string("rungs/plan.json: ") + e.what());
    }
}

std::string rungs_dir(const std::string& sweep_path) { return sweep_path + "/rungs"; }

std::string rung_record_path(const std::string& sweep_path, std::uint64_t bracket, std::uint64_t rung) {
    return rungs_dir(sweep_path) + "/b" + std::to_string(bracket) + ".r" + std::to_string(rung) + ".json";
}

std::string rung_result_path(const std::string& sweep_path, std::uint64_t bracket, std::uint64_t rung, std::uint64_t config) {
    return rungs_dir(sweep_path) + "/b" + std::to_string(bracket) + ".r" + std::to_string(rung) + "/" + std::to_string(config) + ".json";
}

std::string checkpoint_dir(const std::string& sweep_path, std::uint64_t config) {
    return sweep_path + "/checkpoints/" + std::to_string(config);
}

std::vector<BracketPlan> sweep_brackets(const SweepDir& sweep) {
    if (!sweep.spec.schedule) throw Error(sweep.path + " has no schedule in its spec");
    return plan_brackets(*sweep.spec.schedule, sweep.tasks);
}

RungOutcome read_outcome(const std::string& path, std::uint64_t config, const std::string& metric) {
    RungOutcome out{config, std::nullopt};
    std::string text;
    try {
        text = read_file(path);
    } catch (const Error&) {
        return out;  // no result: the task never ended, or was killed before it wrote one
    }
    try {
        JsonValue doc = parse_json_value(text, JsonReadOptions{true});
        const JsonValue* code = doc.find("exit_code");
        if (!code || !code->is_integer() || code->text() != "0") return out;
        const JsonValue* metrics = doc.find("metrics");
        if (!metrics || !metrics->is_object()) return out;
        const JsonValue* m = metrics->find(metric);
        if (!m) {
            // A nested metric ({"val": {"loss": 0.3}}) is named with dots, as collect names it.
            const JsonValue* at = metrics;
            for (auto& part : split(metric, '.')) at = at && at->is_object() ? at->find(part) : nullptr;
            m = at;
        }
        if (!m || !m->is_number() || m->is_non_finite()) return out;
        double d = m->as_double(metric);
        if (std::isfinite(d)) out.metric = d;
    } catch (const Error&) {
        // A damaged result ranks worst, like a missing one.
    }
    return out;
}

std::string rung_script_path(const std::string& sweep_path) { return sweep_path + "/scripts/rung.sh"; }
std::string rung_controller_script_path(const std::string& sweep_path) { return sweep_path + "/scripts/advance-rung.sh"; }

std::string rung_script(const SweepDir& sweep, const RungsPlan& plan, const std::string& tool_version) {
    SubmitOptions options;
    options.sbatch_args = plan.sbatch;
    std::string out = "#!/bin/sh\n";
    out += sbatch_lines(phase_sbatch_words(sweep, sweep.spec.final_phase(), options));
    out += "# Written by aihpc-sweep " + tool_version + " for sweep '" + sweep.spec.name + "' (spec " + sweep.spec_hash + "): one rung\n";
    out += "# of the schedule. Arguments: BRACKET RUNG OFFSET; this element runs configuration\n";
    out += "# OFFSET + SLURM_ARRAY_TASK_ID at the rung's budget.\n";
    out += "exec " + shell_quote(plan.tool) + " run " + shell_quote(sweep.path) + " --bracket \"$1\" --rung \"$2\" --offset \"$3\"\n";
    return out;
}

std::string rung_controller_script(const SweepDir& sweep, const RungsPlan& plan, const std::string& tool_version) {
    return "#!/bin/sh\n"
           "#SBATCH --job-name=" + sweep.spec.name + ".advance\n"
           "#SBATCH --output=" + sweep.path + "/logs/advance-%j.out\n"
           "#SBATCH --ntasks=1\n"
           "#SBATCH --cpus-per-task=1\n"
           "#SBATCH --time=00:10:00\n"
           "# Written by aihpc-sweep " + tool_version + ": the controller of one rung (arguments BRACKET RUNG).\n"
           "# It runs once the rung's arrays have ended, promotes the best to the next rung and submits it.\n"
           "exec " + shell_quote(plan.tool) + " advance " + shell_quote(sweep.path) + " --bracket \"$1\" --rung \"$2\" --arrays-ended\n";
}

namespace {

std::string rung_label(std::uint64_t bracket, std::uint64_t rung) { return "b" + std::to_string(bracket) + ".r" + std::to_string(rung); }

}  // namespace

std::vector<RungSubmission> plan_rung_arrays(const SweepDir& sweep, const RungsPlan& plan, std::uint64_t bracket, std::uint64_t rung,
                                             const std::vector<std::uint64_t>& configs) {
    if (plan.max_array_size == 0) throw Error("max array size must be at least 1");
    std::vector<RungSubmission> out;
    for (auto c : configs) {
        std::uint64_t offset = c / plan.max_array_size * plan.max_array_size;
        if (out.empty() || out.back().offset != offset) out.push_back({offset, {}, {}});
        out.back().configs.push_back(c);
    }
    for (auto& s : out) {
        std::set<std::uint64_t> ids;
        for (auto c : s.configs) ids.insert(c - s.offset);
        s.argv = {"sbatch", "--parsable", "--array=" + array_spec(ids, plan.throttle),
                  "--job-name=" + sweep.spec.name + "." + rung_label(bracket, rung), rung_script_path(sweep.path),
                  std::to_string(bracket), std::to_string(rung), std::to_string(s.offset)};
    }
    return out;
}

std::vector<std::string> rung_controller_argv(const SweepDir& sweep, const RungsPlan& plan, std::uint64_t bracket, std::uint64_t rung,
                                              const std::vector<std::string>& jobs) {
    if (jobs.empty()) throw Error("a rung without jobs cannot hold a controller");
    std::vector<std::string> out = {"sbatch", "--parsable", "--dependency=afterany:" + join(jobs, ":"),
                                    "--job-name=" + sweep.spec.name + ".advance." + rung_label(bracket, rung)};
    auto placement = placement_args(plan.sbatch);
    out.insert(out.end(), placement.begin(), placement.end());
    out.push_back(rung_controller_script_path(sweep.path));
    out.push_back(std::to_string(bracket));
    out.push_back(std::to_string(rung));
    return out;
}

Sbatch real_sbatch() {
    return [](const std::vector<std::string>& argv) {
        // A controller or a task submits from inside its own job.
        forget_job_environment();
        auto r = capture_output(argv);
        if (r.status != 0)
            throw Error("sbatch failed (exit " + std::to_string(r.status) + "): " + std::string(trim(r.err)) + " [" + join(argv, " ") + "]");
        auto id = std::string(trim(r.out));
        id = id.substr(0, id.find(';'));
        if (!parse_uint(id)) throw Error("sbatch printed no job id: '" + std::string(trim(r.out)) + "'");
        return id;
    };
}

namespace {

// Held while a rung is decided and its next rung submitted, by one process at a time:
// the controller, a rerun of advance, or an ASHA task.
class RungsLock {
public:
    explicit RungsLock(const std::string& sweep_path)
        : path_(rungs_dir(sweep_path) + "/lock"), fd_(::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666)) {
        if (!fd_) throw_errno("cannot open " + path_ + "; check that the sweep dir is writable");
        while (::flock(fd_.get(), LOCK_EX) != 0)
            if (errno != EINTR) throw_errno("cannot lock " + path_);
    }

private:
    std::string path_;
    UniqueFd fd_;
};

std::optional<RungRecord> load_rung(const std::string& sweep_path, std::uint64_t bracket, std::uint64_t rung) {
    auto path = rung_record_path(sweep_path, bracket, rung);
    if (!is_file(path)) return std::nullopt;
    try {
        return parse_rung_record(read_file(path));
    } catch (const Error& e) {
        throw Error(path + ": " + e.what() + "; restore it, or remove it and run aihpc-sweep advance again to decide the rung anew");
    }
}

void save_rung(const std::string& sweep_path, const RungRecord& record) {
    write_file_atomic(rung_record_path(sweep_path, record.bracket, record.rung), rung_record_json(record));
}

std::string config_list(const std::vector<std::uint64_t>& configs) {
    return configs.empty() ? std::string("none") : array_spec(std::set<std::uint64_t>(configs.begin(), configs.end()), 0);
}

// A scheduled sweep's context for one step.
struct Stepper {
    const SweepDir& sweep;
    const Schedule& schedule;
    RungsPlan plan;
    const Sbatch& sbatch;
    const AdvanceRequest& request;
    std::ostream& out;

    // Submits the rung's configurations that no array runs yet, then (sha, hyperband,
    // below the last rung) the controller that follows its arrays.
    void complete(const BracketPlan& bracket, RungRecord& rec) {
        auto missing = rec.unsubmitted();
        if (!missing.empty()) {
            if (request.dry_run) {
                out << rung_label(rec.bracket, rec.rung) << ": would submit configurations " << config_list(missing) << "\n";
                return;
            }
            make_directory(rungs_dir(sweep.path) + "/" + rung_label(rec.bracket, rec.rung));
            for (auto& s : plan_rung_arrays(sweep, plan, rec.bracket, rec.rung, missing)) {
                std::string id;
                try {
                    id = sbatch(s.argv);
                } catch (const Error& e) {
                    throw Error("cannot submit rung " + std::to_string(rec.rung) + " of bracket " + std::to_string(rec.bracket) + ": " + e.what() +
                                "; run aihpc-sweep advance " + sweep.path + " again once sbatch works");
                }
                rec.arrays.push_back({id, s.configs});
                save_rung(sweep.path, rec);
                out << rung_label(rec.bracket, rec.rung) << ": budget " << rec.budget << ", configurations " << config_list(s.configs)
                    << ", job " << id << "\n";
            }
        }
        bool last = rec.rung + 1 >= bracket.rungs.size();
        if (schedule.type == ScheduleType::asha || last || !rec.controller.empty() || rec.arrays.empty() || request.dry_run) return;
        // A rung whose every configuration has a result needs no controller: this step
        // decides it (and its arrays may be long gone from the queue, where a dependency
        // on them would be refused).
        std::uint64_t have = 0;
        outcomes(rec, true, &have);
        if (have == rec.configs.size()) return;
        std::vector<std::string> jobs;
        for (auto& a : rec.arrays) jobs.push_back(a.job_id);
        try {
            rec.controller = sbatch(rung_controller_argv(sweep, plan, rec.bracket, rec.rung, jobs));
        } catch (const Error& e) {
            throw Error("cannot submit the controller of rung " + std::to_string(rec.rung) + " of bracket " + std::to_string(rec.bracket) + ": " +
                        e.what() + "; once the rung's arrays have ended, run aihpc-sweep advance " + sweep.path + " --bracket " +
                        std::to_string(rec.bracket) + " --rung " + std::to_string(rec.rung) + " --arrays-ended");
        }
        save_rung(sweep.path, rec);
        out << rung_label(rec.bracket, rec.rung) << ": controller job " << rec.controller << "\n";
    }

    std::vector<RungOutcome> outcomes(const RungRecord& rec, bool completed_only, std::uint64_t* have) {
        std::vector<RungOutcome> out_;
        std::uint64_t n = 0;
        for (auto c : rec.configs) {
            auto path = rung_result_path(sweep.path, rec.bracket, rec.rung, c);
            bool exists = is_file(path);
            n += exists;
            if (completed_only && !exists) continue;
            out_.push_back(read_outcome(path, c, schedule.metric));
        }
        if (have) *have = n;
        return out_;
    }

    // The promotion out of rung `rec`, written as the next rung's record (one rename).
    // Returns it, or nothing when the rung is not due yet.
    std::optional<RungRecord> decide(const BracketPlan& bracket, const RungRecord& rec, std::optional<RungRecord> next) {
        RungRecord promoted;
        promoted.bracket = rec.bracket;
        promoted.rung = rec.rung + 1;
        promoted.budget = budget_text(bracket.rungs[promoted.rung].budget);
        std::uint64_t have = 0;
        if (schedule.type == ScheduleType::asha) {
            auto done = outcomes(rec, true, &have);
            std::set<std::uint64_t> already;
            if (next) {
                promoted = *next;
                already.insert(next->configs.begin(), next->configs.end());
            }
            auto fresh = asha_promotions(done, already, schedule.eta, schedule.maximize);
            if (fresh.empty()) return next;
            std::set<std::uint64_t> all(promoted.configs.begin(), promoted.configs.end());
            all.insert(fresh.begin(), fresh.end());
            promoted.configs.assign(all.begin(), all.end());
            out << rung_label(rec.bracket, rec.rung) << ": promoted " << config_list(fresh) << " (in the top 1/" << schedule.eta << " of "
                << done.size() << " completed) to budget " << promoted.budget << "\n";
        } else {
            if (next) return next;
            auto all = outcomes(rec, false, &have);
            bool ended = request.arrays_ended && request.bracket == rec.bracket && request.rung == rec.rung;
            if (have < rec.configs.size() && !ended) {
                out << rung_label(rec.bracket, rec.rung) << ": waiting for " << rec.configs.size() - have << " of " << rec.configs.size()
                    << " results (once its arrays have ended, aihpc-sweep advance " << sweep.path << " --bracket " << rec.bracket << " --rung "
                    << rec.rung << " --arrays-ended decides with the missing ones ranked worst)\n";
                return std::nullopt;
            }
            auto keep = top_configs(all, rec.configs.size() / schedule.eta, schedule.maximize);
            std::sort(keep.begin(), keep.end());
            promoted.configs = keep;
            out << rung_label(rec.bracket, rec.rung) << ": promoted " << keep.size() << " of " << rec.configs.size() << " (" << config_list(keep)
                << ") to budget " << promoted.budget << "; " << rec.configs.size() - have << " without a result\n";
        }
        if (!request.dry_run) save_rung(sweep.path, promoted);
        return promoted;
    }

    void step(const BracketPlan& bracket) {
        for (std::uint64_t k = 0; k < bracket.rungs.size(); ++k) {
            auto rec = load_rung(sweep.path, bracket.bracket, k);
            if (!rec) return;
            complete(bracket, *rec);
            if (k + 1 >= bracket.rungs.size()) return;
            auto next = load_rung(sweep.path, bracket.bracket, k + 1);
            auto decided = decide(bracket, *rec, next);
            if (!decided) return;
            if (request.dry_run) return;
        }
    }
};

}  // namespace

void submit_schedule(const SweepDir& sweep, const RungsPlan& plan, const std::string& tool_version, const Sbatch& sbatch,
                     std::ostream& out) {
    const auto& schedule = *sweep.spec.schedule;
    make_directory(rungs_dir(sweep.path));
    RungsLock lock(sweep.path);
    if (is_file(rungs_dir(sweep.path) + "/plan.json"))
        throw Error(sweep.path + " was already submitted (see rungs/); aihpc-sweep advance " + sweep.path + " submits what is missing");
    auto brackets = sweep_brackets(sweep);
    write_file_atomic(rung_script_path(sweep.path), rung_script(sweep, plan, tool_version));
    write_file_atomic(rung_controller_script_path(sweep.path), rung_controller_script(sweep, plan, tool_version));
    for (auto* s : {"rung.sh", "advance-rung.sh"})
        if (::chmod((sweep.path + "/scripts/" + s).c_str(), 0755) != 0) throw_errno("cannot make " + sweep.path + "/scripts/" + s + " executable");
    // Every first rung is recorded before anything is queued: a submission cut short is
    // finished by advance, which submits what the records lack.
    std::vector<RungRecord> firsts;
    for (auto& b : brackets) {
        RungRecord rec;
        rec.bracket = b.bracket;
        rec.rung = 0;
        rec.budget = budget_text(b.rungs[0].budget);
        for (std::uint64_t c = 0; c < b.configs; ++c) rec.configs.push_back(b.first_config + c);
        save_rung(sweep.path, rec);
        firsts.push_back(rec);
    }
    write_file_atomic(rungs_dir(sweep.path) + "/plan.json", rungs_plan_json(plan));
    AdvanceRequest request;
    Stepper stepper{sweep, schedule, plan, sbatch, request, out};
    for (std::size_t i = 0; i < brackets.size(); ++i) stepper.complete(brackets[i], firsts[i]);
}

void advance_schedule(const SweepDir& sweep, const AdvanceRequest& request, const Sbatch& sbatch, std::ostream& out) {
    auto plan_path = rungs_dir(sweep.path) + "/plan.json";
    if (!is_file(plan_path)) throw Error(sweep.path + " has no rungs/plan.json: submit it first (aihpc-sweep submit " + sweep.path + ")");
    std::optional<RungsLock> lock;
    if (!request.dry_run) lock.emplace(sweep.path);
    Stepper stepper{sweep, *sweep.spec.schedule, parse_rungs_plan(read_file(plan_path)), sbatch, request, out};
    auto brackets = sweep_brackets(sweep);
    if (request.bracket) {
        const auto& b = find_bracket(brackets, *request.bracket);
        if (request.rung && *request.rung >= b.rungs.size())
            throw Error("bracket " + std::to_string(b.bracket) + " has rungs 0 to " + std::to_string(b.rungs.size() - 1) + ", not " +
                        std::to_string(*request.rung));
    }
    for (auto& b : brackets)
        if (!request.bracket || *request.bracket == b.bracket) stepper.step(b);
}

void print_schedule_status(const SweepDir& sweep, std::ostream& out) {
    const auto& schedule = *sweep.spec.schedule;
    auto brackets = sweep_brackets(sweep);
    out << schedule_type_name(schedule.type) << " (" << schedule.resource << " " << schedule.min << " to " << schedule.max << ", eta "
        << schedule.eta << ", " << schedule.metric << " " << (schedule.maximize ? "max" : "min") << "): " << brackets.size() << " bracket(s)\n";
    std::optional<std::pair<double, std::uint64_t>> best;  // over the highest budget with a result
    double best_budget = -1;
    std::string best_budget_text;
    for (auto& b : brackets) {
        for (std::uint64_t k = 0; k < b.rungs.size(); ++k) {
            out << "bracket " << b.bracket << " rung " << k << " budget " << budget_text(b.rungs[k].budget) << ": ";
            auto rec = load_rung(sweep.path, b.bracket, k);
            if (!rec) {
                out << "pending (" << (schedule.type == ScheduleType::asha && k ? "at most " : "") << b.rungs[k].configs
                    << (b.rungs[k].configs == 1 ? " configuration)\n" : " configurations)\n");
                continue;
            }
            std::uint64_t done = 0, failed = 0;
            for (auto c : rec->configs) {
                auto path = rung_result_path(sweep.path, b.bracket, k, c);
                if (!is_file(path)) continue;
                auto o = read_outcome(path, c, schedule.metric);
                ++(o.metric ? done : failed);
                // The best is taken at the highest budget any result reached; ties to the lower index.
                double budget = b.rungs[k].budget.value();
                if (!o.metric || budget < best_budget) continue;
                bool better = budget > best_budget || !best || (schedule.maximize ? *o.metric > best->first : *o.metric < best->first) ||
                              (*o.metric == best->first && c < best->second);
                if (!better) continue;
                best = std::make_pair(*o.metric, c);
                best_budget = budget;
                best_budget_text = budget_text(b.rungs[k].budget);
            }
            out << rec->configs.size() << " configurations, " << done << " with " << schedule.metric << ", " << failed
                << " failed or without it, " << rec->configs.size() - done - failed << " running or missing";
            if (k + 1 < b.rungs.size()) {
                if (auto next = load_rung(sweep.path, b.bracket, k + 1))
                    out << "; promoted " << next->configs.size() << " (" << config_list(next->configs) << "), stopped "
                        << (schedule.type == ScheduleType::asha ? (done + failed > next->configs.size() ? done + failed - next->configs.size() : 0)
                                                                : rec->configs.size() - next->configs.size());
                else out << "; not decided";
            }
            out << "\n";
        }
    }
    if (best) {
        TaskIndex index(sweep.path);
        out << "best: configuration " << best->second << " " << index.task(best->second).params_json << " " << schedule.metric << " "
            << format_double(best->first) << " at budget " << best_budget_text << "\n";
    }
}

bool RungState::promoted(std::uint64_t bracket, std::uint64_t rung, std::uint64_t config) const {
    for (auto& [key, configs] : rungs)
        if (key.first == bracket && key.second == rung + 1) return configs.count(config) > 0;
    return false;
}

std::vector<RungPlace> rung_places(const SweepDir& sweep) {
    std::vector<RungPlace> places(sweep.tasks);
    for (auto& b : sweep_brackets(sweep)) {
        for (std::uint64_t k = 0; k < b.rungs.size(); ++k) {
            auto rec = load_rung(sweep.path, b.bracket, k);
            if (!rec) break;
            for (auto c : rec->configs)
                if (c < places.size() && is_file(rung_result_path(sweep.path, b.bracket, k, c))) places[c] = {true, b.bracket, k, b.rungs[k].budget, false};
            if (k == 0) continue;
            for (auto c : rec->configs)
                if (c < places.size() && places[c].known && places[c].bracket == b.bracket && places[c].rung + 1 == k) places[c].promoted = true;
        }
    }
    return places;
}

std::vector<std::string> rung_columns(const SweepSpec& spec) {
    if (!spec.schedule) return {};
    return {"bracket", "rung", "budget", "promoted"};
}

void add_rung_place(Assignment& params, const RungPlace& place, const std::string& resource) {
    if (!place.known) return;
    auto budget = budget_scalar(place.budget);
    std::erase_if(params, [&](const auto& p) { return p.first == resource; });
    params.emplace_back(resource, budget);
    params.emplace_back("bracket", scalar_int(static_cast<std::int64_t>(place.bracket)));
    params.emplace_back("rung", scalar_int(static_cast<std::int64_t>(place.rung)));
    params.emplace_back("budget", budget);
    params.emplace_back("promoted", scalar_bool(place.promoted));
}

RungState read_rung_state(const SweepDir& sweep) {
    RungState state;
    state.brackets = sweep_brackets(sweep);
    for (auto& b : state.brackets)
        for (std::uint64_t k = 0; k < b.rungs.size(); ++k)
            if (auto rec = load_rung(sweep.path, b.bracket, k))
                state.rungs.push_back({{b.bracket, k}, std::set<std::uint64_t>(rec->configs.begin(), rec->configs.end())});
    return state;
}

}  // namespace aihpc::sweep

namespace aihpc::sweep {

std::vector<PlannedArray> planned_arrays(const SweepDir& sweep, const std::vector<ArraySubmission>& subs, std::uint64_t throttle,
                                         std::uint64_t max_array_size) {
    std::vector<PlannedArray> out;
    if (!sweep.spec.schedule) {
        for (auto& s : subs) {
            PlannedArray a;
            a.phase = s.phase;
            a.label = s.label;
            a.tasks = s.count;
            a.after = s.after;
            a.array = s.array;
            a.offset = s.offset;
            out.push_back(std::move(a));
        }
        return out;
    }
    RungsPlan plan;
    plan.throttle = throttle;
    plan.max_array_size = max_array_size;
    const std::string phase = sweep.spec.final_phase().name;
    for (auto& b : sweep_brackets(sweep)) {
        for (auto& r : b.rungs) {
            PlannedArray a;
            a.phase = phase;
            a.label = rung_label(b.bracket, r.rung);
            a.bracket = b.bracket;
            a.rung = r.rung;
            a.tasks = r.configs;
            a.budget = budget_scalar(r.budget).json;
            if (r.rung == 0) {
                std::vector<std::uint64_t> configs;
                for (std::uint64_t c = 0; c < b.configs; ++c) configs.push_back(b.first_config + c);
                for (auto& s : plan_rung_arrays(sweep, plan, b.bracket, 0, configs)) {
                    PlannedArray chunk = a;
                    chunk.tasks = s.configs.size();
                    chunk.offset = s.offset;
                    chunk.array = s.argv[2].substr(std::string("--array=").size());
                    out.push_back(std::move(chunk));
                }
                continue;
            }
            a.after = rung_label(b.bracket, r.rung - 1);
            out.push_back(std::move(a));
        }
    }
    return out;
}

std::string planned_arrays_json(const std::vector<PlannedArray>& arrays) {
    auto number_or_null = [](const std::optional<std::uint64_t>& v) { return v ? std::to_string(*v) : std::string("null"); };
    std::string out = "{\"arrays\":[";
    for (std::size_t i = 0; i < arrays.size(); ++i) {
        const auto& a = arrays[i];
        out += std::string(i ? ",\n" : "") + "{\"phase\":" + json_quote(a.phase) + ",\"label\":" + json_quote(a.label) +
               ",\"bracket\":" + number_or_null(a.bracket) + ",\"rung\":" + number_or_null(a.rung) + ",\"tasks\":" + std::to_string(a.tasks) +
               ",\"budget\":" + (a.budget.empty() ? "null" : a.budget) + ",\"after\":" + json_quote_or_null(a.after) +
               ",\"array\":" + json_quote_or_null(a.array) + ",\"offset\":" + std::to_string(a.offset) + "}";
    }
    return out + "]}\n";
}

}  // namespace aihpc::sweep
