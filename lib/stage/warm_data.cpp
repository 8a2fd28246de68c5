// Data gravity: what a node announces of its warm caches, and how it is read back
// (warm_data.hpp).
#include "stage/warm_data.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <ctime>
#include <map>
#include <set>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/json.hpp"
#include "common/process.hpp"
#include "common/text.hpp"
#include "stage/fs.hpp"
#include "stage/node_layout.hpp"
#include "stage/stage_in.hpp"

namespace aihpc::stage::warm {

std::string data_key(const std::string& kind, const std::string& realpath) {
    std::string text = kind;
    text.push_back('\0');
    text += realpath;
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(XXH3_64bits(text.data(), text.size())));
    return std::string(feature_prefix) + hex;
}

std::string data_key(SourceKind kind, const std::string& realpath) { return data_key(to_string(kind), realpath); }

std::string feature_name(const WarmEntry& entry) {
    return entry.shared ? entry.key : entry.key + "_u" + std::to_string(entry.uid);
}

const char* mode_name(const WarmEntry& entry) { return entry.shared ? "shared" : "user"; }

bool is_announced_feature(const std::string& feature) { return feature.starts_with(feature_prefix); }

std::vector<WarmEntry> hottest(std::vector<WarmEntry> entries, std::size_t n) {
    std::stable_sort(entries.begin(), entries.end(),
                     [](const WarmEntry& a, const WarmEntry& b) { return a.last_use > b.last_use; });
    std::set<std::string> chosen;
    for (const WarmEntry& e : entries) {
        if (chosen.size() >= n) break;
        chosen.insert(feature_name(e));
    }
    std::vector<WarmEntry> out;
    for (WarmEntry& e : entries)
        if (chosen.contains(feature_name(e))) out.push_back(std::move(e));
    return out;
}

std::vector<std::string> merge_features(const std::vector<std::string>& current, const std::vector<WarmEntry>& warm) {
    std::vector<std::string> out;
    for (const std::string& f : current)
        if (!f.empty() && !is_announced_feature(f) && std::find(out.begin(), out.end(), f) == out.end()) out.push_back(f);
    for (const WarmEntry& e : warm) {
        std::string f = feature_name(e);
        if (std::find(out.begin(), out.end(), f) == out.end()) out.push_back(f);
    }
    return out;
}

namespace {

// One Comment item but for its last use, K:MODE:HASH: which entry it announces.
std::string announced_entry(const WarmEntry& e) {
    return e.key.substr(std::string(feature_prefix).size()) + ":" +
           (e.shared ? std::string("shared") : "u" + std::to_string(e.uid)) + ":" +
           e.manifest_hash.substr(0, hash_prefix_length);
}

}  // namespace

std::string format_comment(const std::vector<WarmEntry>& warm) {
    if (warm.empty()) return "";
    std::vector<std::string> items;
    for (const WarmEntry& e : warm) items.push_back(announced_entry(e) + ":" + std::to_string(e.last_use));
    return std::string(comment_tag) + join(items, ",");
}

namespace {

bool is_hex(std::string_view text) {
    return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    });
}

// One item of our Comment, or nullopt when it is not one.
std::optional<WarmEntry> parse_item(const std::string& item) {
    std::vector<std::string> f = split(item, ':');
    if (f.size() != 4 || !is_hex(f[0]) || !is_hex(f[2])) return std::nullopt;
    WarmEntry e;
    e.key = feature_prefix + f[0];
    if (f[1] == "shared") {
        e.shared = true;
    } else {
        auto uid = f[1].starts_with('u') ? parse_uint(std::string_view(f[1]).substr(1)) : std::nullopt;
        if (!uid || *uid >= static_cast<std::uint64_t>(static_cast<uid_t>(-1))) return std::nullopt;
        e.uid = static_cast<uid_t>(*uid);
    }
    e.manifest_hash = f[2];
    auto when = parse_uint(f[3]);
    if (!when) return std::nullopt;
    e.last_use = static_cast<std::int64_t>(*when);
    return e;
}

std::vector<std::string> feature_list(const std::string& value) {
    if (value.empty() || value == "(null)") return {};
    std::vector<std::string> out;
    for (const std::string& f : split(value, ','))
        if (!f.empty()) out.push_back(f);
    return out;
}

}  // namespace

std::optional<std::vector<WarmEntry>> parse_comment(const std::string& comment) {
    std::string text(trim(comment));
    if (text.empty() || text == "(null)") return std::vector<WarmEntry>{};
    if (!text.starts_with(comment_tag)) return std::nullopt;
    std::vector<WarmEntry> out;
    for (const std::string& item : split(text.substr(std::string(comment_tag).size()), ','))
        if (std::optional<WarmEntry> e = parse_item(std::string(trim(item)))) out.push_back(std::move(*e));
    return out;
}

bool comment_is_current(const std::string& announced, const std::vector<WarmEntry>& warm) {
    std::optional<std::vector<WarmEntry>> listed = parse_comment(announced);
    if (!listed || listed->size() != warm.size()) return false;
    // One source's version may be held twice by a user (two cache entries, the source
    // replaced by a copy of itself): paired in order of use.
    using Use = std::pair<std::string, std::int64_t>;
    auto uses = [](const std::vector<WarmEntry>& entries) {
        std::vector<Use> out;
        for (const WarmEntry& e : entries) out.emplace_back(announced_entry(e), e.last_use);
        std::sort(out.begin(), out.end());
        return out;
    };
    std::vector<Use> shown = uses(*listed), now = uses(warm);
    for (std::size_t i = 0; i < now.size(); ++i)
        if (now[i].first != shown[i].first || now[i].second < shown[i].second ||
            now[i].second - shown[i].second > last_use_resolution_s)
            return false;
    return true;
}

std::vector<NodeRecord> parse_show_node(const std::string& text) {
    std::vector<NodeRecord> out;
    for (const std::string& line : split(text, '\n')) {
        std::map<std::string, std::string> fields;
        std::string last;
        for (const std::string& token : split(line, ' ')) {
            if (token.empty()) continue;
            std::size_t eq = token.find('=');
            bool key = eq != std::string::npos && eq > 0 &&
                       std::all_of(token.begin(), token.begin() + static_cast<long>(eq), [](char c) {
                           return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
                       });
            if (key && !fields.contains(token.substr(0, eq))) {
                last = token.substr(0, eq);
                fields[last] = token.substr(eq + 1);
            } else if (!last.empty()) {
                fields[last] += " " + token;  // a value with spaces: a Reason, a site's Comment
            }
        }
        if (!fields.contains("NodeName")) continue;
        NodeRecord r;
        r.name = fields["NodeName"];
        r.available = feature_list(fields.contains("AvailableFeatures") ? fields["AvailableFeatures"] : fields["Features"]);
        r.active = feature_list(fields["ActiveFeatures"]);
        r.comment = fields["Comment"] == "(null)" ? "" : fields["Comment"];
        r.state = fields["State"];
        r.partitions = feature_list(fields["Partitions"]);
        out.push_back(std::move(r));
    }
    return out;
}

namespace {

bool node_has(const NodeRecord& node, const std::string& feature) {
    const std::vector<std::string>& f = node.active.empty() ? node.available : node.active;
    return std::find(f.begin(), f.end(), feature) != f.end();
}

bool same_version(const std::string& announced, const std::string& current) {
    std::size_t n = std::min({announced.size(), current.size(), hash_prefix_length});
    return n > 0 && announced.substr(0, n) == current.substr(0, n);
}

// This node's answer for `key`, or nullopt when it holds nothing of it for `uid`.
std::optional<WarmNode> node_holding(const NodeRecord& node, const std::string& key, const std::string& manifest_hash,
                                     uid_t uid) {
    WarmEntry shared{key, true, 0, "", 0}, own{key, false, uid, "", 0};
    if (!node_has(node, feature_name(shared)) && !node_has(node, feature_name(own))) return std::nullopt;
    std::optional<WarmNode> best;
    if (std::optional<std::vector<WarmEntry>> listed = parse_comment(node.comment)) {
        for (const WarmEntry& e : *listed) {
            if (e.key != key || (!e.shared && e.uid != uid) || !node_has(node, feature_name(e))) continue;
            WarmNode candidate{node.name, e, !same_version(e.manifest_hash, manifest_hash)};
            // The current version first, then the most recent use.
            if (!best || (best->stale && !candidate.stale) ||
                (best->stale == candidate.stale && candidate.entry.last_use > best->entry.last_use))
                best = candidate;
        }
    }
    if (best) return best;
    // Announced as a feature, but no version said (a site's own Comment): it may be old.
    return WarmNode{node.name, node_has(node, feature_name(shared)) ? shared : own, true};
}

}  // namespace

std::vector<WarmNode> nodes_holding(const std::vector<NodeRecord>& nodes, const std::string& key,
                                    const std::string& manifest_hash, uid_t uid, bool include_stale) {
    std::vector<WarmNode> out;
    for (const NodeRecord& node : nodes) {
        std::optional<WarmNode> held = node_holding(node, key, manifest_hash, uid);
        if (held && (!held->stale || include_stale)) out.push_back(std::move(*held));
    }
    std::stable_sort(out.begin(), out.end(), [](const WarmNode& a, const WarmNode& b) {
        if (a.stale != b.stale) return !a.stale;
        return a.entry.last_use > b.entry.last_use;
    });
    return out;
}

std::vector<std::string> announced_features(const std::vector<NodeRecord>& nodes, const std::vector<std::string>& keys,
                                            uid_t uid) {
    std::vector<std::string> out;
    for (const std::string& key : keys) {
        for (const std::string& f : {feature_name({key, true, 0, "", 0}), feature_name({key, false, uid, "", 0})}) {
            bool seen = std::any_of(nodes.begin(), nodes.end(), [&](const NodeRecord& n) { return node_has(n, f); });
            if (seen && std::find(out.begin(), out.end(), f) == out.end()) out.push_back(f);
        }
    }
    return out;
}

std::vector<NodeRecord> idle_nodes(const std::vector<NodeRecord>& nodes) {
    std::vector<NodeRecord> out;
    for (const NodeRecord& n : nodes)
        if (n.state == "IDLE") out.push_back(n);
    return out;
}

std::vector<std::string> nodes_announcing(const std::vector<NodeRecord>& nodes, const std::vector<std::string>& features) {
    std::vector<std::string> out;
    for (const NodeRecord& n : nodes)
        if (std::any_of(features.begin(), features.end(), [&](const std::string& f) { return node_has(n, f); }))
            out.push_back(n.name);
    return out;
}

std::vector<std::string> partitions_of(const std::vector<NodeRecord>& nodes, const std::vector<std::string>& names) {
    std::vector<std::string> out;
    for (const NodeRecord& n : nodes) {
        if (std::find(names.begin(), names.end(), n.name) == names.end()) continue;
        for (const std::string& p : n.partitions)
            if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
    }
    return out;
}

std::string config_value(const std::string& show_config, const std::string& key) {
    for (const std::string& line : split(show_config, '\n')) {
        std::size_t eq = line.find('=');
        if (eq == std::string::npos || trim(std::string_view(line).substr(0, eq)) != key) continue;
        std::string value(trim(std::string_view(line).substr(eq + 1)));
        return value == "(null)" ? "" : value;
    }
    return "";
}

bool has_lua(const std::string& job_submit_plugins) {
    for (const std::string& p : split(job_submit_plugins, ','))
        if (trim(p) == "lua" || trim(p) == "job_submit/lua") return true;
    return false;
}

namespace {

UniqueFd open_dir_at(int parent_fd, const char* name) {
    return UniqueFd(::openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
}

std::vector<std::string> names_in(int dir_fd, const std::string& shown) {
    std::vector<std::string> out;
    UniqueFd listing = open_dir_at(dir_fd, ".");
    if (!listing) return out;
    try {
        DirectoryNames names(listing.get(), shown);
        for (std::size_t i = 0; i < names.size(); ++i) out.emplace_back(names[i]);
    } catch (const Error&) {
        out.clear();
    }
    return out;
}

std::map<std::string, std::string> info_fields(const std::string& text) {
    std::map<std::string, std::string> out;
    for (const std::string& line : split(text, '\n'))
        if (std::size_t eq = line.find('='); eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
    return out;
}

// The published entries of one cache directory (the shared cache's or a user's): those
// whose info file names their source; the last use is their lock file's mtime.
// A user writes their own cache: what root reads there is bounded (entries_per_cache),
// checked (a hex manifest hash, the only part that reaches the Comment) and clamped (a
// last use in the future would keep an entry hottest forever).
void add_cache_entries(int cache_fd, const std::string& shown, bool shared, uid_t uid, std::vector<WarmEntry>& out) {
    UniqueFd entries = open_dir_at(cache_fd, "entries");
    if (!entries) return;
    UniqueFd locks = open_dir_at(cache_fd, "locks");
    std::int64_t now = static_cast<std::int64_t>(::time(nullptr));
    std::size_t looked = 0;
    for (const std::string& name : names_in(entries.get(), join_path(shown, "entries"))) {
        if (name.starts_with('.')) continue;  // an entry being produced or evicted
        if (++looked > entries_per_cache) break;
        UniqueFd entry = open_dir_at(entries.get(), name.c_str());
        if (!entry) continue;
        std::map<std::string, std::string> info =
            info_fields(read_small_file_at(entry.get(), "info", small_file_max).value_or(""));
        if (info["realpath"].empty() || info["kind"].empty() || !is_hex(info["manifest_hash"])) continue;
        struct stat st {};
        if (!locks || ::fstatat(locks.get(), (name + ".lock").c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
            if (::fstat(entry.get(), &st) != 0) continue;
        out.push_back({data_key(info["kind"], info["realpath"]), shared, uid, info["manifest_hash"],
                       std::min(static_cast<std::int64_t>(st.st_mtim.tv_sec), now)});
    }
}

std::string failure_of(const CommandOutput& out, const std::string& what) {
    if (out.timed_out)
        return what + " did not answer within " + std::to_string(scontrol_deadline.count() / 1000) + "s";
    return failure_line(out, what);
}

CommandOutput scontrol(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"scontrol"};
    argv.insert(argv.end(), args.begin(), args.end());
    CaptureOptions options;
    options.deadline = scontrol_deadline;
    return capture_output_with(argv, options);
}

std::vector<std::string> sorted(std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
}

// The scontrol update that makes `node` announce `warm`, or nothing when it already does.
std::vector<std::string> update_for(const NodeRecord& node, const std::vector<WarmEntry>& warm) {
    std::vector<std::string> available = merge_features(node.available, warm);
    std::vector<std::string> active = merge_features(node.active, warm);
    std::vector<std::string> args;
    if (sorted(available) != sorted(node.available) || sorted(active) != sorted(node.active)) {
        args.push_back("AvailableFeatures=" + join(available, ","));
        args.push_back("ActiveFeatures=" + join(active, ","));
    }
    // A site's own Comment stays; then `where` finds no version here, only the features.
    // Uses alone rewrite ours once they have moved by last_use_resolution_s.
    if (parse_comment(node.comment) && !comment_is_current(node.comment, warm)) args.push_back("Comment=" + format_comment(warm));
    if (!args.empty()) args.insert(args.begin(), {"update", "NodeName=" + node.name});
    return args;
}

}  // namespace

std::vector<WarmEntry> list_warm_entries(const std::string& local_root) {
    std::vector<WarmEntry> out;
    UniqueFd root(::open(local_root.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!root) return out;
    if (UniqueFd shared = open_dir_at(root.get(), "shared"))
        add_cache_entries(shared.get(), join_path(local_root, "shared"), true, 0, out);
    UniqueFd cache = open_dir_at(root.get(), "cache");
    if (!cache) return out;
    for (const std::string& name : names_in(cache.get(), join_path(local_root, "cache"))) {
        auto uid = parse_uint(name);
        if (!uid || *uid == 0 || *uid >= static_cast<std::uint64_t>(static_cast<uid_t>(-1))) continue;
        if (UniqueFd user = open_dir_at(cache.get(), name.c_str()))
            add_cache_entries(user.get(), join_path(join_path(local_root, "cache"), name), false,
                              static_cast<uid_t>(*uid), out);
    }
    return out;
}

std::vector<NodeRecord> read_nodes(const std::string& node) {
    std::vector<std::string> args = {"-o", "show", "node"};
    if (!node.empty()) args.push_back(node);
    CommandOutput out;
    try {
        out = scontrol(args);
    } catch (const Error& e) {
        throw Error(std::string("cannot run scontrol show node: ") + e.what());
    }
    if (out.status != 0) throw Error("scontrol show node failed: " + failure_of(out, "scontrol"));
    return parse_show_node(out.out);
}

std::vector<std::string> announce(const std::string& local_root, const std::string& node, std::size_t count) {
    std::vector<std::string> notes;
    try {
        // Root's own lock under the root-private local_root: two epilogs (or an epilog and a
        // stage-in's account) of this node read and write the node's record one at a time.
        // A node that never staged has no local_root: nothing to announce, nothing to say.
        struct stat st {};
        if (::lstat(local_root.c_str(), &st) != 0 && errno == ENOENT) return notes;
        UniqueFd root = open_local_root(local_root, false);
        UniqueFd lock = open_lock_file_at(root.get(), ".gravity.lock", true, join_path(local_root, ".gravity.lock"));
        lock_with_deadline(lock.get(), LOCK_EX, 2 * scontrol_deadline, join_path(local_root, ".gravity.lock"));
        std::vector<WarmEntry> warm = hottest(list_warm_entries(local_root), count);
        std::vector<NodeRecord> records = read_nodes(node);
        auto it = std::find_if(records.begin(), records.end(), [&](const NodeRecord& r) { return r.name == node; });
        if (it == records.end()) throw Error("scontrol show node " + node + " did not list the node");
        std::vector<std::string> update = update_for(*it, warm);
        if (update.empty()) return notes;
        CommandOutput out = scontrol(update);
        if (out.status != 0) throw Error("scontrol update NodeName=" + node + " failed: " + failure_of(out, "scontrol"));
        notes.push_back("node " + node + " announces " + std::to_string(warm.size()) + " warm cache entries (data gravity)");
    } catch (const std::exception& e) {
        notes.push_back("node " + node + ": its warm data is not announced to Slurm (data gravity): " + e.what());
    }
    return notes;
}

std::vector<WarmNode> where(const std::string& src, const std::string& base_dir, const std::vector<std::string>& allow,
                            unsigned threads, uid_t uid, bool include_stale) {
    SourceVersion version = source_version(src, base_dir, allow, threads);
    return nodes_holding(read_nodes(), data_key(version.kind, version.realpath), version.manifest_hash, uid, include_stale);
}

std::string iso_time(std::int64_t seconds) {
    if (seconds <= 0) return "-";
    std::time_t t = static_cast<std::time_t>(seconds);
    struct tm parts {};
    char text[32] = "-";
    if (::gmtime_r(&t, &parts)) std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &parts);
    return text;
}

std::string where_line(const WarmNode& node) {
    return node.node + " " + mode_name(node.entry) + " " + iso_time(node.entry.last_use) + (node.stale ? " stale" : "");
}

std::string where_json(const WarmNode& node) {
    return "{\"node\": " + json_quote(node.node) + ", \"mode\": " + json_quote(mode_name(node.entry)) +
           ", \"last_use\": " + json_quote(iso_time(node.entry.last_use)) +
           ", \"last_use_epoch\": " + std::to_string(node.entry.last_use) +
           ", \"feature\": " + json_quote(feature_name(node.entry)) +
           ", \"manifest_hash\": " + json_quote(node.entry.manifest_hash) + ", \"stale\": " + (node.stale ? "true" : "false") +
           "}";
}

}  // namespace aihpc::stage::warm
