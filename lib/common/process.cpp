#include "common/process.hpp"

#include <fcntl.h>
#include <sys/wait.h>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/spawn.hpp"
#include "common/text.hpp"

namespace aihpc {

namespace {

// The shell's convention: the exit status, or 128+N when signal N ended the command.
int exit_status(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
}

}  // namespace

CommandOutput capture_output(const std::vector<std::string>& argv) { return capture_output_with(argv, CaptureOptions{}); }

CommandOutput capture_output_with(const std::vector<std::string>& argv, const CaptureOptions& options) {
    if (argv.empty()) throw Error("internal: empty command");
    SpawnPlan plan;
    plan.argv = argv;
    plan.search_path = true;
    plan.purpose = argv[0];
    plan.start_error = "cannot fork to run " + argv[0];
    // Without /dev/null, stdin stays the caller's.
    UniqueFd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    plan.fds.push_back({0, null ? null.get() : 0});
    if (options.fd3 >= 0) plan.fds.push_back({3, options.fd3});
    if (options.user) {
        plan.user = options.user;
        plan.no_new_privs = true;
    }
    Captured run = capture(std::move(plan), options.deadline);
    return {exit_status(run.status), std::move(run.out), std::move(run.err), run.timed_out};
}

std::string failure_line(const CommandOutput& out, const std::string& program) {
    std::string last;
    std::size_t end = out.err.size();
    while (last.empty() && end > 0) {
        std::size_t start = out.err.rfind('\n', end - 1);
        start = start == std::string::npos ? 0 : start + 1;
        last = std::string(trim(std::string_view(out.err).substr(start, end - start)));
        end = start == 0 ? 0 : start - 1;
    }
    return last.empty() ? program + " exited " + std::to_string(out.status) : last;
}

}  // namespace aihpc
