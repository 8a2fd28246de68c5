// aihpc-bind: the affinity planner from the command line. `plan` shows where each
// local task of a step would run; `exec` applies one task's binding to itself and runs
// a command (the way to bind ranks that mpirun starts inside a job: each rank plans
// the node from the CPUs and GPUs it inherited, and takes its own slice, so its
// OMP_NUM_THREADS follows its own CPUs); `show` prints the calling process's binding.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <optional>
#include <string>
#include <vector>

#include "affinity/apply.hpp"
#include "affinity/bind_plan.hpp"
#include "affinity/step_view.hpp"
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
    "                       [--mode MODE[,nomem][,nonic][,hbm][,threads=N]] [--json]\n"
    "       aihpc-bind exec [--topology FILE.xml] [--rank R --tasks N] [--gpus LIST]\n"
    "                       [--cpus LIST] [--mode MODE[,verbose][,...]] -- CMD [ARG...]\n"
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
    "  --rank R         local rank of this task (exec), 0 to N-1; without --rank and\n"
    "                   --tasks, exec reads the node-local rank and count that the MPI\n"
    "                   launcher exports (Open MPI, MPICH/Hydra, PMIx, Slurm), so that\n"
    "                   'mpirun ... aihpc-bind exec -- CMD' binds every rank\n"
    "  --gpus LIST      the step's GPUs by index, in PCI bus-id order (default: all)\n"
    "  --cpus LIST      allowed OS CPUs (default: all of the topology; on this machine,\n"
    "                   the CPUs this process may use)\n"
    "  --mode MODE      auto, gpu, numa, cores or none, with ,verbose ,nomem ,nonic,\n"
    "                   ,hbm (prefer memory-only high-bandwidth nodes) and ,threads=N\n"
    "                   (threads per task; hardware threads only past the cores)\n"
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

// The node-local rank and task count an MPI launcher (or srun) gives each process it
// starts, in the variables each one documents.
std::optional<std::pair<unsigned, unsigned>> launcher_rank() {
    const char* const pairs[][2] = {
        {"OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"},   // Open MPI mpirun/prterun
        {"MPI_LOCALRANKID", "MPI_LOCALNRANKS"},                         // MPICH, Intel MPI (Hydra)
        {"PMIX_LOCAL_RANK", "PMIX_LOCAL_SIZE"},                         // PMIx launchers
        {"MV2_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_SIZE"},     // MVAPICH2
    };
    for (const auto& pair : pairs) {
        const char* rank = std::getenv(pair[0]);
        const char* size = std::getenv(pair[1]);
        if (!rank || !size) continue;
        auto r = parse_uint(rank), n = parse_uint(size);
        if (r && n && *r < *n && *n <= 1000000) return std::make_pair(static_cast<unsigned>(*r), static_cast<unsigned>(*n));
    }
    // srun: SLURM_LOCALID of the node's SLURM_STEP_TASKS_PER_NODE ("2(x2)" or "3,1").
    const char* local = std::getenv("SLURM_LOCALID");
    const char* per_node = std::getenv("SLURM_STEP_TASKS_PER_NODE");
    const char* node = std::getenv("SLURM_NODEID");
    if (local && per_node && node) {
        auto r = parse_uint(local), index = parse_uint(node);
        if (!r || !index) return std::nullopt;
        std::uint64_t seen = 0;
        for (const std::string& item : split(per_node, ',')) {
            auto paren = item.find('(');
            auto count = parse_uint(item.substr(0, paren));
            std::uint64_t times = 1;
            if (paren != std::string::npos && item.size() > paren + 3) {
                auto t = parse_uint(item.substr(paren + 2, item.size() - paren - 3));
                if (t) times = *t;
            }
            if (!count) return std::nullopt;
            if (*index < seen + times) {
                if (*r < *count) return std::make_pair(static_cast<unsigned>(*r), static_cast<unsigned>(*count));
                return std::nullopt;
            }
            seen += times;
        }
    }
    return std::nullopt;
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
    if (args.cpus && trim(*args.cpus).empty())
        throw UsageError("--cpus: the list is empty; give CPUs such as 0-3,8, or leave --cpus out for all of them");
    if (args.command == "show") return args;
    if (args.command == "exec" && !args.rank && !args.tasks) {
        if (auto launcher = launcher_rank()) {
            args.rank = launcher->first;
            args.tasks = launcher->second;
        } else {
            throw UsageError("exec needs --rank R and --tasks N: no MPI launcher or Slurm step exported a local rank");
        }
    }
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
    } else if (!args.topology) {
        // Inside a job: the GPUs the step (or the batch script) was given.
        StepGpus step = step_gpus_from_env([](const std::string& name) -> std::optional<std::string> {
            const char* value = std::getenv(name.c_str());
            return value ? std::optional<std::string>(value) : std::nullopt;
        });
        req.gpus = step.indices;
        req.gpu_names = step.names;
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
