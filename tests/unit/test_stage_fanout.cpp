// Read once per job (lib/stage/fanout): the marker's text and its refusals, the record
// of what node 0 already sent, and a staged tree sent as one tar (write_tree_archive)
// that extracts to the very tree it was written from: names, types, sizes, link targets,
// modes and nanosecond mtimes.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "common/fd.hpp"
#include "stage/archive.hpp"
#include "stage/fanout.hpp"
#include "stage/manifest.hpp"
#include "cmocka_cxx.hpp"
#include "temp_dir.hpp"

using namespace aihpc;
using namespace aihpc::stage;

static void the_marker_reads_back_and_refuses_what_is_not_one(void**) {
    std::optional<FanoutMarker> m = parse_fanout_marker(format_fanout_marker(123456789, "00ff"));
    assert_true(m.has_value());
    assert_int_equal(m->size, 123456789);
    assert_string_equal(m->xxh3.c_str(), "00ff");
    std::optional<FanoutMarker> none = parse_fanout_marker("aihpc-fanout 1 none\n");
    assert_true(none && none->xxh3 == "none");
    for (const char* bad : {"", "aihpc-fanout 1 12", "aihpc-fanout 2 12 00ff", "other 1 12 00ff", "aihpc-fanout 1 x 00ff"})
        assert_false(parse_fanout_marker(bad).has_value());
}

static void node_zero_remembers_what_it_sent_to_which_nodes(void**) {
    TempDir tmp;
    FanoutStep step;
    step.dir = tmp.path();
    step.nodelist = "n[1-2]";
    UniqueFd meta(::open(tmp.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    assert_false(sent_before(meta.get(), step, "k1"));
    record_sent(meta.get(), step, "k1");
    assert_true(sent_before(meta.get(), step, "k1"));
    assert_false(sent_before(meta.get(), step, "k2"));
    FanoutStep other = step;
    other.nodelist = "n[1-3]";
    assert_false(sent_before(meta.get(), other, "k1"));  // a node more: it may be cold
    assert_string_equal(fanout_data_path(step, 2).c_str(), (tmp.path() + "/fanout.0.2").c_str());
    assert_string_equal(fanout_marker_path(step, 2).c_str(), (tmp.path() + "/fanout.0.2.sent").c_str());
}

static void a_tree_sent_as_a_tar_extracts_to_the_same_tree(void**) {
    TempDir tmp;
    tmp.make_dir("tree/sub/deeper");
    tmp.write("tree/a", "alpha");
    tmp.write("tree/sub/b", std::string(200000, 'b'));
    tmp.write("tree/sub/deeper/empty", "");
    assert_int_equal(::symlink("sub/b", (tmp.path() + "/tree/link").c_str()), 0);
    assert_int_equal(::chmod((tmp.path() + "/tree/a").c_str(), 0751), 0);
    struct timespec times[2] = {{0, UTIME_OMIT}, {1700000000, 123456789}};
    assert_int_equal(::utimensat(AT_FDCWD, (tmp.path() + "/tree/sub/b").c_str(), times, 0), 0);

    UniqueFd tree(::open((tmp.path() + "/tree").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    Manifest scanned = scan_tree(tree.get(), "tree", 1);
    UniqueFd out(::open((tmp.path() + "/tree.tar").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    write_tree_archive(tree.get(), scanned, out.get(), "tree");
    out.reset();

    UniqueFd tar(::open((tmp.path() + "/tree.tar").c_str(), O_RDONLY | O_CLOEXEC));
    UniqueFd parent(::open(tmp.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ExtractResult got = extract_archive(tar.get(), parent.get(), "back", false, false, nullptr, "tree.tar", "back");
    Manifest back = got.manifest;
    assert_int_equal(back.entries.size(), scanned.entries.size());
    for (std::size_t i = 0; i < scanned.entries.size(); ++i) {
        const ManifestEntry& s = scanned.entries[i];
        const ManifestEntry& b = back.entries[i];
        assert_string_equal(b.path.c_str(), s.path.c_str());
        assert_int_equal(static_cast<int>(b.type), static_cast<int>(s.type));
        assert_int_equal(b.size, s.size);
        assert_string_equal(b.target.c_str(), s.target.c_str());
        if (s.type != EntryType::directory) assert_true(b.mtime == s.mtime);
        if (s.type == EntryType::file) assert_int_equal(b.mode, s.mode);
    }
    assert_string_equal(back.metadata_hash().c_str(), scanned.metadata_hash().c_str());
}

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_marker_reads_back_and_refuses_what_is_not_one),
        cmocka_unit_test(node_zero_remembers_what_it_sent_to_which_nodes),
        cmocka_unit_test(a_tree_sent_as_a_tar_extracts_to_the_same_tree),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
