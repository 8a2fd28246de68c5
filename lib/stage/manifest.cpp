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

std::string Manifest::metadata_hash() const {
    ContentHasher hasher;
    for (const ManifestEntry& e : entries) {
        char head[96];
        int n = std::snprintf(head, sizeof head, "%c %o %" PRIu64 " %" PRId64 " ", static_cast<char>(e.type),
                              static_cast<unsigned>(e.mode), e.size, e.mtime_ns);
        hasher.update(head, static_cast<std::size_t>(n));
        // Lengths first, so no choice of names can make two different lists hash alike.
        std::uint64_t lengths[2] = {e.path.size(), e.target.size()};
        hasher.update(lengths, sizeof lengths);
        hasher.update(e.path.data(), e.path.size());
        hasher.update(e.target.data(), e.target.size());
    }
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
        char head[96];
        std::snprintf(head, sizeof head, "%c %04o %" PRIu64 " %" PRId64 " ", static_cast<char>(e.type),
                      static_cast<unsigned>(e.mode), e.size, e.mtime_ns);
        out += head;
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

void scan_dir(int dir_fd, const std::string& prefix, const std::string& shown_root, Manifest& out, int depth) {
    if (depth > 1024) throw Error("cannot stage " + shown_root + ": directory nesting deeper than 1024");
    int listing_fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (listing_fd < 0) throw_errno("cannot list " + join_path(shown_root, prefix));
    DIR* dir = ::fdopendir(listing_fd);
    if (!dir) {
        ::close(listing_fd);
        throw_errno("cannot list " + join_path(shown_root, prefix));
    }
    std::vector<std::string> names;
    errno = 0;
    while (struct dirent* ent = ::readdir(dir)) {
        if (std::strcmp(ent->d_name, ".") == 0 || std::strcmp(ent->d_name, "..") == 0) continue;
        names.emplace_back(ent->d_name);
    }
    int err = errno;
    ::closedir(dir);
    if (err) throw SystemError("cannot list " + join_path(shown_root, prefix), err);
    std::sort(names.begin(), names.end());

    for (const std::string& name : names) {
        std::string path = prefix.empty() ? name : prefix + "/" + name;
        struct stat st {};
        if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT) continue;  // removed while scanning: the post-copy check catches churn
            throw_errno("cannot stat " + join_path(shown_root, path));
        }
        ManifestEntry e;
        e.path = path;
        e.mode = st.st_mode & 07777;
        e.mtime_ns = mtime_of(st);
        if (S_ISREG(st.st_mode)) {
            e.type = EntryType::file;
            e.size = static_cast<std::uint64_t>(st.st_size);
            out.entries.push_back(std::move(e));
        } else if (S_ISLNK(st.st_mode)) {
            e.type = EntryType::symlink;
            std::vector<char> buf(static_cast<std::size_t>(st.st_size) + 2);
            ssize_t n = ::readlinkat(dir_fd, name.c_str(), buf.data(), buf.size());
            if (n < 0) throw_errno("cannot read link " + join_path(shown_root, path));
            e.target.assign(buf.data(), static_cast<std::size_t>(n));
            e.size = e.target.size();
            out.entries.push_back(std::move(e));
        } else if (S_ISDIR(st.st_mode)) {
            e.type = EntryType::directory;
            out.entries.push_back(std::move(e));
            int sub = ::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) throw_errno("cannot open directory " + join_path(shown_root, path));
            UniqueFd sub_fd(sub);
            scan_dir(sub_fd.get(), path, shown_root, out, depth + 1);
        } else {
            throw Error("cannot stage " + join_path(shown_root, path) +
                        ": it is a socket, FIFO or device file; only files, directories and symlinks can be staged");
        }
    }
}

}  // namespace

namespace {

// One directory of a parallel scan: its direct entries, sorted, and the nodes of its
// subdirectories in the same order.
struct ScanNode {
    std::string prefix;
    std::vector<ManifestEntry> entries;
    std::vector<ScanNode*> subdirs;
};

void list_one_dir(int root_fd, ScanNode& node, const std::string& shown_root,
                  std::vector<std::unique_ptr<ScanNode>>& created) {
    UniqueFd dir_fd = node.prefix.empty() ? UniqueFd(::fcntl(root_fd, F_DUPFD_CLOEXEC, 0))
                                          : open_beneath_or_throw(root_fd, node.prefix, O_RDONLY | O_DIRECTORY,
                                                                  join_path(shown_root, node.prefix));
    Manifest direct;
    int listing_fd = ::openat(dir_fd.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (listing_fd < 0) throw_errno("cannot list " + join_path(shown_root, node.prefix));
    DIR* dir = ::fdopendir(listing_fd);
    if (!dir) {
        ::close(listing_fd);
        throw_errno("cannot list " + join_path(shown_root, node.prefix));
    }
    std::vector<std::string> names;
    errno = 0;
    while (struct dirent* ent = ::readdir(dir))
        if (std::strcmp(ent->d_name, ".") != 0 && std::strcmp(ent->d_name, "..") != 0) names.emplace_back(ent->d_name);
    int err = errno;
    ::closedir(dir);
    if (err) throw SystemError("cannot list " + join_path(shown_root, node.prefix), err);
    std::sort(names.begin(), names.end());
    for (const std::string& name : names) {
        std::string path = node.prefix.empty() ? name : node.prefix + "/" + name;
        struct stat st {};
        if (::fstatat(dir_fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT) continue;
            throw_errno("cannot stat " + join_path(shown_root, path));
        }
        ManifestEntry e;
        e.path = path;
        e.mode = st.st_mode & 07777;
        e.mtime_ns = mtime_of(st);
        if (S_ISREG(st.st_mode)) {
            e.size = static_cast<std::uint64_t>(st.st_size);
        } else if (S_ISLNK(st.st_mode)) {
            e.type = EntryType::symlink;
            std::vector<char> buf(static_cast<std::size_t>(st.st_size) + 2);
            ssize_t n = ::readlinkat(dir_fd.get(), name.c_str(), buf.data(), buf.size());
            if (n < 0) throw_errno("cannot read link " + join_path(shown_root, path));
            e.target.assign(buf.data(), static_cast<std::size_t>(n));
            e.size = e.target.size();
        } else if (S_ISDIR(st.st_mode)) {
            e.type = EntryType::directory;
            created.push_back(std::make_unique<ScanNode>());
            created.back()->prefix = path;
            node.subdirs.push_back(created.back().get());
        } else {
            throw Error("cannot stage " + join_path(shown_root, path) +
                        ": it is a socket, FIFO or device file; only files, directories and symlinks can be staged");
        }
        node.entries.push_back(std::move(e));
    }
}

void assemble(const ScanNode& node, Manifest& out) {
    std::size_t sub = 0;
    for (const ManifestEntry& e : node.entries) {
        out.entries.push_back(e);
        if (e.type == EntryType::directory) assemble(*node.subdirs[sub++], out);
    }
}

}  // namespace

Manifest scan_tree(int dir_fd, const std::string& shown_path, unsigned threads) {
    Manifest manifest;
    if (threads <= 1) {
        scan_dir(dir_fd, "", shown_path, manifest, 0);
        return manifest;
    }
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
                list_one_dir(dir_fd, *node, shown_path, created);
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
