// The process that holds a step's cache leases. A lease is a shared flock on a lock file
// in the user's cache dir (node_cache.hpp), which the user can write: a descriptor there
// in slurmstepd would let the user stall slurmstepd's close (a FUSE mount whose flush
// never returns). So the stager forks a small process of the user's own that keeps the
// lease descriptors and nothing else, and hands slurmstepd two descriptors that no user
// path lies behind: the write end of a pipe whose other end the holder waits on, and a
// pidfd of the holder.
//   - The step ends, or slurmstepd dies: the pipe closes, the holder exits, and the
//     kernel drops the locks with its descriptors.
//   - The user stops the holder (SIGSTOP): slurmstepd's end of step kills it through the
//     pidfd (end_lease_holder), which never blocks, whatever state it is in.
// A user who kills their own holder early ends only their own leases: eviction is
// per user, so only that user's running jobs could lose an entry.
#pragma once
#include <sys/types.h>

#include <vector>

#include "common/fd.hpp"

namespace aihpc::stage {

struct LeaseHolder {
    pid_t pid = -1;
    UniqueFd release;  // the pipe's write end: closing it ends the holder
    UniqueFd pidfd;    // the holder itself (pidfd_open)
};

// Spawns the holder (spawn_function, common/spawn.hpp), with `leases` and the pipe's read
// end as its only descriptors, each at its own number, and /dev/null on whichever of 0-2
// they leave. It outlives the stager: it ignores SIGTERM, SIGHUP, SIGINT, SIGQUIT,
// SIGUSR1, SIGUSR2, SIGPIPE and SIGALRM, and it is in a session of its own before it
// closes its copy of any descriptor it shares with the stager. slurmstepd kills the
// stager's process group once the stager's result socket and output have closed
// (common/node_helper.hpp), which is only once the holder closed its copies too: a
// holder still in that group then would die with it, its leases with it. The caller's
// copies of `leases` may be closed at once: a flock lives as long as any descriptor of
// its open file. Throws aihpc::Error.
LeaseHolder hold_leases(const std::vector<int>& leases);

// From slurmstepd, at the step's end: closes the pipe and kills the holder through its
// pidfd. Either descriptor may be any other kind of descriptor, which is then just
// closed; nothing here blocks.
void end_lease_holder(std::vector<UniqueFd>& descriptors);

}  // namespace aihpc::stage
