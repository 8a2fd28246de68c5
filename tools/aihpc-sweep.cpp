// aihpc-sweep: parameter sweeps as Slurm job arrays (expand, plan, submit, run, params,
// resubmit). A thin main over lib/sweep; see aihpc-sweep(1).
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "common/error.hpp"
#include "common/json.hpp"
#include "common/text.hpp"
#include "config.h"
#include "sweep/expand.hpp"
#include "sweep/image_check.hpp"
#include "common/process.hpp"
#include "sweep/refine.hpp"
#include "sweep/results.hpp"
#include "sweep/rounds.hpp"
#include "sweep/rungs.hpp"
#include "sweep/runner.hpp"
#include "sweep/shorthand.hpp"
#include "sweep/spec.hpp"
#include "sweep/submit_plan.hpp"
#include "sweep/sweep_dir.hpp"

using namespace aihpc;
using namespace aihpc::sweep;

namespace {

const char* kUsage =
    "Usage: aihpc-sweep COMMAND SWEEP [OPTIONS]\n"
    "Parameter sweeps as Slurm job arrays.\n"
    "\n"
    "  expand SPEC.json|PARAM... -o SWEEP [--random N] [--seed S] [--repeat N]\n"
    "         [--exclude K=V,...] [--allow-empty-exclude] [--max-tasks N (10000000)]\n"
    "         [--emit-json] [-- COMMAND-TEMPLATE...]\n"
    "  plan SWEEP [--json] [--throttle N] [--max-array-size N|auto] [--pack K]\n"
    "  submit SWEEP [--throttle N] [--max-array-size N|auto] [--pack K] [--dry-run]\n"
    "         [--rounds R --metric NAME[:min|max] --top K [--shrink F] [--trials N]\n"
    "          [--aggregate mean|median]]\n"
    "         [-- SBATCH-ARGS...]\n"
    "  run SWEEP [--index I] [--phase NAME] [--offset O --count C --pack K]\n"
    "         [--bracket S --rung K]  (a rung of a scheduled sweep)\n"
    "  status SWEEP   tasks done, failed and missing; a schedule's brackets, rungs,\n"
    "                 promoted and stopped configurations, and the best so far\n"
    "  params SWEEP --index I [--format json|env|args|shell|cmd] [--phase NAME]\n"
    "  resubmit SWEEP --failed|--missing|--indices LIST [--throttle N]\n"
    "         [--max-array-size N|auto] [--dry-run] [-- SBATCH-ARGS...]\n"
    "  refine SWEEP --metric NAME[:min|max] --top K [--shrink F] [--trials N]\n"
    "         [--aggregate mean|median] -o SWEEP2\n"
    "  advance SWEEP [--bracket S --rung K --arrays-ended] [--dry-run]\n"
    "                 the controller step of submit --rounds, or of a schedule's rungs\n"
    "                 (run by its job; run it again by hand to finish a cut-short step)\n"
    "\n"
    "  --progress     report each submitted array on stderr (default: when it is a terminal)\n"
    "  -h, --help     show this help\n"
    "  -V, --version  show the version\n"
    "\n"
    "Parameter shorthand: lr=1e-4,3e-4  bs=range(32,129,32)  lr=logspace(1e-5,1e-2,6)\n"
    "  lr=loguniform(1e-5,1e-2,n=6)  zip(wd=[0,0.05],beta2=[0.95,0.999])\n"
    "  momentum=0.9,0.99@opt=sgd\n"
    "Tasks in a container: --aihpc-container=IMAGE in the spec's slurm.aihpc or after\n"
    "  submit's --; aihpc-sweep stays on the host and runs each command as a step in the\n"
    "  image, which needs nothing of aihpc.\n"
    "See aihpc-sweep(1).\n";

bool g_progress = false;

struct UsageError : Error {
    using Error::Error;
};

// Command-line words of one subcommand, consumed in order. A long option may carry its
// value after '=' (--seed=3), as GNU tools accept; words after "--" are never split.
class Args {
public:
    Args(std::vector<std::string> words) : words_(std::move(words)) {}
    bool done() const {
        check_inline_taken();
        return pos_ >= words_.size();
    }
    const std::string& peek() const { return words_[pos_]; }
    std::string next() {
        check_inline_taken();
        std::string w = words_[pos_++];
        if (w.size() > 2 && w.compare(0, 2, "--") == 0) {
            if (auto eq = w.find('='); eq != std::string::npos) {
                inline_value_ = w.substr(eq + 1);
                w.resize(eq);
                inline_option_ = w;
            }
        }
        return w;
    }
    std::string value(const std::string& option) {
        if (inline_value_) {
            std::string v = std::move(*inline_value_);
            inline_value_.reset();
            return v;
        }
        if (pos_ >= words_.size()) throw UsageError(option + " needs a value");
        return words_[pos_++];
    }
    std::uint64_t number(const std::string& option, std::uint64_t min = 0) {
        auto text = value(option);
        auto n = parse_uint(text);
        if (!n || *n < min) throw UsageError(option + ": '" + text + "' is not an integer >= " + std::to_string(min));
        return *n;
    }
    std::vector<std::string> rest() {
        check_inline_taken();
        std::vector<std::string> out(words_.begin() + static_cast<long>(pos_), words_.end());
        pos_ = words_.size();
        return out;
    }

private:
    // A flag given a value (--dry-run=yes) is a mistake, never a silent no.
    void check_inline_taken() const {
        if (inline_value_) throw UsageError(inline_option_ + " takes no value (given '" + *inline_value_ + "')");
    }
    std::vector<std::string> words_;
    std::size_t pos_ = 0;
    std::optional<std::string> inline_value_;
    std::string inline_option_;
};

std::string self_path() {
    char buf[PATH_MAX];
    ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) throw_errno("cannot resolve /proc/self/exe");
    return std::string(buf, static_cast<std::size_t>(n));
}

// Where sbatch runs, which a relative image path is taken from.
std::string current_dir() {
    char buf[PATH_MAX];
    if (!::getcwd(buf, sizeof buf)) throw_errno("cannot read the current directory");
    return buf;
}

std::string git_commit() {
    try {
        auto r = capture_output({"git", "rev-parse", "--verify", "-q", "HEAD"});
        if (r.status == 0) return std::string(trim(r.out));
    } catch (const Error&) {
    }
    return "";
}

bool is_file(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// A refined round keeps the first round's exclusion rules, which its narrower space may
// no longer reach; its size was bounded by the first round's.
ExpandOptions refined_options() {
    ExpandOptions o;
    o.allow_empty_exclude = true;
    o.max_tasks = kMaxSweepTasks;
    return o;
}

int cmd_expand(Args args) {
    std::vector<std::string> positional;
    std::string out_dir;
    bool emit_json = false;
    SpecOverrides overrides;
    ExpandOptions options;
    while (!args.done()) {
        auto w = args.next();
        if (w == "-o" || w == "--output") out_dir = args.value(w);
        else if (w == "--random") overrides.random_trials = args.number(w, 1);
        else if (w == "--seed") overrides.seed = args.number(w);
        else if (w == "--repeat") overrides.repeat = args.number(w, 1);
        else if (w == "--exclude") overrides.exclude.push_back(args.value(w));
        else if (w == "--allow-empty-exclude") options.allow_empty_exclude = true;
        else if (w == "--max-tasks") options.max_tasks = args.number(w, 1);
        else if (w == "--emit-json") emit_json = true;
        else if (w == "--") {
            overrides.command = args.rest();
            if (overrides.command.empty()) throw UsageError("no command template after --");
        } else if (w.size() > 1 && w[0] == '-')
            // A parameter name never starts with '-', so such a word is a mistyped option,
            // not a parameter.
            throw UsageError("expand: unknown option " + w + " (a parameter name cannot start with '-')");
        else positional.push_back(w);
    }
    if (positional.empty()) throw UsageError("expand needs a spec file or parameters");
    std::string text;
    bool from_file = positional.size() == 1 && (is_file(positional[0]) || ends_with(positional[0], ".json"));
    if (emit_json && !out_dir.empty())
        throw UsageError("--emit-json prints the JSON spec and writes no sweep dir: leave out -o " + out_dir + ", or --emit-json");
    SweepSpec spec;
    std::string file_text;
    try {
        if (from_file) {
            file_text = read_file(positional[0]);
            text = apply_overrides(file_text, overrides);
        } else {
            std::vector<std::string> notes;
            text = compile_shorthand(positional, overrides, &notes);
            for (auto& n : notes) std::cerr << "aihpc-sweep: note: " << n << "\n";
        }
        spec = parse_spec(text);
        check_spec_to_expand(spec);
    } catch (const Error& e) {
        if (!from_file) throw;
        // The file's name where the spec's errors say "sweep spec".
        std::string what = e.what();
        constexpr std::string_view prefix = "sweep spec: ";
        if (starts_with(what, prefix)) what = what.substr(prefix.size());
        std::string hint;
        auto& file = positional[0];
        auto first = file_text.find_first_not_of(" \t\r\n");
        bool not_json = first != std::string::npos && file_text[first] != '{' && file_text[first] != '[';
        if (starts_with(what, "not valid JSON") && (ends_with(file, ".yaml") || ends_with(file, ".yml") || not_json))
            hint = "; aihpc-sweep reads JSON specs only (a YAML spec converts with: python3 -c 'import json,sys,yaml; "
                   "json.dump(yaml.safe_load(sys.stdin),sys.stdout)' <" + file + " >spec.json)";
        throw Error(file + ": " + what + hint);
    }
    if (emit_json) {
        std::cout << text << "\n";
        return 0;
    }
    if (out_dir.empty()) throw UsageError("expand needs -o SWEEP");
    require_commands(spec);
    if (auto unused = counts_unused(spec); !unused.empty())
        std::cerr << "aihpc-sweep: note: the count (n=) of " << join(unused, ", ")
                  << " is not used in a random sweep: each of its " << spec.trials << " trials draws every parameter once\n";
    auto summary = write_sweep_dir(spec, out_dir, Provenance{PACKAGE_VERSION, rfc3339_now(), git_commit()}, options);
    std::cout << summary.tasks << " tasks";
    if (summary.excluded) std::cout << " (" << summary.excluded << " excluded)";
    std::cout << " in " << out_dir << "\n";
    if (const auto& schedule = spec.schedule) {
        auto needed = configurations_needed(*schedule);
        if (schedule->type != ScheduleType::asha && summary.tasks > needed)
            std::cerr << "aihpc-sweep: note: the schedule's brackets take configurations 0-" << needed - 1 << "; the other "
                      << summary.tasks - needed << " are not run\n";
    }
    if (spec.method == Method::random && summary.distinct) {
        if (summary.whole_space)
            std::cout << "random search: the space has " << summary.distinct << " distinct configurations, no more than the " << spec.trials
                      << " trials asked; each runs once\n";
        else
            std::cout << "random search: " << spec.trials << " distinct configurations drawn without replacement out of "
                      << summary.distinct << "\n";
    }
    return 0;
}

// --throttle, --max-array-size and --pack, with the spec's slurm section as defaults.
struct ArrayOptions {
    std::optional<std::uint64_t> throttle, max_array_size, pack;
    bool auto_size = false;
    bool take(Args& args, const std::string& w) {
        if (w == "--throttle") throttle = args.number(w);
        else if (w == "--pack") pack = args.number(w, 1);
        else if (w == "--max-array-size") {
            auto v = args.value(w);
            if (v == "auto") auto_size = true;
            else if (auto n = parse_uint(v); n && *n > 0) max_array_size = *n;
            else throw UsageError("--max-array-size: '" + v + "' is not a positive integer or auto");
        } else return false;
        return true;
    }
    // `preview`: a plan or dry run, which may go on without Slurm (Slurm's default
    // MaxArraySize, said on stderr) where a submission must stop.
    SubmitOptions resolve(const SweepDir& sweep, bool preview = false) const {
        SubmitOptions o;
        o.throttle = throttle.value_or(sweep.spec.slurm.throttle);
        o.pack = pack.value_or(sweep.spec.slurm.pack);
        if (max_array_size) o.max_array_size = *max_array_size;
        else if (!auto_size && sweep.spec.slurm.max_array_size) o.max_array_size = sweep.spec.slurm.max_array_size;
        else {
            std::string why;
            try {
                auto r = capture_output({"scontrol", "show", "config"});
                if (r.status == 0) o.max_array_size = parse_max_array_size(r.out);
                else why = std::string(trim(r.err));
            } catch (const Error& e) {
                why = e.what();
            }
            // Its first line says why; the rest repeats it.
            why = why.substr(0, why.find('\n'));
            if (!why.empty() && !preview)
                throw Error("cannot read MaxArraySize: scontrol show config failed (" + why + "); give --max-array-size N");
            if (!why.empty()) {
                o.max_array_size = 1001;
                std::cerr << "aihpc-sweep: note: MaxArraySize unknown (scontrol show config failed: " << why
                          << "); planned with Slurm's default, 1001; give --max-array-size N for your cluster's\n";
            }
        }
        o.tool_path = self_path();
        o.tool_version = PACKAGE_VERSION;
        return o;
    }
};

void write_scripts(const SweepDir& sweep, const SubmitOptions& options) {
    for (const auto& phase : sweep.spec.phases) {
        auto path = script_path(sweep, phase.name);
        write_file_atomic(path, phase_script(sweep, phase, options));
        if (::chmod(path.c_str(), 0755) != 0) throw_errno("cannot make " + path + " executable");
    }
}

// The --aihpc-* options each phase's arrays would get, read by the plugin's own parser
// before anything is queued.
void check_phase_options(const SweepDir& sweep, const SubmitOptions& options) {
    std::string cwd = current_dir();
    for (const auto& phase : sweep.spec.phases) {
        auto words = phase_sbatch_words(sweep, phase, options);
        std::string where = sweep.spec.phases.size() > 1 ? "phase '" + phase.name + "'" : std::string("the sbatch options");
        check_aihpc_options(words, where);
        check_container_images(words, where, cwd);
    }
}

// Each array's sbatch line, with the options its script gives it.
void print_dry_run(const SweepDir& sweep, const std::vector<ArraySubmission>& subs, const SubmitOptions& options, bool script_words) {
    for (auto& s : subs) {
        std::vector<std::string> words;
        if (script_words) words = phase_sbatch_words(sweep, find_phase(sweep.spec, s.phase), options);
        std::cout << dry_run_line(s, words) << "\n";
    }
}

// Sweeps expanded before expand refused a spec without a command may still lack one.
void check_commands(const SweepDir& sweep) { require_commands(sweep.spec); }

// Submits in order, since each dependency needs the job id of the array before it.
void submit_all(const SweepDir& sweep, std::vector<ArraySubmission>& subs, const std::function<void()>& record) {
    for (auto& s : subs) {
        std::string dep;
        for (auto& prior : subs)
            if (!s.after.empty() && prior.label == s.after) dep = prior.job_id;
        // Nothing is recorded while nothing was submitted, so that the sweep can simply be
        // submitted again.
        bool any = &s != &subs.front();
        std::string where = any ? "; the arrays submitted so far are in " + sweep.path + "/chunks.json" : "; no array was submitted";
        auto r = capture_output(s.argv(dep));
        if (r.status != 0) {
            if (any) record();
            throw Error("sbatch failed for " + s.label + " (exit " + std::to_string(r.status) + "): " + std::string(trim(r.err)) + where);
        }
        auto id = std::string(trim(r.out));
        s.job_id = id.substr(0, id.find(';'));
        if (!parse_uint(s.job_id)) {
            s.job_id.clear();
            if (any) record();
            throw Error("sbatch printed no job id for " + s.label + ": '" + id + "'" + where);
        }
        record();
        if (g_progress)
            std::cerr << "aihpc-sweep: submitted " << s.label << " (tasks " << s.offset << "-" << s.offset + s.count - 1 << ") as job "
                  << s.job_id << "\n";
    }
}

// Submits `subs`, plan_submit's every phase and chunk of a sweep that was never
// submitted; fills in their job ids (also recorded in chunks.json).
void submit_sweep(const SweepDir& sweep, std::vector<ArraySubmission>& subs, const SubmitOptions& options) {
    check_commands(sweep);
    if (is_file(sweep.path + "/chunks.json"))
        throw Error(sweep.path + " was already submitted (see chunks.json); use aihpc-sweep resubmit");
    write_scripts(sweep, options);
    auto record = [&] { write_file_atomic(sweep.path + "/chunks.json", chunks_json(subs, options)); };
    submit_all(sweep, subs, record);
}

// How refine picks the best tasks and spreads the next sweep around them; also the
// closed loop's options: --metric NAME[:min|max] --top K [--shrink F] [--trials N]
struct RefineOptions {
    std::string metric;
    bool maximize = false;
    std::optional<std::uint64_t> top, trials;
    std::optional<double> shrink;
    Aggregate aggregate = Aggregate::none;
    bool aggregate_given = false;
    bool take(Args& args, const std::string& w) {
        if (w == "--top") top = args.number(w, 1);
        else if (w == "--aggregate") {
            try {
                aggregate = parse_aggregate(args.value(w));
                aggregate_given = true;
            } catch (const UsageError&) {
                throw;
            } catch (const Error& e) {
                throw UsageError(e.what());
            }
        }
        else if (w == "--trials") trials = args.number(w, 1);
        else if (w == "--metric") {
            try {
                std::tie(metric, maximize) = parse_metric_direction(args.value(w));
            } catch (const UsageError&) {
                throw;
            } catch (const Error& e) {
                throw UsageError(e.what());
            }
        } else if (w == "--shrink") {
            auto v = args.value(w);
            char* end = nullptr;
            double f = std::strtod(v.c_str(), &end);
            if (v.empty() || *end || !(f > 0 && f <= 1)) throw UsageError("--shrink: '" + v + "' is not a number in (0, 1]");
            shrink = f;
        } else return false;
        return true;
    }
    bool given() const { return top || trials || shrink || !metric.empty() || aggregate_given; }
};

// --rounds R and the refine options of each round
struct RoundsOptions {
    std::optional<std::uint64_t> rounds;
    RefineOptions refine;
    bool take(Args& args, const std::string& w) {
        if (w != "--rounds") return refine.take(args, w);
        rounds = args.number(w, 1);
        return true;
    }
    bool given() const { return rounds || refine.given(); }
    void check() const {
        if (!given()) return;
        if (!rounds || refine.metric.empty() || !refine.top)
            throw UsageError("a closed loop needs --rounds R, --metric NAME[:min|max] and --top K");
    }
};

void write_rounds(const std::string& root, const RoundsRecord& record) {
    write_file_atomic(root + "/rounds.json", rounds_json(record));
}

// Submits the controller that advances the loop once every job of `round` has ended.
std::string submit_controller(const SweepDir& root, RoundsRecord& record) {
    auto script = controller_script_path(root.path);
    write_file_atomic(script, controller_script(root.path, root.spec.name, record.plan.tool, PACKAGE_VERSION));
    if (::chmod(script.c_str(), 0755) != 0) throw_errno("cannot make " + script + " executable");
    auto& round = record.history.back();
    auto r = capture_output(controller_argv(script, round.jobs, placement_args(record.plan.sbatch)));
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
    if (g_progress)
        std::cerr << "aihpc-sweep: controller of round " << round.round << " is job " << round.controller << " (after "
                  << join(round.jobs, ":") << ")\n";
    return round.controller;
}

std::vector<std::string> job_ids(const std::vector<ArraySubmission>& subs) {
    std::vector<std::string> out;
    for (auto& s : subs) out.push_back(s.job_id);
    return out;
}

// plan and submit of a sweep with a schedule: the first rung of each bracket is submitted
// now; the later ones by the controllers (or, for asha, by the tasks) as rungs end.
int plan_or_submit_schedule(const SweepDir& sweep, const SubmitOptions& options, bool submit, bool dry_run, bool rounds) {
    const auto& schedule = *sweep.spec.schedule;
    if (rounds) throw UsageError("--rounds does not go with a schedule: the rungs already narrow the sweep");
    if (options.pack > 1)
        throw Error("a sweep with a schedule runs one configuration per array element; leave out --pack (and slurm.pack)");
    RungsPlan plan;
    plan.throttle = options.throttle;
    plan.max_array_size = options.max_array_size;
    plan.sbatch = options.sbatch_args;
    plan.tool = options.tool_path;
    auto arrays = planned_arrays(sweep, {}, options.throttle, options.max_array_size);
    if (!submit) {
        auto brackets = sweep_brackets(sweep);
        std::cout << sweep.tasks << " configurations, " << schedule_type_name(schedule.type) << " over " << schedule.resource << " from "
                  << schedule.min << " to " << schedule.max << " (eta " << schedule.eta << "): " << brackets.size() << " bracket(s), "
                  << arrays.size() << " array(s)\n";
        for (auto& a : arrays) {
            std::cout << a.label << ": " << (schedule.type == ScheduleType::asha && *a.rung ? "at most " : "") << a.tasks
                      << " configurations at " << schedule.resource << "=" << a.budget;
            if (!a.array.empty()) std::cout << ", array " << a.array << " (offset " << a.offset << ")";
            if (!a.after.empty())
                std::cout << ", after " << a.after << (schedule.type == ScheduleType::asha ? " (promoted by its tasks)" : " (promoted by its controller)");
            std::cout << "\n";
        }
    }
    if (dry_run) {
        // The script the lines name, to read before submitting; once submitted, the rungs
        // still to come use the one they were submitted with.
        if (!is_file(rungs_dir(sweep.path) + "/plan.json")) {
            write_file_atomic(rung_script_path(sweep.path), rung_script(sweep, plan, PACKAGE_VERSION));
            if (::chmod(rung_script_path(sweep.path).c_str(), 0755) != 0) throw_errno("cannot make " + rung_script_path(sweep.path) + " executable");
        }
        for (auto& b : sweep_brackets(sweep)) {
            std::vector<std::uint64_t> configs;
            for (std::uint64_t c = 0; c < b.configs; ++c) configs.push_back(b.first_config + c);
            std::vector<std::string> placeholders;
            for (auto& s : plan_rung_arrays(sweep, plan, b.bracket, 0, configs)) {
                std::vector<std::string> quoted;
                for (auto& w : s.argv) quoted.push_back(shell_quote(w));
                std::cout << join(quoted, " ") << "\n";
                if (placeholders.empty()) placeholders.push_back("{b" + std::to_string(b.bracket) + ".r0}");
            }
            // The controller that promotes out of the first rung, once its arrays ended.
            if (schedule.type != ScheduleType::asha && b.rungs.size() > 1) {
                std::vector<std::string> quoted;
                for (auto& w : rung_controller_argv(sweep, plan, b.bracket, 0, placeholders))
                    quoted.push_back(w.find("afterany:{") != std::string::npos ? w : shell_quote(w));
                std::cout << join(quoted, " ") << "\n";
            }
        }
        return 0;
    }
    submit_schedule(sweep, plan, PACKAGE_VERSION, real_sbatch(), std::cout);
    return 0;
}

int cmd_status(Args args) {
    if (args.done()) throw UsageError("status needs a SWEEP dir");
    std::string dir = args.next();
    if (!args.done()) throw UsageError("status: unknown argument " + args.peek());
    SweepDir sweep = open_sweep(dir);
    auto scan = scan_results(sweep);
    std::cerr << unreadable_warnings("aihpc-sweep", scan.unreadable);
    std::cout << sweep.tasks << " tasks: " << scan.done.size() << " done, " << scan.failed.size() << " failed, "
              << scan.missing(sweep.tasks).size() << " without a result\n";
    if (sweep.spec.schedule) print_schedule_status(sweep, std::cout);
    return 0;
}

int cmd_plan_or_submit(Args args, bool submit) {
    if (args.done()) throw UsageError(std::string(submit ? "submit" : "plan") + " needs a SWEEP dir");
    std::string dir = args.next();
    ArrayOptions ao;
    RoundsOptions ro;
    bool dry_run = !submit, json = false;
    std::vector<std::string> extra;
    while (!args.done()) {
        auto w = args.next();
        if (ao.take(args, w)) continue;
        if (submit && ro.take(args, w)) continue;
        if (w == "--dry-run" && submit) dry_run = true;
        else if (w == "--json" && !submit) json = true;
        else if (w == "--" && submit) extra = args.rest();
        else throw UsageError(std::string(submit ? "submit" : "plan") + ": unknown argument " + w);
    }
    ro.check();
    SweepDir sweep = open_sweep(dir);
    SubmitOptions options = ao.resolve(sweep, dry_run);
    options.sbatch_args = extra;
    check_phase_options(sweep, options);
    auto subs = plan_submit(sweep, options);
    if (json) {
        std::cout << planned_arrays_json(planned_arrays(sweep, subs, options.throttle, options.max_array_size));
        return 0;
    }
    if (sweep.spec.schedule) return plan_or_submit_schedule(sweep, options, submit, dry_run, ro.given());
    if (!submit) {
        auto chunks = plan_chunks(sweep.tasks, options.max_array_size, options.pack);
        std::cout << sweep.tasks << " tasks, " << sweep.spec.phases.size() << " phase(s), " << chunks.size()
                  << " chunk(s) of at most " << options.max_array_size << " array elements, pack " << options.pack << "\n";
        for (auto& c : chunks)
            std::cout << "chunk " << c.index << ": offset " << c.offset << ", " << c.count << " tasks, " << c.elements << " elements\n";
    }
    if (dry_run) {
        // The scripts the lines name, to read before submitting; a sweep already
        // submitted keeps those its arrays (and resubmit) use.
        if (!is_file(sweep.path + "/chunks.json")) write_scripts(sweep, options);
        print_dry_run(sweep, subs, options, true);
        if (ro.given()) {
            std::vector<std::string> placeholders;
            for (auto& s : subs) placeholders.push_back("{" + s.label + "}");
            std::string line;
            for (auto& w : controller_argv(controller_script_path(sweep.path), placeholders, placement_args(extra)))
                line += (line.empty() ? "" : " ") + (w.find("afterany:{") != std::string::npos ? w : shell_quote(w));
            std::cout << line << "\n";
        }
        return 0;
    }
    RoundsRecord record;
    if (ro.given()) {
        // Checked before anything is queued: the metric must at least be a name refine accepts.
        record.plan.rounds = *ro.rounds;
        record.plan.metric = ro.refine.metric;
        record.plan.maximize = ro.refine.maximize;
        record.plan.top = *ro.refine.top;
        record.plan.shrink = ro.refine.shrink.value_or(0.5);
        record.plan.aggregate = ro.refine.aggregate;
        record.plan.trials = ro.refine.trials;
        record.plan.throttle = options.throttle;
        record.plan.max_array_size = options.max_array_size;
        record.plan.pack = options.pack;
        record.plan.sbatch = extra;
        record.plan.tool = options.tool_path;
        if (is_file(sweep.path + "/rounds.json")) throw Error(dir + " already runs a closed loop (see rounds.json)");
    }
    submit_sweep(sweep, subs, options);
    for (auto& s : subs) std::cout << s.label << " " << s.job_id << "\n";
    if (ro.given()) {
        Round first;
        first.round = 1;
        first.dir = sweep.path;
        first.tasks = sweep.tasks;
        first.jobs = job_ids(subs);
        record.history.push_back(first);
        write_rounds(sweep.path, record);
        std::cout << "advance.1 " << submit_controller(sweep, record) << "\n";
    }
    return 0;
}

// Takes the environment of the controller's own job out of what sbatch sees, so that the
// next round's jobs are shaped by their scripts alone. SLURM_CONF stays.
void forget_job_environment() {
    std::vector<std::string> names;
    for (char** e = environ; *e; ++e) {
        std::string_view kv(*e);
        auto name = kv.substr(0, kv.find('='));
        if (starts_with(name, "SLURM_") && name != "SLURM_CONF") names.emplace_back(name);
    }
    for (auto& n : names) ::unsetenv(n.c_str());
}

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

int cmd_advance(Args args) {
    if (args.done()) throw UsageError("advance needs the SWEEP dir of a closed loop");
    std::string dir = args.next();
    SweepDir root = open_sweep(dir);
    if (root.spec.schedule) {
        AdvanceRequest request;
        while (!args.done()) {
            auto w = args.next();
            if (w == "--bracket") request.bracket = args.number(w);
            else if (w == "--rung") request.rung = args.number(w);
            else if (w == "--arrays-ended") request.arrays_ended = true;
            else if (w == "--dry-run") request.dry_run = true;
            else throw UsageError("advance: unknown argument " + w);
        }
        if (request.rung && !request.bracket) throw UsageError("advance: --rung goes with --bracket");
        if (request.arrays_ended && !request.rung) throw UsageError("advance: --arrays-ended goes with --bracket S --rung K");
        advance_schedule(root, request, real_sbatch(), std::cout);
        return 0;
    }
    if (!args.done()) throw UsageError("advance: unknown argument " + args.peek());
    RoundsLock lock(root.path);
    auto path = root.path + "/rounds.json";
    if (!is_file(path)) throw Error(dir + " has no rounds.json: it was not submitted with --rounds");
    RoundsRecord record = parse_rounds_json(read_file(path));
    if (record.state != "running") {
        std::cerr << "aihpc-sweep: the closed loop of " << dir << " is " << record.state << "; nothing to do\n";
        return 0;
    }
    auto& plan = record.plan;
    Round& current = record.history.back();
    SweepDir sweep = open_sweep(current.dir);
    std::vector<RankedTask> ranked;
    try {
        ranked = best_tasks(sweep, plan.metric, plan.maximize, plan.top, plan.aggregate);
    } catch (const Error& e) {
        record.state = "stopped";
        record.message = "round " + std::to_string(current.round) + ": " + e.what();
        write_rounds(root.path, record);
        throw Error(record.message + "; the loop stops here");
    }
    current.best = RoundBest{ranked.front().task.index, ranked.front().metric, ranked.front().task.params_json};
    std::cout << "round " << current.round << ": best " << plan.metric << " " << format_double(ranked.front().metric) << " (task "
              << ranked.front().task.index << " " << ranked.front().task.params_json << ")\n";
    if (current.round >= plan.rounds) {
        record.state = "done";
        write_rounds(root.path, record);
        std::cout << "closed loop done after " << current.round << " round(s)\n";
        if (auto best = overall_best(record))
            std::cout << "best over all rounds: " << plan.metric << " " << format_double(best->second.metric) << " (round " << best->first
                      << ", task " << best->second.index << " " << best->second.params_json << ")\n";
        return 0;
    }

    std::uint64_t next_round = current.round + 1;
    std::string next_dir = round_dir(root.path, next_round);
    if (!is_file(next_dir + "/sweep.json")) {
        std::vector<TaskRecord> best;
        for (auto& r : ranked) best.push_back(r.task);
        auto spec = refine_spec(sweep.spec, best, plan.shrink, plan.trials.value_or(record.history.front().tasks));
        write_sweep_dir(spec, next_dir, Provenance{PACKAGE_VERSION, rfc3339_now(), root.git_commit}, refined_options());
    }
    SweepDir next = open_sweep(next_dir);
    SubmitOptions options;
    options.throttle = plan.throttle;
    options.max_array_size = plan.max_array_size;
    options.pack = plan.pack;
    options.sbatch_args = plan.sbatch;
    options.tool_path = plan.tool.empty() ? self_path() : plan.tool;
    options.tool_version = PACKAGE_VERSION;
    forget_job_environment();
    std::vector<ArraySubmission> subs;
    try {
        subs = plan_submit(next, options);
        submit_sweep(next, subs, options);
    } catch (const Error& e) {
        record.state = "stopped";
        record.message = "round " + std::to_string(next_round) + " could not be submitted: " + e.what();
        write_rounds(root.path, record);
        throw;
    }
    Round round;
    round.round = next_round;
    round.dir = next.path;
    round.tasks = next.tasks;
    round.jobs = job_ids(subs);
    record.history.push_back(round);
    write_rounds(root.path, record);
    std::cout << "round " << next_round << ": " << next.tasks << " tasks in " << next.path << ", jobs " << join(round.jobs, ",") << "\n";
    std::cout << "advance." << next_round << " " << submit_controller(root, record) << "\n";
    return 0;
}

int cmd_run(Args args) {
    if (args.done()) throw UsageError("run needs a SWEEP dir");
    std::string dir = args.next();
    RunRequest req;
    while (!args.done()) {
        auto w = args.next();
        if (w == "--index") req.index = args.number(w);
        else if (w == "--phase") req.phase = args.value(w);
        else if (w == "--offset") req.offset = args.number(w);
        else if (w == "--count") req.count = args.number(w);
        else if (w == "--pack") req.pack = args.number(w, 1);
        else if (w == "--bracket") req.bracket = args.number(w);
        else if (w == "--rung") req.rung = args.number(w);
        else throw UsageError("run: unknown argument " + w);
    }
    return run_tasks(open_sweep(dir), req);
}

int cmd_params(Args args) {
    if (args.done()) throw UsageError("params needs a SWEEP dir");
    std::string dir = args.next();
    std::optional<std::uint64_t> index;
    std::string format = "json";
    std::optional<std::string> phase;
    while (!args.done()) {
        auto w = args.next();
        if (w == "--index") index = args.number(w);
        else if (w == "--format") format = args.value(w);
        else if (w == "--phase") phase = args.value(w);
        else throw UsageError("params: unknown argument " + w);
    }
    if (!index) throw UsageError("params needs --index I");
    if (format != "json" && format != "env" && format != "args" && format != "shell" && format != "cmd")
        throw UsageError("params: --format must be json, env, args, shell or cmd, not '" + format + "'");
    if (phase && format != "cmd") throw UsageError("params: --phase goes with --format cmd");
    TaskIndex tasks(dir);
    TaskRecord task = tasks.task(*index);
    std::string out;
    if (format == "cmd") {
        // The command `run` would start for this task, as a shell would read it.
        SweepDir sweep = open_sweep(dir);
        const std::string phase_name = phase.value_or("");
        const Phase& p = find_phase(sweep.spec, phase_name);
        if (sweep.spec.command_of(p).empty()) throw Error("phase '" + p.name + "' has no command");
        std::vector<std::string> words;
        for (auto& w : task_command(sweep.spec, p, task)) words.push_back(shell_quote(w));
        out = join(words, " ") + "\n";
    } else if (format == "json") {
        out = task.params_json + "\n";
    } else if (format == "args") {
        std::vector<std::string> words;
        for (auto& [k, v] : task.params) words.push_back(shell_quote("--" + k + "=" + v.plain));
        out = join(words, " ") + "\n";
    } else {
        for (auto& [k, v] : task_environment(task)) out += (format == "shell" ? "export " + k + "=" + shell_quote(v) : k + "=" + v) + "\n";
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
    return 0;
}

void append_chunks(const SweepDir& sweep, const std::vector<ArraySubmission>& subs, const SubmitOptions& options) {
    std::string path = sweep.path + "/chunks.json";
    std::string fresh = chunks_json(subs, options);
    if (!is_file(path)) {
        write_file_atomic(path, fresh);
        return;
    }
    JsonRef old = parse_json(read_file(path));
    JsonRef add = parse_json(fresh);
    json_object *arrays = nullptr, *more = nullptr;
    if (json_object_object_get_ex(old.get(), "arrays", &arrays) && json_object_object_get_ex(add.get(), "arrays", &more)) {
        for (std::size_t i = 0; i < json_object_array_length(more); ++i)
            json_object_array_add(arrays, json_object_get(json_object_array_get_idx(more, i)));
        write_file_atomic(path, std::string(json_object_to_json_string_ext(old.get(), JSON_C_TO_STRING_PLAIN)) + "\n");
    } else {
        write_file_atomic(path, fresh);
    }
}

// The tasks that resubmit names: those of --indices, and the failed or missing ones.
std::set<std::uint64_t> indices_to_resubmit(const SweepDir& sweep, const std::optional<std::string>& list, bool failed,
                                            bool missing) {
    std::set<std::uint64_t> indices;
    if (list) indices = parse_index_list(*list);
    if (failed || missing) {
        auto scan = scan_results(sweep);
        std::cerr << unreadable_warnings("aihpc-sweep", scan.unreadable);
        if (failed) indices.insert(scan.failed.begin(), scan.failed.end());
        if (missing) {
            auto m = scan.missing(sweep.tasks);
            indices.insert(m.begin(), m.end());
        }
    }
    return indices;
}

int cmd_resubmit(Args args) {
    if (args.done()) throw UsageError("resubmit needs a SWEEP dir");
    std::string dir = args.next();
    ArrayOptions ao;
    bool dry_run = false, failed = false, missing = false;
    std::optional<std::string> list;
    std::vector<std::string> extra;
    while (!args.done()) {
        auto w = args.next();
        if (w == "--throttle" || w == "--max-array-size") ao.take(args, w);
        else if (w == "--failed") failed = true;
        else if (w == "--missing") missing = true;
        else if (w == "--indices") list = args.value(w);
        else if (w == "--dry-run") dry_run = true;
        else if (w == "--") extra = args.rest();
        else throw UsageError("resubmit: unknown argument " + w);
    }
    if (!failed && !missing && !list) throw UsageError("resubmit needs --failed, --missing or --indices LIST");
    SweepDir sweep = open_sweep(dir);
    if (sweep.spec.schedule)
        throw Error(dir + " runs under a schedule, whose rungs are submitted by their controllers; aihpc-sweep advance " + dir +
                    " submits what a rung lacks, and aihpc-sweep run " + dir + " --bracket S --rung K --index I reruns one configuration");
    std::set<std::uint64_t> indices = indices_to_resubmit(sweep, list, failed, missing);
    if (indices.empty()) {
        std::cerr << "aihpc-sweep: nothing to resubmit\n";
        return 0;
    }
    SubmitOptions options = ao.resolve(sweep);
    options.pack = 1;
    options.sbatch_args = extra;
    std::string prefix = "r" + std::to_string(static_cast<long long>(::time(nullptr))) + "-";
    check_aihpc_options(options.sbatch_args, "the sbatch options after --");
    check_container_images(options.sbatch_args, "the sbatch options after --", current_dir());
    auto subs = plan_resubmit(sweep, indices, options, prefix);
    if (dry_run) {
        // The scripts exist already (or are written as they were): only the words after
        // -- are new on these lines.
        print_dry_run(sweep, subs, options, false);
        return 0;
    }
    check_commands(sweep);
    for (auto& phase : sweep.spec.phases) {
        auto script = script_path(sweep, phase.name);
        if (!is_file(script)) {
            SubmitOptions o = options;
            o.sbatch_args.clear();
            write_scripts(sweep, o);
            break;
        }
    }
    // Earlier results of these tasks are kept aside, so that status and collection see
    // only the new run; those of an array that was not submitted are put back.
    struct SetAside {
        std::string path;
        std::size_t sub;
    };
    std::vector<SetAside> aside;
    auto put_back = [&](bool all) {
        std::string failed;
        for (auto& a : aside)
            if ((all || subs[a.sub].job_id.empty()) && ::rename((a.path + ".prev").c_str(), a.path.c_str()) != 0)
                failed += " " + a.path + ".prev";
        return failed.empty() ? std::string() : "; could not restore" + failed + " (rename them back by hand)";
    };
    for (std::size_t k = 0; k < subs.size(); ++k) {
        const Phase& phase = find_phase(sweep.spec, subs[k].phase);
        for (auto it = indices.lower_bound(subs[k].offset); it != indices.end() && *it < subs[k].offset + subs[k].count; ++it) {
            auto path = result_path(sweep, phase, *it);
            if (!is_file(path)) continue;
            if (::rename(path.c_str(), (path + ".prev").c_str()) != 0) {
                int e = errno;
                auto restore = put_back(true);
                throw Error("cannot set aside " + path + ": " + std::strerror(e) + "; nothing was submitted" + restore);
            }
            aside.push_back({path, k});
        }
    }
    try {
        submit_all(sweep, subs, [] {});
    } catch (const Error& e) {
        std::vector<ArraySubmission> submitted;
        for (auto& s : subs)
            if (!s.job_id.empty()) submitted.push_back(s);
        if (!submitted.empty()) append_chunks(sweep, submitted, options);
        throw Error(e.what() + put_back(false));
    }
    append_chunks(sweep, subs, options);
    std::cout << indices.size() << " tasks resubmitted: " << array_spec(indices, 0) << "\n";
    for (auto& s : subs) std::cout << s.label << " " << s.job_id << "\n";
    return 0;
}

int cmd_refine(Args args) {
    if (args.done()) throw UsageError("refine needs a SWEEP dir");
    std::string dir = args.next();
    std::string out_dir;
    RefineOptions ro;
    while (!args.done()) {
        auto w = args.next();
        if (ro.take(args, w)) continue;
        if (w == "-o" || w == "--output") out_dir = args.value(w);
        else throw UsageError("refine: unknown argument " + w);
    }
    if (ro.metric.empty() || !ro.top || out_dir.empty()) throw UsageError("refine needs --metric NAME, --top K and -o SWEEP2");
    SweepDir sweep = open_sweep(dir);
    auto ranked = best_tasks(sweep, ro.metric, ro.maximize, *ro.top, ro.aggregate);
    std::vector<TaskRecord> best;
    for (auto& r : ranked) best.push_back(r.task);
    auto spec = refine_spec(sweep.spec, best, ro.shrink.value_or(0.5), ro.trials.value_or(sweep.tasks));
    auto summary = write_sweep_dir(spec, out_dir, Provenance{PACKAGE_VERSION, rfc3339_now(), git_commit()}, refined_options());
    const char* how = ro.aggregate == Aggregate::mean ? "mean " : ro.aggregate == Aggregate::median ? "median " : "";
    std::cout << summary.tasks << " tasks around the best " << best.size() << " configuration(s) (" << how << ro.metric << " "
              << (ro.maximize ? "max" : "min") << " " << format_double(ranked.front().metric);
    if (ranked.front().replicates > 1) std::cout << " over " << ranked.front().replicates << " replicates";
    std::cout << ") in " << out_dir << "\n";
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> words;
    g_progress = ::isatty(2);
    bool after_dashes = false;
    for (int i = 1; i < argc; ++i) {
        std::string w = argv[i];
        after_dashes = after_dashes || w == "--";
        if (w == "--progress" && !after_dashes) g_progress = true;
        else words.push_back(w);
    }
    if (words.empty()) {
        std::cerr << kUsage;
        return 2;
    }
    const std::string cmd = words[0];
    if (cmd == "-h" || cmd == "--help" || cmd == "help") {
        std::cout << kUsage;
        return 0;
    }
    if (cmd == "-V" || cmd == "--version") {
        std::cout << "aihpc-sweep " << PACKAGE_VERSION << "\n";
        return 0;
    }
    for (std::size_t i = 1; i < words.size() && words[i] != "--"; ++i)
        if (words[i] == "--help" || words[i] == "-h") {
            std::cout << kUsage;
            return 0;
        }
    Args args(std::vector<std::string>(words.begin() + 1, words.end()));
    try {
        if (cmd == "expand") return cmd_expand(std::move(args));
        if (cmd == "plan") return cmd_plan_or_submit(std::move(args), false);
        if (cmd == "submit") return cmd_plan_or_submit(std::move(args), true);
        if (cmd == "run") return cmd_run(std::move(args));
        if (cmd == "params") return cmd_params(std::move(args));
        if (cmd == "resubmit") return cmd_resubmit(std::move(args));
        if (cmd == "refine") return cmd_refine(std::move(args));
        if (cmd == "advance") return cmd_advance(std::move(args));
        if (cmd == "status") return cmd_status(std::move(args));
        throw UsageError("unknown command '" + cmd + "' (expand, plan, submit, run, params, resubmit, refine, advance, status)");
    } catch (const UsageError& e) {
        std::cerr << "aihpc-sweep: " << e.what() << "\nTry 'aihpc-sweep --help'.\n";
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "aihpc-sweep: " << e.what() << "\n";
        return 1;
    }
}
