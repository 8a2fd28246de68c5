// lib/affinity: the distributed-training environment (host lists, NodeAddr lookup,
// ports) and the acting part (CPU affinity, memory policy, the topology cache), the
// latter on this process and this machine for real.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <string>

#include "affinity/apply.hpp"
#include "affinity/dist_env.hpp"
#include "affinity/step_view.hpp"
#include "affinity/topology.hpp"
#include "cmocka_cxx.hpp"
#include "common/text.hpp"
#include "temp_dir.hpp"

using namespace aihpc::affinity;

// ---- host lists

static void hostlist_expands_ranges_and_keeps_padding(void**) {
    auto hosts = expand_hostlist("n[1-2],gpu[007-009,011],login");
    assert_string_equal(aihpc::join(hosts, " ").c_str(), "n1 n2 gpu007 gpu008 gpu009 gpu011 login");
    assert_string_equal(aihpc::join(expand_hostlist("r[1-2]n[1-2]"), " ").c_str(), "r1n1 r1n2 r2n1 r2n2");
}

static void hostlist_rejects_malformed_lists(void**) {
    expect_error_containing([] { expand_hostlist("n[1-"); }, "malformed host list");
    expect_error_containing([] { expand_hostlist("n[3-1]"); }, "malformed host list range");
    expect_error_containing([] { expand_hostlist("n1]"); }, "unbalanced");
}

static void hostlist_bounds_names_and_their_length(void**) {
    // Many single-value brackets: each name is built once, and a list of them expands.
    std::string nested = "n[1-3]";
    for (int i = 0; i < 40; ++i) nested += "[0]";
    auto hosts = expand_hostlist(nested);
    assert_int_equal(hosts.size(), 3);
    assert_string_equal(hosts[2].c_str(), ("n3" + std::string(40, '0')).c_str());
    // Padding or brackets that make a name longer than DNS allows are refused at once.
    expect_error_containing([] { expand_hostlist("n[" + std::string(300, '0') + "-5]"); }, "longer than 255");
    expect_error_containing([] {
        std::string deep = "n[0-999999]";
        for (int i = 0; i < 300; ++i) deep += "[1]";
        expand_hostlist(deep);
    }, "longer than 255");
    expect_error_containing([] { expand_hostlist(std::string(256, 'x')); }, "longer than 255");
    // The whole list is bounded, however the ranges multiply.
    expect_error_containing([] { expand_hostlist("r[0-999]n[0-999]"); }, "names more than 262144");
    // Several ranges in one bracket, the last bracket varying fastest.
    assert_string_equal(aihpc::join(expand_hostlist("a[1,3-4]b[08-9]"), " ").c_str(),
                        "a1b08 a1b09 a3b08 a3b09 a4b08 a4b09");
}

static void first_host_is_the_first_name_of_the_list(void**) {
    assert_string_equal(first_host("n[1-2]").c_str(), "n1");
    assert_string_equal(first_host("gpu[007-009,1],n3").c_str(), "gpu007");
    assert_string_equal(first_host("login").c_str(), "login");
    assert_string_equal(first_host(" c[10,2-3]x ").c_str(), "c10x");
}

// ---- NodeAddr

static void node_aliases_give_the_address(void**) {
    assert_string_equal(node_addr_from_aliases("n1:10.0.0.5:host1,n2:10.0.0.6:host2", "n2")->c_str(), "10.0.0.6");
    assert_string_equal(node_addr_from_aliases("n1:[fe80::1]:host1", "n1")->c_str(), "fe80::1");
    assert_false(node_addr_from_aliases("n1:10.0.0.5:host1", "n3").has_value());
}

static void slurm_conf_node_lines_give_the_address(void**) {
    const char* conf =
        "# comment NodeName=bogus NodeAddr=1.1.1.1\n"
        "NodeName=DEFAULT CPUs=4\n"
        "NodeName=n[1-2] NodeHostname=localhost NodeAddr=127.0.0.1 Port=17001-17002\n"
        "nodename=g[1-3] nodeaddr=10.1.0.[1-3] CPUs=8\n"
        "NodeName=plain CPUs=2\n";
    assert_string_equal(node_addr_from_slurm_conf(conf, "n2")->c_str(), "127.0.0.1");
    assert_string_equal(node_addr_from_slurm_conf(conf, "g3")->c_str(), "10.1.0.3");
    assert_false(node_addr_from_slurm_conf(conf, "plain").has_value());
    assert_false(node_addr_from_slurm_conf(conf, "bogus").has_value());
}

static void master_addr_prefers_aliases_then_slurm_conf_then_resolver(void**) {
    TempDir dir;
    std::string conf = dir.write("slurm.conf", "NodeName=n[1-2] NodeAddr=127.0.0.1\n");
    assert_string_equal(resolve_master_addr("n[1-2]", "", {conf}).c_str(), "127.0.0.1");
    assert_string_equal(resolve_master_addr("n[1-2]", "n1:10.9.9.9:h", {conf}).c_str(), "10.9.9.9");
    assert_string_equal(resolve_master_addr("localhost", "", {conf}).c_str(), "127.0.0.1");
    assert_string_equal(resolve_master_addr("no-such-host.invalid", "", {dir.path() + "/absent"}).c_str(),
                        "no-such-host.invalid");
}

// ---- ports and variables

static void master_port_is_in_range_and_differs_between_steps_and_jobs(void**) {
    std::set<unsigned> ports;
    for (std::uint32_t job = 1000; job < 1100; ++job)
        for (std::uint32_t step = 0; step < 3; ++step) {
            unsigned port = master_port(job, step);
            assert_true(port >= 20000 && port < 32768);   // below Linux's default ephemeral range
            ports.insert(port);
        }
    assert_true(ports.size() > 290);   // 300 steps: collisions are rare, not systematic
    assert_int_equal(master_port(42, 0), master_port(42, 0));
    assert_int_not_equal(master_port(42, 0), master_port(42, 1));
}

static void master_port_stays_outside_the_ephemeral_range(void**) {
    for (PortRange ephemeral : {PortRange{32768, 60999}, PortRange{10000, 65535}, PortRange{1024, 65000},
                                PortRange{15000, 50000}, PortRange{49152, 65535}}) {
        for (std::uint32_t job = 1; job < 200; ++job) {
            auto candidates = master_port_candidates(job, 0, ephemeral, {}, 8);
            assert_int_equal(candidates.size(), 8);
            for (unsigned port : candidates) {
                if (port >= ephemeral.low && port <= ephemeral.high)
                    fail_msg("port %u inside the ephemeral range %u-%u", port, ephemeral.low, ephemeral.high);
                assert_true(port >= 1024 && port <= 65535);
            }
        }
    }
    TempDir dir;
    std::string path = dir.path() + "/ip_local_port_range";
    std::ofstream(path) << "40000\t50000\n";
    PortRange read = ephemeral_ports(path);
    assert_int_equal(read.low, 40000);
    assert_int_equal(read.high, 50000);
    PortRange absent = ephemeral_ports(dir.path() + "/absent");
    assert_int_equal(absent.low, 32768);
}

static void slurm_ports_are_reserved_and_skipped(void**) {
    std::set<unsigned> ports = slurm_conf_ports(
        "SlurmctldPort=21817\nSlurmdPort=6818\nSrunPortRange=60001-60003\n"
        "NodeName=n[1-2] NodeHostname=localhost NodeAddr=127.0.0.1 Port=21001-21002 # comment Port=1\n");
    for (unsigned p : {21817u, 6818u, 60001u, 60002u, 60003u, 21001u, 21002u}) assert_int_equal(ports.count(p), 1);
    assert_int_equal(ports.count(1), 0);
    // A job whose first candidate is a slurmd port moves to the next one.
    const PortRange ephemeral{32768, 60999};
    auto free_list = master_port_candidates(77, 0, ephemeral, {}, 2);
    auto moved = master_port_candidates(77, 0, ephemeral, {free_list[0]}, 1);
    assert_int_equal(moved[0], free_list[1]);
}

static void a_taken_master_port_moves_to_the_next_candidate_on_every_node(void**) {
    auto candidates = master_port_candidates(4242, 1, ephemeral_ports(), {}, 16);
    // Find a candidate this test can hold open, listening on the loopback and any address.
    int fd = -1;
    std::size_t held = 0;
    for (; held + 1 < candidates.size(); ++held) {
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(static_cast<std::uint16_t>(candidates[held]));
        a.sin_addr.s_addr = htonl(INADDR_ANY);
        if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && listen(fd, 1) == 0) break;
        close(fd);
        fd = -1;
    }
    assert_true(fd >= 0);
    std::vector<unsigned> from_held(candidates.begin() + static_cast<std::ptrdiff_t>(held), candidates.end());
    assert_false(port_free_here(from_held[0]));
    assert_true(port_listening_at("127.0.0.1", from_held[0], 200));
    unsigned on_master = choose_master_port(from_held, true, "127.0.0.1");
    unsigned elsewhere = choose_master_port(from_held, false, "127.0.0.1");
    assert_int_not_equal(on_master, from_held[0]);
    assert_int_equal(on_master, elsewhere);   // the master's bind test and the others' connect test agree
    close(fd);
    assert_int_equal(choose_master_port(from_held, true, "127.0.0.1"), from_held[0]);
}

static DistShape sample_shape() {
    DistShape shape;
    shape.master_addr = "10.0.0.1";
    shape.job_id = 7;
    shape.step_id = 0;
    shape.world_size = 4;
    shape.rank = 3;
    shape.local_rank = 1;
    shape.local_world_size = 2;
    shape.node_rank = 1;
    shape.node_count = 2;
    return shape;
}

static void torch_env_has_every_variable(void**) {
    auto env = torch_env(sample_shape());
    assert_string_equal(env.at("MASTER_ADDR").c_str(), "10.0.0.1");
    assert_string_equal(env.at("MASTER_PORT").c_str(), std::to_string(master_port(7, 0)).c_str());
    assert_string_equal(env.at("WORLD_SIZE").c_str(), "4");
    assert_string_equal(env.at("RANK").c_str(), "3");
    assert_string_equal(env.at("LOCAL_RANK").c_str(), "1");
    assert_string_equal(env.at("LOCAL_WORLD_SIZE").c_str(), "2");
    assert_string_equal(env.at("NODE_RANK").c_str(), "1");
    DistShape chosen = sample_shape();
    chosen.master_port = 23456;
    assert_string_equal(torch_env(chosen).at("MASTER_PORT").c_str(), "23456");
}

static void torchrun_worker_variables_are_exported(void**) {
    auto env = torch_env(sample_shape());
    assert_string_equal(env.at("GROUP_RANK").c_str(), "1");
    assert_string_equal(env.at("GROUP_WORLD_SIZE").c_str(), "2");
    assert_string_equal(env.at("ROLE_RANK").c_str(), "3");
    assert_string_equal(env.at("ROLE_WORLD_SIZE").c_str(), "4");
    assert_string_equal(env.at("ROLE_NAME").c_str(), "default");
    assert_string_equal(env.at("TORCHELASTIC_RUN_ID").c_str(), "7.0");
    assert_string_equal(env.at("TORCHELASTIC_RESTART_COUNT").c_str(), "0");
    assert_string_equal(env.at("TORCHELASTIC_MAX_RESTARTS").c_str(), "0");
    assert_string_equal(env.at("TORCHELASTIC_USE_AGENT_STORE").c_str(), "False");
}

static void the_batch_step_is_a_world_of_one(void**) {
    DistShape job = sample_shape();
    job.world_size = 8;   // the job's task count, which the batch step must not claim
    auto env = torch_env(batch_step_shape(job));
    assert_string_equal(env.at("WORLD_SIZE").c_str(), "1");
    assert_string_equal(env.at("RANK").c_str(), "0");
    assert_string_equal(env.at("LOCAL_WORLD_SIZE").c_str(), "1");
    assert_string_equal(env.at("ROLE_WORLD_SIZE").c_str(), "1");
    assert_string_equal(env.at("GROUP_WORLD_SIZE").c_str(), "1");
}

// ---- the step's view: cores and GPUs

static StepGpus gpus_with(std::map<std::string, std::string> env) {
    return step_gpus_from_env([env](const std::string& name) -> std::optional<std::string> {
        auto it = env.find(name);
        if (it == env.end()) return std::nullopt;
        return it->second;
    });
}

static void step_gpus_come_from_slurm_with_visible_names(void**) {
    StepGpus gpus = gpus_with({{"SLURM_STEP_GPUS", "2,3"}, {"CUDA_VISIBLE_DEVICES", "0,1"}});
    assert_string_equal(aihpc::join({std::to_string((*gpus.indices)[0]), std::to_string((*gpus.indices)[1])}, ",").c_str(), "2,3");
    assert_string_equal(aihpc::join(gpus.names, ",").c_str(), "0,1");
    StepGpus mismatch = gpus_with({{"SLURM_JOB_GPUS", "1-3"}, {"CUDA_VISIBLE_DEVICES", "0"}});
    assert_int_equal(mismatch.indices->size(), 3);
    assert_true(mismatch.names.empty());
}

static void step_gpus_from_visible_devices_alone(void**) {
    StepGpus numeric = gpus_with({{"CUDA_VISIBLE_DEVICES", "1,0"}});
    assert_int_equal(numeric.indices->size(), 2);
    assert_int_equal((*numeric.indices)[0], 1);
    assert_true(gpus_with({{"CUDA_VISIBLE_DEVICES", "NoDevFiles"}}).indices->empty());
    assert_true(gpus_with({{"CUDA_VISIBLE_DEVICES", ""}}).indices->empty());
    assert_true(gpus_with({{"CUDA_VISIBLE_DEVICES", "GPU-3a1b"}}).indices->empty());
    assert_true(gpus_with({{"ROCR_VISIBLE_DEVICES", "4"}}).indices->size() == 1);
    assert_false(gpus_with({}).indices.has_value());
}

static void allocated_cores_map_to_their_pus(void**) {
    NodeTopology topo;
    topo.cores = {Core{{0, 8}, 0, 0}, Core{{1, 9}, 0, 0}, Core{{2, 10}, 0, 0}};
    assert_string_equal(aihpc::format_id_list(pus_of_cores(topo, {0, 2})).c_str(), "0,2,8,10");
    assert_string_equal(aihpc::format_id_list(pus_of_cores(topo, {1, 7})).c_str(), "1,9");   // 7: no such core
}

static void step_binds_within_its_cores_that_slurmstepd_may_use(void**) {
    NodeTopology topo;
    topo.cores = {Core{{0, 8}, 0, 0}, Core{{1, 9}, 0, 0}, Core{{2, 10}, 0, 0}};
    const CpuSet current = {0, 1, 2, 8, 9};
    struct Case {
        const char* step_cores;
        const char* allowed;
    } cases[] = {
        {"0,2", "0,2,8"},     // 10 is outside slurmstepd's cgroup
        {"1", "1,9"},
        {"", "0-2,8-9"},      // no allocation given: everything slurmstepd may use
        {"x", "0-2,8-9"},     // not a list
        {"7", "0-2,8-9"},     // no such core: nothing in common
    };
    for (const Case& c : cases)
        assert_string_equal(aihpc::format_id_list(step_allowed_pus(topo, c.step_cores, current)).c_str(), c.allowed);
}

static void stale_task_env_is_what_was_exported_before_and_not_set_now(void**) {
    struct Case {
        const char* before;
        std::set<std::string> set_now;
        const char* stale;
    } cases[] = {
        {"OMP_NUM_THREADS,RANK,WORLD_SIZE", {"RANK"}, "OMP_NUM_THREADS WORLD_SIZE"},
        {"OMP_NUM_THREADS", {"OMP_NUM_THREADS"}, ""},
        {"", {}, ""},
        {"A,,B", {}, "A B"},
        // Slurm sets GPU visibility for each step itself.
        {"CUDA_VISIBLE_DEVICES,ROCR_VISIBLE_DEVICES,CUDA_DEVICE_ORDER,GOMP_CPU_AFFINITY", {}, "GOMP_CPU_AFFINITY"},
    };
    for (const Case& c : cases)
        assert_string_equal(aihpc::join(stale_task_env(c.before, c.set_now), " ").c_str(), c.stale);
}

// ---- acting on this process

static void cpu_binding_is_what_affinity_reads_back(void**) {
    CpuSet before = current_affinity();
    assert_false(before.empty());
    CpuSet one = {*before.rbegin()};
    bind_cpus(one);
    assert_true(current_affinity() == one);
    bind_cpus(before);
    assert_true(current_affinity() == before);
    expect_error_containing([] { bind_cpus({}); }, "empty CPU set");
}

static void memory_preference_is_visible_in_the_policy(void**) {
    MemoryPolicy policy = prefer_memory({0});
    std::string seen = describe_memory_policy();
    if (policy == MemoryPolicy::none) {
        skip();
        return;
    }
    assert_string_equal(seen.c_str(), (std::string(to_string(policy)) + " 0").c_str());
}

static void export_env_overwrites_inherited_values(void**) {
    setenv("OMP_NUM_THREADS", "99", 1);
    export_env({{"OMP_NUM_THREADS", "2"}, {"OMP_PROC_BIND", "close"}});
    assert_string_equal(getenv("OMP_NUM_THREADS"), "2");
    assert_string_equal(getenv("OMP_PROC_BIND"), "close");
}

// ---- the node's topology cache

static void topology_cache_is_written_0644_and_read_back(void**) {
    TempDir dir;
    std::string cache = dir.path() + "/topology.xml";
    mode_t old = umask(077);
    NodeTopology fresh = load_node_topology(cache, true);
    umask(old);
    struct stat st{};
    assert_int_equal(stat(cache.c_str(), &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);
    NodeTopology cached = load_node_topology(cache, true);
    assert_true(cached.all_cpus() == fresh.all_cpus());
    assert_int_equal(cached.gpus.size(), fresh.gpus.size());
    assert_true(aihpc::parse_id_list(aihpc::format_id_list(current_affinity())).has_value());
}

static void damaged_cache_is_replaced(void**) {
    TempDir dir;
    std::string cache = dir.path() + "/topology.xml";
    dir.write("topology.xml", "not xml");
    NodeTopology topo = load_node_topology(cache, true);
    assert_false(topo.cores.empty());
    std::ifstream back(cache);
    std::string head;
    std::getline(back, head);
    assert_true(head.find("<?xml") != std::string::npos);
}

int main(void) {
    // Discovery here needs no PCI: hwloc's PCI plugin (libpciaccess) leaks a few
    // allocations that LeakSanitizer reports in the sanitizer build.
    setenv("HWLOC_PLUGINS_BLACKLIST", "hwloc_gl,hwloc_opencl,hwloc_xml_libxml,hwloc_pci", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hostlist_expands_ranges_and_keeps_padding),
        cmocka_unit_test(hostlist_rejects_malformed_lists),
        cmocka_unit_test(hostlist_bounds_names_and_their_length),
        cmocka_unit_test(first_host_is_the_first_name_of_the_list),
        cmocka_unit_test(node_aliases_give_the_address),
        cmocka_unit_test(slurm_conf_node_lines_give_the_address),
        cmocka_unit_test(master_addr_prefers_aliases_then_slurm_conf_then_resolver),
        cmocka_unit_test(master_port_is_in_range_and_differs_between_steps_and_jobs),
        cmocka_unit_test(master_port_stays_outside_the_ephemeral_range),
        cmocka_unit_test(slurm_ports_are_reserved_and_skipped),
        cmocka_unit_test(a_taken_master_port_moves_to_the_next_candidate_on_every_node),
        cmocka_unit_test(torchrun_worker_variables_are_exported),
        cmocka_unit_test(the_batch_step_is_a_world_of_one),
        cmocka_unit_test(torch_env_has_every_variable),
        cmocka_unit_test(step_gpus_come_from_slurm_with_visible_names),
        cmocka_unit_test(step_gpus_from_visible_devices_alone),
        cmocka_unit_test(allocated_cores_map_to_their_pus),
        cmocka_unit_test(step_binds_within_its_cores_that_slurmstepd_may_use),
        cmocka_unit_test(stale_task_env_is_what_was_exported_before_and_not_set_now),
        cmocka_unit_test(cpu_binding_is_what_affinity_reads_back),
        cmocka_unit_test(memory_preference_is_visible_in_the_policy),
        cmocka_unit_test(export_env_overwrites_inherited_values),
        cmocka_unit_test(topology_cache_is_written_0644_and_read_back),
        cmocka_unit_test(damaged_cache_is_replaced),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
