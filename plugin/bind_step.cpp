// Affinity and the distributed-training env in the plugin (mpibind's split): the node's
// plan is computed once per step in bind_user_init (slurmstepd, euid = the user, once
// per step per node), and each task applies its own slice in bind_task_init (in the
// forked task, as the user, once per task, just before exec). The planner lives in
// lib/affinity.
//
// The topology is loaded in init_post_opt, as root: from LOCAL_ROOT/topology.xml, or by
// discovery, which then writes that cache for later steps until the next boot.
//
// MASTER_PORT: outside the kernel's ephemeral range and slurm.conf's ports, bind-tested
// on the master node and connect-tested from the others in user_init (dist_env.hpp).
// The batch step is a world of one (WORLD_SIZE=1, RANK=0), never the job's task count.
//
// MASTER_ADDR: a hook may not ask slurmctld (no scontrol, no slurm_load_node), so the
// first name of SLURM_STEP_NODELIST (else SLURM_JOB_NODELIST) is looked up in
// SLURM_NODE_ALIASES, then in slurm.conf's NodeName/NodeAddr lines (SLURM_CONF of
// slurmstepd, else of the job, else /etc/slurm/slurm.conf, else the configless copy in
// /run/slurm/conf), then with getaddrinfo; failing all, the name itself.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <map>
#include <optional>
#include <set>

#include "affinity/apply.hpp"
#include "affinity/bind_plan.hpp"
#include "affinity/dist_env.hpp"
#include "affinity/step_view.hpp"
#include "affinity/topology.hpp"
#include "common/error.hpp"
#include "common/text.hpp"
#include "plugin/capabilities.hpp"
#include "stage/node_layout.hpp"

namespace aihpc::plugin {

namespace {

struct BindStep {
    config::BindRequest bind;
    config::DistKind dist = config::DistKind::none;
    std::optional<affinity::NodeTopology> topology;
    affinity::PlanRequest request;
    std::optional<affinity::BindPlan> plan;
    std::string master_addr;
    unsigned master_port = 0;
};

BindStep& bind_step() {
    static BindStep instance;
    return instance;
}

void plan_step(const Spank& spank, BindStep& bs) {
    auto env = [&spank](const std::string& name) { return spank.getenv(name); };
    affinity::StepGpus gpus = affinity::step_gpus_from_env(env);
    bs.request.gpus = gpus.indices;
    bs.request.gpu_names = gpus.names;
    bs.plan = affinity::plan_binding(*bs.topology, bs.request);
}

std::vector<std::string> slurm_conf_paths(const Spank& spank) {
    std::vector<std::string> confs;
    if (const char* own = std::getenv("SLURM_CONF")) confs.push_back(own);
    if (auto job = spank.getenv("SLURM_CONF")) confs.push_back(*job);
    confs.push_back("/etc/slurm/slurm.conf");
    confs.push_back("/run/slurm/conf/slurm.conf");
    return confs;
}

std::string master_addr(const Spank& spank) {
    std::string nodelist = spank.getenv("SLURM_STEP_NODELIST").value_or(spank.getenv("SLURM_JOB_NODELIST").value_or(""));
    if (nodelist.empty()) return "";
    return affinity::resolve_master_addr(nodelist, spank.getenv("SLURM_NODE_ALIASES").value_or(""), slurm_conf_paths(spank));
}

// The ports the first readable slurm.conf reserves (Slurm's own daemons and srun).
std::set<unsigned> reserved_ports(const Spank& spank) {
    for (const std::string& path : slurm_conf_paths(spank)) {
        std::ifstream file(path);
        if (!file) continue;
        std::stringstream text;
        text << file.rdbuf();
        return affinity::slurm_conf_ports(text.str());
    }
    return {};
}

// MASTER_PORT for this step, the same on every node (dist_env.hpp says how). The batch
// step runs alone on its node and needs only a free port there.
unsigned master_port(const Spank& spank, const PluginState& st, const std::string& addr) {
    auto candidates = affinity::master_port_candidates(st.step.job_id, st.step.step_id, affinity::ephemeral_ports(),
                                                       reserved_ports(spank));
    bool on_master = st.step.is_batch_step || st.step.node_index == 0;
    return affinity::choose_master_port(candidates, on_master, addr);
}

}  // namespace

void bind_step_init(const Spank& /*spank*/, PluginState& st) {
    BindStep& bs = bind_step();
    bs.bind = st.options.bind.value_or(config::BindRequest{st.site.bind_default, false, false, false});
    bs.dist = st.options.dist.value_or(st.site.dist_default);
    if (bs.bind.mode == config::BindMode::none) return;
    // The cache only goes into a root-private local_root, as the site keys require.
    std::string cache = geteuid() == 0 ? stage::topology_cache_path(st.site.local_root_for(st.step.node_name)) : "";
    bs.topology = affinity::load_node_topology(cache, !cache.empty());
    st.note("bind: topology loaded");
}

void bind_user_init(const Spank& spank, PluginState& st) {
    BindStep& bs = bind_step();
    if (bs.dist == config::DistKind::torch) {
        bs.master_addr = master_addr(spank);
        bs.master_port = master_port(spank, st, bs.master_addr);
        st.note("dist: MASTER_PORT " + std::to_string(bs.master_port));
    }
    if (bs.bind.mode == config::BindMode::none || !bs.topology) return;
    bs.request.tasks = st.step.local_task_count;
    bs.request.bind = bs.bind;
    // mpibind's threads: --aihpc-bind=...,threads=N, else the step's CPUs per task.
    if (bs.request.bind.threads == 0)
        if (auto cpt = spank.getenv("SLURM_CPUS_PER_TASK"))
            if (auto n = parse_uint(trim(*cpt)); n && *n > 0 && *n <= 65536) bs.request.bind.threads = static_cast<unsigned>(*n);
    bs.request.allowed = affinity::step_allowed_pus(*bs.topology, st.step.step_cores, affinity::current_affinity());
    plan_step(spank, bs);
    st.note("bind: planned " + std::to_string(bs.request.tasks) + " tasks, mode " + config::to_string(bs.plan->mode));
}

namespace {

// Names of the per-task variables aihpc exported, carried in the task's environment so a
// later step (an srun inside a batch job) that neither binds nor asks for the training
// variables drops the batch step's stale values instead of inheriting them.
constexpr const char* exported_marker = "AIHPC_TASK_ENV";

void drop_stale_task_env(const Spank& spank, const std::set<std::string>& set_now) {
    if (auto previous = spank.getenv(exported_marker))
        for (const std::string& name : affinity::stale_task_env(*previous, set_now)) spank.unsetenv(name);
}

void export_task_env(const Spank& spank, const std::map<std::string, std::string>& env, std::set<std::string>& set_now) {
    for (const auto& [name, value] : env) {
        if (!spank.setenv(name, value)) throw Error("cannot set " + name + " in the task's environment");
        set_now.insert(name);
    }
}

}  // namespace

void bind_task_init(const Spank& spank, PluginState& st) {
    BindStep& bs = bind_step();
    std::set<std::string> set_now;
    const unsigned local_rank = static_cast<unsigned>(spank.task_id().value_or(0));
    const unsigned global_rank = spank.u32(S_TASK_GLOBAL_ID).value_or(local_rank);

    if (bs.plan) {
        // Slurm sets the step's GPU variables per task, after user_init: where they now
        // name other GPUs than the plan assumed, plan again from the same topology.
        affinity::StepGpus gpus = affinity::step_gpus_from_env([&spank](const std::string& name) { return spank.getenv(name); });
        if (gpus.indices != bs.request.gpus || gpus.names != bs.request.gpu_names) plan_step(spank, bs);
        const affinity::BindPlan& plan = *bs.plan;
        if (local_rank >= plan.tasks.size())
            throw Error("task " + std::to_string(local_rank) + " is beyond the " + std::to_string(plan.tasks.size()) +
                        " tasks planned on " + st.step.node_name);
        const affinity::TaskBinding& task = plan.tasks[local_rank];
        bool verbose = bs.bind.verbose || st.options.verbose;
        if (verbose && local_rank == 0)
            for (const std::string& warning : plan.warnings) std::fprintf(stderr, "aihpc: warning: %s\n", warning.c_str());
        affinity::apply_binding(plan, task);
        export_task_env(spank, task.env, set_now);
        if (verbose) std::fprintf(stderr, "aihpc: %s\n", affinity::describe_task(task, global_rank).c_str());
    }

    if (bs.dist == config::DistKind::torch) {
        affinity::DistShape shape;
        shape.master_addr = bs.master_addr.empty() ? master_addr(spank) : bs.master_addr;
        shape.master_port = bs.master_port;
        shape.job_id = st.step.job_id;
        shape.step_id = st.step.step_id;
        shape.world_size = st.step.total_task_count;
        shape.rank = global_rank;
        shape.local_rank = local_rank;
        shape.local_world_size = st.step.local_task_count;
        shape.node_rank = st.step.node_index;
        shape.node_count = st.step.node_count;
        // The batch step is one process whatever the job's size: a world of one.
        if (st.step.is_batch_step) shape = affinity::batch_step_shape(shape);
        export_task_env(spank, affinity::torch_env(shape), set_now);
    }
    drop_stale_task_env(spank, set_now);
    if (set_now.empty()) spank.unsetenv(exported_marker);
    else spank.setenv(exported_marker, join(std::vector<std::string>(set_now.begin(), set_now.end()), ","));
    std::fflush(stderr);
}

}  // namespace aihpc::plugin
