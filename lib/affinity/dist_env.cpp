#include "affinity/dist_env.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

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

// One bracket of a host list item: its ranges, each with the width its low bound was
// written in ("[01-10]" pads to two digits).
struct HostRange {
    std::uint64_t lo, hi;
    std::size_t width;
};
struct HostBracket {
    std::string literal_before;  // the text between the previous bracket and this one
    std::vector<HostRange> ranges;
};

// The names of one slurm.conf are bounded as a whole, well above any cluster's node
// count: nested ranges multiply, so a few lines of them would otherwise hold a step for
// seconds. A host name longer than DNS allows is refused: no Slurm node has one.
constexpr std::size_t max_hostlist_names = 262144;
constexpr std::size_t max_host_name = 255;

// "pre[1-3,7]post" -> pre1post pre2post pre3post pre7post; several brackets are expanded
// left to right, the last varying fastest ("r[1-2]n[1-2]" -> r1n1 r1n2 r2n1 r2n2). The
// item is parsed once and each name built once in a reused buffer, so the cost is the
// bytes of the names produced, whatever the nesting.
void expand_item(const std::string& item, std::vector<std::string>& out, std::size_t limit) {
    std::vector<HostBracket> brackets;
    std::string tail;
    std::size_t literal_bytes = 0, pos = 0;
    while (true) {
        auto open = item.find('[', pos);
        if (open == std::string::npos) {
            tail = item.substr(pos);
            literal_bytes += tail.size();
            break;
        }
        auto close = item.find(']', open);
        if (close == std::string::npos) throw Error("malformed host list item '" + item + "'");
        HostBracket bracket{item.substr(pos, open - pos), {}};
        for (const std::string& range : split(item.substr(open + 1, close - open - 1), ',')) {
            auto dash = range.find('-');
            std::string lo_text = range.substr(0, dash);
            std::string hi_text = dash == std::string::npos ? lo_text : range.substr(dash + 1);
            auto lo = parse_uint(lo_text), hi = parse_uint(hi_text);
            if (!lo || !hi || *lo > *hi || *hi - *lo > 1000000)
                throw Error("malformed host list range '[" + range + "]' in '" + item + "'");
            bracket.ranges.push_back({*lo, *hi, lo_text.size()});
        }
        literal_bytes += bracket.literal_before.size();
        brackets.push_back(std::move(bracket));
        pos = close + 1;
        // Each bracket adds at least one character to every name.
        if (literal_bytes + brackets.size() > max_host_name)
            throw Error("host list item '" + item + "' makes host names longer than " + std::to_string(max_host_name) + " characters");
    }
    if (brackets.empty()) {
        if (item.empty()) return;
        if (item.size() > max_host_name) throw Error("host name '" + item + "' is longer than " + std::to_string(max_host_name) + " characters");
        if (out.size() >= limit) throw Error("host list names more than " + std::to_string(limit) + " hosts");
        out.push_back(item);
        return;
    }
    // An odometer: for each bracket, which range and which value in it.
    std::vector<std::size_t> range_at(brackets.size(), 0);
    std::vector<std::uint64_t> value_at(brackets.size());
    for (std::size_t b = 0; b < brackets.size(); ++b) value_at[b] = brackets[b].ranges.front().lo;
    std::string name;
    while (true) {
        if (out.size() >= limit)
            throw Error("host list '" + item + "' names more than " + std::to_string(limit) + " hosts");
        name.clear();
        for (std::size_t b = 0; b < brackets.size(); ++b) {
            name += brackets[b].literal_before;
            name += pad(value_at[b], brackets[b].ranges[range_at[b]].width);
            if (name.size() > max_host_name) break;
        }
        name += tail;
        if (name.size() > max_host_name)
            throw Error("host list item '" + item + "' makes host names longer than " + std::to_string(max_host_name) + " characters");
        out.push_back(name);
        // Advance the last bracket; carry into the one before when it wraps.
        std::size_t b = brackets.size();
        while (b > 0) {
            --b;
            const HostBracket& bracket = brackets[b];
            if (value_at[b] < bracket.ranges[range_at[b]].hi) {
                ++value_at[b];
                break;
            }
            if (range_at[b] + 1 < bracket.ranges.size()) {
                value_at[b] = bracket.ranges[++range_at[b]].lo;
                break;
            }
            range_at[b] = 0;
            value_at[b] = bracket.ranges.front().lo;
            if (b == 0) return;
        }
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

namespace {

// Into `hosts`, which keeps what was expanded when it throws, so the caller can count it.
void expand_hostlist_into(std::string_view hostlist, std::vector<std::string>& hosts, std::size_t limit) {
    for (const std::string& item : top_level_items(trim(hostlist))) expand_item(std::string(trim(item)), hosts, limit);
}

}  // namespace

std::vector<std::string> expand_hostlist(std::string_view hostlist) {
    std::vector<std::string> hosts;
    expand_hostlist_into(hostlist, hosts, max_hostlist_names);
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
    std::size_t names_left = max_hostlist_names;
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
        // Every name expanded counts against one budget for the whole file.
        std::vector<std::string> hosts;
        bool whole = true;
        try {
            expand_hostlist_into(names, hosts, names_left);
        } catch (const Error&) {
            whole = false;
        }
        names_left -= std::min(names_left, hosts.size());
        if (!whole) {
            if (names_left == 0) return std::nullopt;
            continue;
        }
        for (std::size_t i = 0; i < hosts.size(); ++i) {
            if (hosts[i] != node) continue;
            if (addrs.empty()) return std::nullopt;
            std::vector<std::string> addr_list;
            try {
                expand_hostlist_into(addrs, addr_list, std::max<std::size_t>(names_left, 1));
            } catch (const Error&) {
                return std::nullopt;
            }
            if (addr_list.size() == hosts.size()) return addr_list[i];
            return addr_list.front();
        }
    }
    return std::nullopt;
}

PortRange ephemeral_ports(const std::string& path) {
    PortRange range;
    std::ifstream file(path);
    unsigned low = 0, high = 0;
    if (file >> low >> high && low >= 1 && low <= high && high <= 65535) {
        range.low = low;
        range.high = high;
    }
    return range;
}

std::set<unsigned> slurm_conf_ports(std::string_view conf_text) {
    std::set<unsigned> ports;
    auto add_range = [&ports](const std::string& value) {
        auto dash = value.find('-');
        auto lo = parse_uint(value.substr(0, dash));
        auto hi = dash == std::string::npos ? lo : parse_uint(value.substr(dash + 1));
        if (!lo || !hi || *lo > *hi || *hi > 65535) return;
        for (std::uint64_t p = *lo; p <= *hi; ++p) ports.insert(static_cast<unsigned>(p));
    };
    std::istringstream in{std::string(conf_text)};
    std::string line;
    while (std::getline(in, line)) {
        line = line.substr(0, line.find('#'));
        std::istringstream words(line);
        std::string word;
        while (words >> word) {
            auto eq = word.find('=');
            if (eq == std::string::npos) continue;
            std::string key = word.substr(0, eq), value = word.substr(eq + 1);
            if (iequals(key, "SlurmctldPort") || iequals(key, "SlurmdPort") || iequals(key, "SrunPortRange") ||
                iequals(key, "Port"))
                add_range(value);
        }
    }
    return ports;
}

PortRange master_port_window(const PortRange& ephemeral) {
    constexpr unsigned enough = 2000;
    if (ephemeral.low > 20000 + enough) return PortRange{20000, ephemeral.low - 1};
    if (ephemeral.high + enough < 65535) return PortRange{std::max(ephemeral.high + 1, 20000u), 65535};
    return PortRange{1024, 65535};
}

namespace {

std::uint64_t mix(std::uint32_t job_id, std::uint32_t step_id) {
    // splitmix64: consecutive job ids land far apart, so neighbours rarely collide.
    std::uint64_t x = (static_cast<std::uint64_t>(job_id) << 32) | step_id;
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

}  // namespace

std::vector<unsigned> master_port_candidates(std::uint32_t job_id, std::uint32_t step_id, const PortRange& ephemeral,
                                             const std::set<unsigned>& reserved, std::size_t count) {
    const PortRange window = master_port_window(ephemeral);
    const unsigned size = window.high - window.low + 1;
    std::vector<unsigned> out;
    const unsigned start = static_cast<unsigned>(mix(job_id, step_id) % size);
    for (unsigned i = 0; i < size && out.size() < count; ++i) {
        unsigned port = window.low + (start + i) % size;
        if (port >= ephemeral.low && port <= ephemeral.high) continue;
        if (reserved.count(port)) continue;
        out.push_back(port);
    }
    return out;
}

unsigned master_port(std::uint32_t job_id, std::uint32_t step_id) {
    return master_port_candidates(job_id, step_id, PortRange{}, {}, 1).front();
}

bool port_free_here(unsigned port) {
    for (int family : {AF_INET, AF_INET6}) {
        int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) continue;   // no IPv6 here: nothing to collide with
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        int rc;
        if (family == AF_INET) {
            sockaddr_in a{};
            a.sin_family = AF_INET;
            a.sin_port = htons(static_cast<std::uint16_t>(port));
            a.sin_addr.s_addr = htonl(INADDR_ANY);
            rc = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
        } else {
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
            sockaddr_in6 a{};
            a.sin6_family = AF_INET6;
            a.sin6_port = htons(static_cast<std::uint16_t>(port));
            a.sin6_addr = in6addr_any;
            rc = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
        }
        int err = errno;
        close(fd);
        if (rc != 0 && err == EADDRINUSE) return false;
    }
    return true;
}

bool port_listening_at(const std::string& addr, unsigned port, int timeout_ms) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* raw = nullptr;
    if (getaddrinfo(addr.c_str(), std::to_string(port).c_str(), &hints, &raw) != 0 || raw == nullptr) return false;
    std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> result(raw, freeaddrinfo);
    for (addrinfo* ai = result.get(); ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) continue;
        bool listening = false;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            listening = true;
        } else if (errno == EINPROGRESS) {
            pollfd p{fd, POLLOUT, 0};
            if (poll(&p, 1, timeout_ms) == 1) {
                int err = 0;
                socklen_t len = sizeof err;
                listening = getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
            }
        }
        close(fd);
        if (listening) return true;
    }
    return false;
}

unsigned choose_master_port(const std::vector<unsigned>& candidates, bool on_master_node, const std::string& master_addr) {
    for (unsigned port : candidates) {
        bool free = on_master_node ? port_free_here(port) : !port_listening_at(master_addr, port, 200);
        if (free) return port;
    }
    return candidates.empty() ? 0 : candidates.front();
}

DistShape batch_step_shape(DistShape shape) {
    shape.world_size = 1;
    shape.rank = 0;
    shape.local_rank = 0;
    shape.local_world_size = 1;
    shape.node_rank = 0;
    shape.node_count = 1;
    return shape;
}

std::map<std::string, std::string> torch_env(const DistShape& shape) {
    const unsigned port = shape.master_port != 0 ? shape.master_port : master_port(shape.job_id, shape.step_id);
    return {
        {"MASTER_ADDR", shape.master_addr},
        {"MASTER_PORT", std::to_string(port)},
        {"WORLD_SIZE", std::to_string(shape.world_size)},
        {"RANK", std::to_string(shape.rank)},
        {"LOCAL_RANK", std::to_string(shape.local_rank)},
        {"LOCAL_WORLD_SIZE", std::to_string(shape.local_world_size)},
        {"NODE_RANK", std::to_string(shape.node_rank)},
        // torchrun's worker variables: one agent group per node, one role.
        {"GROUP_RANK", std::to_string(shape.node_rank)},
        {"GROUP_WORLD_SIZE", std::to_string(shape.node_count)},
        {"ROLE_NAME", "default"},
        {"ROLE_RANK", std::to_string(shape.rank)},
        {"ROLE_WORLD_SIZE", std::to_string(shape.world_size)},
        {"TORCHELASTIC_RUN_ID", std::to_string(shape.job_id) + "." + std::to_string(shape.step_id)},
        {"TORCHELASTIC_RESTART_COUNT", "0"},
        {"TORCHELASTIC_MAX_RESTARTS", "0"},
        // No agent runs a store here: workers start their own at MASTER_ADDR:MASTER_PORT.
        {"TORCHELASTIC_USE_AGENT_STORE", "False"},
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
