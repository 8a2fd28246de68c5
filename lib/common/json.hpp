// json-c handles that release on every path, and the quoting shared by the writers that
// stream JSON text instead of building a document (sweep dirs, results, tables).
#pragma once
#include <json-c/json.h>

#include "common/error.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace aihpc {

// Owns one json-c reference: json_object_put exactly once, whichever way the scope ends.
// Empty when a parse failed, so `if (!doc)` is the syntax check.
class JsonRef {
public:
    JsonRef() = default;
    explicit JsonRef(json_object* object) noexcept : object_(object) {}
    JsonRef(JsonRef&& other) noexcept : object_(std::exchange(other.object_, nullptr)) {}
    JsonRef& operator=(JsonRef&& other) noexcept {
        if (this != &other) {
            json_object_put(object_);
            object_ = std::exchange(other.object_, nullptr);
        }
        return *this;
    }
    JsonRef(const JsonRef&) = delete;
    JsonRef& operator=(const JsonRef&) = delete;
    ~JsonRef() { json_object_put(object_); }

    json_object* get() const noexcept { return object_; }
    explicit operator bool() const noexcept { return object_ != nullptr; }

private:
    json_object* object_ = nullptr;
};

// The document in `text`; empty when it is not JSON.
inline JsonRef parse_json(const std::string& text) { return JsonRef(json_tokener_parse(text.c_str())); }

// The member `key` of an object; nullptr when it is absent or `object` is no object.
inline json_object* json_member(json_object* object, const char* key) {
    json_object* value = nullptr;
    return json_object_object_get_ex(object, key, &value) ? value : nullptr;
}

// A tokener kept across many small documents (one per result file or task line), so
// that parsing them allocates no tokener each.
class JsonTokener {
public:
    JsonTokener() : tokener_(json_tokener_new()) {}
    JsonTokener(const JsonTokener&) = delete;
    JsonTokener& operator=(const JsonTokener&) = delete;
    ~JsonTokener() { json_tokener_free(tokener_); }

    json_tokener* get() const noexcept { return tokener_; }

private:
    json_tokener* tokener_;
};

// `text` as a JSON string, quotes included; control characters escaped.
std::string json_quote(std::string_view text);
// As json_quote, but an empty text is JSON null: the writers' "not known".
std::string json_quote_or_null(std::string_view text);
// ["a","b",...]
std::string json_string_array(const std::vector<std::string>& words);

}  // namespace aihpc

// ---- the typed reader
//
// A strict RFC 8259 reader for the documents users and tasks write (sweep specs, task
// lines, results, metrics). json-c accepts trailing commas and keeps the last of two
// equal keys; here both are errors, and so is a value of the wrong type, each naming
// the path into the document ("axes[2].values[0]"). Numbers keep the text they were
// written as, so that 1.0 stays a float, -0.0 keeps its sign and an int64 is never
// rounded through a double.
namespace aihpc {

// A malformed document or a value of the wrong type; what() is "PATH: what is wrong".
class JsonError : public Error {
public:
    JsonError(std::string path, const std::string& what)
        : Error((path.empty() ? std::string("(top level)") : path) + ": " + what), path_(std::move(path)) {}
    const std::string& path() const noexcept { return path_; }

private:
    std::string path_;
};

class JsonValue {
public:
    enum class Kind { null, boolean, integer, number, string, array, object };
    using Member = std::pair<std::string, JsonValue>;

    Kind kind() const noexcept { return kind_; }
    bool is_null() const noexcept { return kind_ == Kind::null; }
    bool is_object() const noexcept { return kind_ == Kind::object; }
    bool is_array() const noexcept { return kind_ == Kind::array; }
    bool is_string() const noexcept { return kind_ == Kind::string; }
    // An integer is a number written without fraction or exponent.
    bool is_integer() const noexcept { return kind_ == Kind::integer; }
    bool is_number() const noexcept { return kind_ == Kind::integer || kind_ == Kind::number; }
    bool is_boolean() const noexcept { return kind_ == Kind::boolean; }
    // NaN, Infinity or -Infinity, which only a lenient metrics read lets through.
    bool is_non_finite() const noexcept { return kind_ == Kind::number && !text_.empty() && (text_[0] == 'N' || text_[0] == 'I' || text_[1] == 'I'); }

    // The decoded text of a string, or a number's text exactly as written.
    const std::string& text() const noexcept { return text_; }
    bool boolean() const noexcept { return boolean_; }
    const std::vector<JsonValue>& items() const noexcept { return items_; }
    const std::vector<Member>& members() const noexcept { return members_; }
    // The member `key` of an object; nullptr when absent or not an object.
    const JsonValue* find(std::string_view key) const noexcept;

    // Typed reads: each throws JsonError naming `path` when the type is not the one asked.
    const std::string& as_string(const std::string& path) const;
    bool as_boolean(const std::string& path) const;
    std::int64_t as_int64(const std::string& path) const;   // an integer within int64
    std::uint64_t as_uint64(const std::string& path) const; // an integer within uint64
    double as_double(const std::string& path) const;        // any number, finite or not
    const std::vector<JsonValue>& as_array(const std::string& path) const;
    const std::vector<Member>& as_object(const std::string& path) const;

    // The value as compact JSON text (numbers as written, keys in document order).
    std::string to_json() const;
    void append_json(std::string& out) const;

    static JsonValue make_null() { return JsonValue(); }

private:
    friend class JsonReader;
    Kind kind_ = Kind::null;
    bool boolean_ = false;
    std::string text_;
    std::vector<JsonValue> items_;
    std::vector<Member> members_;
};

struct JsonReadOptions {
    // Python's json module writes NaN, Infinity and -Infinity bare; a metrics file may
    // hold them. They read as numbers whose text is that word.
    bool allow_non_finite = false;
};

// Parses one whole document (surrounding white space allowed, nothing else after it).
// Throws JsonError: "PATH: trailing comma", "PATH: duplicate key 'lr'", ...
JsonValue parse_json_value(std::string_view text, const JsonReadOptions& options = {});

// "a.b" or "a[3]" in the paths errors name.
std::string json_member_path(const std::string& path, std::string_view key);
std::string json_index_path(const std::string& path, std::size_t index);

}  // namespace aihpc
