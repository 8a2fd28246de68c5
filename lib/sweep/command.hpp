// Command templates: a string split into words as a POSIX shell splits them (quotes
// and backslashes, no expansion), then {name} substituted inside each word.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace aihpc::sweep {

// Throws aihpc::Error on an unterminated quote or a trailing backslash.
std::vector<std::string> split_command(std::string_view text);

// The names a template refers to, in order of appearance ({{ and }} are literal braces;
// ${NAME} is left to the shell and is not a reference).
std::vector<std::string> template_references(const std::vector<std::string>& words);

// The first "{name" of a template that no '}' closes anywhere after it in its word (as
// "{lr" in "--lr={lr"), which would reach the program as written; nullopt when none.
// A '{' that something else closes ("{print $1}", "{a,b}") is the program's own.
std::optional<std::string> unclosed_reference(const std::vector<std::string>& words);

// Replaces each {name} by lookup(name); a name lookup() does not know is an error.
std::vector<std::string> substitute(const std::vector<std::string>& words,
                                    const std::function<std::optional<std::string>(std::string_view)>& lookup);

}  // namespace aihpc::sweep
