// The path of a tool built in this tree, for the tests that run a tool as a user would.
#pragma once
#include <limits.h>
#include <unistd.h>

#include <string>

// tools/NAME beside this test program (found through /proc/self/exe, also when libtool
// runs the program from tests/unit/.libs); empty when /proc is not there.
inline std::string built_tool(const std::string& name) {
    char self[PATH_MAX];
    ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return "";
    std::string dir(self, static_cast<std::size_t>(n));
    dir = dir.substr(0, dir.rfind('/'));
    if (dir.size() >= 6 && dir.compare(dir.size() - 6, 6, "/.libs") == 0) dir = dir.substr(0, dir.rfind('/'));
    return dir + "/../../tools/" + name;
}
