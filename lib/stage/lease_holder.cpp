#include "stage/lease_holder.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "common/error.hpp"

namespace aihpc::stage {

namespace {

// The holder's whole life: wait for the pipe to close (or to break), then exit. Only
// async-signal-safe calls, as it runs in the child of a fork.
[[noreturn]] void hold(int release_read, const std::vector<int>& leases, const sigset_t& original_mask) {
    ::setsid();
    // No signal but SIGKILL (and SIGSTOP) ends it early: a stray SIGTERM or SIGHUP to the
    // user's processes must not drop the leases of a running step. Signals stay blocked
    // from before the fork until they are ignored.
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    for (int sig : {SIGTERM, SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGPIPE, SIGALRM})
        ::sigaction(sig, &ignore, nullptr);
    ::sigprocmask(SIG_SETMASK, &original_mask, nullptr);
    int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    for (int fd = 0; fd <= 2; ++fd)
        if (null >= 0) ::dup3(null, fd, 0);
    // Every descriptor but the pipe, the leases and 0-2 goes: the stager's channel to
    // slurmstepd above all, which the holder must not keep open.
    int highest = std::max(release_read, leases.empty() ? 0 : *std::max_element(leases.begin(), leases.end()));
    for (int fd = 3; fd <= highest; ++fd)
        if (fd != release_read && std::find(leases.begin(), leases.end(), fd) == leases.end()) ::close(fd);
    ::syscall(SYS_close_range, static_cast<unsigned>(highest + 1), ~0u, 0u);
    struct pollfd wait_for{release_read, POLLIN, 0};
    for (;;) {
        int ready = ::poll(&wait_for, 1, -1);
        if (ready < 0 && errno == EINTR) continue;
        // POLLHUP once every write end is closed; no one writes, so any event is the end.
        ::_exit(0);
    }
}

}  // namespace

LeaseHolder hold_leases(const std::vector<int>& leases) {
    int ends[2];
    if (::pipe2(ends, O_CLOEXEC) != 0) throw_errno("cannot make the pipe of the cache lease holder");
    UniqueFd read_end(ends[0]), write_end(ends[1]);
    sigset_t all, original;
    sigfillset(&all);
    ::sigprocmask(SIG_SETMASK, &all, &original);
    pid_t pid = ::fork();
    if (pid == 0) hold(read_end.get(), leases, original);
    int fork_errno = errno;
    ::sigprocmask(SIG_SETMASK, &original, nullptr);
    errno = fork_errno;
    if (pid < 0) throw_errno("cannot start the cache lease holder");
    read_end.reset();
    LeaseHolder holder;
    holder.pid = pid;
    holder.release = std::move(write_end);
    holder.pidfd = UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    if (!holder.pidfd) {
        int saved = errno;
        ::kill(pid, SIGKILL);
        errno = saved;
        throw_errno("cannot take a pidfd of the cache lease holder");
    }
    return holder;
}

void end_lease_holder(std::vector<UniqueFd>& descriptors) {
    // A SIGKILL through each descriptor that is a pidfd (the call fails with EBADF on any
    // other kind, harmlessly), then every descriptor closed.
    for (UniqueFd& fd : descriptors)
        if (fd) ::syscall(SYS_pidfd_send_signal, fd.get(), SIGKILL, nullptr, 0u);
    descriptors.clear();
}

}  // namespace aihpc::stage
