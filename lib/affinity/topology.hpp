// A node's topology as plain values: cores, NUMA nodes, packages, GPUs and NICs with
// their PCI locality, and the NUMA distance matrix. Read once from hwloc (an XML file,
// a buffer, or this machine), then handed to the planner, which never touches hwloc.
#pragma once
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace aihpc::affinity {

using CpuSet = std::set<unsigned>;     // OS (physical) PU indices
using NodeSet = std::set<unsigned>;    // OS NUMA node indices

enum class GpuVendor { nvidia, amd, other };

const char* to_string(GpuVendor vendor);

// Where a PCI device sits: the PCI-to-PCI bridges above it (switch ports, root ports;
// host bridges excluded), nearest first, and the CPUs, NUMA nodes and packages of its
// first non-I/O ancestor.
struct PciLocality {
    std::vector<std::uint64_t> bridges;
    CpuSet cpus;
    NodeSet numa;
    std::set<unsigned> packages;
};

struct Core {
    std::vector<unsigned> pus;   // OS indices, ascending; SMT siblings of one core
    unsigned numa = 0;
    unsigned package = 0;
};

struct NumaNode {
    unsigned os_index = 0;
    CpuSet cpus;
};

struct Gpu {
    unsigned index = 0;           // position in PCI bus-id order among all GPUs
    unsigned vendor_ordinal = 0;  // position among GPUs of the same vendor: what CUDA/ROCr count
    std::string pci;              // "0000:d1:00.0"
    GpuVendor vendor = GpuVendor::other;
    std::vector<std::string> osdevs;   // cuda0, nvml0, rsmi4, opencl0d1...; may be empty
    PciLocality where;
};

struct Nic {
    std::string name;             // mlx5_0 (OpenFabrics) or eth0 (Net)
    bool openfabrics = false;
    std::string pci;
    std::vector<unsigned> ports;  // active ports where the topology says, else {1}
    PciLocality where;
};

struct NodeTopology {
    std::vector<Core> cores;                  // hwloc logical order
    std::vector<NumaNode> numa;               // ascending OS index; nodes with CPUs or not
    std::map<unsigned, CpuSet> packages;      // package OS index -> its PUs
    std::vector<Gpu> gpus;                    // ascending PCI bus id
    std::vector<Nic> nics;                    // by name
    // NUMA distances by OS index pair, where the topology has a matrix.
    std::map<std::pair<unsigned, unsigned>, std::uint64_t> numa_distance;

    CpuSet all_cpus() const;
    const NumaNode* find_numa(unsigned os_index) const;
};

// Loading. Each throws aihpc::Error naming the file and what went wrong.
NodeTopology load_topology_xml(const std::string& path);
NodeTopology load_topology_xml_buffer(const std::string& xml);
NodeTopology discover_this_machine();

// The node's topology for the plugin: the XML cache at `cache_path` when it was written
// since the last boot, else a fresh discovery that is then written there (atomically,
// mode 0644) when `write_cache` is set. A cache that cannot be written is not an error:
// the discovery is used as is.
NodeTopology load_node_topology(const std::string& cache_path, bool write_cache);

// This machine's topology as hwloc XML (with I/O devices and disallowed CPUs).
std::string this_machine_xml();

}  // namespace aihpc::affinity
