#include "common/json.hpp"

#include <cstdio>

namespace aihpc {

std::string json_quote(std::string_view text) {
    std::string out;
    out.reserve(text.size() + 2);
    out += '"';
    for (char c : text) {
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\t': out += "\\t"; break;
        case '\r': out += "\\r"; break;
        default:
            if (static_cast<unsigned char>(c) < 0x20) {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
                out += buf;
            } else {
                out += c;
            }
        }
    }
    out += '"';
    return out;
}

std::string json_quote_or_null(std::string_view text) { return text.empty() ? "null" : json_quote(text); }

std::string json_string_array(const std::vector<std::string>& words) {
    std::string out = "[";
    for (std::size_t i = 0; i < words.size(); ++i) {
        if (i) out += ',';
        out += json_quote(words[i]);
    }
    return out + "]";
}

}  // namespace aihpc
