// The files the result readers go through, at a system call or less each: the result
// files of a dir listed by index and read whole into a reused buffer, tasks.jsonl mapped
// with its index, and the fan-out of a run of files over the reader threads.
#pragma once
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "collect/result_table.hpp"
#include "common/fd.hpp"

namespace aihpc::collect {

// Reads whole files into one reused buffer: an open, one read (results are small) and a
// close per file, no stat.
class FileText {
public:
    FileText() : buf_(kStart, '\0') {}
    bool read(int dir_fd, const char* name);
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
    const char* name(std::size_t k, char (&buf)[32]) const;
    void add(std::uint64_t index, std::string_view name);
    // Index order: each reader thread takes a run of neighbouring tasks, whose lines of
    // tasks.jsonl lie together.
    void sort();

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
ResultFiles list_results(const std::string& dir, std::uint64_t tasks);

// Opens a results dir for reading relative to its fd.
class ResultDir {
public:
    explicit ResultDir(const std::string& path);
    int fd() const { return fd_.get(); }
    explicit operator bool() const { return static_cast<bool>(fd_); }

private:
    UniqueFd fd_;
};

// A read-only map of a whole file (nothing for an empty one).
class MappedFile {
public:
    explicit MappedFile(const std::string& path);
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    const char* data() const { return data_; }
    std::size_t size() const { return size_; }
    // Lets the pages of [from, to) go from this process (they stay in the page cache):
    // the lines already read do not add up in its memory.
    void release(std::size_t from, std::size_t to) const;

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
    std::uint64_t offset(std::uint64_t i) const;
    // The line of task i, as sweep::TaskIndex::line reads it.
    std::string_view line(std::uint64_t i) const;
    // Drops the pages of the lines of tasks [from, to) from this process.
    void release(std::uint64_t from, std::uint64_t to) const;

private:
    std::string dir_;
    MappedFile lines_, offsets_;
};

// Runs work(worker, begin, end) over [0, n) split among reader_threads() threads; small
// jobs stay on this thread. The first exception of any worker is rethrown here, after
// all have ended.
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

}  // namespace aihpc::collect
