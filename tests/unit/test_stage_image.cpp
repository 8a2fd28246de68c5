// A squashfs dataset image staged and mounted (lib/stage/squashfs_mount): the superblock
// read at once refuses a foreign or truncated file; the listing refuses devices, setuid
// and setgid files, FIFOs and sockets by name; a staged image is mounted read-only with
// squashfuse at DIR/NAME, kept by the next stage while it answers, mounted again once its
// squashfuse is gone, and detached by unmount_below. Images are made with mksquashfs
// (squashfs-tools); the mounts need squashfuse and /dev/fuse (contrib/deps).
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include "common/error.hpp"
#include "common/process.hpp"
#include "common/text.hpp"
#include "stage/squashfs_mount.hpp"
#include "stage/squashfs_pack.hpp"
#include "stage/stage_in.hpp"
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

void mksquashfs(const std::vector<std::string>& extra, const std::string& dir, const std::string& out) {
    std::vector<std::string> argv = {"mksquashfs", dir, out, "-noappend", "-quiet", "-no-progress"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    CommandOutput made = capture_output(argv);
    if (made.status != 0) fail_msg("mksquashfs failed: %s", made.err.c_str());
}

// The message an operation throws, or "" when it does not.
template <typename F>
std::string thrown_by(F&& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Mounts made below a scratch dir go before the dir does (declared after it).
struct Unmounter {
    std::string dir;
    ~Unmounter() { unmount_below(dir); }
};

bool can_mount() {
    if (::access("/dev/fuse", R_OK | W_OK) != 0) return false;
    return capture_output({"sh", "-c", "command -v squashfuse_ll || command -v squashfuse"}).status == 0;
}

bool is_fuse_mount(const std::string& path) {
    struct statfs fs {};
    return ::statfs(path.c_str(), &fs) == 0 && fs.f_type == 0x65735546;
}

}  // namespace

static void the_superblock_refuses_a_foreign_or_truncated_file(void**) {
    TempDir tmp;
    tmp.make_dir("ds");
    // Incompressible, so the image is as long as its data and a cut loses some of it.
    capture_output({"sh", "-c", "head -c 300000 /dev/urandom >" + tmp.path() + "/ds/noise"});
    mksquashfs({}, tmp.path() + "/ds", tmp.path() + "/ds.sqsh");
    UniqueFd whole(::open((tmp.path() + "/ds.sqsh").c_str(), O_RDONLY | O_CLOEXEC));
    ImageSuperblock sb = check_image_superblock(whole.get(), "ds.sqsh");
    assert_int_equal(sb.inodes, 2);  // the root and the file
    assert_true(sb.bytes_used > 300000);

    capture_output({"sh", "-c", "head -c 200000 " + tmp.path() + "/ds.sqsh >" + tmp.path() + "/cut.sqsh"});
    UniqueFd cut(::open((tmp.path() + "/cut.sqsh").c_str(), O_RDONLY | O_CLOEXEC));
    std::string why = thrown_by([&] { check_image_superblock(cut.get(), "cut.sqsh"); });
    assert_true(contains(why, "cut.sqsh is truncated") && contains(why, "200000"));

    tmp.write("text.sqsh", "not an image, but long enough to hold a superblock's ninety-six bytes of anything at all.....");
    UniqueFd text(::open((tmp.path() + "/text.sqsh").c_str(), O_RDONLY | O_CLOEXEC));
    assert_true(contains(thrown_by([&] { check_image_superblock(text.get(), "text.sqsh"); }), "is not a squashfs image"));
}

static void the_listing_names_every_refused_entry(void**) {
    std::string listing =
        "drwxr-xr-x 0/0                 0 1970-01-01 00:00 squashfs-root\n"
        "-rw-r--r-- 0/0                 5 1970-01-01 00:00 squashfs-root/plain\n"
        "-rwsr-xr-x 0/0                 5 1970-01-01 00:00 squashfs-root/suid\n"
        "-rwxr-Sr-x 0/0                 5 1970-01-01 00:00 squashfs-root/sgid\n"
        "crw-r--r-- 0/0             1,  3 1970-01-01 00:00 squashfs-root/dev/null\n"
        "brw-r--r-- 0/0             8,  0 1970-01-01 00:00 squashfs-root/disk\n"
        "prw-r--r-- 0/0                 0 1970-01-01 00:00 squashfs-root/fifo\n"
        "srwxr-xr-x 0/0                 0 1970-01-01 00:00 squashfs-root/sock\n"
        "lrwxrwxrwx 0/0                 5 1970-01-01 00:00 squashfs-root/link -> plain\n"
        "drwxrwxrwt 0/0                 0 1970-01-01 00:00 squashfs-root/sticky\n";
    std::vector<std::string> refused = refused_image_entries(listing);
    std::vector<std::string> expected = {"/suid is setuid", "/sgid is setgid", "/dev/null is a device node",
                                         "/disk is a device node", "/fifo is a FIFO", "/sock is a socket"};
    assert_int_equal(refused.size(), expected.size());
    for (std::size_t i = 0; i < expected.size(); ++i) assert_string_equal(refused[i].c_str(), expected[i].c_str());
    assert_true(refused_image_entries("").empty());
}

static void an_image_with_a_device_or_a_setuid_file_is_refused(void**) {
    TempDir tmp;
    tmp.make_dir("ds");
    tmp.write("ds/a", "alpha");
    mksquashfs({"-p", "null c 644 0 0 1 3"}, tmp.path() + "/ds", tmp.path() + "/dev.sqsh");
    std::string why = thrown_by([&] { check_image_entries(tmp.path() + "/dev.sqsh", "dev.sqsh"); });
    assert_true(contains(why, "dev.sqsh is refused: /null is a device node"));

    ::chmod((tmp.path() + "/ds/a").c_str(), 04755);
    mksquashfs({}, tmp.path() + "/ds", tmp.path() + "/suid.sqsh");
    assert_true(contains(thrown_by([&] { check_image_entries(tmp.path() + "/suid.sqsh", "suid.sqsh"); }), "/a is setuid"));

    ::chmod((tmp.path() + "/ds/a").c_str(), 0644);
    mksquashfs({}, tmp.path() + "/ds", tmp.path() + "/good.sqsh");
    assert_string_equal(thrown_by([&] { check_image_entries(tmp.path() + "/good.sqsh", "good.sqsh"); }).c_str(), "");
}

static void a_staged_image_is_mounted_kept_remounted_and_unmounted(void**) {
    if (!can_mount()) skip();  // no /dev/fuse or no squashfuse here: nothing to mount with
    TempDir tmp;
    Unmounter unmount{tmp.path()};
    tmp.make_dir("ds/sub");
    tmp.write("ds/sub/b", "bravo");
    PackReport packed = pack_squashfs(tmp.path() + "/ds", tmp.path() + "/ds.sqsh", 1);
    assert_int_equal(packed.files, 1);
    StageSettings settings;
    settings.to_dir = tmp.path() + "/job";
    settings.cache_dir = tmp.path() + "/cache";
    settings.uid = ::getuid();

    StagedItem first = stage_in(tmp.path() + "/ds.sqsh", "set", settings);
    assert_string_equal(first.mount.c_str(), "mounted");
    assert_int_equal(static_cast<int>(first.outcome), static_cast<int>(StageOutcome::miss));
    assert_true(is_fuse_mount(tmp.path() + "/job/set"));
    assert_string_equal(contents(tmp.path() + "/job/set/sub/b").c_str(), "bravo");
    // Read-only whoever asks.
    assert_int_equal(::open((tmp.path() + "/job/set/new").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644), -1);

    StagedItem second = stage_in(tmp.path() + "/ds.sqsh", "set", settings);
    assert_string_equal(second.mount.c_str(), "kept");  // the live mount of the same image is kept
    assert_int_equal(static_cast<int>(second.outcome), static_cast<int>(StageOutcome::hit));

    // Its squashfuse gone (a step's end killed it): the next stage mounts it again.
    capture_output({"fusermount3", "-u", "-z", tmp.path() + "/job/set"});
    StagedItem third = stage_in(tmp.path() + "/ds.sqsh", "set", settings);
    assert_string_equal(third.mount.c_str(), "mounted");
    assert_string_equal(contents(tmp.path() + "/job/set/sub/b").c_str(), "bravo");

    assert_true(unmount_below(tmp.path() + "/job").empty());
    assert_false(is_fuse_mount(tmp.path() + "/job/set"));
}

static void a_bad_image_leaves_nothing_mounted_or_published(void**) {
    if (!can_mount()) skip();
    TempDir tmp;
    Unmounter unmount{tmp.path()};
    tmp.make_dir("ds");
    tmp.write("ds/a", "alpha");
    mksquashfs({"-p", "null c 644 0 0 1 3"}, tmp.path() + "/ds", tmp.path() + "/dev.sqsh");
    StageSettings settings;
    settings.to_dir = tmp.path() + "/job";
    settings.cache_dir = tmp.path() + "/cache";
    std::string why = thrown_by([&] { stage_in(tmp.path() + "/dev.sqsh", "set", settings); });
    assert_true(contains(why, "stage-in of ") && contains(why, "is a device node"));
    struct stat st {};
    assert_int_equal(::lstat((tmp.path() + "/job/set").c_str(), &st), -1);
    assert_int_equal(::lstat((tmp.path() + "/job/.set.aihpc-image").c_str(), &st), -1);
    assert_false(is_fuse_mount(tmp.path() + "/job"));
}

static void a_node_without_squashfuse_says_so(void**) {
    TempDir tmp;
    tmp.make_dir("ds");
    tmp.write("ds/a", "alpha");
    pack_squashfs(tmp.path() + "/ds", tmp.path() + "/ds.sqsh", 1);
    // unsquashfs alone on PATH: the image is checked, and only the mount lacks its tool.
    std::string empty = tmp.make_dir("empty-path");
    CommandOutput where = capture_output({"sh", "-c", "command -v unsquashfs"});
    assert_int_equal(::symlink(std::string(trim(where.out)).c_str(), (empty + "/unsquashfs").c_str()), 0);
    std::string path = std::getenv("PATH") ? std::getenv("PATH") : "";
    ::setenv("PATH", empty.c_str(), 1);
    StageSettings settings;
    settings.to_dir = tmp.path() + "/job";
    settings.cache_dir = tmp.path() + "/cache";
    std::string why = thrown_by([&] { stage_in(tmp.path() + "/ds.sqsh", "set", settings); });
    std::string for_root = thrown_by([&] { mount_image_for_user(tmp.path() + "/job", "set", UserIds{65534, 65534, {}}); });
    ::setenv("PATH", path.c_str(), 1);
    assert_true(contains(why, "needs squashfuse on this node") && contains(why, "apt-get install squashfuse"));
    assert_true(contains(for_root, "needs squashfuse on this node"));
    assert_false(is_fuse_mount(tmp.path() + "/job/set"));
}

// The plugin's way: root mounts, squashfuse serves as the user from the descriptor.
static void root_mounts_an_image_for_the_user_only_on_the_users_directory(void**) {
    if (!can_mount() || ::getuid() != 0) skip();  // root's part needs root and /dev/fuse
    TempDir tmp;
    Unmounter unmount{tmp.path()};
    ::chmod(tmp.path().c_str(), 0755);
    tmp.make_dir("ds");
    tmp.write("ds/a", "alpha");
    pack_squashfs(tmp.path() + "/ds", tmp.path() + "/ds.sqsh", 1);
    std::string job = tmp.make_dir("job");
    const uid_t nobody = 65534;
    assert_int_equal(::chown(job.c_str(), nobody, nobody), 0);
    assert_int_equal(::symlink("../ds.sqsh", (job + "/" + image_link_name("set")).c_str()), 0);
    assert_int_equal(::mkdir((job + "/set").c_str(), 0700), 0);
    assert_int_equal(::chown((job + "/set").c_str(), nobody, nobody), 0);
    UserIds user{nobody, nobody, {}};
    mount_image_for_user(job, "set", user);
    CaptureOptions as_nobody;
    as_nobody.user = UserIds{nobody, nobody, {}};
    CommandOutput read = capture_output_with({"cat", job + "/set/a"}, as_nobody);
    assert_int_equal(read.status, 0);
    assert_string_equal(read.out.c_str(), "alpha");
    // Mounted again over a live mount: the old one is detached first, one mount stays.
    mount_image_for_user(job, "set", user);
    CommandOutput mounts = capture_output({"grep", "-c", " " + job + "/set ", "/proc/self/mountinfo"});
    assert_string_equal(mounts.out.c_str(), "1\n");

    // Not the user's directory, or a symlink: refused, nothing mounted there.
    ::mkdir((job + "/rootdir").c_str(), 0755);
    assert_true(contains(thrown_by([&] { mount_image_for_user(job, "rootdir", user); }), "is not a directory of the job's user"));
    assert_int_equal(::symlink("/tmp", (job + "/link").c_str()), 0);
    assert_true(contains(thrown_by([&] { mount_image_for_user(job, "link", user); }), "is not a directory of the job's user"));
    assert_true(contains(thrown_by([&] { mount_image_for_user(job, "../x", user); }), "no image may be mounted"));
    assert_true(unmount_below(job).empty());
    CommandOutput left = capture_output({"grep", "-c", " " + job + "/", "/proc/self/mountinfo"});
    assert_string_equal(left.out.c_str(), "0\n");
}

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_superblock_refuses_a_foreign_or_truncated_file),
        cmocka_unit_test(the_listing_names_every_refused_entry),
        cmocka_unit_test(an_image_with_a_device_or_a_setuid_file_is_refused),
        cmocka_unit_test(a_staged_image_is_mounted_kept_remounted_and_unmounted),
        cmocka_unit_test(a_bad_image_leaves_nothing_mounted_or_published),
        cmocka_unit_test(root_mounts_an_image_for_the_user_only_on_the_users_directory),
        cmocka_unit_test(a_node_without_squashfuse_says_so),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
