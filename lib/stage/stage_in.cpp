#include "stage/stage_in.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <cinttypes>
#include <cstdio>
#include <map>

#include "common/error.hpp"
#include "common/json.hpp"
#include "common/paths.hpp"
#include "common/text.hpp"
#include "stage/archive.hpp"
#include "stage/fs.hpp"
#include "stage/source.hpp"
#include "stage/squashfs_mount.hpp"
#include "stage/tree_flush.hpp"

namespace aihpc::stage {

const char* to_string(StageOutcome outcome) {
    switch (outcome) {
    case StageOutcome::hit: return "hit";
    case StageOutcome::miss: return "miss";
    case StageOutcome::private_copy: return "private";
    case StageOutcome::deferred: return "shared-wanted";
    }
    return "?";
}

namespace {

// The scan is also the warm hit's staleness check: it runs with the copy's concurrency,
// and tells the copy how many workers the source's latency needs.
Manifest scan_source(const OpenSource& source, IoPool& pool, SourceOps* ops, ScanReport* report) {
    if (source.kind == SourceKind::tree) {
        ScanOptions options;
        options.pool = &pool;
        options.ops = ops;
        return scan_tree(source.fd.get(), source.realpath, options, report);
    }
    return scan_file(source.fd.get(), source.realpath);
}

// The item as it must look after staging, from the data written.
Manifest produce_data(const OpenSource& source, Manifest&& source_manifest, int parent_fd, const std::string& name,
                      const std::string& shown_dst, const std::string& shown_item, const StageSettings& settings,
                      bool read_only, std::uint64_t room,
                      std::uint64_t* bytes, std::uint64_t* files, SourceOps* ops, IoPool& pool, unsigned* workers) {
    Manifest written;
    CopyOptions options;
    options.threads = settings.threads;
    options.pool = &pool;
    options.ops = ops;
    options.read_only = read_only;
    options.hash = settings.verify;
    options.progress = settings.progress;
    if (source.kind == SourceKind::archive) {
        ExtractLimits limits;
        limits.max_bytes = room ? room : 1;
        if (read_only) limits.max_cache_inodes = settings.limits.max_inodes;
        // Named as the item it becomes: where it is extracted first is aihpc's business.
        ExtractResult extracted = extract_archive(source.fd.get(), parent_fd, name, read_only, settings.verify,
                                                  settings.progress, source.realpath, shown_item, limits);
        written = std::move(extracted.manifest);
    } else {
        if (source_manifest.byte_count() > room)
            // Said as ENOSPC is, so the advice for a full disk follows (with_advice).
            throw Error(source.realpath + " holds " + std::to_string(source_manifest.byte_count()) + " bytes and only " +
                        std::to_string(room) + " are left for it in " + dirname_of(shown_dst) +
                        ", so nothing was copied: No space left on device");
        // The data directory itself is one inode more.
        std::uint64_t inodes = source_manifest.entries.size() + 1;
        if (read_only && settings.limits.max_inodes && inodes > *settings.limits.max_inodes)
            throw Error(source.realpath + " holds " + std::to_string(inodes) + " files and directories, and this user's node "
                        "cache may hold only " + std::to_string(*settings.limits.max_inodes) +
                        " more under the site's cache_user_inodes cap" +
                        (settings.limits.inode_cap ? " of " + std::to_string(settings.limits.inode_cap) : std::string()) +
                        ", so nothing was copied; run aihpc-stage cache gc on this node, or use --aihpc-stage-mode=private");
        CopyStats copied = copy_item(source.fd.get(), source_manifest, parent_fd, name, options, source.realpath, shown_dst);
        *workers = std::max(*workers, copied.workers);
        written = std::move(source_manifest);
    }
    *bytes = written.byte_count();
    *files = written.file_count();
    return written;
}


// The hashes a staged item must match when no stored manifest has them: taken from the
// source itself.
Manifest expected_with_hashes(const OpenSource& source, const Manifest& staged, unsigned threads) {
    Manifest expected = staged;
    if (source.kind == SourceKind::archive) {
        std::map<std::string, std::string> hashes = archive_content_hashes(source.fd.get(), source.realpath);
        for (ManifestEntry& e : expected.entries)
            if (e.type == EntryType::file) {
                auto it = hashes.find(e.path);
                if (it != hashes.end()) e.content_hash = it->second;
            }
    } else {
        hash_contents(source.fd.get(), expected, threads, source.realpath);
    }
    return expected;
}

// DIR/NAME appears in one step: a symlink made aside, then renamed over the name.
void publish_link(int dir_fd, const std::string& name, const std::string& target, const std::string& shown) {
    struct stat st {};
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISLNK(st.st_mode))
        throw Error(shown + " already exists and is not a staged item; remove it or stage under another NAME");
    std::string temp = "." + name + ".aihpc-link." + unique_suffix();
    if (::symlinkat(target.c_str(), dir_fd, temp.c_str()) != 0) throw_errno("cannot create " + join_path(dirname_of(shown), temp));
    if (::renameat(dir_fd, temp.c_str(), dir_fd, name.c_str()) != 0) {
        int err = errno;
        ::unlinkat(dir_fd, temp.c_str(), 0);
        throw SystemError("cannot publish " + shown, err);
    }
}

UniqueFd open_to_dir(const std::string& dir) {
    make_directories(dir, 0700, "the stage directory");
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) throw_errno("cannot open the stage directory " + dir);
    return UniqueFd(fd);
}

std::string with_advice(const std::string& message, const std::string& place) {
    if (message.find("No space left on device") != std::string::npos || message.find("Disk quota exceeded") != std::string::npos)
        return message + " (in " + place + "); ask for a node with more local disk, stage less, or lower what the job stages";
    return message;
}

}  // namespace

std::string staged_item_json(const StagedItem& item) {
    char numbers[160];
    std::snprintf(numbers, sizeof numbers, "\"files\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"seconds\": %.6f", item.files,
                  item.bytes, item.seconds);
    double seconds = item.seconds > 0 ? item.seconds : 1e-9;
    char io[400];
    std::snprintf(io, sizeof io,
                  "\"workers\": %u, \"peak_in_flight\": %" PRIu64 ", \"source_ops\": %" PRIu64
                  ", \"round_trips_per_file\": %.2f, \"op_latency_us\": %.1f, \"bytes_per_second\": %.0f"
                  ", \"files_per_second\": %.0f",
                  item.workers, item.peak_in_flight, item.source_ops,
                  static_cast<double>(item.source_ops) / static_cast<double>(std::max<std::uint64_t>(item.files, 1)),
                  static_cast<double>(item.op_latency_ns) / 1000.0, static_cast<double>(item.bytes) / seconds,
                  static_cast<double>(item.files) / seconds);
    return "{\"src\": " + json_quote(item.src) + ", \"name\": " + json_quote(item.name) + ", \"path\": " +
           json_quote(item.path) + ", " + numbers + ", \"cache\": " + json_quote(to_string(item.outcome)) +
           ", \"manifest_hash\": " + json_quote(item.manifest_hash) + ", " + io + "}";
}

void verify_item(int data_fd, const Manifest& expected, bool read_only_entry, unsigned threads, const std::string& shown) {
    bool lone = expected.entries.size() == 1 && expected.entries[0].path == ".";
    Manifest actual = lone ? scan_file(data_fd, shown) : scan_tree(data_fd, shown);
    hash_contents(data_fd, actual, threads, shown);
    std::vector<std::string> problems;
    std::map<std::string, const ManifestEntry*> have;
    for (const ManifestEntry& e : actual.entries) have[e.path] = &e;
    for (const ManifestEntry& e : expected.entries) {
        auto it = have.find(e.path);
        if (it == have.end()) {
            problems.push_back(e.path + " is missing");
            continue;
        }
        const ManifestEntry& a = *it->second;
        if (a.type != e.type || a.size != e.size || a.target != e.target)
            problems.push_back(e.path + " differs in type or size");
        else if (e.type == EntryType::file && e.content_hash && a.content_hash && *e.content_hash != *a.content_hash)
            problems.push_back(e.path + " has other content");
        else if (e.type != EntryType::symlink && a.mode != staged_mode(e.type, e.mode, read_only_entry))
            problems.push_back(e.path + " has another mode");
        have.erase(it);
    }
    for (const auto& [path, entry] : have) problems.push_back(path + " is not in the manifest");
    if (!problems.empty()) {
        std::vector<std::string> shown_problems(problems.begin(), problems.begin() + std::min<std::size_t>(problems.size(), 5));
        throw Error("verification of " + shown + " failed: " + join(shown_problems, "; ") +
                    (problems.size() > 5 ? " (and " + std::to_string(problems.size() - 5) + " more)" : "") +
                    "; the data was not used");
    }
}

void check_source_unchanged(const OpenSource& source, const std::string& freshness_hash) {
    if (source.kind != SourceKind::archive) return;
    if (scan_file(source.fd.get(), source.realpath).freshness_hash() != freshness_hash)
        throw Error("stage source " + source.realpath +
                    " changed while it was being extracted (its size, mtime, ctime or inode moved), so what was read of it "
                    "may mix two versions and nothing of it was kept; stage it again once nothing writes to it");
}

namespace {

// How long a reader waits for a shared entry's lease before its own cache serves it: an
// entry's directory is locked exclusively only by an evictor, for as long as a rename.
constexpr std::chrono::milliseconds shared_lease_wait{5000};

// The room for a private copy of `bytes`: the user's share of the node's local disk, which
// their cache and job dirs share (making room in the cache by evicting the user's own
// entries that no job uses), promised under the book's lock like a cache entry. No
// limits (a node without cache_max): the file system's free space alone.
std::uint64_t private_copy_room(const StageSettings& settings, std::uint64_t bytes, int to_dir_fd, const std::string& src) {
    std::uint64_t free_bytes = free_space(to_dir_fd);
    if (!settings.cache_dir || settings.limits.max_bytes == 0) return free_bytes;
    NodeCache cache(*settings.cache_dir, settings.limits);
    cache.set_promises(settings.promises);
    cache.set_lock_wait(settings.lock_wait);
    try {
        return std::min(cache.make_room(bytes), free_bytes);
    } catch (const Error& e) {
        throw Error("stage-in of " + src + " failed: a private copy of " + std::to_string(bytes) +
                    " bytes does not fit this user's room on the node: " + e.what());
    }
}

// Checks a cache hit against its source. The source is hashed now, never trusted from
// the hashes stored when the entry was made: a file rewritten in place with its old size
// and times must fail here. One pass over the source, one over the copy.
void verify_cache_hit(NodeCache& cache, const std::string& key, const OpenSource& source, const std::string& src,
                      const std::string& data_path, unsigned threads) {
    std::optional<Manifest> stored = cache.stored_manifest(key);
    if (!stored) throw Error("stage-in of " + src + " failed: the cache entry " + cache.entry_path(key) + " has no manifest; run aihpc-stage cache gc");
    Manifest expected = expected_with_hashes(source, *stored, threads);
    UniqueFd data(::open(data_path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!data) throw_errno("cannot open " + data_path);
    try {
        verify_item(data.get(), expected, true, threads, data_path);
    } catch (const Error& e) {
        throw Error("stage-in of " + src + " failed: the source no longer matches its cached copy (" + e.what() +
                    "); it was changed without changing its size or times. Touch the changed files, or run "
                    "aihpc-stage cache gc, then stage again");
    }
}

// What DIR/NAME links to: a relative path, so that bound into a container together with
// the cache (one common parent, such as the node's local_root) it still resolves there.
std::string link_target(const std::string& to_dir, const std::string& data_path) {
    std::filesystem::path link_dir = std::filesystem::absolute(to_dir).lexically_normal();
    std::filesystem::path data = std::filesystem::absolute(data_path).lexically_normal();
    std::filesystem::path target = data.lexically_relative(link_dir);
    return target.empty() ? data.string() : target.string();
}

// One stage-in's source and what was learnt of it, shared by its two branches.
struct StageRun {
    StageRun(OpenSource opened, unsigned workers, unsigned cap) : source(std::move(opened)), pool(workers, cap) {}
    OpenSource source;
    IoPool pool;
    SourceOps ops;
    Manifest manifest;
    std::string freshness;
    UniqueFd to_dir;
    bool image = false;
    std::optional<OpenSource> received;  // what a peer sent, when a miss used it
    std::optional<Manifest> expected_tree;  // the source tree's scan, when a tar of it came
};

std::string src_of(const StageRun& run) { return run.source.given; }

// Whether an extracted tree is the scanned one: the same names, types, sizes, link
// targets and mtimes (modes are the cache's own once extracted read-only).
bool same_tree(const Manifest& extracted, const Manifest& scanned) {
    std::map<std::string, const ManifestEntry*> by_path;
    for (const ManifestEntry& e : extracted.entries)
        if (e.path != ".") by_path[e.path] = &e;
    std::size_t matched = 0;
    for (const ManifestEntry& e : scanned.entries) {
        if (e.path == ".") continue;
        auto it = by_path.find(e.path);
        if (it == by_path.end()) return false;
        const ManifestEntry& x = *it->second;
        if (x.type != e.type || x.size != e.size || x.target != e.target || (e.type != EntryType::directory && !(x.mtime == e.mtime)))
            return false;
        ++matched;
    }
    return matched == by_path.size();
}


// The archive copied whole, then opened for the extraction: one read of the source.
const OpenSource& copied_archive(StageRun& run, const StageSettings& settings, StagedItem& item, Manifest& manifest) {
    const std::string& path = settings.archive_copy_path;
    UniqueFd dir = open_dir(dirname_of(path));
    ::unlinkat(dir.get(), basename_of(path).c_str(), 0);
    CopyOptions options;
    options.threads = settings.threads;
    options.pool = &run.pool;
    options.ops = &run.ops;
    Manifest copy = manifest;
    copy_item(run.source.fd.get(), copy, dir.get(), basename_of(path), options, run.source.realpath, path);
    item.archive_copy = path;
    UniqueFd fd(::openat(dir.get(), basename_of(path).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) throw_errno("cannot open " + path);
    for (ManifestEntry& e : manifest.entries) e.ctime_ns = 0, e.inode = 0;
    run.received = OpenSource{run.source.given, run.source.realpath, run.source.kind, std::move(fd)};
    return *run.received;
}

// What a miss copies from: what a peer sent (fanout.hpp) when it arrived whole, else the
// source. The received file is checked against the source's manifest as the source
// would be, but for its ctime and inode, which are its own.
const OpenSource& data_for_miss(StageRun& run, const StageSettings& settings, StagedItem& item, Manifest& manifest) {
    if (run.source.kind == SourceKind::archive && !settings.archive_copy_path.empty())
        return copied_archive(run, settings, item, manifest);
    if (!settings.peer) return run.source;
    std::string why;
    std::optional<UniqueFd> got = settings.peer->receive(manifest, &why);
    if (!got) {
        item.via = why;
        return run.source;
    }
    item.via = "received";
    if (run.source.kind == SourceKind::tree) {
        // A tree travels as a tar: extracted, then compared with the source's scan.
        run.received = OpenSource{run.source.given, run.source.realpath, SourceKind::archive, std::move(*got)};
        run.expected_tree = manifest;
        return *run.received;
    }
    // Checked whole against what node 0 sent (size and xxh3); its mode and times are
    // those of node 0's copy, which the copy here must not take for a change.
    struct stat st {};
    if (::fstat(got->get(), &st) != 0) throw_errno("cannot stat what " + src_of(run) + "'s peer sent");
    for (ManifestEntry& e : manifest.entries) {
        e.ctime_ns = 0, e.inode = 0;
        e.mode = st.st_mode & 07777;
        e.mtime = FileTime::of(st.st_mtim);
    }
    run.received = OpenSource{run.source.given, run.source.realpath, run.source.kind, std::move(*got)};
    return *run.received;
}

// What the hidden name beside an image's mount point showed before this stage: the
// link's target for a cached image, "private" for a private copy, else nothing.
std::string image_previously_at(int to_dir_fd, const std::string& data_name) {
    struct stat st {};
    if (::fstatat(to_dir_fd, data_name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return {};
    if (S_ISREG(st.st_mode)) return "private";
    char target[4096];
    ssize_t n = ::readlinkat(to_dir_fd, data_name.c_str(), target, sizeof target - 1);
    return n > 0 ? std::string(target, static_cast<std::size_t>(n)) : std::string();
}

// The private branch: a writable copy at DIR/data_name for this job alone. An image's
// private copy is read-only through its mount, so a later step of the job reuses it.
void stage_privately(const std::string& src, const std::string& data_name, const StageSettings& settings,
                     StageRun& run, StagedItem& item) {
    if (run.image && image_previously_at(run.to_dir.get(), data_name) == "private") {
        item.outcome = StageOutcome::private_copy;
        item.data_path = join_path(settings.to_dir, data_name);
        item.bytes = run.manifest.byte_count();
        item.files = 1;
        return;
    }
    std::string temp = "." + data_name + ".aihpc-tmp." + unique_suffix();
    std::string temp_path = join_path(settings.to_dir, temp);
    std::uint64_t room = private_copy_room(settings, run.manifest.byte_count(), run.to_dir.get(), src);
    TemporaryTree copy(run.to_dir.get(), temp);
    Manifest written;
    try {
        const OpenSource& data = data_for_miss(run, settings, item, run.manifest);
        written = produce_data(data, std::move(run.manifest), run.to_dir.get(), temp, temp_path, item.path, settings,
                               false, room, &item.bytes, &item.files, &run.ops, run.pool, &item.workers);
        check_source_unchanged(run.source, run.freshness);
        if (settings.verify) {
            UniqueFd data(::openat(run.to_dir.get(), temp.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
            if (!data) throw_errno("cannot open " + temp_path);
            verify_item(data.get(), written, false, settings.threads, item.path);
        }
        if (run.image) check_image_entries(temp_path, src);
    } catch (const Error& e) {
        throw Error("stage-in of " + src + " failed: " + with_advice(e.what(), settings.to_dir));
    }
    if (::renameat2(run.to_dir.get(), temp.c_str(), run.to_dir.get(), data_name.c_str(), RENAME_NOREPLACE) != 0) {
        if (errno == EEXIST || errno == ENOTEMPTY)
            throw Error("stage-in of " + src + " failed: " + item.path + " already exists; remove it or choose another NAME");
        throw_errno("cannot publish " + item.path);
    }
    copy.keep();
    item.outcome = StageOutcome::private_copy;
    item.data_path = join_path(settings.to_dir, data_name);
}

// The shared cache's branch: a hit there is leased and linked; false when it holds no
// entry for the source (or no shared cache is there yet), or when its entry stays
// locked: the user's own cache serves then.
bool stage_from_shared(const std::string& src, const std::string& data_name, const StageSettings& settings,
                       StageRun& run, StagedItem& item) {
    std::optional<NodeCache> shared;
    try {
        shared.emplace(settings.shared_dir, CacheLimits{}, CacheAccess::shared_reader);
    } catch (const Error&) {
        return false;  // no shared cache on this node yet
    }
    shared->set_lock_wait(std::min<std::chrono::milliseconds>(settings.lock_wait, shared_lease_wait));
    std::string key = shared_cache_key(run.source.realpath, run.source.kind, run.freshness);
    std::optional<Lease> lease = shared->lease(key);
    if (!lease) return false;
    std::optional<CacheEntryInfo> totals = shared->stored_info(key);
    if (!totals) return false;
    item.key = key;
    item.cache = "shared";
    item.outcome = StageOutcome::hit;
    item.data_path = join_path(shared->entry_path(key), "data");
    item.bytes = totals->bytes;
    item.files = totals->files;
    if (settings.verify) verify_cache_hit(*shared, key, run.source, src, item.data_path, settings.threads);
    item.lease = std::move(*lease);
    publish_link(run.to_dir.get(), data_name, link_target(settings.to_dir, item.data_path), join_path(settings.to_dir, data_name));
    return true;
}

// Whether the user's own cache has the source published (a hit unless it is evicted
// before it is leased, which costs a copy, never a wrong answer).
bool user_cache_holds(const StageSettings& settings, const StageRun& run) {
    if (!settings.cache_dir) return false;
    NodeCache cache(*settings.cache_dir, settings.limits);
    return cache.stored_info(cache_key(settings.uid, run.source.realpath, run.source.kind, run.freshness)).has_value();
}

// The cache branch: the shared cache's entry, or the user's (a hit, or a copy published
// whole), leased, and linked from DIR/data_name.
void stage_through_cache(const std::string& src, const std::string& data_name, const StageSettings& settings,
                         StageRun& run, StagedItem& item) {
    if (!settings.shared_dir.empty() && stage_from_shared(src, data_name, settings, run, item)) return;
    // A source the user's own cache already holds is a hit there: deferring it would cost
    // every later step of a private dataset a second pass and a read as shared_user that
    // cannot succeed.
    if (settings.shared_defer && !user_cache_holds(settings, run)) {
        item.outcome = StageOutcome::deferred;
        item.key = shared_cache_key(run.source.realpath, run.source.kind, run.freshness);
        return;
    }
    if (!settings.cache_dir) throw Error("stage-in of " + src + " in cache mode needs a cache directory");
    item.cache = "user";
    NodeCache cache(*settings.cache_dir, settings.limits);
    cache.set_promises(settings.promises);
    cache.set_lock_wait(settings.lock_wait);
    cache.set_sync_threads(std::max(settings.threads, fsync_threads));
    cache.set_flush_to_disk(settings.flush_cache_entries);
    // Keyed by the freshness hash: a source changed with its size and mtime put
    // back, or swapped for a copy, has another ctime or inode and is staged anew.
    const OpenSource& source = run.source;
    item.key = cache_key(settings.uid, source.realpath, source.kind, run.freshness);
    std::vector<std::string> info = {"src=" + src, "realpath=" + source.realpath,
                                      std::string("kind=") + to_string(source.kind), "manifest_hash=" + item.manifest_hash};
    Obtained got;
    try {
        SizedProducer produce = [&](int entry_fd, const std::string& entry_path, std::uint64_t room) {
            const OpenSource& data = data_for_miss(run, settings, item, run.manifest);
            Manifest written = produce_data(data, std::move(run.manifest), entry_fd, "data", join_path(entry_path, "data"),
                                            item.path, settings, true, room, &item.bytes, &item.files, &run.ops, run.pool,
                                            &item.workers);
            if (run.expected_tree && !same_tree(written, *run.expected_tree)) {
                // Not the source's tree after all: read the source itself.
                remove_tree_at(entry_fd, "data");
                item.via = "the tree that arrived differs from the source's";
                written = produce_data(source, Manifest(*run.expected_tree), entry_fd, "data", join_path(entry_path, "data"),
                                       item.path, settings, true, room, &item.bytes, &item.files, &run.ops, run.pool,
                                       &item.workers);
            }
            check_source_unchanged(source, run.freshness);
            if (settings.verify) {
                UniqueFd data(::openat(entry_fd, "data", O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
                if (!data) throw_errno("cannot open " + join_path(entry_path, "data"));
                verify_item(data.get(), written, true, settings.threads, item.path);
            }
            // An image is listed whole once, as it enters the cache; a hit reuses that look.
            if (run.image) check_image_entries(join_path(entry_path, "data"), src);
            return written;
        };
        std::uint64_t bytes = run.manifest.byte_count();
        got = cache.obtain(item.key, bytes, info, produce);
    } catch (const Error& e) {
        throw Error("stage-in of " + src + " failed: " + with_advice(e.what(), *settings.cache_dir));
    }
    item.outcome = got.hit ? StageOutcome::hit : StageOutcome::miss;
    item.data_path = got.data_path;
    if (got.hit) {
        // The totals come from the entry's small info file: a hit must not cost a
        // parse of the whole stored manifest, which only verification needs.
        std::optional<CacheEntryInfo> totals = cache.stored_info(item.key);
        if (!totals) throw Error("stage-in of " + src + " failed: the cache entry " + cache.entry_path(item.key) + " has no info file; run aihpc-stage cache gc");
        item.bytes = totals->bytes;
        item.files = totals->files;
        if (settings.verify) verify_cache_hit(cache, item.key, source, src, got.data_path, settings.threads);
    }
    item.lease = std::move(got.lease);
    publish_link(run.to_dir.get(), data_name, link_target(settings.to_dir, item.data_path), join_path(settings.to_dir, data_name));
}

}  // namespace

SourceVersion source_version(const std::string& src, const std::string& base_dir, const std::vector<std::string>& allow,
                             unsigned threads) {
    unsigned cap = std::max(1u, threads);
    StageRun run(open_source(src, base_dir, allow), std::min(usable_cpus(), cap), cap);
    Manifest manifest = scan_source(run.source, run.pool, &run.ops, nullptr);
    return {run.source.realpath, run.source.kind, manifest.metadata_hash()};
}

StagedItem stage_in(const std::string& src, const std::string& name, const StageSettings& settings) {
    auto started = std::chrono::steady_clock::now();
    StagedItem item;
    item.src = src;
    item.name = name;
    item.path = join_path(settings.to_dir, name);

    // One pool of workers for the scan and the copy: what the scan learnt of the
    // source's latency sizes the copy from its first file, and no worker starts twice.
    unsigned cap = std::max(1u, settings.threads);
    StageRun run(open_source(src, settings.base_dir, settings.allow), std::min(usable_cpus(), cap), cap);
    item.realpath = run.source.realpath;
    run.image = run.source.kind == SourceKind::squashfs;
    item.kind = run.source.kind;
    ScanReport scanned;
    run.manifest = scan_source(run.source, run.pool, &run.ops, &scanned);
    item.manifest_hash = run.manifest.metadata_hash();
    run.freshness = run.manifest.freshness_hash();
    item.freshness = run.freshness;
    item.workers = scanned.workers;
    item.op_latency_ns = scanned.median_latency_ns;
    run.to_dir = open_to_dir(settings.to_dir);

    // An image is kept beside its mount point, under a hidden name; DIR/NAME is the mount.
    const std::string data_name = run.image ? image_link_name(name) : name;
    const std::string previous = run.image ? image_previously_at(run.to_dir.get(), data_name) : std::string();
    if (settings.private_mode)
        stage_privately(src, data_name, settings, run, item);
    else
        stage_through_cache(src, data_name, settings, run, item);
    if (run.image && item.outcome != StageOutcome::deferred) {
        try {
            std::string now = image_previously_at(run.to_dir.get(), data_name);
            ImageMount state = settings.mount_by_root
                                   ? image_mount_needed(run.to_dir.get(), settings.to_dir, name, now, previous)
                                   : mount_image(run.to_dir.get(), settings.to_dir, name, now, previous);
            item.mount = to_string(state);
        } catch (const Error& e) {
            throw Error("stage-in of " + src + " failed: " + e.what());
        }
    }
    item.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    item.op_latency_ns = run.pool.median_latency_ns();
    item.workers = std::max(item.workers, run.pool.workers());
    item.source_ops = run.ops.ops.load();
    item.peak_in_flight = run.ops.peak_in_flight.load();
    return item;
}

void write_staged_tree_tar(const StageSettings& settings, const StagedItem& item, const std::string& path) {
    if (!settings.cache_dir || item.key.empty()) throw Error("only a tree in the node cache is sent on as a tar");
    NodeCache cache(*settings.cache_dir, settings.limits);
    std::optional<Manifest> manifest = cache.stored_manifest(item.key);
    if (!manifest) throw Error("the cache entry " + cache.entry_path(item.key) + " has no manifest; run aihpc-stage cache gc");
    UniqueFd tree(::open(item.data_path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!tree) throw_errno("cannot open " + item.data_path);
    UniqueFd out(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!out) throw_errno("cannot create " + path);
    write_tree_archive(tree.get(), *manifest, out.get(), item.data_path);
}

}  // namespace aihpc::stage
