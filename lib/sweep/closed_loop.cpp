#include "sweep/closed_loop.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/text.hpp"
#include "sweep/refine.hpp"

namespace aihpc::sweep {

namespace {

// A lock on rounds.json held for one step of the loop, so that a requeued controller
// never advances the same round twice.
class RoundsLock {
public:
    explicit RoundsLock(const std::string& root) : fd_(::open((root + "/rounds.json.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666)) {
        if (!fd_) throw_errno("cannot open " + root + "/rounds.json.lock");
        if (::flock(fd_.get(), LOCK_EX) != 0) throw_errno("cannot lock " + root + "/rounds.json.lock");
    }

private:
    UniqueFd fd_;
};

// Ranks the round that ended and records its best; a round with nothing to rank stops
// the loop.
std::vector<RankedTask> rank_round(const std::string& root, RoundsRecord& record, std::ostream& out) {
    auto& plan = record.plan;
    Round& current = record.history.back();
    SweepDir sweep = open_sweep(current.dir);
    std::vector<RankedTask> ranked;
    try {
        ranked = best_tasks(sweep, plan.metric, plan.maximize, plan.top, plan.aggregate);
    } catch (const Error& e) {
        record.state = "stopped";
        record.message = "round " + std::to_string(current.round) + ": " + e.what();
        write_rounds(root, record);
        throw Error(record.message + "; the loop stops here");
    }
    current.best = RoundBest{ranked.front().task.index, ranked.front().metric, ranked.front().task.params_json};
    out << "round " << current.round << ": best " << plan.metric << " " << format_double(ranked.front().metric) << " (task "
        << ranked.front().task.index << " " << ranked.front().task.params_json << ")\n";
    return ranked;
}

// The next round's sweep dir, refined around `ranked` unless a cut-short step wrote it.
SweepDir refine_next_round(const SweepDir& root, const RoundsRecord& record, const std::vector<RankedTask>& ranked,
                           const LoopStep& step) {
    const auto& plan = record.plan;
    const Round& current = record.history.back();
    std::string next_dir = round_dir(root.path, current.round + 1);
    if (!is_file(next_dir + "/sweep.json")) {
        SweepDir sweep = open_sweep(current.dir);
        std::vector<TaskRecord> best;
        for (auto& r : ranked) best.push_back(r.task);
        auto spec = refine_spec(sweep.spec, best, plan.shrink, plan.trials.value_or(record.history.front().tasks));
        write_sweep_dir(spec, next_dir, Provenance{step.tool_version, rfc3339_now(), root.git_commit}, refined_expand_options());
    }
    return open_sweep(next_dir);
}

// Submits the next round as the plan says; a failure stops the loop.
std::vector<ArraySubmission> submit_next_round(const SweepDir& root, RoundsRecord& record, const SweepDir& next, const LoopStep& step) {
    const auto& plan = record.plan;
    SubmitOptions options;
    options.throttle = plan.throttle;
    options.max_array_size = plan.max_array_size;
    options.pack = plan.pack;
    options.sbatch_args = plan.sbatch;
    options.tool_path = plan.tool.empty() ? step.tool_path : plan.tool;
    options.tool_version = step.tool_version;
    forget_job_environment();
    std::vector<ArraySubmission> subs;
    try {
        subs = plan_submit(next, options);
        submit_sweep(next, subs, options, step.submitter);
    } catch (const Error& e) {
        record.state = "stopped";
        record.message = "round " + std::to_string(record.history.back().round + 1) + " could not be submitted: " + e.what();
        write_rounds(root.path, record);
        throw;
    }
    return subs;
}

}  // namespace

void write_rounds(const std::string& root, const RoundsRecord& record) {
    write_file_atomic(root + "/rounds.json", rounds_json(record));
}

std::string submit_controller(const SweepDir& root, RoundsRecord& record, const LoopStep& step) {
    auto script = controller_script_path(root.path);
    write_file_atomic(script, controller_script(root.path, root.spec.name, record.plan.tool, step.tool_version));
    if (::chmod(script.c_str(), 0755) != 0) throw_errno("cannot make " + script + " executable");
    auto& round = record.history.back();
    auto r = step.submitter.sbatch(controller_argv(script, round.jobs, placement_args(record.plan.sbatch)));
    if (r.status != 0) {
        record.state = "stopped";
        record.message = "sbatch failed for the controller of round " + std::to_string(round.round) + " (exit " +
                         std::to_string(r.status) + "): " + std::string(trim(r.err));
        write_rounds(root.path, record);
        throw Error(record.message + "; the round runs, but the loop stops after it");
    }
    auto id = std::string(trim(r.out));
    round.controller = id.substr(0, id.find(';'));
    write_rounds(root.path, record);
    if (step.submitter.progress)
        *step.submitter.progress << "aihpc-sweep: controller of round " << round.round << " is job " << round.controller << " (after "
                                 << join(round.jobs, ":") << ")\n";
    return round.controller;
}

std::string start_closed_loop(const SweepDir& sweep, RoundsRecord& record, const std::vector<ArraySubmission>& subs,
                              const LoopStep& step) {
    Round first;
    first.round = 1;
    first.dir = sweep.path;
    first.tasks = sweep.tasks;
    first.jobs = job_ids(subs);
    record.history.push_back(first);
    write_rounds(sweep.path, record);
    return submit_controller(sweep, record, step);
}

void advance_rounds(const SweepDir& root, const std::string& dir, const LoopStep& step, std::ostream& out, std::ostream& err) {
    RoundsLock lock(root.path);
    auto path = root.path + "/rounds.json";
    if (!is_file(path)) throw Error(dir + " has no rounds.json: it was not submitted with --rounds");
    RoundsRecord record = parse_rounds_json(read_file(path));
    if (record.state != "running") {
        err << "aihpc-sweep: the closed loop of " << dir << " is " << record.state << "; nothing to do\n";
        return;
    }
    const auto& plan = record.plan;
    auto ranked = rank_round(root.path, record, out);
    const Round& current = record.history.back();
    if (current.round >= plan.rounds) {
        record.state = "done";
        write_rounds(root.path, record);
        out << "closed loop done after " << current.round << " round(s)\n";
        if (auto best = overall_best(record))
            out << "best over all rounds: " << plan.metric << " " << format_double(best->second.metric) << " (round " << best->first
                << ", task " << best->second.index << " " << best->second.params_json << ")\n";
        return;
    }
    SweepDir next = refine_next_round(root, record, ranked, step);
    auto subs = submit_next_round(root, record, next, step);
    Round round;
    round.round = current.round + 1;
    round.dir = next.path;
    round.tasks = next.tasks;
    round.jobs = job_ids(subs);
    record.history.push_back(round);
    write_rounds(root.path, record);
    out << "round " << round.round << ": " << next.tasks << " tasks in " << next.path << ", jobs " << join(round.jobs, ",") << "\n";
    out << "advance." << round.round << " " << submit_controller(root, record, step) << "\n";
}

}  // namespace aihpc::sweep
