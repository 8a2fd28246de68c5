// Reading hwloc into NodeTopology. Only what the planner needs is kept; hwloc is
// configured so that XML loads stay in the millisecond range: caches are filtered out
// but for L3s that add structure (an MI250X GCD's locality is its L3, where hwloc hangs
// its PCI tree),
// I/O is kept at the "important" level (GPUs, NICs and the bridges above them), and
// disallowed CPUs are kept, since which CPUs a step may use is the planner's input.
#include "affinity/topology.hpp"

#include <fcntl.h>
#include <hwloc.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <tuple>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/text.hpp"

namespace aihpc::affinity {

const char* to_string(GpuVendor vendor) {
    switch (vendor) {
        case GpuVendor::nvidia: return "nvidia";
        case GpuVendor::amd: return "amd";
        case GpuVendor::other: break;
    }
    return "other";
}

CpuSet NodeTopology::all_cpus() const {
    CpuSet all;
    for (const Core& core : cores) all.insert(core.pus.begin(), core.pus.end());
    return all;
}

const NumaNode* NodeTopology::find_numa(unsigned os_index) const {
    for (const NumaNode& node : numa)
        if (node.os_index == os_index) return &node;
    return nullptr;
}

namespace {

constexpr unsigned pci_vendor_nvidia = 0x10de;
constexpr unsigned pci_vendor_amd = 0x1002;

struct TopologyDeleter {
    void operator()(hwloc_topology* topo) const { hwloc_topology_destroy(topo); }
};
using TopologyHandle = std::unique_ptr<hwloc_topology, TopologyDeleter>;

struct XmlBufferDeleter {
    hwloc_topology_t topo;
    void operator()(char* buffer) const { hwloc_free_xmlbuffer(topo, buffer); }
};

TopologyHandle new_topology(const std::string& what) {
    hwloc_topology_t raw = nullptr;
    if (hwloc_topology_init(&raw) != 0) throw_errno("hwloc cannot start reading " + what);
    TopologyHandle topo(raw);
    hwloc_topology_set_flags(raw, HWLOC_TOPOLOGY_FLAG_INCLUDE_DISALLOWED);
    hwloc_topology_set_io_types_filter(raw, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
    hwloc_topology_set_cache_types_filter(raw, HWLOC_TYPE_FILTER_KEEP_NONE);
    hwloc_topology_set_icache_types_filter(raw, HWLOC_TYPE_FILTER_KEEP_NONE);
    hwloc_topology_set_type_filter(raw, HWLOC_OBJ_L3CACHE, HWLOC_TYPE_FILTER_KEEP_STRUCTURE);
    return topo;
}

std::set<unsigned> ids_of(hwloc_const_bitmap_t bitmap) {
    std::set<unsigned> ids;
    if (bitmap == nullptr || hwloc_bitmap_weight(bitmap) < 0) return ids;
    for (int i = hwloc_bitmap_first(bitmap); i >= 0; i = hwloc_bitmap_next(bitmap, i))
        ids.insert(static_cast<unsigned>(i));
    return ids;
}

bool intersects(const std::set<unsigned>& a, const std::set<unsigned>& b) {
    for (unsigned x : a)
        if (b.count(x)) return true;
    return false;
}

std::string format_busid(const hwloc_obj_t pcidev) {
    char text[32];
    const auto& a = pcidev->attr->pcidev;
    std::snprintf(text, sizeof text, "%04x:%02x:%02x.%01x", a.domain, a.bus, a.dev, a.func);
    return text;
}

PciLocality locate(hwloc_topology_t topo, hwloc_obj_t io_object, const std::map<unsigned, CpuSet>& packages) {
    PciLocality where;
    for (hwloc_obj_t up = io_object->parent; up != nullptr; up = up->parent) where.ancestors.push_back(up->gp_index);
    hwloc_obj_t anchor = hwloc_get_non_io_ancestor_obj(topo, io_object);
    if (anchor != nullptr) {
        where.cpus = ids_of(anchor->cpuset);
        where.numa = ids_of(anchor->nodeset);
    }
    for (const auto& [os_index, cpus] : packages)
        if (intersects(cpus, where.cpus)) where.packages.insert(os_index);
    return where;
}

bool starts_with_any(const std::string& name, std::initializer_list<const char*> prefixes) {
    for (const char* prefix : prefixes)
        if (name.rfind(prefix, 0) == 0) return true;
    return false;
}

// Compute-API osdevs name a GPU; a DRM card/renderD alone does not (BMC VGA has those).
bool is_gpu_osdev(hwloc_obj_t osdev) {
    std::string name = osdev->name ? osdev->name : "";
    return starts_with_any(name, {"cuda", "nvml", "rsmi", "opencl"});
}

bool is_gpu_pci_class(hwloc_obj_t pcidev) {
    unsigned short cls = pcidev->attr->pcidev.class_id;
    unsigned short vendor = pcidev->attr->pcidev.vendor_id;
    bool display = cls == 0x0300 || cls == 0x0302 || cls == 0x0380;
    return display && (vendor == pci_vendor_nvidia || vendor == pci_vendor_amd);
}

std::vector<unsigned> active_ports(hwloc_obj_t osdev) {
    std::vector<unsigned> ports;
    for (unsigned i = 0; i < osdev->infos_count; ++i) {
        std::string key = osdev->infos[i].name ? osdev->infos[i].name : "";
        // "Port<N>State" = 4 is IB_PORT_ACTIVE.
        if (key.rfind("Port", 0) != 0 || !ends_with(key, "State")) continue;
        auto port = parse_uint(std::string_view(key).substr(4, key.size() - 9));
        if (port && std::string(osdev->infos[i].value ? osdev->infos[i].value : "") == "4")
            ports.push_back(static_cast<unsigned>(*port));
    }
    std::sort(ports.begin(), ports.end());
    if (ports.empty()) ports.push_back(1);
    return ports;
}

// The N of the osdev a vendor runtime counts by: nvmlN (NVML, PCI order, what CUDA
// counts under CUDA_DEVICE_ORDER=PCI_BUS_ID), else cudaN, else rsmiN.
std::optional<unsigned> named_ordinal(const std::vector<std::string>& osdevs) {
    for (const char* prefix : {"nvml", "cuda", "rsmi"}) {
        for (const std::string& name : osdevs) {
            if (name.rfind(prefix, 0) != 0) continue;
            if (auto n = parse_uint(std::string_view(name).substr(std::strlen(prefix))); n && *n < 65536)
                return static_cast<unsigned>(*n);
        }
    }
    return std::nullopt;
}

// Each package's PUs; one package of all PUs where the topology names none.
std::map<unsigned, CpuSet> read_packages(hwloc_topology_t topo) {
    std::map<unsigned, CpuSet> packages;
    int npackages = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PACKAGE);
    for (int i = 0; i < npackages; ++i) {
        hwloc_obj_t pkg = hwloc_get_obj_by_type(topo, HWLOC_OBJ_PACKAGE, i);
        packages[pkg->os_index] = ids_of(pkg->cpuset);
    }
    if (packages.empty()) packages[0] = ids_of(hwloc_get_root_obj(topo)->cpuset);
    return packages;
}

// The NUMA nodes in OS index order, each with the PUs it owns, and `owner` filled with
// each PU's own node: of the nodes whose locality holds it, the narrowest, then one
// that is not a memory kind (MCDRAM, HBM...), then the lowest OS index. A node that
// owns no PU is memory-only.
std::vector<NumaNode> read_numa_nodes(hwloc_topology_t topo, std::map<unsigned, unsigned>& owner) {
    std::vector<NumaNode> node_list;
    int nnuma = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE);
    for (int i = 0; i < nnuma; ++i) {
        hwloc_obj_t obj = hwloc_get_obj_by_type(topo, HWLOC_OBJ_NUMANODE, i);
        NumaNode entry;
        entry.os_index = obj->os_index;
        entry.near = ids_of(obj->cpuset);
        entry.subtype = obj->subtype ? obj->subtype : "";
        node_list.push_back(std::move(entry));
    }
    std::sort(node_list.begin(), node_list.end(),
              [](const NumaNode& a, const NumaNode& b) { return a.os_index < b.os_index; });
    auto memory_kind = [](const std::string& subtype) {
        return subtype == "MCDRAM" || subtype == "HBM" || subtype == "GPUMemory" || subtype == "NVM" ||
               subtype == "SPM" || subtype.rfind("CXL", 0) == 0;
    };
    for (unsigned pu : ids_of(hwloc_get_root_obj(topo)->cpuset)) {
        const NumaNode* best = nullptr;
        auto key = [&](const NumaNode* n) { return std::make_tuple(n->near.size(), memory_kind(n->subtype), n->os_index); };
        for (const NumaNode& entry : node_list)
            if (entry.near.count(pu) && (best == nullptr || key(&entry) < key(best))) best = &entry;
        if (best != nullptr) owner[pu] = best->os_index;
    }
    for (NumaNode& entry : node_list)
        for (unsigned pu : entry.near)
            if (auto it = owner.find(pu); it != owner.end() && it->second == entry.os_index) entry.cpus.insert(pu);
    return node_list;
}

// The cores, each with its PUs, NUMA node (by `owner`) and package.
std::vector<Core> read_cores(hwloc_topology_t topo, const std::map<unsigned, CpuSet>& packages,
                             const std::map<unsigned, unsigned>& owner) {
    auto package_of = [&](unsigned pu) {
        for (const auto& [os_index, cpus] : packages)
            if (cpus.count(pu)) return os_index;
        return 0u;
    };
    auto numa_of_pu = [&](unsigned pu) {
        auto it = owner.find(pu);
        return it == owner.end() ? 0u : it->second;
    };
    std::vector<Core> cores;
    CpuSet in_cores;
    int ncores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
    for (int i = 0; i < ncores; ++i) {
        hwloc_obj_t obj = hwloc_get_obj_by_type(topo, HWLOC_OBJ_CORE, i);
        Core core;
        CpuSet pus = ids_of(obj->cpuset);
        if (pus.empty()) continue;
        core.pus.assign(pus.begin(), pus.end());
        core.numa = numa_of_pu(core.pus.front());
        core.package = package_of(core.pus.front());
        in_cores.insert(pus.begin(), pus.end());
        cores.push_back(std::move(core));
    }
    // PUs outside any Core object (topologies without a core level) count as cores.
    int npus = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
    for (int i = 0; i < npus; ++i) {
        hwloc_obj_t pu = hwloc_get_obj_by_type(topo, HWLOC_OBJ_PU, i);
        if (in_cores.count(pu->os_index)) continue;
        Core core;
        core.pus = {pu->os_index};
        core.numa = numa_of_pu(pu->os_index);
        core.package = package_of(pu->os_index);
        cores.push_back(std::move(core));
    }
    return cores;
}

GpuVendor gpu_vendor(hwloc_obj_t pcidev) {
    unsigned vendor = pcidev->attr->pcidev.vendor_id;
    return vendor == pci_vendor_nvidia ? GpuVendor::nvidia
           : vendor == pci_vendor_amd  ? GpuVendor::amd
                                       : GpuVendor::other;
}

// The GPUs, in PCI bus order: one per PCI function, however many osdevs name it. A GPU
// no osdev numbers gets the lowest vendor ordinal that no other GPU of its vendor has.
std::vector<Gpu> read_gpus(hwloc_topology_t topo, const std::map<unsigned, CpuSet>& packages) {
    struct Found {
        hwloc_obj_t pcidev;
        std::vector<std::string> osdevs;
    };
    std::vector<Found> found;
    for (hwloc_obj_t pci = hwloc_get_next_pcidev(topo, nullptr); pci; pci = hwloc_get_next_pcidev(topo, pci)) {
        Found f{pci, {}};
        for (hwloc_obj_t child = pci->io_first_child; child; child = child->next_sibling)
            if (child->type == HWLOC_OBJ_OS_DEVICE && is_gpu_osdev(child)) f.osdevs.push_back(child->name);
        if (!f.osdevs.empty() || is_gpu_pci_class(pci)) found.push_back(std::move(f));
    }
    auto bus_key = [](hwloc_obj_t p) {
        const auto& a = p->attr->pcidev;
        return std::make_tuple(a.domain, a.bus, a.dev, a.func);
    };
    std::sort(found.begin(), found.end(), [&](const Found& a, const Found& b) { return bus_key(a.pcidev) < bus_key(b.pcidev); });
    std::map<GpuVendor, std::set<unsigned>> named;
    for (const Found& f : found)
        if (auto n = named_ordinal(f.osdevs)) named[gpu_vendor(f.pcidev)].insert(*n);
    std::vector<Gpu> gpus;
    std::map<GpuVendor, unsigned> next_unnamed;
    for (const Found& f : found) {
        Gpu gpu;
        gpu.index = static_cast<unsigned>(gpus.size());
        gpu.pci = format_busid(f.pcidev);
        gpu.vendor = gpu_vendor(f.pcidev);
        gpu.osdevs = f.osdevs;
        if (auto n = named_ordinal(gpu.osdevs)) {
            gpu.vendor_ordinal = *n;
        } else {
            unsigned& next = next_unnamed[gpu.vendor];
            while (named[gpu.vendor].count(next)) ++next;
            gpu.vendor_ordinal = next++;
        }
        gpu.where = locate(topo, f.pcidev, packages);
        gpus.push_back(std::move(gpu));
    }
    return gpus;
}

// The network devices (OpenFabrics and plain network), shorter names first.
std::vector<Nic> read_nics(hwloc_topology_t topo, const std::map<unsigned, CpuSet>& packages) {
    std::vector<Nic> nics;
    for (hwloc_obj_t os = hwloc_get_next_osdev(topo, nullptr); os; os = hwloc_get_next_osdev(topo, os)) {
        auto type = os->attr->osdev.type;
        if (type != HWLOC_OBJ_OSDEV_OPENFABRICS && type != HWLOC_OBJ_OSDEV_NETWORK) continue;
        if (os->name == nullptr) continue;
        Nic nic;
        nic.name = os->name;
        nic.openfabrics = type == HWLOC_OBJ_OSDEV_OPENFABRICS;
        if (os->parent && os->parent->type == HWLOC_OBJ_PCI_DEVICE) {
            nic.pci = format_busid(os->parent);
            nic.pci_vendor = os->parent->attr->pcidev.vendor_id;
            nic.pci_class = os->parent->attr->pcidev.class_id;
            nic.link_gbytes = os->parent->attr->pcidev.linkspeed;
        }
        nic.ports = nic.openfabrics ? active_ports(os) : std::vector<unsigned>{};
        nic.where = locate(topo, os, packages);
        nics.push_back(std::move(nic));
    }
    std::sort(nics.begin(), nics.end(), [](const Nic& a, const Nic& b) {
        // mlx5_2 before mlx5_10: shorter names first within one prefix.
        return std::make_pair(a.name.size(), a.name) < std::make_pair(b.name.size(), b.name);
    });
    return nics;
}

NodeTopology read_topology(hwloc_topology_t topo) {
    NodeTopology node;
    node.packages = read_packages(topo);
    std::map<unsigned, unsigned> owner;   // PU -> NUMA os index
    node.numa = read_numa_nodes(topo, owner);
    node.cores = read_cores(topo, node.packages, owner);
    node.gpus = read_gpus(topo, node.packages);
    node.nics = read_nics(topo, node.packages);

    unsigned nr = 1;
    hwloc_distances_s* distances = nullptr;
    if (hwloc_distances_get_by_type(topo, HWLOC_OBJ_NUMANODE, &nr, &distances, 0, 0) == 0 && nr >= 1) {
        for (unsigned i = 0; i < distances->nbobjs; ++i)
            for (unsigned j = 0; j < distances->nbobjs; ++j)
                node.numa_distance[{distances->objs[i]->os_index, distances->objs[j]->os_index}] =
                    distances->values[i * distances->nbobjs + j];
        hwloc_distances_release(topo, distances);
    }
    return node;
}

void load(hwloc_topology_t topo, const std::string& what) {
    if (hwloc_topology_load(topo) != 0)
        throw Error("hwloc cannot load the topology of " + what + ": " + std::strerror(errno) +
                    "; check that it is hwloc XML (lstopo-no-graphics --input FILE)");
}

time_t boot_time() {
    timespec since_boot{};
    clock_gettime(CLOCK_BOOTTIME, &since_boot);
    return time(nullptr) - since_boot.tv_sec;
}

void write_atomically(const std::string& path, const std::string& text) {
    std::string tmp = path + ".tmp." + std::to_string(getpid());
    UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644));
    if (!fd) throw_errno("cannot create the topology cache " + tmp);
    bool ok = fchmod(fd.get(), 0644) == 0;
    for (std::size_t done = 0; ok && done < text.size();) {
        ssize_t n = write(fd.get(), text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) ok = false;
        else done += static_cast<std::size_t>(n);
    }
    if (!ok || rename(tmp.c_str(), path.c_str()) != 0) {
        int err = errno;
        unlink(tmp.c_str());
        throw SystemError("cannot write the topology cache " + path, err);
    }
}

}  // namespace

NodeTopology load_topology_xml(const std::string& path) {
    TopologyHandle topo = new_topology(path);
    if (hwloc_topology_set_xml(topo.get(), path.c_str()) != 0)
        throw SystemError("cannot read the topology file " + path, errno);
    load(topo.get(), path);
    return read_topology(topo.get());
}

NodeTopology load_topology_xml_buffer(const std::string& xml) {
    TopologyHandle topo = new_topology("an XML buffer");
    if (hwloc_topology_set_xmlbuffer(topo.get(), xml.c_str(), static_cast<int>(xml.size() + 1)) != 0)
        throw Error("hwloc cannot parse the topology XML buffer");
    load(topo.get(), "an XML buffer");
    return read_topology(topo.get());
}

NodeTopology discover_this_machine() {
    TopologyHandle topo = new_topology("this machine");
    load(topo.get(), "this machine");
    return read_topology(topo.get());
}

std::string this_machine_xml() {
    TopologyHandle topo = new_topology("this machine");
    load(topo.get(), "this machine");
    char* raw = nullptr;
    int length = 0;
    if (hwloc_topology_export_xmlbuffer(topo.get(), &raw, &length, 0) != 0)
        throw_errno("cannot export this machine's topology as XML");
    std::unique_ptr<char, XmlBufferDeleter> buffer(raw, XmlBufferDeleter{topo.get()});
    return std::string(raw, length > 0 ? static_cast<std::size_t>(length - 1) : 0);
}

NodeTopology load_node_topology(const std::string& cache_path, bool write_cache) {
    struct stat st{};
    if (!cache_path.empty() && lstat(cache_path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        st.st_mtime >= boot_time()) {
        try {
            return load_topology_xml(cache_path);
        } catch (const Error&) {
            // A damaged cache is rewritten below from a fresh discovery.
        }
    }
    std::string xml = this_machine_xml();
    if (write_cache && !cache_path.empty()) {
        try {
            write_atomically(cache_path, xml);
        } catch (const Error&) {
            // The cache only saves time; the discovery just made is as good.
        }
    }
    return load_topology_xml_buffer(xml);
}

}  // namespace aihpc::affinity
