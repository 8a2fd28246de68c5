#include "stage/cache_promises.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <thread>

#include "common/error.hpp"
#include "common/saturating.hpp"
#include "common/text.hpp"
#include "stage/fs.hpp"

namespace aihpc::stage {

namespace {

constexpr const char* book_name = "promises";
constexpr std::size_t book_max = std::size_t{4} << 20;

std::string read_book(int fd) {
    std::string text;
    char buf[65536];
    off_t at = 0;
    while (text.size() < book_max) {
        ssize_t n = ::pread(fd, buf, sizeof buf, at);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        text.append(buf, static_cast<std::size_t>(n));
        at += n;
    }
    return text;
}

void write_book(int fd, const std::vector<RoomPromise>& book) {
    std::string text = format_room_promises(book);
    // In place: the stager holds this very file open, so a rename would hide the book
    // from it. A write cut short leaves malformed lines, which parse skips.
    if (::ftruncate(fd, 0) != 0) return;
    std::size_t done = 0;
    while (done < text.size()) {
        ssize_t n = ::pwrite(fd, text.data() + done, text.size() - done, static_cast<off_t>(done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        done += static_cast<std::size_t>(n);
    }
}

}  // namespace

// flock on the book with a short bounded wait. Released explicitly: the lock belongs to
// the open file, which the RoomPromises keeps open after this scope.
BookLock::BookLock(int book_fd, std::chrono::milliseconds wait) {
    const auto deadline = std::chrono::steady_clock::now() + wait;
    for (;;) {
        if (::flock(book_fd, LOCK_EX | LOCK_NB) == 0) {
            fd_ = book_fd;
            return;
        }
        if (errno != EWOULDBLOCK && errno != EINTR) return;
        if (std::chrono::steady_clock::now() >= deadline) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

BookLock::~BookLock() {
    if (fd_ >= 0) ::flock(fd_, LOCK_UN);
}

namespace {

// Drops what no longer counts: uid's promises whose holder ended (root just measured
// uid's cache, so their data is in the ledger) and any past promise_lifetime.
bool drop_settled(std::vector<RoomPromise>& book, uid_t measured_uid) {
    const std::int64_t now = ::time(nullptr);
    const std::int64_t lifetime = std::chrono::seconds(promise_lifetime).count();
    auto settled = [&](const RoomPromise& p) {
        return now - p.since > lifetime || (p.uid == measured_uid && !promise_holder_alive(p));
    };
    auto end = std::remove_if(book.begin(), book.end(), settled);
    bool changed = end != book.end();
    book.erase(end, book.end());
    return changed;
}

UniqueFd open_book_as_root(int cache_root_fd, const std::string& shown_path) {
    UniqueFd book(::openat(cache_root_fd, book_name, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600));
    if (!book) throw_errno("cannot open " + join_path(shown_path, book_name));
    struct stat st {};
    if (::fstat(book.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & 077) != 0)
        throw Error(join_path(shown_path, book_name) + " must be a regular file of root's, open to no one else; " +
                    "ask the administrators to remove it");
    return book;
}

}  // namespace

std::vector<RoomPromise> parse_room_promises(const std::string& text) {
    std::vector<RoomPromise> book;
    for (const std::string& line : split(text, '\n')) {
        std::vector<std::string> f = split(line, ' ');
        if (f.size() != 5) continue;
        auto uid = parse_uint(f[0]), pid = parse_uint(f[1]), start = parse_uint(f[2]), bytes = parse_uint(f[3]),
             since = parse_uint(f[4]);
        if (!uid || !pid || !start || !bytes || !since || *uid >= UINT32_MAX || *pid == 0 || *pid > 4194304 ||
            *since > static_cast<std::uint64_t>(INT64_MAX))
            continue;
        book.push_back({static_cast<uid_t>(*uid), static_cast<pid_t>(*pid), *start, *bytes, static_cast<std::int64_t>(*since)});
    }
    return book;
}

std::string format_room_promises(const std::vector<RoomPromise>& promises) {
    std::string text;
    for (const RoomPromise& p : promises)
        text += std::to_string(p.uid) + " " + std::to_string(p.pid) + " " + std::to_string(p.start) + " " +
                std::to_string(p.bytes) + " " + std::to_string(p.since) + "\n";
    return text;
}

std::optional<std::uint64_t> process_start_time(pid_t pid) {
    UniqueFd stat(::open(("/proc/" + std::to_string(pid) + "/stat").c_str(), O_RDONLY | O_CLOEXEC));
    if (!stat) return std::nullopt;
    std::string text = read_book(stat.get());
    // The command name (field 2) may hold spaces and parentheses: fields count from the last ')'.
    std::size_t close = text.rfind(')');
    if (close == std::string::npos) return std::nullopt;
    std::vector<std::string> fields = split(text.substr(close + 2), ' ');
    // fields[0] is field 3 (state), so field 22 is fields[19].
    if (fields.size() < 20) return std::nullopt;
    return parse_uint(fields[19]);
}

bool promise_holder_alive(const RoomPromise& p) {
    std::optional<std::uint64_t> start = process_start_time(p.pid);
    return start && *start == p.start;
}

PromisedBytes promised_bytes(const std::vector<RoomPromise>& promises, uid_t uid, pid_t except_pid) {
    PromisedBytes sum;
    for (const RoomPromise& p : promises) {
        if (p.pid == except_pid) continue;
        std::uint64_t& to = p.uid == uid ? sum.own : sum.others;
        to = saturating_add(to, p.bytes);
    }
    return sum;
}

RoomPromises RoomPromises::open_as_root(int cache_root_fd, uid_t uid, const std::string& shown_path) {
    RoomPromises promises;
    promises.book_ = open_book_as_root(cache_root_fd, shown_path);
    promises.uid_ = uid;
    BookLock lock(promises.book_.get(), promise_lock_wait);
    std::vector<RoomPromise> book = parse_room_promises(read_book(promises.book_.get()));
    if (lock.held() && drop_settled(book, uid)) write_book(promises.book_.get(), book);
    promises.at_open_ = promised_bytes(book, uid, ::getpid());
    return promises;
}

void RoomPromises::settle_as_root(int cache_root_fd, uid_t uid, const std::string& shown_path) {
    UniqueFd book = open_book_as_root(cache_root_fd, shown_path);
    BookLock lock(book.get(), promise_lock_wait);
    if (!lock.held()) return;  // the next measure of uid settles it
    std::vector<RoomPromise> promises = parse_room_promises(read_book(book.get()));
    if (drop_settled(promises, uid)) write_book(book.get(), promises);
}

void RoomPromises::move_to(int fd) {
    if (!book_ || book_.get() == fd) return;
    if (::dup3(book_.get(), fd, O_CLOEXEC) < 0) throw_errno("cannot move the book of copies in flight to fd " + std::to_string(fd));
    book_ = UniqueFd(fd);
}

RoomPromises::Locked RoomPromises::lock_and_read() {
    Locked locked;
    locked.lock = std::make_unique<BookLock>(book_.get(), promise_lock_wait);
    if (!locked.lock->held()) return locked;
    locked.book = parse_room_promises(read_book(book_.get()));
    PromisedBytes now = promised_bytes(locked.book, uid_, ::getpid());
    locked.since_open.own = saturating_sub(now.own, at_open_.own);
    locked.since_open.others = saturating_sub(now.others, at_open_.others);
    return locked;
}

void RoomPromises::add_and_write(Locked& locked, std::uint64_t bytes) {
    std::optional<std::uint64_t> start = process_start_time(::getpid());
    if (!start || bytes == 0) return;
    locked.book.push_back({uid_, ::getpid(), *start, bytes, static_cast<std::int64_t>(::time(nullptr))});
    write_book(book_.get(), locked.book);
}

}  // namespace aihpc::stage
