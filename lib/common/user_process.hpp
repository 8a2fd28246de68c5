// Who a piece of node work runs as: the job's user, with the groups Slurm gave the job.
#pragma once
#include <sys/types.h>

#include <vector>

namespace aihpc {

struct UserIds {
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups;  // supplementary groups; empty: none
};

}  // namespace aihpc
