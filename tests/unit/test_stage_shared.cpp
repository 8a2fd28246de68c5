// The node's shared cache (lib/stage/shared_cache.hpp): a world-readable source read as
// nobody and published root's and read-only; an unreadable one never; a reader's copy
// that is not plainly its own refused; a job's stage served from it, or left for root.
// The tests that read as nobody need root (CI runs the unit tests as root).
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/text.hpp"
#include "stage/manifest.hpp"
#include "stage/node_cache.hpp"
#include "stage/node_layout.hpp"
#include "stage/shared_cache.hpp"
#include "stage/stage_in.hpp"
#include "cmocka_cxx.hpp"
#include "temp_dir.hpp"

using namespace aihpc;
using namespace aihpc::stage;

namespace {

constexpr uid_t nobody = 65534;

// The built aihpc-node, which the reader runs as nobody (make check runs in the build tree).
std::string reader_program() {
    char real[4096];
    if (!::realpath("tools/aihpc-node", real)) fail_msg("tools/aihpc-node is not built");
    return real;
}

struct Node {
    TempDir scratch;
    std::string local_root, source;
    Node() {
        ::chmod(scratch.path().c_str(), 0755);  // nobody must reach the source below it
        local_root = scratch.make_dir("local");
        source = scratch.make_dir("data/set");
        scratch.write("data/set/a.txt", "alpha\n", 0644);
        scratch.make_dir("data/set/sub");
        scratch.write("data/set/sub/b.bin", std::string(100000, 'b'), 0644);
        scratch.write("data/set/run.sh", "#!/bin/sh\n", 04755);
        assert_int_equal(::symlink("a.txt", (source + "/link").c_str()), 0);
    }
    SharedStageRequest request(const std::string& src) const {
        SharedStageRequest r;
        r.local_root = local_root;
        r.src = src;
        r.base_dir = "/";
        r.threads = 4;
        r.reader = UserIds{nobody, nobody, {}};
        r.reader_name = "nobody";
        r.reader_program = reader_program();
        r.cache_max = 1ull << 30;
        r.cache_low = 900ull << 20;
        r.shared_max = 512ull << 20;
        return r;
    }
    std::vector<std::string> entries() const {
        std::vector<std::string> out;
        DIR* dir = ::opendir((local_root + "/shared/entries").c_str());
        if (!dir) return out;
        while (struct dirent* e = ::readdir(dir))
            if (e->d_name[0] != '.') out.emplace_back(e->d_name);
        ::closedir(dir);
        return out;
    }
};

bool root_here() { return ::getuid() == 0; }

mode_t mode_of(const std::string& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) fail_msg("cannot stat %s", path.c_str());
    return st.st_mode & 07777;
}

uid_t owner_of(const std::string& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) fail_msg("cannot stat %s", path.c_str());
    return st.st_uid;
}

}  // namespace

static void not_world_readable_names_the_first_private_path(void**) {
    Manifest m;
    m.entries.push_back({".", EntryType::directory, 0755, 0, {}, {}, {}, 0, 0, 0});
    m.entries.push_back({"a", EntryType::file, 0644, 1, {}, {}, {}, 0, 0, 0});
    m.entries.push_back({"l", EntryType::symlink, 0777, 1, {}, "a", {}, 0, 0, 0});
    assert_string_equal(not_world_readable(m).c_str(), "");
    m.entries.push_back({"d", EntryType::directory, 0754, 0, {}, {}, {}, 0, 0, 0});  // others may list, not enter
    assert_string_equal(not_world_readable(m).c_str(), "d");
    m.entries.back().mode = 0755;
    m.entries.push_back({"d/secret", EntryType::file, 0640, 1, {}, {}, {}, 0, 0, 0});
    assert_string_equal(not_world_readable(m).c_str(), "d/secret");
}

static void a_world_readable_tree_is_read_as_nobody_and_published_roots_and_read_only(void**) {
    if (!root_here()) skip();
    Node node;
    SharedStageResult first = stage_into_shared_cache(node.request(node.source));
    assert_true(first.shared);
    assert_true(first.note.starts_with("read as nobody (shared_user) into the node's shared cache"));
    std::vector<std::string> keys = node.entries();
    assert_int_equal(keys.size(), 1);
    std::string data = node.local_root + "/shared/entries/" + keys[0] + "/data";
    assert_string_equal(file_text(data + "/a.txt").c_str(), "alpha\n");
    assert_int_equal(file_text(data + "/sub/b.bin").size(), 100000);
    for (const char* path : {"", "/a.txt", "/sub", "/sub/b.bin", "/run.sh", "/link"})
        assert_int_equal(owner_of(data + path), 0);
    assert_int_equal(mode_of(data), 0555);
    assert_int_equal(mode_of(data + "/a.txt"), 0444);
    assert_int_equal(mode_of(data + "/run.sh"), 0555);  // its setuid bit is gone
    assert_int_equal(mode_of(node.local_root + "/shared/incoming"), 0700);
    // The key is the source's, as any user's stager computes it.
    SharedStageResult again = stage_into_shared_cache(node.request(node.source));
    assert_true(again.shared);
    assert_string_equal(again.note.c_str(), "already in the node's shared cache");
    assert_int_equal(node.entries().size(), 1);
    DIR* incoming = ::opendir((node.local_root + "/shared/incoming").c_str());
    int left = 0;
    while (struct dirent* e = ::readdir(incoming)) left += e->d_name[0] != '.';
    ::closedir(incoming);
    assert_int_equal(left, 0);
}

static void a_source_others_may_not_read_is_never_shared(void**) {
    if (!root_here()) skip();
    Node node;
    node.scratch.write("data/set/private.key", "secret\n", 0600);
    SharedStageResult result = stage_into_shared_cache(node.request(node.source));
    assert_false(result.shared);
    assert_true(result.note.starts_with("not shared: "));
    assert_true(node.entries().empty());
    ::unlink((node.source + "/private.key").c_str());
    // Readable by nobody's group alone is not readable by every user either.
    std::string grouped = node.scratch.write("data/set/grouped.txt", "g\n", 0640);
    assert_int_equal(::chown(grouped.c_str(), 0, nobody), 0);
    result = stage_into_shared_cache(node.request(node.source));
    assert_false(result.shared);
    assert_true(result.note.find("may not be read by every user") != std::string::npos);
    assert_true(node.entries().empty());
    ::unlink(grouped.c_str());
    // A directory above the source that others may not enter.
    ::chmod((node.scratch.path() + "/data").c_str(), 0700);
    result = stage_into_shared_cache(node.request(node.source));
    assert_false(result.shared);
    assert_true(node.entries().empty());
}

// Millions of empty files cost no bytes: the shared cache keeps to the inode cap of
// one user's cache, counting what its entries hold already.
static void the_shared_cache_keeps_to_the_inode_cap(void**) {
    if (!root_here()) skip();
    Node node;
    SharedStageRequest r = node.request(node.source);
    r.inode_cap = 4;  // the tree is 6 entries, and its data directory one more
    SharedStageResult result = stage_into_shared_cache(r);
    assert_false(result.shared);
    assert_true(result.note.find("cache_user_inodes") != std::string::npos);
    assert_true(node.entries().empty());
    r.inode_cap = 7;
    assert_true(stage_into_shared_cache(r).shared);
    std::string small = node.scratch.make_dir("data/small");
    node.scratch.write("data/small/one", "1\n", 0644);
    r.src = small;  // two entries and its data directory, over what the first left
    result = stage_into_shared_cache(r);
    assert_false(result.shared);
    r.inode_cap = 10;
    assert_true(stage_into_shared_cache(r).shared);
}

// A site that lowered cache_max finds the shared cache over its cap: root evicts what no
// job leases before it plans a user's share.
static void a_shared_cache_over_its_cap_gives_back_what_no_job_leases(void**) {
    if (!root_here()) skip();
    Node node;
    assert_true(stage_into_shared_cache(node.request(node.source)).shared);
    std::uint64_t held = keep_shared_cache_to_its_cap(node.local_root, 1ull << 30, 0, 0.9);
    assert_true(held > 100000);
    NodeCache reader(shared_cache_dir(node.local_root), CacheLimits{}, CacheAccess::shared_reader);
    std::optional<Lease> lease = reader.lease(node.entries().at(0));
    assert_true(lease.has_value());
    assert_int_equal(keep_shared_cache_to_its_cap(node.local_root, 1000, 0, 0.9), held);  // leased: kept
    lease.reset();
    assert_int_equal(keep_shared_cache_to_its_cap(node.local_root, 1000, 0, 0.9), 0);
    assert_true(node.entries().empty());
    assert_int_equal(keep_shared_cache_to_its_cap(node.scratch.path() + "/none", 1000, 0, 0.9), 0);
}

// A reader that plants what root must not take over: its script stands in for
// aihpc-node shared-read, run as nobody with the incoming directory as descriptor 3.
static void a_readers_copy_that_is_not_plainly_its_own_is_refused(void**) {
    if (!root_here()) skip();
    Node node;
    Manifest m;
    m.entries.push_back({".", EntryType::directory, 0755, 0, {}, {}, {}, 0, 0, 0});
    m.entries.push_back({"a", EntryType::file, 0644, 2, {}, {}, {}, 0, 0, 0});
    m.entries.push_back({"b", EntryType::file, 0644, 2, {}, {}, {}, 0, 0, 0});
    node.scratch.write("manifest", m.serialize(), 0644);
    const std::string key(32, 'a');
    for (const char* plant : {"ln data/a data/b", "mkfifo data/b"}) {
        std::string script = "#!/bin/sh\ncd /dev/fd/3 && mkdir -p cache/entries/" + key + "/data && cd cache/entries/" +
                             key + " && cp " + node.scratch.path() + "/manifest manifest && echo x > data/a && " + plant +
                             " && printf 'cache=reader\\nkey=" + key + "\\nshared_key=" + std::string(32, 'b') +
                             "\\nkind=tree\\nmanifest_hash=x\\nrealpath=/x\\n'\n";
        std::string program = node.scratch.write("reader.sh", script, 0755);
        SharedStageRequest r = node.request(node.source);
        r.reader_program = program;
        SharedStageResult result = stage_into_shared_cache(r);
        assert_false(result.shared);
        assert_true(result.note.find(plant[0] == 'l' ? "more than one name" : "neither a file") != std::string::npos);
        assert_true(node.entries().empty());
    }
}

static void a_stage_takes_a_shared_hit_and_leaves_a_miss_for_root(void**) {
    if (!root_here()) skip();
    Node node;
    assert_true(stage_into_shared_cache(node.request(node.source)).shared);
    StageSettings settings;
    settings.to_dir = node.scratch.path() + "/job";
    settings.cache_dir = node.scratch.path() + "/user-cache";
    settings.shared_dir = shared_cache_dir(node.local_root);
    settings.shared_defer = true;
    settings.uid = 1000;
    StagedItem hit = stage_in(node.source, "set", settings);
    assert_int_equal(static_cast<int>(hit.outcome), static_cast<int>(StageOutcome::hit));
    assert_string_equal(hit.cache.c_str(), "shared");
    assert_string_equal(file_text(settings.to_dir + "/set/a.txt").c_str(), "alpha\n");
    assert_true(hit.data_path.starts_with(node.local_root + "/shared/entries/"));
    // Its lease keeps the entry from eviction.
    NodeCache shared(settings.shared_dir, CacheLimits{}, CacheAccess::shared_root);
    assert_true(shared.list().at(0).in_use);
    assert_false(shared.evict(hit.key));
    hit.lease = Lease();
    assert_false(shared.list().at(0).in_use);

    std::string other = node.scratch.make_dir("data/other");
    node.scratch.write("data/other/c.txt", "gamma\n", 0644);
    StagedItem wanted = stage_in(other, "other", settings);
    assert_int_equal(static_cast<int>(wanted.outcome), static_cast<int>(StageOutcome::deferred));
    struct stat st {};
    assert_int_not_equal(::lstat((settings.to_dir + "/other").c_str(), &st), 0);
    settings.shared_defer = false;  // the second pass: what root did not share is the user's
    StagedItem own = stage_in(other, "other", settings);
    assert_int_equal(static_cast<int>(own.outcome), static_cast<int>(StageOutcome::miss));
    assert_string_equal(own.cache.c_str(), "user");
    // Once in the user's own cache, a later first pass takes it from there, not deferred.
    settings.shared_defer = true;
    own.lease = Lease();
    StagedItem again = stage_in(other, "other2", settings);
    assert_int_equal(static_cast<int>(again.outcome), static_cast<int>(StageOutcome::hit));
    assert_string_equal(again.cache.c_str(), "user");

    // The epilog marks the entries a job used as used now: the lock file's mtime.
    std::string lock = node.local_root + "/shared/locks/" + hit.key + ".lock";
    struct timespec old_times[2] = {{1000, 0}, {1000, 0}};
    assert_int_equal(::utimensat(AT_FDCWD, lock.c_str(), old_times, 0), 0);
    node.scratch.make_dir("local/jobs/77.aihpc");
    node.scratch.write("local/jobs/77.aihpc/items",
                       format_job_items({{"set", settings.to_dir + "/set", hit.manifest_hash, hit.key, "hit", ""},
                                         {"x", "/x", "h", "../../../etc", "hit", ""}}));
    record_shared_uses(node.local_root, 77);
    struct stat lock_st {};
    assert_int_equal(::stat(lock.c_str(), &lock_st), 0);
    assert_true(lock_st.st_mtim.tv_sec > 1000);
    assert_true(shared.evict(hit.key));
    assert_true(node.entries().empty());
}

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(not_world_readable_names_the_first_private_path),
        cmocka_unit_test(a_world_readable_tree_is_read_as_nobody_and_published_roots_and_read_only),
        cmocka_unit_test(a_source_others_may_not_read_is_never_shared),
        cmocka_unit_test(the_shared_cache_keeps_to_the_inode_cap),
        cmocka_unit_test(a_shared_cache_over_its_cap_gives_back_what_no_job_leases),
        cmocka_unit_test(a_readers_copy_that_is_not_plainly_its_own_is_refused),
        cmocka_unit_test(a_stage_takes_a_shared_hit_and_leaves_a_miss_for_root),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
