// aihpc-stage pack (lib/stage/squashfs_pack): a dataset directory becomes one squashfs
// image with the same bytes whoever packs it and whenever, holding exactly the tree;
// what a dataset image must not hold is refused by name, and nothing is left under the
// final name or beside it when a pack fails. mksquashfs and unsquashfs come from
// squashfs-tools (contrib/deps).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include "common/process.hpp"
#include "stage/squashfs_pack.hpp"
#include "cmocka_cxx.hpp"
#include "temp_dir.hpp"

using namespace aihpc;
using namespace aihpc::stage;

namespace {

std::string contents(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream all;
    all << in.rdbuf();
    return all.str();
}

// Names in DIR other than the tree and the images a test expects there.
int count_entries(const std::string& dir) {
    CommandOutput ls = capture_output({"ls", "-A", dir});
    int n = 0;
    std::istringstream lines(ls.out);
    for (std::string line; std::getline(lines, line);) n += !line.empty();
    return n;
}

void make_dataset(TempDir& tmp) {
    tmp.make_dir("ds/sub/deeper");
    tmp.write("ds/a", "alpha");
    tmp.write("ds/sub/b", std::string(3 << 20, 'b'));
    tmp.write("ds/sub/deeper/c", "");
    if (::symlink("a", (tmp.path() + "/ds/link").c_str()) != 0) fail();
}

}  // namespace

static void a_pack_holds_exactly_the_tree(void**) {
    TempDir tmp;
    make_dataset(tmp);
    PackReport report = pack_squashfs(tmp.path() + "/ds", tmp.path() + "/ds.sqsh", 2);
    assert_int_equal(report.files, 3);
    assert_int_equal(report.bytes, 5 + (3 << 20));
    assert_true(report.image_bytes > 0 && report.image_bytes < (1 << 20));  // 3 MiB of 'b' compresses
    CommandOutput listing = capture_output({"unsquashfs", "-lc", "-d", "", tmp.path() + "/ds.sqsh"});
    assert_int_equal(listing.status, 0);
    for (const char* path : {"/a", "/link", "/sub/b", "/sub/deeper/c"})
        assert_true(listing.out.find(std::string(path) + "\n") != std::string::npos);
    CommandOutput extracted = capture_output({"unsquashfs", "-q", "-d", tmp.path() + "/back", tmp.path() + "/ds.sqsh"});
    assert_int_equal(extracted.status, 0);
    assert_true(contents(tmp.path() + "/back/sub/b") == contents(tmp.path() + "/ds/sub/b"));
    assert_string_equal(contents(tmp.path() + "/back/a").c_str(), "alpha");
}

static void the_same_tree_packs_to_the_same_bytes(void**) {
    TempDir tmp;
    make_dataset(tmp);
    pack_squashfs(tmp.path() + "/ds", tmp.path() + "/one.sqsh", 1);
    // Other times and another thread count change nothing in the image.
    ::utimensat(AT_FDCWD, (tmp.path() + "/ds/a").c_str(), nullptr, 0);
    pack_squashfs(tmp.path() + "/ds", tmp.path() + "/two.squashfs", 4);
    assert_true(contents(tmp.path() + "/one.sqsh") == contents(tmp.path() + "/two.squashfs"));
}

static void an_existing_image_is_never_replaced(void**) {
    TempDir tmp;
    make_dataset(tmp);
    tmp.write("ds.sqsh", "keep me");
    expect_error_containing([&] { pack_squashfs(tmp.path() + "/ds", tmp.path() + "/ds.sqsh", 1); }, "already exists");
    assert_string_equal(contents(tmp.path() + "/ds.sqsh").c_str(), "keep me");
    assert_int_equal(count_entries(tmp.path()), 2);  // ds and ds.sqsh: no temporary beside it
}

static void what_a_dataset_image_must_not_hold_is_refused_by_name(void**) {
    TempDir tmp;
    make_dataset(tmp);
    ::chmod((tmp.path() + "/ds/sub/b").c_str(), 04755);
    expect_error_containing([&] { pack_squashfs(tmp.path() + "/ds", tmp.path() + "/ds.sqsh", 1); },
                            "ds/sub/b is setuid or setgid");
    ::chmod((tmp.path() + "/ds/sub/b").c_str(), 0644);
    if (::mkfifo((tmp.path() + "/ds/pipe").c_str(), 0600) != 0) fail();
    expect_error_containing([&] { pack_squashfs(tmp.path() + "/ds", tmp.path() + "/ds.sqsh", 1); },
                            "ds/pipe: it is a socket, FIFO or device file");
    expect_error_containing([&] { pack_squashfs(tmp.path() + "/ds", tmp.path() + "/ds.tar", 1); },
                            "must end in .sqsh or .squashfs");
    expect_error_containing([&] { pack_squashfs(tmp.path() + "/none", tmp.path() + "/none.sqsh", 1); },
                            "cannot open the directory");
    assert_int_equal(count_entries(tmp.path()), 1);  // ds alone
}

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_pack_holds_exactly_the_tree),
        cmocka_unit_test(the_same_tree_packs_to_the_same_bytes),
        cmocka_unit_test(an_existing_image_is_never_replaced),
        cmocka_unit_test(what_a_dataset_image_must_not_hold_is_refused_by_name),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
