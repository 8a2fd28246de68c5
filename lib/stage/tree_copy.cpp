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
#include <optional>
#include <string_view>
#include <thread>
#include <unordered_map>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "stage/fs.hpp"
#include "stage/io_pool.hpp"

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

unsigned default_copy_threads() { return default_in_flight_cap; }

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

std::int64_t ctime_of(const struct stat& st) { return change_stamp(st.st_ctim.tv_sec, st.st_ctim.tv_nsec); }

// Whether a source entry still has the metadata the manifest recorded for it. The ctime
// and inode, where the scan took them, catch what size and mtime miss: a change whose
// mtime was put back, an entry added in the same timestamp tick, a file swapped for
// another.
bool still_as_scanned(const struct stat& st, const ManifestEntry& e) {
    bool same_type = e.type == EntryType::file        ? S_ISREG(st.st_mode)
                     : e.type == EntryType::directory ? S_ISDIR(st.st_mode)
                                                      : S_ISLNK(st.st_mode);
    bool same_size = e.type == EntryType::directory || static_cast<std::uint64_t>(st.st_size) == e.size;
    bool same_identity = (e.ctime_ns == 0 || ctime_of(st) == e.ctime_ns) &&
                         (e.inode == 0 || static_cast<std::uint64_t>(st.st_ino) == e.inode);
    return same_type && same_size && same_identity && (st.st_mode & 07777) == e.mode && FileTime::of(st.st_mtim) == e.mtime;
}

// A directory of the item, opened once for all the files copied into it (O_PATH: a base
// for openat and fstat, which costs a network file system no open of its own), and
// checked against the scan once its last file is copied.
struct OpenListing {
    std::mutex lock;
    bool opened = false;
    int src = -1, dst = -1;
    UniqueFd owned_src, owned_dst;
    std::atomic<std::size_t> remaining{0};  // pieces still to copy in it
};

// A sparse file's allocation is smaller than its size: only such files pay the extra
// SEEK_DATA/SEEK_HOLE round trips that find their holes.
bool looks_sparse(const ManifestEntry& e) { return e.blocks != 0 && e.blocks * 512 < e.size; }

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
        listings_ = std::make_unique<OpenListing[]>(plan.listings.size());
        for (const CopyPiece& piece : plan.pieces) {
            remaining_[piece.entry] += 1;
            listings_[piece.directory].remaining += 1;
        }
        for (std::size_t index : plan.split_files) create_sized(index);

        unsigned cap = std::max(1u, options_.threads);
        unsigned initial = options_.initial_workers ? options_.initial_workers : usable_cpus();
        std::optional<IoPool> own;
        if (!options_.pool) own.emplace(std::min(initial, cap), cap);
        IoPool& pool = options_.pool ? *options_.pool : *own;
        pool_ = &pool;
        // Directories without files of their own are checked once everything is copied.
        // Told apart before any piece is queued: a shared pool's workers are already
        // running, and a directory whose last file is copied is checked by that file.
        std::vector<std::size_t> without_files;
        if (!lone_file_)
            for (std::size_t d = 0; d < plan.listings.size(); ++d)
                if (listings_[d].remaining == 0) without_files.push_back(d);
        for (std::size_t i = 0; i < plan.pieces.size(); ++i)
            pool.submit([this, i] { copy_piece(plan_->pieces[i]); });
        for (std::size_t d : without_files) pool.submit([this, d] { check_listing(d); });
        try {
            pool.run();
        } catch (const Error&) {
            throw;
        } catch (const std::exception& err) {
            throw Error(std::string("copy failed: ") + err.what());
        }
        workers_ = pool.workers();
        pool_ = nullptr;
    }

    CopyStats stats() const { return {files_done_.load(), bytes_done_.load(), workers_}; }

private:
    std::string src_path(const ManifestEntry& e) const { return lone_file_ ? shown_src_ : join_path(shown_src_, e.path); }
    std::string dst_path(const ManifestEntry& e) const { return lone_file_ ? shown_dst_ : join_path(shown_dst_, e.path); }
    const char* dst_rel(const ManifestEntry& e) const { return lone_file_ ? lone_name_.c_str() : e.path.c_str(); }

    // `rel` is the path below the item; empty for the item itself.
    Error changed(const std::string& rel) const {
        return Error("cannot stage " + shown_src_ + ": " + (rel.empty() ? std::string("it") : rel) +
                     " changed while staging; stage it again once nothing writes to it");
    }

    // The directory's handles in the source and in the copy, opened by the first file.
    OpenListing& enter(std::size_t listing) {
        OpenListing& open = listings_[listing];
        std::lock_guard<std::mutex> guard(open.lock);
        if (open.opened) return open;
        const DirectoryListing& l = plan_->listings[listing];
        if (!l.entry) {
            open.src = src_fd_;
            open.dst = dst_root_fd_;
        } else {
            const std::string& rel = manifest_.entries[*l.entry].path;
            {
                TimedOp op(options_.ops, nullptr);
                int fd = open_beneath(src_fd_, rel, O_PATH | O_DIRECTORY | O_NOFOLLOW);
                if (fd < 0) {
                    if (errno == ENOENT || errno == ELOOP || errno == ENOTDIR || errno == EXDEV) throw changed(rel);
                    throw_errno("cannot open " + join_path(shown_src_, rel));
                }
                open.owned_src.reset(fd);
            }
            open.owned_dst = open_beneath_or_throw(dst_root_fd_, rel, O_PATH | O_DIRECTORY, join_path(shown_dst_, rel));
            open.src = open.owned_src.get();
            open.dst = open.owned_dst.get();
        }
        open.opened = true;
        return open;
    }

    // Opens a source file without blocking and without following a symlink, and refuses
    // anything that is not a regular file: a FIFO, socket or device put in place of a
    // scanned file after the scan.
    UniqueFd open_source(const ManifestEntry& e, int dir_fd) {
        UniqueFd in;
        if (lone_file_) {
            // The lone file was opened (beneath its allowed root) by the caller; every
            // read below is positional, so sharing its offset is harmless.
            in.reset(::fcntl(src_fd_, F_DUPFD_CLOEXEC, 0));
            if (!in) throw_errno("cannot open " + shown_src_);
        } else {
            TimedOp op(options_.ops, pool_, OpKind::data);
            in.reset(::openat(dir_fd, name_in_directory(e.path), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
            if (!in) {
                if (errno == ENOENT || errno == ELOOP) throw changed(e.path);  // removed, or replaced by a symlink
                throw_errno("cannot open " + src_path(e));
            }
        }
        // The type of an open file never changes, so the cached attributes answer: no
        // round trip to a network file system's server.
        struct statx stx {};
        if (::statx(in.get(), "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_TYPE, &stx) != 0)
            throw_errno("cannot stat " + src_path(e));
        if (!S_ISREG(stx.stx_mode)) throw changed(lone_file_ ? std::string() : e.path);
        return in;
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
        struct timespec times[2] = {{0, UTIME_NOW}, e.mtime.timespec()};
        if (::futimens(fd, times) != 0) throw_errno("cannot set the mtime of " + dst_path(e));
        files_done_ += 1;
        if (options_.progress) options_.progress->files += 1;
    }

    void account(std::uint64_t bytes) {
        bytes_done_ += bytes;
        if (options_.progress) options_.progress->bytes += bytes;
    }

    // A worker's copy buffer, as large as the largest range it has copied, up to 1 MiB,
    // and never zeroed: a pool of dozens of workers copying small files must not fill
    // (and fault in) a megabyte each before its first byte is read.
    static constexpr std::size_t copy_buffer_max = 1 << 20;
    struct CopyBuffer {
        std::unique_ptr<char[]> data;
        std::size_t size = 0;
    };
    static CopyBuffer& buffer(std::uint64_t wanted) {
        constexpr std::size_t smallest = 64 << 10;
        thread_local CopyBuffer buf;
        std::size_t need = static_cast<std::size_t>(std::clamp<std::uint64_t>(wanted, smallest, copy_buffer_max));
        if (buf.size < need) {
            buf.data.reset(new char[need]);
            buf.size = need;
        }
        return buf;
    }

    // Copies [offset, offset+length) of data (no holes) and returns how many bytes the
    // source had there. Ranges larger than the buffer move inside the kernel where it
    // can; smaller ones (most files of a dataset) take one read and one write.
    std::uint64_t copy_dense(int in, int out, std::uint64_t offset, std::uint64_t length, ContentHasher* hasher,
                             const ManifestEntry& e) {
        CopyBuffer& buf = buffer(length);
        std::uint64_t done = 0;
        bool kernel_copy = !hasher && length > copy_buffer_max;
        loff_t in_off = static_cast<loff_t>(offset), out_off = static_cast<loff_t>(offset);
        while (kernel_copy && done < length) {
            ssize_t n;
            {
                TimedOp op(options_.ops, pool_, OpKind::data);
                n = ::copy_file_range(in, &in_off, out, &out_off, length - done, 0);
            }
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
                ssize_t n;
                {
                    TimedOp op(options_.ops, pool_, OpKind::data);
                    n = ::sendfile(out, in, &in_pos, std::min<std::uint64_t>(length - done, 1u << 30));
                }
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
            std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size, length - done));
            ssize_t n;
            {
                TimedOp op(options_.ops, pool_, OpKind::data);
                n = ::pread(in, buf.data.get(), want, static_cast<off_t>(offset + done));
            }
            if (n < 0) {
                if (errno == EINTR) continue;
                throw_errno("cannot read " + src_path(e));
            }
            if (n == 0) return done;
            if (hasher) hasher->update(buf.data.get(), static_cast<std::size_t>(n));
            write_all(out, buf.data.get(), static_cast<std::size_t>(n), offset + done, true, dst_path(e));
            done += static_cast<std::uint64_t>(n);
            account(static_cast<std::uint64_t>(n));
        }
        return done;
    }

    // As copy_dense, but skips the holes of a sparse source: they stay holes in the
    // copy (which the caller sizes), and read as zeros into the hash.
    std::uint64_t copy_range(int in, int out, std::uint64_t offset, std::uint64_t length, ContentHasher* hasher,
                             const ManifestEntry& e) {
        if (!looks_sparse(e)) return copy_dense(in, out, offset, length, hasher, e);
        std::uint64_t end = offset + length, pos = offset;
        auto zeros = [&](std::uint64_t count) {
            if (!hasher) return;
            static const std::vector<char> zero(1 << 16, 0);
            for (std::uint64_t left = count; left > 0;) {
                std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(left, zero.size()));
                hasher->update(zero.data(), n);
                left -= n;
            }
        };
        while (pos < end) {
            off_t data = ::lseek(in, static_cast<off_t>(pos), SEEK_DATA);
            if (data < 0) {
                if (errno == ENXIO) data = static_cast<off_t>(end);  // a hole up to the end of the file
                else if (errno == EINVAL || errno == EOPNOTSUPP) return pos - offset + copy_dense(in, out, pos, end - pos, hasher, e);
                else throw_errno("cannot read " + src_path(e));
            }
            std::uint64_t data_at = std::min<std::uint64_t>(static_cast<std::uint64_t>(data), end);
            zeros(data_at - pos);
            account(data_at - pos);
            pos = data_at;
            if (pos >= end) break;
            off_t hole = ::lseek(in, static_cast<off_t>(pos), SEEK_HOLE);
            std::uint64_t data_end = hole < 0 ? end : std::min<std::uint64_t>(static_cast<std::uint64_t>(hole), end);
            std::uint64_t want = data_end - pos;
            std::uint64_t got = copy_dense(in, out, pos, want, hasher, e);
            pos += got;
            if (got < want) return pos - offset;  // the file shrank
        }
        return length;
    }

    void copy_piece(const CopyPiece& piece) {
        ManifestEntry& e = manifest_.entries[piece.entry];
        int dst_dir = dst_root_fd_, src_dir = src_fd_;
        const char* dst_name = lone_name_.c_str();
        if (!lone_file_) {
            OpenListing& open = enter(piece.directory);
            src_dir = open.src;
            dst_dir = open.dst;
            dst_name = name_in_directory(e.path);
        }
        UniqueFd in = open_source(e, src_dir);
        mode_t mode = staged_mode(e.type, e.mode, options_.read_only);
        int flags = O_WRONLY | O_NOFOLLOW | O_CLOEXEC | (piece.whole_file ? O_CREAT | O_EXCL : 0);
        UniqueFd out(::openat(dst_dir, dst_name, flags, mode & 0777));
        if (!out) throw_errno((piece.whole_file ? "cannot create " : "cannot open ") + dst_path(e));
        std::unique_ptr<ContentHasher> hasher;
        if (options_.hash) hasher = std::make_unique<ContentHasher>();
        std::uint64_t got = copy_range(in.get(), out.get(), piece.offset, piece.length, hasher.get(), e);
        if (piece.whole_file && looks_sparse(e) && ::ftruncate(out.get(), static_cast<off_t>(e.size)) != 0)
            throw_errno("cannot size " + dst_path(e));
        // Taken on the open descriptor once the bytes are copied: any write since the
        // scan shows in the size, mtime or ctime, so the copy holds the file as scanned
        // or fails here.
        struct stat now {};
        {
            TimedOp op(options_.ops, nullptr);
            if (::fstat(in.get(), &now) != 0) throw_errno("cannot stat " + src_path(e));
        }
        if (got != piece.length || !still_as_scanned(now, e)) throw changed(lone_file_ ? std::string() : e.path);
        if (hasher) e.content_hash = hasher->hex();
        if (remaining_[piece.entry].fetch_sub(1) == 1) {
            if (!piece.whole_file && ::fchmod(out.get(), mode) != 0) throw_errno("cannot set the mode of " + dst_path(e));
            finish_file(out.get(), e);
        }
        if (!lone_file_ && listings_[piece.directory].remaining.fetch_sub(1) == 1) check_listing(piece.directory);
    }

    // Compares a source directory with the scan once all its files are copied: its own
    // metadata (a name added or removed moves its mtime and ctime, so the directory is
    // not read again) and that of its symlinks. Its handles are closed then.
    void check_listing(std::size_t index) {
        const DirectoryListing& listing = plan_->listings[index];
        OpenListing& open = enter(index);
        std::string rel = listing.entry ? manifest_.entries[*listing.entry].path : std::string();
        std::string shown = join_path(shown_src_, rel);
        struct stat st {};
        if (listing.entry) {
            TimedOp op(options_.ops, nullptr);
            if (::fstat(open.src, &st) != 0) throw_errno("cannot stat " + shown);
            if (!still_as_scanned(st, manifest_.entries[*listing.entry])) throw changed(rel);
        }
        for (std::size_t child_index : listing.children) {
            const ManifestEntry& child = manifest_.entries[child_index];
            if (child.type != EntryType::symlink) continue;
            TimedOp op(options_.ops, nullptr);
            if (::fstatat(open.src, name_in_directory(child.path), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
                !still_as_scanned(st, child))
                throw changed(child.path);
        }
        std::lock_guard<std::mutex> guard(open.lock);
        open.owned_src.reset();
        open.owned_dst.reset();
        open.src = open.dst = -1;
    }

    int src_fd_;
    Manifest& manifest_;
    int dst_root_fd_;
    bool lone_file_;
    const CopyOptions& options_;
    std::string shown_src_, shown_dst_, lone_name_;
    mode_t umask_;
    const CopyPlan* plan_ = nullptr;
    IoPool* pool_ = nullptr;
    std::unique_ptr<std::atomic<std::uint64_t>[]> remaining_;
    std::unique_ptr<OpenListing[]> listings_;
    std::atomic<std::uint64_t> files_done_{0}, bytes_done_{0};
    unsigned workers_ = 0;
};

}  // namespace

CopyStats copy_item(int src_fd, Manifest& manifest, int dst_parent_fd, const std::string& dst_name,
                    const CopyOptions& options, const std::string& shown_src, const std::string& shown_dst) {
    bool lone_file = manifest.entries.size() == 1 && manifest.entries[0].path == ".";
    if (options.progress) {
        options.progress->total_bytes += manifest.byte_count();
        options.progress->total_files += manifest.file_count();
    }
    // A lone large file (an image, an archive) is all one source's latency: smaller
    // pieces, read at once by as many workers as there are pieces, up to the cap.
    CopyPlan plan = plan_copy(manifest, !options.hash, lone_file ? PieceSizing{32ull << 20, 16ull << 20} : PieceSizing{});
    if (lone_file && options.pool && plan.pieces.size() > 1)
        options.pool->grow_to(static_cast<unsigned>(std::min<std::size_t>(std::max(1u, options.threads), plan.pieces.size())));
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
        struct timespec times[2] = {{0, UTIME_NOW}, e.mtime.timespec()};
        ::utimensat(dst_root.get(), e.path.c_str(), times, AT_SYMLINK_NOFOLLOW);
    }

    CopyRun run(src_fd, manifest, dst_root.get(), false, options, shown_src, shown_dst);
    run.run(plan, "");

    // Modes and mtimes of directories last, deepest first: creating their contents
    // changed the mtimes, and a read-only directory could not have been filled.
    for (auto it = plan.directories.rbegin(); it != plan.directories.rend(); ++it) {
        const ManifestEntry& e = manifest.entries[*it];
        struct timespec times[2] = {{0, UTIME_NOW}, e.mtime.timespec()};
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
