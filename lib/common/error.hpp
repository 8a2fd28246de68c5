// Errors carry a complete, user-facing sentence: what failed, where, and what to do.
// The prefix (aihpc: or aihpc-TOOL:) is added by whoever prints it.
#pragma once
#include <stdexcept>
#include <string>

namespace aihpc {

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// A system call failed: the message names the call's purpose and the path, and the
// errno text is appended.
class SystemError : public Error {
public:
    SystemError(const std::string& what_failed, int err);
    int code() const noexcept { return err_; }

private:
    int err_;
};

[[noreturn]] void throw_errno(const std::string& what_failed);

}  // namespace aihpc
