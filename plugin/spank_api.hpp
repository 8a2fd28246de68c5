// The one place that includes <slurm/spank.h>, and a thin C++ face over spank_t.
// spank.h declares its hook prototypes without an extern "C" guard, so C++ must wrap it.
#pragma once
extern "C" {
#include <slurm/spank.h>
}

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace aihpc::plugin {

class Spank {
public:
    explicit Spank(spank_t handle) : handle_(handle) {}

    spank_t handle() const { return handle_; }
    spank_context_t context() const { return spank_context(); }

    // Items; nullopt where the context does not provide them.
    std::optional<std::uint32_t> u32(spank_item_t item) const;
    std::optional<std::string> str(spank_item_t item) const;
    std::optional<uid_t> uid() const;
    std::optional<gid_t> gid() const;
    std::vector<gid_t> supplementary_gids() const;
    std::optional<int> task_id() const;
    // In task_exit: the task's wait status.
    std::optional<int> task_exit_status() const;

    // The job's environment (remote) or the process's (local, allocator).
    std::optional<std::string> getenv(const std::string& name) const;
    bool setenv(const std::string& name, const std::string& value) const;
    bool unsetenv(const std::string& name) const;

private:
    spank_t handle_;
};

}  // namespace aihpc::plugin
