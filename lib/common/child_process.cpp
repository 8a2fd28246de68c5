#include "common/child_process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "common/error.hpp"

namespace aihpc {

Pipe::Pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw_errno("cannot create a pipe to a child process");
    read.reset(fds[0]);
    write.reset(fds[1]);
}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
    // The child this handle held is killed and reaped as `replaced` goes.
    if (this != &other) ChildProcess replaced(std::exchange(pid_, std::exchange(other.pid_, -1)));
    return *this;
}

ChildProcess::~ChildProcess() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    wait();
}

// When waitpid itself fails (ECHILD: the child was reaped elsewhere, or SIGCHLD is
// ignored), how the child ended is unknown: the status returned then is an exit with
// code 255, so that no caller takes it for success.
int ChildProcess::wait() noexcept {
    int status = 0;
    pid_t reaped;
    while ((reaped = ::waitpid(pid_, &status, 0)) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return reaped < 0 ? W_EXITCODE(255, 0) : status;
}

}  // namespace aihpc
