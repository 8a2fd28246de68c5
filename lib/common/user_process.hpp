// Work that root does for a user (slurmstepd staging a job's data) runs in a forked child
// that drops to the user's ids itself before touching the user's files: setgroups, then
// setregid, then setreuid, each checked, as a setuid program would. A fault in the child
// then acts with the user's rights only, and cannot take the parent down.
#pragma once
#include <sys/types.h>

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"

namespace aihpc {

struct UserIds {
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups;  // supplementary groups; empty: none
};

// What the child's parts send back to the parent while they run.
class ChildReport {
public:
    explicit ChildReport(int fd) noexcept : fd_(fd) {}
    // A note for the parent's log; run_as_user returns the notes in the order made.
    void note(std::string_view text) const noexcept;
    // The error that ends the child; run_as_user throws it as aihpc::Error.
    void error(std::string_view text) const noexcept;

private:
    int fd_;
};

// The child ended without an error of its own: a signal killed it, or it exited with a
// status other than 0 before it could say why.
class ChildDied : public Error {
public:
    using Error::Error;
};

// In a forked child: runs root_part as root (euid and egid 0, regained when the caller
// had set them to the user's), then drops to `user` for good and runs user_part. Waits
// for the child and returns the notes its parts made. An exception out of either part
// comes back as aihpc::Error with its message, and ChildDied says how a child that did
// not report ended. `purpose` names the child in messages ("the staging child died").
// Needs a real uid of 0.
std::vector<std::string> run_as_user(const UserIds& user, std::string_view purpose,
                                     const std::function<void(const ChildReport&)>& root_part,
                                     const std::function<void(const ChildReport&)>& user_part);

}  // namespace aihpc
