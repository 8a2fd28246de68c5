#include "sweep/results.hpp"

#include <dirent.h>

#include <algorithm>
#include <charconv>
#include <cctype>
#include <cstring>
#include <memory>

#include "common/error.hpp"
#include "common/json.hpp"
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

// A strict pass over a whole JSON document that builds nothing: it checks the syntax
// (RFC 8259, plus the bare NaN, Infinity and -Infinity of older results) and keeps the
// text of the top-level members a verdict needs.
class ResultSyntax {
public:
    explicit ResultSyntax(std::string_view text) : t_(text) {}

    // "" when the document is whole; else what is wrong and where.
    std::string check() {
        space();
        if (!peek('{')) return "is not a JSON object";
        if (!value(0)) return error_ + " at byte " + std::to_string(at_);
        space();
        if (at_ != t_.size()) return "has text after the JSON object at byte " + std::to_string(at_);
        return "";
    }
    std::optional<std::string_view> index, exit_code;
    bool index_integer = false, exit_code_integer = false;
    // The first top-level member whose value has a type no reader of results takes.
    std::string bad_member;

private:
    bool peek(char c) const { return at_ < t_.size() && t_[at_] == c; }
    void space() {
        while (at_ < t_.size() && (t_[at_] == ' ' || t_[at_] == '\t' || t_[at_] == '\n' || t_[at_] == '\r')) ++at_;
    }
    bool fail(const char* what) {
        error_ = what;
        return false;
    }
    bool string(std::string_view* out) {
        std::size_t start = ++at_;
        while (at_ < t_.size()) {
            unsigned char c = static_cast<unsigned char>(t_[at_]);
            if (c == '"') {
                if (out) *out = t_.substr(start, at_ - start);
                ++at_;
                return true;
            }
            if (c < 0x20) return fail("a control character in a string");
            if (c == '\\') {
                if (++at_ >= t_.size()) break;
                char e = t_[at_];
                if (e == 'u') {
                    for (int k = 0; k < 4; ++k)
                        if (++at_ >= t_.size() || !std::isxdigit(static_cast<unsigned char>(t_[at_]))) return fail("a bad \\u escape");
                } else if (!std::strchr("\"\\/bfnrt", e) || e == 0) {
                    return fail("a bad escape in a string");
                }
            }
            ++at_;
        }
        return fail("an unterminated string");
    }
    std::size_t digits() {
        std::size_t from = at_;
        while (at_ < t_.size() && t_[at_] >= '0' && t_[at_] <= '9') ++at_;
        return at_ - from;
    }
    bool number(bool& integer) {
        integer = true;
        if (peek('-')) ++at_;
        if (t_.substr(at_, 8) == "Infinity") {
            at_ += 8;
            integer = false;
            return true;
        }
        if (peek('0')) ++at_;
        else if (digits() == 0) return fail("a malformed number");
        if (peek('.')) {
            ++at_;
            integer = false;
            if (digits() == 0) return fail("a malformed number");
        }
        if (peek('e') || peek('E')) {
            ++at_;
            integer = false;
            if (peek('+') || peek('-')) ++at_;
            if (digits() == 0) return fail("a malformed number");
        }
        return true;
    }
    // The kinds of the top-level members every reader of results reads with a type.
    void check_member(std::string_view key, char first, bool strings_only) {
        if (!bad_member.empty()) return;
        bool number = first == '-' || (first >= '0' && first <= '9');
        if ((key == "metrics" && first != '{') || (key == "elapsed_s" && !number) ||
            ((key == "stderr_tail" || key == "non_finite") && (first != '[' || !strings_only)))
            bad_member = std::string(key);
    }
    bool value(int depth, std::string_view* text = nullptr, bool* integer = nullptr, bool* strings_only = nullptr) {
        if (depth > 256) return fail("nesting too deep");
        space();
        if (at_ >= t_.size()) return fail("a truncated document");
        char c = t_[at_];
        if (c == '{' || c == '[') {
            char close = c == '{' ? '}' : ']';
            ++at_;
            space();
            if (peek(close)) {
                ++at_;
                return true;
            }
            // Two members of one name are an error to the strict readers of results too.
            std::vector<std::string_view> keys;
            for (;;) {
                space();
                if (c == '{') {
                    std::string_view key;
                    if (!peek('"')) return fail(at_ >= t_.size() ? "a truncated document" : "a member name that is not a string");
                    if (!string(&key)) return false;
                    if (std::find(keys.begin(), keys.end(), key) != keys.end()) return fail("a duplicate member name");
                    keys.push_back(key);
                    space();
                    if (!peek(':')) return fail(at_ >= t_.size() ? "a truncated document" : "a missing ':'");
                    ++at_;
                    space();
                    std::string_view member;
                    bool member_integer = false, member_strings = true;
                    char first = at_ < t_.size() ? t_[at_] : 0;
                    bool top = depth == 0;
                    if (!value(depth + 1, top ? &member : nullptr, top ? &member_integer : nullptr, top ? &member_strings : nullptr))
                        return false;
                    if (top) check_member(key, first, member_strings);
                    if (top && key == "index") index = member, index_integer = member_integer;
                    if (top && key == "exit_code") exit_code = member, exit_code_integer = member_integer;
                } else {
                    space();
                    if (strings_only && !peek('"')) *strings_only = false;
                    if (!value(depth + 1)) return false;
                }
                space();
                if (peek(close)) {
                    ++at_;
                    return true;
                }
                if (!peek(',')) return fail(at_ >= t_.size() ? "a truncated document" : "a missing ',' or closing bracket");
                ++at_;
                space();
                if (peek(close)) return fail("a trailing comma");
            }
        }
        std::size_t start = at_;
        bool is_integer = false;
        if (c == '"') {
            if (!string(nullptr)) return false;
        } else if (c == '-' || (c >= '0' && c <= '9') || c == 'I') {
            if (!number(is_integer)) return false;
        } else if (t_.substr(at_, 4) == "true" || t_.substr(at_, 4) == "null") {
            at_ += 4;
        } else if (t_.substr(at_, 5) == "false") {
            at_ += 5;
        } else if (t_.substr(at_, 3) == "NaN") {
            at_ += 3;
        } else {
            return fail("an unexpected character");
        }
        if (text) *text = t_.substr(start, at_ - start);
        if (integer) *integer = is_integer;
        return true;
    }

    std::string_view t_;
    std::size_t at_ = 0;
    std::string error_;
};

}  // namespace

ResultVerdict judge_result(std::string_view text, std::uint64_t index) {
    ResultVerdict v;
    ResultSyntax doc(text);
    v.problem = doc.check();
    if (!v.problem.empty()) return v;
    if (!doc.bad_member.empty()) {
        v.problem = "has a member '" + doc.bad_member + "' of the wrong type";
        return v;
    }
    if (doc.index) {
        std::uint64_t said = 0;
        auto r = std::from_chars(doc.index->data(), doc.index->data() + doc.index->size(), said);
        bool ok = doc.index_integer && r.ec == std::errc() && r.ptr == doc.index->data() + doc.index->size();
        if (!ok) {
            v.problem = "has an index that is not a task index";
            return v;
        }
        // A result copied or renamed by hand: taking it would give task `index` the
        // parameters and metrics of another task.
        if (said != index) {
            v.problem = "holds the result of task " + std::to_string(said) + ", not of task " + std::to_string(index);
            return v;
        }
    }
    long code = 0;
    if (doc.exit_code) {
        auto r = std::from_chars(doc.exit_code->data(), doc.exit_code->data() + doc.exit_code->size(), code);
        if (!doc.exit_code_integer || r.ec != std::errc() || r.ptr != doc.exit_code->data() + doc.exit_code->size()) {
            v.problem = "has an exit_code that is not an integer";
            return v;
        }
    } else {
        v.problem = "has no exit_code";
        return v;
    }
    v.exit_code = code;
    v.verdict = code == 0 ? Verdict::done : Verdict::failed;
    return v;
}

std::string unreadable_warnings(const std::string& tool, std::vector<UnreadableResult> unreadable) {
    constexpr std::size_t kShown = 5;
    // Directory order is no order: the same files give the same lines.
    std::sort(unreadable.begin(), unreadable.end(), [](const UnreadableResult& a, const UnreadableResult& b) { return a.path < b.path; });
    std::string out;
    for (std::size_t k = 0; k < unreadable.size() && k < kShown; ++k)
        out += tool + ": warning: " + unreadable[k].path + " " + unreadable[k].problem + "; its task counts as missing\n";
    if (unreadable.size() > kShown)
        out += tool + ": warning: " + std::to_string(unreadable.size() - kShown) + " more result files could not be read; their tasks count as missing\n";
    if (!unreadable.empty())
        out += tool + ": 'aihpc-sweep resubmit SWEEP --missing' runs their tasks again and keeps these files aside as .prev\n";
    return out;
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
            auto v = judge_result(text, index);
            if (v.verdict == Verdict::failed) scan.failed.insert(index);
            else if (v.verdict == Verdict::done && last) scan.done.insert(index);
            else if (v.verdict == Verdict::unreadable) scan.unreadable.push_back({path, v.problem});
        });
    }
    for (auto i : scan.failed) scan.done.erase(i);
    return scan;
}

Aggregate parse_aggregate(const std::string& text) {
    if (text == "mean") return Aggregate::mean;
    if (text == "median") return Aggregate::median;
    throw Error("--aggregate must be mean or median, not '" + text + "'");
}

double aggregate_of(std::vector<double> values, Aggregate how) {
    switch (how) {
    case Aggregate::none: return values.front();
    case Aggregate::mean: {
        double sum = 0;
        for (double v : values) sum += v;
        return sum / static_cast<double>(values.size());
    }
    case Aggregate::median: {
        std::sort(values.begin(), values.end());
        std::size_t n = values.size();
        return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
    }
    }
    return values.front();
}

namespace {

bool any_repeat(const std::vector<Axis>& axes) {
    for (const auto& a : axes) {
        if (a.kind == AxisKind::repeat) return true;
        if (a.kind == AxisKind::union_)
            for (const auto& b : a.branches)
                if (any_repeat(b.axes)) return true;
    }
    return false;
}

}  // namespace

bool has_repeat_axis(const SweepSpec& spec) { return any_repeat(spec.axes); }

std::string configuration_key(const Assignment& params, bool replicates) {
    std::string key;
    for (const auto& [name, value] : params) {
        if (replicates && name == "repeat") continue;
        key += json_quote(name) + ":" + value.json + ",";
    }
    return key;
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
        // Ends at *b itself: `i <= *b` never fails when *b is the largest index there is.
        for (auto i = *a;; ++i) {
            out.insert(i);
            if (i == *b) break;
        }
    }
    return out;
}

}  // namespace aihpc::sweep
