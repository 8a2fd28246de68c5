// The distributed-training environment (--aihpc-dist=torch): MASTER_ADDR, MASTER_PORT,
// WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE, NODE_RANK.
//
// MASTER_ADDR is the NodeAddr of the step's first node, found without asking slurmctld
// (a hook must not): the first name of SLURM_STEP_NODELIST (or SLURM_JOB_NODELIST),
// then its address from SLURM_NODE_ALIASES, else from the NodeName/NodeAddr lines of
// slurm.conf, else from the resolver (getaddrinfo), else the name itself.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace aihpc::affinity {

// "n[1-2],gpu7" -> {"n1","n2","gpu7"}; "node[001-003]" keeps the zero padding.
// Throws aihpc::Error on a malformed list.
std::vector<std::string> expand_hostlist(std::string_view hostlist);

// The first host of a hostlist, without expanding the rest.
std::string first_host(std::string_view hostlist);

// SLURM_NODE_ALIASES ("name:addr:hostname,..."; addresses may be "[v6]").
std::optional<std::string> node_addr_from_aliases(std::string_view aliases, const std::string& node);

// The NodeAddr that slurm.conf's text gives `node` (NodeName=LIST ... NodeAddr=LIST,
// one address for all names or one per name). nullopt where no line names it or the
// line has no NodeAddr.
std::optional<std::string> node_addr_from_slurm_conf(std::string_view conf_text, const std::string& node);

// MASTER_PORT. The kernel hands out ports of ip_local_port_range to every outgoing
// connection, so a port inside it can be taken by any client at any time: candidates lie
// outside it, and outside the ports slurm.conf names (slurmctld, slurmd, node ports,
// SrunPortRange). The first candidate is a hash of job and step ids, so that steps
// sharing a node differ; the next ones follow it in order, wrapping within the window.
struct PortRange {
    unsigned low = 32768;
    unsigned high = 60999;
};

// ip_local_port_range ("32768\t60999"); the Linux default where it cannot be read.
PortRange ephemeral_ports(const std::string& path = "/proc/sys/net/ipv4/ip_local_port_range");

// Ports slurm.conf's text reserves: SlurmctldPort and SlurmdPort (ranges too),
// SrunPortRange, and every Port= of a NodeName line.
std::set<unsigned> slurm_conf_ports(std::string_view conf_text);

// The window the candidates are drawn from: 20000 up to the ephemeral range when that
// leaves 2000 ports or more, else above it, else 1024-65535 less the range.
PortRange master_port_window(const PortRange& ephemeral);

// `count` candidates, the first the job's and step's own port, then the following ones.
std::vector<unsigned> master_port_candidates(std::uint32_t job_id, std::uint32_t step_id, const PortRange& ephemeral,
                                             const std::set<unsigned>& reserved, std::size_t count = 64);

// The hashed first candidate with no reservations, for code without a node at hand.
unsigned master_port(std::uint32_t job_id, std::uint32_t step_id);

// Whether a listening socket could take `port` on this host now (a bind test, on every
// address, with SO_REUSEADDR as PyTorch's store uses it).
bool port_free_here(unsigned port);

// Whether something already listens at addr:port (a connect test, `timeout_ms` at most).
bool port_listening_at(const std::string& addr, unsigned port, int timeout_ms);

// The step's MASTER_PORT: the first candidate that is free. On the master node (the
// step's first) that is a bind test; on the others, a connect test to MASTER_ADDR, which
// finds the same listener, since outside the ephemeral range a port is only ever taken
// by a listener. Every node thus moves past a taken port alike. The first candidate
// where none is free.
unsigned choose_master_port(const std::vector<unsigned>& candidates, bool on_master_node, const std::string& master_addr);

struct DistShape {
    std::string master_addr;
    unsigned master_port = 0;       // 0: master_port(job_id, step_id)
    std::uint32_t job_id = 0;
    std::uint32_t step_id = 0;
    std::uint32_t world_size = 1;
    std::uint32_t rank = 0;
    std::uint32_t local_rank = 0;
    std::uint32_t local_world_size = 1;
    std::uint32_t node_rank = 0;
    std::uint32_t node_count = 1;
};

// MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE, NODE_RANK,
// and what torchrun's agent gives each worker: GROUP_RANK, GROUP_WORLD_SIZE,
// ROLE_NAME, ROLE_RANK, ROLE_WORLD_SIZE, TORCHELASTIC_RUN_ID,
// TORCHELASTIC_RESTART_COUNT, TORCHELASTIC_MAX_RESTARTS, TORCHELASTIC_USE_AGENT_STORE.
std::map<std::string, std::string> torch_env(const DistShape& shape);

// The batch step runs one process, the batch script, whatever the job's task count: a
// world of one (WORLD_SIZE=1, RANK=0, ...), so that init_process_group there returns at
// once instead of waiting for ranks that never come. Steps started inside it set their
// own.
DistShape batch_step_shape(DistShape shape);

// Resolves MASTER_ADDR as the header says. `slurm_conf_paths` are tried in order.
std::string resolve_master_addr(const std::string& nodelist, const std::string& aliases,
                                const std::vector<std::string>& slurm_conf_paths);

}  // namespace aihpc::affinity
