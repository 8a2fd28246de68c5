#include "collect/result_json.hpp"

#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

namespace aihpc::collect {

namespace {

// One pass over one document or line; each reader returns false where the scan declines.
class ResultScan {
public:
    explicit ResultScan(std::string_view text) : t_(text) {}

    bool row(ResultRow& row) {
        space();
        std::vector<std::string_view> keys;
        bool ok = object([&](std::string_view key) {
            for (auto k : keys)
                if (k == key) return false;
            keys.push_back(key);
            return member(key, row);
        });
        if (!ok) return false;
        space();
        if (at_ != t_.size()) return false;
        for (auto& name : row.non_finite)
            for (auto& [m, value] : row.metrics)
                if (m == name && value.json == "null") value.plain = "NaN";
        return true;
    }

    // A line of tasks.jsonl: exactly index, params and task_seed; its params, as
    // sweep::parse_task_line reads them.
    bool task_params(sweep::Assignment& params) {
        space();
        bool index = false, seed = false, have_params = false;
        bool ok = object([&](std::string_view key) {
            std::string_view v;
            if (key == "index" && !index) {
                index = true;
                return scalar(v) == Token::integer && unsigned_64(v);
            }
            if (key == "task_seed" && !seed) {
                seed = true;
                return scalar(v) == Token::integer && unsigned_64(v);
            }
            if (key == "params" && !have_params) {
                have_params = true;
                return parameters(params);
            }
            return false;
        });
        if (!ok) return false;
        space();
        return index && seed && have_params && at_ == t_.size();
    }

private:
    enum class Token { none, string, integer, number, literal };

    static bool unsigned_64(std::string_view v) {
        std::uint64_t n = 0;
        if (v[0] == '-') return false;
        auto r = std::from_chars(v.data(), v.data() + v.size(), n);
        return r.ec == std::errc() && r.ptr == v.data() + v.size();
    }

    bool parameters(sweep::Assignment& out) {
        return object([&](std::string_view name) {
            for (auto& m : out)
                if (m.first == name) return false;
            std::string_view v;
            switch (scalar(v)) {
            case Token::string: out.emplace_back(std::string(name), sweep::scalar_string(v)); return true;
            case Token::integer: {
                std::int64_t n = 0;
                auto r = std::from_chars(v.data(), v.data() + v.size(), n);
                if (r.ec != std::errc() || r.ptr != v.data() + v.size()) return false;
                out.emplace_back(std::string(name), sweep::Scalar{std::string(v), std::string(v)});
                return true;
            }
            case Token::number: out.emplace_back(std::string(name), sweep::Scalar{std::string(v), std::string(v)}); return true;
            case Token::literal:
                if (v == "null") return false;
                out.emplace_back(std::string(name), sweep::scalar_bool(v == "true"));
                return true;
            case Token::none: return false;
            }
            return false;
        });
    }

    // Walks an object, '{' and members separated by ',' then '}', calling value(name)
    // at each member's value: every object in these documents is read by this one loop.
    template <class Value>
    bool object(Value&& value) {
        return sequence('{', '}', [&] {
            std::string_view name;
            if (!string(name)) return false;
            space();
            if (!peek(':')) return false;
            ++at_;
            space();
            return value(name);
        });
    }

    // Walks `open`, items separated by ',', then `close`, calling item() at each item:
    // the one loop of objects and arrays.
    template <class Item>
    bool sequence(char open, char close, Item&& item) {
        if (!peek(open)) return false;
        ++at_;
        space();
        if (peek(close)) {
            ++at_;
            return true;
        }
        for (;;) {
            space();
            if (!item()) return false;
            space();
            if (peek(close)) {
                ++at_;
                return true;
            }
            if (!peek(',')) return false;
            ++at_;
        }
    }

    bool peek(char c) const { return at_ < t_.size() && t_[at_] == c; }

    void space() {
        while (at_ < t_.size() && (t_[at_] == ' ' || t_[at_] == '\t' || t_[at_] == '\n' || t_[at_] == '\r')) ++at_;
    }

    // A string without escapes (its text is its bytes); false for anything else.
    bool string(std::string_view& out) {
        if (!peek('"')) return false;
        std::size_t start = ++at_;
        while (at_ < t_.size()) {
            unsigned char c = static_cast<unsigned char>(t_[at_]);
            if (c == '"') {
                out = t_.substr(start, at_ - start);
                ++at_;
                return true;
            }
            if (c == '\\' || c < 0x20) return false;
            ++at_;
        }
        return false;
    }

    std::size_t digits() {
        std::size_t from = at_;
        while (at_ < t_.size() && t_[at_] >= '0' && t_[at_] <= '9') ++at_;
        return at_ - from;
    }

    // A number as RFC 8259 writes it (no NaN or Infinity).
    bool number(std::string_view& out, bool& integer) {
        std::size_t start = at_;
        integer = true;
        if (peek('-')) ++at_;
        if (peek('0')) {
            ++at_;
            if (at_ < t_.size() && t_[at_] >= '0' && t_[at_] <= '9') return false;
        } else if (digits() == 0) {
            return false;
        }
        if (peek('.')) {
            ++at_;
            integer = false;
            if (digits() == 0) return false;
        }
        if (peek('e') || peek('E')) {
            ++at_;
            integer = false;
            if (peek('+') || peek('-')) ++at_;
            if (digits() == 0) return false;
        }
        out = t_.substr(start, at_ - start);
        return true;
    }

    bool literal(std::string_view word) {
        if (t_.substr(at_, word.size()) != word) return false;
        at_ += word.size();
        return true;
    }

    // A scalar value: its kind and text (a string's text without quotes).
    Token scalar(std::string_view& out) {
        if (at_ >= t_.size()) return Token::none;
        char c = t_[at_];
        if (c == '"') return string(out) ? Token::string : Token::none;
        if (c == '-' || (c >= '0' && c <= '9')) {
            bool integer = false;
            if (!number(out, integer)) return Token::none;
            return integer ? Token::integer : Token::number;
        }
        for (std::string_view word : {"true", "false", "null"})
            if (literal(word)) {
                out = word;
                return Token::literal;
            }
        return Token::none;
    }

    // Any value, checked and passed over.
    bool skip(int depth) {
        if (depth > 128) return false;
        if (peek('{')) {
            std::vector<std::string_view> keys;
            return object([&](std::string_view key) {
                for (auto k : keys)
                    if (k == key) return false;
                keys.push_back(key);
                return skip(depth + 1);
            });
        }
        if (peek('[')) return sequence('[', ']', [&] { return skip(depth + 1); });
        std::string_view ignored;
        return scalar(ignored) != Token::none;
    }

    // A text member: null is empty, a string its text, a number or literal as written.
    bool text(std::string& out) {
        std::string_view v;
        Token k = scalar(v);
        if (k == Token::none) return false;
        if (k == Token::literal && v == "null") out.clear();
        else out.assign(v);
        return true;
    }

    bool strings(std::vector<std::string>& out) {
        return sequence('[', ']', [&] {
            std::string_view s;
            if (!string(s)) return false;
            out.emplace_back(s);
            return true;
        });
    }

    bool metrics(sweep::Assignment& out) {
        return object([&](std::string_view name) {
            for (auto& m : out)
                if (m.first == name) return false;
            std::string_view v;
            Token k = scalar(v);
            if (k == Token::none) return false;
            if (k == Token::string) out.emplace_back(std::string(name), sweep::scalar_string(v));
            else out.emplace_back(std::string(name), sweep::Scalar{std::string(v), std::string(v)});
            return true;
        });
    }

    bool member(std::string_view key, ResultRow& row) {
        std::string_view v;
        if (key == "index") {
            if (scalar(v) != Token::integer || v[0] == '-') return false;
            auto r = std::from_chars(v.data(), v.data() + v.size(), row.index);
            return r.ec == std::errc() && r.ptr == v.data() + v.size();
        }
        if (key == "exit_code") {
            std::int64_t code = 0;
            if (scalar(v) != Token::integer) return false;
            auto r = std::from_chars(v.data(), v.data() + v.size(), code);
            if (r.ec != std::errc() || r.ptr != v.data() + v.size()) return false;
            row.exit_code = static_cast<long>(code);
            return true;
        }
        if (key == "elapsed_s") {
            Token k = scalar(v);
            if (k != Token::integer && k != Token::number) return false;
            std::string copy(v);
            row.elapsed_s = std::strtod(copy.c_str(), nullptr);
            return true;
        }
        if (key == "phase") return text(row.phase);
        if (key == "node") return text(row.node);
        if (key == "start") return text(row.start);
        if (key == "end") return text(row.end);
        if (key == "job_id") return text(row.job_id);
        if (key == "array_job_id") return text(row.array_job_id);
        if (key == "array_task_id") return text(row.array_task_id);
        if (key == "signal") return text(row.signal);
        if (key == "error") return text(row.error);
        if (key == "stderr_tail") return strings(row.stderr_tail);
        if (key == "non_finite") return strings(row.non_finite);
        if (key == "metrics") return metrics(row.metrics);
        return skip(1);
    }

    std::string_view t_;
    std::size_t at_ = 0;
};

}  // namespace

bool scan_result(std::string_view text, ResultRow& row) { return ResultScan(text).row(row); }

bool scan_task_params(std::string_view line, sweep::Assignment& params) { return ResultScan(line).task_params(params); }

}  // namespace aihpc::collect
