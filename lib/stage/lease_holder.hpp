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

// Spawns the holder (spawn_function, common/spawn.hpp), in a session of its own (so that
// the end of the stager's process group leaves it), with `leases` and the pipe's read end
// as its only descriptors but /dev/null on 0-2. The caller's copies of `leases` may be
// closed at once: a flock lives as long as any descriptor of its open file. Throws
// aihpc::Error.
LeaseHolder hold_leases(const std::vector<int>& leases);

// From slurmstepd, at the step's end: closes the pipe and kills the holder through its
// pidfd. Either descriptor may be any other kind of descriptor, which is then just
// closed; nothing here blocks.
void end_lease_holder(std::vector<UniqueFd>& descriptors);

}  // namespace aihpc::stage
