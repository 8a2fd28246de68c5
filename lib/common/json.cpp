#include "common/json.hpp"

#include <algorithm>

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

// ---- the typed reader

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <set>

namespace aihpc {

std::string json_member_path(const std::string& path, std::string_view key) {
    return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string json_index_path(const std::string& path, std::size_t index) { return path + "[" + std::to_string(index) + "]"; }

namespace {

const char* kind_name(JsonValue::Kind kind) {
    switch (kind) {
    case JsonValue::Kind::null: return "null";
    case JsonValue::Kind::boolean: return "a boolean";
    case JsonValue::Kind::integer: return "an integer";
    case JsonValue::Kind::number: return "a number";
    case JsonValue::Kind::string: return "a string";
    case JsonValue::Kind::array: return "an array";
    case JsonValue::Kind::object: return "an object";
    }
    return "?";
}

[[noreturn]] void wrong_type(const std::string& path, const char* wanted, JsonValue::Kind got) {
    throw JsonError(path, std::string("must be ") + wanted + ", not " + kind_name(got));
}

// Deep enough for any spec or result; shallow enough that a hostile document cannot
// exhaust the stack.
constexpr int kMaxDepth = 256;

}  // namespace

const JsonValue* JsonValue::find(std::string_view key) const noexcept {
    for (const auto& m : members_)
        if (m.first == key) return &m.second;
    return nullptr;
}

const std::string& JsonValue::as_string(const std::string& path) const {
    if (kind_ != Kind::string) wrong_type(path, "a string", kind_);
    return text_;
}

bool JsonValue::as_boolean(const std::string& path) const {
    if (kind_ != Kind::boolean) wrong_type(path, "a boolean", kind_);
    return boolean_;
}

std::int64_t JsonValue::as_int64(const std::string& path) const {
    if (kind_ != Kind::integer) wrong_type(path, "an integer", kind_);
    std::int64_t v = 0;
    auto r = std::from_chars(text_.data(), text_.data() + text_.size(), v);
    if (r.ec != std::errc() || r.ptr != text_.data() + text_.size())
        throw JsonError(path, "integer " + text_ + " does not fit in 64 bits");
    return v;
}

std::uint64_t JsonValue::as_uint64(const std::string& path) const {
    if (kind_ != Kind::integer) wrong_type(path, "an integer", kind_);
    if (text_[0] == '-') throw JsonError(path, "must not be negative");
    std::uint64_t v = 0;
    auto r = std::from_chars(text_.data(), text_.data() + text_.size(), v);
    if (r.ec != std::errc() || r.ptr != text_.data() + text_.size())
        throw JsonError(path, "integer " + text_ + " does not fit in 64 bits");
    return v;
}

double JsonValue::as_double(const std::string& path) const {
    if (!is_number()) wrong_type(path, "a number", kind_);
    if (text_ == "NaN") return std::nan("");
    if (text_ == "Infinity") return HUGE_VAL;
    if (text_ == "-Infinity") return -HUGE_VAL;
    return std::strtod(text_.c_str(), nullptr);
}

const std::vector<JsonValue>& JsonValue::as_array(const std::string& path) const {
    if (kind_ != Kind::array) wrong_type(path, "an array", kind_);
    return items_;
}

const std::vector<JsonValue::Member>& JsonValue::as_object(const std::string& path) const {
    if (kind_ != Kind::object) wrong_type(path, "an object", kind_);
    return members_;
}

void JsonValue::append_json(std::string& out) const {
    switch (kind_) {
    case Kind::null: out += "null"; return;
    case Kind::boolean: out += boolean_ ? "true" : "false"; return;
    case Kind::integer:
    case Kind::number: out += text_; return;
    case Kind::string: out += json_quote(text_); return;
    case Kind::array:
        out += '[';
        for (std::size_t i = 0; i < items_.size(); ++i) {
            if (i) out += ',';
            items_[i].append_json(out);
        }
        out += ']';
        return;
    case Kind::object:
        out += '{';
        for (std::size_t i = 0; i < members_.size(); ++i) {
            if (i) out += ',';
            out += json_quote(members_[i].first);
            out += ':';
            members_[i].second.append_json(out);
        }
        out += '}';
        return;
    }
}

std::string JsonValue::to_json() const {
    std::string out;
    append_json(out);
    return out;
}

// Recursive descent over the text, keeping the path of where it stands only as a stack
// of positions: the path string is built when an error needs it.
class JsonReader {
public:
    JsonReader(std::string_view text, const JsonReadOptions& options) : text_(text), options_(options) {}

    JsonValue document() {
        JsonValue v;
        skip_space();
        value(v, 0);
        skip_space();
        if (at_ < text_.size()) fail("unexpected text after the document");
        return v;
    }

private:
    struct Frame {
        bool array;
        std::size_t index;
        const std::string* key;
    };

    std::string path() const {
        std::string p;
        for (const auto& f : frames_) p = f.array ? json_index_path(p, f.index) : json_member_path(p, f.key ? *f.key : std::string("?"));
        return p;
    }

    // Where, as an editor shows it: line and column (in bytes), both from 1.
    [[noreturn]] void fail(const std::string& what) const {
        std::size_t end = std::min(at_, text_.size());
        std::size_t line = 1, line_start = 0;
        for (std::size_t i = 0; i < end; ++i)
            if (text_[i] == '\n') {
                ++line;
                line_start = i + 1;
            }
        throw JsonError(path(), what + " (line " + std::to_string(line) + ", column " + std::to_string(end - line_start + 1) + ")");
    }

    void skip_space() {
        while (at_ < text_.size() && (text_[at_] == ' ' || text_[at_] == '\t' || text_[at_] == '\n' || text_[at_] == '\r')) ++at_;
    }

    bool literal(std::string_view word) {
        if (text_.substr(at_, word.size()) != word) return false;
        at_ += word.size();
        return true;
    }

    void value(JsonValue& v, int depth) {
        if (at_ >= text_.size()) fail("unexpected end of the document");
        char c = text_[at_];
        switch (c) {
        case '{': object(v, depth + 1); return;
        case '[': array(v, depth + 1); return;
        case '"':
            v.kind_ = JsonValue::Kind::string;
            string(v.text_);
            return;
        case 't':
            if (!literal("true")) break;
            v.kind_ = JsonValue::Kind::boolean;
            v.boolean_ = true;
            return;
        case 'f':
            if (!literal("false")) break;
            v.kind_ = JsonValue::Kind::boolean;
            return;
        case 'n':
            if (!literal("null")) break;
            v.kind_ = JsonValue::Kind::null;
            return;
        case 'N':
        case 'I':
            if (options_.allow_non_finite && (literal("NaN") || literal("Infinity"))) {
                v.kind_ = JsonValue::Kind::number;
                v.text_ = c == 'N' ? "NaN" : "Infinity";
                return;
            }
            break;
        default:
            if (c == '-' || (c >= '0' && c <= '9')) {
                number(v);
                return;
            }
        }
        fail(std::string("unexpected character '") + (static_cast<unsigned char>(c) < 0x20 ? '?' : c) + "'");
    }

    void number(JsonValue& v) {
        std::size_t start = at_;
        bool integer = true;
        if (text_[at_] == '-') {
            ++at_;
            if (options_.allow_non_finite && literal("Infinity")) {
                v.kind_ = JsonValue::Kind::number;
                v.text_ = "-Infinity";
                return;
            }
        }
        auto digits = [&] {
            std::size_t from = at_;
            while (at_ < text_.size() && text_[at_] >= '0' && text_[at_] <= '9') ++at_;
            return at_ - from;
        };
        if (at_ < text_.size() && text_[at_] == '0') {
            ++at_;
            if (at_ < text_.size() && text_[at_] >= '0' && text_[at_] <= '9') fail("a number must not start with 0");
        } else if (digits() == 0) {
            fail("a number needs digits");
        }
        if (at_ < text_.size() && text_[at_] == '.') {
            ++at_;
            integer = false;
            if (digits() == 0) fail("a number needs digits after '.'");
        }
        if (at_ < text_.size() && (text_[at_] == 'e' || text_[at_] == 'E')) {
            ++at_;
            integer = false;
            if (at_ < text_.size() && (text_[at_] == '+' || text_[at_] == '-')) ++at_;
            if (digits() == 0) fail("a number needs digits in its exponent");
        }
        v.kind_ = integer ? JsonValue::Kind::integer : JsonValue::Kind::number;
        v.text_.assign(text_.data() + start, at_ - start);
    }

    static void put_utf8(std::string& out, std::uint32_t cp) {
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xc0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xe0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
            out += static_cast<char>(0x80 | (cp & 0x3f));
        } else {
            out += static_cast<char>(0xf0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
            out += static_cast<char>(0x80 | (cp & 0x3f));
        }
    }

    std::uint32_t hex4() {
        if (at_ + 4 > text_.size()) fail("a \\u escape needs four hex digits");
        std::uint32_t cp = 0;
        for (int i = 0; i < 4; ++i) {
            char h = text_[at_++];
            cp <<= 4;
            if (h >= '0' && h <= '9') cp |= static_cast<std::uint32_t>(h - '0');
            else if (h >= 'a' && h <= 'f') cp |= static_cast<std::uint32_t>(h - 'a' + 10);
            else if (h >= 'A' && h <= 'F') cp |= static_cast<std::uint32_t>(h - 'A' + 10);
            else fail("a \\u escape needs four hex digits");
        }
        return cp;
    }

    void string(std::string& out) {
        ++at_;  // the opening quote
        out.clear();
        for (;;) {
            // Copy the run of plain characters in one append.
            std::size_t run = at_;
            while (run < text_.size() && text_[run] != '"' && text_[run] != '\\' && static_cast<unsigned char>(text_[run]) >= 0x20) ++run;
            out.append(text_.data() + at_, run - at_);
            at_ = run;
            if (at_ >= text_.size()) fail("a string is not closed");
            char c = text_[at_++];
            if (c == '"') return;
            if (c != '\\') {
                --at_;
                fail("a control character must be escaped in a string");
            }
            if (at_ >= text_.size()) fail("a string is not closed");
            char e = text_[at_++];
            switch (e) {
            case '"': out += '"'; break;
            case '\\': out += '\\'; break;
            case '/': out += '/'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            case 'u': {
                std::uint32_t cp = hex4();
                if (cp >= 0xd800 && cp < 0xdc00) {
                    if (!literal("\\u")) fail("a high surrogate must be followed by a low one");
                    std::uint32_t lo = hex4();
                    if (lo < 0xdc00 || lo >= 0xe000) fail("a high surrogate must be followed by a low one");
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                } else if (cp >= 0xdc00 && cp < 0xe000) {
                    fail("a low surrogate without a high one");
                }
                put_utf8(out, cp);
                break;
            }
            default: --at_; fail(std::string("unknown escape '\\") + e + "'");
            }
        }
    }

    void array(JsonValue& v, int depth) {
        if (depth > kMaxDepth) fail("nested too deeply");
        v.kind_ = JsonValue::Kind::array;
        ++at_;
        skip_space();
        if (at_ < text_.size() && text_[at_] == ']') {
            ++at_;
            return;
        }
        frames_.push_back({true, 0, nullptr});
        for (;;) {
            frames_.back().index = v.items_.size();
            skip_space();
            if (at_ < text_.size() && text_[at_] == ']') fail("trailing comma before ']'");
            v.items_.emplace_back();
            value(v.items_.back(), depth);
            skip_space();
            if (at_ >= text_.size()) fail("an array is not closed");
            char c = text_[at_++];
            if (c == ']') break;
            if (c != ',') {
                --at_;
                fail("expected ',' or ']' in an array");
            }
        }
        frames_.pop_back();
    }

    void object(JsonValue& v, int depth) {
        if (depth > kMaxDepth) fail("nested too deeply");
        v.kind_ = JsonValue::Kind::object;
        ++at_;
        skip_space();
        if (at_ < text_.size() && text_[at_] == '}') {
            ++at_;
            return;
        }
        std::set<std::string> seen;  // only for large objects
        frames_.push_back({false, 0, nullptr});
        for (;;) {
            skip_space();
            if (at_ < text_.size() && text_[at_] == '}') fail("trailing comma before '}'");
            if (at_ >= text_.size() || text_[at_] != '"') fail("expected a key in quotes");
            std::string key;
            string(key);
            frames_.back().key = &key;
            bool dup = false;
            if (v.members_.size() < 32) {
                for (const auto& m : v.members_) dup = dup || m.first == key;
            } else {
                if (seen.empty())
                    for (const auto& m : v.members_) seen.insert(m.first);
                dup = !seen.insert(key).second;
            }
            if (dup) {
                frames_.pop_back();  // the path of the object, not of the member
                fail("duplicate key '" + key + "'");
            }
            skip_space();
            if (at_ >= text_.size() || text_[at_] != ':') fail("expected ':' after a key");
            ++at_;
            skip_space();
            JsonValue member;
            value(member, depth);
            v.members_.emplace_back(std::move(key), std::move(member));
            frames_.back().key = &v.members_.back().first;
            skip_space();
            if (at_ >= text_.size()) fail("an object is not closed");
            char c = text_[at_++];
            if (c == '}') break;
            if (c != ',') {
                --at_;
                fail("expected ',' or '}' in an object");
            }
        }
        frames_.pop_back();
    }

    std::string_view text_;
    JsonReadOptions options_;
    std::size_t at_ = 0;
    std::vector<Frame> frames_;
};

JsonValue parse_json_value(std::string_view text, const JsonReadOptions& options) { return JsonReader(text, options).document(); }

}  // namespace aihpc
