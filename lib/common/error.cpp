#include "common/error.hpp"

#include <cerrno>
#include <cstring>

namespace aihpc {

SystemError::SystemError(const std::string& what_failed, int err)
    : Error(what_failed + ": " + std::strerror(err)), err_(err) {}

void throw_errno(const std::string& what_failed) { throw SystemError(what_failed, errno); }

}  // namespace aihpc
