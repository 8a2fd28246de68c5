#include "sweep/sweep_dir.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <charconv>
#include <climits>
#include <cstring>
#include <ctime>

#include "common/error.hpp"
#include "common/json.hpp"
#include "common/paths.hpp"
#include "sweep/expand.hpp"

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
    explicit BufferedFile(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp") {
        fd_ = UniqueFd(::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666));
        if (!fd_) throw_errno("cannot create " + tmp_);
        buf_.reserve(kSize);
    }
    ~BufferedFile() {
        if (fd_) ::unlink(tmp_.c_str());
    }
    std::string& buffer() { return buf_; }
    void maybe_flush() {
        if (buf_.size() >= kSize - 4096) flush();
    }
    void flush() {
        write_all(fd_.get(), buf_.data(), buf_.size(), tmp_);
        buf_.clear();
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
    std::string buf_;
};

void append_uint(std::string& out, std::uint64_t v) {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
}

void append_le64(std::string& out, std::uint64_t v) {
    char b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<char>((v >> (8 * i)) & 0xff);
    out.append(b, 8);
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

ExpandSummary write_sweep_dir(const SweepSpec& spec, const std::string& dir, const Provenance& provenance) {
    if (path_exists(dir + "/sweep.json") || path_exists(dir + "/tasks.jsonl"))
        throw Error(dir + " already holds a sweep; remove it or choose another -o");
    make_directories(dir);
    for (auto sub : {"/results", "/logs", "/scripts"}) make_directory(dir + sub);

    ExpandSummary summary;
    summary.spec_hash = spec_hash(spec);
    BufferedFile lines(dir + "/tasks.jsonl");
    BufferedFile offsets(dir + "/tasks.idx");
    TaskStream stream(spec);
    std::uint64_t offset = 0;
    std::string& out = lines.buffer();
    std::string& idx = offsets.buffer();
    while (stream.next()) {
        std::size_t before = out.size();
        append_le64(idx, offset);
        out += "{\"index\":";
        append_uint(out, stream.index());
        out += ",\"params\":";
        out += stream.params();
        out += ",\"task_seed\":";
        append_uint(out, stream.task_seed());
        out += "}\n";
        offset += out.size() - before;
        lines.maybe_flush();
        offsets.maybe_flush();
        ++summary.tasks;
    }
    summary.excluded = stream.generated() - summary.tasks;
    if (summary.tasks == 0) throw Error("the sweep has no tasks: every task is excluded");
    lines.commit();
    offsets.commit();

    std::string meta = "{\"version\":" + json_quote(provenance.version) + ",\"created\":" + json_quote(provenance.created) +
                       ",\"git_commit\":" + json_quote_or_null(provenance.git_commit) +
                       ",\"spec_hash\":" + json_quote(summary.spec_hash) + ",\"tasks\":" + std::to_string(summary.tasks) +
                       ",\"excluded\":" + std::to_string(summary.excluded) + ",\"spec\":" + normalize(spec) + "}\n";
    write_file_atomic(dir + "/sweep.json", meta);
    return summary;
}

SweepDir open_sweep(const std::string& dir) {
    std::string path = dir + "/sweep.json";
    if (!path_exists(path)) throw Error(dir + " is not a sweep dir (no sweep.json); create one with aihpc-sweep expand");
    auto text = read_file(path);
    JsonRef doc = parse_json(text);
    json_object *spec = nullptr, *v = nullptr;
    if (!doc.get() || !json_object_object_get_ex(doc.get(), "spec", &spec))
        throw Error(path + " is damaged (no spec); expand the sweep again");
    SweepDir out;
    out.path = absolute(dir);
    out.spec = parse_spec(json_object_to_json_string_ext(spec, JSON_C_TO_STRING_PLAIN));
    if (json_object_object_get_ex(doc.get(), "spec_hash", &v)) out.spec_hash = json_object_get_string(v);
    if (json_object_object_get_ex(doc.get(), "git_commit", &v) && json_object_is_type(v, json_type_string))
        out.git_commit = json_object_get_string(v);
    if (json_object_object_get_ex(doc.get(), "tasks", &v)) out.tasks = static_cast<std::uint64_t>(json_object_get_int64(v));
    return out;
}

TaskRecord parse_task_line(std::string_view line) {
    TaskRecord rec;
    auto p = line.find("\"params\":");
    auto s = line.rfind(",\"task_seed\":");
    if (p == std::string_view::npos || s == std::string_view::npos || s < p) throw Error("tasks.jsonl: malformed line");
    rec.params_json = std::string(line.substr(p + 9, s - p - 9));
    JsonRef doc = parse_json(std::string(line));
    json_object *v = nullptr, *params = nullptr;
    if (!doc.get() || !json_object_object_get_ex(doc.get(), "params", &params)) throw Error("tasks.jsonl: malformed line");
    if (json_object_object_get_ex(doc.get(), "index", &v)) rec.index = static_cast<std::uint64_t>(json_object_get_int64(v));
    if (json_object_object_get_ex(doc.get(), "task_seed", &v)) rec.task_seed = static_cast<std::uint64_t>(json_object_get_int64(v));
    json_object_object_foreach(params, key, value) {
        Scalar s;
        if (json_object_is_type(value, json_type_string)) {
            s = scalar_string(json_object_get_string(value));
        } else {
            // Numbers and booleans keep the exact text tasks.jsonl holds.
            s.json = json_object_to_json_string_ext(value, JSON_C_TO_STRING_PLAIN);
            s.plain = s.json;
        }
        rec.params.emplace_back(key, std::move(s));
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

}  // namespace aihpc::sweep
