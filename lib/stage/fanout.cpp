#include "stage/fanout.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <thread>

#include "common/error.hpp"
#include "common/process.hpp"
#include "common/text.hpp"
#include "stage/fs.hpp"

namespace aihpc::stage {

namespace {

// One sbcast of `from` to `to` on every node of the step, keeping mode and times. A
// node whose job dirs are not made yet refuses it: tried again, briefly.
std::string broadcast(const FanoutStep& step, const std::string& from, const std::string& to) {
    std::string job = std::to_string(step.job_id) + "." + std::to_string(step.step_id);
    std::string why;
    for (int attempt = 0; attempt < 3; ++attempt) {
        if (attempt) std::this_thread::sleep_for(std::chrono::seconds(1));
        CommandOutput out = capture_output({"sbcast", "-j", job, "-p", "-f", from, to});
        if (out.status == 0) return "";
        why = failure_line(out, "sbcast");
    }
    return why;
}

// The marker goes last, from a file of this node's own beside the data.
std::string send_marker(const FanoutStep& step, std::size_t item, const std::string& text) {
    std::string marker = fanout_marker_path(step, item);
    std::string name = basename_of(marker) + ".out";
    UniqueFd dir = open_dir(step.dir);
    write_file_atomic_at(dir.get(), name, text, 0600, join_path(step.dir, name));
    std::string sent = broadcast(step, join_path(step.dir, name), marker);
    ::unlinkat(dir.get(), name.c_str(), 0);
    return sent;
}

std::string content_hash_of(int fd, const std::string& shown) {
    Manifest m = scan_file(fd, shown);
    hash_contents(fd, m, 4, shown);
    return m.entries.at(0).content_hash.value_or("");
}

}  // namespace

std::string fanout_data_path(const FanoutStep& step, std::size_t item) {
    return join_path(step.dir, "fanout." + std::to_string(step.step_id) + "." + std::to_string(item));
}

std::string fanout_marker_path(const FanoutStep& step, std::size_t item) { return fanout_data_path(step, item) + ".sent"; }

std::string format_fanout_marker(std::uint64_t size, const std::string& xxh3) {
    return "aihpc-fanout 1 " + std::to_string(size) + " " + xxh3 + "\n";
}

std::string send_nothing_to_peers(const FanoutStep& step, std::size_t item, const std::string& why) {
    try {
        std::string sent = send_marker(step, item, "aihpc-fanout 1 none\n");
        return why + "; the other nodes read the source themselves" + (sent.empty() ? "" : " (" + sent + ")");
    } catch (const std::exception& e) {
        return why + "; the other nodes read the source themselves (" + e.what() + ")";
    }
}

bool sent_before(int meta_fd, const FanoutStep& step, const std::string& key) {
    std::string line = key + " " + step.nodelist;
    for (const std::string& sent : split(read_small_file_at(meta_fd, "fanout.sent", 1 << 20).value_or(""), '\n'))
        if (sent == line) return true;
    return false;
}

void record_sent(int meta_fd, const FanoutStep& step, const std::string& key) {
    std::string text = read_small_file_at(meta_fd, "fanout.sent", 1 << 20).value_or("") + key + " " + step.nodelist + "\n";
    write_file_atomic_at(meta_fd, "fanout.sent", text, 0600, join_path(step.dir, "fanout.sent"));
}

std::optional<FanoutMarker> parse_fanout_marker(const std::string& text) {
    if (trim(text) == "aihpc-fanout 1 none") return FanoutMarker{0, "none"};
    std::vector<std::string> w = split(std::string(trim(text)), ' ');
    if (w.size() != 4 || w[0] != "aihpc-fanout" || w[1] != "1" || w[3].empty()) return std::nullopt;
    auto size = parse_uint(w[2]);
    if (!size) return std::nullopt;
    return FanoutMarker{*size, w[3]};
}

std::string send_to_peers(const FanoutStep& step, std::size_t item, const std::string& data_path, bool read_source) {
    try {
        UniqueFd data(::open(data_path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
        if (!data) throw_errno("cannot open " + data_path);
        struct stat st {};
        if (::fstat(data.get(), &st) != 0) throw_errno("cannot stat " + data_path);
        std::string marker_text = format_fanout_marker(static_cast<std::uint64_t>(st.st_size), content_hash_of(data.get(), data_path));
        std::string sent = broadcast(step, data_path, fanout_data_path(step, item));
        if (!sent.empty()) return send_nothing_to_peers(step, item, "not sent to the other nodes (" + sent + ")");
        std::string marked = send_marker(step, item, marker_text);
        if (!marked.empty()) return "sent, but its marker was not (" + marked + "); the other nodes read the source themselves";
        if (!step.sender_keeps_copy) ::unlink(fanout_data_path(step, item).c_str());
        return "sent to " + std::to_string(step.nodes - 1) + " other node" + (step.nodes == 2 ? "" : "s") +
               " through sbcast" + (read_source ? "; this node read the source" : ", from this node's cache");
    } catch (const std::exception& e) {
        return std::string("not sent to the other nodes (") + e.what() + "); they read the source themselves";
    }
}

std::optional<UniqueFd> receive_from_peer(const FanoutStep& step, std::size_t item, const Manifest& source, std::string* why) {
    std::string marker_path = fanout_marker_path(step, item);
    auto started = std::chrono::steady_clock::now();
    auto deadline = started + step.wait;
    // Node 0's dir is made by its own prepare; where it never shows (local_root names
    // each node's own disk by %n), nothing will come.
    struct stat dir_st {};
    while (::stat(step.dir.c_str(), &dir_st) != 0) {
        if (std::chrono::steady_clock::now() - started > std::chrono::seconds(10)) {
            *why = step.sender + "'s job dir " + step.dir + " is not seen from this node";
            return std::nullopt;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    // The marker is whole once it ends its line: sbcast may show it while writing it.
    std::optional<std::string> text;
    while (!(text = read_small_file_at(AT_FDCWD, marker_path, small_file_max)) || !text->ends_with('\n')) {
        if (std::chrono::steady_clock::now() >= deadline) {
            *why = step.sender + " sent nothing within " + std::to_string(step.wait.count()) + " s";
            return std::nullopt;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    std::optional<FanoutMarker> marker = parse_fanout_marker(*text);
    std::string data_path = fanout_data_path(step, item);
    UniqueFd data(::open(data_path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!step.sender_keeps_copy) ::unlink(data_path.c_str());
    struct stat st {};
    // A lone file arrives as itself; a tree as a tar, checked once extracted.
    bool lone = source.entries.size() == 1 && source.entries[0].path == ".";
    if (!marker) *why = "its marker " + marker_path + " is not one";
    else if (marker->xxh3 == "none") *why = step.sender + " sent nothing for it";
    else if (!data || ::fstat(data.get(), &st) != 0 || !S_ISREG(st.st_mode)) *why = "what it sent is not here (" + data_path + ")";
    else if (static_cast<std::uint64_t>(st.st_size) != marker->size)
        *why = "what arrived holds " + std::to_string(st.st_size) + " bytes, not the " + std::to_string(marker->size) + " sent";
    else if (lone && marker->size != source.entries[0].size)
        *why = "what was sent holds " + std::to_string(marker->size) + " bytes, not the " +
               std::to_string(source.entries[0].size) + " of the source";
    else if (content_hash_of(data.get(), data_path) != marker->xxh3)
        *why = "what arrived differs from what it sent (xxh3)";
    else
        return data;
    return std::nullopt;
}

}  // namespace aihpc::stage
