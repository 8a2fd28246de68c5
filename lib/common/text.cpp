#include "common/text.hpp"

#include <cctype>
#include <limits>

namespace aihpc {

std::vector<std::string> split(std::string_view text, char sep) {
    std::vector<std::string> parts;
    std::size_t start = 0;
    while (true) {
        std::size_t end = text.find(sep, start);
        parts.emplace_back(text.substr(start, end - start));
        if (end == std::string_view::npos) break;
        start = end + 1;
    }
    return parts;
}

std::string join(const std::vector<std::string>& words, std::string_view sep) {
    std::string out;
    for (std::size_t i = 0; i < words.size(); ++i) {
        if (i) out += sep;
        out += words[i];
    }
    return out;
}

std::string_view trim(std::string_view text) {
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
    return text;
}

bool starts_with(std::string_view text, std::string_view prefix) { return text.starts_with(prefix); }
bool ends_with(std::string_view text, std::string_view suffix) { return text.ends_with(suffix); }

std::optional<std::uint64_t> parse_uint(std::string_view text) {
    if (text.empty()) return std::nullopt;
    std::uint64_t value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return std::nullopt;
        unsigned digit = static_cast<unsigned>(c - '0');
        if (value > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) return std::nullopt;
        value = value * 10 + digit;
    }
    return value;
}

// Far above any machine's CPU or NUMA count (Linux's NR_CPUS tops out at 8192), and low
// enough that a hostile "0-N" cannot make a parse build millions of set nodes.
constexpr std::uint64_t max_list_id = 1u << 16;

std::optional<std::set<unsigned>> parse_id_list(std::string_view text) {
    std::set<unsigned> ids;
    text = trim(text);
    if (text.empty()) return ids;
    for (const std::string& part : split(text, ',')) {
        std::size_t dash = part.find('-');
        auto first = parse_uint(std::string_view(part).substr(0, dash));
        auto last = dash == std::string::npos ? first : parse_uint(std::string_view(part).substr(dash + 1));
        if (!first || !last || *first > *last || *last >= max_list_id) return std::nullopt;
        for (auto id = *first; id <= *last; ++id) ids.insert(static_cast<unsigned>(id));
    }
    return ids;
}

std::string format_id_list(const std::set<unsigned>& ids) {
    std::string out;
    auto it = ids.begin();
    while (it != ids.end()) {
        unsigned first = *it, last = *it;
        for (++it; it != ids.end() && *it == last + 1; ++it) last = *it;
        if (!out.empty()) out += ',';
        out += std::to_string(first);
        if (last != first) out += '-' + std::to_string(last);
    }
    return out;
}

std::string env_name_part(std::string_view text) {
    std::string out;
    for (char c : text) {
        unsigned char u = static_cast<unsigned char>(std::toupper(static_cast<unsigned char>(c)));
        out += (std::isalnum(u) && u < 128) ? static_cast<char>(u) : '_';
    }
    return out;
}

std::string shell_quote(std::string_view word) {
    bool plain = !word.empty();
    for (char c : word)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || std::string_view("-_./=:,%@+").find(c) != std::string_view::npos))
            plain = false;
    if (plain) return std::string(word);
    std::string out = "'";
    for (char c : word) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
}

}  // namespace aihpc
