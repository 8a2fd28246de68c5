#include "sweep/results.hpp"

#include <dirent.h>

#include <charconv>
#include <memory>

#include "common/error.hpp"
#include "common/text.hpp"

namespace aihpc::sweep {

std::set<std::uint64_t> ResultScan::missing(std::uint64_t tasks) const {
    std::set<std::uint64_t> out;
    for (std::uint64_t i = 0; i < tasks; ++i)
        if (!done.count(i) && !failed.count(i)) out.insert(i);
    return out;
}

std::optional<long> result_exit_code(const std::string& text) {
    auto pos = text.find("\"exit_code\":");
    if (pos == std::string::npos) return std::nullopt;
    const char* b = text.data() + pos + 12;
    long v = 0;
    auto r = std::from_chars(b, text.data() + text.size(), v);
    if (r.ec != std::errc()) return std::nullopt;
    return v;
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
        std::string dir = sweep.path + "/results" + (last ? "" : "/" + phase.name);
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
        if (*b - *a > 100000000) throw Error("'" + item + "' is too long a range");
        for (auto i = *a; i <= *b; ++i) out.insert(i);
    }
    return out;
}

}  // namespace aihpc::sweep
