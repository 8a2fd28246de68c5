#include "sweep/sweep_dir.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstring>
#include <ctime>
#include <iterator>
#include <memory>
#include <optional>
#include <set>
#include <vector>

#include "common/error.hpp"
#include "common/json.hpp"
#include "common/paths.hpp"
#include "sweep/command.hpp"
#include "sweep/expand.hpp"
#include "sweep/schedule.hpp"

namespace aihpc::sweep {

namespace {

void write_all(int fd, const char* data, std::size_t size, const std::string& path) {
    while (size) {
        ssize_t n = ::write(fd, data, size);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("cannot write " + path);
        }
        data += n;
        size -= static_cast<std::size_t>(n);
    }
}

// A file written through a large buffer, published by rename on commit().
class BufferedFile {
public:
    explicit BufferedFile(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp"), buf_(new char[kSize]) {
        fd_ = UniqueFd(::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666));
        if (!fd_) throw_errno("cannot create " + tmp_);
    }
    ~BufferedFile() {
        if (fd_) ::unlink(tmp_.c_str());
    }
    // Room for `n` more bytes at the returned pointer; written() says how many were used.
    // One check per record, not one per piece of it: the expand loop writes a million.
    char* room(std::size_t n) {
        if (n > kSize) throw Error("a task line of " + std::to_string(n) + " bytes is too long for " + path_);
        if (used_ + n > kSize) flush();
        return buf_.get() + used_;
    }
    void written(char* end) { used_ = static_cast<std::size_t>(end - buf_.get()); }
    void flush() {
        write_all(fd_.get(), buf_.get(), used_, tmp_);
        used_ = 0;
    }
    void commit() {
        flush();
        fd_.reset();
        if (::rename(tmp_.c_str(), path_.c_str()) != 0) throw_errno("cannot rename " + tmp_ + " to " + path_);
    }

private:
    static constexpr std::size_t kSize = 1 << 20;
    std::string path_, tmp_;
    UniqueFd fd_;
    std::unique_ptr<char[]> buf_;
    std::size_t used_ = 0;
};

char* put(char* at, std::string_view text) {
    std::memcpy(at, text.data(), text.size());
    return at + text.size();
}

std::string absolute(const std::string& path) {
    char buf[PATH_MAX];
    if (!::realpath(path.c_str(), buf)) throw_errno("cannot resolve " + path);
    return buf;
}

}  // namespace

std::string spec_hash(const SweepSpec& spec) {
    auto text = normalize(spec);
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(XXH3_64bits(text.data(), text.size())));
    return buf;
}

std::string rfc3339_now() {
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    ::localtime_r(&now, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S%z", &tm);
    std::string s(buf);
    s.insert(s.size() - 2, ":");  // +0200 -> +02:00
    return s;
}

void write_file_atomic(const std::string& path, std::string_view text) {
    std::string tmp = path + ".tmp." + std::to_string(::getpid());
    {
        UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666));
        if (!fd) throw_errno("cannot create " + tmp);
        try {
            write_all(fd.get(), text.data(), text.size(), tmp);
        } catch (...) {
            ::unlink(tmp.c_str());
            throw;
        }
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        int err = errno;
        ::unlink(tmp.c_str());
        throw SystemError("cannot rename " + tmp + " to " + path, err);
    }
}

std::string read_file(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) throw_errno("cannot open " + path);
    std::string out;
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("cannot read " + path);
        }
        if (n == 0) break;
        out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
}

namespace {

// Removes, unless dismissed, the files and directories an expand created, newest first.
class CreatedPaths {
public:
    ~CreatedPaths() {
        if (dismissed_) return;
        for (auto it = paths_.rbegin(); it != paths_.rend(); ++it)
            if (::rmdir(it->c_str()) != 0 && errno == ENOTDIR) ::unlink(it->c_str());
    }
    void directory(const std::string& path) {
        if (path_exists(path)) return;
        make_directory(path);
        paths_.push_back(path);
    }
    // Every missing directory down to `path`, as mkdir -p.
    void directories(const std::string& path) {
        std::vector<std::string> chain;
        for (std::string p = path; !p.empty() && p != "/" && p != "." && !path_exists(p);) {
            chain.push_back(p);
            auto slash = p.find_last_of('/');
            if (slash == std::string::npos) break;
            p = p.substr(0, slash);
        }
        for (auto it = chain.rbegin(); it != chain.rend(); ++it) directory(*it);
    }
    void file(const std::string& path) { paths_.push_back(path); }
    void dismiss() { dismissed_ = true; }

private:
    std::vector<std::string> paths_;
    bool dismissed_ = false;
};

std::string with_commas(std::uint64_t n) {
    auto digits = std::to_string(n);
    std::string out;
    for (std::size_t i = 0; i < digits.size(); ++i) {
        if (i && (digits.size() - i) % 3 == 0) out += ',';
        out += digits[i];
    }
    return out;
}

}  // namespace

namespace {

// The parameters every task carries whatever the branch: a union member's parameter is
// in all tasks only when every member of that union gives it.
std::set<std::string> names_in_every_task(const std::vector<Axis>& axes) {
    std::set<std::string> out;
    for (const auto& axis : axes) {
        if (axis.kind == AxisKind::zip) {
            out.insert(axis.zip_names.begin(), axis.zip_names.end());
        } else if (axis.kind == AxisKind::union_) {
            std::optional<std::set<std::string>> common;
            for (const auto& b : axis.branches) {
                auto mine = names_in_every_task(b.axes);
                for (auto& [k, v] : b.fixed) mine.insert(k);
                if (!common) {
                    common = std::move(mine);
                } else {
                    std::set<std::string> both;
                    std::set_intersection(common->begin(), common->end(), mine.begin(), mine.end(), std::inserter(both, both.end()));
                    common = std::move(both);
                }
            }
            if (common) out.insert(common->begin(), common->end());
        } else {
            out.insert(axis.param);
        }
    }
    return out;
}

// A {name} of a command template that some tasks may lack, and where it is used.
struct ConditionalReference {
    std::string name, where;
    std::string key_text;  // ,"name": -- how the name starts a member of a params object
};

std::vector<ConditionalReference> conditional_references(const SweepSpec& spec) {
    auto every = names_in_every_task(spec.axes);
    std::vector<ConditionalReference> out;
    for (const auto& phase : spec.phases) {
        std::string where = spec.phases.size() > 1 ? "the command of phase '" + phase.name + "'" : "the command template";
        for (auto& ref : template_references(spec.command_of(phase))) {
            if (ref == "index" || ref == "task_seed" || ref == "phase" || every.count(ref)) continue;
            // The schedule's resource is in every task at run time: each rung sets it.
            if (spec.schedule && ref == spec.schedule->resource) continue;
            out.push_back({ref, where, "\"" + ref + "\":"});
        }
    }
    return out;
}

// Whether a params object ({"a":1,"b":"x"}) has a member `key_text` ("b":): a key is
// always preceded by '{' or ',', and a quote inside a string value is always escaped.
bool has_member(std::string_view params, const std::string& key_text) {
    for (auto at = params.find(key_text); at != std::string_view::npos; at = params.find(key_text, at + 1))
        if (at > 0 && (params[at - 1] == '{' || params[at - 1] == ',')) return true;
    return false;
}

}  // namespace

ExpandSummary write_sweep_dir(const SweepSpec& spec, const std::string& dir, const Provenance& provenance, const ExpandOptions& options) {
    if (path_exists(dir + "/sweep.json") || path_exists(dir + "/tasks.jsonl"))
        throw Error(dir + " already holds a sweep; remove it or choose another -o");
    check_spec_to_expand(spec);
    // The size is known before any task is made: refuse first, so that nothing is written.
    TaskStream stream(spec);
    if (stream.product_size() > options.max_tasks)
        throw Error("the sweep has " + with_commas(stream.product_size()) + " tasks" + (spec.exclude.empty() ? "" : " before exclusions") +
                    ", more than --max-tasks " + with_commas(options.max_tasks) + "; shrink the spec or raise --max-tasks");

    CreatedPaths created;
    created.directories(dir);
    for (auto sub : {"/results", "/logs", "/scripts"}) created.directory(dir + sub);

    ExpandSummary summary;
    summary.spec_hash = spec_hash(spec);
    BufferedFile lines(dir + "/tasks.jsonl");
    BufferedFile offsets(dir + "/tasks.idx");
    std::uint64_t offset = 0;
    // A template that names a parameter of only some union members would fail at run
    // time on the others, with no result to tell why: each task is checked here, but only
    // for such names (most sweeps have none, and pay nothing).
    auto conditional = conditional_references(spec);
    while (stream.next()) {
        for (const auto& ref : conditional)
            if (!has_member(stream.params(), ref.key_text))
                throw Error("task " + std::to_string(stream.index()) + " " + std::string(stream.params()) + " has no parameter '" + ref.name +
                            "', which " + ref.where + " uses as {" + ref.name + "}; give it a value in every union member (a conditional " +
                            "term NAME=...@KEY=VALUE gives it only to the tasks of that KEY value), or leave {" + ref.name +
                            "} out of the command");
        std::string_view params = stream.params();
        char* idx = offsets.room(8);
        for (int b = 0; b < 8; ++b) *idx++ = static_cast<char>((offset >> (8 * b)) & 0xff);
        offsets.written(idx);
        // {"index":I,"params":{...},"task_seed":S}\n, each number at most 20 digits.
        char* const start = lines.room(params.size() + 80);
        char* at = put(start, "{\"index\":");
        at = std::to_chars(at, at + 20, stream.index()).ptr;
        at = put(at, ",\"params\":");
        at = put(at, params);
        at = put(at, ",\"task_seed\":");
        at = std::to_chars(at, at + 20, stream.task_seed()).ptr;
        at = put(at, "}\n");
        lines.written(at);
        offset += static_cast<std::uint64_t>(at - start);
        ++summary.tasks;
    }
    summary.excluded = stream.generated() - summary.tasks;
    summary.distinct = stream.distinct_configurations();
    summary.whole_space = stream.enumerates_space();
    if (summary.tasks == 0) throw Error("the sweep has no tasks: every task is excluded");
    if (spec.schedule) {
        // Each bracket takes its own configurations, in order, so that a configuration's
        // checkpoints belong to it alone.
        auto needed = configurations_needed(*spec.schedule);
        if (summary.tasks < needed)
            throw Error("the schedule (" + std::string(schedule_type_name(spec.schedule->type)) + ", min " + std::to_string(spec.schedule->min) +
                        ", max " + std::to_string(spec.schedule->max) + ", eta " + std::to_string(spec.schedule->eta) + ") needs " +
                        std::to_string(needed) + " configurations, but the space gives " + std::to_string(summary.tasks) +
                        "; draw at least that many (\"method\": \"random\", \"trials\": " + std::to_string(needed) + ", or --random " +
                        std::to_string(needed) + ") from a space that has them, or widen the grid");
    }
    if (!options.allow_empty_exclude)
        for (std::size_t r = 0; r < spec.exclude.size(); ++r)
            if (stream.exclude_hits()[r] == 0) {
                std::string rule;
                for (auto& [k, v] : spec.exclude[r]) rule += (rule.empty() ? "" : ",") + k + "=" + v.json;
                throw Error("exclusion rule " + std::to_string(r) + " (" + rule +
                            ") matches no task; check its names and values (96 and 96.0 differ), or pass --allow-empty-exclude");
            }
    created.file(dir + "/tasks.jsonl");
    lines.commit();
    created.file(dir + "/tasks.idx");
    offsets.commit();

    std::string meta = "{\"version\":" + json_quote(provenance.version) + ",\"created\":" + json_quote(provenance.created) +
                       ",\"git_commit\":" + json_quote_or_null(provenance.git_commit) +
                       ",\"spec_hash\":" + json_quote(summary.spec_hash) + ",\"tasks\":" + std::to_string(summary.tasks) +
                       ",\"excluded\":" + std::to_string(summary.excluded) +
                       (summary.distinct ? ",\"distinct\":" + std::to_string(summary.distinct) : std::string()) +
                       ",\"spec\":" + normalize(spec) + "}\n";
    created.file(dir + "/sweep.json");
    write_file_atomic(dir + "/sweep.json", meta);
    created.dismiss();
    return summary;
}

SweepDir open_sweep(const std::string& dir) {
    std::string path = dir + "/sweep.json";
    if (!path_exists(path)) throw Error(dir + " is not a sweep dir (no sweep.json); create one with aihpc-sweep expand");
    auto text = read_file(path);
    SweepDir out;
    try {
        JsonValue doc = parse_json_value(text);
        const JsonValue* spec = doc.find("spec");
        if (!spec) throw JsonError("", "has no spec");
        out.spec = parse_spec(spec->to_json());
        if (const JsonValue* v = doc.find("spec_hash")) out.spec_hash = v->as_string("spec_hash");
        if (const JsonValue* v = doc.find("git_commit"); v && v->is_string()) out.git_commit = v->text();
        if (const JsonValue* v = doc.find("tasks")) out.tasks = v->as_uint64("tasks");
    } catch (const JsonError& e) {
        throw Error(path + " is damaged (" + e.what() + "); expand the sweep again");
    }
    out.path = absolute(dir);
    return out;
}

TaskRecord parse_task_line(std::string_view line) {
    TaskRecord rec;
    try {
        JsonValue doc = parse_json_value(line);
        const auto& members = doc.as_object("");
        const JsonValue* index = doc.find("index");
        const JsonValue* params = doc.find("params");
        const JsonValue* seed = doc.find("task_seed");
        if (!index || !params || !seed || members.size() != 3) throw JsonError("", "must hold exactly index, params and task_seed");
        rec.index = index->as_uint64("index");
        rec.task_seed = seed->as_uint64("task_seed");
        for (const auto& [key, value] : params->as_object("params")) {
            auto path = json_member_path("params", key);
            Scalar s;
            switch (value.kind()) {
            case JsonValue::Kind::string: s = scalar_string(value.text()); break;
            case JsonValue::Kind::integer:
                value.as_int64(path);
                [[fallthrough]];
            case JsonValue::Kind::number:
                // Numbers keep the exact text tasks.jsonl holds.
                s.json = value.text();
                s.plain = s.json;
                break;
            case JsonValue::Kind::boolean: s = scalar_bool(value.boolean()); break;
            default: throw JsonError(path, "a parameter value must be a number, a string or a boolean");
            }
            rec.params.emplace_back(key, std::move(s));
        }
        rec.params_json = params->to_json();
    } catch (const JsonError& e) {
        throw Error(std::string("tasks.jsonl: malformed line: ") + e.what() + "; expand the sweep again");
    }
    return rec;
}

TaskIndex::TaskIndex(const std::string& dir) : dir_(dir) {
    lines_ = UniqueFd(::open((dir + "/tasks.jsonl").c_str(), O_RDONLY | O_CLOEXEC));
    if (!lines_) throw_errno("cannot open " + dir + "/tasks.jsonl");
    offsets_ = UniqueFd(::open((dir + "/tasks.idx").c_str(), O_RDONLY | O_CLOEXEC));
    if (!offsets_) throw_errno("cannot open " + dir + "/tasks.idx");
    struct stat st;
    if (::fstat(offsets_.get(), &st) != 0) throw_errno("cannot stat " + dir + "/tasks.idx");
    count_ = static_cast<std::uint64_t>(st.st_size) / 8;
    if (::fstat(lines_.get(), &st) != 0) throw_errno("cannot stat " + dir + "/tasks.jsonl");
    lines_size_ = static_cast<std::uint64_t>(st.st_size);
}

std::string TaskIndex::line(std::uint64_t i) const {
    if (i >= count_)
        throw Error("task index " + std::to_string(i) + " is out of range: " + dir_ + " has " + std::to_string(count_) + " tasks (0-" +
                    std::to_string(count_ ? count_ - 1 : 0) + ")");
    unsigned char b[16];
    std::size_t want = i + 1 < count_ ? 16 : 8;
    if (::pread(offsets_.get(), b, want, static_cast<off_t>(i * 8)) != static_cast<ssize_t>(want))
        throw_errno("cannot read " + dir_ + "/tasks.idx");
    auto le = [](const unsigned char* p) {
        std::uint64_t v = 0;
        for (int k = 7; k >= 0; --k) v = (v << 8) | p[k];
        return v;
    };
    std::uint64_t start = le(b), end = want == 16 ? le(b + 8) : lines_size_;
    if (end <= start || end > lines_size_) throw Error(dir_ + "/tasks.idx does not match tasks.jsonl; expand the sweep again");
    std::string out(end - start, '\0');
    if (::pread(lines_.get(), out.data(), out.size(), static_cast<off_t>(start)) != static_cast<ssize_t>(out.size()))
        throw_errno("cannot read " + dir_ + "/tasks.jsonl");
    if (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
}

bool is_file(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace aihpc::sweep
