#include "common/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/child_process.hpp"
#include "common/error.hpp"

namespace aihpc {

namespace {

// The shell's convention: the exit status, or 128+N when signal N ended the command.
int exit_status(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
}

}  // namespace

CommandOutput capture_output(const std::vector<std::string>& argv) { return capture_output(argv, CaptureOptions{}); }

CommandOutput capture_output(const std::vector<std::string>& argv, const CaptureOptions& options) {
    if (argv.empty()) throw Error("internal: empty command");
    Pipe out, err;
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const RunUser* user = options.user ? &*options.user : nullptr;
    pid_t pid = ::fork();
    if (pid < 0) throw_errno("cannot fork to run " + argv[0]);
    if (pid == 0) {
        int null = ::open("/dev/null", O_RDONLY);
        // fd3 first, above the three it must not overwrite, then into place.
        int given = options.fd3 >= 0 ? ::fcntl(options.fd3, F_DUPFD, 10) : -1;
        if (null >= 0) ::dup2(null, 0);
        ::dup2(out.write.get(), 1);
        ::dup2(err.write.get(), 2);
        if (given >= 0) ::dup2(given, 3);
        // The command gets stdin, stdout, stderr and fd3 only: a daemon it starts
        // (squashfuse) must hold none of the caller's pipes, locks or leases.
        ::syscall(SYS_close_range, given >= 0 ? 4u : 3u, ~0u, 0u);
        if (user) {
            uid_t r, e, s;
            if (::setgroups(user->groups.size(), user->groups.data()) != 0 || ::setresgid(user->gid, user->gid, user->gid) != 0 ||
                ::setresuid(user->uid, user->uid, user->uid) != 0 || ::getresuid(&r, &e, &s) != 0 || r != user->uid ||
                e != user->uid || s != user->uid || ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
                ::_exit(126);
        }
        ::execvp(args[0], args.data());
        ::_exit(127);
    }
    ChildProcess child(pid);
    out.write.reset();
    err.write.reset();
    CommandOutput result;
    struct pollfd fds[2] = {{out.read.get(), POLLIN, 0}, {err.read.get(), POLLIN, 0}};
    std::string* sinks[2] = {&result.out, &result.err};
    int open = 2;
    char buf[8192];
    while (open > 0) {
        if (::poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            throw_errno("cannot read the output of " + argv[0]);
        }
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
            if (n > 0) {
                sinks[i]->append(buf, static_cast<std::size_t>(n));
            } else if (n == 0 || errno != EINTR) {
                fds[i].fd = -1;
                --open;
            }
        }
    }
    result.status = exit_status(child.wait());
    return result;
}

}  // namespace aihpc
