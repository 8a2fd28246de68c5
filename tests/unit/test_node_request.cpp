// The request aihpc-node reads on fd 3 (lib/stage/node_request): what the plugin writes
// reads back whole, and whatever is missing, mistyped or out of range is refused by
// name, never read as 0.
#include <string>

// The library first: cmocka defines a fail() macro.
#include "stage/node_request.hpp"
#include "cmocka_cxx.hpp"

using namespace aihpc;
using namespace aihpc::stage;

namespace {

// A request as plugin/node_work.cpp writes it, with `extra` members and `job`, `uid`
// and `gid` as given.
std::string request(const std::string& extra = "", const std::string& job = "4711", const std::string& uid = "1000",
                    const std::string& gid = "1000") {
    std::string text = R"({"site":["local_root=/var/lib/aihpc-test","stage_timeout=120"],)"
                       R"("options":{"aihpc-stage":"/data/set"},"job":)" + job + R"(,"uid":)" + uid + R"(,"gid":)" + gid +
                       R"(,"node":"n1","submit_dir":"/home/alice","step":0,"local_tasks":2)";
    if (!extra.empty()) text += "," + extra;
    return text + "}";
}

}  // namespace

static void a_request_reads_back_every_member(void**) {
    NodeRequest r = parse_node_request(
        request(R"("groups":[1000,27],"limits":{"max":1073741824,"low":0},"no_cache":true,"argv0":"python3")"));
    assert_int_equal(r.job_id, 4711);
    assert_int_equal(r.uid, 1000);
    assert_int_equal(r.gid, 1000);
    assert_string_equal(r.node.c_str(), "n1");
    assert_string_equal(r.submit_dir.c_str(), "/home/alice");
    assert_int_equal(r.local_tasks, 2);
    assert_int_equal(r.groups.size(), 2);
    assert_int_equal(r.groups[1], 27);
    assert_int_equal(r.limits.max_bytes, 1073741824ull);
    assert_true(r.no_cache);
    assert_true(r.argv0 && *r.argv0 == "python3");
    assert_string_equal(r.site.local_root.c_str(), "/var/lib/aihpc-test");
    assert_int_equal(r.site.stage_timeout_s, 120);
    assert_string_equal(r.raw_options.at("aihpc-stage").c_str(), "/data/set");
}

static void a_request_without_a_job_user_or_node_is_refused(void**) {
    expect_error_containing([] { parse_node_request(request("", "0")); }, "names no job");
    expect_error_containing([] { parse_node_request(R"({"site":[],"options":{},"job":1,"gid":1,"node":"n","submit_dir":"/"})"); },
                            "'uid'");
    expect_error_containing([] { parse_node_request(request("", "1", "-5")); }, "'uid'");
    expect_error_containing([] { parse_node_request(request("", "1", "\"1000\"")); }, "'uid'");
    expect_error_containing([] { parse_node_request("[1,2]"); }, "not a JSON object");
    expect_error_containing([] { parse_node_request("{\"site\": "); }, "not a JSON object");
}

// 2^32 would be uid 0 once narrowed, and (uid_t)-1 means "leave unchanged" to setresuid.
static void ids_that_would_wrap_or_mean_no_change_are_refused(void**) {
    expect_error_containing([] { parse_node_request(request("", "1", "4294967296")); }, "'uid' is out of range");
    expect_error_containing([] { parse_node_request(request("", "1", "1000", "4294967295")); }, "'gid' is out of range");
    expect_error_containing([] { parse_node_request(request("", "4294967297")); }, "'job' is out of range");
    expect_error_containing([] { parse_node_request(request(R"("groups":[4294967295])")); }, "'groups'");
    expect_error_containing([] { parse_node_request(request(R"("groups":["wheel"])")); }, "'groups'");
}

static void bad_site_arguments_or_options_are_refused_by_their_parsers(void**) {
    expect_error_containing([] { parse_node_request(R"({"site":["no_such_key=1"],"options":{},"job":1,"uid":1,"gid":1,"node":"n","submit_dir":"/"})"); },
                            "no_such_key");
    expect_error_containing([] { parse_node_request(R"({"site":[],"options":{"aihpc-stage":7},"job":1,"uid":1,"gid":1,"node":"n","submit_dir":"/"})"); },
                            "stage");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_request_reads_back_every_member),
        cmocka_unit_test(a_request_without_a_job_user_or_node_is_refused),
        cmocka_unit_test(ids_that_would_wrap_or_mean_no_change_are_refused),
        cmocka_unit_test(bad_site_arguments_or_options_are_refused_by_their_parsers),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
