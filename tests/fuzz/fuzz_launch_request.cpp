// libFuzzer target: what aihpc-launch decodes from AIHPC_LAUNCH_REQUEST before it execs
// the container runtime (the variable is in the task's environment, which the task's
// own earlier steps could shape), and the image digest records of
// LOCAL_ROOT/cache/<uid>/digests, which the user owns. A request that decodes must
// encode to a request that decodes to the same, and give the runtime's command line or
// an aihpc::Error; so must the task's environment, where the GPUs are read from.
// Input: the first byte picks the parser ('0' to '3'), the rest is its text.
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/error.hpp"
#include "container/digest_cache.hpp"
#include "container/launch.hpp"
#include "common/text.hpp"
#include "fuzz_support.hpp"

namespace {

aihpc::container::TaskView task(std::vector<std::string> env) {
    aihpc::container::TaskView view{{"python3", "train.py", "--lr", "0.1"}, std::move(env), "/home/alice", {}, {}};
    view.gpus = aihpc::container::detect_gpus(view.env);
    return view;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
    using namespace aihpc::container;
    try {
        switch (static_cast<unsigned char>(data[0] - '0') % 4) {
        case 0: {
            std::string once = encode_request(decode_request(text));
            aihpc::fuzz::check(encode_request(decode_request(once)) == once, "a decoded request encodes and decodes as itself");
            break;
        }
        case 1: digest_from_entry(text, {"/images/x.sif", 2049, 131, 4096, 1718064000000000000, 1718064000000000000}); break;
        case 2: {
            auto probe = [](const std::string& path) { return path.size() % 2 ? PathKind::directory : PathKind::none; };
            build_runtime_command(decode_request(text), task({"AIHPC_STAGE_DIR=/local/aihpc/jobs/12", "CUDA_VISIBLE_DEVICES=0"}), probe);
            break;
        }
        case 3:
            build_runtime_command(decode_request(R"({"runtime":"podman","program":"/usr/bin/podman","image":"ubuntu","kind":"named"})"),
                                  task(aihpc::split(text, '\n')), [](const std::string&) { return PathKind::directory; });
            break;
        }
    } catch (const aihpc::Error&) {
        // A correct refusal.
    }
    return 0;
}
