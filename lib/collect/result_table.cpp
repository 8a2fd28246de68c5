#include "collect/result_table.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <unordered_set>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/json.hpp"
#include "common/text.hpp"
#include "sweep/results.hpp"
#include "sweep/rungs.hpp"
#include "sweep/runner.hpp"

namespace aihpc::collect {

const char* task_state_name(TaskState state) {
    switch (state) {
    case TaskState::done: return "done";
    case TaskState::failed: return "failed";
    case TaskState::missing: return "missing";
    }
    return "?";
}

std::optional<double> number_of(const sweep::Scalar& value) {
    const auto& t = value.json;
    if (t.empty() || !(t[0] == '-' || (t[0] >= '0' && t[0] <= '9'))) return std::nullopt;
    char* end = nullptr;
    double d = std::strtod(t.c_str(), &end);
    if (*end || !std::isfinite(d)) return std::nullopt;
    return d;
}

std::set<std::uint64_t> ResultTable::missing() const {
    std::set<std::uint64_t> out;
    for (std::uint64_t i = 0; i < tasks; ++i)
        if (!done.count(i) && !failed.count(i)) out.insert(out.end(), i);
    return out;
}

std::set<std::uint64_t> ResultTable::failed_or_missing() const {
    std::set<std::uint64_t> out;
    for (std::uint64_t i = 0; i < tasks; ++i)
        if (!done.count(i)) out.insert(out.end(), i);
    return out;
}

namespace {

std::string text_of(const JsonValue& v) {
    if (v.is_null()) return "";
    if (v.is_string()) return v.text();
    return v.to_json();
}

sweep::Scalar scalar_of(const JsonValue& v) {
    if (v.is_string()) return sweep::scalar_string(v.text());
    sweep::Scalar s;
    s.json = v.to_json();
    s.plain = s.json;
    return s;
}

const JsonReadOptions kLenient{true};

// Metrics as columns: a nested object's members are flattened with dots
// ({"val":{"loss":1}} is val.loss), as W&B and MLflow users name them.
void add_metrics(ResultRow& row, const std::vector<JsonValue::Member>& members, const std::string& prefix) {
    for (const auto& [key, value] : members) {
        std::string name = prefix + key;
        if (value.is_object() && !value.members().empty()) {
            add_metrics(row, value.members(), name + ".");
        } else if (value.is_non_finite()) {
            row.metrics.emplace_back(name, sweep::Scalar{"null", "NaN"});
            row.non_finite.push_back(name);
        } else {
            // A flattened name may meet a member of that very name ("val.loss" and
            // val: {loss}); the first one read is kept, as a reader of the file would see it.
            bool taken = false;
            for (auto& m : row.metrics) taken = taken || m.first == name;
            if (!taken) row.metrics.emplace_back(name, scalar_of(value));
        }
    }
}

}  // namespace

ResultRow parse_result_tree(std::string_view text) {
    // Results written before NaN became null may hold it bare, as Python writes it.
    JsonValue doc = parse_json_value(text, kLenient);
    ResultRow row;
    for (const auto& [k, v] : doc.as_object("")) {
        if (k == "index") row.index = v.as_uint64("index");
        else if (k == "exit_code") row.exit_code = static_cast<long>(v.as_int64("exit_code"));
        else if (k == "elapsed_s") row.elapsed_s = v.as_double("elapsed_s");
        else if (k == "phase") row.phase = text_of(v);
        else if (k == "node") row.node = text_of(v);
        else if (k == "start") row.start = text_of(v);
        else if (k == "end") row.end = text_of(v);
        else if (k == "job_id") row.job_id = text_of(v);
        else if (k == "array_job_id") row.array_job_id = text_of(v);
        else if (k == "array_task_id") row.array_task_id = text_of(v);
        else if (k == "signal") row.signal = text_of(v);
        else if (k == "error") row.error = text_of(v);
        else if (k == "stderr_tail") {
            for (std::size_t i = 0; const auto& line : v.as_array("stderr_tail")) row.stderr_tail.push_back(line.as_string(json_index_path("stderr_tail", i++)));
        } else if (k == "non_finite") {
            for (std::size_t i = 0; const auto& name : v.as_array("non_finite")) row.non_finite.push_back(name.as_string(json_index_path("non_finite", i++)));
        } else if (k == "metrics") {
            add_metrics(row, v.as_object("metrics"), "");
        }
    }
    // A metric listed as non-finite is null in JSON and NaN as text.
    for (auto& name : row.non_finite)
        for (auto& [m, value] : row.metrics)
            if (m == name && value.json == "null") value.plain = "NaN";
    return row;
}

namespace {

// A single pass over a result document that builds its row without a JSON tree. It
// accepts only what the strict reader accepts and reads it the same way; whatever it is
// not sure of (an escape in a string, a bare NaN, a metric that is an object, a number
// that does not fit) sends the document to the tree reader, which decides.
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

sweep::Assignment task_params(std::string_view line) {
    sweep::Assignment params;
    if (ResultScan(line).task_params(params)) return params;
    return sweep::parse_task_line(line).params;
}

ResultRow parse_result(std::string_view text) {
    ResultRow row;
    if (ResultScan(text).row(row)) return row;
    return parse_result_tree(text);
}

namespace {

std::optional<ResultRow> row_of(std::string_view text, std::string* problem = nullptr) {
    try {
        auto row = parse_result(text);
        return row;
    } catch (const Error& e) {
        if (problem) *problem = std::string("is not a result: ") + e.what();
        return std::nullopt;  // not a whole result: the task counts as missing
    }
}

// Reads whole files into one reused buffer: an open, one read (results are small) and a
// close per file, no stat.
class FileText {
public:
    FileText() : buf_(kStart, '\0') {}
    bool read(int dir_fd, const char* name) {
        UniqueFd fd(::openat(dir_fd, name, O_RDONLY | O_CLOEXEC));
        if (!fd) return false;
        size_ = 0;
        for (;;) {
            if (size_ == buf_.size()) buf_.resize(buf_.size() * 2);
            ssize_t n = ::read(fd.get(), buf_.data() + size_, buf_.size() - size_);
            if (n < 0) {
                if (errno == EINTR) continue;
                return false;
            }
            if (n == 0) break;
            size_ += static_cast<std::size_t>(n);
            // Results are published whole by rename: a short read is the end of the file,
            // and saves a read() per result.
            if (size_ < buf_.size()) break;
        }
        return true;
    }
    std::string_view text() const { return {buf_.data(), size_}; }

private:
    static constexpr std::size_t kStart = 1 << 16;
    std::string buf_;
    std::size_t size_ = 0;
};

// The result files of a dir, by index: most are named <index>.json and take no more
// than their index; another spelling of an index (007.json) keeps its name aside.
class ResultFiles {
public:
    std::size_t size() const { return files_.size(); }
    bool empty() const { return files_.empty(); }
    std::uint64_t index(std::size_t k) const { return files_[k].index; }
    const char* name(std::size_t k, char (&buf)[32]) const {
        if (files_[k].odd != kCanonical) return odd_[files_[k].odd].c_str();
        auto r = std::to_chars(buf, buf + 20, files_[k].index);
        std::memcpy(r.ptr, ".json", 6);
        return buf;
    }
    void add(std::uint64_t index, std::string_view name) {
        std::uint32_t odd = kCanonical;
        char buf[32];
        auto r = std::to_chars(buf, buf + 20, index);
        if (name.substr(0, name.size() - 5) != std::string_view(buf, static_cast<std::size_t>(r.ptr - buf))) {
            odd = static_cast<std::uint32_t>(odd_.size());
            odd_.emplace_back(name);
        }
        files_.push_back({index, odd});
    }
    // Index order: each reader thread takes a run of neighbouring tasks, whose lines of
    // tasks.jsonl lie together.
    void sort() {
        std::sort(files_.begin(), files_.end(), [](const File& a, const File& b) { return a.index < b.index; });
    }

private:
    static constexpr std::uint32_t kCanonical = ~0u;
    struct File {
        std::uint64_t index;
        std::uint32_t odd;
    };
    std::vector<File> files_;
    std::vector<std::string> odd_;
};

// Every <index>.json directly in `dir` (no .prev, no temporary files), below `tasks`.
ResultFiles list_results(const std::string& dir, std::uint64_t tasks) {
    ResultFiles out;
    std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
    if (!d) {
        if (errno == ENOENT) return out;
        throw_errno("cannot read " + dir);
    }
    while (auto* e = ::readdir(d.get())) {
        std::string_view name(e->d_name);
        if (!ends_with(name, ".json")) continue;
        auto index = parse_uint(name.substr(0, name.size() - 5));
        if (index && *index < tasks) out.add(*index, name);
    }
    out.sort();
    return out;
}

// A read-only map of a whole file (nothing for an empty one).
class MappedFile {
public:
    explicit MappedFile(const std::string& path) {
        UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd) throw_errno("cannot open " + path);
        struct stat st;
        if (::fstat(fd.get(), &st) != 0) throw_errno("cannot stat " + path);
        size_ = static_cast<std::size_t>(st.st_size);
        if (size_ == 0) return;
        void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd.get(), 0);
        if (p == MAP_FAILED) throw_errno("cannot map " + path);
        data_ = static_cast<const char*>(p);
    }
    ~MappedFile() {
        if (data_) ::munmap(const_cast<char*>(data_), size_);
    }
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    const char* data() const { return data_; }
    std::size_t size() const { return size_; }
    // Lets the pages of [from, to) go from this process (they stay in the page cache):
    // the lines already read do not add up in its memory.
    void release(std::size_t from, std::size_t to) const {
        static const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
        from = (from + page - 1) / page * page;
        to = std::min(to, size_) / page * page;
        if (data_ && from < to) ::madvise(const_cast<char*>(data_) + from, to - from, MADV_DONTNEED);
    }

private:
    const char* data_ = nullptr;
    std::size_t size_ = 0;
};

// tasks.jsonl through tasks.idx (the little-endian byte offset of each line), both
// mapped: a task's line costs no system call.
class TaskLines {
public:
    explicit TaskLines(const std::string& dir) : dir_(dir), lines_(dir + "/tasks.jsonl"), offsets_(dir + "/tasks.idx") {}
    std::uint64_t count() const { return offsets_.size() / 8; }
    std::uint64_t offset(std::uint64_t i) const {
        if (i >= count()) return lines_.size();
        std::uint64_t v = 0;
        const auto* p = reinterpret_cast<const unsigned char*>(offsets_.data()) + i * 8;
        for (int k = 7; k >= 0; --k) v = (v << 8) | p[k];
        return v;
    }
    // The line of task i, as sweep::TaskIndex::line reads it.
    std::string_view line(std::uint64_t i) const {
        if (i >= count())
            throw Error("task index " + std::to_string(i) + " is out of range: " + dir_ + " has " + std::to_string(count()) + " tasks (0-" +
                        std::to_string(count() ? count() - 1 : 0) + ")");
        std::uint64_t start = offset(i), end = offset(i + 1);
        if (end <= start || end > lines_.size()) throw Error(dir_ + "/tasks.idx does not match tasks.jsonl; expand the sweep again");
        std::string_view out(lines_.data() + start, end - start);
        if (out.back() == '\n') out.remove_suffix(1);
        return out;
    }
    // Drops the pages of the lines of tasks [from, to) from this process.
    void release(std::uint64_t from, std::uint64_t to) const {
        offsets_.release(std::min(from, count()) * 8, std::min(to, count()) * 8);
        lines_.release(offset(from), offset(to));
    }

private:
    std::string dir_;
    MappedFile lines_, offsets_;
};

// Runs work(worker, begin, end) over [0, n) split among worker threads; small jobs stay on this
// thread. The first exception of any worker is rethrown here, after all have ended.
template <typename Work>
void in_parallel(std::size_t n, Work work) {
    unsigned workers = reader_threads();
    if (n < 2048 || workers == 1) {
        work(0u, std::size_t{0}, n);
        return;
    }
    std::vector<std::exception_ptr> errors(workers);
    {
        std::vector<std::jthread> threads;
        for (unsigned w = 0; w < workers; ++w)
            threads.emplace_back([&, w] {
                try {
                    work(w, n * w / workers, n * (w + 1) / workers);
                } catch (...) {
                    errors[w] = std::current_exception();
                }
            });
    }
    for (auto& e : errors)
        if (e) std::rethrow_exception(e);
}

// Opens a results dir for reading relative to its fd.
class ResultDir {
public:
    explicit ResultDir(const std::string& path) : fd_(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {}
    int fd() const { return fd_.get(); }
    explicit operator bool() const { return static_cast<bool>(fd_); }

private:
    UniqueFd fd_;
};

// The parameters of task i, from its line in tasks.jsonl.
sweep::Assignment params_of(const TaskLines& index, std::uint64_t i) {
    try {
        return task_params(index.line(i));
    } catch (const Error& e) {
        throw Error("task " + std::to_string(i) + ": " + e.what());
    }
}

// The tasks that failed in a phase before `shown`, each with the row of the first phase
// it failed in. Earlier phases only matter when they failed: a quick look at the exit
// code first, a full parse only then (such a task has no result of the shown phase).
template <typename CannotRead>
std::map<std::uint64_t, ResultRow> failed_before(const sweep::SweepDir& sweep, const std::string& shown,
                                                 CannotRead& cannot_read) {
    std::map<std::uint64_t, ResultRow> failed_early;
    std::mutex merge;
    for (const auto& phase : sweep.spec.phases) {
        if (phase.name == shown) break;  // the phases after the one shown do not count
        std::string path = sweep::results_dir(sweep, phase);
        auto files = list_results(path, sweep.tasks);
        ResultDir dir(path);
        if (files.empty() || !dir) continue;
        in_parallel(files.size(), [&](unsigned, std::size_t begin, std::size_t end) {
            FileText file;
            char buf[32];
            std::vector<ResultRow> found;
            for (std::size_t k = begin; k < end; ++k) {
                if (!file.read(dir.fd(), files.name(k, buf))) continue;
                auto verdict = sweep::judge_result(file.text(), files.index(k));
                if (verdict.verdict == sweep::Verdict::unreadable) cannot_read(path, files.name(k, buf), verdict.problem);
                if (verdict.verdict != sweep::Verdict::failed) continue;
                auto row = row_of(file.text());
                if (!row) row = ResultRow{};
                row->index = files.index(k);
                row->exit_code = verdict.exit_code;
                if (row->phase.empty()) row->phase = phase.name;
                row->state = TaskState::failed;
                found.push_back(std::move(*row));
            }
            std::lock_guard lock(merge);
            for (auto& row : found) failed_early.emplace(row.index, std::move(row));  // the first phase that failed wins
        });
    }
    return failed_early;
}

}  // namespace

unsigned reader_threads() { return std::max(1u, std::min(8u, std::thread::hardware_concurrency())); }

std::vector<TaskState> for_each_row(const sweep::SweepDir& sweep, bool include_missing, const RowConsumer& add_row,
                                    std::vector<sweep::UnreadableResult>* unreadable, const std::string& phase_name) {
    // A scheduled sweep's row shows its configuration at the highest rung it reached.
    std::vector<sweep::RungPlace> places;
    if (sweep.spec.schedule) places = sweep::rung_places(sweep);
    RowConsumer add = add_row;
    if (sweep.spec.schedule)
        add = [&](unsigned worker, ResultRow&& row) {
            if (row.index < places.size()) sweep::add_rung_place(row.params, places[row.index], sweep.spec.schedule->resource);
            add_row(worker, std::move(row));
        };
    const sweep::Phase& shown = sweep::find_phase(sweep.spec, phase_name);
    const auto& last = shown.name;
    std::vector<TaskState> state(sweep.tasks, TaskState::missing);
    std::mutex merge;
    auto cannot_read = [&](const std::string& dir, const char* name, std::string problem) {
        if (!unreadable) return;
        std::lock_guard lock(merge);
        unreadable->push_back({dir + "/" + name, std::move(problem)});
    };

    std::map<std::uint64_t, ResultRow> failed_early = failed_before(sweep, last, cannot_read);

    TaskLines index(sweep.path);
    std::string path = sweep::results_dir(sweep, shown);
    auto files = list_results(path, sweep.tasks);
    ResultDir dir(path);
    if (!dir && !files.empty()) throw_errno("cannot open " + path);
    in_parallel(files.size(), [&](unsigned worker, std::size_t begin, std::size_t end) {
        FileText file;
        char buf[32];
        std::size_t released = begin;
        for (std::size_t k = begin; k < end; ++k) {
            if (k - released >= 4096) {
                index.release(files.index(released), files.index(k));
                released = k;
            }
            if (!file.read(dir.fd(), files.name(k, buf))) continue;
            std::uint64_t i = files.index(k);
            // sweep::judge_result decides, as for every other command; a document it
            // takes that the row reader still refuses (a member of the wrong type) is
            // just as unreadable. Such a task counts as missing.
            auto verdict = sweep::judge_result(file.text(), i);
            std::string problem = verdict.problem;
            std::optional<ResultRow> row;
            if (verdict.verdict != sweep::Verdict::unreadable) row = row_of(file.text(), &problem);
            if (!row) {
                cannot_read(path, files.name(k, buf), problem);
                continue;
            }
            if (auto early = failed_early.find(i); early != failed_early.end()) {
                // A later phase's result cannot hide an earlier failure: the row shows the
                // phase that failed, and why.
                ResultRow failed = early->second;
                failed.params = params_of(index, i);
                failed.state = TaskState::failed;
                state[i] = TaskState::failed;
                add(worker, std::move(failed));
                continue;
            }
            row->index = i;
            if (row->phase.empty()) row->phase = last;
            row->state = *row->exit_code != 0 ? TaskState::failed : TaskState::done;
            state[i] = row->state;
            row->params = params_of(index, i);
            add(worker, std::move(*row));
        }
    });
    for (auto& [i, row] : failed_early) {
        if (state[i] != TaskState::missing) continue;
        state[i] = TaskState::failed;
        row.params = params_of(index, i);
        add(0, std::move(row));
    }
    if (include_missing) {
        ResultRow row;
        for (std::uint64_t i = 0; i < sweep.tasks; ++i)
            if (state[i] == TaskState::missing) {
                row.index = i;
                row.state = TaskState::missing;
                row.params = params_of(index, i);
                add(0, ResultRow(row));
            }
    }
    return state;
}

ResultTable read_results(const sweep::SweepDir& sweep, const ReadOptions& options) {
    ResultTable table;
    table.tasks = sweep.tasks;
    table.multi_phase = sweep.spec.phases.size() > 1;
    table.phase = sweep::find_phase(sweep.spec, options.phase).name;
    table.param_names = sweep::parameter_names(sweep.spec);
    for (auto& name : sweep::rung_columns(sweep.spec)) table.param_names.push_back(name);
    std::vector<std::vector<ResultRow>> parts(reader_threads());
    auto state = for_each_row(
        sweep, options.include_missing, [&](unsigned worker, ResultRow&& row) { parts[worker].push_back(std::move(row)); }, &table.unreadable,
        options.phase);
    std::size_t total = 0;
    for (auto& p : parts) total += p.size();
    table.rows.reserve(total);
    for (auto& p : parts) {
        for (auto& row : p) table.rows.push_back(std::move(row));
        p = {};
    }
    for (std::uint64_t i = 0; i < sweep.tasks; ++i) {
        if (state[i] == TaskState::done) table.done.insert(table.done.end(), i);
        else if (state[i] == TaskState::failed) table.failed.insert(table.failed.end(), i);
    }
    std::sort(table.rows.begin(), table.rows.end(), [](const ResultRow& a, const ResultRow& b) { return a.index < b.index; });

    std::unordered_set<std::string> seen;
    for (auto& row : table.rows)
        for (auto& [name, value] : row.metrics)
            if (seen.insert(name).second) table.metric_names.push_back(name);
    return table;
}

namespace {

const sweep::Scalar* find_value(const sweep::Assignment& values, const std::string& name) {
    for (auto& [k, v] : values)
        if (k == name) return &v;
    return nullptr;
}

}  // namespace

SortSource fixed_sort_source(const ResultTable& header, const std::string& column) {
    if (std::find(header.param_names.begin(), header.param_names.end(), column) != header.param_names.end()) return SortSource::param;
    if (column == "index") return SortSource::index;
    if (column == "exit_code") return SortSource::exit_code;
    if (column == "elapsed_s") return SortSource::elapsed_s;
    return SortSource::none;
}

std::optional<double> sort_value(const ResultRow& row, SortSource source, const std::string& column) {
    switch (source) {
    case SortSource::none: return std::nullopt;
    case SortSource::metric:
        // "Best" is never a failed run: a metric ranks only a task that succeeded, and a
        // failed task's partial metric sorts with the rows that have none.
        if (row.state != TaskState::done) return std::nullopt;
        if (auto* s = find_value(row.metrics, column)) return number_of(*s);
        return std::nullopt;
    case SortSource::param:
        if (auto* s = find_value(row.params, column)) return number_of(*s);
        return std::nullopt;
    case SortSource::index: return static_cast<double>(row.index);
    case SortSource::exit_code:
        if (row.exit_code) return static_cast<double>(*row.exit_code);
        return std::nullopt;
    case SortSource::elapsed_s: return row.elapsed_s;
    }
    return std::nullopt;
}

void throw_unknown_sort_column(const std::string& column, const std::vector<std::string>& metric_names, const std::string& phase) {
    throw Error("--sort: no result" + (phase.empty() ? std::string() : " of phase '" + phase + "'") + " reports a metric '" + column + "'" +
                (metric_names.empty() ? std::string(" (the results have no metrics)") : " (metrics: " + join(metric_names, ", ") + ")") +
                (phase.empty() ? std::string() : "; --phase NAME collects the metrics of an earlier phase"));
}

SortSource sort_rows(ResultTable& table, const SortKey& key) {
    bool is_metric = std::find(table.metric_names.begin(), table.metric_names.end(), key.column) != table.metric_names.end();
    SortSource source = is_metric ? SortSource::metric : fixed_sort_source(table, key.column);
    if (source == SortSource::none) {
        if (table.rows.empty()) return source;
        throw_unknown_sort_column(key.column, table.metric_names, table.multi_phase ? table.phase : std::string());
    }
    // The keys are computed once: a strtod per comparison would dominate on large sweeps.
    std::vector<std::pair<std::optional<double>, std::size_t>> keys;
    keys.reserve(table.rows.size());
    for (std::size_t i = 0; i < table.rows.size(); ++i) keys.emplace_back(sort_value(table.rows[i], source, key.column), i);
    std::stable_sort(keys.begin(), keys.end(), [&](const auto& a, const auto& b) {
        if (a.first.has_value() != b.first.has_value()) return a.first.has_value();
        if (a.first && *a.first != *b.first) return key.maximize ? *a.first > *b.first : *a.first < *b.first;
        return table.rows[a.second].index < table.rows[b.second].index;
    });
    std::vector<ResultRow> sorted;
    sorted.reserve(table.rows.size());
    for (auto& k : keys) sorted.push_back(std::move(table.rows[k.second]));
    table.rows = std::move(sorted);
    return source;
}

void keep_top(ResultTable& table, std::size_t top, bool successes_only) {
    if (top == 0) return;
    if (successes_only)
        std::erase_if(table.rows, [](const ResultRow& row) { return row.state != TaskState::done; });
    if (table.rows.size() > top) table.rows.resize(top);
}

void aggregate_replicates(ResultTable& table, sweep::Aggregate how, bool replicates) {
    struct Group {
        std::size_t first;  // the row of its first replicate
        std::vector<std::size_t> rows;
    };
    std::vector<Group> groups;
    std::map<std::string, std::size_t> by_key;
    std::vector<ResultRow> others;
    for (std::size_t r = 0; r < table.rows.size(); ++r) {
        auto& row = table.rows[r];
        if (row.state != TaskState::done) continue;
        auto key = sweep::configuration_key(row.params, replicates);
        auto [it, fresh] = by_key.emplace(key, groups.size());
        if (fresh) groups.push_back({r, {}});
        groups[it->second].rows.push_back(r);
    }
    std::vector<ResultRow> out;
    out.reserve(groups.size());
    for (auto& g : groups) {
        ResultRow row = table.rows[g.first];
        if (replicates) std::erase_if(row.params, [](const auto& p) { return p.first == "repeat"; });
        row.replicates = g.rows.size();
        row.metrics.clear();
        row.non_finite.clear();
        // Each metric over the replicates that report it: numbers aggregated, any other
        // value (text) as the first replicate has it.
        for (auto r : g.rows)
            for (auto& [name, value] : table.rows[r].metrics) {
                bool seen = false;
                for (auto& m : row.metrics) seen = seen || m.first == name;
                if (seen) continue;
                std::vector<double> numbers;
                for (auto q : g.rows)
                    for (auto& [n, v] : table.rows[q].metrics)
                        if (n == name)
                            if (auto d = number_of(v)) numbers.push_back(*d);
                if (numbers.empty()) row.metrics.emplace_back(name, value);
                else row.metrics.emplace_back(name, sweep::scalar_double(sweep::aggregate_of(numbers, how)));
            }
        std::vector<double> elapsed;
        for (auto r : g.rows)
            if (table.rows[r].elapsed_s) elapsed.push_back(*table.rows[r].elapsed_s);
        if (!elapsed.empty()) row.elapsed_s = sweep::aggregate_of(elapsed, how);
        for (auto r : g.rows)
            if (table.rows[r].node != row.node) row.node.clear();  // replicates on several nodes
        out.push_back(std::move(row));
    }
    for (auto& row : table.rows)
        if (row.state != TaskState::done) out.push_back(std::move(row));
    table.rows = std::move(out);
    if (replicates) std::erase(table.param_names, std::string("repeat"));
    table.aggregated = true;
}

std::vector<Column> columns(const ResultTable& table) {
    std::vector<Column> out = {{Column::index, "index", ""}, {Column::state, "status", ""}};
    if (table.multi_phase) out.push_back({Column::phase, "phase", ""});
    std::unordered_set<std::string> taken = {"index", "status", "phase", "exit_code", "elapsed_s", "node"};
    for (auto& p : table.param_names) {
        out.push_back({Column::param, p, p});
        taken.insert(p);
    }
    if (table.aggregated) {
        out.push_back({Column::replicates, "replicates", ""});
        taken.insert("replicates");
    }
    // A metric named like a parameter or a fixed column keeps its own column.
    for (auto& m : table.metric_names) out.push_back({Column::metric, taken.count(m) ? "metrics." + m : m, m});
    out.push_back({Column::exit_code, "exit_code", ""});
    out.push_back({Column::elapsed_s, "elapsed_s", ""});
    out.push_back({Column::node, "node", ""});
    if (table.with_sacct) {
        out.push_back({Column::sacct_state, "State", ""});
        out.push_back({Column::sacct_exit_code, "ExitCode", ""});
        out.push_back({Column::sacct_elapsed, "Elapsed", ""});
        out.push_back({Column::sacct_max_rss, "MaxRSS", ""});
    }
    for (auto& c : out)
        if (c.kind == Column::param || c.kind == Column::metric) c.precision = table.precision;
    if (table.shown_columns.empty()) return out;
    std::vector<Column> shown;
    for (const auto& name : table.shown_columns) {
        auto it = std::find_if(out.begin(), out.end(), [&](const Column& c) { return c.name == name; });
        if (it == out.end()) {
            std::vector<std::string> names;
            for (auto& c : out) names.push_back(c.name);
            throw Error("--columns: there is no column '" + name + "' (columns: " + join(names, ", ") + ")");
        }
        shown.push_back(*it);
    }
    return shown;
}

namespace {

std::string elapsed_text(double s) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3f", s);
    return buf;
}

// A value's text with `precision` significant digits when it is a float (integers, text
// and booleans as they are).
std::string rounded(const sweep::Scalar& value, int precision) {
    const auto& j = value.json;
    if (precision <= 0 || j.empty() || j[0] == '"' || j.find_first_of(".eE") == std::string::npos) return value.plain;
    auto d = number_of(value);
    if (!d) return value.plain;
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*g", precision, *d);
    return buf;
}

}  // namespace

std::string cell_text(const ResultRow& row, const Column& c) {
    switch (c.kind) {
    case Column::index: return std::to_string(row.index);
    case Column::state: return task_state_name(row.state);
    case Column::phase: return row.phase;
    case Column::param:
        if (auto* v = find_value(row.params, c.key)) return rounded(*v, c.precision);
        return "";
    case Column::metric:
        if (auto* v = find_value(row.metrics, c.key)) return rounded(*v, c.precision);
        return "";
    case Column::replicates: return row.replicates ? std::to_string(row.replicates) : "";
    case Column::exit_code: return row.exit_code ? std::to_string(*row.exit_code) : "";
    case Column::elapsed_s: return row.elapsed_s ? elapsed_text(*row.elapsed_s) : "";
    case Column::node: return row.node;
    case Column::sacct_state: return row.sacct ? row.sacct->state : "";
    case Column::sacct_exit_code: return row.sacct ? row.sacct->exit_code : "";
    case Column::sacct_elapsed: return row.sacct ? row.sacct->elapsed : "";
    case Column::sacct_max_rss: return row.sacct ? row.sacct->max_rss : "";
    }
    return "";
}

std::string cell_json(const ResultRow& row, const Column& c) {
    switch (c.kind) {
    case Column::index: return std::to_string(row.index);
    case Column::param:
        if (auto* v = find_value(row.params, c.key)) return v->json;
        return "null";
    case Column::metric:
        if (auto* v = find_value(row.metrics, c.key)) return v->json;
        return "null";
    case Column::replicates: return row.replicates ? std::to_string(row.replicates) : "null";
    case Column::exit_code: return row.exit_code ? std::to_string(*row.exit_code) : "null";
    case Column::elapsed_s: return row.elapsed_s ? elapsed_text(*row.elapsed_s) : "null";
    default: {
        auto t = cell_text(row, c);
        return json_quote_or_null(t);
    }
    }
}

}  // namespace aihpc::collect
