// lib/common: JSON quoting and handles, directory creation, and the child process handle.
// The exec'd helper that drops to a user is tested in test_node_helper.cpp.
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
#include "temp_dir.hpp"

using namespace aihpc;


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

// ---- root-owned directories

static void a_sticky_world_writable_dir_is_refused_as_the_dir_itself(void**) {
    if (::geteuid() != 0) {
        print_message("skipped: the directories must be root's, as local_root is on a node\n");
        skip();
    }
    TempDir tmp;
    std::string shared = tmp.make_dir("shared");
    assert_int_equal(::chmod(shared.c_str(), 01777), 0);
    // Users could create trash/, cache/ or topology.xml in it before aihpc does.
    expect_error_containing([&] { ::close(open_root_owned_dir(shared, false, 0755, "local_root")); },
                            "local_root: " + shared + " must be owned by root and writable by no one else");
    expect_error_containing([&] { ::close(open_root_owned_dir(shared + "/", false, 0755, "local_root")); },
                            "mode 1777");
    // Below it, a root-owned 0755 directory is safe: the sticky bit keeps it in place.
    std::string below = tmp.make_dir("shared/aihpc");
    assert_int_equal(::chmod(below.c_str(), 0755), 0);
    int fd = open_root_owned_dir(below, false, 0755, "local_root");
    assert_true(fd >= 0);
    ::close(fd);
    fd = open_root_owned_dir(shared + "/made", true, 0755, "local_root");
    assert_true(fd >= 0);
    ::close(fd);
}

// ---- the child process handle

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
        cmocka_unit_test(a_sticky_world_writable_dir_is_refused_as_the_dir_itself),
        cmocka_unit_test(a_child_whose_status_cannot_be_read_never_counts_as_a_success),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
