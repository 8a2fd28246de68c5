#include "stage/tree_copy.hpp"

#include <fcntl.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <memory>
#include <mutex>
#include <thread>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "stage/fs.hpp"

namespace aihpc::stage {

CopyPlan plan_copy(const Manifest& manifest, bool allow_split, PieceSizing sizing) {
    CopyPlan plan;
    for (std::size_t i = 0; i < manifest.entries.size(); ++i) {
        const ManifestEntry& e = manifest.entries[i];
        switch (e.type) {
        case EntryType::directory: plan.directories.push_back(i); break;
        case EntryType::symlink: plan.symlinks.push_back(i); break;
        case EntryType::file:
            if (allow_split && sizing.piece_bytes > 0 && e.size > sizing.split_above) {
                plan.split_files.push_back(i);
                for (std::uint64_t off = 0; off < e.size; off += sizing.piece_bytes)
                    plan.pieces.push_back({i, off, std::min(sizing.piece_bytes, e.size - off), false});
            } else {
                plan.pieces.push_back({i, 0, e.size, true});
            }
            break;
        }
    }
    std::stable_sort(plan.pieces.begin(), plan.pieces.end(),
                     [](const CopyPiece& a, const CopyPiece& b) { return a.length > b.length; });
    return plan;
}

mode_t staged_mode(EntryType type, mode_t source_mode, bool read_only) {
    if (!read_only) return source_mode & 07777;
    if (type == EntryType::directory) return 0555;
    return (source_mode & 0111) ? 0555 : 0444;
}

namespace {

mode_t current_umask() {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind("Umask:", 0) == 0) return static_cast<mode_t>(std::stoul(line.substr(6), nullptr, 8));
    return 022;
}

struct timespec to_timespec(std::int64_t ns) {
    struct timespec ts {};
    ts.tv_sec = static_cast<time_t>(ns / 1000000000);
    ts.tv_nsec = static_cast<long>(ns % 1000000000);
    if (ts.tv_nsec < 0) {
        ts.tv_nsec += 1000000000;
        ts.tv_sec -= 1;
    }
    return ts;
}

void write_all(int fd, const char* data, std::size_t size, std::uint64_t offset, bool positional,
               const std::string& shown_dst) {
    std::size_t done = 0;
    while (done < size) {
        ssize_t n = positional ? ::pwrite(fd, data + done, size - done, static_cast<off_t>(offset + done))
                               : ::write(fd, data + done, size - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("cannot write " + shown_dst);
        }
        done += static_cast<std::size_t>(n);
    }
}

class CopyRun {
public:
    CopyRun(int src_fd, Manifest& manifest, int dst_root_fd, bool lone_file, const CopyOptions& options,
            const std::string& shown_src, const std::string& shown_dst)
        : src_fd_(src_fd), manifest_(manifest), dst_root_fd_(dst_root_fd), lone_file_(lone_file),
          options_(options), shown_src_(shown_src), shown_dst_(shown_dst), umask_(current_umask()) {}

    void run(const CopyPlan& plan, const std::string& lone_name) {
        lone_name_ = lone_name;
        pieces_ = &plan.pieces;
        remaining_.reset(new std::atomic<std::uint64_t>[manifest_.entries.size()]);
        for (std::size_t i = 0; i < manifest_.entries.size(); ++i) remaining_[i] = 0;
        for (const CopyPiece& piece : plan.pieces) remaining_[piece.entry] += 1;
        for (std::size_t index : plan.split_files) create_sized(index);

        unsigned count = std::max(1u, std::min<unsigned>(options_.threads, static_cast<unsigned>(plan.pieces.size())));
        std::vector<std::thread> pool;
        for (unsigned t = 1; t < count; ++t) pool.emplace_back([this] { work(); });
        work();
        for (std::thread& t : pool) t.join();
        if (failed_) throw Error(first_error_);
    }

    CopyStats stats() const { return {files_done_.load(), bytes_done_.load()}; }

private:
    std::string src_path(const ManifestEntry& e) const { return lone_file_ ? shown_src_ : join_path(shown_src_, e.path); }
    std::string dst_path(const ManifestEntry& e) const { return lone_file_ ? shown_dst_ : join_path(shown_dst_, e.path); }
    const char* dst_rel(const ManifestEntry& e) const { return lone_file_ ? lone_name_.c_str() : e.path.c_str(); }

    UniqueFd open_source(const ManifestEntry& e) {
        if (lone_file_) {
            // The lone file was opened (beneath its allowed root) by the caller; every
            // read below is positional, so sharing its offset is harmless.
            int fd = ::fcntl(src_fd_, F_DUPFD_CLOEXEC, 0);
            if (fd < 0) throw_errno("cannot open " + shown_src_);
            return UniqueFd(fd);
        }
        return open_beneath_or_throw(src_fd_, e.path, O_RDONLY, src_path(e));
    }

    void create_sized(std::size_t index) {
        const ManifestEntry& e = manifest_.entries[index];
        mode_t mode = staged_mode(e.type, e.mode, options_.read_only);
        int fd = ::openat(dst_root_fd_, dst_rel(e), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode | 0200);
        if (fd < 0) throw_errno("cannot create " + dst_path(e));
        UniqueFd file(fd);
        if (::ftruncate(file.get(), static_cast<off_t>(e.size)) != 0) throw_errno("cannot size " + dst_path(e));
    }

    void finish_file(int fd, const ManifestEntry& e) {
        mode_t mode = staged_mode(e.type, e.mode, options_.read_only);
        if ((mode & ~0777) || (mode & umask_))
            if (::fchmod(fd, mode) != 0) throw_errno("cannot set the mode of " + dst_path(e));
        struct timespec times[2] = {{0, UTIME_NOW}, to_timespec(e.mtime_ns)};
        if (::futimens(fd, times) != 0) throw_errno("cannot set the mtime of " + dst_path(e));
        files_done_ += 1;
        if (options_.progress) options_.progress->files += 1;
    }

    void account(std::uint64_t bytes) {
        bytes_done_ += bytes;
        if (options_.progress) options_.progress->bytes += bytes;
    }

    // Copies [offset, offset+length) and returns how many bytes the source had there.
    std::uint64_t copy_range(int in, int out, std::uint64_t offset, std::uint64_t length, bool positional,
                             ContentHasher* hasher, std::vector<char>& buffer, const ManifestEntry& e) {
        std::uint64_t done = 0;
        bool kernel_copy = !hasher && length > buffer.size();
        loff_t in_off = static_cast<loff_t>(offset), out_off = static_cast<loff_t>(offset);
        while (kernel_copy && done < length) {
            ssize_t n = ::copy_file_range(in, &in_off, out, &out_off, length - done, 0);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP || errno == EBADF) {
                    kernel_copy = false;  // falls back to sendfile/read-write from where it stopped
                    break;
                }
                throw_errno("cannot copy " + src_path(e) + " to " + dst_path(e));
            }
            if (n == 0) return done;
            done += static_cast<std::uint64_t>(n);
            account(static_cast<std::uint64_t>(n));
        }
        if (!hasher && done < length) {
            // sendfile moves the bytes inside the kernel where copy_file_range declines.
            if (::lseek(out, static_cast<off_t>(offset + done), SEEK_SET) >= 0) {
                off_t in_pos = static_cast<off_t>(offset + done);
                while (done < length) {
                    ssize_t n = ::sendfile(out, in, &in_pos, std::min<std::uint64_t>(length - done, 1u << 30));
                    if (n < 0) {
                        if (errno == EINTR) continue;
                        if (errno == EINVAL || errno == ENOSYS) break;
                        throw_errno("cannot copy " + src_path(e) + " to " + dst_path(e));
                    }
                    if (n == 0) return done;
                    done += static_cast<std::uint64_t>(n);
                    account(static_cast<std::uint64_t>(n));
                }
            }
        }
        while (done < length) {
            std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), length - done));
            ssize_t n = ::pread(in, buffer.data(), want, static_cast<off_t>(offset + done));
            if (n < 0) {
                if (errno == EINTR) continue;
                throw_errno("cannot read " + src_path(e));
            }
            if (n == 0) return done;
            if (hasher) hasher->update(buffer.data(), static_cast<std::size_t>(n));
            write_all(out, buffer.data(), static_cast<std::size_t>(n), offset + done, true, dst_path(e));
            (void)positional;
            done += static_cast<std::uint64_t>(n);
            account(static_cast<std::uint64_t>(n));
        }
        return done;
    }

    void copy_piece(const CopyPiece& piece, std::vector<char>& buffer) {
        ManifestEntry& e = manifest_.entries[piece.entry];
        UniqueFd in = open_source(e);
        UniqueFd out;
        if (piece.whole_file) {
            mode_t mode = staged_mode(e.type, e.mode, options_.read_only);
            int fd = ::openat(dst_root_fd_, dst_rel(e), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode & 0777);
            if (fd < 0) throw_errno("cannot create " + dst_path(e));
            out.reset(fd);
        } else {
            int fd = ::openat(dst_root_fd_, dst_rel(e), O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0) throw_errno("cannot open " + dst_path(e));
            out.reset(fd);
        }
        std::unique_ptr<ContentHasher> hasher;
        if (options_.hash) hasher = std::make_unique<ContentHasher>();
        std::uint64_t got = copy_range(in.get(), out.get(), piece.offset, piece.length, !piece.whole_file,
                                       hasher.get(), buffer, e);
        bool grew = false;
        if (piece.whole_file) {
            char probe;
            ssize_t extra = ::pread(in.get(), &probe, 1, static_cast<off_t>(e.size));
            grew = extra > 0;
        }
        if (got != piece.length || grew)
            throw Error("cannot stage " + src_path(e) + ": the file changed while staging (size " +
                        std::to_string(e.size) + " in the scan); stage it again once it is no longer being written");
        if (hasher) e.content_hash = hasher->hex();
        if (remaining_[piece.entry].fetch_sub(1) == 1) {
            if (!piece.whole_file) {
                out.reset();
                int fd = ::openat(dst_root_fd_, dst_rel(e), O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0) throw_errno("cannot open " + dst_path(e));
                out.reset(fd);
                mode_t mode = staged_mode(e.type, e.mode, options_.read_only);
                if (::fchmod(out.get(), mode) != 0) throw_errno("cannot set the mode of " + dst_path(e));
            }
            finish_file(out.get(), e);
        }
    }

    void work() {
        std::vector<char> buffer(1 << 20);
        while (!failed_.load(std::memory_order_relaxed)) {
            std::size_t i = next_.fetch_add(1);
            if (i >= pieces_->size()) return;
            try {
                copy_piece((*pieces_)[i], buffer);
            } catch (const Error& err) {
                std::lock_guard<std::mutex> guard(error_lock_);
                if (first_error_.empty()) first_error_ = err.what();
                failed_ = true;
            } catch (const std::exception& err) {
                std::lock_guard<std::mutex> guard(error_lock_);
                if (first_error_.empty()) first_error_ = std::string("copy failed: ") + err.what();
                failed_ = true;
            }
        }
    }

    int src_fd_;
    Manifest& manifest_;
    int dst_root_fd_;
    bool lone_file_;
    const CopyOptions& options_;
    std::string shown_src_, shown_dst_, lone_name_;
    mode_t umask_;
    const std::vector<CopyPiece>* pieces_ = nullptr;
    std::unique_ptr<std::atomic<std::uint64_t>[]> remaining_;
    std::atomic<std::size_t> next_{0};
    std::atomic<bool> failed_{false};
    std::mutex error_lock_;
    std::string first_error_;
    std::atomic<std::uint64_t> files_done_{0}, bytes_done_{0};
};

}  // namespace

CopyStats copy_item(int src_fd, Manifest& manifest, int dst_parent_fd, const std::string& dst_name,
                    const CopyOptions& options, const std::string& shown_src, const std::string& shown_dst) {
    bool lone_file = manifest.entries.size() == 1 && manifest.entries[0].path == ".";
    if (options.progress) {
        options.progress->total_bytes += manifest.byte_count();
        options.progress->total_files += manifest.file_count();
    }
    CopyPlan plan = plan_copy(manifest, !options.hash);
    if (lone_file) {
        CopyRun run(src_fd, manifest, dst_parent_fd, true, options, shown_src, shown_dst);
        run.run(plan, dst_name);
        return run.stats();
    }

    struct stat root_st {};
    if (::fstat(src_fd, &root_st) != 0) throw_errno("cannot stat " + shown_src);
    if (::mkdirat(dst_parent_fd, dst_name.c_str(), 0700) != 0) throw_errno("cannot create " + shown_dst);
    int root = ::openat(dst_parent_fd, dst_name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (root < 0) throw_errno("cannot open " + shown_dst);
    UniqueFd dst_root(root);

    for (std::size_t index : plan.directories) {
        const ManifestEntry& e = manifest.entries[index];
        if (::mkdirat(dst_root.get(), e.path.c_str(), 0700) != 0) throw_errno("cannot create " + join_path(shown_dst, e.path));
    }
    for (std::size_t index : plan.symlinks) {
        const ManifestEntry& e = manifest.entries[index];
        if (::symlinkat(e.target.c_str(), dst_root.get(), e.path.c_str()) != 0)
            throw_errno("cannot create the symlink " + join_path(shown_dst, e.path));
        struct timespec times[2] = {{0, UTIME_NOW}, to_timespec(e.mtime_ns)};
        ::utimensat(dst_root.get(), e.path.c_str(), times, AT_SYMLINK_NOFOLLOW);
    }

    CopyRun run(src_fd, manifest, dst_root.get(), false, options, shown_src, shown_dst);
    run.run(plan, "");

    // Modes and mtimes of directories last, deepest first: creating their contents
    // changed the mtimes, and a read-only directory could not have been filled.
    for (auto it = plan.directories.rbegin(); it != plan.directories.rend(); ++it) {
        const ManifestEntry& e = manifest.entries[*it];
        struct timespec times[2] = {{0, UTIME_NOW}, to_timespec(e.mtime_ns)};
        if (::utimensat(dst_root.get(), e.path.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0)
            throw_errno("cannot set the mtime of " + join_path(shown_dst, e.path));
        if (::fchmodat(dst_root.get(), e.path.c_str(), staged_mode(e.type, e.mode, options.read_only), 0) != 0)
            throw_errno("cannot set the mode of " + join_path(shown_dst, e.path));
    }
    struct timespec times[2] = {{0, UTIME_NOW}, root_st.st_mtim};
    ::futimens(dst_root.get(), times);
    if (::fchmod(dst_root.get(), staged_mode(EntryType::directory, root_st.st_mode, options.read_only)) != 0)
        throw_errno("cannot set the mode of " + shown_dst);
    // One directory sync before publishing; per-file fsync would dominate small files.
    ::fsync(dst_root.get());
    return run.stats();
}

}  // namespace aihpc::stage
