#include "stage/tree_copy.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <memory>
#include <mutex>
#include <string_view>
#include <thread>
#include <unordered_map>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "stage/fs.hpp"

namespace aihpc::stage {

namespace {

// The name of an entry inside its directory; NUL-terminated, for the *at() calls.
const char* name_in_directory(const std::string& path) {
    std::size_t slash = path.rfind('/');
    return path.c_str() + (slash == std::string::npos ? 0 : slash + 1);
}

std::string_view directory_of(const std::string& path) {
    std::size_t slash = path.rfind('/');
    return slash == std::string::npos ? std::string_view() : std::string_view(path).substr(0, slash);
}

}  // namespace

CopyPlan plan_copy(const Manifest& manifest, bool allow_split, PieceSizing sizing) {
    CopyPlan plan;
    plan.listings.emplace_back();
    std::unordered_map<std::string_view, std::size_t> listing_of{{std::string_view(), 0}};
    std::vector<std::size_t> parent_listing(manifest.entries.size());
    for (std::size_t i = 0; i < manifest.entries.size(); ++i) {
        const ManifestEntry& e = manifest.entries[i];
        auto parent = listing_of.find(directory_of(e.path));
        if (parent == listing_of.end())
            throw Error("the manifest lists " + e.path + " before its directory; it cannot be copied");
        parent_listing[i] = parent->second;
        plan.listings[parent->second].children.push_back(i);
        switch (e.type) {
        case EntryType::directory:
            plan.directories.push_back(i);
            listing_of.emplace(e.path, plan.listings.size());
            plan.listings.push_back({i, {}});
            break;
        case EntryType::symlink: plan.symlinks.push_back(i); break;
        case EntryType::file:
            if (allow_split && sizing.piece_bytes > 0 && e.size > sizing.split_above) {
                plan.split_files.push_back(i);
                for (std::uint64_t off = 0; off < e.size; off += sizing.piece_bytes)
                    plan.pieces.push_back({i, off, std::min(sizing.piece_bytes, e.size - off), false, parent_listing[i]});
            } else if (e.size > sizing.piece_bytes) {
                plan.pieces.push_back({i, 0, e.size, true, parent_listing[i]});
            }
            break;
        }
    }
    std::stable_sort(plan.pieces.begin(), plan.pieces.end(),
                     [](const CopyPiece& a, const CopyPiece& b) { return a.length > b.length; });
    for (std::size_t d = 0; d < plan.listings.size(); ++d)
        for (std::size_t i : plan.listings[d].children) {
            const ManifestEntry& e = manifest.entries[i];
            if (e.type == EntryType::file && e.size <= sizing.piece_bytes) plan.pieces.push_back({i, 0, e.size, true, d});
        }
    return plan;
}

unsigned default_copy_threads() {
    cpu_set_t set;
    CPU_ZERO(&set);
    unsigned n = ::sched_getaffinity(0, sizeof set, &set) == 0 ? static_cast<unsigned>(CPU_COUNT(&set)) : 4;
    return std::clamp(n, 1u, 16u);
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

std::int64_t mtime_of(const struct stat& st) {
    return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

// Whether a source entry still has the metadata the manifest recorded for it.
bool still_as_scanned(const struct stat& st, const ManifestEntry& e) {
    bool same_type = e.type == EntryType::file        ? S_ISREG(st.st_mode)
                     : e.type == EntryType::directory ? S_ISDIR(st.st_mode)
                                                      : S_ISLNK(st.st_mode);
    bool same_size = e.type == EntryType::directory || static_cast<std::uint64_t>(st.st_size) == e.size;
    return same_type && same_size && (st.st_mode & 07777) == e.mode && mtime_of(st) == e.mtime_ns;
}

// One worker's handles on the source and destination directories it copies in now.
struct OpenDirectories {
    static constexpr std::size_t none = static_cast<std::size_t>(-1);
    std::size_t listing = none;
    int src = -1, dst = -1;
    UniqueFd owned_src, owned_dst;
};

class CopyRun {
public:
    CopyRun(int src_fd, Manifest& manifest, int dst_root_fd, bool lone_file, const CopyOptions& options,
            const std::string& shown_src, const std::string& shown_dst)
        : src_fd_(src_fd), manifest_(manifest), dst_root_fd_(dst_root_fd), lone_file_(lone_file),
          options_(options), shown_src_(shown_src), shown_dst_(shown_dst), umask_(current_umask()) {}

    void run(const CopyPlan& plan, const std::string& lone_name) {
        lone_name_ = lone_name;
        plan_ = &plan;
        remaining_.reset(new std::atomic<std::uint64_t>[manifest_.entries.size()]);
        for (std::size_t i = 0; i < manifest_.entries.size(); ++i) remaining_[i] = 0;
        for (const CopyPiece& piece : plan.pieces) remaining_[piece.entry] += 1;
        for (std::size_t index : plan.split_files) create_sized(index);

        std::size_t units = plan.pieces.size() + (lone_file_ ? 0 : plan.listings.size());
        unsigned count = std::max(1u, std::min<unsigned>(options_.threads, static_cast<unsigned>(std::min<std::size_t>(units, 1u << 16))));
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

    // `rel` is the path below the item; empty for the item itself.
    Error changed(const std::string& rel) const {
        return Error("cannot stage " + shown_src_ + ": " + (rel.empty() ? std::string("it") : rel) +
                     " changed while staging; stage it again once nothing writes to it");
    }

    // Opens a directory of the item in the source and in the copy, unless already open.
    void enter(OpenDirectories& dirs, std::size_t listing) {
        if (dirs.listing == listing) return;
        dirs.listing = OpenDirectories::none;
        const DirectoryListing& l = plan_->listings[listing];
        if (!l.entry) {
            dirs.owned_src.reset();
            dirs.owned_dst.reset();
            dirs.src = src_fd_;
            dirs.dst = dst_root_fd_;
        } else {
            const std::string& rel = manifest_.entries[*l.entry].path;
            dirs.owned_src = open_beneath_or_throw(src_fd_, rel, O_RDONLY | O_DIRECTORY, join_path(shown_src_, rel));
            dirs.owned_dst = open_beneath_or_throw(dst_root_fd_, rel, O_RDONLY | O_DIRECTORY, join_path(shown_dst_, rel));
            dirs.src = dirs.owned_src.get();
            dirs.dst = dirs.owned_dst.get();
        }
        dirs.listing = listing;
    }

    UniqueFd open_source(const ManifestEntry& e, int dir_fd) {
        if (lone_file_) {
            // The lone file was opened (beneath its allowed root) by the caller; every
            // read below is positional, so sharing its offset is harmless.
            int fd = ::fcntl(src_fd_, F_DUPFD_CLOEXEC, 0);
            if (fd < 0) throw_errno("cannot open " + shown_src_);
            return UniqueFd(fd);
        }
        int fd = ::openat(dir_fd, name_in_directory(e.path), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ENOENT || errno == ELOOP) throw changed(e.path);  // removed, or replaced by a symlink
            throw_errno("cannot open " + src_path(e));
        }
        return UniqueFd(fd);
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
    // Ranges larger than the buffer move inside the kernel where it can; smaller ones
    // (most files of a dataset) take one read and one write.
    std::uint64_t copy_range(int in, int out, std::uint64_t offset, std::uint64_t length, ContentHasher* hasher,
                             std::vector<char>& buffer, const ManifestEntry& e) {
        std::uint64_t done = 0;
        bool kernel_copy = !hasher && length > buffer.size();
        loff_t in_off = static_cast<loff_t>(offset), out_off = static_cast<loff_t>(offset);
        while (kernel_copy && done < length) {
            ssize_t n = ::copy_file_range(in, &in_off, out, &out_off, length - done, 0);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP || errno == EBADF)
                    break;  // falls back to sendfile from where it stopped
                throw_errno("cannot copy " + src_path(e) + " to " + dst_path(e));
            }
            if (n == 0) return done;
            done += static_cast<std::uint64_t>(n);
            account(static_cast<std::uint64_t>(n));
        }
        if (kernel_copy && done < length && ::lseek(out, static_cast<off_t>(offset + done), SEEK_SET) >= 0) {
            // sendfile moves the bytes inside the kernel where copy_file_range declines.
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
            done += static_cast<std::uint64_t>(n);
            account(static_cast<std::uint64_t>(n));
        }
        return done;
    }

    void copy_piece(const CopyPiece& piece, std::vector<char>& buffer, OpenDirectories& dirs) {
        ManifestEntry& e = manifest_.entries[piece.entry];
        int dst_dir = dst_root_fd_;
        const char* dst_name = lone_name_.c_str();
        if (!lone_file_) {
            enter(dirs, piece.directory);
            dst_dir = dirs.dst;
            dst_name = name_in_directory(e.path);
        }
        UniqueFd in = open_source(e, dirs.src);
        mode_t mode = staged_mode(e.type, e.mode, options_.read_only);
        int flags = O_WRONLY | O_NOFOLLOW | O_CLOEXEC | (piece.whole_file ? O_CREAT | O_EXCL : 0);
        UniqueFd out(::openat(dst_dir, dst_name, flags, mode & 0777));
        if (!out) throw_errno((piece.whole_file ? "cannot create " : "cannot open ") + dst_path(e));
        std::unique_ptr<ContentHasher> hasher;
        if (options_.hash) hasher = std::make_unique<ContentHasher>();
        std::uint64_t got = copy_range(in.get(), out.get(), piece.offset, piece.length, hasher.get(), buffer, e);
        // Taken once the bytes are copied: any write since the scan shows in the size or
        // the mtime, so the copy holds the file as scanned or fails here.
        struct stat now {};
        if (::fstat(in.get(), &now) != 0) throw_errno("cannot stat " + src_path(e));
        if (got != piece.length || !still_as_scanned(now, e)) throw changed(lone_file_ ? std::string() : e.path);
        if (hasher) e.content_hash = hasher->hex();
        if (remaining_[piece.entry].fetch_sub(1) == 1) {
            if (!piece.whole_file && ::fchmod(out.get(), mode) != 0) throw_errno("cannot set the mode of " + dst_path(e));
            finish_file(out.get(), e);
        }
    }

    // Compares a source directory with the scan: its own metadata, its names, and the
    // metadata of its symlinks (files are compared as they are copied).
    void check_listing(const DirectoryListing& listing) {
        std::string rel = listing.entry ? manifest_.entries[*listing.entry].path : std::string();
        std::string shown = join_path(shown_src_, rel);
        UniqueFd dir = rel.empty() ? UniqueFd(::openat(src_fd_, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC))
                                   : UniqueFd(open_beneath(src_fd_, rel, O_RDONLY | O_DIRECTORY));
        if (!dir) {
            if (errno == ENOENT || errno == ELOOP || errno == ENOTDIR) throw changed(rel);
            throw_errno("cannot open " + shown);
        }
        struct stat st {};
        if (listing.entry) {
            if (::fstat(dir.get(), &st) != 0) throw_errno("cannot stat " + shown);
            if (!still_as_scanned(st, manifest_.entries[*listing.entry])) throw changed(rel);
        }
        DirectoryNames names(dir.get(), shown);
        if (names.size() != listing.children.size()) throw changed(rel);
        for (std::size_t k = 0; k < names.size(); ++k) {
            const ManifestEntry& child = manifest_.entries[listing.children[k]];
            if (names[k] != name_in_directory(child.path)) throw changed(rel);
            if (child.type != EntryType::symlink) continue;
            if (::fstatat(dir.get(), names.c_str(k), &st, AT_SYMLINK_NOFOLLOW) != 0 || !still_as_scanned(st, child))
                throw changed(child.path);
        }
    }

    template <typename Unit>
    void guarded(Unit&& unit) {
        try {
            unit();
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

    void work() {
        std::vector<char> buffer(1 << 20);
        OpenDirectories dirs;
        while (!failed_.load(std::memory_order_relaxed)) {
            std::size_t i = next_piece_.fetch_add(1);
            if (i >= plan_->pieces.size()) break;
            guarded([&] { copy_piece(plan_->pieces[i], buffer, dirs); });
        }
        if (lone_file_) return;
        while (!failed_.load(std::memory_order_relaxed)) {
            std::size_t i = next_listing_.fetch_add(1);
            if (i >= plan_->listings.size()) break;
            guarded([&] { check_listing(plan_->listings[i]); });
        }
    }

    int src_fd_;
    Manifest& manifest_;
    int dst_root_fd_;
    bool lone_file_;
    const CopyOptions& options_;
    std::string shown_src_, shown_dst_, lone_name_;
    mode_t umask_;
    const CopyPlan* plan_ = nullptr;
    std::unique_ptr<std::atomic<std::uint64_t>[]> remaining_;
    std::atomic<std::size_t> next_piece_{0}, next_listing_{0};
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
