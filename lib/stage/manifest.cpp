#include "stage/manifest.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/text.hpp"
#include "stage/fs.hpp"
#include "stage/io_pool.hpp"

namespace aihpc::stage {

FileTime FileTime::of(std::int64_t sec, std::int64_t nsec) {
    FileTime t;
    t.sec = sec + nsec / 1000000000;
    t.nsec = nsec % 1000000000;
    if (t.nsec < 0) {
        t.nsec += 1000000000;
        t.sec -= 1;
    }
    return t;
}

FileTime FileTime::of(const struct timespec& ts) { return of(static_cast<std::int64_t>(ts.tv_sec), ts.tv_nsec); }

struct timespec FileTime::timespec() const {
    struct timespec ts {};
    ts.tv_sec = static_cast<time_t>(sec);
    ts.tv_nsec = static_cast<long>(nsec);
    return ts;
}

namespace {
__extension__ typedef __int128 wide_ns;
constexpr std::int64_t ns_per_s = 1000000000;
}  // namespace

std::string FileTime::text() const {
    wide_ns ns = static_cast<wide_ns>(sec) * ns_per_s + nsec;
    bool negative = ns < 0;
    unsigned __int128 magnitude = negative ? static_cast<unsigned __int128>(-(ns + 1)) + 1 : static_cast<unsigned __int128>(ns);
    char digits[48];
    int n = 0;
    do {
        digits[n++] = static_cast<char>('0' + static_cast<int>(magnitude % 10));
        magnitude /= 10;
    } while (magnitude);
    std::string out = negative ? "-" : "";
    while (n) out += digits[--n];
    return out;
}

std::optional<FileTime> FileTime::parse(const std::string& text) {
    std::size_t i = text.starts_with('-') ? 1 : 0;
    // int64 seconds in nanoseconds take at most 29 digits; more is no time.
    if (i == text.size() || text.size() - i > 29) return std::nullopt;
    wide_ns ns = 0;
    for (; i < text.size(); ++i) {
        if (text[i] < '0' || text[i] > '9') return std::nullopt;
        ns = ns * 10 + (text[i] - '0');
    }
    if (text.starts_with('-')) ns = -ns;
    wide_ns sec = ns / ns_per_s, rest = ns % ns_per_s;
    if (rest < 0) {
        rest += ns_per_s;
        sec -= 1;
    }
    if (sec > INT64_MAX || sec < INT64_MIN) return std::nullopt;
    FileTime t;
    t.sec = static_cast<std::int64_t>(sec);
    t.nsec = static_cast<std::int64_t>(rest);
    return t;
}

std::int64_t change_stamp(std::int64_t sec, std::int64_t nsec) {
    return static_cast<std::int64_t>(static_cast<std::uint64_t>(sec) * 1000000000u + static_cast<std::uint64_t>(nsec));
}

bool ManifestEntry::same_metadata(const ManifestEntry& other) const {
    return path == other.path && type == other.type && mode == other.mode && size == other.size &&
           mtime == other.mtime && target == other.target;
}

std::uint64_t Manifest::file_count() const {
    return static_cast<std::uint64_t>(
        std::count_if(entries.begin(), entries.end(), [](const ManifestEntry& e) { return e.type == EntryType::file; }));
}

std::uint64_t Manifest::byte_count() const {
    std::uint64_t total = 0;
    for (const ManifestEntry& e : entries)
        if (e.type == EntryType::file) total = e.size > UINT64_MAX - total ? UINT64_MAX : total + e.size;
    return total;
}

bool Manifest::has_content_hashes() const {
    for (const ManifestEntry& e : entries)
        if (e.type == EntryType::file && !e.content_hash) return false;
    return true;
}

// ---- hashing

ContentHasher::ContentHasher() : state_(XXH3_createState()) {
    if (!state_) throw Error("out of memory for a hash state");
    XXH3_128bits_reset(static_cast<XXH3_state_t*>(state_));
}

ContentHasher::~ContentHasher() { XXH3_freeState(static_cast<XXH3_state_t*>(state_)); }

void ContentHasher::update(const void* data, std::size_t size) {
    XXH3_128bits_update(static_cast<XXH3_state_t*>(state_), data, size);
}

static std::string hex128(XXH128_hash_t h) {
    char text[33];
    std::snprintf(text, sizeof text, "%016" PRIx64 "%016" PRIx64, static_cast<std::uint64_t>(h.high64),
                  static_cast<std::uint64_t>(h.low64));
    return text;
}

std::string ContentHasher::hex() { return hex128(XXH3_128bits_digest(static_cast<XXH3_state_t*>(state_))); }

std::string hash_bytes(const void* data, std::size_t size) { return hex128(XXH3_128bits(data, size)); }

std::string hash_fd(int fd, const std::string& shown_path) {
    ContentHasher hasher;
    std::vector<char> buf(1 << 20);
    while (true) {
        ssize_t n = ::read(fd, buf.data(), buf.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("cannot read " + shown_path);
        }
        if (n == 0) break;
        hasher.update(buf.data(), static_cast<std::size_t>(n));
    }
    return hasher.hex();
}

namespace {

// printf's "%o", "%" PRIu64 and "%" PRId64 without its per-call cost: the text form and
// the metadata hash are computed over every entry of every stage-in.
char* put_octal(char* out, unsigned value, int min_digits) {
    char digits[12];
    int n = 0;
    do {
        digits[n++] = static_cast<char>('0' + (value & 7));
        value >>= 3;
    } while (value);
    for (int i = n; i < min_digits; ++i) *out++ = '0';
    while (n) *out++ = digits[--n];
    return out;
}

char* put_decimal(char* out, std::uint64_t value) {
    char digits[20];
    int n = 0;
    do {
        digits[n++] = static_cast<char>('0' + value % 10);
        value /= 10;
    } while (value);
    while (n) *out++ = digits[--n];
    return out;
}

// "TYPE MODE SIZE MTIME_NS " with the mode's octal digits padded to mode_digits.
constexpr std::size_t entry_head_max = 1 + 1 + 6 + 1 + 20 + 1 + 30 + 1;
char* put_entry_head(char* out, const ManifestEntry& e, int mode_digits) {
    *out++ = static_cast<char>(e.type);
    *out++ = ' ';
    out = put_octal(out, static_cast<unsigned>(e.mode), mode_digits);
    *out++ = ' ';
    out = put_decimal(out, e.size);
    *out++ = ' ';
    std::string mtime = e.mtime.text();
    out = std::copy(mtime.begin(), mtime.end(), out);
    *out++ = ' ';
    return out;
}

}  // namespace

std::string Manifest::metadata_hash() const {
    // The stream hashed is, per entry: the head (mode unpadded), the path's and target's
    // lengths as two native uint64s (so no choice of names can make two different lists
    // hash alike), then the path and the target. It is gathered into large blocks, since
    // xxh3's result does not depend on how its input is split.
    ContentHasher hasher;
    std::string block;
    block.reserve(1 << 16);
    for (const ManifestEntry& e : entries) {
        char head[entry_head_max];
        block.append(head, static_cast<std::size_t>(put_entry_head(head, e, 0) - head));
        std::uint64_t lengths[2] = {e.path.size(), e.target.size()};
        block.append(reinterpret_cast<const char*>(lengths), sizeof lengths);
        block += e.path;
        block += e.target;
        if (block.size() >= (1 << 16) - 512) {
            hasher.update(block.data(), block.size());
            block.clear();
        }
    }
    hasher.update(block.data(), block.size());
    return hasher.hex();
}

std::string Manifest::freshness_hash() const {
    ContentHasher hasher;
    std::string metadata = metadata_hash();
    hasher.update(metadata.data(), metadata.size());
    std::vector<std::uint64_t> block;
    block.reserve(4096);
    for (const ManifestEntry& e : entries) {
        block.push_back(static_cast<std::uint64_t>(e.ctime_ns));
        block.push_back(e.inode);
        if (block.size() >= 4096) {
            hasher.update(block.data(), block.size() * sizeof block[0]);
            block.clear();
        }
    }
    hasher.update(block.data(), block.size() * sizeof block[0]);
    return hasher.hex();
}

// ---- text form: "TYPE MODE SIZE MTIME_NS HASH|- PATH [TARGET]", one entry per line

std::string escape_path(const std::string& path) {
    std::string out;
    out.reserve(path.size());
    for (unsigned char c : path) {
        if (c <= 0x20 || c == '%' || c == 0x7f) {
            char code[4];
            std::snprintf(code, sizeof code, "%%%02X", c);
            out += code;
        } else {
            out += static_cast<char>(c);
        }
    }
    return out;
}

std::optional<std::string> unescape_path(const std::string& text) {
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '%') {
            out += text[i];
            continue;
        }
        if (i + 2 >= text.size()) return std::nullopt;
        unsigned value = 0;
        for (int k = 1; k <= 2; ++k) {
            char c = text[i + k];
            value <<= 4;
            if (c >= '0' && c <= '9') value |= static_cast<unsigned>(c - '0');
            else if (c >= 'A' && c <= 'F') value |= static_cast<unsigned>(c - 'A' + 10);
            else if (c >= 'a' && c <= 'f') value |= static_cast<unsigned>(c - 'a' + 10);
            else return std::nullopt;
        }
        out += static_cast<char>(value);
        i += 2;
    }
    return out;
}

std::string Manifest::serialize() const {
    std::string out;
    out.reserve(entries.size() * 64);
    for (const ManifestEntry& e : entries) {
        char head[entry_head_max];
        out.append(head, static_cast<std::size_t>(put_entry_head(head, e, 4) - head));
        out += e.content_hash ? *e.content_hash : "-";
        out += ' ';
        out += escape_path(e.path);
        if (e.type == EntryType::symlink) {
            out += ' ';
            out += escape_path(e.target);
        }
        out += '\n';
    }
    return out;
}

Manifest Manifest::parse(const std::string& text) {
    Manifest manifest;
    std::size_t line_no = 0;
    for (const std::string& line : split(text, '\n')) {
        ++line_no;
        if (line.empty()) continue;
        auto bad = [&](const char* why) {
            return Error("manifest line " + std::to_string(line_no) + " is malformed (" + why + "): " + line);
        };
        std::vector<std::string> words = split(line, ' ');
        if (words.size() < 6 || words[0].size() != 1) throw bad("too few fields");
        ManifestEntry e;
        char type = words[0][0];
        if (type != 'f' && type != 'd' && type != 'l') throw bad("unknown type");
        e.type = static_cast<EntryType>(type);
        char* end = nullptr;
        unsigned long mode = std::strtoul(words[1].c_str(), &end, 8);
        if (*end || mode > 07777) throw bad("mode");
        e.mode = static_cast<mode_t>(mode);
        auto size = parse_uint(words[2]);
        if (!size) throw bad("size");
        e.size = *size;
        auto mtime = FileTime::parse(words[3]);
        if (!mtime) throw bad("mtime");
        e.mtime = *mtime;
        if (words[4] != "-") e.content_hash = words[4];
        auto path = unescape_path(words[5]);
        if (!path) throw bad("path escape");
        e.path = *path;
        if (e.type == EntryType::symlink) {
            if (words.size() != 7) throw bad("symlink without target");
            auto target = unescape_path(words[6]);
            if (!target) throw bad("target escape");
            e.target = *target;
        } else if (words.size() != 6) {
            throw bad("extra fields");
        }
        manifest.entries.push_back(std::move(e));
    }
    return manifest;
}

// ---- scanning

namespace {

FileTime time_of(const struct statx_timestamp& t) { return FileTime::of(t.tv_sec, t.tv_nsec); }
std::int64_t stamp_of(const struct statx_timestamp& t) { return change_stamp(t.tv_sec, t.tv_nsec); }

// One directory of a scan: its direct entries in name order, and the node of each
// subdirectory at the same index. Workers fill entries independently; the manifest is
// assembled from the tree of nodes at the end, so the order never depends on threads.
struct ScanNode {
    std::string prefix;
    int depth = 0;
    std::vector<ManifestEntry> entries;
    std::vector<char> present;  // 0 where an entry vanished between listing and statx
    std::vector<std::unique_ptr<ScanNode>> subdirs;
};

// A listed directory shared by the tasks that statx its entries.
struct ListedDirectory {
    UniqueFd fd;
    DirectoryNames names;
    ListedDirectory(UniqueFd dir, const std::string& shown) : fd(std::move(dir)), names(fd.get(), shown) {}
};

std::string child_path(const std::string& prefix, std::string_view name) {
    std::string path;
    path.reserve(prefix.size() + 1 + name.size());
    if (!prefix.empty()) {
        path += prefix;
        path += '/';
    }
    path += name;
    return path;
}

// Entries whose statx go together in one task: enough to make a task worth its cost on
// a local source, few enough to spread one directory over many workers on a remote one.
constexpr std::size_t stat_batch = 8;

class TreeScan {
public:
    TreeScan(int root_fd, const std::string& shown_root, IoPool& pool, SourceOps* ops)
        : root_fd_(root_fd), shown_root_(shown_root), pool_(pool), ops_(ops) {}

    void list(ScanNode* node) {
        if (node->depth > 1024) throw Error("cannot stage " + shown_root_ + ": directory nesting deeper than 1024");
        std::string shown_dir = join_path(shown_root_, node->prefix);
        std::shared_ptr<ListedDirectory> dir;
        {
            // The listing is timed whole (its open and its reads): on a network file
            // system that lists with attributes, it is the scan's round trip.
            TimedOp op(ops_, &pool_, OpKind::listing);
            // O_NONBLOCK: a FIFO put in place of the directory cannot block the open;
            // O_DIRECTORY refuses it.
            int flags = O_RDONLY | O_DIRECTORY | O_NONBLOCK;
            UniqueFd fd = node->prefix.empty() ? UniqueFd(::openat(root_fd_, ".", flags | O_CLOEXEC))
                                               : open_beneath_or_throw(root_fd_, node->prefix, flags, shown_dir);
            if (!fd) throw_errno("cannot list " + shown_dir);
            dir = std::make_shared<ListedDirectory>(std::move(fd), shown_dir);
        }
        if (ops_) ops_->ops.fetch_add(1, std::memory_order_relaxed);  // the listing itself
        std::size_t n = dir->names.size();
        node->entries.resize(n);
        node->present.assign(n, 0);
        node->subdirs.resize(n);
        for (std::size_t first = 0; first < n; first += stat_batch) {
            std::size_t last = std::min(n, first + stat_batch);
            pool_.submit_first([this, node, dir, first, last] { stat_entries(node, *dir, first, last); });
        }
    }

private:
    void stat_entries(ScanNode* node, const ListedDirectory& dir, std::size_t first, std::size_t last) {
        for (std::size_t i = first; i < last && !pool_.failed(); ++i) {
            struct statx stx {};
            int rc;
            {
                TimedOp op(ops_, &pool_);
                rc = ::statx(dir.fd.get(), dir.names.c_str(i), AT_SYMLINK_NOFOLLOW | AT_STATX_SYNC_AS_STAT,
                             STATX_BASIC_STATS, &stx);
            }
            if (rc != 0) {
                if (errno == ENOENT) continue;  // removed while scanning: the copy's own checks catch churn
                throw_errno("cannot stat " + join_path(shown_root_, child_path(node->prefix, dir.names[i])));
            }
            ManifestEntry& e = node->entries[i];
            e.path = child_path(node->prefix, dir.names[i]);
            e.mode = stx.stx_mode & 07777;
            e.mtime = time_of(stx.stx_mtime);
            e.ctime_ns = stamp_of(stx.stx_ctime);
            e.inode = stx.stx_ino;
            e.blocks = stx.stx_blocks;
            if (S_ISREG(stx.stx_mode)) {
                e.size = stx.stx_size;
            } else if (S_ISLNK(stx.stx_mode)) {
                e.type = EntryType::symlink;
                std::vector<char> buf(static_cast<std::size_t>(stx.stx_size) + 2);
                ssize_t got;
                {
                    TimedOp op(ops_, &pool_);
                    got = ::readlinkat(dir.fd.get(), dir.names.c_str(i), buf.data(), buf.size());
                }
                if (got < 0) throw_errno("cannot read link " + join_path(shown_root_, e.path));
                e.target.assign(buf.data(), static_cast<std::size_t>(got));
                e.size = e.target.size();
            } else if (S_ISDIR(stx.stx_mode)) {
                e.type = EntryType::directory;
                auto child = std::make_unique<ScanNode>();
                child->prefix = e.path;
                child->depth = node->depth + 1;
                ScanNode* raw = child.get();
                node->subdirs[i] = std::move(child);
                pool_.submit([this, raw] { list(raw); });
            } else {
                throw Error("cannot stage " + join_path(shown_root_, e.path) +
                            ": it is a socket, FIFO or device file; only files, directories and symlinks can be staged");
            }
            node->present[i] = 1;
        }
    }

    int root_fd_;
    const std::string& shown_root_;
    IoPool& pool_;
    SourceOps* ops_;
};

void assemble(ScanNode& node, Manifest& out) {
    for (std::size_t i = 0; i < node.entries.size(); ++i) {
        if (!node.present[i]) continue;
        bool directory = node.entries[i].type == EntryType::directory;
        out.entries.push_back(std::move(node.entries[i]));
        if (directory) assemble(*node.subdirs[i], out);
    }
}

std::size_t count_entries(const ScanNode& node) {
    std::size_t total = node.entries.size();
    for (const auto& sub : node.subdirs)
        if (sub) total += count_entries(*sub);
    return total;
}

}  // namespace

Manifest scan_tree(int dir_fd, const std::string& shown_path, const ScanOptions& options, ScanReport* report) {
    unsigned cap = std::max(1u, options.cap);
    unsigned initial = options.initial ? options.initial : usable_cpus();
    std::optional<IoPool> own;
    if (!options.pool) own.emplace(std::min(initial, cap), cap);
    IoPool& pool = options.pool ? *options.pool : *own;
    ScanNode root;
    TreeScan scan(dir_fd, shown_path, pool, options.ops);
    pool.submit([&] { scan.list(&root); });
    try {
        pool.run();
    } catch (const Error&) {
        throw;
    } catch (const std::exception& e) {
        throw Error("cannot scan " + shown_path + ": " + e.what());
    }
    if (report) {
        report->workers = pool.workers();
        report->median_latency_ns = pool.median_latency_ns();
    }
    Manifest manifest;
    manifest.entries.reserve(count_entries(root));
    assemble(root, manifest);
    return manifest;
}

Manifest scan_tree(int dir_fd, const std::string& shown_path, unsigned threads) {
    ScanOptions options;
    options.cap = std::max(1u, threads);
    options.initial = options.cap;
    return scan_tree(dir_fd, shown_path, options);
}

Manifest scan_file(int file_fd, const std::string& shown_path) {
    struct stat st {};
    if (::fstat(file_fd, &st) != 0) throw_errno("cannot stat " + shown_path);
    if (!S_ISREG(st.st_mode)) throw Error("cannot stage " + shown_path + ": not a regular file or directory");
    ManifestEntry e;
    e.path = ".";
    e.type = EntryType::file;
    e.mode = st.st_mode & 07777;
    e.size = static_cast<std::uint64_t>(st.st_size);
    e.mtime = FileTime::of(st.st_mtim);
    e.ctime_ns = change_stamp(st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
    e.inode = static_cast<std::uint64_t>(st.st_ino);
    e.blocks = static_cast<std::uint64_t>(st.st_blocks);
    Manifest manifest;
    manifest.entries.push_back(std::move(e));
    return manifest;
}

void hash_contents(int root_fd, Manifest& manifest, unsigned threads, const std::string& shown_root) {
    std::vector<ManifestEntry*> files;
    for (ManifestEntry& e : manifest.entries)
        if (e.type == EntryType::file) files.push_back(&e);
    std::atomic<std::size_t> next{0};
    std::string first_error;
    std::atomic<bool> failed{false};
    std::mutex error_lock;
    auto work = [&] {
        while (!failed.load()) {
            std::size_t i = next.fetch_add(1);
            if (i >= files.size()) return;
            ManifestEntry& e = *files[i];
            std::string shown = e.path == "." ? shown_root : join_path(shown_root, e.path);
            try {
                UniqueFd fd = e.path == "." ? UniqueFd(::fcntl(root_fd, F_DUPFD_CLOEXEC, 0))
                                            : open_beneath_or_throw(root_fd, e.path, O_RDONLY | O_NONBLOCK, shown);
                struct stat st {};
                if (::fstat(fd.get(), &st) != 0) throw_errno("cannot stat " + shown);
                if (!S_ISREG(st.st_mode)) throw Error("cannot hash " + shown + ": it is no longer a regular file");
                if (e.path == ".") ::lseek(fd.get(), 0, SEEK_SET);
                e.content_hash = hash_fd(fd.get(), shown);
            } catch (const Error& err) {
                std::lock_guard<std::mutex> guard(error_lock);
                if (first_error.empty()) first_error = err.what();
                failed.store(true);
            }
        }
    };
    unsigned count = std::max(1u, std::min<unsigned>(threads, static_cast<unsigned>(files.size())));
    std::vector<std::thread> pool;
    for (unsigned t = 1; t < count; ++t) pool.emplace_back(work);
    work();
    for (std::thread& t : pool) t.join();
    if (failed) throw Error(first_error);
}

std::vector<std::string> manifest_differences(const Manifest& expected, const Manifest& actual) {
    std::map<std::string, const ManifestEntry*> have;
    for (const ManifestEntry& e : actual.entries) have[e.path] = &e;
    std::vector<std::string> diffs;
    for (const ManifestEntry& e : expected.entries) {
        auto it = have.find(e.path);
        if (it == have.end()) {
            diffs.push_back(e.path + " (missing)");
            continue;
        }
        const ManifestEntry& a = *it->second;
        if (!e.same_metadata(a)) diffs.push_back(e.path + " (changed)");
        else if (e.content_hash && a.content_hash && *e.content_hash != *a.content_hash)
            diffs.push_back(e.path + " (content differs)");
        have.erase(it);
    }
    for (const auto& [path, entry] : have) diffs.push_back(path + " (added)");
    return diffs;
}

}  // namespace aihpc::stage
