#include "sweep/results.hpp"

#include <dirent.h>

#include <charconv>
#include <memory>

#include "common/error.hpp"
#include "common/text.hpp"
#include "sweep/runner.hpp"

namespace aihpc::sweep {

std::set<std::uint64_t> ResultScan::missing(std::uint64_t tasks) const {
    std::set<std::uint64_t> out;
    for (std::uint64_t i = 0; i < tasks; ++i)
        if (!done.count(i) && !failed.count(i)) out.insert(i);
    return out;
}

namespace {

std::optional<long> parse_long(std::string_view text, std::size_t at) {
    while (at < text.size() && (text[at] == ' ' || text[at] == '\t' || text[at] == '\n' || text[at] == '\r')) ++at;
    long v = 0;
    auto r = std::from_chars(text.data() + at, text.data() + text.size(), v);
    if (r.ec != std::errc()) return std::nullopt;
    return v;
}

// Index just past the string that starts at text[at] (a '"'), escapes skipped.
std::size_t skip_string(std::string_view text, std::size_t at) {
    for (++at; at < text.size(); ++at) {
        if (text[at] == '\\') ++at;
        else if (text[at] == '"') return at + 1;
    }
    return text.size();
}

}  // namespace

std::optional<long> result_exit_code(std::string_view text) {
    // What the runner writes: {"index":N,"exit_code":C,...
    constexpr std::string_view head = "{\"index\":", member = ",\"exit_code\":";
    if (text.substr(0, head.size()) == head) {
        std::size_t at = head.size();
        while (at < text.size() && text[at] >= '0' && text[at] <= '9') ++at;
        if (text.substr(at, member.size()) == member) return parse_long(text, at + member.size());
    }
    // Anything else (older results, other writers): the top-level member only, never
    // a parameter or a metric of that name.
    int depth = 0;
    for (std::size_t at = 0; at < text.size();) {
        char c = text[at];
        if (c == '"') {
            std::size_t end = skip_string(text, at);
            if (depth == 1 && text.substr(at, end - at) == "\"exit_code\"") {
                std::size_t colon = end;
                while (colon < text.size() && (text[colon] == ' ' || text[colon] == '\t' || text[colon] == '\n' || text[colon] == '\r')) ++colon;
                if (colon < text.size() && text[colon] == ':') return parse_long(text, colon + 1);
            }
            at = end;
            continue;
        }
        if (c == '{' || c == '[') ++depth;
        else if (c == '}' || c == ']') --depth;
        ++at;
    }
    return std::nullopt;
}

namespace {

// Visits every <index>.json directly in `dir`.
template <typename Fn>
void each_result(const std::string& dir, Fn fn) {
    std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
    if (!d) return;
    while (auto* e = ::readdir(d.get())) {
        std::string_view name(e->d_name);
        if (!ends_with(name, ".json")) continue;
        auto index = parse_uint(name.substr(0, name.size() - 5));
        if (index) fn(*index, dir + "/" + std::string(name));
    }
}

}  // namespace

ResultScan scan_results(const SweepDir& sweep) {
    ResultScan scan;
    for (const auto& phase : sweep.spec.phases) {
        bool last = phase.name == sweep.spec.final_phase().name;
        std::string dir = results_dir(sweep, phase);
        each_result(dir, [&](std::uint64_t index, const std::string& path) {
            if (index >= sweep.tasks) return;
            std::string text;
            try {
                text = read_file(path);
            } catch (const Error&) {
                return;
            }
            auto code = result_exit_code(text);
            if (code && *code != 0) scan.failed.insert(index);
            else if (code && last) scan.done.insert(index);
        });
    }
    for (auto i : scan.failed) scan.done.erase(i);
    return scan;
}

std::set<std::uint64_t> parse_index_list(const std::string& text) {
    std::set<std::uint64_t> out;
    for (auto& item : split(text, ',')) {
        auto dash = item.find('-');
        auto a = parse_uint(item.substr(0, dash));
        auto b = dash == std::string::npos ? a : parse_uint(item.substr(dash + 1));
        if (!a || !b || *b < *a) throw Error("'" + text + "' is not an index list (as in 3,7,12-15)");
        // A sweep holds at most 10^7 tasks (--max-tasks), so a longer list is no index list.
        if (*b - *a >= 10000000 || out.size() + (*b - *a) >= 10000000)
            throw Error("'" + text + "' names more than 10,000,000 indices; a sweep has at most that many tasks");
        for (auto i = *a; i <= *b; ++i) out.insert(i);
    }
    return out;
}

}  // namespace aihpc::sweep
