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

// A request as the plugin writes it (format_node_request), by hand, with `extra` members and `job`, `uid`
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

// What the plugin writes is what the helper reads: one codec for both ends, with names,
// directories and options that need quoting.
static void a_formatted_request_reads_back_whole(void**) {
    NodeRequest written;
    written.site_args = {"local_root=/var/lib/aihpc \"q\"", "stage_timeout=90"};
    written.raw_options = {{"aihpc-stage", "/data/a b,/data/c:x"}, {"aihpc-checkpoint", "USR1@60"}};
    written.job_id = 4294967295u;
    written.uid = 1000;
    written.gid = 27;
    written.node = "n1\nn2";
    written.submit_dir = "/home/al\\ice/\u00e9";
    written.step_id = 4294967294u;
    written.local_tasks = 64;
    written.groups = {27, 1000};
    written.mounts = {"set", "with space \"q\""};
    written.fanout_nodes = 64;
    written.fanout_index = 63;
    written.fanout_sender = "gpu001";
    written.fanout_nodelist = "gpu[001-064]";
    written.limits.max_bytes = 1ull << 40;
    written.limits.low_bytes = 1ull << 39;
    written.no_cache = true;
    written.any_runtime = true;
    written.argv0 = "python3 \"x\"";
    written.checkpoint_dir = "/home/alice/.aihpc/checkpoints/7";
    NodeRequest read = parse_node_request(format_node_request(written));
    assert_true(read.site_args == written.site_args);
    assert_true(read.raw_options == written.raw_options);
    assert_int_equal(read.job_id, written.job_id);
    assert_int_equal(read.uid, written.uid);
    assert_int_equal(read.gid, written.gid);
    assert_string_equal(read.node.c_str(), written.node.c_str());
    assert_string_equal(read.submit_dir.c_str(), written.submit_dir.c_str());
    assert_int_equal(read.step_id, written.step_id);
    assert_int_equal(read.local_tasks, 64);
    assert_true(read.groups == written.groups);
    assert_true(read.mounts == written.mounts);
    assert_int_equal(read.fanout_nodes, 64);
    assert_int_equal(read.fanout_index, 63);
    assert_string_equal(read.fanout_sender.c_str(), "gpu001");
    assert_string_equal(read.fanout_nodelist.c_str(), "gpu[001-064]");
    assert_int_equal(read.limits.max_bytes, written.limits.max_bytes);
    assert_int_equal(read.limits.low_bytes, written.limits.low_bytes);
    assert_true(read.no_cache && read.any_runtime);
    assert_string_equal(read.argv0->c_str(), written.argv0->c_str());
    assert_string_equal(read.checkpoint_dir->c_str(), written.checkpoint_dir->c_str());
    assert_string_equal(read.site.local_root.c_str(), "/var/lib/aihpc \"q\"");
    assert_true(read.options.checkpoint.has_value());
    // Unset members stay unset.
    NodeRequest plain;
    plain.job_id = 7;
    plain.uid = 1000;
    plain.gid = 1000;
    plain.node = "n1";
    NodeRequest back = parse_node_request(format_node_request(plain));
    assert_false(back.no_cache || back.any_runtime || back.argv0 || back.checkpoint_dir);
    assert_true(back.groups.empty());
    assert_int_equal(back.limits.max_bytes, 0);
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
        cmocka_unit_test(a_formatted_request_reads_back_whole),
        cmocka_unit_test(a_request_without_a_job_user_or_node_is_refused),
        cmocka_unit_test(ids_that_would_wrap_or_mean_no_change_are_refused),
        cmocka_unit_test(bad_site_arguments_or_options_are_refused_by_their_parsers),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
