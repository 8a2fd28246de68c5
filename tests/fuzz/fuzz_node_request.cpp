// libFuzzer target: the request aihpc-node reads on fd 3 (lib/stage/node_request), which
// it often reads as root. It is written by the plugin, but the parser is the last line
// before setresuid: whatever it accepts names a real job on a named node, with ids that
// neither wrap nor mean "leave unchanged"; anything else is an aihpc::Error.
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/error.hpp"
#include "fuzz_support.hpp"
#include "stage/node_request.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string text(reinterpret_cast<const char*>(data), size);
    try {
        aihpc::stage::NodeRequest r = aihpc::stage::parse_node_request(text);
        aihpc::fuzz::check(r.job_id != 0, "an accepted request names a job");
        aihpc::fuzz::check(!r.node.empty(), "an accepted request names a node");
        aihpc::fuzz::check(r.uid != static_cast<uid_t>(-1) && r.gid != static_cast<gid_t>(-1),
                           "an accepted request's uid and gid are ids, not setresuid's 'unchanged'");
        for (gid_t g : r.groups) aihpc::fuzz::check(g != static_cast<gid_t>(-1), "every group is a group id");
    } catch (const aihpc::Error&) {
        // A correct refusal.
    }
    return 0;
}
