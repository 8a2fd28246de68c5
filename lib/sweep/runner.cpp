#include "sweep/runner.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "common/error.hpp"
#include "common/json.hpp"
#include "common/paths.hpp"
#include "common/text.hpp"
#include "config/user_options.hpp"
#include "sweep/command.hpp"
#include "sweep/shorthand.hpp"
#include "sweep/submit_plan.hpp"

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
    std::vector<char*> argv;
    for (auto& w : command) argv.push_back(const_cast<char*>(w.c_str()));
    argv.push_back(nullptr);
    int status = 0;
    {
        BlockedSignals blocked;
        pid_t pid = ::fork();
        if (pid < 0) throw_errno("cannot fork to run " + command[0]);
        if (pid == 0) {
            ::signal(SIGTERM, SIG_DFL);
            ::signal(SIGINT, SIG_DFL);
            ::sigprocmask(SIG_SETMASK, &blocked.old(), nullptr);
            for (auto& [k, v] : extra_env) ::setenv(k.c_str(), v.c_str(), 1);
            ::execvp(argv[0], argv.data());
            int err = errno;
            std::string msg = "aihpc-sweep: cannot run " + command[0] + ": " + std::strerror(err) + "\n";
            (void)!::write(2, msg.data(), msg.size());
            ::_exit(err == ENOENT ? 127 : 126);
        }
        g_child = pid;
        blocked.restore();
        while (::waitpid(pid, &status, 0) < 0) {
            if (errno != EINTR) {
                g_child = 0;
                throw_errno("cannot wait for " + command[0]);
            }
        }
        g_child = 0;
    }
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
            out.metrics_json = metrics_to_json(read_file(metrics_file));
        } catch (const Error&) {
            out.metrics_json = "{}";
        }
        ::unlink(metrics_file.c_str());
    }
    return out;
}

}  // namespace

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

std::string metrics_to_json(const std::string& text) {
    auto body = trim(text);
    if (body.empty()) return "{}";
    if (body.front() == '{') {
        JsonRef obj = parse_json(std::string(body));
        if (obj && json_object_is_type(obj.get(), json_type_object))
            return json_object_to_json_string_ext(obj.get(), JSON_C_TO_STRING_PLAIN);
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
        out += json_quote(trim(l.substr(0, eq))) + ":" + shorthand_value(std::string(trim(l.substr(eq + 1))));
    }
    return out + "}";
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
                        const TaskOutcome& o, const TaskContext& c) {
    // exit_code right after index: readers that only need it stop there (result_exit_code).
    std::string out = "{\"index\":" + std::to_string(task.index) + ",\"exit_code\":" + std::to_string(o.exit_code) +
                      ",\"phase\":" + json_quote(phase.name) + ",\"params\":" + task.params_json +
                      ",\"task_seed\":" + std::to_string(task.task_seed);
    if (!o.signal.empty()) out += ",\"signal\":" + json_quote(o.signal);
    if (!o.forwarded.empty()) out += ",\"forwarded_signal\":" + json_quote(o.forwarded);
    if (!o.error.empty()) out += ",\"error\":" + json_quote(o.error);
    char elapsed[64];
    std::snprintf(elapsed, sizeof elapsed, "%.3f", o.elapsed_s);
    out += ",\"start\":" + json_quote(o.start) + ",\"end\":" + json_quote(o.end) + ",\"elapsed_s\":" + elapsed +
           ",\"node\":" + json_quote_or_null(c.node) + ",\"job_id\":" + id_json(c.job_id) + ",\"array_job_id\":" + id_json(c.array_job_id) +
           ",\"array_task_id\":" + id_json(c.array_task_id) + ",\"command\":" + json_string_array(command);
    out += ",\"metrics\":" + o.metrics_json;
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

int run_tasks(const SweepDir& sweep, const RunRequest& request) {
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
    SignalForwarding forwarding;
    g_signal = 0;
    int status = 0;
    for (auto i : indices) {
        TaskRecord task = index.task(i);
        auto command = task_command(sweep.spec, phase, task);
        std::string metrics = results + "/." + std::to_string(i) + ".metrics." + std::to_string(::getpid());
        auto extra = task_environment(task);
        extra.insert(extra.end(), {{"AIHPC_METRICS_FILE", metrics}, {"AIHPC_SWEEP_DIR", sweep.path}, {"AIHPC_PHASE", phase.name}});
        TaskOutcome outcome = execute(command, extra, metrics);
        write_file_atomic(result_path(sweep, phase, i), result_json(sweep, phase, task, command, outcome, context));
        if (outcome.exit_code != 0 && status == 0) status = outcome.exit_code;
        if (g_signal) break;  // the job is being ended: start nothing more
    }
    return status;
}

}  // namespace aihpc::sweep
