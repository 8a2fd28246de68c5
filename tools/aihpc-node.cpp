// aihpc-node: the node work that the aihpc plugin hands out of slurmstepd.
//
// The plugin forks and at once execs this program (lib/common/node_helper.hpp): as the
// job's user for the user's work (stage-out, image digests), as root for root's (the
// directories under local_root, the epilog's cleanup). A step's stage-in starts it once,
// as root (prepare-stage-in): root's part, then the stage-in after the program dropped
// to the job's user for good, as the plugin would before an exec. It reads one request
// on fd 3 and answers on fd 4: notes, an error, a result, and the cache leases the step
// holds, as descriptors. Everything it needs comes in the request, from slurmstepd: the
// site's plugstack arguments, the job's raw --aihpc-* options and the step's identity,
// which this program parses with the same code as the plugin. Not meant to be run by
// hand.
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "common/node_helper.hpp"
#include "config.h"
#include "stage/node_request.hpp"
#include "stage/node_steps.hpp"
#include "stage/shared_cache.hpp"
#include "stage/task_wrapper.hpp"

using namespace aihpc;

namespace {

constexpr const char* usage =
    "Usage: aihpc-node prepare|stage-in|prepare-stage-in|account|stage-out|keep|delivered|\n"
    "                  mount-images|digest|epilog|deliver-kept|requeue\n"
    "       aihpc-node run-task COMMAND...   (with AIHPC_TASK_REQUEST set)\n"
    "       aihpc-node shared-read SRC BASE_DIR THREADS MAX_BYTES MAX_INODES SHARED_DIR [ALLOW...]\n"
    "Does one piece of aihpc's node work for slurmstepd, which starts it with a request\n"
    "on fd 3 and reads the answer on fd 4. It is not meant to be run by hand.\n"
    "\n"
    "  --help      show this help\n"
    "  --version   show the version\n"
    "\n"
    "See aihpc(8), section SECURITY.\n";

using stage::NodeRequest;

}  // namespace

int main(int argc, char** argv) {
    if (argc == 2 && std::strcmp(argv[1], "--help") == 0) {
        std::fputs(usage, stdout);
        return 0;
    }
    if (argc == 2 && std::strcmp(argv[1], "--version") == 0) {
        std::printf("aihpc-node %s\n", PACKAGE_VERSION);
        return 0;
    }
    if (std::getenv("AIHPC_TASK_REQUEST")) return stage::run_task(argc, argv);
    // Root's reader for the shared cache, run as shared_user (lib/stage/shared_cache.hpp).
    if (argc > 1 && std::strcmp(argv[1], "shared-read") == 0) return stage::shared_read_main(argc, argv);
    if (argc != 2) {
        std::fputs(usage, stderr);
        return 2;
    }
    using namespace stage::node;
    const std::map<std::string, void (*)(const NodeRequest&, const HelperChannel&)> commands = {
        {"prepare", prepare}, {"account", account}, {"stage-in", stage_in}, {"stage-out", stage_out},
        {"keep", keep},       {"digest", digest},   {"epilog", epilog}, {"delivered", delivered},
        {"deliver-kept", deliver_kept}, {"requeue", requeue}, {"mount-images", mount_images},
        {"prepare-stage-in", nullptr}};
    auto command = commands.find(argv[1]);
    if (command == commands.end()) {
        std::fprintf(stderr, "aihpc-node: unknown command '%s'\n%s", argv[1], usage);
        return 2;
    }
    // No one but root traces this process or takes its descriptors (ptrace,
    // pidfd_getfd): the user could otherwise write into slurmstepd's channel. The
    // channel is close-on-exec, so no program this helper starts inherits it.
    ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    ::fcntl(helper_request_fd, F_SETFD, FD_CLOEXEC);
    ::fcntl(helper_result_fd, F_SETFD, FD_CLOEXEC);
    HelperChannel channel;
    struct stat st {};
    if (::fstat(helper_request_fd, &st) != 0 || ::fstat(helper_result_fd, &st) != 0) {
        std::fputs("aihpc-node: started without its request and result descriptors; it is run by the aihpc plugin\n", stderr);
        return 2;
    }
    try {
        NodeRequest request = stage::parse_node_request(read_helper_request());
        if (command->first == "prepare-stage-in") {
            prepare_stage_in(request, channel);
            return 0;
        }
        command->second(request, channel);
        return 0;
    } catch (const std::exception& e) {
        channel.error(e.what());
    }
    return 1;
}
