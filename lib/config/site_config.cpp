#include "config/site_config.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <set>

#include "common/error.hpp"
#include "common/text.hpp"

namespace aihpc::config {

namespace {

[[noreturn]] void bad_key(const std::string& key, const std::string& why) {
    throw Error("site key " + key + ": " + why);
}

std::vector<std::string> parse_dir_list(const std::string& key, const std::string& value, bool allow_empty) {
    std::vector<std::string> dirs;
    if (value.empty()) {
        if (allow_empty) return dirs;
        bad_key(key, "needs DIR[:DIR...]");
    }
    for (std::string dir : split(value, ':')) {
        if (dir.empty() || dir.front() != '/') bad_key(key, "'" + dir + "' must be an absolute directory");
        while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
        dirs.push_back(dir);
    }
    return dirs;
}

bool parse_yes_no(const std::string& key, const std::string& value) {
    if (value == "yes" || value == "true" || value == "1") return true;
    if (value == "no" || value == "false" || value == "0") return false;
    bad_key(key, "'" + value + "' is not yes or no");
}

}  // namespace

std::uint64_t SizeLimit::resolve(std::uint64_t filesystem_bytes) const {
    if (!is_percent) return bytes;
    return static_cast<std::uint64_t>(static_cast<long double>(filesystem_bytes) * percent / 100.0L);
}

std::string SizeLimit::text() const {
    if (is_percent) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%g%%", percent);
        return buf;
    }
    return std::to_string(bytes);
}

SizeLimit parse_size_limit(const std::string& what, const std::string& text) {
    SizeLimit limit;
    if (text.empty()) bad_key(what, "is empty; give bytes with a K/M/G/T suffix, or N%");
    if (text.back() == '%') {
        std::string number = text.substr(0, text.size() - 1);
        char* end = nullptr;
        double value = std::strtod(number.c_str(), &end);
        if (number.empty() || *end != '\0' || !(value > 0.0) || value > 100.0)
            bad_key(what, "'" + text + "' is not a share between 0% and 100%");
        limit.is_percent = true;
        limit.percent = value;
        return limit;
    }
    std::string number = text;
    std::uint64_t scale = 1;
    switch (number.back()) {
    case 'K': case 'k': scale = 1ull << 10; break;
    case 'M': case 'm': scale = 1ull << 20; break;
    case 'G': case 'g': scale = 1ull << 30; break;
    case 'T': case 't': scale = 1ull << 40; break;
    default: break;
    }
    if (scale != 1) number.pop_back();
    auto value = parse_uint(number);
    if (!value || *value == 0 || *value > (~0ull) / scale)
        bad_key(what, "'" + text + "' is not a size; use bytes with a K/M/G/T suffix, or N%");
    limit.is_percent = false;
    limit.bytes = *value * scale;
    return limit;
}

unsigned parse_duration(const std::string& what, const std::string& text) {
    std::string number = text;
    unsigned scale = 1;
    if (!number.empty()) {
        switch (number.back()) {
        case 's': number.pop_back(); break;
        case 'm': scale = 60; number.pop_back(); break;
        case 'h': scale = 3600; number.pop_back(); break;
        case 'd': scale = 86400; number.pop_back(); break;
        default: break;
        }
    }
    auto value = parse_uint(number);
    constexpr std::uint64_t longest = 30ull * 86400;
    if (!value || *value == 0 || *value > longest / scale)
        bad_key(what, "'" + text + "' is not a duration from 1s to 30d (a number with s, m, h or d)");
    return static_cast<unsigned>(*value * scale);
}

std::string SiteConfig::local_root_for(const std::string& node_name) const {
    std::string out;
    for (std::size_t i = 0; i < local_root.size(); ++i) {
        if (local_root[i] == '%' && i + 1 < local_root.size() && local_root[i + 1] == 'n') {
            out += node_name;
            ++i;
        } else {
            out += local_root[i];
        }
    }
    return out;
}

std::uint64_t SiteConfig::cache_low_bytes(std::uint64_t filesystem_bytes) const {
    if (cache_low) return cache_low->resolve(filesystem_bytes);
    return cache_max.resolve(filesystem_bytes) / 10 * 9;
}

std::uint64_t SiteConfig::cache_shared_max_bytes(std::uint64_t filesystem_bytes) const {
    std::uint64_t whole = cache_max.resolve(filesystem_bytes);
    if (!cache_shared_max) return whole / 2;
    return std::min(whole, cache_shared_max->resolve(filesystem_bytes));
}

std::uint64_t SiteConfig::cache_user_max_bytes(std::uint64_t filesystem_bytes) const {
    std::uint64_t whole = cache_max.resolve(filesystem_bytes);
    if (!cache_user_max) return whole;
    return std::min(whole, cache_user_max->resolve(filesystem_bytes));
}

const std::vector<std::string>& known_runtimes() {
    static const std::vector<std::string> names = {"apptainer", "singularity", "charliecloud", "enroot", "podman"};
    return names;
}

namespace {

// The node cache's keys; false for any other key.
bool parse_cache_key(SiteConfig& site, const std::string& key, const std::string& value) {
    if (key == "cache_max") {
        site.cache_max = parse_size_limit(key, value);
    } else if (key == "cache_low") {
        site.cache_low = parse_size_limit(key, value);
    } else if (key == "cache_user_max") {
        site.cache_user_max = parse_size_limit(key, value);
    } else if (key == "cache_user_inodes") {
        auto n = parse_uint(value);
        if (!n || *n == 0 || *n > cache_user_inodes_max)
            bad_key(key, "'" + value + "' is not a number of files and directories from 1 to " +
                             std::to_string(cache_user_inodes_max));
        site.cache_user_inodes = *n;
    } else if (key == "cache_shared") {
        if (value != "on" && value != "off") bad_key(key, "'" + value + "' is not on or off");
        site.cache_shared = value == "on";
    } else if (key == "shared_user") {
        if (value.empty() || value == "root" || value.find_first_of("/:, ") != std::string::npos)
            bad_key(key, "'" + value + "' is not the name of an unprivileged user");
        site.shared_user = value;
    } else if (key == "cache_shared_max") {
        site.cache_shared_max = parse_size_limit(key, value);
    } else {
        return false;
    }
    return true;
}

}  // namespace

SiteConfig parse_site_config(const std::vector<std::string>& args) {
    SiteConfig site;
    std::set<std::string> seen;
    for (const std::string& arg : args) {
        std::size_t eq = arg.find('=');
        if (eq == std::string::npos || eq == 0)
            throw Error("site argument '" + arg + "' is not key=value; see aihpc(8) for the keys");
        std::string key = arg.substr(0, eq), value = arg.substr(eq + 1);
        if (!seen.insert(key).second) bad_key(key, "is given twice");
        if (key == "local_root") {
            if (value.empty() || value.front() != '/') bad_key(key, "'" + value + "' must be an absolute directory");
            for (const std::string& part : split(value, '/'))
                if (part == "..") bad_key(key, "'" + value + "' must not contain '..'");
            site.local_root = value;
        } else if (parse_cache_key(site, key, value)) {
        } else if (key == "stage_timeout") {
            site.stage_timeout_s = parse_duration(key, value);
        } else if (key == "epilog_deliver_timeout") {
            site.epilog_deliver_timeout_s = value == "0" ? 0 : parse_duration(key, value);
        } else if (key == "keep_failed_days") {
            auto n = parse_uint(value);
            if (!n || *n > 3650) bad_key(key, "'" + value + "' is not a number of days from 0 to 3650");
            site.keep_failed_days = static_cast<unsigned>(*n);
        } else if (key == "stage_allow") {
            site.stage_allow = parse_dir_list(key, value, true);
        } else if (key == "stage_threads") {
            auto n = parse_uint(value);
            if (!n || *n == 0 || *n > 256) bad_key(key, "'" + value + "' is not a thread count from 1 to 256");
            site.stage_threads = static_cast<unsigned>(*n);
        } else if (key == "stage_fanout") {
            if (value != "auto" && value != "off") bad_key(key, "'" + value + "' is not auto or off");
            site.stage_fanout = value == "auto";
        } else if (key == "gravity") {
            if (value != "off" && value != "prefer") bad_key(key, "'" + value + "' is not off or prefer");
            site.gravity_default = value == "prefer";
        } else if (key == "gravity_features") {
            auto n = parse_uint(value);
            if (!n || *n > 256) bad_key(key, "'" + value + "' is not a number of features from 0 to 256");
            site.gravity_features = static_cast<unsigned>(*n);
        } else if (key == "container_runtimes") {
            if (value.empty()) bad_key(key, "needs a comma-separated list of runtimes");
            for (const std::string& name : split(value, ',')) {
                bool known = false;
                for (const std::string& k : known_runtimes()) known = known || k == name;
                if (!known) bad_key(key, "unknown runtime '" + name + "'; use " + join(known_runtimes(), ", "));
                site.container_runtimes.push_back(name);
            }
        } else if (key == "container_default") {
            bool known = false;
            for (const std::string& k : known_runtimes()) known = known || k == value;
            if (!known) bad_key(key, "unknown runtime '" + value + "'; use " + join(known_runtimes(), ", "));
            site.container_default = value;
        } else if (key == "image_allow") {
            site.image_allow = parse_dir_list(key, value, true);
        } else if (key == "registry") {
            site.registry = parse_yes_no(key, value);
        } else if (key == "runtime_path") {
            site.runtime_path = parse_dir_list(key, value, false);
        } else if (key == "bind_default") {
            if (value != "auto" && value != "none") bad_key(key, "'" + value + "' is not auto or none");
            site.bind_default = value == "auto" ? BindMode::auto_ : BindMode::none;
        } else if (key == "checkpoint_root") {
            if (value.empty() || value.front() != '/') bad_key(key, "'" + value + "' must be an absolute directory");
            for (const std::string& part : split(value, '/'))
                if (part == "..") bad_key(key, "'" + value + "' must not contain '..'");
            site.checkpoint_root = value;
        } else if (key == "dist_default") {
            if (value != "torch" && value != "none") bad_key(key, "'" + value + "' is not torch or none");
            site.dist_default = value == "torch" ? DistKind::torch : DistKind::none;
        } else {
            throw Error("unknown site key '" + key +
                        "'; known keys: local_root, cache_max, cache_low, cache_user_max, cache_user_inodes, stage_allow, stage_threads, "
                        "stage_timeout, stage_fanout, cache_shared, shared_user, cache_shared_max, gravity, gravity_features, "
                        "epilog_deliver_timeout, keep_failed_days, "
                        "container_runtimes, container_default, image_allow, registry, runtime_path, "
                        "bind_default, dist_default, checkpoint_root");
        }
    }
    if (!site.container_default.empty() && !site.container_runtimes.empty()) {
        bool allowed = false;
        for (const std::string& r : site.container_runtimes) allowed = allowed || r == site.container_default;
        if (!allowed) bad_key("container_default", "'" + site.container_default + "' is not in container_runtimes");
    }
    if (site.cache_low && site.cache_low->is_percent == site.cache_max.is_percent) {
        bool above = site.cache_low->is_percent ? site.cache_low->percent > site.cache_max.percent
                                                : site.cache_low->bytes > site.cache_max.bytes;
        if (above) bad_key("cache_low", "must not exceed cache_max (" + site.cache_max.text() + ")");
    }
    return site;
}

}  // namespace aihpc::config
