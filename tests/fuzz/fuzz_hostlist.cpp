// libFuzzer target: Slurm host lists as the plugin reads them to find MASTER_ADDR:
// SLURM_STEP_NODELIST (expanded, or only its first host), SLURM_NODE_ALIASES, and the
// NodeName/NodeAddr lines of slurm.conf. These run in slurmstepd: a crash or a hang
// there takes the step, or the node, down.
// Input: the first byte picks the parser ('0' to '3'), the rest is its text.
#include <cstddef>
#include <cstdint>
#include <string>

#include "affinity/dist_env.hpp"
#include "common/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
    using namespace aihpc::affinity;
    try {
        switch (static_cast<unsigned char>(data[0] - '0') % 4) {
        case 0: expand_hostlist(text); break;
        case 1: first_host(text); break;
        case 2: node_addr_from_aliases(text, "n1"); break;
        case 3: node_addr_from_slurm_conf(text, "n1"); break;
        }
    } catch (const aihpc::Error&) {
        // A correct refusal.
    }
    return 0;
}
