#include "affinity/dist_env.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <cctype>
#include <fstream>
#include <memory>
#include <sstream>

#include "common/error.hpp"
#include "common/text.hpp"

namespace aihpc::affinity {

namespace {

// Splits at commas outside brackets.
std::vector<std::string> top_level_items(std::string_view text) {
    std::vector<std::string> items;
    std::string current;
    int depth = 0;
    for (char c : text) {
        if (c == '[') ++depth;
        if (c == ']') --depth;
        if (depth < 0) throw Error("malformed host list '" + std::string(text) + "': unbalanced ']'");
        if (c == ',' && depth == 0) {
            items.push_back(current);
            current.clear();
        } else {
            current += c;
        }
    }
    if (depth != 0) throw Error("malformed host list '" + std::string(text) + "': unbalanced '['");
    items.push_back(current);
    return items;
}

std::string pad(std::uint64_t value, std::size_t width) {
    std::string text = std::to_string(value);
    if (text.size() < width) text.insert(0, width - text.size(), '0');
    return text;
}

// "pre[1-3,7]post" -> pre1post pre2post pre3post pre7post; nested ranges are expanded
// left to right ("r[1-2]n[1-2]").
void expand_item(const std::string& item, std::vector<std::string>& out) {
    auto open = item.find('[');
    if (open == std::string::npos) {
        if (!item.empty()) out.push_back(item);
        return;
    }
    auto close = item.find(']', open);
    if (close == std::string::npos) throw Error("malformed host list item '" + item + "'");
    std::string prefix = item.substr(0, open), suffix = item.substr(close + 1);
    for (const std::string& range : split(item.substr(open + 1, close - open - 1), ',')) {
        auto dash = range.find('-');
        std::string lo_text = range.substr(0, dash);
        std::string hi_text = dash == std::string::npos ? lo_text : range.substr(dash + 1);
        auto lo = parse_uint(lo_text), hi = parse_uint(hi_text);
        if (!lo || !hi || *lo > *hi || *hi - *lo > 1000000)
            throw Error("malformed host list range '[" + range + "]' in '" + item + "'");
        for (std::uint64_t v = *lo; v <= *hi; ++v) expand_item(prefix + pad(v, lo_text.size()) + suffix, out);
    }
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
    return true;
}

std::optional<std::string> resolve_address(const std::string& name) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* raw = nullptr;
    if (getaddrinfo(name.c_str(), nullptr, &hints, &raw) != 0 || raw == nullptr) return std::nullopt;
    std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> result(raw, freeaddrinfo);
    // IPv4 first: it is what rendezvous code most often expects in MASTER_ADDR.
    for (int family : {AF_INET, AF_INET6}) {
        for (addrinfo* ai = result.get(); ai; ai = ai->ai_next) {
            if (ai->ai_family != family) continue;
            char text[INET6_ADDRSTRLEN] = {};
            const void* addr = family == AF_INET ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(ai->ai_addr)->sin_addr)
                                                 : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(ai->ai_addr)->sin6_addr);
            if (inet_ntop(family, addr, text, sizeof text)) return std::string(text);
        }
    }
    return std::nullopt;
}

}  // namespace

std::vector<std::string> expand_hostlist(std::string_view hostlist) {
    std::vector<std::string> hosts;
    for (const std::string& item : top_level_items(trim(hostlist))) expand_item(std::string(trim(item)), hosts);
    return hosts;
}

std::string first_host(std::string_view hostlist) {
    std::vector<std::string> items = top_level_items(trim(hostlist));
    std::string item(trim(items.front()));
    auto open = item.find('[');
    if (open == std::string::npos) return item;
    auto close = item.find(']', open);
    if (close == std::string::npos) throw Error("malformed host list '" + std::string(hostlist) + "'");
    std::string first_range = split(item.substr(open + 1, close - open - 1), ',').front();
    std::string lo = first_range.substr(0, first_range.find('-'));
    return first_host(item.substr(0, open) + lo + item.substr(close + 1));
}

std::optional<std::string> node_addr_from_aliases(std::string_view aliases, const std::string& node) {
    for (const std::string& entry : split(trim(aliases), ',')) {
        auto first = entry.find(':');
        if (first == std::string::npos || entry.substr(0, first) != node) continue;
        std::string rest = entry.substr(first + 1);
        std::string addr;
        if (!rest.empty() && rest.front() == '[') {
            auto close = rest.find(']');
            if (close == std::string::npos) return std::nullopt;
            addr = rest.substr(1, close - 1);
        } else {
            addr = rest.substr(0, rest.find(':'));
        }
        if (!addr.empty()) return addr;
    }
    return std::nullopt;
}

std::optional<std::string> node_addr_from_slurm_conf(std::string_view conf_text, const std::string& node) {
    std::istringstream in{std::string(conf_text)};
    std::string line;
    while (std::getline(in, line)) {
        line = line.substr(0, line.find('#'));
        std::istringstream words(line);
        std::string word, names, addrs;
        while (words >> word) {
            auto eq = word.find('=');
            if (eq == std::string::npos) continue;
            std::string key = word.substr(0, eq), value = word.substr(eq + 1);
            if (iequals(key, "NodeName")) names = value;
            else if (iequals(key, "NodeAddr")) addrs = value;
        }
        if (names.empty() || iequals(names, "DEFAULT")) continue;
        std::vector<std::string> hosts;
        try {
            hosts = expand_hostlist(names);
        } catch (const Error&) {
            continue;
        }
        for (std::size_t i = 0; i < hosts.size(); ++i) {
            if (hosts[i] != node) continue;
            if (addrs.empty()) return std::nullopt;
            std::vector<std::string> addr_list;
            try {
                addr_list = expand_hostlist(addrs);
            } catch (const Error&) {
                return std::nullopt;
            }
            if (addr_list.size() == hosts.size()) return addr_list[i];
            return addr_list.front();
        }
    }
    return std::nullopt;
}

unsigned master_port(std::uint32_t job_id, std::uint32_t step_id) {
    // splitmix64: consecutive job ids land far apart, so neighbours rarely collide.
    std::uint64_t x = (static_cast<std::uint64_t>(job_id) << 32) | step_id;
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return 20000 + static_cast<unsigned>(x % 20000);
}

std::map<std::string, std::string> torch_env(const DistShape& shape) {
    return {
        {"MASTER_ADDR", shape.master_addr},
        {"MASTER_PORT", std::to_string(master_port(shape.job_id, shape.step_id))},
        {"WORLD_SIZE", std::to_string(shape.world_size)},
        {"RANK", std::to_string(shape.rank)},
        {"LOCAL_RANK", std::to_string(shape.local_rank)},
        {"LOCAL_WORLD_SIZE", std::to_string(shape.local_world_size)},
        {"NODE_RANK", std::to_string(shape.node_rank)},
    };
}

std::string resolve_master_addr(const std::string& nodelist, const std::string& aliases,
                                const std::vector<std::string>& slurm_conf_paths) {
    std::string node = first_host(nodelist);
    if (node.empty()) throw Error("the step's node list '" + nodelist + "' names no node");
    if (auto addr = node_addr_from_aliases(aliases, node)) return *addr;
    for (const std::string& path : slurm_conf_paths) {
        std::ifstream file(path);
        if (!file) continue;
        std::stringstream text;
        text << file.rdbuf();
        if (auto addr = node_addr_from_slurm_conf(text.str(), node)) return *addr;
        break;  // the first readable slurm.conf is the one in force
    }
    if (auto addr = resolve_address(node)) return *addr;
    return node;
}

}  // namespace aihpc::affinity
