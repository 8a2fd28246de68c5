#include "plugin/spank_api.hpp"

#include <cstdlib>

namespace aihpc::plugin {

std::optional<std::uint32_t> Spank::u32(spank_item_t item) const {
    std::uint32_t value = 0;
    if (spank_get_item(handle_, item, &value) != ESPANK_SUCCESS) return std::nullopt;
    return value;
}

std::optional<std::string> Spank::str(spank_item_t item) const {
    char* value = nullptr;
    if (spank_get_item(handle_, item, &value) != ESPANK_SUCCESS || !value) return std::nullopt;
    return std::string(value);
}

std::optional<uid_t> Spank::uid() const {
    uid_t value = 0;
    if (spank_get_item(handle_, S_JOB_UID, &value) != ESPANK_SUCCESS) return std::nullopt;
    return value;
}

std::optional<gid_t> Spank::gid() const {
    gid_t value = 0;
    if (spank_get_item(handle_, S_JOB_GID, &value) != ESPANK_SUCCESS) return std::nullopt;
    return value;
}

std::vector<gid_t> Spank::supplementary_gids() const {
    gid_t* gids = nullptr;
    int count = 0;
    if (spank_get_item(handle_, S_JOB_SUPPLEMENTARY_GIDS, &gids, &count) != ESPANK_SUCCESS || !gids) return {};
    return std::vector<gid_t>(gids, gids + count);
}

std::optional<int> Spank::task_id() const {
    int value = 0;
    if (spank_get_item(handle_, S_TASK_ID, &value) != ESPANK_SUCCESS) return std::nullopt;
    return value;
}

std::optional<int> Spank::task_exit_status() const {
    int value = 0;
    if (spank_get_item(handle_, S_TASK_EXIT_STATUS, &value) != ESPANK_SUCCESS) return std::nullopt;
    return value;
}

std::optional<std::string> Spank::getenv(const std::string& name) const {
    if (context() != S_CTX_REMOTE) {
        const char* value = std::getenv(name.c_str());
        if (!value) return std::nullopt;
        return std::string(value);
    }
    std::vector<char> buf(4096);
    while (true) {
        spank_err_t rc = spank_getenv(handle_, name.c_str(), buf.data(), static_cast<int>(buf.size()));
        if (rc == ESPANK_SUCCESS) return std::string(buf.data());
        if (rc != ESPANK_NOSPACE || buf.size() > (1u << 24)) return std::nullopt;
        buf.resize(buf.size() * 4);
    }
}

bool Spank::setenv(const std::string& name, const std::string& value) const {
    if (context() != S_CTX_REMOTE) return ::setenv(name.c_str(), value.c_str(), 1) == 0;
    return spank_setenv(handle_, name.c_str(), value.c_str(), 1) == ESPANK_SUCCESS;
}

bool Spank::unsetenv(const std::string& name) const {
    if (context() != S_CTX_REMOTE) return ::unsetenv(name.c_str()) == 0;
    return spank_unsetenv(handle_, name.c_str()) == ESPANK_SUCCESS;
}

}  // namespace aihpc::plugin
