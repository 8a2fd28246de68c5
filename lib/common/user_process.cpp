#include "common/user_process.hpp"

#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/child_process.hpp"

namespace aihpc {

namespace {

// A record on the pipe: its kind ('N' note, 'E' error), its length in decimal, ':', and
// the text. Lengths rather than lines, so that a message keeps its newlines.
void write_record(int fd, char kind, std::string_view text) noexcept {
    std::string record = kind + std::to_string(text.size()) + ":";
    record.append(text);
    std::size_t done = 0;
    while (done < record.size()) {
        ssize_t n = ::write(fd, record.data() + done, record.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;  // the parent is gone: nobody is left to tell
        done += static_cast<std::size_t>(n);
    }
}

std::string read_to_end(int fd) {
    std::string text;
    char buf[4096];
    while (true) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        text.append(buf, static_cast<std::size_t>(n));
    }
    return text;
}

struct Records {
    std::vector<std::string> notes;
    std::string error;
    bool has_error = false;
};

// What a dead child wrote before it died is kept; a record it left unfinished is not.
Records parse_records(std::string_view text) {
    Records out;
    while (text.size() > 2) {
        char kind = text[0];
        std::size_t colon = text.find(':');
        if (colon == std::string_view::npos) break;
        std::size_t length = 0;
        for (char c : text.substr(1, colon - 1)) {
            if (c < '0' || c > '9') return out;
            length = length * 10 + static_cast<std::size_t>(c - '0');
        }
        if (text.size() - colon - 1 < length) break;
        std::string body(text.substr(colon + 1, length));
        text.remove_prefix(colon + 1 + length);
        if (kind == 'N') {
            out.notes.push_back(std::move(body));
        } else if (kind == 'E') {
            out.error = std::move(body);
            out.has_error = true;
        }
    }
    return out;
}

void become_root() {
    if (::geteuid() != 0 && ::seteuid(0) != 0) throw_errno("cannot regain root in the child");
    // Directories root makes must not take the user's group.
    if (::getegid() != 0 && ::setegid(0) != 0) throw_errno("cannot regain group root in the child");
}

void drop_to(const UserIds& user) {
    if (::setgroups(user.groups.size(), user.groups.empty() ? nullptr : user.groups.data()) != 0)
        throw_errno("cannot set the supplementary groups of uid " + std::to_string(user.uid));
    if (::setregid(user.gid, user.gid) != 0) throw_errno("cannot set gid " + std::to_string(user.gid));
    if (::setreuid(user.uid, user.uid) != 0) throw_errno("cannot set uid " + std::to_string(user.uid));
    // Checked rather than trusted: a drop that half failed must not go on as root.
    if (::getuid() != user.uid || ::geteuid() != user.uid || ::getgid() != user.gid || ::getegid() != user.gid)
        throw Error("could not drop to uid " + std::to_string(user.uid) + ", gid " + std::to_string(user.gid));
}

// The child's whole life. noexcept: whatever goes wrong, nothing unwinds out of it into
// the parent's code, which the child shares; at worst it aborts, and the parent says so.
[[noreturn]] void child_main(const UserIds& user, std::string_view purpose,
                             const std::function<void(const ChildReport&)>& root_part,
                             const std::function<void(const ChildReport&)>& user_part, int report_fd) noexcept {
    ChildReport report(report_fd);
    int status = 0;
    try {
        become_root();
        root_part(report);
        drop_to(user);
        user_part(report);
    } catch (const std::exception& e) {
        report.error(e.what());
        status = 1;
    } catch (...) {
        report.error("the " + std::string(purpose) + " child failed with an unknown error");
        status = 1;
    }
    ::_exit(status);
}

std::string how_it_ended(int status) {
    if (WIFSIGNALED(status)) return strsignal(WTERMSIG(status));
    if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
    return "status " + std::to_string(status);
}

}  // namespace

void ChildReport::note(std::string_view text) const noexcept { write_record(fd_, 'N', text); }

void ChildReport::error(std::string_view text) const noexcept { write_record(fd_, 'E', text); }

std::vector<std::string> run_as_user(const UserIds& user, std::string_view purpose,
                                     const std::function<void(const ChildReport&)>& root_part,
                                     const std::function<void(const ChildReport&)>& user_part) {
    Pipe pipe;
    pid_t pid = ::fork();
    if (pid < 0) throw_errno("cannot fork the " + std::string(purpose) + " child");
    if (pid == 0) {
        pipe.read.reset();
        child_main(user, purpose, root_part, user_part, pipe.write.get());
    }
    ChildProcess child(pid);
    pipe.write.reset();
    Records records = parse_records(read_to_end(pipe.read.get()));
    int status = child.wait();
    if (records.has_error) throw Error(records.error);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        throw ChildDied("the " + std::string(purpose) + " child died (" + how_it_ended(status) + ")");
    return records.notes;
}

}  // namespace aihpc
