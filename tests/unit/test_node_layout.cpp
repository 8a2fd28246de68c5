// lib/stage/node_layout: the node-local layout below local_root that every user's jobs
// share. Names, records and limits are pure; the ownership checks run for real, and as
// root (as the plugin does), since only root can make a directory another user's. Those
// skip without root.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include "cmocka_cxx.hpp"
#include "common/fd.hpp"
#include "common/paths.hpp"
#include "stage/node_layout.hpp"
#include "temp_dir.hpp"

using namespace aihpc;
using namespace aihpc::stage;

namespace {

constexpr uid_t user = 65534;
constexpr gid_t group = 65534;
constexpr uid_t other_user = 65533;

bool skip_unless_root() {
    if (::geteuid() == 0) return false;
    print_message("skipped: only root can make a directory another user's\n");
    return true;
}

struct stat stat_of(const std::string& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) fail_msg("cannot stat %s", path.c_str());
    return st;
}

bool exists(const std::string& p) {
    struct stat st {};
    return ::lstat(p.c_str(), &st) == 0;
}

UniqueFd open_dir(const std::string& path) { return UniqueFd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)); }


}  // namespace

// ---- names, records and limits

static void job_layout_names_the_jobs_and_the_users_directories(void**) {
    JobLayout layout = job_layout("/local/aihpc", 4242, 1000);
    assert_string_equal(layout.stage_dir.c_str(), "/local/aihpc/jobs/4242");
    assert_string_equal(layout.meta_dir.c_str(), "/local/aihpc/jobs/4242.aihpc");
    assert_string_equal(layout.cache_dir.c_str(), "/local/aihpc/cache/1000");
}

static void root_private_means_a_root_owned_dir_no_one_else_may_write(void**) {
    struct Case {
        uid_t uid;
        mode_t mode;
        bool root_private;
    } cases[] = {
        {0, S_IFDIR | 0755, true},  {0, S_IFDIR | 0711, true},  {0, S_IFDIR | 0700, true},
        {0, S_IFDIR | 01755, true},                              // sticky alone changes nothing
        {0, S_IFDIR | 0775, false}, {0, S_IFDIR | 0757, false}, {0, S_IFDIR | 01777, false},
        {1000, S_IFDIR | 0755, false}, {65534, S_IFDIR | 0700, false},
        {0, S_IFREG | 0755, false}, {0, S_IFLNK | 0755, false},
    };
    for (const Case& c : cases) {
        struct stat st {};
        st.st_uid = c.uid;
        st.st_mode = c.mode;
        assert_int_equal(is_root_private(st), c.root_private);
    }
}


static void job_items_read_back_as_written_whatever_their_names(void**) {
    std::vector<JobItem> items = {
        {"cifar", "/local/aihpc/jobs/7/cifar", "0123abcd", "00112233445566778899aabbccddeeff", "hit", ""},
        {"my data\n%x", "/local/aihpc/jobs/7/my data\n%x", "feed", "", "private", ""},
        {"set", "/local/aihpc/jobs/7/set", "beef", "ffee", "miss", "wanted"},
    };
    std::vector<JobItem> back = parse_job_items(format_job_items(items));
    assert_int_equal(back.size(), 3);
    for (std::size_t i = 0; i < items.size(); ++i) {
        assert_string_equal(back[i].name.c_str(), items[i].name.c_str());
        assert_string_equal(back[i].path.c_str(), items[i].path.c_str());
        assert_string_equal(back[i].manifest_hash.c_str(), items[i].manifest_hash.c_str());
        assert_string_equal(back[i].key.c_str(), items[i].key.c_str());
        assert_string_equal(back[i].outcome.c_str(), items[i].outcome.c_str());
        assert_string_equal(back[i].mount.c_str(), items[i].mount.c_str());
    }
}

static void job_items_skip_lines_that_are_not_five_fields(void**) {
    std::vector<JobItem> back = parse_job_items("a /p h - miss\nbroken line\n\nb /q h k hit kept extra\nc /r h k hit\n");
    assert_int_equal(back.size(), 2);
    assert_string_equal(back[0].name.c_str(), "a");
    assert_string_equal(back[0].key.c_str(), "");
    assert_string_equal(back[1].name.c_str(), "c");
}

// ---- local_root and the root-owned directories

static void open_local_root_makes_a_missing_root_and_its_parents(void**) {
    if (skip_unless_root()) skip();
    TempDir tmp;
    std::string root = tmp.path() + "/local/aihpc";
    UniqueFd fd = open_local_root(root, true);
    assert_true(static_cast<bool>(fd));
    assert_true(is_root_private(stat_of(root)));
}

static void open_local_root_does_not_make_one_unless_asked(void**) {
    TempDir tmp;
    expect_error_containing([&] { open_local_root(tmp.path() + "/absent", false); }, "cannot open local_root");
}

static void open_local_root_refuses_a_group_writable_dir(void**) {
    if (skip_unless_root()) skip();
    TempDir tmp;
    std::string root = tmp.make_dir("root");
    ::chmod(root.c_str(), 0775);
    expect_error_containing([&] { open_local_root(root, true); }, "mode 0775); aihpc refuses to act");
}

static void open_local_root_refuses_a_dir_owned_by_another_uid(void**) {
    if (skip_unless_root()) skip();
    TempDir tmp;
    std::string root = tmp.make_dir("root");
    assert_int_equal(::chown(root.c_str(), user, group), 0);
    expect_error_containing([&] { open_local_root(root, false); },
                            "must be owned by root and writable by no one else (it is uid 65534");
}

static void open_local_root_refuses_a_symlink(void**) {
    if (skip_unless_root()) skip();
    TempDir tmp;
    tmp.make_dir("real");
    std::string link = tmp.path() + "/link";
    assert_int_equal(::symlink("real", link.c_str()), 0);
    expect_error_containing([&] { open_local_root(link, false); }, link + " is not a directory (a symbolic link");
}

static void root_dirs_are_made_0711_and_refused_when_others_may_write(void**) {
    if (skip_unless_root()) skip();
    TempDir tmp;
    UniqueFd root = open_dir(tmp.path());
    mode_t old = ::umask(0);
    UniqueFd jobs = root_dir_at(root.get(), "jobs", tmp.path() + "/jobs");
    ::umask(old);
    assert_true(static_cast<bool>(jobs));
    assert_int_equal(stat_of(tmp.path() + "/jobs").st_mode & 07777, 0711);
    std::string cache = tmp.make_dir("cache");
    ::chmod(cache.c_str(), 0777);
    expect_error_containing([&] { root_dir_at(root.get(), "cache", cache); }, cache + " must be owned by root");
}

// ---- the users' directories

static void user_dir_is_made_0700_and_given_to_the_user(void**) {
    if (skip_unless_root()) skip();
    TempDir tmp;
    UniqueFd jobs = open_dir(tmp.path());
    user_dir_at(jobs.get(), "42", user, group, tmp.path() + "/42");
    struct stat st = stat_of(tmp.path() + "/42");
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0700);
    assert_int_equal(st.st_uid, user);
    assert_int_equal(st.st_gid, group);
}

static void user_dir_left_by_root_before_it_was_given_away_is_given_now(void**) {
    if (skip_unless_root()) skip();
    TempDir tmp;
    std::string dir = tmp.make_dir("42");
    ::chmod(dir.c_str(), 0700);
    UniqueFd jobs = open_dir(tmp.path());
    user_dir_at(jobs.get(), "42", user, group, dir);
    assert_int_equal(stat_of(dir).st_uid, user);
}

static void user_dir_of_the_same_user_is_kept_as_it_is(void**) {
    if (skip_unless_root()) skip();
    TempDir tmp;
    std::string dir = tmp.make_dir("42");
    assert_int_equal(::chown(dir.c_str(), user, group), 0);
    ::chmod(dir.c_str(), 0750);
    UniqueFd jobs = open_dir(tmp.path());
    user_dir_at(jobs.get(), "42", user, group, dir);
    assert_int_equal(stat_of(dir).st_mode & 07777, 0750);
}

static void user_dir_of_another_user_is_refused_never_taken_over(void**) {
    if (skip_unless_root()) skip();
    TempDir tmp;
    std::string dir = tmp.make_dir("42");
    assert_int_equal(::chown(dir.c_str(), other_user, group), 0);
    UniqueFd jobs = open_dir(tmp.path());
    expect_error_containing([&] { user_dir_at(jobs.get(), "42", user, group, dir); },
                            dir + " belongs to uid 65533, not to uid 65534");
    assert_int_equal(stat_of(dir).st_uid, other_user);
}

static void user_dir_is_never_made_through_a_symlink(void**) {
    if (skip_unless_root()) skip();
    TempDir tmp;
    tmp.make_dir("elsewhere");
    assert_int_equal(::symlink("elsewhere", (tmp.path() + "/42").c_str()), 0);
    UniqueFd jobs = open_dir(tmp.path());
    expect_error_containing([&] { user_dir_at(jobs.get(), "42", user, group, tmp.path() + "/42"); }, "cannot open");
    assert_int_equal(stat_of(tmp.path() + "/elsewhere").st_uid, 0);
}


// ---- the topology cache

static void topology_cache_goes_only_into_a_root_private_local_root(void**) {
    if (skip_unless_root()) skip();
    TempDir tmp;
    assert_string_equal(topology_cache_path(tmp.path() + "/node").c_str(), (tmp.path() + "/node/topology.xml").c_str());
    std::string open_to_all = tmp.make_dir("open");
    ::chmod(open_to_all.c_str(), 0777);
    assert_string_equal(topology_cache_path(open_to_all).c_str(), "");
}


static void a_kept_record_reads_back_as_written_whatever_its_paths(void**) {
    KeptJob k;
    k.job_id = 42;
    k.uid = 1000;
    k.since = 1700000000;
    k.reason = "the stage-out of step 0 has not delivered yet";
    k.pending_steps = {0, 3};
    k.deliveries = {{0, "out dir", "/home/u/res\nx %j"}, {3, "ckpt", "/scratch/u/ckpt"}};
    k.ended = true;
    std::optional<KeptJob> back = parse_kept_job(42, format_kept_job(k));
    assert_true(back.has_value());
    assert_int_equal(back->uid, 1000);
    assert_int_equal(back->since, 1700000000);
    assert_true(back->ended);
    assert_true(back->pending_steps == k.pending_steps);
    assert_int_equal(back->deliveries.size(), 2);
    assert_string_equal(back->deliveries[0].local.c_str(), "out dir");
    assert_string_equal(back->deliveries[0].dest.c_str(), "/home/u/res\nx %j");
    assert_int_equal(back->deliveries[1].step, 3);
    // No uid: no record.
    assert_false(parse_kept_job(42, "pending=0\n").has_value());
}

static void a_step_with_stage_out_is_kept_until_root_hears_it_delivered(void**) {
    if (skip_unless_root()) skip();
    TempDir tmp;
    tmp.make_dir("jobs/7");
    tmp.make_dir("jobs/7.aihpc");
    keep_until_delivered(tmp.path(), 7, user, 0, {{0, "out", "/home/u/res"}});
    keep_until_delivered(tmp.path(), 7, user, 1, {{1, "ckpt", "/home/u/ckpt"}});
    std::optional<KeptJob> k = kept_job_at(open_dir(tmp.path()).get(), 7);
    assert_true(k.has_value());
    assert_int_equal(k->pending_steps.size(), 2);
    assert_false(record_delivered(tmp.path(), 7, 0));
    k = kept_job_at(open_dir(tmp.path()).get(), 7);
    assert_int_equal(k->pending_steps.size(), 1);
    assert_int_equal(k->deliveries.size(), 1);
    assert_string_equal(k->deliveries[0].dest.c_str(), "/home/u/ckpt");
    assert_true(record_delivered(tmp.path(), 7, 1));
    assert_false(kept_job_at(open_dir(tmp.path()).get(), 7).has_value());
}

static void the_epilog_keeps_an_undelivered_job_and_releases_it_once_delivered(void**) {
    if (skip_unless_root()) skip();
    using namespace std::chrono_literals;
    TempDir tmp;
    tmp.make_dir("jobs/7");
    tmp.make_dir("jobs/7.aihpc");
    tmp.make_dir("jobs/8");
    tmp.make_dir("jobs/8.aihpc");
    keep_until_delivered(tmp.path(), 7, user, 0, {{0, "out", "/home/u/res"}});
    keep_until_delivered(tmp.path(), 8, user, 0, {{0, "out", "/home/u/res8"}});

    // Job 7 ends without delivering: kept, and now marked as ended.
    JobCleanup cleanup = retire_job_dirs(tmp.path(), 7, 7, 5s);
    assert_true(cleanup.kept_after_failed_stage_out);
    assert_int_equal(cleanup.undelivered.size(), 1);
    assert_string_equal(cleanup.undelivered[0].dest.c_str(), "/home/u/res");
    assert_true(exists(tmp.path() + "/jobs/7"));
    assert_true(kept_job_at(open_dir(tmp.path()).get(), 7)->ended);

    // Job 8 still runs and its step says it delivered: another job's epilog leaves it be
    // (its own epilog and slurmstepd decide), while job 7, ended and now delivered by its
    // user, is released.
    tmp.write("jobs/7.aihpc/" + delivered_marker(0), "");
    tmp.write("jobs/8.aihpc/" + delivered_marker(0), "");
    JobCleanup later = retire_job_dirs(tmp.path(), 9, 7, 5s);
    assert_int_equal(later.delivered_later.size(), 1);
    assert_int_equal(later.delivered_later[0], 7);
    assert_false(exists(tmp.path() + "/jobs/7"));
    assert_false(kept_job_at(open_dir(tmp.path()).get(), 7).has_value());
    assert_true(exists(tmp.path() + "/jobs/8"));
    assert_true(kept_job_at(open_dir(tmp.path()).get(), 8).has_value());

    // Job 8's own epilog believes its marker: the stage dir goes.
    JobCleanup own = retire_job_dirs(tmp.path(), 8, 7, 5s);
    assert_false(own.kept_after_failed_stage_out);
    assert_false(exists(tmp.path() + "/jobs/8"));
}

// The epilog looks twice when it delivers a cut stage-out itself: first it keeps the job
// and marks it ended; once the user's delivery wrote its markers, its second look
// releases the job's own record and dirs.
static void the_epilogs_second_look_releases_what_its_delivery_finished(void**) {
    if (skip_unless_root()) skip();
    using namespace std::chrono_literals;
    TempDir tmp;
    tmp.make_dir("jobs/7/out");
    tmp.make_dir("jobs/7.aihpc");
    keep_until_delivered(tmp.path(), 7, user, 0, {{0, "out", "/home/u/res"}});
    JobCleanup first = retire_job_dirs(tmp.path(), 7, 7, 5s);
    assert_true(first.kept_after_failed_stage_out);
    assert_true(exists(tmp.path() + "/jobs/7/out"));
    // Not delivered yet: a second look keeps it still.
    assert_true(retire_job_dirs(tmp.path(), 7, 7, 5s).kept_after_failed_stage_out);
    tmp.write("jobs/7.aihpc/" + delivered_marker(0, 0), "");
    tmp.write("jobs/7.aihpc/" + delivered_marker(0), "");
    JobCleanup second = retire_job_dirs(tmp.path(), 7, 7, 5s);
    assert_false(second.kept_after_failed_stage_out);
    assert_false(exists(tmp.path() + "/jobs/7"));
    assert_false(kept_job_at(open_dir(tmp.path()).get(), 7).has_value());
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(job_layout_names_the_jobs_and_the_users_directories),
        cmocka_unit_test(root_private_means_a_root_owned_dir_no_one_else_may_write),
        cmocka_unit_test(job_items_read_back_as_written_whatever_their_names),
        cmocka_unit_test(a_kept_record_reads_back_as_written_whatever_its_paths),
        cmocka_unit_test(a_step_with_stage_out_is_kept_until_root_hears_it_delivered),
        cmocka_unit_test(the_epilog_keeps_an_undelivered_job_and_releases_it_once_delivered),
        cmocka_unit_test(the_epilogs_second_look_releases_what_its_delivery_finished),
        cmocka_unit_test(job_items_skip_lines_that_are_not_five_fields),
        cmocka_unit_test(open_local_root_makes_a_missing_root_and_its_parents),
        cmocka_unit_test(open_local_root_does_not_make_one_unless_asked),
        cmocka_unit_test(open_local_root_refuses_a_group_writable_dir),
        cmocka_unit_test(open_local_root_refuses_a_dir_owned_by_another_uid),
        cmocka_unit_test(open_local_root_refuses_a_symlink),
        cmocka_unit_test(root_dirs_are_made_0711_and_refused_when_others_may_write),
        cmocka_unit_test(user_dir_is_made_0700_and_given_to_the_user),
        cmocka_unit_test(user_dir_left_by_root_before_it_was_given_away_is_given_now),
        cmocka_unit_test(user_dir_of_the_same_user_is_kept_as_it_is),
        cmocka_unit_test(user_dir_of_another_user_is_refused_never_taken_over),
        cmocka_unit_test(user_dir_is_never_made_through_a_symlink),
        cmocka_unit_test(topology_cache_goes_only_into_a_root_private_local_root),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
