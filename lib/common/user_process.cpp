#include "common/user_process.hpp"

#include <grp.h>
#include <pwd.h>

#include <vector>

namespace aihpc {

std::optional<UserIds> user_ids_of(uid_t uid) {
    struct passwd pw {};
    struct passwd* found = nullptr;
    std::vector<char> buf(16384);
    if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) != 0 || !found) return std::nullopt;
    UserIds ids{uid, pw.pw_gid, {}};
    int count = 64;
    for (int tries = 0; tries < 4; ++tries) {
        ids.groups.resize(static_cast<std::size_t>(count));
        int n = count;
        if (::getgrouplist(pw.pw_name, pw.pw_gid, ids.groups.data(), &n) >= 0) {
            ids.groups.resize(static_cast<std::size_t>(n));
            return ids;
        }
        count = n > count ? n : count * 2;
    }
    ids.groups.clear();
    return ids;
}

std::optional<UserIds> user_ids_of_name(const std::string& name) {
    struct passwd pw {};
    struct passwd* found = nullptr;
    std::vector<char> buf(16384);
    if (::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || !found) return std::nullopt;
    return user_ids_of(pw.pw_uid);
}

}  // namespace aihpc
