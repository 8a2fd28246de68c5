// libFuzzer target: what aihpc-launch decodes from AIHPC_LAUNCH_REQUEST before it execs
// the container runtime (the variable is in the task's environment, which the task's
// own earlier steps could shape), and the image digest records of
// LOCAL_ROOT/cache/<uid>/digests, which the user owns. A request that decodes must
// encode to a request that decodes to the same.
// Input: the first byte picks the parser ('0' or '1'), the rest is its text.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/error.hpp"
#include "container/digest_cache.hpp"
#include "container/launch.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
    using namespace aihpc::container;
    try {
        switch (static_cast<unsigned char>(data[0] - '0') % 2) {
        case 0: {
            std::string once = encode_request(decode_request(text));
            aihpc::fuzz::check(encode_request(decode_request(once)) == once, "a decoded request encodes and decodes as itself");
            break;
        }
        case 1: digest_from_entry(text, {"/images/x.sif", 2049, 131, 4096, 1718064000000000000, 1718064000000000000}); break;
        }
    } catch (const aihpc::Error&) {
        // A correct refusal.
    }
    return 0;
}
