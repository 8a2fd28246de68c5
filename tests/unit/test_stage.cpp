// lib/stage: manifests, staleness, atomic publish, archive refusal, eviction with leases
// held, and stage-out that never replaces DEST. Everything acts on real temp dirs.
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "cmocka_cxx.hpp"
#include "common/fd.hpp"
#include "common/json.hpp"
#include "config/user_options.hpp"
#include "stage/archive.hpp"
#include "stage/fs.hpp"
#include "stage/manifest.hpp"
#include "stage/node_cache.hpp"
#include "stage/source.hpp"
#include "stage/stage_in.hpp"
#include "stage/stage_out.hpp"
#include "stage/tree_copy.hpp"
#include "temp_dir.hpp"

using namespace aihpc::stage;

// ---- fixtures: a fresh temp dir per test, removed afterwards

static std::string g_root;

static int make_root(void**) {
    char tmpl[] = "/tmp/aihpc-test-stage.XXXXXX";
    if (!mkdtemp(tmpl)) return -1;
    g_root = tmpl;
    return 0;
}

static int drop_root(void**) {
    aihpc::UniqueFd parent(open("/tmp", O_RDONLY | O_DIRECTORY));
    remove_tree_at(parent.get(), basename_of(g_root));
    return 0;
}

static std::string path(const std::string& rel) { return g_root + "/" + rel; }

static void write_file(const std::string& p, const std::string& content, mode_t mode = 0644) {
    std::ofstream(p, std::ios::binary) << content;
    chmod(p.c_str(), mode);
}

static bool exists(const std::string& p) {
    struct stat st {};
    return lstat(p.c_str(), &st) == 0;
}

static void set_mtime(const std::string& p, time_t seconds) {
    struct timespec times[2] = {{seconds, 0}, {seconds, 0}};
    utimensat(AT_FDCWD, p.c_str(), times, AT_SYMLINK_NOFOLLOW);
}

// A small dataset: nested dirs, an executable, a symlink inside and one pointing out.
static std::string make_dataset(const std::string& name = "data") {
    std::string d = path(name);
    mkdir(d.c_str(), 0755);
    mkdir((d + "/sub").c_str(), 0750);
    mkdir((d + "/sub/deeper").c_str(), 0755);
    write_file(d + "/a.txt", "alpha\n");
    write_file(d + "/sub/b.bin", std::string(300000, 'b'));
    write_file(d + "/sub/deeper/run.sh", "#!/bin/sh\necho hi\n", 0755);
    write_file(d + "/sub/deeper/with space %.txt", "odd name\n", 0600);
    assert_int_equal(::symlink("a.txt", (d + "/link-in").c_str()), 0);
    assert_int_equal(::symlink("/etc/passwd", (d + "/link-out").c_str()), 0);
    set_mtime(d + "/a.txt", 1000000000);
    return d;
}

static Manifest scan_path(const std::string& p) {
    aihpc::UniqueFd fd(open(p.c_str(), O_RDONLY | O_DIRECTORY));
    return scan_tree(fd.get(), p);
}

static StageSettings cache_settings(const std::string& to = "job") {
    StageSettings s;
    s.to_dir = path(to);
    s.cache_dir = path("cache");
    s.threads = 3;
    s.uid = getuid();
    return s;
}

static std::vector<std::string> cache_log_lines(const std::string& what) {
    std::vector<std::string> out;
    std::ifstream in(path("cache/log"));
    std::string line;
    while (std::getline(in, line))
        if (line.find(" " + what + " ") != std::string::npos) out.push_back(line);
    return out;
}

// ---- manifest

static void manifest_lists_entries_sorted_with_parents_first(void**) {
    make_dataset();
    Manifest m = scan_path(path("data"));
    std::vector<std::string> paths;
    for (const ManifestEntry& e : m.entries) paths.push_back(e.path);
    std::vector<std::string> expected = {"a.txt", "link-in", "link-out", "sub", "sub/b.bin", "sub/deeper",
                                         "sub/deeper/run.sh", "sub/deeper/with space %.txt"};
    assert_true(paths == expected);
    assert_int_equal(m.file_count(), 4);
    assert_int_equal(m.byte_count(), 6 + 300000 + 18 + 9);
    assert_true(m.entries[0].mtime == FileTime::of(1000000000, 0));
    assert_string_equal(m.entries[2].target.c_str(), "/etc/passwd");
}

static void manifest_text_round_trips_odd_names_and_hashes(void**) {
    make_dataset();
    Manifest m = scan_path(path("data"));
    m.entries[0].content_hash = "0123456789abcdef0123456789abcdef";
    Manifest back = Manifest::parse(m.serialize());
    assert_int_equal(back.entries.size(), m.entries.size());
    for (std::size_t i = 0; i < m.entries.size(); ++i) assert_true(back.entries[i].same_metadata(m.entries[i]));
    assert_string_equal(back.entries[0].content_hash->c_str(), "0123456789abcdef0123456789abcdef");
    assert_false(back.entries[1].content_hash.has_value());
    assert_string_equal(back.metadata_hash().c_str(), m.metadata_hash().c_str());
}

static void manifest_parse_rejects_malformed_lines(void**) {
    expect_error_containing([] { Manifest::parse("f 0644 12\n"); }, "too few fields");
    expect_error_containing([] { Manifest::parse("x 0644 1 1 - a\n"); }, "unknown type");
    expect_error_containing([] { Manifest::parse("f 0999 1 1 - a\n"); }, "mode");
    expect_error_containing([] { Manifest::parse("l 0777 1 1 - a\n"); }, "symlink without target");
    expect_error_containing([] { Manifest::parse("f 0644 1 1 - a%G1\n"); }, "path escape");
}

static void metadata_hash_changes_with_any_change_of_the_source(void**) {
    std::string d = make_dataset();
    std::string base = scan_path(d).metadata_hash();
    assert_string_equal(scan_path(d).metadata_hash().c_str(), base.c_str());

    set_mtime(d + "/a.txt", 1000000001);
    std::string touched = scan_path(d).metadata_hash();
    assert_string_not_equal(touched.c_str(), base.c_str());

    write_file(d + "/new.txt", "x");
    std::string added = scan_path(d).metadata_hash();
    assert_string_not_equal(added.c_str(), touched.c_str());

    unlink((d + "/new.txt").c_str());
    assert_string_equal(scan_path(d).metadata_hash().c_str(), touched.c_str());
    unlink((d + "/sub/b.bin").c_str());
    assert_string_not_equal(scan_path(d).metadata_hash().c_str(), touched.c_str());
}

static void parallel_scan_equals_sequential_scan(void**) {
    std::string d = make_dataset();
    for (int i = 0; i < 20; ++i) {
        std::string sub = d + "/p" + std::to_string(i);
        mkdir(sub.c_str(), 0755);
        mkdir((sub + "/q").c_str(), 0755);
        write_file(sub + "/q/f", std::to_string(i));
    }
    aihpc::UniqueFd fd(open(d.c_str(), O_RDONLY | O_DIRECTORY));
    Manifest one = scan_tree(fd.get(), d, 1), many = scan_tree(fd.get(), d, 6);
    assert_string_equal(one.serialize().c_str(), many.serialize().c_str());
    mkfifo((d + "/p7/q/pipe").c_str(), 0644);
    expect_error_containing([&] { scan_tree(fd.get(), d, 6); }, "FIFO");
}

static void metadata_hash_is_xxh3_of_the_documented_stream(void**) {
    // Cache keys are built on this hash: its bytes must not drift between versions.
    Manifest m;
    m.entries = {{"d", EntryType::directory, 04755, 0, FileTime::of(0, -1500000000), "", {}},
                 {"d/f g", EntryType::file, 0644, 12, FileTime::of(1700000000, 123456789), "", "00112233445566778899aabbccddeeff"},
                 {"l", EntryType::symlink, 0777, 1, FileTime::of(0, 5), "x", {}}};
    for (int i = 0; i < 3000; ++i)  // more than one internal block
        m.entries.push_back({"many/" + std::to_string(i), EntryType::file, 0600, static_cast<std::uint64_t>(i), FileTime::of(0, i), "", {}});
    std::string stream;
    for (const ManifestEntry& e : m.entries) {
        char head[96];
        int n = std::snprintf(head, sizeof head, "%c %o %" PRIu64 " %s ", static_cast<char>(e.type),
                              static_cast<unsigned>(e.mode), e.size, e.mtime.text().c_str());
        stream.append(head, static_cast<std::size_t>(n));
        std::uint64_t lengths[2] = {e.path.size(), e.target.size()};
        stream.append(reinterpret_cast<const char*>(lengths), sizeof lengths);
        stream += e.path + e.target;
    }
    assert_string_equal(m.metadata_hash().c_str(), hash_bytes(stream.data(), stream.size()).c_str());
    std::string text = m.serialize();
    assert_string_equal(text.substr(0, text.find('\n')).c_str(), "d 4755 0 -1500000000 - d");
    assert_true(text.find("\nf 0644 12 1700000000123456789 00112233445566778899aabbccddeeff d/f%20g\n") != std::string::npos);
    assert_true(text.find("\nl 0777 1 5 - l x\n") != std::string::npos);
}

static void directory_names_are_sorted_and_complete_beyond_one_batch(void**) {
    std::string d = path("many");
    mkdir(d.c_str(), 0755);
    std::set<std::string> expected;  // bytewise order, as the scan's
    for (int i = 0; i < 1500; ++i) {  // about 100 KB of records: several getdents64 batches
        std::string name = "entry-with-a-long-name-to-fill-the-buffer-" + std::to_string(i * 7919 % 1500);
        write_file(d + "/" + name, "");
        expected.insert(name);
    }
    write_file(d + "/.hidden", "");
    write_file(d + "/Upper", "");
    expected.insert(".hidden");
    expected.insert("Upper");
    aihpc::UniqueFd fd(open(d.c_str(), O_RDONLY | O_DIRECTORY));
    DirectoryNames names(fd.get(), d);
    assert_int_equal(names.size(), expected.size());  // "." and ".." left out
    std::size_t k = 0;
    for (const std::string& name : expected) {
        assert_true(names[k] == name);
        assert_string_equal(names.c_str(k), name.c_str());
        ++k;
    }
}

static void scan_refuses_fifos(void**) {
    std::string d = make_dataset();
    mkfifo((d + "/pipe").c_str(), 0644);
    expect_error_containing([&] { scan_path(d); }, "FIFO");
}

static void manifest_differences_names_added_removed_and_changed(void**) {
    std::string d = make_dataset();
    Manifest before = scan_path(d);
    write_file(d + "/extra", "e");
    unlink((d + "/link-in").c_str());
    write_file(d + "/a.txt", "alpha!\n");
    std::vector<std::string> diffs = manifest_differences(before, scan_path(d));
    std::set<std::string> got(diffs.begin(), diffs.end());
    assert_true(got.count("a.txt (changed)"));
    assert_true(got.count("link-in (missing)"));
    assert_true(got.count("extra (added)"));
    assert_int_equal(got.size(), 3);
}

// ---- copy plan and copy

static void copy_plan_splits_only_large_files_and_orders_largest_first(void**) {
    Manifest m;
    m.entries = {{"d", EntryType::directory, 0755, 0, {}, "", {}}, {"d/small", EntryType::file, 0644, 10, {}, "", {}},
                 {"big", EntryType::file, 0644, 250, {}, "", {}},  {"l", EntryType::symlink, 0777, 1, {}, "x", {}},
                 {"mid", EntryType::file, 0644, 100, {}, "", {}}};
    CopyPlan plan = plan_copy(m, true, PieceSizing{200, 100});
    assert_true(plan.directories == std::vector<std::size_t>{0});
    assert_true(plan.symlinks == std::vector<std::size_t>{3});
    assert_true(plan.split_files == std::vector<std::size_t>{2});
    assert_int_equal(plan.pieces.size(), 5);  // big: 100+100+50, mid, small
    assert_int_equal(plan.pieces[0].length, 100);
    assert_int_equal(plan.pieces.back().length, 10);
    std::uint64_t big_total = 0;
    for (const CopyPiece& p : plan.pieces)
        if (p.entry == 2) {
            assert_false(p.whole_file);
            big_total += p.length;
        }
    assert_int_equal(big_total, 250);
    CopyPlan hashed = plan_copy(m, false, PieceSizing{200, 100});
    assert_int_equal(hashed.pieces.size(), 3);
    assert_true(hashed.split_files.empty());
}

static void copy_plan_lists_each_directory_and_groups_small_files_by_directory(void**) {
    Manifest m;
    m.entries = {{"a", EntryType::directory, 0755, 0, {}, "", {}}, {"a/x", EntryType::file, 0644, 5, {}, "", {}},
                 {"a/y", EntryType::file, 0644, 7, {}, "", {}},     {"b", EntryType::directory, 0755, 0, {}, "", {}},
                 {"b/z", EntryType::file, 0644, 3, {}, "", {}},     {"c", EntryType::file, 0644, 2, {}, "", {}},
                 {"l", EntryType::symlink, 0777, 1, {}, "c", {}}};
    CopyPlan plan = plan_copy(m, true, PieceSizing{200, 100});
    assert_int_equal(plan.listings.size(), 3);
    assert_false(plan.listings[0].entry.has_value());
    assert_true(plan.listings[0].children == (std::vector<std::size_t>{0, 3, 5, 6}));
    assert_int_equal(*plan.listings[1].entry, 0);
    assert_true(plan.listings[1].children == (std::vector<std::size_t>{1, 2}));
    assert_int_equal(*plan.listings[2].entry, 3);
    assert_true(plan.listings[2].children == (std::vector<std::size_t>{4}));
    std::vector<std::size_t> order, dirs;
    for (const CopyPiece& p : plan.pieces) {
        order.push_back(p.entry);
        dirs.push_back(p.directory);
    }
    assert_true(order == (std::vector<std::size_t>{5, 1, 2, 4}));  // the root's, then a's, then b's
    assert_true(dirs == (std::vector<std::size_t>{0, 1, 1, 2}));
}

static void copy_plan_refuses_an_entry_before_its_directory(void**) {
    Manifest m;
    m.entries = {{"a/x", EntryType::file, 0644, 5, {}, "", {}}, {"a", EntryType::directory, 0755, 0, {}, "", {}}};
    expect_error_containing([&] { plan_copy(m, true); }, "lists a/x before its directory");
}

static void staged_mode_is_read_only_for_cache_entries(void**) {
    assert_int_equal(staged_mode(EntryType::file, 0640, false), 0640);
    assert_int_equal(staged_mode(EntryType::file, 0640, true), 0444);
    assert_int_equal(staged_mode(EntryType::file, 0700, true), 0555);
    assert_int_equal(staged_mode(EntryType::directory, 0700, true), 0555);
    assert_int_equal(staged_mode(EntryType::directory, 04750, false), 04750);
}

static void private_copy_keeps_content_modes_mtimes_and_symlinks(void**) {
    std::string d = make_dataset();
    StageSettings s = cache_settings();
    s.private_mode = true;
    StagedItem item = stage_in(d, "set", s);
    assert_string_equal(to_string(item.outcome), "private");
    assert_int_equal(item.files, 4);
    std::vector<std::string> diffs = manifest_differences(scan_path(d), scan_path(path("job/set")));
    assert_int_equal(diffs.size(), 0);
    assert_string_equal(file_text(path("job/set/sub/b.bin")).c_str(), std::string(300000, 'b').c_str());
    char target[64] = {};
    assert_int_equal(readlink(path("job/set/link-out").c_str(), target, sizeof target - 1), 11);
    assert_string_equal(target, "/etc/passwd");  // copied as a link, never followed
    // Writable, for this job alone.
    write_file(path("job/set/a.txt"), "changed");
    assert_string_equal(file_text(d + "/a.txt").c_str(), "alpha\n");
}

static void large_files_copied_in_pieces_are_exact(void**) {
    std::string d = path("big");
    mkdir(d.c_str(), 0755);
    std::string content;
    for (int i = 0; i < 300000; ++i) content += static_cast<char>('a' + (i * 7) % 26);
    write_file(d + "/f", content);
    Manifest m = scan_path(d);
    aihpc::UniqueFd src(open(d.c_str(), O_RDONLY | O_DIRECTORY));
    aihpc::UniqueFd dst(open(g_root.c_str(), O_RDONLY | O_DIRECTORY));
    CopyOptions options;
    options.threads = 3;
    copy_item(src.get(), m, dst.get(), "copy", options, d, path("copy"));
    assert_true(file_text(path("copy/f")) == content);
    assert_int_equal(manifest_differences(scan_path(d), scan_path(path("copy"))).size(), 0);
}

// Scans a fresh dataset, applies `change` to the source, then copies it: the copy must
// fail naming what changed, since the manifest (and a cache key) no longer describes it.
static void expect_copy_refused_after(const std::function<void(const std::string&, const Manifest&)>& change,
                                      const std::string& what) {
    std::string d = make_dataset();
    Manifest m = scan_path(d);
    change(d, m);
    aihpc::UniqueFd src(open(d.c_str(), O_RDONLY | O_DIRECTORY));
    aihpc::UniqueFd dst(open(g_root.c_str(), O_RDONLY | O_DIRECTORY));
    CopyOptions options;
    options.threads = 2;
    expect_error_containing([&] { copy_item(src.get(), m, dst.get(), "copy", options, d, path("copy")); },
                            what + " changed while staging");
}

static void set_exact_mtime(const std::string& p, FileTime t) {
    struct timespec times[2] = {{0, UTIME_OMIT}, t.timespec()};
    utimensat(AT_FDCWD, p.c_str(), times, AT_SYMLINK_NOFOLLOW);
}

static FileTime scanned_mtime(const Manifest& m, const std::string& rel) {
    for (const ManifestEntry& e : m.entries)
        if (e.path == rel) return e.mtime;
    fail_msg("%s is not in the manifest", rel.c_str());
    return {};
}

static void a_file_rewritten_after_the_scan_with_the_same_size_fails_the_copy(void**) {
    expect_copy_refused_after([](const std::string& d, const Manifest&) { write_file(d + "/a.txt", "ALPHA\n"); }, "a.txt");
}

static void a_file_removed_after_the_scan_fails_the_copy(void**) {
    expect_copy_refused_after([](const std::string& d, const Manifest&) { unlink((d + "/sub/b.bin").c_str()); }, "sub/b.bin");
}

static void a_file_added_after_the_scan_fails_the_copy_even_with_the_old_directory_mtime(void**) {
    // The listing is compared, not only the directory's mtime, which may not have moved
    // when the change falls in the same timestamp tick as the scan.
    expect_copy_refused_after(
        [](const std::string& d, const Manifest& m) {
            write_file(d + "/sub/deeper/new", "n");
            set_exact_mtime(d + "/sub/deeper", scanned_mtime(m, "sub/deeper"));
        },
        "sub/deeper");
}

static void a_directory_whose_mode_changed_after_the_scan_fails_the_copy(void**) {
    expect_copy_refused_after([](const std::string& d, const Manifest&) { chmod((d + "/sub").c_str(), 0700); }, "sub");
}

static void a_symlink_replaced_after_the_scan_fails_the_copy(void**) {
    expect_copy_refused_after(
        [](const std::string& d, const Manifest&) {
            unlink((d + "/link-in").c_str());
            assert_int_equal(::symlink("sub", (d + "/link-in").c_str()), 0);
        },
        "link-in");
}

static void a_lone_file_grown_after_the_scan_fails_the_copy(void**) {
    std::string f = path("one.bin");
    write_file(f, "12345");
    aihpc::UniqueFd src(open(f.c_str(), O_RDONLY));
    Manifest m = scan_file(src.get(), f);
    write_file(f, "123456");
    aihpc::UniqueFd dst(open(g_root.c_str(), O_RDONLY | O_DIRECTORY));
    CopyOptions options;
    expect_error_containing([&] { copy_item(src.get(), m, dst.get(), "copy.bin", options, f, path("copy.bin")); },
                            "it changed while staging");
}

static void a_source_changed_while_producing_a_cache_entry_publishes_nothing(void**) {
    std::string d = make_dataset();
    NodeCache cache(path("cache"));
    std::string key = cache_key(getuid(), d, SourceKind::tree, "changing");
    expect_error_containing(
        [&] {
            cache.obtain(key, 0, {}, [&](int entry_fd, const std::string&) {
                aihpc::UniqueFd src(open(d.c_str(), O_RDONLY | O_DIRECTORY));
                Manifest m = scan_tree(src.get(), d);
                write_file(d + "/sub/late", "written after the scan");
                CopyOptions options;
                options.read_only = true;
                copy_item(src.get(), m, entry_fd, "data", options, d, "data");
                return m;
            });
        },
        "changed while staging");
    assert_false(exists(cache.entry_path(key)));
    assert_int_equal(cache.list().size(), 0);
}

// ---- source resolution

static void source_paths_resolve_against_the_submit_dir(void**) {
    assert_string_equal(absolute_source("data/x", "/home/u").c_str(), "/home/u/data/x");
    assert_string_equal(absolute_source("/abs//./y/", "/home/u").c_str(), "/abs/y");
    assert_string_equal(absolute_source("../x", "/home/u").c_str(), "/home/u/../x");
    assert_string_equal(absolute_source("x", "").c_str(), "/x");
}

static void allow_roots_match_whole_components(void**) {
    assert_true(path_is_under("/data/set", "/data"));
    assert_true(path_is_under("/data", "/data"));
    assert_false(path_is_under("/data2/set", "/data"));
    assert_false(path_is_under("/dat", "/data"));
    assert_true(path_is_under("/anything", "/"));
    assert_string_equal(allowing_root("/x/y", {}).value().c_str(), "/");
    assert_string_equal(allowing_root("/b/y", {"/a", "/b"}).value().c_str(), "/b");
    assert_false(allowing_root("/c/y", {"/a", "/b"}).has_value());
}

static void sources_outside_stage_allow_are_refused_even_through_symlinks(void**) {
    std::string d = make_dataset();
    mkdir(path("allowed").c_str(), 0755);
    assert_int_equal(::symlink(d.c_str(), path("allowed/sneaky").c_str()), 0);
    expect_error_containing([&] { open_source(path("allowed/sneaky"), "", {path("allowed")}); }, "not under stage_allow");
    expect_error_containing([&] { open_source("../data", path("allowed/x"), {path("allowed")}); }, "does not exist");
    expect_error_containing([&] { open_source(path("missing"), "", {}); }, "does not exist");
    OpenSource ok = open_source("data", g_root, {g_root});
    assert_int_equal(static_cast<int>(ok.kind), static_cast<int>(SourceKind::tree));
}

// ---- node cache: hits, staleness, atomic publish

static void second_stage_of_an_unchanged_source_is_a_hit_on_the_same_entry(void**) {
    std::string d = make_dataset();
    StagedItem first = stage_in(d, "set", cache_settings("job1"));
    StagedItem second = stage_in(d, "set", cache_settings("job2"));
    assert_string_equal(to_string(first.outcome), "miss");
    assert_string_equal(to_string(second.outcome), "hit");
    assert_string_equal(first.data_path.c_str(), second.data_path.c_str());
    assert_string_equal(first.manifest_hash.c_str(), second.manifest_hash.c_str());
    struct stat a {}, b {};
    stat(path("job1/set/sub/b.bin").c_str(), &a);
    stat(path("job2/set/sub/b.bin").c_str(), &b);
    assert_int_equal(a.st_ino, b.st_ino);  // one copy on the node
    assert_int_equal(cache_log_lines("miss").size(), 1);
    assert_int_equal(cache_log_lines("hit").size(), 1);
    assert_int_equal(second.files, 4);
}

static void staged_link_is_relative_and_resolves_from_a_relative_dir(void**) {
    std::string d = make_dataset();
    char previous[4096];
    assert_non_null(getcwd(previous, sizeof previous));
    assert_int_equal(chdir(path("").c_str()), 0);
    StageSettings s;
    s.to_dir = "jobs/7";  // both relative to the working directory
    s.cache_dir = "cache";
    s.threads = 2;
    s.uid = getuid();
    StagedItem item = stage_in(d, "set", s);
    char target[4096] = {};
    ssize_t n = readlink("jobs/7/set", target, sizeof target - 1);
    assert_true(n > 0);
    // Relative, so a container that binds jobs/ and cache/ under one parent resolves it.
    assert_true(target[0] != '/');
    assert_true(std::string(target).starts_with("../../cache/"));
    std::ifstream in("jobs/7/set/a.txt");
    std::string line;
    std::getline(in, line);
    assert_string_equal(line.c_str(), "alpha");
    assert_int_equal(chdir(previous), 0);
}

static void cache_entries_are_read_only_and_hold_exactly_the_source(void**) {
    std::string d = make_dataset();
    stage_in(d, "set", cache_settings());
    struct stat st {};
    stat(path("job/set/a.txt").c_str(), &st);
    assert_int_equal(st.st_mode & 07777, 0444);
    stat(path("job/set/sub/deeper/run.sh").c_str(), &st);
    assert_int_equal(st.st_mode & 07777, 0555);
    stat(path("job/set/sub").c_str(), &st);
    assert_int_equal(st.st_mode & 07777, 0555);
    stat(path("cache").c_str(), &st);
    assert_int_equal(st.st_mode & 07777, 0700);
    Manifest staged = scan_path(path("job/set/"));
    std::vector<std::string> diffs = manifest_differences(scan_path(d), staged);
    for (const std::string& diff : diffs) assert_true(diff.find("(changed)") != std::string::npos);  // modes only
    assert_int_equal(staged.entries.size(), scan_path(d).entries.size());
}

static void a_changed_source_is_never_served_from_the_old_entry(void**) {
    std::string d = make_dataset();
    stage_in(d, "set", cache_settings("job1"));
    write_file(d + "/a.txt", "ALPHA\n");
    StagedItem after = stage_in(d, "set", cache_settings("job2"));
    assert_string_equal(to_string(after.outcome), "miss");
    assert_string_equal(file_text(path("job2/set/a.txt")).c_str(), "ALPHA\n");
    assert_string_equal(file_text(path("job1/set/a.txt")).c_str(), "alpha\n");  // the old job keeps its copy

    write_file(d + "/added", "new");
    assert_string_equal(to_string(stage_in(d, "set", cache_settings("job3")).outcome), "miss");
    assert_true(exists(path("job3/set/added")));
    unlink((d + "/added").c_str());
    StagedItem removed = stage_in(d, "set", cache_settings("job4"));
    assert_false(exists(path("job4/set/added")));
    assert_string_equal(to_string(removed.outcome), "hit");  // the same content as job2's
}

static void a_failing_producer_leaves_nothing_visible(void**) {
    NodeCache cache(path("cache"));
    std::string key = cache_key(getuid(), "/x", SourceKind::tree, "h");
    expect_error_containing(
        [&] {
            cache.obtain(key, 0, {}, [](int entry_fd, const std::string&) -> Manifest {
                mkdirat(entry_fd, "data", 0700);
                throw aihpc::Error("disk on fire");
            });
        },
        "disk on fire");
    assert_false(exists(cache.entry_path(key)));
    std::vector<std::string> names;
    aihpc::UniqueFd entries(open(path("cache/entries").c_str(), O_RDONLY | O_DIRECTORY));
    assert_int_equal(cache.list().size(), 0);
    assert_false(cache.lease(key).has_value());
    // Nothing left over: the temp entry was removed.
    assert_int_equal(system(("test -z \"$(ls -A " + path("cache/entries") + ")\"").c_str()), 0);
}

static void a_producer_killed_mid_copy_is_redone_by_the_next_stager(void**) {
    std::string d = make_dataset();
    NodeCache cache(path("cache"));
    std::string key = cache_key(getuid(), d, SourceKind::tree, "k");
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t child = fork();
    if (child == 0) {
        NodeCache mine(path("cache"));
        mine.obtain(key, 0, {}, [&](int entry_fd, const std::string&) -> Manifest {
            mkdirat(entry_fd, "data", 0700);
            (void)!write(ready[1], "x", 1);
            pause();  // killed here, mid-copy, holding the key's lock
            return {};
        });
        _exit(0);
    }
    char c;
    assert_int_equal(read(ready[0], &c, 1), 1);
    assert_false(exists(cache.entry_path(key)));  // nothing published while it works
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
    close(ready[0]);
    close(ready[1]);
    Obtained got = cache.obtain(key, 0, {}, [&](int entry_fd, const std::string&) {
        aihpc::UniqueFd src(open(d.c_str(), O_RDONLY | O_DIRECTORY));
        Manifest m = scan_tree(src.get(), d);
        CopyOptions options;
        options.read_only = true;
        copy_item(src.get(), m, entry_fd, "data", options, d, "data");
        return m;
    });
    assert_false(got.hit);
    aihpc::UniqueFd data(open(got.data_path.c_str(), O_RDONLY | O_DIRECTORY));
    verify_item(data.get(), scan_path(d), true, 2, got.data_path);  // complete and exact
    assert_string_equal(file_text(got.data_path + "/a.txt").c_str(), "alpha\n");
    assert_int_equal(system(("test -z \"$(ls -A " + path("cache/entries") + " | grep '^\\.')\"").c_str()), 0);
}

static void concurrent_stagers_of_one_source_copy_it_once(void**) {
    std::string d = make_dataset();
    std::vector<pid_t> children;
    for (int i = 0; i < 6; ++i) {
        pid_t pid = fork();
        if (pid == 0) {
            try {
                StagedItem item = stage_in(d, "set", cache_settings("job" + std::to_string(i)));
                _exit(file_text(path("job" + std::to_string(i) + "/set/a.txt")) == "alpha\n" ? 0 : 3);
            } catch (...) {
                _exit(2);
            }
        }
        children.push_back(pid);
    }
    for (pid_t pid : children) {
        int status = 0;
        waitpid(pid, &status, 0);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    assert_int_equal(cache_log_lines("miss").size(), 1);
    assert_int_equal(cache_log_lines("hit").size(), 5);
}

static void verify_detects_a_corrupted_entry(void**) {
    std::string d = make_dataset();
    StageSettings s = cache_settings();
    s.verify = true;
    StagedItem item = stage_in(d, "set", s);
    assert_true(NodeCache(path("cache")).stored_manifest(item.key)->has_content_hashes());
    // The owner could force a change; verification must catch it.
    std::string victim = item.data_path + "/a.txt";
    chmod(victim.c_str(), 0644);
    write_file(victim, "ALPHA\n", 0444);
    set_mtime(victim, 1000000000);
    expect_error_containing([&] { stage_in(d, "set", s); }, "a.txt has other content");
}

// ---- metadata files

static void metadata_reads_refuse_a_fifo_without_blocking(void**) {
    assert_int_equal(mkfifo(path("info").c_str(), 0600), 0);
    aihpc::UniqueFd dir(open(g_root.c_str(), O_RDONLY | O_DIRECTORY));
    // A blocking open of a FIFO with no writer would never return.
    assert_false(read_small_file_at(dir.get(), "info", small_file_max).has_value());
}

static void metadata_reads_refuse_a_file_over_the_cap(void**) {
    write_file(path("items"), std::string(small_file_max + 1, 'x'));
    write_file(path("fits"), std::string(small_file_max, 'x'));
    aihpc::UniqueFd dir(open(g_root.c_str(), O_RDONLY | O_DIRECTORY));
    assert_false(read_small_file_at(dir.get(), "items", small_file_max).has_value());
    assert_int_equal(read_small_file_at(dir.get(), "fits", small_file_max)->size(), small_file_max);
}

static void metadata_reads_refuse_a_symlink(void**) {
    write_file(path("real"), "key=x\n");
    assert_int_equal(::symlink("real", path("info").c_str()), 0);
    aihpc::UniqueFd dir(open(g_root.c_str(), O_RDONLY | O_DIRECTORY));
    assert_false(read_small_file_at(dir.get(), "info", small_file_max).has_value());
}

static void gc_keeps_the_temporary_of_a_live_producer(void**) {
    NodeCache cache(path("cache"));
    std::string live = cache_key(getuid(), "/live", SourceKind::tree, "h");
    std::string dead = cache_key(getuid(), "/dead", SourceKind::tree, "h");
    std::string live_tmp = path("cache/entries/.tmp." + live + ".99.0");
    std::string dead_tmp = path("cache/entries/.tmp." + dead + ".98.0");
    mkdir(live_tmp.c_str(), 0700);
    write_file(live_tmp + "/partial", "half");
    mkdir(dead_tmp.c_str(), 0700);
    aihpc::UniqueFd held(open(path("cache/locks/" + live + ".lock").c_str(), O_RDWR | O_CREAT, 0600));
    assert_int_equal(flock(held.get(), LOCK_EX), 0);  // as the producer holds it
    cache.collect(0);
    assert_true(exists(live_tmp + "/partial"));
    assert_false(exists(dead_tmp));
    assert_false(exists(path("cache/locks/" + dead + ".lock")));  // gc creates no lock files
    held.reset();
    cache.collect(0);
    assert_false(exists(live_tmp));  // its producer gone, it is a leftover
}

// ---- eviction

static void eviction_plan_takes_least_recently_used_first_and_skips_leased(void**) {
    std::vector<CacheEntryInfo> entries(4);
    const char* keys[] = {"k-new", "k-old", "k-mid", "k-oldest"};
    std::int64_t used_at[] = {40, 20, 30, 10};
    for (int i = 0; i < 4; ++i) {
        entries[i].key = keys[i];
        entries[i].bytes = 100;
        entries[i].last_used_ns = used_at[i];
    }
    entries[3].in_use = true;  // the oldest is leased by a running job
    std::vector<std::string> plan = plan_eviction(entries, 50, 250);
    assert_true(plan == (std::vector<std::string>{"k-old", "k-mid"}));
    assert_true(plan_eviction(entries, 0, 400).empty());
    assert_int_equal(plan_eviction(entries, 1000, 0).size(), 3);  // never the leased one
}

static void eviction_never_removes_an_entry_under_lease(void**) {
    std::string d1 = make_dataset("d1"), d2 = make_dataset("d2"), d3 = make_dataset("d3");
    StagedItem a = stage_in(d1, "a", cache_settings());  // leased: kept alive below
    StagedItem b = stage_in(d2, "b", cache_settings());
    b.lease = Lease();
    struct timespec old_times[2] = {{100, 0}, {100, 0}};
    utimensat(AT_FDCWD, path("cache/locks/" + a.key + ".lock").c_str(), old_times, 0);
    StageSettings tight = cache_settings();
    std::uint64_t one = a.bytes;
    tight.limits = CacheLimits{2 * one + one / 2, one + one / 2};
    StagedItem c = stage_in(d3, "c", tight);
    assert_string_equal(to_string(c.outcome), "miss");
    assert_true(exists(path("cache/entries/" + a.key)));   // oldest, but leased
    assert_false(exists(path("cache/entries/" + b.key)));  // unleased: evicted
    assert_string_equal(file_text(path("job/a/a.txt")).c_str(), "alpha\n");
    // Once released, gc may take it.
    a.lease = Lease();
    c.lease = Lease();
    NodeCache cache(path("cache"));
    std::vector<std::string> evicted = cache.collect(0);
    assert_int_equal(evicted.size(), 2);
    assert_int_equal(cache.list().size(), 0);
}

static void a_full_cache_of_leased_entries_refuses_with_advice(void**) {
    std::string d1 = make_dataset("d1"), d2 = make_dataset("d2");
    StagedItem a = stage_in(d1, "a", cache_settings());
    StageSettings tight = cache_settings();
    tight.limits = CacheLimits{a.bytes + 10, a.bytes};
    expect_error_containing([&] { stage_in(d2, "b", tight); }, "held by running jobs");
    assert_false(exists(path("job/b")));
}

// ---- archives

static void archive_entries_leaving_the_item_are_refused(void**) {
    struct Case {
        const char* path;
        ArchiveEntryKind kind;
        const char* target;
        const char* refusal;  // nullptr: accepted
    } cases[] = {
        {"a/b.txt", ArchiveEntryKind::file, "", nullptr},
        {"./a/", ArchiveEntryKind::directory, "", nullptr},
        {"./", ArchiveEntryKind::directory, "", nullptr},
        {"/etc/passwd", ArchiveEntryKind::file, "", "absolute path"},
        {"../x", ArchiveEntryKind::file, "", "contains '..'"},
        {"a/../../x", ArchiveEntryKind::file, "", "contains '..'"},
        {"a/..", ArchiveEntryKind::directory, "", "contains '..'"},
        {"", ArchiveEntryKind::file, "", "empty name"},
        {"dev", ArchiveEntryKind::other, "", "device"},
        {"a/l", ArchiveEntryKind::symlink, "../b", nullptr},
        {"a/l", ArchiveEntryKind::symlink, "../../b", "leads out"},
        {"l", ArchiveEntryKind::symlink, "x/../../y", "leads out"},
        {"l", ArchiveEntryKind::symlink, "/etc", "absolute path"},
        {"h", ArchiveEntryKind::hardlink, "a/b.txt", nullptr},
        {"h", ArchiveEntryKind::hardlink, "../outside", "outside the archive"},
        {"h", ArchiveEntryKind::hardlink, "/etc/shadow", "outside the archive"},
    };
    for (const Case& c : cases) {
        auto why = archive_entry_refusal(c.path, c.kind, c.target);
        if (!c.refusal) {
            if (why) print_error("'%s' refused: %s\n", c.path, why->c_str());
            assert_false(why.has_value());
        } else {
            if (!why || why->find(c.refusal) == std::string::npos)
                print_error("'%s': expected '%s', got '%s'\n", c.path, c.refusal, why ? why->c_str() : "(accepted)");
            assert_true(why && why->find(c.refusal) != std::string::npos);
        }
    }
}

static void archive_names_are_recognised_by_suffix(void**) {
    assert_true(is_archive_name("x.tar"));
    assert_true(is_archive_name("x.tar.gz"));
    assert_true(is_archive_name("x.tar.zst"));
    assert_true(is_archive_name("x.tgz"));
    assert_true(is_archive_name("x.tzst"));
    assert_true(is_archive_name("/d/x.tar.zst"));
    assert_false(is_archive_name("x.gz"));
    assert_false(is_archive_name(".tar"));
    assert_false(is_archive_name("x.zip"));
}

static void archive_names_are_exactly_those_whose_default_name_loses_a_suffix(void**) {
    for (const char* name : {"x.tar", "x.tar.gz", "x.tgz", "x.tar.zst", "x.tzst", "x.gz", "x.zst", ".tar", "x.zip", "x.tar.bz2", "x"}) {
        bool stripped = aihpc::config::default_stage_name(name) != name;
        assert_int_equal(is_archive_name(name), stripped);
    }
}

struct TarEntry {
    std::string path;
    std::string content;
    char type;  // 'f', 'd', 'l', 'h'
    std::string target;
    int perm = -1;  // -1: 0644 for files, 0755 for directories
    std::int64_t mtime = 1500000000;
};

static void write_tar(const std::string& file, const std::vector<TarEntry>& entries, bool zstd) {
    struct archive* a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    if (zstd) archive_write_add_filter_zstd(a);
    archive_write_open_filename(a, file.c_str());
    for (const TarEntry& t : entries) {
        struct archive_entry* e = archive_entry_new();
        archive_entry_set_pathname(e, t.path.c_str());
        archive_entry_set_mtime(e, static_cast<time_t>(t.mtime), 0);
        if (t.type == 'f') {
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_perm(e, t.perm >= 0 ? static_cast<mode_t>(t.perm) : 0644);
            archive_entry_set_size(e, static_cast<la_int64_t>(t.content.size()));
        } else if (t.type == 'd') {
            archive_entry_set_filetype(e, AE_IFDIR);
            archive_entry_set_perm(e, t.perm >= 0 ? static_cast<mode_t>(t.perm) : 0755);
        } else if (t.type == 'l') {
            archive_entry_set_filetype(e, AE_IFLNK);
            archive_entry_set_perm(e, 0777);
            archive_entry_set_symlink(e, t.target.c_str());
        } else {
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_hardlink(e, t.target.c_str());
        }
        archive_write_header(a, e);
        if (t.type == 'f') archive_write_data(a, t.content.data(), t.content.size());
        archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
}

static void a_tar_zst_is_extracted_into_the_cache_and_verified(void**) {
    write_tar(path("set.tar.zst"),
              {{"top", "", 'd', ""}, {"top/f.txt", "hello\n", 'f', ""}, {"top/l", "", 'l', "f.txt"}, {"top/h", "", 'h', "top/f.txt"}},
              true);
    StageSettings s = cache_settings();
    s.verify = true;
    StagedItem item = stage_in(path("set.tar.zst"), "set", s);
    assert_string_equal(to_string(item.outcome), "miss");
    assert_string_equal(file_text(path("job/set/top/f.txt")).c_str(), "hello\n");
    assert_string_equal(file_text(path("job/set/top/h")).c_str(), "hello\n");
    assert_string_equal(file_text(path("job/set/top/l")).c_str(), "hello\n");
    StageSettings again = cache_settings("job2");
    again.verify = true;
    assert_string_equal(to_string(stage_in(path("set.tar.zst"), "set", again).outcome), "hit");
}

static void a_hit_reports_the_totals_of_the_entry_not_of_the_archive_file(void**) {
    write_tar(path("set.tar"), {{"f.txt", "hello\n", 'f', ""}, {"g.txt", "bye\n", 'f', ""}}, false);
    StagedItem miss = stage_in(path("set.tar"), "set", cache_settings("job1"));
    StagedItem hit = stage_in(path("set.tar"), "set", cache_settings("job2"));
    assert_string_equal(to_string(hit.outcome), "hit");
    assert_int_equal(miss.files, 2);
    assert_int_equal(miss.bytes, 10);
    assert_int_equal(hit.files, miss.files);
    assert_int_equal(hit.bytes, miss.bytes);
    std::optional<CacheEntryInfo> info = NodeCache(path("cache")).stored_info(hit.key);
    assert_true(info.has_value());
    assert_string_equal(info->kind.c_str(), "archive");
    assert_false(NodeCache(path("cache")).stored_info(cache_key(getuid(), "/none", SourceKind::tree, "x")).has_value());
}

// 2300-01-01: past 2262-04-11, where nanoseconds since 1970 no longer fit an int64.
constexpr std::int64_t year_2300 = 10413792000;

static std::int64_t mtime_seconds(const std::string& p) {
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) fail_msg("cannot stat %s", p.c_str());
    return static_cast<std::int64_t>(st.st_mtim.tv_sec);
}

static void mtimes_after_2262_are_staged_exactly_by_copy_and_extraction(void**) {
    std::string d = path("late");
    mkdir(d.c_str(), 0755);
    write_file(d + "/f", "from the future\n");
    struct timespec times[2] = {{0, UTIME_OMIT}, {static_cast<time_t>(year_2300), 7}};
    assert_int_equal(utimensat(AT_FDCWD, (d + "/f").c_str(), times, 0), 0);
    Manifest m = scan_path(d);
    assert_true(m.entries[0].mtime == FileTime::of(year_2300, 7));
    assert_true(Manifest::parse(m.serialize()).entries[0].mtime == FileTime::of(year_2300, 7));

    StageSettings priv = cache_settings("job1");
    priv.private_mode = true;
    stage_in(d, "late", priv);
    struct stat st {};
    assert_int_equal(::stat(path("job1/late/f").c_str(), &st), 0);
    assert_true(st.st_mtim.tv_sec == static_cast<time_t>(year_2300) && st.st_mtim.tv_nsec == 7);
    stage_in(d, "late", cache_settings("job2"));
    assert_int_equal(mtime_seconds(path("job2/late/f")), year_2300);

    write_tar(path("late.tar"), {{"d", "", 'd', "", -1, year_2300}, {"d/f", "later\n", 'f', "", -1, year_2300}}, false);
    stage_in(path("late.tar"), "arch", cache_settings("job3"));
    assert_int_equal(mtime_seconds(path("job3/arch/d/f")), year_2300);
    assert_int_equal(mtime_seconds(path("job3/arch/d")), year_2300);
    StageSettings priv_archive = cache_settings("job4");
    priv_archive.private_mode = true;
    stage_in(path("late.tar"), "arch", priv_archive);
    assert_int_equal(mtime_seconds(path("job4/arch/d/f")), year_2300);
}

// Runs `stage` as an unprivileged user, as every plugin job stages (root reads through
// any mode), in a child; returns the error it threw, or "" when it succeeded.
static std::string as_unprivileged_user(const std::function<void()>& stage) {
    constexpr uid_t nobody = 65534;
    int pipe_fds[2];
    assert_int_equal(::pipe(pipe_fds), 0);
    if (geteuid() == 0) assert_int_equal(::chown(g_root.c_str(), nobody, nobody), 0);
    pid_t pid = ::fork();
    if (pid == 0) {
        ::close(pipe_fds[0]);
        std::string message;
        if (geteuid() == 0 && (::setgroups(0, nullptr) != 0 || ::setresgid(nobody, nobody, nobody) != 0 ||
                               ::setresuid(nobody, nobody, nobody) != 0))
            message = "cannot become uid 65534";
        if (message.empty()) {
            try {
                stage();
            } catch (const std::exception& e) {
                message = e.what();
            }
        }
        if (!message.empty() && ::write(pipe_fds[1], message.data(), message.size()) < 0) ::_exit(2);
        ::_exit(message.empty() ? 0 : 1);
    }
    ::close(pipe_fds[1]);
    std::string message;
    char buf[4096];
    for (ssize_t n; (n = ::read(pipe_fds[0], buf, sizeof buf)) > 0;) message.append(buf, static_cast<std::size_t>(n));
    ::close(pipe_fds[0]);
    int status = 0;
    assert_int_equal(::waitpid(pid, &status, 0), pid);
    if (message.empty() && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) message = "the staging child failed";
    return message;
}

static void an_archive_with_closed_directories_is_staged_by_its_own_user(void**) {
    write_tar(path("closed.tar"), {{"shut", "", 'd', "", 0}, {"shut/f.txt", "inside\n", 'f', ""}, {"nox", "", 'd', "", 0600},
                                   {"nox/sub", "", 'd', "", 0}, {"nox/sub/g.txt", "deeper\n", 'f', ""}},
              false);
    std::string failed = as_unprivileged_user([] { stage_in(path("closed.tar"), "closed", cache_settings("job1")); });
    if (!failed.empty()) fail_msg("cache mode: %s", failed.c_str());
    assert_string_equal(file_text(path("job1/closed/shut/f.txt")).c_str(), "inside\n");
    assert_string_equal(file_text(path("job1/closed/nox/sub/g.txt")).c_str(), "deeper\n");
    failed = as_unprivileged_user([] {
        StageSettings s = cache_settings("job2");
        s.private_mode = true;
        stage_in(path("closed.tar"), "closed", s);
    });
    if (!failed.empty()) fail_msg("private mode: %s", failed.c_str());
    // A private copy keeps the archive's modes, as GNU tar does, set after the contents.
    struct stat st {};
    assert_int_equal(::stat(path("job2/closed/shut").c_str(), &st), 0);
    assert_int_equal(st.st_mode & 07777, 0);
    assert_int_equal(::stat(path("job2/closed/nox").c_str(), &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_string_equal(file_text(path("job2/closed/shut/f.txt")).c_str(), "inside\n");
}

static void an_archive_error_names_the_archive_and_the_member_never_a_temporary(void**) {
    // A member that cannot be written: a hard link to a file the archive does not hold.
    write_tar(path("clash.tar"), {{"x", "", 'd', ""}, {"x/f", "file\n", 'f', ""}, {"x/y", "", 'h', "x/absent"}}, false);
    for (bool private_mode : {false, true}) {
        std::string message = as_unprivileged_user([&] {
            StageSettings s = cache_settings(private_mode ? "job2" : "job1");
            s.private_mode = private_mode;
            stage_in(path("clash.tar"), "clash", s);
        });
        assert_true(message.find(path("clash.tar")) != std::string::npos);
        assert_true(message.find("'x/y'") != std::string::npos);
        if (message.find(".tmp.") != std::string::npos || message.find("aihpc-tmp") != std::string::npos)
            fail_msg("the message names a temporary: %s", message.c_str());
    }
}

static void an_archive_rewritten_in_place_with_size_and_mtime_put_back_is_refused(void**) {
    write_tar(path("torn.tar"), {{"a.txt", "one\n", 'f', ""}}, false);
    write_tar(path("other.tar"), {{"a.txt", "two\n", 'f', ""}}, false);
    // The rewrite below must land in a later tick of the file system's clock than the
    // archive's making, as it does in life.
    struct stat made {};
    assert_int_equal(::stat(path("torn.tar").c_str(), &made), 0);
    for (struct stat probe = made; probe.st_ctim.tv_sec == made.st_ctim.tv_sec && probe.st_ctim.tv_nsec == made.st_ctim.tv_nsec;) {
        write_file(path("probe"), "p");
        assert_int_equal(::stat(path("probe").c_str(), &probe), 0);
    }
    OpenSource source = open_source(path("torn.tar"), "", {});
    Manifest scanned = scan_file(source.fd.get(), source.realpath);
    check_source_unchanged(source, scanned.freshness_hash());  // untouched: fine

    std::string bytes = file_text(path("other.tar"));
    assert_int_equal(bytes.size(), made.st_size);
    aihpc::UniqueFd rewrite(::open(path("torn.tar").c_str(), O_WRONLY | O_CLOEXEC));
    assert_int_equal(::pwrite(rewrite.get(), bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
    struct timespec times[2] = {{0, UTIME_OMIT}, made.st_mtim};
    assert_int_equal(::futimens(rewrite.get(), times), 0);
    // Size and mtime say nothing changed...
    assert_string_equal(scan_file(source.fd.get(), source.realpath).metadata_hash().c_str(), scanned.metadata_hash().c_str());
    // ...the ctime does.
    expect_error_containing([&] { check_source_unchanged(source, scanned.freshness_hash()); },
                            "changed while it was being extracted");
}

static void a_tar_with_dotdot_entries_is_refused_whole(void**) {
    write_tar(path("evil.tar"), {{"ok.txt", "fine", 'f', ""}, {"../escaped.txt", "gotcha", 'f', ""}}, false);
    expect_error_containing([&] { stage_in(path("evil.tar"), "evil", cache_settings()); }, "contains '..'");
    assert_false(exists(path("escaped.txt")));
    assert_false(exists(path("cache/escaped.txt")));
    assert_false(exists(path("job/evil")));
    assert_int_equal(NodeCache(path("cache")).list().size(), 0);

    write_tar(path("evil2.tar"), {{"l", "", 'l', "../../etc"}}, false);
    expect_error_containing([&] { stage_in(path("evil2.tar"), "evil2", cache_settings()); }, "leads out");
    write_tar(path("evil3.tar"), {{"/tmp/abs.txt", "x", 'f', ""}}, false);
    StageSettings s = cache_settings();
    s.private_mode = true;
    expect_error_containing([&] { stage_in(path("evil3.tar"), "evil3", s); }, "refusing to extract");
    assert_false(exists(path("job/evil3")));
}

static void a_tar_whose_symlinks_chain_out_of_it_is_refused_whole(void**) {
    // Each link alone stays inside; together "m" resolves to the item's parent.
    write_tar(path("chain.tar"), {{"f.txt", "x", 'f', ""}, {"l", "", 'l', "."}, {"m", "", 'l', "l/.."}}, false);
    expect_error_containing([&] { stage_in(path("chain.tar"), "chain", cache_settings()); }, "'m' leads out");
    assert_false(exists(path("job/chain")));
    assert_int_equal(NodeCache(path("cache")).list().size(), 0);
    assert_int_equal(system(("test -z \"$(ls -A " + path("cache/entries") + ")\"").c_str()), 0);
    StageSettings s = cache_settings();
    s.private_mode = true;
    expect_error_containing([&] { stage_in(path("chain.tar"), "chain", s); }, "'m' leads out");
    assert_false(exists(path("job/chain")));
}

static void a_tar_with_a_dangling_or_inner_chain_of_symlinks_is_staged(void**) {
    write_tar(path("ok.tar"), {{"d", "", 'd', ""}, {"d/f.txt", "x", 'f', ""}, {"l", "", 'l', "d"}, {"m", "", 'l', "l/f.txt"},
                               {"gone", "", 'l', "missing"}},
              false);
    StagedItem item = stage_in(path("ok.tar"), "ok", cache_settings());
    assert_string_equal(file_text(path("job/ok/m")).c_str(), "x");
}

// ---- stage-out

static void stage_out_destinations_expand_job_and_node(void**) {
    assert_string_equal(expand_dest("/s/%j/%n/ck", "42", "n1").c_str(), "/s/42/n1/ck");
    assert_string_equal(expand_dest("/s/100%%", "42", "n1").c_str(), "/s/100%");
    expect_error_containing([] { expand_dest("/s/%x", "1", "n"); }, "only %j, %n");
}

static void stage_out_target_diverts_when_dest_exists(void**) {
    std::set<std::string> present;
    auto exists_in = [&](const std::string& p) { return present.count(p) > 0; };
    auto t = choose_out_target("/d/out", "7", exists_in);
    assert_string_equal(t->path.c_str(), "/d/out");
    assert_false(t->diverted);
    present.insert("/d/out");
    t = choose_out_target("/d/out", "7", exists_in);
    assert_string_equal(t->path.c_str(), "/d/out.7");
    assert_true(t->diverted);
    present.insert("/d/out.7");
    assert_false(choose_out_target("/d/out", "7", exists_in).has_value());
}

static void stage_out_copies_then_renames_and_never_replaces_dest(void**) {
    std::string local = make_dataset("local");
    StageOutResult first = stage_out(local, path("out"), "7", 2);
    assert_string_equal(first.dest.c_str(), path("out").c_str());
    assert_false(first.diverted);
    assert_int_equal(manifest_differences(scan_path(local), scan_path(path("out"))).size(), 0);

    write_file(local + "/a.txt", "second run\n");
    StageOutResult second = stage_out(local, path("out"), "7", 2);
    assert_true(second.diverted);
    assert_string_equal(second.dest.c_str(), path("out.7").c_str());
    assert_string_equal(file_text(path("out/a.txt")).c_str(), "alpha\n");  // untouched
    assert_string_equal(file_text(path("out.7/a.txt")).c_str(), "second run\n");
    assert_true(second.message().find("already exists") != std::string::npos);

    expect_error_containing([&] { stage_out(local, path("out"), "7", 2); }, "neither is replaced");
    assert_string_equal(file_text(local + "/a.txt").c_str(), "second run\n");
}

static void failed_stage_out_keeps_the_local_data_and_says_where(void**) {
    std::string local = make_dataset("local");
    mkdir(path("ro").c_str(), 0555);
    std::string message;
    if (geteuid() == 0) {
        // root writes anywhere: a missing parent makes the destination unwritable instead.
        expect_error_containing([&] { stage_out(local, path("nowhere/out"), "7", 2); }, "the local data is kept in " + local);
    } else {
        expect_error_containing([&] { stage_out(local, path("ro/out"), "7", 2); }, "the local data is kept in " + local);
    }
    assert_true(exists(local + "/sub/b.bin"));
    assert_false(exists(path("ro/out")));
}

static void stage_out_of_a_missing_local_says_so_and_claims_nothing_kept(void**) {
    bool thrown = false;
    try {
        stage_out(path("never-written"), path("out"), "7", 2);
    } catch (const NothingToStageOut& e) {
        thrown = true;
        std::string message = e.what();
        assert_true(message.find("does not exist, so nothing was copied") != std::string::npos);
        assert_true(message.find("kept") == std::string::npos);
    }
    assert_true(thrown);
    assert_false(exists(path("out")));
}

static void stage_out_of_a_single_file_is_atomic_and_exact(void**) {
    write_file(path("model.pt"), "weights", 0640);
    StageOutResult r = stage_out(path("model.pt"), path("final.pt"), "9", 2);
    assert_string_equal(file_text(path("final.pt")).c_str(), "weights");
    struct stat st {};
    stat(path("final.pt").c_str(), &st);
    assert_int_equal(st.st_mode & 0777, 0640);
    assert_int_equal(r.files, 1);
}

// ---- JSON lines of the tool

static std::string json_text_of(const std::string& line, const char* member) {
    aihpc::JsonRef doc = aihpc::parse_json(line);
    assert_true(static_cast<bool>(doc));
    json_object* value = aihpc::json_member(doc.get(), member);
    assert_non_null(value);
    return json_object_get_string(value);
}

static void json_lines_quote_odd_paths_and_keep_them_exact(void**) {
    std::string odd = "/d/a \"quoted\" \\ name\twith\ncontrols";
    StageOutResult out;
    out.local = odd;
    out.dest = odd + ".1";
    assert_string_equal(json_text_of(stage_out_result_json(out), "local").c_str(), odd.c_str());
    assert_string_equal(json_text_of(stage_out_result_json(out), "dest").c_str(), (odd + ".1").c_str());
    CacheEntryInfo e;
    e.key = "k";
    e.src = odd;
    assert_string_equal(json_text_of(cache_entry_json(e), "src").c_str(), odd.c_str());
}

static void cache_verify_json_says_why_an_entry_failed(void**) {
    std::string why = "a.txt has other content \"x\"";
    assert_string_equal(json_text_of(cache_verdict_json("k", why), "error").c_str(), why.c_str());
    assert_string_equal(json_text_of(cache_verdict_json("k", why), "ok").c_str(), "false");
    aihpc::JsonRef ok = aihpc::parse_json(cache_verdict_json("k", ""));
    assert_true(json_object_get_boolean(aihpc::json_member(ok.get(), "ok")));
    assert_null(aihpc::json_member(ok.get(), "error"));
}

// ---- safe removal

static void tree_removal_never_follows_links_out(void**) {
    std::string d = make_dataset();
    std::string outside = path("precious");
    mkdir(outside.c_str(), 0755);
    write_file(outside + "/keep", "keep");
    assert_int_equal(::symlink(outside.c_str(), (d + "/sub/to-precious").c_str()), 0);
    chmod((d + "/sub").c_str(), 0555);
    aihpc::UniqueFd root(open(g_root.c_str(), O_RDONLY | O_DIRECTORY));
    assert_true(remove_tree_at(root.get(), "data"));
    assert_false(exists(d));
    assert_string_equal(file_text(outside + "/keep").c_str(), "keep");
}

#define T(f) cmocka_unit_test_setup_teardown(f, make_root, drop_root)

int main() {
    const struct CMUnitTest tests[] = {
        T(manifest_lists_entries_sorted_with_parents_first),
        T(manifest_text_round_trips_odd_names_and_hashes),
        T(manifest_parse_rejects_malformed_lines),
        T(metadata_hash_changes_with_any_change_of_the_source),
        T(metadata_hash_is_xxh3_of_the_documented_stream),
        T(directory_names_are_sorted_and_complete_beyond_one_batch),
        T(parallel_scan_equals_sequential_scan),
        T(scan_refuses_fifos),
        T(manifest_differences_names_added_removed_and_changed),
        T(copy_plan_splits_only_large_files_and_orders_largest_first),
        T(copy_plan_lists_each_directory_and_groups_small_files_by_directory),
        T(copy_plan_refuses_an_entry_before_its_directory),
        T(staged_mode_is_read_only_for_cache_entries),
        T(private_copy_keeps_content_modes_mtimes_and_symlinks),
        T(large_files_copied_in_pieces_are_exact),
        T(a_file_rewritten_after_the_scan_with_the_same_size_fails_the_copy),
        T(a_file_removed_after_the_scan_fails_the_copy),
        T(a_file_added_after_the_scan_fails_the_copy_even_with_the_old_directory_mtime),
        T(a_directory_whose_mode_changed_after_the_scan_fails_the_copy),
        T(a_symlink_replaced_after_the_scan_fails_the_copy),
        T(a_lone_file_grown_after_the_scan_fails_the_copy),
        T(a_source_changed_while_producing_a_cache_entry_publishes_nothing),
        T(source_paths_resolve_against_the_submit_dir),
        T(allow_roots_match_whole_components),
        T(sources_outside_stage_allow_are_refused_even_through_symlinks),
        T(second_stage_of_an_unchanged_source_is_a_hit_on_the_same_entry),
        T(staged_link_is_relative_and_resolves_from_a_relative_dir),
        T(cache_entries_are_read_only_and_hold_exactly_the_source),
        T(a_changed_source_is_never_served_from_the_old_entry),
        T(a_failing_producer_leaves_nothing_visible),
        T(a_producer_killed_mid_copy_is_redone_by_the_next_stager),
        T(concurrent_stagers_of_one_source_copy_it_once),
        T(verify_detects_a_corrupted_entry),
        T(metadata_reads_refuse_a_fifo_without_blocking),
        T(metadata_reads_refuse_a_file_over_the_cap),
        T(metadata_reads_refuse_a_symlink),
        T(gc_keeps_the_temporary_of_a_live_producer),
        T(eviction_plan_takes_least_recently_used_first_and_skips_leased),
        T(eviction_never_removes_an_entry_under_lease),
        T(a_full_cache_of_leased_entries_refuses_with_advice),
        T(archive_entries_leaving_the_item_are_refused),
        T(archive_names_are_recognised_by_suffix),
        T(archive_names_are_exactly_those_whose_default_name_loses_a_suffix),
        T(a_tar_zst_is_extracted_into_the_cache_and_verified),
        T(a_hit_reports_the_totals_of_the_entry_not_of_the_archive_file),
        T(mtimes_after_2262_are_staged_exactly_by_copy_and_extraction),
        T(an_archive_with_closed_directories_is_staged_by_its_own_user),
        T(an_archive_error_names_the_archive_and_the_member_never_a_temporary),
        T(an_archive_rewritten_in_place_with_size_and_mtime_put_back_is_refused),
        T(a_tar_with_dotdot_entries_is_refused_whole),
        T(a_tar_whose_symlinks_chain_out_of_it_is_refused_whole),
        T(a_tar_with_a_dangling_or_inner_chain_of_symlinks_is_staged),
        T(stage_out_destinations_expand_job_and_node),
        T(stage_out_target_diverts_when_dest_exists),
        T(stage_out_copies_then_renames_and_never_replaces_dest),
        T(failed_stage_out_keeps_the_local_data_and_says_where),
        T(stage_out_of_a_missing_local_says_so_and_claims_nothing_kept),
        T(stage_out_of_a_single_file_is_atomic_and_exact),
        T(tree_removal_never_follows_links_out),
        T(json_lines_quote_odd_paths_and_keep_them_exact),
        T(cache_verify_json_says_why_an_entry_failed),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
