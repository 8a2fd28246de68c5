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

// 20000 + a hash of job and step ids, below 40000: steps sharing a node differ.
unsigned master_port(std::uint32_t job_id, std::uint32_t step_id);

struct DistShape {
    std::string master_addr;
    std::uint32_t job_id = 0;
    std::uint32_t step_id = 0;
    std::uint32_t world_size = 1;
    std::uint32_t rank = 0;
    std::uint32_t local_rank = 0;
    std::uint32_t local_world_size = 1;
    std::uint32_t node_rank = 0;
};

std::map<std::string, std::string> torch_env(const DistShape& shape);

// Resolves MASTER_ADDR as the header says. `slurm_conf_paths` are tried in order.
std::string resolve_master_addr(const std::string& nodelist, const std::string& aliases,
                                const std::vector<std::string>& slurm_conf_paths);

}  // namespace aihpc::affinity
