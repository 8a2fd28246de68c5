// aihpc-sweep: parameter sweeps as Slurm job arrays (expand, plan, submit, run, params,
// resubmit). A thin main over lib/sweep; see aihpc-sweep(1).
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "common/error.hpp"
#include "common/text.hpp"
#include "config.h"
#include "sweep/closed_loop.hpp"
#include "sweep/expand.hpp"
#include "sweep/image_check.hpp"
#include "sweep/preview.hpp"
#include "common/process.hpp"
#include "sweep/refine.hpp"
#include "sweep/resubmit.hpp"
#include "sweep/results.hpp"
#include "sweep/rounds.hpp"
#include "sweep/rungs.hpp"
#include "sweep/runner.hpp"
#include "sweep/shorthand.hpp"
#include "sweep/spec.hpp"
#include "sweep/submission.hpp"
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

// sbatch as it is, reporting each submission with --progress.
Submitter submitter() {
    Submitter s;
    if (g_progress) s.progress = &std::cerr;
    return s;
}

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

LoopStep loop_step() { return LoopStep{PACKAGE_VERSION, self_path(), submitter()}; }

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
    if (emit_json && !out_dir.empty())
        throw UsageError("--emit-json prints the JSON spec and writes no sweep dir: leave out -o " + out_dir + ", or --emit-json");
    auto [text, spec] = read_command_line_spec(positional, overrides, std::cerr);
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
        else o.max_array_size = cluster_max_array_size(preview, std::cerr);
        o.tool_path = self_path();
        o.tool_version = PACKAGE_VERSION;
        return o;
    }
};

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

// plan and submit of a sweep with a schedule: the first rung of each bracket is submitted
// now; the later ones by the controllers (or, for asha, by the tasks) as rungs end.
int plan_or_submit_schedule(const SweepDir& sweep, const SubmitOptions& options, bool submit, bool dry_run, bool rounds) {
    if (rounds) throw UsageError("--rounds does not go with a schedule: the rungs already narrow the sweep");
    if (options.pack > 1)
        throw Error("a sweep with a schedule runs one configuration per array element; leave out --pack (and slurm.pack)");
    RungsPlan plan = rungs_plan(options);
    if (!submit) print_schedule_plan(sweep, options, std::cout);
    if (dry_run) {
        print_schedule_dry_run(sweep, plan, PACKAGE_VERSION, std::cout);
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
    check_phase_options(sweep, options, current_dir());
    auto subs = plan_submit(sweep, options);
    if (json) {
        std::cout << planned_arrays_json(planned_arrays(sweep, subs, options.throttle, options.max_array_size));
        return 0;
    }
    if (sweep.spec.schedule) return plan_or_submit_schedule(sweep, options, submit, dry_run, ro.given());
    if (!submit) print_chunks(sweep, options, std::cout);
    if (dry_run) {
        print_submit_dry_run(sweep, subs, options, ro.given(), std::cout);
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
    submit_sweep(sweep, subs, options, submitter());
    for (auto& s : subs) std::cout << s.label << " " << s.job_id << "\n";
    if (ro.given()) std::cout << "advance.1 " << start_closed_loop(sweep, record, subs, loop_step()) << "\n";
    return 0;
}

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
    advance_rounds(root, dir, loop_step(), std::cout, std::cerr);
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
    std::string out = task_params_text(dir, *index, format, phase.value_or(""));
    std::fwrite(out.data(), 1, out.size(), stdout);
    return 0;
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
    std::set<std::uint64_t> indices = tasks_to_resubmit(sweep, list, failed, missing, std::cerr);
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
        print_dry_run(sweep, subs, options, false, std::cout);
        return 0;
    }
    resubmit_tasks(sweep, subs, indices, options, submitter());
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
    auto summary = write_sweep_dir(spec, out_dir, Provenance{PACKAGE_VERSION, rfc3339_now(), git_commit()}, refined_expand_options());
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
