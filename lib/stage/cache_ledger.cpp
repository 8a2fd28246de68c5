#include "stage/cache_ledger.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <ctime>
#include <map>
#include <optional>
#include <set>
#include <tuple>

#include "common/error.hpp"
#include "common/saturating.hpp"
#include "common/text.hpp"
#include "stage/fs.hpp"
#include "stage/manifest.hpp"
#include "stage/node_layout.hpp"

namespace aihpc::stage {

namespace {

constexpr const char* ledger_name = "ledger";
// 2: each inode counted once, and counted. A ledger of an older form is measured anew.
constexpr const char* ledger_header = "aihpc-cache-ledger 2";
// Deep enough for any real tree; what lies deeper is not walked (and the measure says so).
constexpr int measure_depth_max = 512;


std::uint64_t occupied(const struct stat& st) {
    return static_cast<std::uint64_t>(st.st_blocks < 0 ? 0 : st.st_blocks) * 512;
}

std::int64_t ctime_ns(const struct stat& st) {
    return static_cast<std::int64_t>(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec;
}

// Adds one name to a measure: its blocks and its inode, unless a file with several names
// was already counted under another.
void count_name(const struct stat& st, SeenInodes& seen, TreeMeasure& m) {
    ++m.entries;
    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
        m.linked = true;
        if (!seen.insert({static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)}).second) return;
    }
    ++m.inodes;
    m.bytes = saturating_add(m.bytes, occupied(st));
}

void measure_children(int dir_fd, dev_t device, std::uint64_t* budget, int depth, SeenInodes& seen, TreeMeasure& m) {
    UniqueFd listing(::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!listing) return;
    try {
        DirectoryNames names(listing.get(), "a cache dir being measured");
        for (std::size_t i = 0; i < names.size(); ++i) {
            if (*budget == 0) {
                m.complete = false;
                return;
            }
            --*budget;
            struct stat st {};
            if (::fstatat(dir_fd, names.c_str(i), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
            count_name(st, seen, m);
            if (!S_ISDIR(st.st_mode) || st.st_dev != device) continue;
            if (depth >= measure_depth_max) {
                m.complete = false;
                continue;
            }
            UniqueFd child(::openat(dir_fd, names.c_str(i), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
            struct stat opened {};
            if (!child || ::fstat(child.get(), &opened) != 0 || opened.st_ino != st.st_ino || opened.st_dev != st.st_dev) continue;
            measure_children(child.get(), device, budget, depth + 1, seen, m);
        }
    } catch (const Error&) {
        m.complete = false;
    }
}

struct JobDir {
    std::string name;  // jobs/<jobid> (the stage dir) or jobs/<jobid>.aihpc (its meta dir)
    uid_t uid = 0;
};

// jobs/ is root's: root made each job's dirs there for its user (user_dir_at), so a
// dir's owner is the job's user, which no user can change.
std::vector<JobDir> job_dirs_at(int jobs_fd) {
    std::vector<JobDir> dirs;
    UniqueFd listing(::openat(jobs_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!listing) return dirs;
    DirectoryNames names(listing.get(), "the job dirs");
    for (std::size_t i = 0; i < names.size(); ++i) {
        std::string_view name = names[i];
        std::string_view id = name.ends_with(".aihpc") ? name.substr(0, name.size() - 6) : name;
        std::optional<std::uint64_t> job = parse_uint(id);
        if (!job || *job == 0 || *job > UINT32_MAX || std::to_string(*job) != id) continue;
        struct stat st {};
        if (::fstatat(jobs_fd, names.c_str(i), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode)) continue;
        dirs.push_back({std::string(name), st.st_uid});
    }
    return dirs;
}

// The records of one refresh, with last time's measures to reuse.
struct Refresh {
    std::map<std::tuple<uid_t, char, std::string>, LedgerRecord> previous;
    std::vector<LedgerRecord> records;
    std::uint64_t budget = ledger_walk_budget;
    std::int64_t now = ::time(nullptr);
    // Files with several names already counted in the user being measured.
    SeenInodes seen;

    explicit Refresh(const CacheLedger& old) {
        for (const LedgerRecord& r : old.records) previous[{r.uid, static_cast<char>(r.kind), r.name}] = r;
    }

    // Measures parent_fd/name as a record, reusing last time's measure when `reusable` and
    // the entry is the same inode with the same ctime, measured recently and in full.
    void measure(uid_t uid, LedgerRecord::Kind kind, int parent_fd, const std::string& name, bool reusable) {
        struct stat st {};
        if (::fstatat(parent_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return;
        LedgerRecord r;
        r.uid = uid;
        r.kind = kind;
        r.name = name;
        r.dev = st.st_dev;
        r.ino = st.st_ino;
        r.ctime_ns = ctime_ns(st);
        auto old = previous.find({uid, static_cast<char>(kind), name});
        // A measure holding a file with several names is never reused: its other names may
        // have moved, and the inode must be known to `seen` to count once.
        if (reusable && old != previous.end() && old->second.complete && !old->second.linked && old->second.dev == r.dev &&
            old->second.ino == r.ino && old->second.ctime_ns == r.ctime_ns &&
            now - old->second.measured_at < ledger_remeasure_after.count() && old->second.measured_at <= now) {
            records.push_back(old->second);
            return;
        }
        TreeMeasure m = measure_tree_at(parent_fd, name, &budget, &seen);
        r.bytes = m.bytes;
        r.inodes = m.inodes;
        r.linked = m.linked;
        r.complete = m.complete;
        r.measured_at = now;
        // An incomplete walk never counts less than the last full one of the same entry.
        if (!m.complete && old != previous.end() && old->second.ino == r.ino) {
            r.bytes = std::max(r.bytes, old->second.bytes);
            r.inodes = std::max(r.inodes, old->second.inodes);
        }
        records.push_back(std::move(r));
    }

    // A user's cache dir: each entry of entries/ on its own, the rest whole.
    void measure_user(uid_t uid, int user_fd) {
        seen.clear();
        UniqueFd entries(::openat(user_fd, "entries", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
        TreeMeasure rest;
        struct stat self {};
        if (::fstat(user_fd, &self) != 0) return;
        rest.bytes = occupied(self);
        rest.inodes = 1;
        UniqueFd listing(::openat(user_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (listing) {
            try {
                DirectoryNames names(listing.get(), "a user's cache");
                for (std::size_t i = 0; i < names.size(); ++i) {
                    if (entries && names[i] == "entries") continue;
                    TreeMeasure m = measure_tree_at(user_fd, names.c_str(i), &budget, &seen);
                    rest.bytes = saturating_add(rest.bytes, m.bytes);
                    rest.inodes = saturating_add(rest.inodes, m.inodes);
                    rest.linked = rest.linked || m.linked;
                    rest.complete = rest.complete && m.complete;
                }
            } catch (const Error&) {
                rest.complete = false;
            }
        }
        if (entries) {
            struct stat st {};
            if (::fstat(entries.get(), &st) == 0) {
                rest.bytes = saturating_add(rest.bytes, occupied(st));
                rest.inodes = saturating_add(rest.inodes, 1);
            }
            UniqueFd entry_listing(::openat(entries.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
            if (entry_listing) {
                try {
                    DirectoryNames names(entry_listing.get(), "a user's cache entries");
                    for (std::size_t i = 0; i < names.size(); ++i) {
                        std::string name(names[i]);
                        // Temporaries grow while their producer lives: always measured.
                        measure(uid, LedgerRecord::entry, entries.get(), name, !name.starts_with('.'));
                    }
                } catch (const Error&) {
                    rest.complete = false;
                }
            }
        }
        LedgerRecord r;
        r.uid = uid;
        r.kind = LedgerRecord::rest;
        r.name = ".";
        r.dev = self.st_dev;
        r.ino = self.st_ino;
        r.ctime_ns = ctime_ns(self);
        r.bytes = rest.bytes;
        r.inodes = rest.inodes;
        r.linked = rest.linked;
        r.complete = rest.complete;
        r.measured_at = now;
        records.push_back(std::move(r));
    }

    // The job dirs of every user, or of `only` that one: kept ones, and those of running
    // jobs (private copies, outputs waiting for their stage-out).
    void measure_job_dirs(int local_root_fd, std::optional<uid_t> only = std::nullopt) {
        UniqueFd jobs(::openat(local_root_fd, "jobs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!jobs) return;
        for (const JobDir& d : job_dirs_at(jobs.get())) {
            if (only && d.uid != *only) continue;
            seen.clear();
            measure(d.uid, LedgerRecord::job_dir, jobs.get(), d.name, true);
        }
    }
};

std::optional<uid_t> uid_name(std::string_view name) {
    auto n = parse_uint(name);
    if (!n || *n >= UINT32_MAX || std::to_string(*n) != name) return std::nullopt;
    return static_cast<uid_t>(*n);
}

// Root's lock on the ledger, so concurrent steps never lose each other's measures. The
// file is in root's cache/, so no user can hold it; the wait is bounded all the same.
UniqueFd lock_ledger(int cache_root_fd, const std::string& shown_path) {
    std::string shown = join_path(shown_path, "ledger.lock");
    UniqueFd lock = open_lock_file_at(cache_root_fd, "ledger.lock", true, shown);
    lock_with_deadline(lock.get(), LOCK_EX, std::chrono::seconds(60), shown);
    return lock;
}

// The local_root above the open cache/: root-private, or nothing (kept dirs then go uncounted).
UniqueFd local_root_above(int cache_root_fd) {
    UniqueFd root(::openat(cache_root_fd, "..", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    struct stat st {};
    if (!root || ::fstat(root.get(), &st) != 0 || !is_root_private(st)) return UniqueFd();
    return root;
}

void write_ledger(int cache_root_fd, const CacheLedger& ledger, const std::string& shown_path) {
    write_file_atomic_at(cache_root_fd, ledger_name, ledger.serialize(), 0600, join_path(shown_path, ledger_name));
}

void check_root_private(int cache_root_fd, const std::string& shown_path) {
    struct stat st {};
    if (::fstat(cache_root_fd, &st) != 0 || !is_root_private(st))
        throw Error(shown_path + " must be owned by root and writable by no one else; ask the administrators to fix it");
}

// What the user's own stager counts: the saturating sum of its entries' `bytes=`.
std::uint64_t claimed_bytes(int cache_root_fd, uid_t uid) {
    UniqueFd user(::openat(cache_root_fd, std::to_string(uid).c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    return user ? cache_bytes_at(user.get()) : 0;
}

// The producer's PID in a temporary's name, ".tmp.<key>.<pid>.<n>" (node_cache.cpp).
std::optional<pid_t> producer_of(std::string_view name) {
    if (!name.starts_with(".tmp.") || name.size() < 5 + 32 + 2) return std::nullopt;
    std::string_view rest = name.substr(5 + 32);
    if (rest.front() != '.') return std::nullopt;
    rest.remove_prefix(1);
    std::size_t dot = rest.find('.');
    if (dot == std::string_view::npos) return std::nullopt;
    auto pid = parse_uint(rest.substr(0, dot));
    if (!pid || *pid == 0 || *pid > 4194304) return std::nullopt;
    return static_cast<pid_t>(*pid);
}

}  // namespace

void remove_dead_temporaries(int user_fd, std::chrono::steady_clock::time_point deadline) {
    UniqueFd entries(::openat(user_fd, "entries", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!entries) return;
    UniqueFd listing(::openat(entries.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!listing) return;
    try {
        DirectoryNames names(listing.get(), "a user's cache entries");
        for (std::size_t i = 0; i < names.size(); ++i) {
            if (std::chrono::steady_clock::now() >= deadline) return;
            // Its producer's process is gone (the name says which); no lock file the user
            // controls is opened, so nothing here can block. A reused PID only keeps a
            // temporary until the next prepare after it ends.
            std::optional<pid_t> producer = producer_of(names[i]);
            bool dead = producer && ::kill(*producer, 0) != 0 && errno == ESRCH;
            if (!dead && !names[i].starts_with(".dead.")) continue;
            bool out_of_time = false;
            remove_tree_until(entries.get(), names.c_str(i), deadline, &out_of_time);
            if (out_of_time) return;
        }
    } catch (const Error&) {
        // An unreadable cache dir is measured as it is; the stager removes its own leftovers.
    }
}

TreeMeasure measure_tree_at(int parent_fd, const std::string& name, std::uint64_t* budget, SeenInodes* seen) {
    TreeMeasure m;
    SeenInodes own;
    SeenInodes& counted = seen ? *seen : own;
    if (*budget == 0) {
        m.complete = false;
        return m;
    }
    --*budget;
    struct stat st {};
    if (::fstatat(parent_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return m;
    count_name(st, counted, m);
    if (!S_ISDIR(st.st_mode)) return m;
    struct stat parent {};
    if (::fstat(parent_fd, &parent) != 0 || parent.st_dev != st.st_dev) return m;
    UniqueFd dir(::openat(parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    struct stat opened {};
    if (!dir || ::fstat(dir.get(), &opened) != 0 || opened.st_ino != st.st_ino) {
        m.complete = static_cast<bool>(dir);
        return m;
    }
    measure_children(dir.get(), st.st_dev, budget, 1, counted, m);
    return m;
}

std::string CacheLedger::serialize() const {
    std::string text = std::string(ledger_header) + "\n";
    char line[256];
    for (const LedgerRecord& r : records) {
        std::snprintf(line, sizeof line, "%c %u %" PRIu64 " %" PRIu64 " %" PRId64 " %" PRIu64 " %" PRIu64 " %d %" PRId64 " %d ",
                      static_cast<char>(r.kind), static_cast<unsigned>(r.uid), r.dev, r.ino, r.ctime_ns, r.bytes,
                      r.inodes, r.linked ? 1 : 0, r.measured_at, r.complete ? 1 : 0);
        text += line + escape_path(r.name) + "\n";
    }
    return text;
}

CacheLedger CacheLedger::parse(const std::string& text) {
    CacheLedger ledger;
    std::vector<std::string> lines = split(text, '\n');
    if (lines.empty() || lines[0] != ledger_header) return ledger;
    for (std::size_t i = 1; i < lines.size(); ++i) {
        std::vector<std::string> w = split(lines[i], ' ');
        if (w.size() != 11 || w[0].size() != 1) continue;
        char kind = w[0][0];
        if (kind != LedgerRecord::entry && kind != LedgerRecord::rest && kind != LedgerRecord::job_dir) continue;
        auto uid = parse_uint(w[1]);
        auto dev = parse_uint(w[2]);
        auto ino = parse_uint(w[3]);
        auto ctime = parse_uint(w[4]);
        auto bytes = parse_uint(w[5]);
        auto inodes = parse_uint(w[6]);
        auto at = parse_uint(w[8]);
        auto name = unescape_path(w[10]);
        if (!uid || *uid >= UINT32_MAX || !dev || !ino || !ctime || *ctime > INT64_MAX || !bytes || !inodes ||
            (w[7] != "0" && w[7] != "1") || !at || *at > INT64_MAX || (w[9] != "0" && w[9] != "1") || !name ||
            name->empty())
            continue;
        LedgerRecord r;
        r.kind = static_cast<LedgerRecord::Kind>(kind);
        r.uid = static_cast<uid_t>(*uid);
        r.dev = *dev;
        r.ino = *ino;
        r.ctime_ns = static_cast<std::int64_t>(*ctime);
        r.bytes = *bytes;
        r.inodes = *inodes;
        r.linked = w[7] == "1";
        r.measured_at = static_cast<std::int64_t>(*at);
        r.complete = w[9] == "1";
        r.name = *name;
        ledger.records.push_back(std::move(r));
    }
    return ledger;
}

std::uint64_t CacheLedger::user_bytes(uid_t uid) const {
    std::uint64_t total = 0;
    for (const LedgerRecord& r : records)
        if (r.uid == uid) total = saturating_add(total, r.bytes);
    return total;
}

std::uint64_t CacheLedger::user_inodes(uid_t uid) const {
    std::uint64_t total = 0;
    for (const LedgerRecord& r : records)
        if (r.uid == uid) total = saturating_add(total, r.inodes);
    return total;
}

std::uint64_t CacheLedger::other_users_bytes(uid_t uid) const {
    std::uint64_t total = 0;
    for (const LedgerRecord& r : records)
        if (r.uid != uid) total = saturating_add(total, r.bytes);
    return total;
}

CacheLimits plan_user_cache_limits(std::uint64_t cache_max, std::uint64_t cache_low, std::uint64_t cache_user_max,
                                   std::uint64_t own_measured, std::uint64_t own_claimed, std::uint64_t others_measured,
                                   const PromisedBytes& promised) {
    CacheLimits limits;
    if (cache_max == 0) return limits;  // no cap at all
    std::uint64_t share = cache_user_max == 0 ? cache_max : std::min(cache_user_max, cache_max);
    // Copies in flight count as held: the user's own against their share, everyone's
    // against cache_max.
    std::uint64_t others = saturating_add(others_measured, promised.others);
    std::uint64_t room = saturating_sub(cache_max, others);
    // cache_low as a share of cache_max, applied to the user's share; and never above the
    // node's own low mark less what others hold.
    std::uint64_t low_share = static_cast<std::uint64_t>(static_cast<long double>(share) *
                                                         static_cast<long double>(std::min(cache_low, cache_max)) /
                                                         static_cast<long double>(cache_max));
    std::uint64_t low_room = saturating_sub(cache_low, others);
    std::uint64_t low_cap = std::min(low_share, low_room);
    std::uint64_t overhead = saturating_add(saturating_sub(own_measured, own_claimed), promised.own);
    limits.share_left = saturating_sub(share, overhead);
    limits.node_left = saturating_sub(room, overhead);
    limits.max_bytes = std::max<std::uint64_t>(std::min(limits.share_left, limits.node_left), 1);
    limits.low_bytes = std::min(saturating_sub(low_cap, overhead), limits.max_bytes);
    return limits;
}

CacheLedger read_cache_ledger(int cache_root_fd) {
    struct stat st {};
    if (::fstatat(cache_root_fd, ledger_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) || st.st_uid != 0 ||
        (st.st_mode & 077) != 0)
        return CacheLedger{};
    return CacheLedger::parse(read_small_file_at(cache_root_fd, ledger_name, std::size_t{256} << 20).value_or(""));
}

namespace {

// Every user's measures taken again (those unchanged reused), under the caller's lock.
CacheLedger refresh_all(int cache_root_fd, const CacheLedger& old, const std::string& shown_path) {
    Refresh refresh(old);
    UniqueFd listing(::openat(cache_root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!listing) throw_errno("cannot open " + shown_path);
    DirectoryNames names(listing.get(), shown_path);
    for (std::size_t i = 0; i < names.size(); ++i) {
        std::optional<uid_t> uid = uid_name(names[i]);
        if (!uid) continue;
        UniqueFd user(::openat(cache_root_fd, names.c_str(i), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
        if (user) refresh.measure_user(*uid, user.get());
    }
    if (UniqueFd root = local_root_above(cache_root_fd)) refresh.measure_job_dirs(root.get());
    CacheLedger ledger{std::move(refresh.records)};
    write_ledger(cache_root_fd, ledger, shown_path);
    return ledger;
}

// One user's measures taken again (their cache dir and their job dirs), everyone else's
// kept as recorded, under the caller's lock: what this costs depends on that user's
// files alone. A ledger with no measures at all (a new node, or one of an older form) is
// taken whole once.
CacheLedger refresh_user(int cache_root_fd, uid_t uid, const std::string& shown_path) {
    CacheLedger old = read_cache_ledger(cache_root_fd);
    if (old.records.empty()) return refresh_all(cache_root_fd, old, shown_path);
    // Other users' measures go once what they measured is gone: a cache dir no longer in
    // cache/, a job dir no longer in jobs/. Both are read from root's own directories,
    // never from a user's, so nothing of theirs is entered or can block.
    std::set<uid_t> users;
    UniqueFd listing(::openat(cache_root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!listing) throw_errno("cannot open " + shown_path);
    DirectoryNames names(listing.get(), shown_path);
    for (std::size_t i = 0; i < names.size(); ++i)
        if (std::optional<uid_t> u = uid_name(names[i])) users.insert(*u);
    UniqueFd root = local_root_above(cache_root_fd);
    std::set<std::pair<uid_t, std::string>> job_dirs;
    if (root)
        if (UniqueFd jobs{::openat(root.get(), "jobs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)})
            for (const JobDir& d : job_dirs_at(jobs.get())) job_dirs.insert({d.uid, d.name});
    auto gone = [&](const LedgerRecord& r) {
        if (r.kind != LedgerRecord::job_dir) return !users.contains(r.uid);
        return root && !job_dirs.contains({r.uid, r.name});
    };
    Refresh refresh(old);
    for (const LedgerRecord& r : old.records)
        if (r.uid != uid && !gone(r)) refresh.records.push_back(r);
    UniqueFd user(::openat(cache_root_fd, std::to_string(uid).c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (user) refresh.measure_user(uid, user.get());
    if (root) refresh.measure_job_dirs(root.get(), uid);
    CacheLedger ledger{std::move(refresh.records)};
    write_ledger(cache_root_fd, ledger, shown_path);
    return ledger;
}

}  // namespace

CacheLedger refresh_cache_ledger(int cache_root_fd, const std::string& shown_path) {
    check_root_private(cache_root_fd, shown_path);
    UniqueFd lock = lock_ledger(cache_root_fd, shown_path);
    return refresh_all(cache_root_fd, read_cache_ledger(cache_root_fd), shown_path);
}

CacheLimits root_cache_limits(int cache_root_fd, uid_t uid, std::uint64_t cache_max, std::uint64_t cache_low,
                              std::uint64_t cache_user_max, const std::string& shown_path,
                              std::uint64_t cache_user_inodes, RoomPromises* promises, std::uint64_t shared_bytes) {
    check_root_private(cache_root_fd, shown_path);
    // Killed producers' temporaries go before they are counted, within a bounded time;
    // what is left goes at the next prepare.
    UniqueFd user(::openat(cache_root_fd, std::to_string(uid).c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (user) remove_dead_temporaries(user.get(), std::chrono::steady_clock::now() + temporaries_budget);
    CacheLedger ledger;
    RoomPromises book;
    {
        UniqueFd lock = lock_ledger(cache_root_fd, shown_path);
        ledger = refresh_user(cache_root_fd, uid, shown_path);
        book = RoomPromises::open_as_root(cache_root_fd, uid, shown_path);
    }
    CacheLimits limits = plan_user_cache_limits(cache_max, cache_low, cache_user_max, ledger.user_bytes(uid),
                                                claimed_bytes(cache_root_fd, uid),
                                                saturating_add(ledger.other_users_bytes(uid), shared_bytes),
                                                book.promised_at_open());
    if (promises) *promises = std::move(book);
    if (cache_user_inodes != 0) {
        // At the cap, hits are still served; a new entry is refused by the stager.
        std::uint64_t held = ledger.user_inodes(uid);
        limits.max_inodes = held < cache_user_inodes ? cache_user_inodes - held : 0;
        limits.inode_cap = cache_user_inodes;
    }
    return limits;
}

void root_account_user_cache(int cache_root_fd, uid_t uid, const std::string& shown_path) {
    check_root_private(cache_root_fd, shown_path);
    UniqueFd lock = lock_ledger(cache_root_fd, shown_path);
    // A stage-in changes the user's cache, or their job dir with a private copy.
    refresh_user(cache_root_fd, uid, shown_path);
    // Its copies are measured now: their promises no longer count.
    RoomPromises::settle_as_root(cache_root_fd, uid, shown_path);
}

}  // namespace aihpc::stage
