#include "sweep/preview.hpp"

#include <sys/stat.h>

#include "common/error.hpp"
#include "common/text.hpp"
#include "sweep/rounds.hpp"
#include "sweep/runner.hpp"
#include "sweep/submission.hpp"

namespace aihpc::sweep {

namespace {

// A line as a shell would read it, but for the words that name jobs not submitted yet.
std::string argv_line(const std::vector<std::string>& argv) {
    std::string line;
    for (auto& w : argv) line += (line.empty() ? "" : " ") + (w.find("afterany:{") != std::string::npos ? w : shell_quote(w));
    return line;
}

}  // namespace

void print_chunks(const SweepDir& sweep, const SubmitOptions& options, std::ostream& out) {
    auto chunks = plan_chunks(sweep.tasks, options.max_array_size, options.pack);
    out << sweep.tasks << " tasks, " << sweep.spec.phases.size() << " phase(s), " << chunks.size() << " chunk(s) of at most "
        << options.max_array_size << " array elements, pack " << options.pack << "\n";
    for (auto& c : chunks) out << "chunk " << c.index << ": offset " << c.offset << ", " << c.count << " tasks, " << c.elements << " elements\n";
}

void print_dry_run(const SweepDir& sweep, const std::vector<ArraySubmission>& subs, const SubmitOptions& options, bool script_words,
                   std::ostream& out) {
    for (auto& s : subs) {
        std::vector<std::string> words;
        if (script_words) words = phase_sbatch_words(sweep, find_phase(sweep.spec, s.phase), options);
        out << dry_run_line(s, words) << "\n";
    }
}

void print_submit_dry_run(const SweepDir& sweep, const std::vector<ArraySubmission>& subs, const SubmitOptions& options,
                          bool closed_loop, std::ostream& out) {
    if (!is_file(sweep.path + "/chunks.json")) write_scripts(sweep, options);
    print_dry_run(sweep, subs, options, true, out);
    if (!closed_loop) return;
    std::vector<std::string> placeholders;
    for (auto& s : subs) placeholders.push_back("{" + s.label + "}");
    out << argv_line(controller_argv(controller_script_path(sweep.path), placeholders, placement_args(options.sbatch_args))) << "\n";
}

RungsPlan rungs_plan(const SubmitOptions& options) {
    RungsPlan plan;
    plan.throttle = options.throttle;
    plan.max_array_size = options.max_array_size;
    plan.sbatch = options.sbatch_args;
    plan.tool = options.tool_path;
    return plan;
}

void print_schedule_plan(const SweepDir& sweep, const SubmitOptions& options, std::ostream& out) {
    const auto& schedule = *sweep.spec.schedule;
    auto arrays = planned_arrays(sweep, {}, options.throttle, options.max_array_size);
    auto brackets = sweep_brackets(sweep);
    out << sweep.tasks << " configurations, " << schedule_type_name(schedule.type) << " over " << schedule.resource << " from "
        << schedule.min << " to " << schedule.max << " (eta " << schedule.eta << "): " << brackets.size() << " bracket(s), "
        << arrays.size() << " array(s)\n";
    for (auto& a : arrays) {
        out << a.label << ": " << (schedule.type == ScheduleType::asha && *a.rung ? "at most " : "") << a.tasks << " configurations at "
            << schedule.resource << "=" << a.budget;
        if (!a.array.empty()) out << ", array " << a.array << " (offset " << a.offset << ")";
        if (!a.after.empty())
            out << ", after " << a.after << (schedule.type == ScheduleType::asha ? " (promoted by its tasks)" : " (promoted by its controller)");
        out << "\n";
    }
}

void print_schedule_dry_run(const SweepDir& sweep, const RungsPlan& plan, const std::string& tool_version, std::ostream& out) {
    const auto& schedule = *sweep.spec.schedule;
    // Once submitted, the rungs still to come use the script they were submitted with.
    if (!is_file(rungs_dir(sweep.path) + "/plan.json")) {
        write_file_atomic(rung_script_path(sweep.path), rung_script(sweep, plan, tool_version));
        if (::chmod(rung_script_path(sweep.path).c_str(), 0755) != 0) throw_errno("cannot make " + rung_script_path(sweep.path) + " executable");
    }
    for (auto& b : sweep_brackets(sweep)) {
        std::vector<std::uint64_t> configs;
        for (std::uint64_t c = 0; c < b.configs; ++c) configs.push_back(b.first_config + c);
        std::vector<std::string> placeholders;
        for (auto& s : plan_rung_arrays(sweep, plan, b.bracket, 0, configs)) {
            std::vector<std::string> quoted;
            for (auto& w : s.argv) quoted.push_back(shell_quote(w));
            out << join(quoted, " ") << "\n";
            if (placeholders.empty()) placeholders.push_back("{b" + std::to_string(b.bracket) + ".r0}");
        }
        // The controller that promotes out of the first rung, once its arrays ended.
        if (schedule.type != ScheduleType::asha && b.rungs.size() > 1)
            out << argv_line(rung_controller_argv(sweep, plan, b.bracket, 0, placeholders)) << "\n";
    }
}

}  // namespace aihpc::sweep
