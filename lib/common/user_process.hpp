// Who a piece of node work runs as: the job's user, with the groups Slurm gave the job.
#pragma once
#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace aihpc {

struct UserIds {
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups;  // supplementary groups; empty: none
};

// A user's ids from the system's user database (getpwuid_r, getgrouplist): for work done
// for a job whose groups Slurm no longer gives, such as its epilog's. Nullopt when the
// database does not know the uid.
std::optional<UserIds> user_ids_of(uid_t uid);
// The same for a user name (the site's shared_user).
std::optional<UserIds> user_ids_of_name(const std::string& name);

}  // namespace aihpc
