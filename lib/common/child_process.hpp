// RAII for the two halves of running a child: the pipe its output comes back through,
// and the child itself, reaped on every path.
#pragma once
#include <sys/types.h>

#include "common/fd.hpp"

namespace aihpc {

// Both ends close on every path, and on exec (O_CLOEXEC): only a child that keeps an end
// on purpose (dup2 onto 1 or 2) passes it to a program.
struct Pipe {
    Pipe();  // throws aihpc::SystemError
    UniqueFd read;
    UniqueFd write;
};

// A child (spawn.hpp) that no path leaves behind as a zombie. The owner waits for it; an owner
// that leaves early (an exception) kills it first, since nobody would read what it
// writes or act on how it ended.
class ChildProcess {
public:
    explicit ChildProcess(pid_t pid) noexcept : pid_(pid) {}
    ChildProcess(ChildProcess&& other) noexcept : pid_(other.pid_) { other.pid_ = -1; }
    ChildProcess& operator=(ChildProcess&& other) noexcept;
    ChildProcess(const ChildProcess&) = delete;
    ChildProcess& operator=(const ChildProcess&) = delete;
    ~ChildProcess();

    // The child's pid; -1 once it is reaped or forgotten.
    pid_t pid() const noexcept { return pid_; }

    // Waits until the child ends; returns its waitpid() status (WIFEXITED, ...), or exit
    // code 255 when the status cannot be read, so that never passes for a success.
    int wait() noexcept;
    // The owner has reaped the child itself, or gives up on a child stuck in the kernel:
    // the destructor then neither kills nor waits.
    void forget() noexcept { pid_ = -1; }
    // For a child that outlives its owner on purpose (the cache lease holder): its pid,
    // which nothing here kills or reaps any more.
    pid_t release() noexcept {
        pid_t pid = pid_;
        pid_ = -1;
        return pid;
    }

private:
    pid_t pid_;
};

}  // namespace aihpc
