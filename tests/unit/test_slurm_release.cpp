// plugin/slurm_release: aihpc.so refuses a Slurm of another release than the one it was
// built against, and its message names both; micro versions of one release pass.
#include <cstring>
#include <string>

#include "cmocka_cxx.hpp"
#include "plugin/slurm_release.hpp"

using namespace aihpc::plugin;

static void release_is_the_first_two_numbers(void**) {
    assert_string_equal(slurm_release_of("22.05.8").value().c_str(), "22.05");
    assert_string_equal(slurm_release_of("24.11.5").value().c_str(), "24.11");
    assert_string_equal(slurm_release_of("26.05.0-0rc1").value().c_str(), "26.05");
    assert_string_equal(slurm_release_of("25.05").value().c_str(), "25.05");
}

static void unreadable_versions_have_no_release(void**) {
    for (const char* text : {"", "22", "22.", ".05.1", "x.y.z", "22.x5", "123456.05.1", "24.115"})
        assert_false(slurm_release_of(text).has_value());
}

static void same_release_other_micro_version_is_accepted(void**) {
    assert_false(slurm_release_mismatch("22.05.8", "22.05.11").has_value());
    assert_false(slurm_release_mismatch("24.11.5", "24.11.0").has_value());
}

static void other_release_is_refused_naming_both(void**) {
    auto message = slurm_release_mismatch("22.05.8", "24.11.5");
    assert_true(message.has_value());
    assert_non_null(std::strstr(message->c_str(), "built against Slurm 22.05.8"));
    assert_non_null(std::strstr(message->c_str(), "loaded by Slurm 24.11.5"));
    assert_non_null(std::strstr(message->c_str(), "rebuild"));
    assert_true(slurm_release_mismatch("24.11.5", "26.05.1").has_value());
    assert_true(slurm_release_mismatch("24.11.5", "24.05.1").has_value());
}

static void unreadable_running_version_is_not_refused(void**) {
    assert_false(slurm_release_mismatch("22.05.8", "").has_value());
    assert_false(slurm_release_mismatch("22.05.8", "unknown").has_value());
}

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(release_is_the_first_two_numbers),
        cmocka_unit_test(unreadable_versions_have_no_release),
        cmocka_unit_test(same_release_other_micro_version_is_accepted),
        cmocka_unit_test(other_release_is_refused_naming_both),
        cmocka_unit_test(unreadable_running_version_is_not_refused),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
