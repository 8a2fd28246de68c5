#include "sweep/runner.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/json.hpp"
#include "common/paths.hpp"
#include "common/spawn.hpp"
#include "common/text.hpp"
#include "config/user_options.hpp"
#include "sweep/command.hpp"
#include "sweep/rungs.hpp"
#include "sweep/shorthand.hpp"
#include "sweep/submit_plan.hpp"

extern char** environ;

namespace aihpc::sweep {

namespace {

std::string env(const char* name) {
    const char* v = std::getenv(name);
    return v ? v : "";
}

std::string status_field(const std::string& status, std::string_view key) {
    for (auto& line : split(status, '\n'))
        if (starts_with(line, key) && line.size() > key.size() && line[key.size()] == ':')
            return std::string(trim(std::string_view(line).substr(key.size() + 1)));
    return "";
}

// Slurm ids are numbers; anything else (or nothing) is kept as text or null.
std::string id_json(const std::string& text) {
    if (text.empty()) return "null";
    return parse_uint(text) ? text : json_quote(text);
}

volatile sig_atomic_t g_child = 0;
volatile sig_atomic_t g_signal = 0;

extern "C" void forward_signal(int sig) {
    g_signal = sig;
    if (g_child > 0) ::kill(static_cast<pid_t>(g_child), sig);
}

// Installs the forwarding handlers for SIGTERM and SIGINT and restores the old ones.
class SignalForwarding {
public:
    SignalForwarding() {
        struct sigaction sa {};
        sa.sa_handler = forward_signal;
        sigemptyset(&sa.sa_mask);
        ::sigaction(SIGTERM, &sa, &old_term_);
        ::sigaction(SIGINT, &sa, &old_int_);
    }
    ~SignalForwarding() {
        ::sigaction(SIGTERM, &old_term_, nullptr);
        ::sigaction(SIGINT, &old_int_, nullptr);
    }
    SignalForwarding(const SignalForwarding&) = delete;
    SignalForwarding& operator=(const SignalForwarding&) = delete;

private:
    struct sigaction old_term_ {}, old_int_ {};
};

// Blocks SIGTERM and SIGINT between fork and recording the child's pid, so that no
// signal falls between the two.
class BlockedSignals {
public:
    BlockedSignals() {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        ::sigprocmask(SIG_BLOCK, &set, &old_);
    }
    ~BlockedSignals() { restore(); }
    void restore() {
        if (active_) ::sigprocmask(SIG_SETMASK, &old_, nullptr);
        active_ = false;
    }
    const sigset_t& old() const { return old_; }

private:
    sigset_t old_;
    bool active_ = true;
};

// Passes a command's stderr on to our own and keeps its last 64 KiB, enough for the
// last kStderrTailLines lines of any reasonable output.
class StderrTail {
public:
    void add(std::string_view data) {
        for (std::size_t done = 0; done < data.size();) {
            ssize_t n = ::write(2, data.data() + done, data.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;  // our stderr is gone: keep the tail all the same
            done += static_cast<std::size_t>(n);
        }
        kept_.append(data);
        if (kept_.size() > 2 * kKeep) kept_.erase(0, kept_.size() - kKeep);
    }
    std::vector<std::string> lines() const { return last_lines(kept_, kStderrTailLines); }

private:
    static constexpr std::size_t kKeep = 64 * 1024;
    std::string kept_;
};

// This process's environment with `extra` set in it, as setenv would.
std::vector<std::string> environment_with(const std::vector<std::pair<std::string, std::string>>& extra) {
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) env.emplace_back(*e);
    for (const auto& [name, value] : extra) {
        std::string prefix = name + "=";
        auto it = std::find_if(env.begin(), env.end(), [&](const std::string& e) { return starts_with(e, prefix); });
        if (it != env.end()) *it = prefix + value;
        else env.push_back(prefix + value);
    }
    return env;
}

std::string signal_name(int sig) {
    const char* abbrev = sigabbrev_np(sig);
    return abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

TaskOutcome execute(const std::vector<std::string>& command, const std::vector<std::pair<std::string, std::string>>& extra_env,
                    const std::string& metrics_file) {
    TaskOutcome out;
    out.start = rfc3339_now();
    auto t0 = std::chrono::steady_clock::now();
    ::unlink(metrics_file.c_str());
    int status = 0;
    // The command's stderr goes through a pipe: passed on to ours (the task's log) and its
    // tail kept, so that a failed task's result says why it failed.
    int err_pipe[2];
    if (::pipe2(err_pipe, O_CLOEXEC) != 0) throw_errno("cannot make a pipe for the stderr of " + command[0]);
    UniqueFd err_read(err_pipe[0]), err_write(err_pipe[1]);
    StderrTail tail;
    const std::string cannot_run = "aihpc-sweep: cannot run " + command[0];
    SpawnPlan plan;
    plan.argv = command;
    plan.search_path = true;
    plan.env = environment_with(extra_env);
    // The command runs in this task's place: it keeps what the task was given.
    plan.fds = {{2, err_write.get()}};
    plan.keep_other_fds = true;
    plan.on_failure = report_failure_on_stderr;
    plan.failure_context = cannot_run.c_str();
    plan.purpose = command[0];
    plan.start_error = "cannot fork to run " + command[0];
    {
        BlockedSignals blocked;
        plan.signal_mask = blocked.old();
        ChildProcess child = spawn(plan);
        const pid_t pid = child.pid();
        g_child = pid;
        blocked.restore();
        err_write.reset();
        bool reaped = false;
        for (;;) {
            // Poll with a timeout: a grandchild left behind may hold the pipe open after
            // the command itself has ended.
            struct pollfd pfd {err_read.get(), POLLIN, 0};
            int ready = ::poll(&pfd, 1, 200);
            if (ready > 0) {
                char buf[8192];
                ssize_t n = ::read(err_read.get(), buf, sizeof buf);
                if (n > 0) {
                    tail.add(std::string_view(buf, static_cast<std::size_t>(n)));
                    continue;
                }
                if (n < 0 && errno == EINTR) continue;
                break;  // end of file: every writer is gone
            }
            if (ready < 0 && errno != EINTR) break;
            pid_t r = ::waitpid(pid, &status, WNOHANG);
            if (r == pid) {
                reaped = true;
                // Whatever is already in the pipe, without waiting for more.
                int flags = ::fcntl(err_read.get(), F_GETFL);
                ::fcntl(err_read.get(), F_SETFL, flags | O_NONBLOCK);
                char buf[8192];
                ssize_t n;
                while ((n = ::read(err_read.get(), buf, sizeof buf)) > 0) tail.add(std::string_view(buf, static_cast<std::size_t>(n)));
                break;
            }
        }
        while (!reaped && ::waitpid(pid, &status, 0) < 0) {
            if (errno != EINTR) {
                g_child = 0;
                throw_errno("cannot wait for " + command[0]);
            }
        }
        child.forget();  // reaped above
        g_child = 0;
    }
    out.stderr_tail = tail.lines();
    out.end = rfc3339_now();
    out.elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (WIFEXITED(status)) {
        out.exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        out.exit_code = 128 + WTERMSIG(status);
        out.signal = signal_name(WTERMSIG(status));
    }
    if (g_signal) out.forwarded = signal_name(g_signal);
    if (path_exists(metrics_file)) {
        try {
            auto m = parse_metrics(read_file(metrics_file));
            out.metrics_json = std::move(m.json);
            out.non_finite = std::move(m.non_finite);
        } catch (const Error&) {
            out.metrics_json = "{}";
        }
        ::unlink(metrics_file.c_str());
    }
    return out;
}

}  // namespace

namespace {

std::string env_value(const std::vector<std::string>& env, const std::string& name) {
    for (const auto& entry : env)
        if (entry.size() > name.size() && entry[name.size()] == '=' && entry.compare(0, name.size(), name) == 0)
            return entry.substr(name.size() + 1);
    return "";
}

// An option as the job's steps see it: Slurm's forwarded value, else the variable.
std::string job_option(const std::vector<std::string>& env, const std::string& option, const std::string& variable) {
    std::string forwarded = env_value(env, "SLURM_SPANK__SLURM_SPANK_OPTION_aihpc_" + option);
    return forwarded.empty() ? env_value(env, variable) : forwarded;
}

std::vector<std::string> environment_entries() {
    std::vector<std::string> out;
    for (char** e = environ; e && *e; ++e) out.emplace_back(*e);
    return out;
}

// A private directory for one task's metrics file, below $TMPDIR (else /tmp) on the
// node: ch-run shows that at the container's /tmp, and the other runtimes get it
// bound; the sweep dir itself need not be in the image.
class MetricsDir {
public:
    MetricsDir() {
        std::string base = env("TMPDIR");
        if (base.empty() || base.front() != '/') base = "/tmp";
        std::string pattern = base + "/aihpc-sweep-metrics.XXXXXX";
        if (!::mkdtemp(pattern.data())) throw_errno("cannot make a directory for a task's metrics in " + base);
        path_ = pattern;
    }
    ~MetricsDir() {
        ::unlink(file().c_str());
        ::rmdir(path_.c_str());
    }
    MetricsDir(const MetricsDir&) = delete;
    MetricsDir& operator=(const MetricsDir&) = delete;
    std::string file() const { return path_ + "/metrics"; }

private:
    std::string path_;
};

}  // namespace

namespace {

// Whether SLURM_STEP_ID names the batch step: Slurm up to 24.11 leaves it unset there,
// 26.05 sets it to the batch step's id, SLURM_BATCH_SCRIPT (0xfffffffb, printed signed).
bool is_batch_step_id(const std::string& step_id) {
    return step_id.empty() || step_id == "-5" || step_id == "4294967291" || step_id == "batch";
}

}  // namespace

TaskLaunch task_launch_from(const std::vector<std::string>& env) {
    TaskLaunch launch;
    if (env_value(env, "SLURM_JOB_ID").empty() || !is_batch_step_id(env_value(env, "SLURM_STEP_ID"))) return launch;
    if (job_option(env, "aihpc_container", "AIHPC_CONTAINER").empty()) return launch;
    if (job_option(env, "aihpc_container_scope", "AIHPC_CONTAINER_SCOPE") != "steps") return launch;
    launch.as_step = true;
    launch.node = env_value(env, "SLURMD_NODENAME");
    return launch;
}

std::vector<std::string> step_command(const TaskLaunch& launch, const std::vector<std::string>& command) {
    if (!launch.as_step) return command;
    // One task on the batch step's node (the metrics directory is node-local); the CPUs,
    // GPUs and --aihpc-* options come from the job, as for any step.
    std::vector<std::string> words = {"srun", "--ntasks=1", "--nodes=1", "--quiet"};
    if (!launch.node.empty()) words.push_back("--nodelist=" + launch.node);
    words.insert(words.end(), command.begin(), command.end());
    return words;
}

TaskContext task_context_from_environment() {
    TaskContext c;
    c.node = env("SLURMD_NODENAME");
    if (c.node.empty()) {
        char host[256] = {};
        if (::gethostname(host, sizeof host - 1) == 0) c.node = host;
    }
    c.job_id = env("SLURM_JOB_ID");
    c.array_job_id = env("SLURM_ARRAY_JOB_ID");
    c.array_task_id = env("SLURM_ARRAY_TASK_ID");
    try {
        auto status = read_file("/proc/self/status");
        c.cpus = status_field(status, "Cpus_allowed_list");
        c.mems = status_field(status, "Mems_allowed_list");
    } catch (const Error&) {
    }
    c.gpus = env("CUDA_VISIBLE_DEVICES");
    if (c.gpus.empty()) c.gpus = env("ROCR_VISIBLE_DEVICES");
    c.container = env("AIHPC_CONTAINER_IMAGE");
    c.container_digest = env("AIHPC_CONTAINER_DIGEST");
    c.stage_manifests = env("AIHPC_STAGE_MANIFESTS");
    // What the job asked to stage: the option as Slurm forwards it to the job's steps
    // (it overrides the variable), else the AIHPC_STAGE variable.
    c.stage_option = env("SLURM_SPANK__SLURM_SPANK_OPTION_aihpc_aihpc_stage");
    if (c.stage_option.empty()) c.stage_option = env("AIHPC_STAGE");
    return c;
}

namespace {

void sanitize(const JsonValue& v, const std::string& name, std::string& out, std::vector<std::string>& non_finite) {
    if (v.is_non_finite()) {
        out += "null";
        non_finite.push_back(name);
    } else if (v.is_object()) {
        out += '{';
        for (std::size_t i = 0; i < v.members().size(); ++i) {
            const auto& [k, m] = v.members()[i];
            if (i) out += ',';
            out += json_quote(k) + ':';
            sanitize(m, name.empty() ? k : name + "." + k, out, non_finite);
        }
        out += '}';
    } else if (v.is_array()) {
        out += '[';
        for (std::size_t i = 0; i < v.items().size(); ++i) {
            if (i) out += ',';
            sanitize(v.items()[i], name + "[" + std::to_string(i) + "]", out, non_finite);
        }
        out += ']';
    } else {
        v.append_json(out);
    }
}

bool non_finite_word(std::string_view t) {
    std::string lower;
    for (char c : t) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return lower == "nan" || lower == "-nan" || lower == "inf" || lower == "-inf" || lower == "+inf" || lower == "infinity" ||
           lower == "-infinity" || lower == "+infinity";
}

}  // namespace

Metrics parse_metrics(std::string_view text) {
    Metrics m;
    auto body = trim(text);
    if (body.empty()) return m;
    if (body.front() == '{') {
        try {
            JsonValue doc = parse_json_value(body, JsonReadOptions{true});
            if (doc.is_object()) {
                m.json.clear();
                sanitize(doc, "", m.json, m.non_finite);
                return m;
            }
        } catch (const JsonError&) {
            // not JSON: read it as name=value lines
        }
    }
    std::string out = "{";
    bool first = true;
    for (auto& line : split(std::string(body), '\n')) {
        auto l = trim(line);
        if (l.empty() || l.front() == '#') continue;
        auto eq = l.find('=');
        if (eq == std::string_view::npos || eq == 0) continue;
        if (!first) out += ',';
        first = false;
        auto name = std::string(trim(l.substr(0, eq)));
        auto value = std::string(trim(l.substr(eq + 1)));
        out += json_quote(name) + ":";
        bool integer = !value.empty() && value.find_first_not_of("0123456789", value[0] == '-' ? 1 : 0) == std::string::npos &&
                       value != "-" && (value.size() == 1 || value[value[0] == '-' ? 1 : 0] != '0');
        if (non_finite_word(value)) {
            out += "null";
            m.non_finite.push_back(name);
        } else if (integer) {
            out += value;  // every digit of an integer, whatever its size
        } else {
            out += shorthand_value(value);
        }
    }
    m.json = out + "}";
    return m;
}

std::string metrics_to_json(const std::string& text) { return parse_metrics(text).json; }

std::vector<std::string> last_lines(std::string_view text, std::size_t lines) {
    std::vector<std::string> out;
    if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
    while (!text.empty() && out.size() < lines) {
        auto nl = text.rfind('\n');
        std::string_view line = nl == std::string_view::npos ? text : text.substr(nl + 1);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        out.emplace_back(line);
        if (nl == std::string_view::npos) break;
        text = text.substr(0, nl);
    }
    std::reverse(out.begin(), out.end());
    return out;
}

const Phase& find_phase(const SweepSpec& spec, const std::string& name) {
    if (name.empty()) return spec.final_phase();
    for (auto& p : spec.phases)
        if (p.name == name) return p;
    std::vector<std::string> names;
    for (auto& p : spec.phases) names.push_back(p.name);
    throw Error("no phase '" + name + "' in this sweep (phases: " + join(names, ", ") + ")");
}

std::vector<std::string> task_command(const SweepSpec& spec, const Phase& phase, const TaskRecord& task) {
    const auto& words = spec.command_of(phase);
    if (words.empty()) throw Error("the sweep has no command for phase '" + phase.name + "'; give one in the spec or after -- at expand");
    return substitute(words, [&](std::string_view name) -> std::optional<std::string> {
        if (name == "index") return std::to_string(task.index);
        if (name == "task_seed") return std::to_string(task.task_seed);
        if (name == "phase") return phase.name;
        for (auto& [k, v] : task.params)
            if (k == name) return v.plain;
        return std::nullopt;  // a parameter of another union branch: not in this task
    });
}

std::string results_dir(const SweepDir& sweep, const Phase& phase) {
    if (&phase == &sweep.spec.final_phase() || phase.name == sweep.spec.final_phase().name) return sweep.path + "/results";
    return sweep.path + "/results/" + phase.name;
}

std::string result_path(const SweepDir& sweep, const Phase& phase, std::uint64_t index) {
    return results_dir(sweep, phase) + "/" + std::to_string(index) + ".json";
}

std::vector<std::pair<std::string, std::string>> task_environment(const TaskRecord& task) {
    std::vector<std::pair<std::string, std::string>> vars = {{"AIHPC_TASK_INDEX", std::to_string(task.index)},
                                                             {"AIHPC_TASK_SEED", std::to_string(task.task_seed)}};
    for (auto& [k, v] : task.params) vars.emplace_back("AIHPC_PARAM_" + env_name_part(k), v.plain);
    return vars;
}

std::string result_json(const SweepDir& sweep, const Phase& phase, const TaskRecord& task, const std::vector<std::string>& command,
                        const TaskOutcome& o, const TaskContext& c, const std::string& rung_fields) {
    // exit_code right after index: readers that only need it stop there (result_exit_code).
    std::string out = "{\"index\":" + std::to_string(task.index) + ",\"exit_code\":" + std::to_string(o.exit_code) +
                      ",\"phase\":" + json_quote(phase.name) + ",\"params\":" + task.params_json +
                      ",\"task_seed\":" + std::to_string(task.task_seed) + rung_fields;
    if (!o.signal.empty()) out += ",\"signal\":" + json_quote(o.signal);
    if (!o.forwarded.empty()) out += ",\"forwarded_signal\":" + json_quote(o.forwarded);
    if (!o.error.empty()) out += ",\"error\":" + json_quote(o.error);
    char elapsed[64];
    std::snprintf(elapsed, sizeof elapsed, "%.3f", o.elapsed_s);
    out += ",\"start\":" + json_quote(o.start) + ",\"end\":" + json_quote(o.end) + ",\"elapsed_s\":" + elapsed +
           ",\"node\":" + json_quote_or_null(c.node) + ",\"job_id\":" + id_json(c.job_id) + ",\"array_job_id\":" + id_json(c.array_job_id) +
           ",\"array_task_id\":" + id_json(c.array_task_id) + ",\"command\":" + json_string_array(command);
    out += ",\"metrics\":" + o.metrics_json;
    if (!o.non_finite.empty()) out += ",\"non_finite\":" + json_string_array(o.non_finite);
    if (o.exit_code != 0 && !o.stderr_tail.empty()) out += ",\"stderr_tail\":" + json_string_array(o.stderr_tail);
    out += ",\"provenance\":{\"spec_hash\":" + json_quote_or_null(sweep.spec_hash) + ",\"git_commit\":" + json_quote_or_null(sweep.git_commit) +
           ",\"container\":" + json_quote_or_null(c.container) + ",\"container_digest\":" + json_quote_or_null(c.container_digest) + ",\"staged\":[";
    std::vector<config::StageItem> sources;
    if (!c.stage_option.empty()) {
        try {
            sources = config::parse_stage(c.stage_option);
        } catch (const std::exception&) {
        }
    }
    bool first = true;
    for (auto& item : split(c.stage_manifests, ',')) {
        auto eq = item.find('=');
        if (item.empty() || eq == std::string::npos) continue;
        auto name = item.substr(0, eq);
        std::string src;
        for (auto& s : sources)
            if (s.name == name) src = s.src;
        if (!first) out += ',';
        first = false;
        out += "{\"src\":" + json_quote_or_null(src) + ",\"name\":" + json_quote(name) + ",\"manifest_hash\":" + json_quote(item.substr(eq + 1)) + "}";
    }
    out += "],\"binding\":{\"cpus\":" + json_quote_or_null(c.cpus) + ",\"mems\":" + json_quote_or_null(c.mems) + ",\"gpus\":" + json_quote_or_null(c.gpus) +
           "}}}\n";
    return out;
}

TaskRecord with_budget(TaskRecord task, const std::string& resource, const Scalar& budget) {
    std::erase_if(task.params, [&](const auto& p) { return p.first == resource; });
    task.params.emplace_back(resource, budget);
    std::string json = "{";
    for (std::size_t i = 0; i < task.params.size(); ++i) json += (i ? "," : "") + json_quote(task.params[i].first) + ":" + task.params[i].second.json;
    task.params_json = json + "}";
    return task;
}

namespace {

// One configuration at one rung of the schedule: its budget in the resource parameter and
// AIHPC_BUDGET, its checkpoints where its earlier rungs left them, its result in the
// rung's folder and in results/ (the latest). An ASHA task then promotes what is due.
int run_rung_task(const SweepDir& sweep, const RunRequest& request) {
    if (!sweep.spec.schedule) throw Error(sweep.path + " has no schedule: --bracket and --rung are for the rungs of a scheduled sweep");
    if (!request.bracket || !request.rung) throw Error("run needs both --bracket and --rung");
    const auto& schedule = *sweep.spec.schedule;
    auto brackets = sweep_brackets(sweep);
    const auto& bracket = find_bracket(brackets, *request.bracket);
    if (*request.rung >= bracket.rungs.size())
        throw Error("bracket " + std::to_string(bracket.bracket) + " has no rung " + std::to_string(*request.rung));
    std::uint64_t config = 0;
    if (request.index) {
        config = *request.index;
    } else {
        auto id = parse_uint(env("SLURM_ARRAY_TASK_ID"));
        if (!id) throw Error("run needs --index I outside a job array (SLURM_ARRAY_TASK_ID is not set)");
        config = request.offset + *id;
    }
    if (bracket_of(brackets, config) != bracket.bracket)
        throw Error("configuration " + std::to_string(config) + " is not in bracket " + std::to_string(bracket.bracket));
    const Budget& budget = bracket.rungs[*request.rung].budget;
    const Phase& phase = sweep.spec.final_phase();
    TaskIndex index(sweep.path);
    TaskRecord task = with_budget(index.task(config), schedule.resource, budget_scalar(budget));
    TaskContext context = task_context_from_environment();
    TaskLaunch launch = task_launch_from(environment_entries());
    SignalForwarding forwarding;
    g_signal = 0;
    auto command = task_command(sweep.spec, phase, task);
    std::optional<MetricsDir> metrics_dir;
    if (launch.as_step) metrics_dir.emplace();
    std::string rung_results = rungs_dir(sweep.path) + "/b" + std::to_string(bracket.bracket) + ".r" + std::to_string(*request.rung);
    make_directory(rung_results);
    std::string metrics = metrics_dir ? metrics_dir->file() : rung_results + "/." + std::to_string(config) + ".metrics." + std::to_string(::getpid());
    // Keyed by configuration, not by task or job: the next rung finds what this one saved.
    make_directory(sweep.path + "/checkpoints");
    make_directory(checkpoint_dir(sweep.path, config));
    auto extra = task_environment(task);
    extra.insert(extra.end(), {{"AIHPC_METRICS_FILE", metrics},
                               {"AIHPC_SWEEP_DIR", sweep.path},
                               {"AIHPC_PHASE", phase.name},
                               {"AIHPC_BUDGET", budget_text(budget)},
                               {"AIHPC_CHECKPOINT_DIR", checkpoint_dir(sweep.path, config)}});
    TaskOutcome outcome = execute(step_command(launch, command), extra, metrics);
    std::string fields = ",\"bracket\":" + std::to_string(bracket.bracket) + ",\"rung\":" + std::to_string(*request.rung) +
                         ",\"budget\":" + budget_scalar(budget).json;
    auto text = result_json(sweep, phase, task, command, outcome, context, fields);
    write_file_atomic(rung_result_path(sweep.path, bracket.bracket, *request.rung, config), text);
    write_file_atomic(result_path(sweep, phase, config), text);
    if (schedule.type == ScheduleType::asha && !g_signal) {
        // The result is safe; a promotion that fails here is done by the next task to
        // finish, or by aihpc-sweep advance.
        try {
            AdvanceRequest step;
            step.bracket = bracket.bracket;
            advance_schedule(sweep, step, real_sbatch(), std::cerr);
        } catch (const Error& e) {
            std::cerr << "aihpc-sweep: warning: promotion after configuration " << config << " failed: " << e.what()
                      << "; run aihpc-sweep advance " << sweep.path << "\n";
        }
    }
    return outcome.exit_code;
}

}  // namespace

int run_tasks(const SweepDir& sweep, const RunRequest& request) {
    if (request.bracket || request.rung) return run_rung_task(sweep, request);
    if (sweep.spec.schedule)
        throw Error(sweep.path + " runs under a schedule: a task runs at a rung (run " + sweep.path + " --bracket S --rung K --index I)");
    const Phase& phase = find_phase(sweep.spec, request.phase);
    std::vector<std::uint64_t> indices;
    if (request.index) {
        indices.push_back(*request.index);
    } else {
        auto id = parse_uint(env("SLURM_ARRAY_TASK_ID"));
        if (!id) throw Error("run needs --index I outside a job array (SLURM_ARRAY_TASK_ID is not set)");
        std::uint64_t count = request.count ? *request.count : (sweep.tasks > request.offset ? sweep.tasks - request.offset : 0);
        indices = element_tasks(*id, request.offset, count, request.pack);
        if (indices.empty())
            throw Error("array task " + std::to_string(*id) + " is beyond its chunk (offset " + std::to_string(request.offset) + ", " +
                        std::to_string(count) + " tasks, pack " + std::to_string(request.pack) + ")");
    }
    TaskIndex index(sweep.path);
    TaskContext context = task_context_from_environment();
    std::string results = results_dir(sweep, phase);
    if (phase.name != sweep.spec.final_phase().name) make_directory(results);
    TaskLaunch launch = task_launch_from(environment_entries());
    SignalForwarding forwarding;
    g_signal = 0;
    int status = 0;
    for (auto i : indices) {
        TaskRecord task = index.task(i);
        auto command = task_command(sweep.spec, phase, task);
        std::optional<MetricsDir> metrics_dir;
        if (launch.as_step) metrics_dir.emplace();
        std::string metrics = metrics_dir ? metrics_dir->file()
                                          : results + "/." + std::to_string(i) + ".metrics." + std::to_string(::getpid());
        auto extra = task_environment(task);
        extra.insert(extra.end(), {{"AIHPC_METRICS_FILE", metrics}, {"AIHPC_SWEEP_DIR", sweep.path}, {"AIHPC_PHASE", phase.name}});
        // With --aihpc-checkpoint the plugin gave the job a checkpoint dir of its own; a
        // sweep task's lives in the sweep dir instead, keyed by the task, so that a rerun
        // of the task (a requeue, a resubmit) finds it whatever its job id.
        if (!env("AIHPC_CHECKPOINT_DIR").empty()) {
            make_directory(sweep.path + "/checkpoints");
            make_directory(checkpoint_dir(sweep.path, i));
            extra.emplace_back("AIHPC_CHECKPOINT_DIR", checkpoint_dir(sweep.path, i));
        }
        TaskOutcome outcome = execute(step_command(launch, command), extra, metrics);
        write_file_atomic(result_path(sweep, phase, i), result_json(sweep, phase, task, command, outcome, context));
        if (outcome.exit_code != 0 && status == 0) status = outcome.exit_code;
        if (g_signal) break;  // the job is being ended: start nothing more
    }
    return status;
}

std::string task_params_text(const std::string& dir, std::uint64_t index, const std::string& format, const std::string& phase) {
    TaskIndex tasks(dir);
    TaskRecord task = tasks.task(index);
    std::string out;
    if (format == "cmd") {
        SweepDir sweep = open_sweep(dir);
        const Phase& p = find_phase(sweep.spec, phase);
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
    return out;
}

}  // namespace aihpc::sweep
