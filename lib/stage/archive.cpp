#include "stage/archive.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <map>
#include <memory>
#include <vector>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/text.hpp"
#include "config/user_options.hpp"
#include "stage/fs.hpp"

namespace aihpc::stage {

namespace {

// Components of a relative path with "." and empty parts dropped; nullopt when any
// component is "..".
std::optional<std::vector<std::string>> plain_components(const std::string& path) {
    std::vector<std::string> out;
    for (const std::string& part : split(path, '/')) {
        if (part.empty() || part == ".") continue;
        if (part == "..") return std::nullopt;
        out.push_back(part);
    }
    return out;
}

// The path of an open fd, as the kernel names it.
std::string fd_path(int fd) {
    char link[64], target[4096];
    std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = ::readlink(link, target, sizeof target - 1);
    return n < 0 ? std::string() : std::string(target, static_cast<std::size_t>(n));
}

// Whether the symlink at `path` below root_fd, followed as the kernel follows it through
// every link of the tree, stays below root_fd. Each link may look harmless alone ("l" ->
// ".", "m" -> "l/.."), so the tree is checked once whole. A dangling or looping link
// reaches nothing outside and passes.
bool link_stays_beneath(int root_fd, const std::string& path) {
    struct open_how how {};
    how.flags = O_PATH | O_CLOEXEC;
    how.resolve = RESOLVE_BENEATH;
    long fd = ::syscall(SYS_openat2, root_fd, path.c_str(), &how, sizeof how);
    if (fd >= 0) {
        ::close(static_cast<int>(fd));
        return true;
    }
    if (errno == EXDEV) return false;
    if (errno != ENOSYS && errno != EPERM) return true;
    // No openat2 (an old kernel, or filtered): resolve and compare where it landed.
    int opened = ::openat(root_fd, path.c_str(), O_PATH | O_CLOEXEC);
    if (opened < 0) return errno == ENOENT || errno == ELOOP;
    UniqueFd landed(opened);
    std::string where = fd_path(landed.get()), root = fd_path(root_fd);
    return !root.empty() && (where == root || where.rfind(root + "/", 0) == 0);
}

}  // namespace

std::optional<std::string> archive_entry_refusal(const std::string& path, ArchiveEntryKind kind,
                                                 const std::string& link_target) {
    if (path.empty()) return "an entry has an empty name";
    if (path[0] == '/') return "entry '" + path + "' has an absolute path";
    auto parts = plain_components(path);
    if (!parts) return "entry '" + path + "' contains '..'";
    if (parts->empty() && kind != ArchiveEntryKind::directory) return "entry '" + path + "' names the archive root";
    switch (kind) {
    case ArchiveEntryKind::other:
        return "entry '" + path + "' is a device, FIFO or socket";
    case ArchiveEntryKind::hardlink:
        if (link_target.empty() || link_target[0] == '/' || !plain_components(link_target))
            return "hard link '" + path + "' points outside the archive ('" + link_target + "')";
        break;
    case ArchiveEntryKind::symlink: {
        if (link_target.empty()) return "symlink '" + path + "' has an empty target";
        if (link_target[0] == '/') return "symlink '" + path + "' points to an absolute path ('" + link_target + "')";
        // Resolve lexically from the link's own directory; it may never climb above the root.
        long depth = static_cast<long>(parts->size()) - 1;
        for (const std::string& part : split(link_target, '/')) {
            if (part.empty() || part == ".") continue;
            depth += part == ".." ? -1 : 1;
            if (depth < 0) return "symlink '" + path + "' leads out of the archive ('" + link_target + "')";
        }
        break;
    }
    default:
        break;
    }
    return std::nullopt;
}

namespace {

// libarchive is loaded when an archive is first read, not when a program starts: it
// brings in libxml2, ICU, nettle and five compressors, whose loading and relocation
// every start of aihpc-node (twice per step) and of the plugin would otherwise pay for.
#define AIHPC_LIBARCHIVE_FUNCTIONS(X) \
    X(archive_read_new) \
    X(archive_read_free) \
    X(archive_read_support_filter_all) \
    X(archive_read_support_format_tar) \
    X(archive_read_support_format_gnutar) \
    X(archive_read_open_fd) \
    X(archive_error_string) \
    X(archive_write_disk_new) \
    X(archive_write_free) \
    X(archive_entry_hardlink) \
    X(archive_entry_filetype) \
    X(archive_write_disk_set_options) \
    X(archive_write_disk_set_standard_lookup) \
    X(archive_filter_bytes) \
    X(archive_read_next_header) \
    X(archive_entry_pathname) \
    X(archive_entry_symlink) \
    X(archive_entry_size_is_set) \
    X(archive_entry_size) \
    X(archive_entry_set_perm) \
    X(archive_entry_perm) \
    X(archive_entry_set_hardlink) \
    X(archive_entry_set_pathname) \
    X(archive_write_header) \
    X(archive_read_data_block) \
    X(archive_write_data_block) \
    X(archive_write_finish_entry) \
    X(archive_write_close) \
    X(archive_write_new) \
    X(archive_write_set_format_pax) \
    X(archive_write_open_fd) \
    X(archive_write_data) \
    X(archive_entry_new) \
    X(archive_entry_free) \
    X(archive_entry_set_filetype) \
    X(archive_entry_set_size) \
    X(archive_entry_set_mtime) \
    X(archive_entry_set_symlink) \
    X(archive_entry_clear)

struct Libarchive {
#define AIHPC_LIBARCHIVE_POINTER(name) decltype(&::name) name = nullptr;
    AIHPC_LIBARCHIVE_FUNCTIONS(AIHPC_LIBARCHIVE_POINTER)
#undef AIHPC_LIBARCHIVE_POINTER
};

// The soname of libarchive 3 (Debian's libarchive13), then the development link.
constexpr const char* libarchive_names[] = {"libarchive.so.13", "libarchive.so"};

Libarchive load_libarchive() {
    void* handle = nullptr;
    std::string why;
    for (const char* name : libarchive_names) {
        if ((handle = ::dlopen(name, RTLD_NOW | RTLD_LOCAL))) break;
        const char* error = ::dlerror();
        why = error ? error : name;
    }
    if (!handle) throw Error("cannot load libarchive to read archives (" + why + "); install libarchive13 on this node");
    Libarchive l;
#define AIHPC_LIBARCHIVE_RESOLVE(name)                                                             \
    l.name = reinterpret_cast<decltype(&::name)>(::dlsym(handle, #name));                            \
    if (!l.name) throw Error("the libarchive on this node lacks " #name "; install libarchive 3.3 or later");
    AIHPC_LIBARCHIVE_FUNCTIONS(AIHPC_LIBARCHIVE_RESOLVE)
#undef AIHPC_LIBARCHIVE_RESOLVE
    return l;  // the handle stays open for the life of the process
}

// Loaded once; a failed load is tried again by the next caller.
const Libarchive& libarchive() {
    static const Libarchive loaded = load_libarchive();
    return loaded;
}

}  // namespace

bool is_archive_name(const std::string& name) {
    // Config owns the suffix list: NAME defaults to the source without it.
    return config::default_stage_name(name) != basename_of(name);
}

namespace {

struct ReadArchive {
    struct archive* a = libarchive().archive_read_new();
    ReadArchive() = default;
    ReadArchive(const ReadArchive&) = delete;
    ReadArchive& operator=(const ReadArchive&) = delete;
    ~ReadArchive() { libarchive().archive_read_free(a); }
};

// Opens `reader` over the tar (plain, gzip or zstd) open as archive_fd, from its first byte.
void open_tar(ReadArchive& reader, int archive_fd, const std::string& shown_src) {
    libarchive().archive_read_support_filter_all(reader.a);
    libarchive().archive_read_support_format_tar(reader.a);
    libarchive().archive_read_support_format_gnutar(reader.a);
    if (::lseek(archive_fd, 0, SEEK_SET) < 0) throw_errno("cannot read " + shown_src);
    if (libarchive().archive_read_open_fd(reader.a, archive_fd, 1 << 20) != ARCHIVE_OK)
        throw Error("cannot read " + shown_src + " as an archive: " + libarchive().archive_error_string(reader.a));
}

struct WriteDisk {
    struct archive* a = libarchive().archive_write_disk_new();
    ~WriteDisk() { libarchive().archive_write_free(a); }
};

// Restores the working directory on every path out of the extraction.
class CwdGuard {
public:
    CwdGuard() : saved_(::open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {}
    ~CwdGuard() {
        // A destructor has no one to tell; the caller's later paths are absolute.
        if (saved_ && ::fchdir(saved_.get()) != 0) return;
    }

private:
    UniqueFd saved_;
};

ArchiveEntryKind kind_of(struct archive_entry* entry) {
    if (libarchive().archive_entry_hardlink(entry)) return ArchiveEntryKind::hardlink;
    switch (libarchive().archive_entry_filetype(entry)) {
    case AE_IFREG: return ArchiveEntryKind::file;
    case AE_IFDIR: return ArchiveEntryKind::directory;
    case AE_IFLNK: return ArchiveEntryKind::symlink;
    default: return ArchiveEntryKind::other;
    }
}

std::string normalized(const std::string& path) {
    auto parts = plain_components(path);
    return parts ? join(*parts, "/") : path;
}

}  // namespace

std::uint64_t extracted_charge(ArchiveEntryKind kind, std::uint64_t size) {
    constexpr std::uint64_t block = 4096;
    switch (kind) {
    case ArchiveEntryKind::file: return size > UINT64_MAX - block ? UINT64_MAX : (size + block - 1) / block * block;
    case ArchiveEntryKind::directory: return block;
    default: return 0;  // a link is a name in its directory
    }
}

namespace {

// Why an archive is not extracted: an entry that would land outside it.
Error refusal(const std::string& shown_src, const std::string& why) {
    return Error("refusing to extract " + shown_src + ": " + why + "; only archives whose entries stay inside them are staged");
}

// The bounds of one extraction, checked before a byte of an entry is written: how many
// entries, how many bytes they take on disk, and how far they expand what was read.
class ExtractBudget {
public:
    ExtractBudget(const ExtractLimits& limits, const ReadArchive& reader, const std::string& shown_src)
        : limits_(limits), reader_(reader), shown_src_(shown_src) {}

    // One more entry.
    void count_entry() {
        if (++entries_ > limits_.max_entries)
            throw too_big("it has more than " + std::to_string(limits_.max_entries) + " entries");
        if (limits_.max_cache_inodes && entries_ > *limits_.max_cache_inodes)
            throw too_big("it has more than " + std::to_string(*limits_.max_cache_inodes) +
                          " entries, the files and directories this user's node cache may still hold under the site's "
                          "cache_user_inodes cap");
    }

    // Charges `bytes` more, throwing once past a bound.
    void charge(std::uint64_t bytes) {
        charged_ = bytes > UINT64_MAX - charged_ ? UINT64_MAX : charged_ + bytes;
        if (limits_.max_bytes && charged_ > limits_.max_bytes)
            throw too_big("it expands to more than " + std::to_string(limits_.max_bytes) + " bytes, the room left for it");
        if (limits_.max_ratio && charged_ > limits_.ratio_floor) {
            la_int64_t read = libarchive().archive_filter_bytes(reader_.a, -1);
            std::uint64_t raw = read > 0 ? static_cast<std::uint64_t>(read) : 1;
            if (charged_ / limits_.max_ratio > raw)
                throw too_big("it expands more than " + std::to_string(limits_.max_ratio) + " times (" +
                              std::to_string(charged_) + " bytes out of " + std::to_string(raw) +
                              " read), as only a crafted archive does");
        }
    }

private:
    Error too_big(const std::string& why) const {
        return Error("refusing to extract " + shown_src_ + ": " + why +
                     "; nothing of it was kept. Stage a smaller archive, extract it yourself, or ask for a node with more local disk");
    }

    const ExtractLimits& limits_;
    const ReadArchive& reader_;
    const std::string& shown_src_;
    std::uint64_t charged_ = 0, entries_ = 0;
};

// Writes the data of the file entry whose header was just written, block by block,
// charging whatever lies past its declared size and hashing it when `hasher` is given.
void write_file_data(ReadArchive& reader, WriteDisk& writer, struct archive_entry* entry, const std::string& path,
                     std::uint64_t entry_charge, ExtractBudget& budget, ContentHasher* hasher, ExtractResult& result,
                     CopyProgress* progress, const std::string& shown_src) {
    const void* block = nullptr;
    size_t size = 0;
    la_int64_t offset = 0;
    std::uint64_t position = 0;
    // Sparse entries come as blocks with holes between them: the holes read back as
    // zeros from disk, so they are hashed as zeros.
    auto hash_zeros_to = [&](std::uint64_t end) {
        static const std::vector<char> zeros(1 << 16);
        while (hasher && position < end) {
            std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(zeros.size(), end - position));
            hasher->update(zeros.data(), n);
            position += n;
        }
    };
    while (true) {
        int rc = libarchive().archive_read_data_block(reader.a, &block, &size, &offset);
        if (rc == ARCHIVE_EOF) break;
        if (rc < ARCHIVE_WARN) throw Error("cannot read " + shown_src + ": " + libarchive().archive_error_string(reader.a));
        hash_zeros_to(static_cast<std::uint64_t>(offset));
        // The header's size bounds the data in a well-formed archive; charge anything past it anyway.
        std::uint64_t end = static_cast<std::uint64_t>(offset < 0 ? 0 : offset) + size;
        if (extracted_charge(ArchiveEntryKind::file, end) > entry_charge) {
            std::uint64_t more = extracted_charge(ArchiveEntryKind::file, end) - entry_charge;
            entry_charge += more;
            budget.charge(more);
        }
        if (hasher) {
            hasher->update(block, size);
            position += size;
        }
        if (libarchive().archive_write_data_block(writer.a, block, size, offset) < ARCHIVE_WARN)
            throw Error("cannot write '" + path + "' from " + shown_src + ": " + libarchive().archive_error_string(writer.a));
        result.stats.bytes += size;
        if (progress) progress->bytes += size;
    }
    if (libarchive().archive_entry_size_is_set(entry)) hash_zeros_to(static_cast<std::uint64_t>(libarchive().archive_entry_size(entry)));
}

// The manifest of what was extracted below dst_root, read back under the archive's name
// (its members' paths are the user's, the directory they were written to is not), with
// the archive's directory modes, the hashes taken while writing (the rest hashed now,
// when `hash`), and the staged modes set. Refuses a symlink that leads out through others.
Manifest read_back_extracted(int dst_root, const std::string& shown_src, const std::map<std::string, mode_t>& dir_modes,
                             const std::map<std::string, std::string>& hashes, bool read_only, bool hash) {
    Manifest manifest = scan_tree(dst_root, shown_src);
    for (ManifestEntry& e : manifest.entries) {
        if (e.type != EntryType::directory) continue;
        auto it = dir_modes.find(e.path);
        if (it != dir_modes.end()) e.mode = it->second;
    }
    for (const ManifestEntry& e : manifest.entries)
        if (e.type == EntryType::symlink && !link_stays_beneath(dst_root, e.path))
            throw refusal(shown_src, "symlink '" + e.path + "' leads out of the archive through other links ('" + e.target + "')");
    for (ManifestEntry& e : manifest.entries) {
        if (e.type != EntryType::file) continue;
        auto it = hashes.find(e.path);
        if (it != hashes.end() && e.size > 0) e.content_hash = it->second;
    }
    if (hash) {
        Manifest missing;
        for (const ManifestEntry& e : manifest.entries)
            if (e.type == EntryType::file && !e.content_hash) missing.entries.push_back(e);
        hash_contents(dst_root, missing, 4, shown_src);
        std::map<std::string, std::string> filled;
        for (const ManifestEntry& e : missing.entries) filled[e.path] = *e.content_hash;
        for (ManifestEntry& e : manifest.entries)
            if (e.type == EntryType::file && !e.content_hash) e.content_hash = filled[e.path];
    }
    // Deepest first, so a directory gets its final mode after its contents.
    for (auto it = manifest.entries.rbegin(); it != manifest.entries.rend(); ++it) {
        if (it->type == EntryType::symlink || (!read_only && it->type != EntryType::directory)) continue;
        mode_t mode = staged_mode(it->type, it->mode, read_only);
        if (::fchmodat(dst_root, it->path.c_str(), mode, 0) != 0)
            throw_errno("cannot set the mode of '" + it->path + "' extracted from " + shown_src);
        it->mode = mode;
    }
    return manifest;
}

}  // namespace

ExtractResult extract_archive(int archive_fd, int dst_parent_fd, const std::string& dst_name, bool read_only, bool hash,
                              CopyProgress* progress, const std::string& shown_src, const std::string& shown_dst,
                              const ExtractLimits& limits) {
    ReadArchive reader;
    open_tar(reader, archive_fd, shown_src);

    if (::mkdirat(dst_parent_fd, dst_name.c_str(), 0700) != 0) throw_errno("cannot create " + shown_dst);
    int root = ::openat(dst_parent_fd, dst_name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (root < 0) throw_errno("cannot open " + shown_dst);
    UniqueFd dst_root(root);

    WriteDisk writer;
    libarchive().archive_write_disk_set_options(writer.a, ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM |
                                                 ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                                                 ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS | ARCHIVE_EXTRACT_UNLINK);
    libarchive().archive_write_disk_set_standard_lookup(writer.a);

    CwdGuard cwd;
    if (::fchdir(dst_root.get()) != 0) throw_errno("cannot enter " + shown_dst);

    ExtractResult result;
    std::map<std::string, std::string> hashes;
    // Directory modes as the archive gives them, set once everything is in place (as GNU
    // tar does): a directory that is mode 000 or without x in the archive could not be
    // filled, scanned or hashed by its own user otherwise. Until then each is 0700 or more.
    std::map<std::string, mode_t> dir_modes;
    ExtractBudget budget(limits, reader, shown_src);
    while (true) {
        struct archive_entry* entry = nullptr;
        int rc = libarchive().archive_read_next_header(reader.a, &entry);
        if (rc == ARCHIVE_EOF) break;
        if (rc < ARCHIVE_WARN) throw Error("cannot read " + shown_src + ": " + libarchive().archive_error_string(reader.a));
        const char* raw_path = libarchive().archive_entry_pathname(entry);
        std::string path = raw_path ? raw_path : "";
        ArchiveEntryKind kind = kind_of(entry);
        std::string target;
        if (kind == ArchiveEntryKind::hardlink) target = libarchive().archive_entry_hardlink(entry);
        else if (kind == ArchiveEntryKind::symlink && libarchive().archive_entry_symlink(entry)) target = libarchive().archive_entry_symlink(entry);
        if (auto why = archive_entry_refusal(path, kind, target)) throw refusal(shown_src, *why);
        if (plain_components(path)->empty()) continue;  // "./" itself: the root exists
        budget.count_entry();
        std::uint64_t declared = libarchive().archive_entry_size_is_set(entry) && libarchive().archive_entry_size(entry) > 0
                                     ? static_cast<std::uint64_t>(libarchive().archive_entry_size(entry))
                                     : 0;
        std::uint64_t entry_charge = extracted_charge(kind, declared);
        budget.charge(entry_charge);
        // Set-id bits and ownership are never carried into a node-local copy.
        mode_t perm = static_cast<mode_t>(libarchive().archive_entry_perm(entry) & 01777);
        if (kind == ArchiveEntryKind::directory) {
            dir_modes[normalized(path)] = perm;
            perm |= 0700;
        }
        libarchive().archive_entry_set_perm(entry, perm);
        if (kind == ArchiveEntryKind::hardlink) libarchive().archive_entry_set_hardlink(entry, normalized(target).c_str());
        libarchive().archive_entry_set_pathname(entry, normalized(path).c_str());

        rc = libarchive().archive_write_header(writer.a, entry);
        if (rc < ARCHIVE_WARN) throw Error("cannot extract '" + path + "' from " + shown_src + ": " +
                                           libarchive().archive_error_string(writer.a));
        std::unique_ptr<ContentHasher> hasher;
        if (hash && kind == ArchiveEntryKind::file) hasher = std::make_unique<ContentHasher>();
        if (kind == ArchiveEntryKind::file)
            write_file_data(reader, writer, entry, path, entry_charge, budget, hasher.get(), result, progress, shown_src);
        if (libarchive().archive_write_finish_entry(writer.a) < ARCHIVE_WARN)
            throw Error("cannot finish '" + path + "' from " + shown_src + ": " + libarchive().archive_error_string(writer.a));
        if (kind == ArchiveEntryKind::file) {
            result.stats.files += 1;
            if (progress) progress->files += 1;
        }
        if (hasher) hashes[normalized(path)] = hasher->hex();
    }
    if (libarchive().archive_write_close(writer.a) != ARCHIVE_OK)
        throw Error("cannot finish extracting " + shown_src + ": " + libarchive().archive_error_string(writer.a));

    result.manifest = read_back_extracted(dst_root.get(), shown_src, dir_modes, hashes, read_only, hash);
    if (read_only) ::fchmod(dst_root.get(), 0555);
    ::fsync(dst_root.get());
    return result;
}

}  // namespace aihpc::stage

namespace aihpc::stage {

std::map<std::string, std::string> archive_content_hashes(int archive_fd, const std::string& shown_src) {
    ReadArchive reader;
    open_tar(reader, archive_fd, shown_src);
    std::map<std::string, std::string> hashes;
    static const std::vector<char> zeros(1 << 16);
    while (true) {
        struct archive_entry* entry = nullptr;
        int rc = libarchive().archive_read_next_header(reader.a, &entry);
        if (rc == ARCHIVE_EOF) break;
        if (rc < ARCHIVE_WARN) throw Error("cannot read " + shown_src + ": " + libarchive().archive_error_string(reader.a));
        if (kind_of(entry) != ArchiveEntryKind::file) continue;
        const char* raw_path = libarchive().archive_entry_pathname(entry);
        ContentHasher hasher;
        std::uint64_t position = 0;
        auto zeros_to = [&](std::uint64_t end) {
            while (position < end) {
                std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(zeros.size(), end - position));
                hasher.update(zeros.data(), n);
                position += n;
            }
        };
        const void* block = nullptr;
        size_t size = 0;
        la_int64_t offset = 0;
        while ((rc = libarchive().archive_read_data_block(reader.a, &block, &size, &offset)) != ARCHIVE_EOF) {
            if (rc < ARCHIVE_WARN) throw Error("cannot read " + shown_src + ": " + libarchive().archive_error_string(reader.a));
            zeros_to(static_cast<std::uint64_t>(offset));
            hasher.update(block, size);
            position += size;
        }
        if (libarchive().archive_entry_size_is_set(entry)) zeros_to(static_cast<std::uint64_t>(libarchive().archive_entry_size(entry)));
        hashes[normalized(raw_path ? raw_path : "")] = hasher.hex();
    }
    return hashes;
}

void write_tree_archive(int tree_fd, const Manifest& manifest, int out_fd, const std::string& shown_tree) {
    const Libarchive& la = libarchive();
    struct Writer {
        struct archive* a;
        ~Writer() { libarchive().archive_write_free(a); }
    } writer{la.archive_write_new()};
    struct Entry {
        struct archive_entry* e;
        ~Entry() { libarchive().archive_entry_free(e); }
    } entry{la.archive_entry_new()};
    if (!writer.a || !entry.e) throw Error("cannot write a tar of " + shown_tree + ": out of memory");
    auto fail = [&](const std::string& what) {
        throw Error("cannot write a tar of " + shown_tree + " (" + what + "): " + la.archive_error_string(writer.a));
    };
    if (la.archive_write_set_format_pax(writer.a) != ARCHIVE_OK || la.archive_write_open_fd(writer.a, out_fd) != ARCHIVE_OK)
        fail("open");
    std::vector<char> buffer(1 << 20);
    for (const ManifestEntry& m : manifest.entries) {
        if (m.path == ".") continue;
        struct archive_entry* e = la.archive_entry_clear(entry.e);
        la.archive_entry_set_pathname(e, m.path.c_str());
        la.archive_entry_set_filetype(e, m.type == EntryType::directory ? AE_IFDIR : m.type == EntryType::symlink ? AE_IFLNK : AE_IFREG);
        la.archive_entry_set_perm(e, m.mode);
        la.archive_entry_set_size(e, m.type == EntryType::file ? static_cast<la_int64_t>(m.size) : 0);
        la.archive_entry_set_mtime(e, static_cast<time_t>(m.mtime.sec), static_cast<long>(m.mtime.nsec));
        la.archive_entry_set_symlink(e, m.type == EntryType::symlink ? m.target.c_str() : nullptr);
        if (la.archive_write_header(writer.a, e) != ARCHIVE_OK) fail(m.path);
        if (m.type == EntryType::file) {
            UniqueFd file(::openat(tree_fd, m.path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
            if (!file) throw_errno("cannot open " + join_path(shown_tree, m.path));
            std::uint64_t left = m.size;
            while (left > 0) {
                ssize_t n = ::read(file.get(), buffer.data(), static_cast<std::size_t>(std::min<std::uint64_t>(left, buffer.size())));
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) throw Error(join_path(shown_tree, m.path) + " is shorter than its manifest says");
                if (la.archive_write_data(writer.a, buffer.data(), static_cast<std::size_t>(n)) != n) fail(m.path);
                left -= static_cast<std::uint64_t>(n);
            }
        }
        if (la.archive_write_finish_entry(writer.a) < ARCHIVE_WARN) fail(m.path);
    }
    if (la.archive_write_close(writer.a) != ARCHIVE_OK) fail("close");
}

}  // namespace aihpc::stage
