#include "collect/result_files.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>

#include "common/error.hpp"
#include "common/text.hpp"

namespace aihpc::collect {

bool FileText::read(int dir_fd, const char* name) {
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

const char* ResultFiles::name(std::size_t k, char (&buf)[32]) const {
    if (files_[k].odd != kCanonical) return odd_[files_[k].odd].c_str();
    auto r = std::to_chars(buf, buf + 20, files_[k].index);
    std::memcpy(r.ptr, ".json", 6);
    return buf;
}

void ResultFiles::add(std::uint64_t index, std::string_view name) {
    std::uint32_t odd = kCanonical;
    char buf[32];
    auto r = std::to_chars(buf, buf + 20, index);
    if (name.substr(0, name.size() - 5) != std::string_view(buf, static_cast<std::size_t>(r.ptr - buf))) {
        odd = static_cast<std::uint32_t>(odd_.size());
        odd_.emplace_back(name);
    }
    files_.push_back({index, odd});
}

void ResultFiles::sort() {
    std::sort(files_.begin(), files_.end(), [](const File& a, const File& b) { return a.index < b.index; });
}

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

ResultDir::ResultDir(const std::string& path) : fd_(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {}

MappedFile::MappedFile(const std::string& path) {
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

MappedFile::~MappedFile() {
    if (data_) ::munmap(const_cast<char*>(data_), size_);
}

void MappedFile::release(std::size_t from, std::size_t to) const {
    static const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    from = (from + page - 1) / page * page;
    to = std::min(to, size_) / page * page;
    if (data_ && from < to) ::madvise(const_cast<char*>(data_) + from, to - from, MADV_DONTNEED);
}

std::uint64_t TaskLines::offset(std::uint64_t i) const {
    if (i >= count()) return lines_.size();
    std::uint64_t v = 0;
    const auto* p = reinterpret_cast<const unsigned char*>(offsets_.data()) + i * 8;
    for (int k = 7; k >= 0; --k) v = (v << 8) | p[k];
    return v;
}

std::string_view TaskLines::line(std::uint64_t i) const {
    if (i >= count())
        throw Error("task index " + std::to_string(i) + " is out of range: " + dir_ + " has " + std::to_string(count()) + " tasks (0-" +
                    std::to_string(count() ? count() - 1 : 0) + ")");
    std::uint64_t start = offset(i), end = offset(i + 1);
    if (end <= start || end > lines_.size()) throw Error(dir_ + "/tasks.idx does not match tasks.jsonl; expand the sweep again");
    std::string_view out(lines_.data() + start, end - start);
    if (out.back() == '\n') out.remove_suffix(1);
    return out;
}

void TaskLines::release(std::uint64_t from, std::uint64_t to) const {
    offsets_.release(std::min(from, count()) * 8, std::min(to, count()) * 8);
    lines_.release(offset(from), offset(to));
}

}  // namespace aihpc::collect
