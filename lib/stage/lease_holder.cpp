#include "stage/lease_holder.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "common/error.hpp"
#include "common/spawn.hpp"

namespace aihpc::stage {

namespace {

// The holder's whole life, once spawn_function left it the pipe, the leases and
// /dev/null on 0-2: wait for the pipe to close (or to break), then exit. Only
// async-signal-safe calls, as it runs in the child of a fork.
void hold(const void* context) noexcept {
    const int release_read = *static_cast<const int*>(context);
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
    SpawnPlan plan;
    // Every descriptor but the pipe, the leases and 0-2 goes: the stager's channel to
    // slurmstepd above all, which the holder must not keep open. Each keeps its number;
    // 0-2 get /dev/null, unless the pipe or a lease has one of them.
    plan.fds.push_back({read_end.get(), read_end.get()});
    for (int lease : leases) plan.fds.push_back({lease, lease});
    UniqueFd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
    for (int fd = 0; fd <= 2; ++fd)
        if (fd != read_end.get() && std::find(leases.begin(), leases.end(), fd) == leases.end())
            plan.fds.push_back({fd, null ? null.get() : fd});
    // In a session of its own, so that the stager's process group, which slurmstepd kills
    // once the stager's socket and output close (common/node_helper.hpp), leaves it out:
    // spawn_function makes the session before the holder closes its copies of them.
    plan.group = ChildGroup::own_session;
    // No signal but SIGKILL (and SIGSTOP) ends it early: a stray SIGTERM or SIGHUP to the
    // user's processes must not drop the leases of a running step.
    plan.ignored_signals = {SIGTERM, SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGPIPE, SIGALRM};
    plan.purpose = "the cache lease holder";
    const int release_read = read_end.get();
    ChildProcess child = spawn_function(plan, hold, &release_read);
    read_end.reset();
    LeaseHolder holder;
    holder.release = std::move(write_end);
    holder.pidfd = UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, child.pid(), 0)));
    // Without its pidfd, the holder is killed and reaped as `child` goes.
    if (!holder.pidfd) throw_errno("cannot take a pidfd of the cache lease holder");
    // It outlives this process on purpose: the pipe and the pidfd end it.
    holder.pid = child.release();
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
