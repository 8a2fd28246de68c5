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

// Where a PCI device sits: every object above it (bridges, host bridges included, then
// caches, groups, packages, the machine), nearest first, by hwloc gp_index; and the
// CPUs, NUMA nodes and packages of its first non-I/O ancestor, which is its deepest
// locality (an L3 for an MI250X GCD, a NUMA node or a package elsewhere).
struct PciLocality {
    std::vector<std::uint64_t> ancestors;
    CpuSet cpus;
    NodeSet numa;
    std::set<unsigned> packages;
};

struct Core {
    std::vector<unsigned> pus;   // OS indices, ascending; SMT siblings of one core
    unsigned numa = 0;
    unsigned package = 0;
};

// A NUMA node. `cpus` are the PUs whose own memory it is; a memory-only node (KNL
// MCDRAM, HBM, CXL memory, GPU memory) has none and is never a CPU domain. `near` is
// hwloc's locality for it: the PUs it is attached to, which for a memory-only node are
// those of the node(s) beside it.
struct NumaNode {
    unsigned os_index = 0;
    CpuSet cpus;
    CpuSet near;
    std::string subtype;     // hwloc's: "MCDRAM", "HBM", "GPUMemory", "NVM"...; may be empty
    bool memory_only() const { return cpus.empty(); }
};

struct Gpu {
    unsigned index = 0;           // position in PCI bus-id order among all GPUs
    // What the vendor runtime numbers it (CUDA_/ROCR_VISIBLE_DEVICES): the N of hwloc's
    // nvmlN, cudaN or rsmiN osdev, which can differ from the PCI order (Corona's rsmi
    // devices run 2,3,1,0,...); only where no osdev names it, its place in PCI order
    // among the same vendor's GPUs, after the ordinals names already took.
    unsigned vendor_ordinal = 0;
    std::string pci;              // "0000:d1:00.0"
    GpuVendor vendor = GpuVendor::other;
    std::vector<std::string> osdevs;   // cuda0, nvml0, rsmi4, opencl0d1...; may be empty
    PciLocality where;
};

struct Nic {
    std::string name;             // mlx5_0 (OpenFabrics) or eth0 (Net)
    bool openfabrics = false;
    std::string pci;
    unsigned pci_vendor = 0;      // 0 where the device is not on PCI
    unsigned pci_class = 0;       // 0x0207 InfiniBand, 0x0200 Ethernet
    float link_gbytes = 0;        // PCI link speed in GB/s as hwloc reports it; 0 unknown
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
