// json-c handles that release on every path, and the quoting shared by the writers that
// stream JSON text instead of building a document (sweep dirs, results, tables).
#pragma once
#include <json-c/json.h>

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
