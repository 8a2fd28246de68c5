// Small text helpers shared by the option grammar, the tools and the planners.
#pragma once
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace aihpc {

std::vector<std::string> split(std::string_view text, char sep);
std::string join(const std::vector<std::string>& words, std::string_view sep);
std::string_view trim(std::string_view text);
bool starts_with(std::string_view text, std::string_view prefix);
bool ends_with(std::string_view text, std::string_view suffix);

// Unsigned decimal, whole string, no sign, no overflow.
std::optional<std::uint64_t> parse_uint(std::string_view text);

// Linux list syntax ("0-3,8,10-11"), as in cpuset and Cpus_allowed_list; ids below 65536.
std::optional<std::set<unsigned>> parse_id_list(std::string_view text);
std::string format_id_list(const std::set<unsigned>& ids);

// "alpha" -> "ALPHA"; every character outside [A-Z0-9] becomes '_'.
std::string env_name_part(std::string_view text);

// Shell-quotes a word for display (sbatch lines, verbose output).
std::string shell_quote(std::string_view word);

}  // namespace aihpc
