// aihpc-bind: the affinity planner from the command line. `plan` shows where each
// local task of a step would run; `exec` applies one task's binding to itself and runs
// a command; `show` prints the calling process's binding (for checks in jobs).
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "affinity/apply.hpp"
#include "affinity/bind_plan.hpp"
#include "affinity/topology.hpp"
#include "common/error.hpp"
#include "common/text.hpp"
#include "config.h"
#include "config/user_options.hpp"

using namespace aihpc;
using namespace aihpc::affinity;

namespace {

const char* const usage_text =
    "Usage: aihpc-bind plan [--topology FILE.xml] --tasks N [--gpus LIST] [--cpus LIST]\n"
    "                       [--mode MODE[,nomem][,nonic]] [--json]\n"
    "       aihpc-bind exec [--topology FILE.xml] --rank R --tasks N [--gpus LIST]\n"
    "                       [--cpus LIST] [--mode MODE[,verbose][,nomem][,nonic]] -- CMD [ARG...]\n"
    "       aihpc-bind show\n"
    "\n"
    "Plans the CPUs, NUMA nodes, GPUs and NICs of each local task of a step, GPU-aware.\n"
    "\n"
    "  plan      print each task's binding: one line per task, or one JSON object\n"
    "  exec      bind this process as task R of N, set its environment, run CMD\n"
    "  show      print this process's CPUs and memory policy\n"
    "\n"
    "  --topology FILE  hwloc XML of the node (default: this machine)\n"
    "  --tasks N        local task count\n"
    "  --rank R         local rank of this task (exec), 0 to N-1\n"
    "  --gpus LIST      the step's GPUs by index, in PCI bus-id order (default: all)\n"
    "  --cpus LIST      allowed OS CPUs (default: all of the topology; on this machine,\n"
    "                   the CPUs this process may use)\n"
    "  --mode MODE      auto, gpu, numa, cores or none, with ,verbose ,nomem ,nonic\n"
    "                   (default: auto)\n"
    "  --json           plan as one JSON object\n"
    "  --help, --version\n";

struct UsageError : Error {
    using Error::Error;
};

struct Arguments {
    std::string command;
    std::optional<std::string> topology;
    std::optional<unsigned> tasks;
    std::optional<unsigned> rank;
    std::optional<std::string> gpus;
    std::optional<std::string> cpus;
    std::string mode = "auto";
    bool json = false;
    std::vector<std::string> exec_argv;
};

unsigned parse_count(const std::string& option, const std::string& text) {
    auto value = parse_uint(text);
    if (!value || *value > 1000000) throw UsageError(option + ": '" + text + "' is not a count");
    return static_cast<unsigned>(*value);
}

Arguments parse_arguments(int argc, char** argv) {
    Arguments args;
    if (argc < 2) throw UsageError("a command is needed: plan, exec or show");
    args.command = argv[1];
    if (args.command != "plan" && args.command != "exec" && args.command != "show")
        throw UsageError("unknown command '" + args.command + "': use plan, exec or show");
    for (int i = 2; i < argc; ++i) {
        std::string word = argv[i];
        if (word == "--") {
            for (++i; i < argc; ++i) args.exec_argv.push_back(argv[i]);
            break;
        }
        if (word == "--json") {
            args.json = true;
            continue;
        }
        std::string name = word, value;
        auto eq = word.find('=');
        if (eq != std::string::npos) {
            name = word.substr(0, eq);
            value = word.substr(eq + 1);
        } else if (word.rfind("--", 0) == 0) {
            if (i + 1 >= argc) throw UsageError(word + " needs a value");
            value = argv[++i];
        }
        if (name == "--topology") args.topology = value;
        else if (name == "--tasks") {
            args.tasks = parse_count(name, value);
            if (*args.tasks == 0) throw UsageError("--tasks: a plan needs at least one task");
        }
        else if (name == "--rank") args.rank = parse_count(name, value);
        else if (name == "--gpus") args.gpus = value;
        else if (name == "--cpus") args.cpus = value;
        else if (name == "--mode") args.mode = value;
        else throw UsageError("unknown option '" + word + "'");
    }
    if (args.command == "show") return args;
    if (!args.tasks) throw UsageError(args.command + " needs --tasks N");
    if (args.command == "exec") {
        if (!args.rank) throw UsageError("exec needs --rank R");
        if (*args.rank >= *args.tasks)
            throw UsageError("--rank " + std::to_string(*args.rank) + " is not below --tasks " + std::to_string(*args.tasks));
        if (args.exec_argv.empty()) throw UsageError("exec needs a command after --");
    } else if (!args.exec_argv.empty()) {
        throw UsageError("plan takes no command");
    }
    return args;
}

std::set<unsigned> parse_list(const std::string& option, const std::string& text) {
    auto ids = parse_id_list(text);
    if (!ids) throw UsageError(option + ": '" + text + "' is not a list such as 0-3,8");
    return *ids;
}

BindPlan make_plan(const Arguments& args, NodeTopology& topo) {
    // hwloc dlopens every plugin it finds at its first use: GL pulls in X11, OpenCL its
    // loader, libxml2 ICU, together milliseconds per process. None is needed (GPUs are
    // also found by PCI class; hwloc's own parser reads its XML), and reading XML needs
    // not even PCI. Set here, in a single-threaded process before hwloc starts; the
    // plugin in slurmstepd leaves the environment alone. A site's own setting wins.
    setenv("HWLOC_PLUGINS_BLACKLIST",
           args.topology ? "hwloc_gl,hwloc_opencl,hwloc_xml_libxml,hwloc_pci" : "hwloc_gl,hwloc_opencl,hwloc_xml_libxml", 0);
    topo = args.topology ? load_topology_xml(*args.topology) : discover_this_machine();
    PlanRequest req;
    req.tasks = *args.tasks;
    try {
        req.bind = config::parse_bind(args.mode);
    } catch (const Error& e) {
        throw UsageError(std::string("--mode: ") + e.what());
    }
    if (args.cpus) req.allowed = parse_list("--cpus", *args.cpus);
    else if (!args.topology) req.allowed = current_affinity();
    if (args.gpus) {
        auto ids = parse_list("--gpus", *args.gpus);
        req.gpus = std::vector<unsigned>(ids.begin(), ids.end());
    }
    return plan_binding(topo, req);
}

int run(const Arguments& args) {
    if (args.command == "show") {
        std::printf("cpus %s mempolicy %s\n", format_id_list(current_affinity()).c_str(), describe_memory_policy().c_str());
        return 0;
    }
    NodeTopology topo;
    BindPlan plan = make_plan(args, topo);
    for (const std::string& warning : plan.warnings) std::fprintf(stderr, "aihpc-bind: warning: %s\n", warning.c_str());
    if (args.command == "plan") {
        if (args.json) {
            std::printf("%s\n", plan_to_json(plan).c_str());
        } else {
            for (const TaskBinding& task : plan.tasks) std::printf("aihpc: %s\n", describe_task(task, task.rank).c_str());
        }
        return 0;
    }

    const TaskBinding& task = plan.tasks.at(*args.rank);
    apply_binding(plan, task);
    export_env(task.env);
    config::BindRequest bind = config::parse_bind(args.mode);
    if (bind.verbose) std::fprintf(stderr, "aihpc: %s\n", describe_task(task, task.rank).c_str());
    std::fflush(nullptr);
    std::vector<char*> argv;
    for (const std::string& word : args.exec_argv) argv.push_back(const_cast<char*>(word.c_str()));
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    int err = errno;
    std::fprintf(stderr, "aihpc-bind: cannot run %s: %s\n", args.exec_argv[0].c_str(), std::strerror(err));
    return err == ENOENT ? 127 : 126;
}

}  // namespace

int main(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
        std::string word = argv[i];
        if (word == "--") break;
        if (word == "--help" || word == "-h") {
            std::fputs(usage_text, stdout);
            return 0;
        }
        if (word == "--version") {
            std::printf("aihpc-bind %s\n", PACKAGE_VERSION);
            return 0;
        }
    }
    try {
        return run(parse_arguments(argc, argv));
    } catch (const UsageError& e) {
        std::fprintf(stderr, "aihpc-bind: %s\nTry 'aihpc-bind --help'.\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "aihpc-bind: %s\n", e.what());
        return 1;
    }
}
