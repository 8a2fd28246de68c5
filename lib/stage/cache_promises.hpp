// Room promised to the stages that are copying into the node cache now. Root's ledger
// measures what caches hold; a copy in flight is not there yet, so two stages that
// start together would each see the room the other is about to take, and pass
// cache_max or a user's share between them. Each producer therefore promises the bytes
// it is about to copy, under a lock, before it copies, and only if they fit in what root
// gave it less what others were promised since; root takes the promise back once it has
// measured that user's cache again.
//
// The book is LOCAL_ROOT/cache/promises, root 0600, in root's cache/, which no user can
// open. Root opens it before the stager drops to the user, and the stager (aihpc-node,
// not dumpable, never exec'ing) writes it through that descriptor alone. A line is
// "uid pid start bytes since": start is the holder's start time (/proc/PID/stat, field
// 22), so a reused PID does not keep a promise alive.
#pragma once
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/fd.hpp"

namespace aihpc::stage {

struct RoomPromise {
    uid_t uid = 0;
    pid_t pid = 0;
    std::uint64_t start = 0;    // the holder's start time, in clock ticks after boot
    std::uint64_t bytes = 0;
    std::int64_t since = 0;     // seconds since the epoch
};

// Malformed lines are skipped: a damaged book costs a promise, never a crash.
std::vector<RoomPromise> parse_room_promises(const std::string& text);
std::string format_room_promises(const std::vector<RoomPromise>& promises);

// A process's start time (/proc/PID/stat field 22); nullopt once it is gone.
std::optional<std::uint64_t> process_start_time(pid_t pid);
bool promise_holder_alive(const RoomPromise& p);

// What promises weigh against one user: theirs (other processes of that user, which
// share the user's own cap) and everyone else's (which share cache_max). Saturating.
struct PromisedBytes {
    std::uint64_t own = 0;
    std::uint64_t others = 0;
};
PromisedBytes promised_bytes(const std::vector<RoomPromise>& promises, uid_t uid, pid_t except_pid);

// A promise stops counting once root measured its user's cache after the holder ended
// (the data is in the ledger then), or a day after it was made whatever happens.
inline constexpr std::chrono::hours promise_lifetime{24};

// How long the stager waits for the book's lock: a peer stopped while holding it costs
// others no more than this, after which they copy without a promise, as before.
inline constexpr std::chrono::milliseconds promise_lock_wait{5000};

// The book's lock for one scope (its open file's flock, released at scope end).
class BookLock {
public:
    BookLock(int book_fd, std::chrono::milliseconds wait);
    ~BookLock();
    BookLock(const BookLock&) = delete;
    BookLock& operator=(const BookLock&) = delete;
    bool held() const { return fd_ >= 0; }

private:
    int fd_ = -1;
};

class RoomPromises {
public:
    RoomPromises() = default;

    // As root, under the ledger lock, right after measuring `uid`'s cache: opens (or
    // makes) the book below cache_root_fd, drops the promises of uid's ended stages
    // (measured now) and those past promise_lifetime, and notes what the others hold.
    static RoomPromises open_as_root(int cache_root_fd, uid_t uid, const std::string& shown_path);
    // As root, after measuring uid again (the account after a stage-in).
    static void settle_as_root(int cache_root_fd, uid_t uid, const std::string& shown_path);

    bool open() const { return static_cast<bool>(book_); }
    // Moves the book's descriptor to `fd` (close-on-exec), closing whatever was there:
    // for a process that closes every descriptor above it before it drops to the user.
    void move_to(int fd);
    // What was promised to others when root opened the book, for the limits it plans.
    const PromisedBytes& promised_at_open() const { return at_open_; }

    // As the stager, about to copy `bytes`: under the book's lock, room is asked of
    // `fits` given what others were promised since the book was opened; `fits` returns
    // the room that is left (throwing to refuse), and `bytes` is promised. Without the
    // lock within promise_lock_wait nothing is promised, and `fits` sees nothing new.
    // Returns whatever `fits` returned.
    template <class Fits>
    std::uint64_t promise(std::uint64_t bytes, Fits&& fits);

private:
    struct Locked {
        PromisedBytes since_open;
        std::vector<RoomPromise> book;
        std::unique_ptr<BookLock> lock;
    };
    Locked lock_and_read();
    void add_and_write(Locked& locked, std::uint64_t bytes);

    UniqueFd book_;
    uid_t uid_ = 0;
    PromisedBytes at_open_;
};

template <class Fits>
std::uint64_t RoomPromises::promise(std::uint64_t bytes, Fits&& fits) {
    if (!book_) return fits(PromisedBytes{});
    Locked locked = lock_and_read();
    std::uint64_t room = fits(locked.since_open);
    if (locked.lock && locked.lock->held()) add_and_write(locked, bytes);
    return room;
}

}  // namespace aihpc::stage
