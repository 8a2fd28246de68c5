// lib/stage on a shared node: root's cache ledger (measured, never read from what users
// write), the per-user share, archives bounded as they extract, bounded lock waits,
// verification against the source as it is now, fsync of a written tree, and the
// epilog's budgeted retirement of job dirs with root-only keep markers. Everything acts
// on real temp dirs; the ledger and epilog tests need root, as on a node, and say so
// when skipped.
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <cstdint>
#include <string>
#include <vector>

#include "cmocka_cxx.hpp"
#include "common/fd.hpp"
#include "common/node_helper.hpp"
#include "common/spawn.hpp"
#include "stage/archive.hpp"
#include "stage/cache_ledger.hpp"
#include "stage/fs.hpp"
#include "stage/lease_holder.hpp"
#include "stage/node_cache.hpp"
#include "stage/node_layout.hpp"
#include "stage/stage_in.hpp"
#include "stage/tree_flush.hpp"
#include "temp_dir.hpp"

using namespace aihpc;
using namespace aihpc::stage;
using namespace std::chrono_literals;

namespace {

bool skip_unless_root() {
    if (::geteuid() == 0) return false;
    print_message("skipped: root keeps the ledger and retires job dirs, as on a node\n");
    return true;
}

bool exists(const std::string& p) {
    struct stat st {};
    return ::lstat(p.c_str(), &st) == 0;
}

std::size_t count_entries(const std::string& dir) {
    UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) return 0;
    return DirectoryNames(fd.get(), dir).size();
}

constexpr std::uint64_t mib = 1 << 20;
const std::string key_a = "0000000000000000000000000000000a";

// A tar.zst of `count` files of `size` zero bytes each: tiny on disk, large extracted.
void write_zero_tar(const std::string& file, std::uint64_t size, int count) {
    struct archive* a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    archive_write_add_filter_zstd(a);
    archive_write_open_filename(a, file.c_str());
    std::string zeros(1 << 16, '\0');
    for (int i = 0; i < count; ++i) {
        struct archive_entry* e = archive_entry_new();
        archive_entry_set_pathname(e, ("zeros" + std::to_string(i)).c_str());
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_size(e, static_cast<la_int64_t>(size));
        archive_write_header(a, e);
        for (std::uint64_t done = 0; done < size; done += zeros.size())
            archive_write_data(a, zeros.data(), std::min<std::uint64_t>(zeros.size(), size - done));
        archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
}

}  // namespace

// ---- the ledger's text and the share arithmetic (pure)

static void ledger_text_reads_back_and_skips_what_is_malformed(void**) {
    CacheLedger ledger;
    LedgerRecord r;
    r.uid = 1000;
    r.kind = LedgerRecord::entry;
    r.name = "name with space\n%";
    r.dev = 2049;
    r.ino = 77;
    r.ctime_ns = 1700000000123456789;
    r.bytes = 4096;
    r.inodes = 12;
    r.linked = true;
    r.measured_at = 1700000000;
    r.complete = false;
    ledger.records.push_back(r);
    std::string text = ledger.serialize() + "e 1 2 3 4 5 6 0 7 1\n" + "x 1 2 3 4 5 6 0 7 1 n\n" +
                       "e 1 2 3 4 99999999999999999999 6 0 7 1 n\n" + "e 1 2 3 4 5 6 2 7 1 n\n" +
                       "e 1 2 3 4 5 6 7 1 n\n";  // the form before inodes were counted
    CacheLedger back = CacheLedger::parse(text);
    assert_int_equal(back.records.size(), 1);
    const LedgerRecord& b = back.records[0];
    assert_string_equal(b.name.c_str(), r.name.c_str());
    assert_int_equal(b.uid, 1000);
    assert_int_equal(b.ino, 77);
    assert_true(b.ctime_ns == r.ctime_ns);
    assert_int_equal(b.bytes, 4096);
    assert_int_equal(b.inodes, 12);
    assert_true(b.linked);
    assert_true(b.measured_at == 1700000000);
    assert_false(b.complete);
    assert_int_equal(CacheLedger::parse("not a ledger\n" + text.substr(text.find('\n') + 1)).records.size(), 0);
}

static void ledger_sums_saturate_instead_of_wrapping(void**) {
    CacheLedger ledger;
    for (uid_t uid : {1u, 2u, 2u}) {
        LedgerRecord r;
        r.uid = uid;
        r.name = "x";
        r.bytes = UINT64_MAX / 2 + 1;
        ledger.records.push_back(r);
    }
    assert_true(ledger.user_bytes(2) == UINT64_MAX);
    assert_true(ledger.other_users_bytes(1) == UINT64_MAX);
    assert_true(ledger.other_users_bytes(2) == UINT64_MAX / 2 + 1);
    for (LedgerRecord& r : ledger.records) r.inodes = UINT64_MAX / 2 + 1;
    assert_true(ledger.user_inodes(2) == UINT64_MAX);
}

static void eviction_plans_saturate_on_forged_sizes(void**) {
    std::vector<CacheEntryInfo> entries(3);
    entries[0].key = "a";
    entries[0].bytes = UINT64_MAX;
    entries[1].key = "b";
    entries[1].bytes = 2;
    entries[2].key = "c";
    entries[2].bytes = 100;
    entries[2].last_used_ns = 1;
    // Wrapped, the sum would be 101 and nothing would be evicted to make room for 10 under 200.
    assert_int_equal(plan_eviction(entries, 10, 200).size(), 1);
    Manifest m;
    m.entries = {{"a", EntryType::file, 0644, UINT64_MAX, {}, "", {}}, {"b", EntryType::file, 0644, 5, {}, "", {}}};
    assert_true(m.byte_count() == UINT64_MAX);
}

static void a_users_limits_keep_to_their_share_and_the_node_room(void**) {
    struct Case {
        const char* what;
        std::uint64_t max, low, user_max, own, claimed, others, want_max, want_low;
    } cases[] = {
        {"alone, no share set", 1000, 900, 0, 0, 0, 0, 1000, 900},
        {"the share caps", 1000, 900, 400, 0, 0, 0, 400, 360},
        {"others leave less than the share", 1000, 900, 400, 0, 0, 700, 300, 200},
        {"a full node leaves a one-byte cap, never none", 1000, 900, 400, 0, 0, 1000, 1, 0},
        {"another user's forged 18 EB is not in others", 1000, 900, 0, 0, 0, 100, 900, 800},
        {"overhead beyond what the stager counts is taken off", 1000, 900, 400, 150, 100, 0, 350, 310},
        {"a forged low claim costs its own user alone", 1000, 900, 400, 150, 0, 0, 250, 210},
        {"a forged high claim leaves the cap, and its stager counts it", 1000, 900, 400, 150, UINT64_MAX, 0, 400, 360},
        {"no cache_max: no cap", 0, 0, 0, 500, 0, 500, 0, 0},
        {"a share above cache_max is cache_max", 1000, 900, 5000, 0, 0, 0, 1000, 900},
    };
    for (const Case& c : cases) {
        CacheLimits l = plan_user_cache_limits(c.max, c.low, c.user_max, c.own, c.claimed, c.others);
        if (l.max_bytes != c.want_max || l.low_bytes != c.want_low) {
            print_error("%s: got max %llu low %llu\n", c.what, static_cast<unsigned long long>(l.max_bytes),
                        static_cast<unsigned long long>(l.low_bytes));
            fail();
        }
    }
}

// ---- measuring

static void a_measure_counts_blocks_and_never_follows_a_link(void**) {
    TempDir tmp;
    tmp.write("outside", std::string(4 * mib, 'o'));
    tmp.make_dir("tree/sub");
    tmp.write("tree/sub/f", std::string(mib, 'f'));
    assert_int_equal(::symlink((tmp.path() + "/outside").c_str(), (tmp.path() + "/tree/link").c_str()), 0);
    assert_int_equal(::symlink("..", (tmp.path() + "/tree/sub/up").c_str()), 0);
    UniqueFd root = open_dir(tmp.path());
    std::uint64_t budget = 1000;
    TreeMeasure m = measure_tree_at(root.get(), "tree", &budget);
    assert_true(m.complete);
    assert_int_equal(m.entries, 5);  // tree, sub, f, link, up
    assert_true(m.bytes >= mib);
    assert_true(m.bytes < 2 * mib);  // not the 4 MiB the link points at
    assert_int_equal(budget, 995);
}

static void a_measure_stops_at_its_entry_bound(void**) {
    TempDir tmp;
    tmp.make_dir("tree");
    for (int i = 0; i < 50; ++i) tmp.write("tree/f" + std::to_string(i), "x");
    UniqueFd root = open_dir(tmp.path());
    std::uint64_t budget = 10;
    TreeMeasure m = measure_tree_at(root.get(), "tree", &budget);
    assert_false(m.complete);
    assert_int_equal(m.entries, 10);
    assert_int_equal(budget, 0);
}

static void a_file_with_many_names_is_measured_once(void**) {
    TempDir tmp;
    tmp.make_dir("tree/sub");
    tmp.write("tree/big", std::string(2 * mib, 'b'));
    for (int i = 0; i < 200; ++i)
        assert_int_equal(::link((tmp.path() + "/tree/big").c_str(), (tmp.path() + "/tree/sub/l" + std::to_string(i)).c_str()), 0);
    UniqueFd root = open_dir(tmp.path());
    std::uint64_t budget = 1000;
    TreeMeasure m = measure_tree_at(root.get(), "tree", &budget);
    assert_true(m.complete);
    assert_true(m.linked);
    assert_int_equal(m.entries, 203);  // tree, sub, big, 200 links
    assert_int_equal(m.inodes, 3);
    assert_true(m.bytes >= 2 * mib);
    assert_true(m.bytes < 3 * mib);  // not 400 MiB
    // Seen in another tree of the same user already, it is not counted again.
    SeenInodes seen;
    std::uint64_t more = 1000;
    measure_tree_at(root.get(), "tree/big", &more, &seen);
    TreeMeasure again = measure_tree_at(root.get(), "tree/sub", &more, &seen);
    assert_int_equal(again.inodes, 1);
    assert_true(again.bytes < mib);
}

// ---- the ledger, as root

static void hard_links_across_a_users_cache_count_once_and_starve_no_one(void**) {
    if (skip_unless_root()) skip();
    TempDir tmp;
    tmp.make_dir("cache/1000/entries/" + key_a + "/data");
    tmp.write("cache/1000/j", std::string(4 * mib, 'j'));
    std::string big = tmp.path() + "/cache/1000/j";
    // Names spread over the rest of the cache dir and over entries of their own.
    tmp.make_dir("cache/1000/links");
    for (int i = 0; i < 300; ++i) {
        std::string n = std::to_string(i);
        assert_int_equal(::link(big.c_str(), (tmp.path() + "/cache/1000/links/" + n).c_str()), 0);
        if (i < 30) {
            tmp.make_dir("cache/1000/entries/e" + n);
            assert_int_equal(::link(big.c_str(), (tmp.path() + "/cache/1000/entries/e" + n + "/j").c_str()), 0);
        }
    }
    tmp.make_dir("cache/1001/entries");
    UniqueFd cache = open_dir(tmp.path() + "/cache");
    for (int pass = 0; pass < 2; ++pass) {  // the second reuses what it may of the first
        CacheLedger ledger = refresh_cache_ledger(cache.get(), tmp.path() + "/cache");
        assert_true(ledger.user_bytes(1000) >= 4 * mib);
        assert_true(ledger.user_bytes(1000) < 6 * mib);
        assert_true(ledger.user_inodes(1000) < 80);  // 1000, entries, links, the entry dirs, j once...
        CacheLimits other = root_cache_limits(cache.get(), 1001, 100 * mib, 90 * mib, 0, tmp.path() + "/cache");
        assert_true(other.max_bytes > 90 * mib);
    }
}

static void a_users_cache_at_its_inode_cap_has_no_room_left(void**) {
    if (skip_unless_root()) skip();
    TempDir tmp;
    tmp.make_dir("cache/1000/entries");
    tmp.make_dir("cache/1000/empty");
    for (int i = 0; i < 100; ++i) tmp.write("cache/1000/empty/" + std::to_string(i), "");
    UniqueFd cache = open_dir(tmp.path() + "/cache");
    // Empty files cost no bytes, but each is an inode.
    CacheLimits roomy = root_cache_limits(cache.get(), 1000, 100 * mib, 90 * mib, 0, tmp.path() + "/cache", 1000);
    assert_true(roomy.max_inodes.has_value() && *roomy.max_inodes > 800 && *roomy.max_inodes < 900);
    assert_int_equal(roomy.inode_cap, 1000);
    CacheLimits full = root_cache_limits(cache.get(), 1000, 100 * mib, 90 * mib, 0, tmp.path() + "/cache", 100);
    assert_true(full.max_inodes.has_value() && *full.max_inodes == 0);
    assert_false(root_cache_limits(cache.get(), 1000, 100 * mib, 90 * mib, 0, tmp.path() + "/cache", 0).max_inodes.has_value());
    // Another user keeps their own room.
    tmp.make_dir("cache/1001");
    assert_true(*root_cache_limits(cache.get(), 1001, 100 * mib, 90 * mib, 0, tmp.path() + "/cache", 100).max_inodes > 90);
}

static void a_stage_past_the_inode_room_is_refused_naming_the_cap(void**) {
    TempDir tmp;
    tmp.make_dir("src");
    for (int i = 0; i < 20; ++i) tmp.write("src/f" + std::to_string(i), "");
    write_zero_tar(tmp.path() + "/many.tar.zst", 0, 20);
    StageSettings settings;
    settings.to_dir = tmp.path() + "/to";
    settings.cache_dir = tmp.path() + "/cache";
    settings.limits = CacheLimits{8 * mib, 4 * mib, 10, 1000};
    settings.uid = ::geteuid();
    expect_error_containing([&] { stage_in(tmp.path() + "/src", "src", settings); }, "cache_user_inodes cap of 1000");
    expect_error_containing([&] { stage_in(tmp.path() + "/many.tar.zst", "many", settings); }, "cache_user_inodes cap");
    assert_false(exists(tmp.path() + "/to/src"));
    assert_int_equal(count_entries(tmp.path() + "/cache/entries"), 0);
    settings.limits.max_inodes = 30;
    stage_in(tmp.path() + "/src", "src", settings);
    // At the cap, what the cache holds is still served...
    settings.limits.max_inodes = 0;
    settings.to_dir = tmp.path() + "/to2";
    assert_string_equal(to_string(stage_in(tmp.path() + "/src", "src", settings).outcome), "hit");
    expect_error_containing([&] { stage_in(tmp.path() + "/many.tar.zst", "many", settings); }, "cache_user_inodes cap");
    // ...and a private copy is not in the cache.
    settings.private_mode = true;
    stage_in(tmp.path() + "/many.tar.zst", "many", settings);
}


static void a_forged_info_file_starves_no_one(void**) {
    if (skip_unless_root()) skip();
    TempDir tmp;
    tmp.make_dir("cache/1000/entries/" + key_a + "/data");
    tmp.write("cache/1000/entries/" + key_a + "/info", "key=" + key_a + "\nbytes=18000000000000000000\n");
    tmp.make_dir("cache/1001/entries");
    UniqueFd cache = open_dir(tmp.path() + "/cache");
    CacheLimits limits = root_cache_limits(cache.get(), 1001, 100 * mib, 90 * mib, 0, tmp.path() + "/cache");
    assert_true(limits.max_bytes > 99 * mib);  // 1000 holds a few blocks, whatever it claims
    assert_true(limits.low_bytes > 89 * mib);
    // The forger's own limits are whole too: a high claim is only what its stager counts.
    CacheLimits own = root_cache_limits(cache.get(), 1000, 100 * mib, 90 * mib, 0, tmp.path() + "/cache");
    assert_true(own.max_bytes > 99 * mib);
}

static void the_ledger_is_roots_alone_and_measures_what_users_hold(void**) {
    if (skip_unless_root()) skip();
    TempDir tmp;
    tmp.make_dir("cache/1000/entries/" + key_a + "/data");
    tmp.write("cache/1000/entries/" + key_a + "/data/f", std::string(2 * mib, 'a'));
    UniqueFd cache = open_dir(tmp.path() + "/cache");
    root_account_user_cache(cache.get(), 1000, tmp.path() + "/cache");
    struct stat st {};
    assert_int_equal(::lstat((tmp.path() + "/cache/ledger").c_str(), &st), 0);
    assert_int_equal(st.st_uid, 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    CacheLedger ledger = read_cache_ledger(cache.get());
    assert_true(ledger.user_bytes(1000) >= 2 * mib);
    assert_true(ledger.other_users_bytes(1000) == 0);

    // A ledger root did not write is not believed.
    ::chmod((tmp.path() + "/cache/ledger").c_str(), 0644);
    assert_int_equal(read_cache_ledger(cache.get()).records.size(), 0);
}

static void a_changed_entry_is_measured_again(void**) {
    if (skip_unless_root()) skip();
    TempDir tmp;
    std::string entry = "cache/1000/entries/" + key_a;
    tmp.make_dir(entry + "/data");
    UniqueFd cache = open_dir(tmp.path() + "/cache");
    root_account_user_cache(cache.get(), 1000, tmp.path() + "/cache");
    std::uint64_t before = read_cache_ledger(cache.get()).user_bytes(1000);
    // Writing below the entry's top directory changes its ctime.
    tmp.write(entry + "/grown", std::string(3 * mib, 'g'));
    root_account_user_cache(cache.get(), 1000, tmp.path() + "/cache");
    std::uint64_t after = read_cache_ledger(cache.get()).user_bytes(1000);
    assert_true(after >= before + 3 * mib);
}

static void a_killed_producers_temporary_counts_until_removed(void**) {
    if (skip_unless_root()) skip();
    TempDir tmp;
    std::string temp = "cache/1000/entries/.tmp." + key_a + ".4242.0";
    tmp.make_dir(temp + "/data");
    tmp.write(temp + "/data/half", std::string(8 * mib, 't'));
    tmp.make_dir("cache/1001");
    UniqueFd cache = open_dir(tmp.path() + "/cache");
    CacheLimits while_there = root_cache_limits(cache.get(), 1001, 100 * mib, 90 * mib, 0, tmp.path() + "/cache");
    assert_true(while_there.max_bytes <= 92 * mib);
    UniqueFd entries = open_dir(tmp.path() + "/cache/1000/entries");
    assert_true(remove_tree_at(entries.get(), ".tmp." + key_a + ".4242.0"));
    // Counted as recorded until its user's cache is measured again.
    root_account_user_cache(cache.get(), 1000, tmp.path() + "/cache");
    CacheLimits after = root_cache_limits(cache.get(), 1001, 100 * mib, 90 * mib, 0, tmp.path() + "/cache");
    assert_true(after.max_bytes > 99 * mib);
}

static void a_killed_producers_temporary_is_removed_at_prepare(void**) {
    if (skip_unless_root()) skip();
    pid_t gone = ::fork();
    if (gone == 0) ::_exit(0);
    assert_int_equal(::waitpid(gone, nullptr, 0), gone);
    TempDir tmp;
    std::string dead = ".tmp." + key_a + "." + std::to_string(gone) + ".0";
    std::string live = ".tmp." + key_a + "." + std::to_string(::getpid()) + ".1";
    tmp.make_dir("cache/1000/entries/" + dead + "/data/deep/er");
    tmp.write("cache/1000/entries/" + dead + "/data/deep/er/half", std::string(8 * mib, 't'));
    ::chmod((tmp.path() + "/cache/1000/entries/" + dead + "/data/deep").c_str(), 0555);
    tmp.make_dir("cache/1000/entries/" + live + "/data");
    tmp.make_dir("cache/1000/entries/.tmp.not-a-key");
    UniqueFd cache = open_dir(tmp.path() + "/cache");
    CacheLimits limits = root_cache_limits(cache.get(), 1000, 100 * mib, 90 * mib, 0, tmp.path() + "/cache");
    assert_false(exists(tmp.path() + "/cache/1000/entries/" + dead));
    assert_true(exists(tmp.path() + "/cache/1000/entries/" + live));  // its producer still runs
    assert_true(exists(tmp.path() + "/cache/1000/entries/.tmp.not-a-key"));
    assert_true(limits.max_bytes > 99 * mib);  // and what was removed is not counted
}

static void a_prepare_measures_its_own_user_alone(void**) {
    if (skip_unless_root()) skip();
    TempDir tmp;
    tmp.make_dir("cache/1000/entries/" + key_a + "/data");
    tmp.write("cache/1000/entries/" + key_a + "/data/f", std::string(2 * mib, 'a'));
    tmp.make_dir("cache/1001/entries");
    UniqueFd cache = open_dir(tmp.path() + "/cache");
    root_cache_limits(cache.get(), 1001, 100 * mib, 90 * mib, 0, tmp.path() + "/cache");  // a new ledger: everyone
    CacheLedger before = read_cache_ledger(cache.get());
    // What 1000 holds now is not walked by 1001's prepare: its records stay as they were...
    tmp.make_dir("cache/1000/many");
    for (int i = 0; i < 500; ++i) tmp.write("cache/1000/many/" + std::to_string(i), "m");
    tmp.write("cache/1001/own", std::string(mib, 'o'));
    root_cache_limits(cache.get(), 1001, 100 * mib, 90 * mib, 0, tmp.path() + "/cache");
    CacheLedger after = read_cache_ledger(cache.get());
    assert_true(after.user_bytes(1000) == before.user_bytes(1000));
    assert_true(after.user_inodes(1000) == before.user_inodes(1000));
    assert_true(after.user_bytes(1001) >= before.user_bytes(1001) + mib);  // ...while 1001 is measured again
    // ...until 1000's own prepare.
    root_cache_limits(cache.get(), 1000, 100 * mib, 90 * mib, 0, tmp.path() + "/cache");
    assert_true(read_cache_ledger(cache.get()).user_inodes(1000) >= before.user_inodes(1000) + 500);
    // A cache dir that is gone from cache/ counts no more, whoever prepares.
    UniqueFd top = open_dir(tmp.path() + "/cache");
    assert_true(remove_tree_at(top.get(), "1000"));
    root_cache_limits(cache.get(), 1001, 100 * mib, 90 * mib, 0, tmp.path() + "/cache");
    assert_int_equal(read_cache_ledger(cache.get()).user_bytes(1000), 0);
}

static void a_kept_job_dir_counts_against_its_user(void**) {
    if (skip_unless_root()) skip();
    TempDir tmp;
    tmp.make_dir("cache/1000");
    tmp.make_dir("jobs/7");
    tmp.write("jobs/7/results", std::string(4 * mib, 'r'));
    assert_int_equal(::chown((tmp.path() + "/jobs/7").c_str(), 1000, 1000), 0);
    mark_job_kept(tmp.path(), 7, 1000, "cannot write /home/u/out");
    UniqueFd cache = open_dir(tmp.path() + "/cache");
    CacheLedger ledger = refresh_cache_ledger(cache.get(), tmp.path() + "/cache");
    assert_true(ledger.user_bytes(1000) >= 4 * mib);
    CacheLimits own = root_cache_limits(cache.get(), 1000, 100 * mib, 90 * mib, 0, tmp.path() + "/cache");
    assert_true(own.max_bytes <= 96 * mib);
}

// A running job's private copy takes the node's disk like a cache entry: it counts
// against its user from the next measure, and is gone from the books once the job dir is.
static void a_running_jobs_private_copy_counts_against_its_user(void**) {
    if (skip_unless_root()) skip();
    TempDir tmp;
    tmp.make_dir("cache/1000");
    tmp.make_dir("cache/1001");
    tmp.make_dir("jobs/8/data");
    tmp.write("jobs/8/data/f", std::string(6 * mib, 'p'));
    assert_int_equal(::chown((tmp.path() + "/jobs/8").c_str(), 1000, 1000), 0);
    UniqueFd cache = open_dir(tmp.path() + "/cache");
    CacheLimits own = root_cache_limits(cache.get(), 1000, 100 * mib, 90 * mib, 0, tmp.path() + "/cache");
    assert_true(own.max_bytes <= 94 * mib);
    // Another user's prepare takes it as recorded, against the node's room.
    CacheLimits other = root_cache_limits(cache.get(), 1001, 100 * mib, 90 * mib, 0, tmp.path() + "/cache");
    assert_true(other.max_bytes <= 94 * mib);
    UniqueFd root = open_dir(tmp.path());
    assert_true(remove_tree_at(root.get(), "jobs/8"));
    root_cache_limits(cache.get(), 1001, 100 * mib, 90 * mib, 0, tmp.path() + "/cache");
    assert_true(read_cache_ledger(cache.get()).user_bytes(1000) < mib);  // its empty cache dir alone
}

// ---- the process that holds a step's leases for slurmstepd

static bool exclusive_lock_free(const std::string& path) {
    UniqueFd probe(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    return probe && ::flock(probe.get(), LOCK_EX | LOCK_NB) == 0;
}

static int wait_within_5s(pid_t pid) {
    for (int i = 0; i < 500; ++i) {
        int status = 0;
        if (::waitpid(pid, &status, WNOHANG) == pid) return status;
        ::usleep(10'000);
    }
    return -1;
}

// A shared flock on `lock`, handed to a lease holder; the caller's own copy is closed,
// so the holder's alone keeps the lock.
static LeaseHolder holder_of_a_lease_on(const std::string& lock) {
    UniqueFd lease(::open(lock.c_str(), O_RDONLY | O_CLOEXEC));
    assert_int_equal(::flock(lease.get(), LOCK_SH), 0);
    return hold_leases({lease.get()});
}

static void the_lease_holder_keeps_the_leases_until_its_pipe_closes(void**) {
    TempDir tmp;
    tmp.write("k.lock", "");
    std::string lock = tmp.path() + "/k.lock";
    LeaseHolder holder = holder_of_a_lease_on(lock);
    assert_true(holder.release && holder.pidfd);
    ::usleep(50'000);
    assert_false(exclusive_lock_free(lock));
    holder.release.reset();  // the step ended, or slurmstepd died
    int status = wait_within_5s(holder.pid);
    assert_true(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_true(exclusive_lock_free(lock));
}

static void a_stopped_lease_holder_ends_with_the_step(void**) {
    TempDir tmp;
    tmp.write("k.lock", "");
    std::string lock = tmp.path() + "/k.lock";
    LeaseHolder holder = holder_of_a_lease_on(lock);
    // SIGTERM is ignored; SIGSTOP stops it, and then its pipe's close alone would not end it.
    ::kill(holder.pid, SIGTERM);
    ::kill(holder.pid, SIGSTOP);
    ::usleep(50'000);
    assert_false(exclusive_lock_free(lock));
    std::vector<UniqueFd> at_slurmstepd;
    at_slurmstepd.push_back(std::move(holder.release));
    at_slurmstepd.push_back(std::move(holder.pidfd));
    end_lease_holder(at_slurmstepd);
    assert_true(at_slurmstepd.empty());
    int status = wait_within_5s(holder.pid);
    assert_true(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    assert_true(exclusive_lock_free(lock));
}

// A stager whose 0 and 1 were closed: the lease lands on 0, the holder's pipe on 1, and
// /dev/null replaces neither.
static void the_lease_holder_keeps_a_lease_and_its_pipe_on_0_to_2(void**) {
    TempDir tmp;
    tmp.write("k.lock", "");
    std::string lock = tmp.path() + "/k.lock";
    UniqueFd saved_in(::fcntl(0, F_DUPFD_CLOEXEC, 3)), saved_out(::fcntl(1, F_DUPFD_CLOEXEC, 3));
    assert_true(saved_in && saved_out);
    ::close(0);
    ::close(1);
    int lease = ::open(lock.c_str(), O_RDONLY | O_CLOEXEC);
    bool locked = lease == 0 && ::flock(lease, LOCK_SH) == 0;
    LeaseHolder holder = hold_leases({lease});
    ::dup2(saved_in.get(), 0);
    ::dup2(saved_out.get(), 1);
    assert_true(locked);
    ::usleep(50'000);
    assert_int_equal(::waitpid(holder.pid, nullptr, WNOHANG), 0);
    assert_false(exclusive_lock_free(lock));
    holder.release.reset();
    int status = wait_within_5s(holder.pid);
    assert_true(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_true(exclusive_lock_free(lock));
}

// The stager as aihpc-node runs it: the leader of a process group of its own, with the
// result socket on fd 4, which slurmstepd reads to its end and then kills the whole
// group (common/node_helper.hpp). Once told to go, it takes a lease, starts the holder,
// hands the pipe and the pidfd with the holder's pid to slurmstepd, and exits.
static void stage_and_exit(const void* context) noexcept {
    char go;
    if (::read(helper_result_fd, &go, 1) != 1) ::_exit(2);
    UniqueFd lease(::open(static_cast<const char*>(context), O_RDONLY | O_CLOEXEC));
    if (!lease || ::flock(lease.get(), LOCK_SH) != 0) ::_exit(2);
    LeaseHolder holder = hold_leases({lease.get()});
    int fds[2] = {holder.release.get(), holder.pidfd.get()};
    struct iovec iov = {&holder.pid, sizeof holder.pid};
    alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof fds)] = {};
    struct msghdr msg {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    struct cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof fds);
    std::memcpy(CMSG_DATA(cm), fds, sizeof fds);
    ::_exit(::sendmsg(helper_result_fd, &msg, 0) == static_cast<ssize_t>(sizeof holder.pid) ? 0 : 3);
}

// The holder's pid, pipe and pidfd, as the stager handed them over.
static pid_t receive_holder(int socket, std::vector<UniqueFd>& fds) {
    pid_t pid = -1;
    struct iovec iov = {&pid, sizeof pid};
    alignas(struct cmsghdr) char control[CMSG_SPACE(2 * sizeof(int))] = {};
    struct msghdr msg {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    assert_int_equal(::recvmsg(socket, &msg, MSG_CMSG_CLOEXEC), sizeof pid);
    struct cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    assert_non_null(cm);
    int got[2];
    std::memcpy(got, CMSG_DATA(cm), sizeof got);
    fds.emplace_back(got[0]);
    fds.emplace_back(got[1]);
    return pid;
}

static bool at_its_end(int socket) {
    char byte;
    return ::recv(socket, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

// slurmstepd reads the stager's socket to its end, then kills the stager's group. The
// holder inherits the socket, so the end comes only once the holder closed its copy: by
// then the holder must be in a session of its own, or the kill takes it and its leases.
// However the scheduler orders the two (on a busy node, slurmstepd may run the moment
// the holder's close wakes it): here the holder runs one system call at a time under
// ptrace, after the stager exited, and the group is killed at the first stop after the
// socket's end.
static void the_lease_holder_has_left_the_stagers_group_before_slurmstepd_sees_it_done(void**) {
    TempDir tmp;
    tmp.write("k.lock", "");
    std::string lock = tmp.path() + "/k.lock";
    int sockets[2];
    assert_int_equal(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets), 0);
    UniqueFd ours(sockets[0]), theirs(sockets[1]);
    UniqueFd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    SpawnPlan plan;
    plan.fds = {{helper_result_fd, theirs.get()}, {0, null.get()}, {1, 1}, {2, 2}};
    plan.group = ChildGroup::own_group;
    ChildProcess stager = spawn_function(plan, stage_and_exit, lock.c_str());
    const pid_t group = stager.pid();
    theirs.reset();
    if (::ptrace(PTRACE_SEIZE, group, nullptr, PTRACE_O_TRACEFORK | PTRACE_O_EXITKILL) != 0) {
        print_message("skipped: ptrace is not allowed here (%s)\n", std::strerror(errno));
        return;
    }
    assert_int_equal(::write(ours.get(), "g", 1), 1);
    // The stager runs to its exit; the holder it forks waits, stopped, at its first step.
    pid_t holder = -1;
    int status = 0;
    for (;;) {
        assert_int_equal(::waitpid(group, &status, __WALL), group);
        if (WIFEXITED(status) || WIFSIGNALED(status)) break;
        if (status >> 8 == (SIGTRAP | (PTRACE_EVENT_FORK << 8))) {
            unsigned long child = 0;
            assert_int_equal(::ptrace(PTRACE_GETEVENTMSG, group, nullptr, &child), 0);
            holder = static_cast<pid_t>(child);
        }
        int deliver = WSTOPSIG(status) == SIGTRAP || status >> 16 == PTRACE_EVENT_STOP ? 0 : WSTOPSIG(status);
        ::ptrace(PTRACE_CONT, group, nullptr, deliver);
    }
    stager.forget();
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_true(holder > 0);
    std::vector<UniqueFd> at_slurmstepd;
    assert_int_equal(receive_holder(ours.get(), at_slurmstepd), holder);
    // The holder, one system call at a time, until the socket ends; then the kill.
    bool ended = false;
    for (int stop = 0; stop < 10'000; ++stop) {
        assert_int_equal(::waitpid(holder, &status, __WALL), holder);
        if (!WIFSTOPPED(status)) break;
        if (at_its_end(ours.get())) {
            ::kill(-group, SIGKILL);
            ended = true;
            break;
        }
        int deliver = WSTOPSIG(status) == (SIGTRAP | 0x80) || WSTOPSIG(status) == SIGTRAP || status >> 16 == PTRACE_EVENT_STOP
                          ? 0
                          : WSTOPSIG(status);
        ::ptrace(PTRACE_SYSCALL, holder, nullptr, deliver);
    }
    assert_true(ended);
    ::ptrace(PTRACE_DETACH, holder, nullptr, 0);
    ::usleep(50'000);
    struct pollfd exited {at_slurmstepd[1].get(), POLLIN, 0};
    if (::poll(&exited, 1, 0) != 0) fail_msg("the lease holder %d died with the stager's group", static_cast<int>(holder));
    assert_false(exclusive_lock_free(lock));
    end_lease_holder(at_slurmstepd);
    // The holder is no child of ours: its lease is free once the kill took it.
    for (int i = 0; i < 500 && !exclusive_lock_free(lock); ++i) ::usleep(10'000);
    assert_true(exclusive_lock_free(lock));
}

// ---- the user's stager keeps to its share

static void a_stager_over_its_share_is_refused_with_its_share_named(void**) {
    TempDir tmp;
    tmp.make_dir("src");
    tmp.write("src/f", std::string(2 * mib, 's'));
    StageSettings settings;
    settings.to_dir = tmp.path() + "/to";
    settings.cache_dir = tmp.path() + "/cache";
    settings.limits = CacheLimits{mib, mib / 2};
    settings.uid = ::geteuid();
    expect_error_containing([&] { stage_in(tmp.path() + "/src", "src", settings); }, "share of the node cache is 1048576 bytes");
    assert_false(exists(tmp.path() + "/to/src"));
    // A private copy takes the same disk, so it is held to the same share...
    settings.private_mode = true;
    expect_error_containing([&] { stage_in(tmp.path() + "/src", "src", settings); },
                            "a private copy of 2097152 bytes does not fit this user's room on the node");
    assert_int_equal(count_entries(tmp.path() + "/to"), 0);
    // ...and within it, it is made, and no cache entry is.
    settings.limits = CacheLimits{8 * mib, 4 * mib};
    stage_in(tmp.path() + "/src", "src", settings);
    assert_true(exists(tmp.path() + "/to/src/f"));
    assert_int_equal(count_entries(tmp.path() + "/cache/entries"), 0);
}

// ---- copies in flight: promised under a lock before they copy

static void promises_read_back_and_skip_what_is_malformed(void**) {
    std::vector<RoomPromise> book = {{1000, 42, 777, 5 * mib, 1700000000}, {1001, 43, 778, UINT64_MAX, 1700000001}};
    std::vector<RoomPromise> back =
        parse_room_promises(format_room_promises(book) + "garbage\n1000 0 1 2 3\n1 2 3\n1000 44 9 -5 1\n1000 45");
    assert_int_equal(back.size(), 2);
    assert_int_equal(back[1].uid, 1001);
    assert_int_equal(back[1].pid, 43);
    assert_true(back[1].bytes == UINT64_MAX);
    PromisedBytes sum = promised_bytes(back, 1001, 0);
    assert_int_equal(sum.own, UINT64_MAX);
    assert_int_equal(sum.others, 5 * mib);
    // A process's own promises are not counted against it twice.
    assert_int_equal(promised_bytes(back, 1001, 43).own, 0);
    // Saturating: two forged 16 EB promises are full, not small.
    back.push_back(back[1]);
    back.back().uid = 1002;
    assert_true(promised_bytes(back, 1000, 0).others == UINT64_MAX);
}

static void a_promise_lives_as_long_as_its_process(void**) {
    RoomPromise self{1000, ::getpid(), *process_start_time(::getpid()), 1, 0};
    assert_true(promise_holder_alive(self));
    RoomPromise reused = self;
    reused.start += 1;  // the same PID, another process
    assert_false(promise_holder_alive(reused));
    RoomPromise gone = self;
    gone.pid = 4194304;
    assert_false(promise_holder_alive(gone));
}

static void copies_in_flight_count_against_the_share_and_the_node(void**) {
    struct Case {
        const char* what;
        std::uint64_t user_max, others, own_promised, others_promised, want_max;
    } cases[] = {
        {"nothing in flight", 400, 0, 0, 0, 400},
        {"another user's copy takes the node's room", 0, 200, 0, 700, 100},
        {"another user's copy leaves the share be while the node has room", 400, 0, 0, 500, 400},
        {"the user's own other copy takes their share", 400, 0, 100, 0, 300},
        {"forged 16 EB in flight leave a one-byte cap, never none", 0, 0, 0, UINT64_MAX, 1},
    };
    for (const Case& c : cases) {
        CacheLimits l = plan_user_cache_limits(1000, 900, c.user_max, 0, 0, c.others, PromisedBytes{c.own_promised, c.others_promised});
        if (l.max_bytes != c.want_max) {
            print_error("%s: got max %llu\n", c.what, static_cast<unsigned long long>(l.max_bytes));
            fail();
        }
    }
}

// Two users stage at once: each is planned before the other copies, so without promises
// both would take the node's whole room.
static void concurrent_stages_never_pass_cache_max(void**) {
    if (skip_unless_root()) skip();
    TempDir tmp;
    tmp.make_dir("cache/1000/entries");
    tmp.make_dir("cache/1001/entries");
    ::chmod((tmp.path() + "/cache").c_str(), 0711);
    UniqueFd cache = open_dir(tmp.path() + "/cache");
    RoomPromises first, second;
    CacheLimits limits_first = root_cache_limits(cache.get(), 1000, 10 * mib, 9 * mib, 0, tmp.path() + "/cache",
                                                 config::default_cache_user_inodes, &first);
    CacheLimits limits_second = root_cache_limits(cache.get(), 1001, 10 * mib, 9 * mib, 0, tmp.path() + "/cache",
                                                  config::default_cache_user_inodes, &second);
    assert_true(first.open() && second.open());
    assert_true(limits_first.max_bytes >= 9 * mib && limits_second.max_bytes >= 9 * mib);

    tmp.make_dir("src");
    tmp.write("src/f", std::string(6 * mib, 's'));
    StageSettings settings;
    settings.to_dir = tmp.path() + "/to-first";
    settings.cache_dir = tmp.path() + "/stager-first";
    settings.limits = limits_first;
    settings.promises = &first;
    settings.uid = ::geteuid();
    // The stager runs in this process: a promise by this PID would not count against the
    // second, so the first's is made to stand for a live process of user 1000 (our parent).
    stage_in(tmp.path() + "/src", "src", settings);
    std::string text = tmp.read("cache/promises");
    std::vector<RoomPromise> book = parse_room_promises(text);
    assert_int_equal(book.size(), 1);
    assert_int_equal(book[0].uid, 1000);
    assert_true(book[0].bytes >= 6 * mib);
    book[0].pid = ::getppid();
    book[0].start = *process_start_time(::getppid());
    tmp.write("cache/promises", format_room_promises(book), 0600);

    settings.to_dir = tmp.path() + "/to-second";
    settings.cache_dir = tmp.path() + "/stager-second";
    settings.limits = limits_second;
    settings.promises = &second;
    expect_error_containing([&] { stage_in(tmp.path() + "/src", "src", settings); }, "cannot take");
    assert_false(exists(tmp.path() + "/to-second/src"));

    // Once root has measured user 1000 after its copy ended, its promise is settled.
    book[0].pid = 4194304;
    tmp.write("cache/promises", format_room_promises(book), 0600);
    RoomPromises::settle_as_root(cache.get(), 1000, tmp.path() + "/cache");
    assert_int_equal(parse_room_promises(tmp.read("cache/promises")).size(), 0);
}

// ---- archives

static void an_archive_bomb_is_abandoned_whole_in_cache_mode(void**) {
    TempDir tmp;
    write_zero_tar(tmp.path() + "/bomb.tar.zst", 16 * mib, 4);
    struct stat st {};
    assert_int_equal(::stat((tmp.path() + "/bomb.tar.zst").c_str(), &st), 0);
    assert_true(static_cast<std::uint64_t>(st.st_size) < mib);  // what a size check would let in
    StageSettings settings;
    settings.to_dir = tmp.path() + "/to";
    settings.cache_dir = tmp.path() + "/cache";
    settings.limits = CacheLimits{8 * mib, 4 * mib};
    settings.uid = ::geteuid();
    expect_error_containing([&] { stage_in(tmp.path() + "/bomb.tar.zst", "bomb", settings); }, "expands to more than");
    assert_false(exists(tmp.path() + "/to/bomb"));
    assert_int_equal(count_entries(tmp.path() + "/cache/entries"), 0);  // no temporary left
}

static void an_archive_within_the_room_is_extracted(void**) {
    TempDir tmp;
    write_zero_tar(tmp.path() + "/fits.tar.zst", mib, 2);
    StageSettings settings;
    settings.to_dir = tmp.path() + "/to";
    settings.cache_dir = tmp.path() + "/cache";
    settings.limits = CacheLimits{8 * mib, 4 * mib};
    settings.uid = ::geteuid();
    StagedItem item = stage_in(tmp.path() + "/fits.tar.zst", "fits", settings);
    assert_int_equal(item.bytes, 2 * mib);
    assert_true(exists(tmp.path() + "/to/fits/zeros1"));
}

static void extraction_stops_at_the_entry_count_and_the_expansion_ratio(void**) {
    TempDir tmp;
    write_zero_tar(tmp.path() + "/many.tar.zst", 10, 20);
    write_zero_tar(tmp.path() + "/dense.tar.zst", 8 * mib, 1);
    UniqueFd dir = open_dir(tmp.path());
    UniqueFd many(::open((tmp.path() + "/many.tar.zst").c_str(), O_RDONLY | O_CLOEXEC));
    ExtractLimits few;
    few.max_entries = 5;
    expect_error_containing([&] { extract_archive(many.get(), dir.get(), "m", false, false, nullptr, "many", "m", few); },
                            "more than 5 entries");
    UniqueFd dense(::open((tmp.path() + "/dense.tar.zst").c_str(), O_RDONLY | O_CLOEXEC));
    ExtractLimits ratio;
    ratio.max_ratio = 10;
    ratio.ratio_floor = mib;
    expect_error_containing([&] { extract_archive(dense.get(), dir.get(), "d", false, false, nullptr, "dense", "d", ratio); },
                            "expands more than 10 times");
}

static void extraction_charges_whole_blocks(void**) {
    assert_int_equal(extracted_charge(ArchiveEntryKind::file, 0), 0);
    assert_int_equal(extracted_charge(ArchiveEntryKind::file, 1), 4096);
    assert_int_equal(extracted_charge(ArchiveEntryKind::file, 4097), 8192);
    assert_int_equal(extracted_charge(ArchiveEntryKind::directory, 0), 4096);
    assert_int_equal(extracted_charge(ArchiveEntryKind::symlink, 100), 0);
    assert_true(extracted_charge(ArchiveEntryKind::file, UINT64_MAX) == UINT64_MAX);
}

// ---- locks

static void a_held_cache_lock_fails_naming_it_instead_of_hanging(void**) {
    TempDir tmp;
    NodeCache cache(tmp.path() + "/cache");
    cache.set_lock_wait(200ms);
    std::string lock_path = tmp.path() + "/cache/locks/" + key_a + ".lock";
    // Another open file description: its flock conflicts as another process's would.
    UniqueFd held(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    assert_int_equal(::flock(held.get(), LOCK_EX), 0);
    expect_error_containing(
        [&] { cache.obtain(key_a, 0, {}, [](int, const std::string&) -> Manifest { return Manifest{}; }); },
        "gave up waiting for the lock " + lock_path);
}

static void a_fifo_as_lock_file_is_refused_at_once(void**) {
    TempDir tmp;
    NodeCache cache(tmp.path() + "/cache");
    std::string lock_path = tmp.path() + "/cache/locks/" + key_a + ".lock";
    assert_int_equal(::mkfifo(lock_path.c_str(), 0600), 0);
    expect_error_containing(
        [&] { cache.obtain(key_a, 0, {}, [](int, const std::string&) -> Manifest { return Manifest{}; }); },
        "is not a regular file");
    expect_error_containing([&] { cache.lease(key_a); }, "is not a regular file");
}

static void the_job_lock_waits_a_bounded_time(void**) {
    TempDir tmp;
    UniqueFd meta = open_dir(tmp.path());
    UniqueFd first = lock_job_meta(meta.get(), 1s, tmp.path());
    expect_error_containing([&] { lock_job_meta(meta.get(), 100ms, tmp.path()); }, tmp.path() + "/lock");
    first.reset();
    UniqueFd again = lock_job_meta(meta.get(), 1s, tmp.path());
    assert_true(static_cast<bool>(again));
}

// ---- verification

static void verify_catches_a_source_changed_behind_a_cache_hit(void**) {
    TempDir tmp;
    tmp.make_dir("src");
    std::string file = tmp.write("src/f", std::string(1000, 'a'));
    StageSettings settings;
    settings.to_dir = tmp.path() + "/to";
    settings.cache_dir = tmp.path() + "/cache";
    settings.uid = ::geteuid();
    settings.verify = true;
    StagedItem first = stage_in(tmp.path() + "/src", "src", settings);
    assert_int_equal(static_cast<int>(first.outcome), static_cast<int>(StageOutcome::miss));
    // Same size, same mtime: only the content differs. The new ctime makes it a miss,
    // so it is staged anew rather than served.
    struct stat st {};
    assert_int_equal(::stat(file.c_str(), &st), 0);
    tmp.write("src/f", std::string(1000, 'b'));
    struct timespec times[2] = {st.st_atim, st.st_mtim};
    assert_int_equal(::utimensat(AT_FDCWD, file.c_str(), times, 0), 0);
    settings.to_dir = tmp.path() + "/to2";
    StagedItem second = stage_in(tmp.path() + "/src", "src", settings);
    assert_int_equal(static_cast<int>(second.outcome), static_cast<int>(StageOutcome::miss));
    // A cached copy that no longer equals the source (damaged on disk) fails a verified hit.
    std::string cached = second.data_path + "/f";
    struct stat dir_st {}, file_st {};
    assert_int_equal(::stat(second.data_path.c_str(), &dir_st), 0);
    assert_int_equal(::stat(cached.c_str(), &file_st), 0);
    ::chmod(second.data_path.c_str(), 0700);
    ::chmod(cached.c_str(), 0600);
    tmp.write(cached.substr(tmp.path().size() + 1), std::string(1000, 'c'));
    settings.to_dir = tmp.path() + "/to3";
    expect_error_containing([&] { stage_in(tmp.path() + "/src", "src", settings); }, "no longer matches its cached copy");
    // Unchanged, a verified hit passes.
    tmp.write(cached.substr(tmp.path().size() + 1), std::string(1000, 'b'));
    ::chmod(cached.c_str(), file_st.st_mode & 07777);
    ::chmod(second.data_path.c_str(), dir_st.st_mode & 07777);
    settings.to_dir = tmp.path() + "/to4";
    StagedItem hit = stage_in(tmp.path() + "/src", "src", settings);
    assert_int_equal(static_cast<int>(hit.outcome), static_cast<int>(StageOutcome::hit));
}

// ---- durability

static void fsync_tree_flushes_a_tree_without_following_or_blocking(void**) {
    TempDir tmp;
    tmp.make_dir("tree/a/b");
    for (int i = 0; i < 200; ++i) tmp.write("tree/a/f" + std::to_string(i), "x");
    tmp.write("tree/a/b/g", "y");
    assert_int_equal(::symlink("/nonexistent", (tmp.path() + "/tree/dangling").c_str()), 0);
    assert_int_equal(::mkfifo((tmp.path() + "/tree/fifo").c_str(), 0600), 0);  // opened O_NONBLOCK, skipped
    UniqueFd tree = open_dir(tmp.path() + "/tree");
    fsync_tree(tree.get(), 4, tmp.path() + "/tree");
    UniqueFd parent = open_dir(tmp.path());
    fsync_item_at(parent.get(), "tree", 1, tmp.path() + "/tree");
    expect_error_containing([&] { fsync_item_at(parent.get(), "missing", 2, tmp.path() + "/missing"); },
                            tmp.path() + "/missing");
}

// The files whose writeback is under way stay open until they are waited for: never
// more than the process may open, even with a low descriptor limit and many files.
static void fsync_tree_stays_within_the_descriptor_limit(void**) {
    TempDir tmp;
    tmp.make_dir("tree/d");
    for (int i = 0; i < 600; ++i) tmp.write("tree/d/f" + std::to_string(i), std::string(100, 'z'));
    UniqueFd tree = open_dir(tmp.path() + "/tree");
    struct rlimit saved {};
    assert_int_equal(::getrlimit(RLIMIT_NOFILE, &saved), 0);
    struct rlimit low = saved;
    low.rlim_cur = 100;
    assert_int_equal(::setrlimit(RLIMIT_NOFILE, &low), 0);
    std::string error;
    try {
        fsync_tree(tree.get(), 8, tmp.path() + "/tree");
    } catch (const std::exception& e) {
        error = e.what();
    }
    ::setrlimit(RLIMIT_NOFILE, &saved);
    assert_string_equal(error.c_str(), "");
}

// ---- the epilog

static void retired_job_dirs_go_to_trash_and_are_removed_within_the_budget(void**) {
    if (skip_unless_root()) skip();
    TempDir tmp;
    tmp.make_dir("jobs/7/data");
    for (int i = 0; i < 300; ++i) tmp.write("jobs/7/data/f" + std::to_string(i), "x");
    tmp.make_dir("jobs/7.aihpc");
    tmp.make_dir("jobs/8");
    // No time at all: the dirs are moved, and trash keeps them for later.
    JobCleanup out_of_time = retire_job_dirs(tmp.path(), 7, 7, 0ms);
    assert_false(out_of_time.finished);
    assert_false(exists(tmp.path() + "/jobs/7"));
    assert_false(exists(tmp.path() + "/jobs/7.aihpc"));
    assert_true(exists(tmp.path() + "/jobs/8"));
    assert_true(count_entries(tmp.path() + "/trash") > 0);
    struct stat st {};
    assert_int_equal(::lstat((tmp.path() + "/trash").c_str(), &st), 0);
    assert_int_equal(st.st_uid, 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    assert_true(empty_trash(tmp.path(), 10s));
    assert_int_equal(count_entries(tmp.path() + "/trash"), 0);
}

static void a_tree_deeper_than_any_walk_is_removed_from_trash(void**) {
    if (skip_unless_root()) skip();
    TempDir tmp;
    tmp.make_dir("trash");
    ::chmod((tmp.path() + "/trash").c_str(), 0700);
    tmp.make_dir("trash/7.1.0");
    // 5,000 levels: more than a recursive walk allows, and more descriptors than it may hold.
    UniqueFd level = open_dir(tmp.path() + "/trash/7.1.0");
    for (int i = 0; i < 5000; ++i) {
        assert_int_equal(::mkdirat(level.get(), "d", 0555), 0);
        int fd = ::openat(level.get(), "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(fd >= 0);
        if (i % 1000 == 0) assert_int_equal(::close(::openat(fd, "f", O_WRONLY | O_CREAT | O_CLOEXEC, 0)), 0);
        level = UniqueFd(fd);
    }
    level.reset();
    struct rlimit few {256, 256}, saved {};
    ::getrlimit(RLIMIT_NOFILE, &saved);
    ::setrlimit(RLIMIT_NOFILE, &few);
    std::string error;
    bool done = empty_trash(tmp.path(), 600s, &error);
    ::setrlimit(RLIMIT_NOFILE, &saved);
    if (!done) fail_msg("trash not emptied: %s", error.c_str());
    assert_int_equal(count_entries(tmp.path() + "/trash"), 0);
}

static void a_huge_directory_in_trash_shrinks_at_every_call_and_is_never_started_over(void**) {
    if (skip_unless_root()) skip();
    TempDir tmp;
    tmp.make_dir("trash/8.1.0/flat");
    ::chmod((tmp.path() + "/trash").c_str(), 0700);
    UniqueFd flat = open_dir(tmp.path() + "/trash/8.1.0/flat");
    for (int i = 0; i < 3000; ++i)
        assert_int_equal(::close(::openat(flat.get(), ("f" + std::to_string(i)).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600)), 0);
    flat.reset();
    // No budget at all: every call still removes a slice, and the next goes on from there.
    std::size_t left = 3002, calls = 0;
    while (!empty_trash(tmp.path(), 0ms)) {
        assert_true(++calls < 100);
        // Directories move to the top of trash/ to be emptied there: count what all hold.
        std::size_t now = 0;
        UniqueFd trash = open_dir(tmp.path() + "/trash");
        DirectoryNames tops(trash.get(), "trash");
        for (std::size_t i = 0; i < tops.size(); ++i) now += 1 + count_entries(tmp.path() + "/trash/" + tops.c_str(i));
        assert_true(now < left);
        left = now;
    }
    assert_true(calls >= 5);  // slices, not the whole directory at once
    assert_int_equal(count_entries(tmp.path() + "/trash"), 0);
}

static void a_users_own_keep_marker_keeps_nothing(void**) {
    if (skip_unless_root()) skip();
    TempDir tmp;
    tmp.make_dir("jobs/7");
    tmp.make_dir("jobs/7.aihpc");
    tmp.write(std::string("jobs/7.aihpc/") + stage_out_failed_marker, "forged\n");
    JobCleanup cleanup = retire_job_dirs(tmp.path(), 7, 7, 5s);
    assert_false(cleanup.kept_after_failed_stage_out);
    assert_true(cleanup.finished);
    assert_false(exists(tmp.path() + "/jobs/7"));
}

static void roots_keep_marker_keeps_the_job_until_it_expires(void**) {
    if (skip_unless_root()) skip();
    TempDir tmp;
    tmp.make_dir("jobs/7");
    tmp.make_dir("jobs/7.aihpc");
    mark_job_kept(tmp.path(), 7, 1000, "cannot write /home/u/out");
    struct stat st {};
    assert_int_equal(::lstat((tmp.path() + "/kept/7").c_str(), &st), 0);
    assert_int_equal(st.st_uid, 0);
    // Root's alone to write; its user reads it (aihpc-stage kept).
    assert_int_equal(st.st_mode & 07777, 0644);
    std::vector<KeptJob> kept = kept_jobs_at(open_dir(tmp.path()).get());
    assert_int_equal(kept.size(), 1);
    assert_int_equal(kept[0].uid, 1000);
    assert_string_equal(kept[0].reason.c_str(), "cannot write /home/u/out");

    JobCleanup cleanup = retire_job_dirs(tmp.path(), 7, 7, 5s);
    assert_true(cleanup.kept_after_failed_stage_out);
    assert_true(exists(tmp.path() + "/jobs/7"));

    // Eight days later, another job's epilog retires it.
    tmp.write("kept/7", "uid=1000\nsince=" + std::to_string(::time(nullptr) - 8 * 86400) + "\nreason=x\n", 0600);
    JobCleanup later = retire_job_dirs(tmp.path(), 9, 7, 5s);
    assert_int_equal(later.expired.size(), 1);
    assert_int_equal(later.expired[0], 7);
    assert_false(exists(tmp.path() + "/jobs/7"));
    assert_false(exists(tmp.path() + "/kept/7"));
}

static void a_keep_marker_root_did_not_write_is_ignored(void**) {
    if (skip_unless_root()) skip();
    TempDir tmp;
    tmp.make_dir("jobs/7");
    tmp.make_dir("kept");
    ::chmod((tmp.path() + "/kept").c_str(), 0700);
    tmp.write("kept/7", "uid=1000\nsince=" + std::to_string(::time(nullptr)) + "\n", 0600);
    assert_int_equal(::chown((tmp.path() + "/kept/7").c_str(), 1000, 1000), 0);
    JobCleanup cleanup = retire_job_dirs(tmp.path(), 7, 7, 5s);
    assert_false(cleanup.kept_after_failed_stage_out);
    assert_false(exists(tmp.path() + "/jobs/7"));
}

static void a_removal_past_its_deadline_leaves_the_rest(void**) {
    TempDir tmp;
    tmp.make_dir("tree");
    for (int i = 0; i < 200; ++i) tmp.write("tree/f" + std::to_string(i), "x");
    UniqueFd parent = open_dir(tmp.path());
    bool out_of_time = false;
    assert_false(remove_tree_until(parent.get(), "tree", std::chrono::steady_clock::now() - 1s, &out_of_time));
    assert_true(out_of_time);
    assert_true(exists(tmp.path() + "/tree"));
    assert_true(remove_tree_until(parent.get(), "tree", std::chrono::steady_clock::now() + 60s, &out_of_time));
    assert_false(out_of_time);
    assert_false(exists(tmp.path() + "/tree"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ledger_text_reads_back_and_skips_what_is_malformed),
        cmocka_unit_test(ledger_sums_saturate_instead_of_wrapping),
        cmocka_unit_test(eviction_plans_saturate_on_forged_sizes),
        cmocka_unit_test(a_file_with_many_names_is_measured_once),
        cmocka_unit_test(hard_links_across_a_users_cache_count_once_and_starve_no_one),
        cmocka_unit_test(a_users_cache_at_its_inode_cap_has_no_room_left),
        cmocka_unit_test(a_stage_past_the_inode_room_is_refused_naming_the_cap),
        cmocka_unit_test(a_users_limits_keep_to_their_share_and_the_node_room),
        cmocka_unit_test(a_measure_counts_blocks_and_never_follows_a_link),
        cmocka_unit_test(a_measure_stops_at_its_entry_bound),
        cmocka_unit_test(a_forged_info_file_starves_no_one),
        cmocka_unit_test(the_ledger_is_roots_alone_and_measures_what_users_hold),
        cmocka_unit_test(a_changed_entry_is_measured_again),
        cmocka_unit_test(a_killed_producers_temporary_counts_until_removed),
        cmocka_unit_test(a_killed_producers_temporary_is_removed_at_prepare),
        cmocka_unit_test(a_prepare_measures_its_own_user_alone),
        cmocka_unit_test(a_kept_job_dir_counts_against_its_user),
        cmocka_unit_test(a_running_jobs_private_copy_counts_against_its_user),
        cmocka_unit_test(the_lease_holder_keeps_the_leases_until_its_pipe_closes),
        cmocka_unit_test(a_stopped_lease_holder_ends_with_the_step),
        cmocka_unit_test(the_lease_holder_has_left_the_stagers_group_before_slurmstepd_sees_it_done),
        cmocka_unit_test(the_lease_holder_keeps_a_lease_and_its_pipe_on_0_to_2),
        cmocka_unit_test(a_stager_over_its_share_is_refused_with_its_share_named),
        cmocka_unit_test(promises_read_back_and_skip_what_is_malformed),
        cmocka_unit_test(a_promise_lives_as_long_as_its_process),
        cmocka_unit_test(copies_in_flight_count_against_the_share_and_the_node),
        cmocka_unit_test(concurrent_stages_never_pass_cache_max),
        cmocka_unit_test(an_archive_bomb_is_abandoned_whole_in_cache_mode),
        cmocka_unit_test(an_archive_within_the_room_is_extracted),
        cmocka_unit_test(extraction_stops_at_the_entry_count_and_the_expansion_ratio),
        cmocka_unit_test(extraction_charges_whole_blocks),
        cmocka_unit_test(a_held_cache_lock_fails_naming_it_instead_of_hanging),
        cmocka_unit_test(a_fifo_as_lock_file_is_refused_at_once),
        cmocka_unit_test(the_job_lock_waits_a_bounded_time),
        cmocka_unit_test(verify_catches_a_source_changed_behind_a_cache_hit),
        cmocka_unit_test(fsync_tree_flushes_a_tree_without_following_or_blocking),
        cmocka_unit_test(fsync_tree_stays_within_the_descriptor_limit),
        cmocka_unit_test(retired_job_dirs_go_to_trash_and_are_removed_within_the_budget),
        cmocka_unit_test(a_tree_deeper_than_any_walk_is_removed_from_trash),
        cmocka_unit_test(a_huge_directory_in_trash_shrinks_at_every_call_and_is_never_started_over),
        cmocka_unit_test(a_users_own_keep_marker_keeps_nothing),
        cmocka_unit_test(roots_keep_marker_keeps_the_job_until_it_expires),
        cmocka_unit_test(a_keep_marker_root_did_not_write_is_ignored),
        cmocka_unit_test(a_removal_past_its_deadline_leaves_the_rest),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
