// lib/common: JSON quoting and handles, directory creation, and the child that drops to
// a user (run for real: those tests need root, as the plugin does, and skip without it).
#include <grp.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "cmocka_cxx.hpp"
#include "common/child_process.hpp"
#include "common/json.hpp"
#include "common/paths.hpp"
#include "common/text.hpp"
#include "common/user_process.hpp"
#include "temp_dir.hpp"

using namespace aihpc;

namespace {

// uid and gid 65534 are nobody and nogroup on Debian; 65533 as a second, supplementary
// group needs no name, since the kernel looks none up.
const UserIds nobody{65534, 65534, {65534, 65533}};

bool skip_unless_root() {
    if (::geteuid() == 0) return false;
    print_message("skipped: dropping to another user needs root\n");
    return true;
}

}  // namespace

// ---- JSON

static void id_lists_parse_ranges_and_refuse_huge_or_reversed_ones(void**) {
    auto ids = aihpc::parse_id_list("0-3,8,10-11");
    assert_true(ids.has_value());
    assert_string_equal(aihpc::format_id_list(*ids).c_str(), "0-3,8,10-11");
    assert_true(aihpc::parse_id_list("65535").has_value());
    // A hostile range must not build millions of entries.
    assert_false(aihpc::parse_id_list("0-4294967295").has_value());
    assert_false(aihpc::parse_id_list("65536").has_value());
    assert_false(aihpc::parse_id_list("5-3").has_value());
    assert_false(aihpc::parse_id_list("1,,2").has_value());
}

static void json_quote_escapes_what_json_requires(void**) {
    struct Case {
        std::string text;
        const char* quoted;
    } cases[] = {
        {"plain", "\"plain\""},
        {"", "\"\""},
        {"say \"hi\"", "\"say \\\"hi\\\"\""},
        {"C:\\dir", "\"C:\\\\dir\""},
        {"a\nb\tc\rd", "\"a\\nb\\tc\\rd\""},
        {std::string("nul\0x", 5), "\"nul\\u0000x\""},
        {"\x1f", "\"\\u001f\""},
        {"caf\xc3\xa9 /", "\"caf\xc3\xa9 /\""},  // UTF-8 and slashes pass as they are
    };
    for (const Case& c : cases) assert_string_equal(json_quote(c.text).c_str(), c.quoted);
}

static void json_quote_or_null_is_null_for_empty_text(void**) {
    assert_string_equal(json_quote_or_null("").c_str(), "null");
    assert_string_equal(json_quote_or_null("n1").c_str(), "\"n1\"");
}

static void json_string_array_quotes_each_word(void**) {
    assert_string_equal(json_string_array({}).c_str(), "[]");
    assert_string_equal(json_string_array({"python3", "a \"b\""}).c_str(), "[\"python3\",\"a \\\"b\\\"\"]");
}

static void parsed_json_reads_back_what_was_quoted(void**) {
    std::string text = "x\"\\\n\x01y";
    JsonRef doc = parse_json("{\"k\":" + json_quote(text) + "}");
    assert_true(static_cast<bool>(doc));
    json_object* k = json_member(doc.get(), "k");
    assert_non_null(k);
    assert_string_equal(json_object_get_string(k), text.c_str());
}

static void parse_json_is_empty_for_text_that_is_not_json(void**) {
    assert_false(static_cast<bool>(parse_json("{\"a\":")));
    assert_false(static_cast<bool>(parse_json("")));
}

static void json_member_is_null_where_there_is_no_such_member(void**) {
    JsonRef doc = parse_json("{\"a\":1,\"list\":[1]}");
    assert_null(json_member(doc.get(), "b"));
    assert_null(json_member(json_member(doc.get(), "list"), "a"));  // not an object
    assert_null(json_member(nullptr, "a"));
}

static void json_ref_moves_its_reference(void**) {
    JsonRef a(json_object_new_object());
    json_object* object = a.get();
    JsonRef b = std::move(a);
    assert_null(a.get());
    assert_ptr_equal(b.get(), object);
    b = JsonRef(json_object_new_array());  // the object is put here; ASan sees any leak
    assert_true(json_object_is_type(b.get(), json_type_array));
}

// ---- directories

static void make_directories_creates_every_missing_parent(void**) {
    TempDir tmp;
    std::string deep = tmp.path() + "/a/b//c/";
    make_directories(deep, 0750);
    struct stat st {};
    assert_int_equal(::stat((tmp.path() + "/a/b/c").c_str(), &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    make_directories(deep);  // already there: fine
    make_directory(tmp.path() + "/a");
}

static void make_directories_names_the_directory_it_could_not_make(void**) {
    TempDir tmp;
    std::string file = tmp.write("file", "x");
    expect_error_containing([&] { make_directories(file + "/sub/dir", 0700, "the stage directory"); },
                            "cannot create the stage directory " + file + "/sub: Not a directory");
}

static void path_exists_follows_symlinks(void**) {
    TempDir tmp;
    std::string file = tmp.write("file", "x");
    assert_int_equal(::symlink("file", (tmp.path() + "/good").c_str()), 0);
    assert_int_equal(::symlink("absent", (tmp.path() + "/dangling").c_str()), 0);
    assert_true(path_exists(file));
    assert_true(path_exists(tmp.path() + "/good"));
    assert_false(path_exists(tmp.path() + "/dangling"));
    assert_false(path_exists(tmp.path() + "/absent"));
}

// ---- the child that drops to a user

static void ids_text(const ChildReport& report) {
    std::vector<gid_t> groups(16);
    int n = ::getgroups(static_cast<int>(groups.size()), groups.data());
    groups.resize(static_cast<std::size_t>(std::max(0, n)));
    std::sort(groups.begin(), groups.end());  // the kernel keeps its own order
    std::string text = std::to_string(::getuid()) + " " + std::to_string(::geteuid()) + " " + std::to_string(::getgid()) +
                       " " + std::to_string(::getegid()) + " groups";
    for (gid_t group : groups) text += " " + std::to_string(group);
    report.note(text);
}

static void user_part_runs_with_the_users_uid_gid_and_groups(void**) {
    if (skip_unless_root()) skip();
    std::vector<std::string> notes = run_as_user(nobody, "test", ids_text, ids_text);
    assert_int_equal(notes.size(), 2);
    assert_true(notes[0].rfind("0 0 0 0 groups", 0) == 0);  // the root part
    assert_string_equal(notes[1].c_str(), "65534 65534 65534 65534 groups 65533 65534");
}

static void root_part_is_root_when_the_caller_had_dropped_its_euid(void**) {
    if (skip_unless_root()) skip();
    // As slurmstepd in user_init: real uid 0, effective ids the job's user's.
    assert_int_equal(::setegid(65534), 0);
    assert_int_equal(::seteuid(65534), 0);
    std::vector<std::string> notes;
    bool failed = false;
    try {
        notes = run_as_user(nobody, "test", ids_text, [](const ChildReport&) {});
    } catch (const Error&) {
        failed = true;
    }
    int back = ::seteuid(0) | ::setegid(0);
    assert_int_equal(back, 0);
    assert_false(failed);
    assert_int_equal(notes.size(), 1);
    assert_true(notes[0].rfind("0 0 0 0 groups", 0) == 0);
}

static void notes_come_back_in_order_and_whole(void**) {
    if (skip_unless_root()) skip();
    std::vector<std::string> notes = run_as_user(
        nobody, "test", [](const ChildReport& r) { r.note("first"); },
        [](const ChildReport& r) {
            r.note("two\nlines");
            r.note("");
            r.note(std::string(100000, 'x'));  // more than a pipe holds
        });
    assert_int_equal(notes.size(), 4);
    assert_string_equal(notes[0].c_str(), "first");
    assert_string_equal(notes[1].c_str(), "two\nlines");
    assert_string_equal(notes[2].c_str(), "");
    assert_int_equal(notes[3].size(), 100000);
}

static void an_exception_in_the_user_part_comes_back_as_an_error_with_its_text(void**) {
    if (skip_unless_root()) skip();
    bool died = false;
    std::string message;
    try {
        run_as_user(
            nobody, "test", [](const ChildReport&) {},
            [](const ChildReport& r) {
                r.note("before");
                throw Error("stage-in of /data/x failed: No space left on device");
            });
    } catch (const ChildDied&) {
        died = true;
    } catch (const Error& e) {
        message = e.what();
    }
    assert_false(died);
    assert_string_equal(message.c_str(), "stage-in of /data/x failed: No space left on device");
}

static void an_exception_in_the_root_part_stops_the_child_before_the_user_part(void**) {
    if (skip_unless_root()) skip();
    TempDir tmp;
    std::string mark = tmp.path() + "/user-part-ran";
    expect_error_containing(
        [&] {
            run_as_user(
                nobody, "test", [](const ChildReport&) { throw Error("local_root is not safe"); },
                [&](const ChildReport&) { ::mkdir(mark.c_str(), 0700); });
        },
        "local_root is not safe");
    assert_false(path_exists(mark));
}

static void a_child_killed_by_a_signal_is_reported_as_died(void**) {
    if (skip_unless_root()) skip();
    std::string message;
    try {
        run_as_user(nobody, "staging", [](const ChildReport&) {}, [](const ChildReport&) { ::raise(SIGKILL); });
    } catch (const ChildDied& e) {
        message = e.what();
    }
    assert_string_equal(message.c_str(), "the staging child died (Killed)");
}

static void a_child_that_exits_without_a_word_is_reported_as_died(void**) {
    if (skip_unless_root()) skip();
    std::string message;
    try {
        run_as_user(nobody, "stage-out", [](const ChildReport&) {}, [](const ChildReport&) { ::_exit(3); });
    } catch (const ChildDied& e) {
        message = e.what();
    }
    assert_string_equal(message.c_str(), "the stage-out child died (exit 3)");
}

static void a_child_whose_status_cannot_be_read_never_counts_as_a_success(void**) {
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    int reaped = 0;
    assert_int_equal(waitpid(pid, &reaped, 0), pid);  // reaped elsewhere: waitpid fails with ECHILD
    assert_true(WIFEXITED(reaped) && WEXITSTATUS(reaped) == 0);
    aihpc::ChildProcess child(pid);
    int status = child.wait();
    assert_false(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(id_lists_parse_ranges_and_refuse_huge_or_reversed_ones),
        cmocka_unit_test(json_quote_escapes_what_json_requires),
        cmocka_unit_test(json_quote_or_null_is_null_for_empty_text),
        cmocka_unit_test(json_string_array_quotes_each_word),
        cmocka_unit_test(parsed_json_reads_back_what_was_quoted),
        cmocka_unit_test(parse_json_is_empty_for_text_that_is_not_json),
        cmocka_unit_test(json_member_is_null_where_there_is_no_such_member),
        cmocka_unit_test(json_ref_moves_its_reference),
        cmocka_unit_test(make_directories_creates_every_missing_parent),
        cmocka_unit_test(make_directories_names_the_directory_it_could_not_make),
        cmocka_unit_test(path_exists_follows_symlinks),
        cmocka_unit_test(user_part_runs_with_the_users_uid_gid_and_groups),
        cmocka_unit_test(root_part_is_root_when_the_caller_had_dropped_its_euid),
        cmocka_unit_test(notes_come_back_in_order_and_whole),
        cmocka_unit_test(an_exception_in_the_user_part_comes_back_as_an_error_with_its_text),
        cmocka_unit_test(an_exception_in_the_root_part_stops_the_child_before_the_user_part),
        cmocka_unit_test(a_child_killed_by_a_signal_is_reported_as_died),
        cmocka_unit_test(a_child_that_exits_without_a_word_is_reported_as_died),
        cmocka_unit_test(a_child_whose_status_cannot_be_read_never_counts_as_a_success),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
