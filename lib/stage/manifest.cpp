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
#include <thread>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/text.hpp"
#include "stage/fs.hpp"

namespace aihpc::stage {

bool ManifestEntry::same_metadata(const ManifestEntry& other) const {
    return path == other.path && type == other.type && mode == other.mode && size == other.size &&
           mtime_ns == other.mtime_ns && target == other.target;
}

std::uint64_t Manifest::file_count() const {
    return static_cast<std::uint64_t>(
        std::count_if(entries.begin(), entries.end(), [](const ManifestEntry& e) { return e.type == EntryType::file; }));
}

std::uint64_t Manifest::byte_count() const {
    std::uint64_t total = 0;
    for (const ManifestEntry& e : entries)
        if (e.type == EntryType::file) total += e.size;
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

char* put_signed(char* out, std::int64_t value) {
    if (value >= 0) return put_decimal(out, static_cast<std::uint64_t>(value));
    *out++ = '-';
    return put_decimal(out, ~static_cast<std::uint64_t>(value) + 1);
}

// "TYPE MODE SIZE MTIME_NS " with the mode's octal digits padded to mode_digits.
constexpr std::size_t entry_head_max = 1 + 1 + 6 + 1 + 20 + 1 + 20 + 1;
char* put_entry_head(char* out, const ManifestEntry& e, int mode_digits) {
    *out++ = static_cast<char>(e.type);
    *out++ = ' ';
    out = put_octal(out, static_cast<unsigned>(e.mode), mode_digits);
    *out++ = ' ';
    out = put_decimal(out, e.size);
    *out++ = ' ';
    out = put_signed(out, e.mtime_ns);
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
        errno = 0;
        long long mtime = std::strtoll(words[3].c_str(), &end, 10);
        if (*end || errno) throw bad("mtime");
        e.mtime_ns = mtime;
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

std::int64_t mtime_of(const struct stat& st) {
    return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

// One directory of a scan: its direct entries in name order, and the nodes of its
// subdirectories in the same order. Workers fill nodes independently; the manifest is
// assembled from the tree of nodes at the end, so the order never depends on threads.
struct ScanNode {
    std::string prefix;
    int depth = 0;
    std::vector<ManifestEntry> entries;
    std::vector<ScanNode*> subdirs;
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

void scan_node(int root_fd, ScanNode& node, const std::string& shown_root, std::vector<std::unique_ptr<ScanNode>>& created) {
    if (node.depth > 1024) throw Error("cannot stage " + shown_root + ": directory nesting deeper than 1024");
    std::string shown_dir = join_path(shown_root, node.prefix);
    UniqueFd dir_fd = node.prefix.empty() ? UniqueFd(::openat(root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC))
                                          : open_beneath_or_throw(root_fd, node.prefix, O_RDONLY | O_DIRECTORY, shown_dir);
    if (!dir_fd) throw_errno("cannot list " + shown_dir);
    DirectoryNames names(dir_fd.get(), shown_dir);
    node.entries.reserve(names.size());
    for (std::size_t i = 0; i < names.size(); ++i) {
        struct stat st {};
        if (::fstatat(dir_fd.get(), names.c_str(i), &st, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT) continue;  // removed while scanning: the copy's own checks catch churn
            throw_errno("cannot stat " + join_path(shown_root, child_path(node.prefix, names[i])));
        }
        ManifestEntry e;
        e.path = child_path(node.prefix, names[i]);
        e.mode = st.st_mode & 07777;
        e.mtime_ns = mtime_of(st);
        if (S_ISREG(st.st_mode)) {
            e.size = static_cast<std::uint64_t>(st.st_size);
        } else if (S_ISLNK(st.st_mode)) {
            e.type = EntryType::symlink;
            std::vector<char> buf(static_cast<std::size_t>(st.st_size) + 2);
            ssize_t n = ::readlinkat(dir_fd.get(), names.c_str(i), buf.data(), buf.size());
            if (n < 0) throw_errno("cannot read link " + join_path(shown_root, e.path));
            e.target.assign(buf.data(), static_cast<std::size_t>(n));
            e.size = e.target.size();
        } else if (S_ISDIR(st.st_mode)) {
            e.type = EntryType::directory;
            created.push_back(std::make_unique<ScanNode>());
            created.back()->prefix = e.path;
            created.back()->depth = node.depth + 1;
            node.subdirs.push_back(created.back().get());
        } else {
            throw Error("cannot stage " + join_path(shown_root, e.path) +
                        ": it is a socket, FIFO or device file; only files, directories and symlinks can be staged");
        }
        node.entries.push_back(std::move(e));
    }
}

void assemble(ScanNode& node, Manifest& out) {
    std::size_t sub = 0;
    for (ManifestEntry& e : node.entries) {
        bool directory = e.type == EntryType::directory;
        out.entries.push_back(std::move(e));
        if (directory) assemble(*node.subdirs[sub++], out);
    }
}

}  // namespace

Manifest scan_tree(int dir_fd, const std::string& shown_path, unsigned threads) {
    // Directories are the unit of work: each is listed and its entries stat'ed by one
    // worker, which queues its subdirectories for whichever worker is free.
    std::mutex lock;
    std::condition_variable ready;
    std::vector<std::unique_ptr<ScanNode>> nodes;
    nodes.push_back(std::make_unique<ScanNode>());
    std::deque<ScanNode*> queue{nodes.front().get()};
    std::size_t busy = 0;
    std::string first_error;
    auto work = [&] {
        std::unique_lock<std::mutex> guard(lock);
        while (true) {
            ready.wait(guard, [&] { return !queue.empty() || busy == 0 || !first_error.empty(); });
            if (!first_error.empty() || (queue.empty() && busy == 0)) {
                ready.notify_all();
                return;
            }
            ScanNode* node = queue.front();
            queue.pop_front();
            ++busy;
            guard.unlock();
            std::vector<std::unique_ptr<ScanNode>> created;
            std::string error;
            try {
                scan_node(dir_fd, *node, shown_path, created);
            } catch (const std::exception& e) {
                error = e.what();
            }
            guard.lock();
            --busy;
            if (!error.empty() && first_error.empty()) first_error = error;
            for (auto& child : created) {
                queue.push_back(child.get());
                nodes.push_back(std::move(child));
            }
            ready.notify_all();
        }
    };
    std::vector<std::thread> pool;
    for (unsigned t = 1; t < threads; ++t) pool.emplace_back(work);
    work();
    for (std::thread& t : pool) t.join();
    if (!first_error.empty()) throw Error(first_error);
    std::size_t total = 0;
    for (const auto& node : nodes) total += node->entries.size();
    Manifest manifest;
    manifest.entries.reserve(total);
    assemble(*nodes.front(), manifest);
    return manifest;
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
    e.mtime_ns = mtime_of(st);
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
                                            : open_beneath_or_throw(root_fd, e.path, O_RDONLY, shown);
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
