// Data gravity (lib/stage/warm_data): the data key, the node's feature set (the site's
// kept, aihpc's replaced, the hottest N), the Comment's round trip, scontrol's records,
// and which nodes `where` lists for a version; and a node's caches listed from disk.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

// The library first: cmocka defines a fail() macro.
#include "stage/warm_data.hpp"
#include "cmocka_cxx.hpp"
#include "temp_dir.hpp"

using namespace aihpc::stage;
using namespace aihpc::stage::warm;

namespace {

WarmEntry entry(const std::string& key, bool shared, uid_t uid, const std::string& hash, std::int64_t last_use) {
    return WarmEntry{key, shared, uid, hash, last_use};
}

const std::string hash_a = "0123456789abcdef0123456789abcdef";
const std::string hash_b = "fedcba9876543210fedcba9876543210";

}  // namespace

static void the_data_key_names_a_source_whatever_its_version(void**) {
    std::string k = data_key(SourceKind::tree, "/datasets/cifar");
    assert_int_equal(k.size(), 6 + 16);
    assert_true(k.starts_with("aihpc_"));
    for (char c : k.substr(6)) assert_true((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
    assert_string_equal(k.c_str(), data_key("tree", "/datasets/cifar").c_str());
    assert_string_not_equal(k.c_str(), data_key(SourceKind::archive, "/datasets/cifar").c_str());
    assert_string_not_equal(k.c_str(), data_key(SourceKind::tree, "/datasets/cifar10").c_str());
    // "kind\0realpath": the kind cannot run into the path.
    assert_string_not_equal(data_key("tree", "x/a").c_str(), data_key("treex", "/a").c_str());
}

static void feature_names_say_shared_or_whose(void**) {
    assert_string_equal(feature_name(entry("aihpc_00ff", true, 0, "", 0)).c_str(), "aihpc_00ff");
    assert_string_equal(feature_name(entry("aihpc_00ff", false, 1001, "", 0)).c_str(), "aihpc_00ff_u1001");
    assert_string_equal(mode_name(entry("aihpc_00ff", true, 0, "", 0)), "shared");
    assert_string_equal(mode_name(entry("aihpc_00ff", false, 7, "", 0)), "user");
}

static void the_hottest_n_features_keep_their_versions(void**) {
    std::vector<WarmEntry> all = {entry("aihpc_1", true, 0, hash_a, 10), entry("aihpc_2", true, 0, hash_a, 50),
                                  entry("aihpc_3", false, 5, hash_a, 30), entry("aihpc_1", true, 0, hash_b, 40),
                                  entry("aihpc_4", true, 0, hash_a, 20)};
    std::vector<WarmEntry> top = hottest(all, 2);
    // aihpc_2 (50) and aihpc_1 (40), with aihpc_1's older version too.
    assert_int_equal(top.size(), 3);
    assert_string_equal(top[0].key.c_str(), "aihpc_2");
    assert_string_equal(top[1].key.c_str(), "aihpc_1");
    assert_string_equal(top[1].manifest_hash.c_str(), hash_b.c_str());
    assert_string_equal(top[2].key.c_str(), "aihpc_1");
    assert_int_equal(hottest(all, 0).size(), 0);
    assert_int_equal(hottest(all, 16).size(), all.size());
}

static void the_merge_keeps_the_sites_features_and_replaces_aihpcs(void**) {
    std::vector<std::string> current = {"gpu", "aihpc_old", "ib", "aihpc_old_u5"};
    std::vector<WarmEntry> warm = {entry("aihpc_new", true, 0, hash_a, 9), entry("aihpc_x", false, 5, hash_a, 8),
                                   entry("aihpc_new", true, 0, hash_b, 7)};
    std::vector<std::string> merged = merge_features(current, warm);
    std::vector<std::string> expected = {"gpu", "ib", "aihpc_new", "aihpc_x_u5"};
    assert_true(merged == expected);
    // Nothing warm: only the site's own stay.
    assert_true(merge_features(current, {}) == std::vector<std::string>({"gpu", "ib"}));
    assert_true(merge_features({}, {}).empty());
}

static void uses_alone_rewrite_the_comment_only_once_they_have_moved_enough(void**) {
    std::vector<WarmEntry> warm = {entry("aihpc_00000000000000aa", true, 0, hash_a, 1700000000),
                                   entry("aihpc_00000000000000bb", false, 1001, hash_b, 1700000100)};
    std::string announced = format_comment(warm);
    assert_true(comment_is_current(announced, warm));
    // Used again a little later, in another order: what the node shows still holds.
    std::vector<WarmEntry> later = {warm[1], warm[0]};
    later[0].last_use += last_use_resolution_s;
    later[1].last_use += 10;
    assert_true(comment_is_current(announced, later));
    // Used later than the resolution: rewritten.
    later[0].last_use += 1;
    assert_false(comment_is_current(announced, later));
    // A use earlier than the one shown (a clock set back, an older record): rewritten.
    std::vector<WarmEntry> earlier = warm;
    earlier[0].last_use -= 1;
    assert_false(comment_is_current(announced, earlier));
    // Another version, another user, an entry more or fewer: rewritten.
    std::vector<WarmEntry> changed = warm;
    changed[0].manifest_hash = hash_b;
    assert_false(comment_is_current(announced, changed));
    changed = warm;
    changed[1].uid = 1002;
    assert_false(comment_is_current(announced, changed));
    assert_false(comment_is_current(announced, {warm[0]}));
    changed = warm;
    changed.push_back(entry("aihpc_00000000000000cc", true, 0, hash_a, 1700000000));
    assert_false(comment_is_current(announced, changed));
    // One user's two entries of the same version, each used a little later.
    std::vector<WarmEntry> twice = {warm[1], warm[1]};
    twice[1].last_use += 1000;
    std::string announced_twice = format_comment(twice);
    twice[0].last_use += 5, twice[1].last_use += 5;
    assert_true(comment_is_current(announced_twice, twice));
    twice[1].last_use += last_use_resolution_s;
    assert_false(comment_is_current(announced_twice, twice));
    // Nothing warm against an empty Comment is current; a site's Comment never is.
    assert_true(comment_is_current("", {}));
    assert_false(comment_is_current("rack 12", {}));
    assert_false(comment_is_current("", warm));
}

static void the_comment_reads_back_and_a_sites_own_is_not_ours(void**) {
    std::vector<WarmEntry> warm = {entry("aihpc_00000000000000aa", true, 0, hash_a, 1700000000),
                                   entry("aihpc_00000000000000bb", false, 1001, hash_b, 1700000100)};
    std::string text = format_comment(warm);
    assert_true(text.starts_with("aihpc-warm:"));
    assert_true(text.find(' ') == std::string::npos);  // one word in scontrol's output
    std::optional<std::vector<WarmEntry>> back = parse_comment(text);
    assert_true(back.has_value());
    assert_int_equal(back->size(), 2);
    assert_string_equal((*back)[0].key.c_str(), "aihpc_00000000000000aa");
    assert_true((*back)[0].shared);
    assert_string_equal((*back)[0].manifest_hash.c_str(), hash_a.substr(0, hash_prefix_length).c_str());
    assert_int_equal((*back)[0].last_use, 1700000000);
    assert_false((*back)[1].shared);
    assert_int_equal((*back)[1].uid, 1001);
    assert_string_equal(format_comment(*back).c_str(), text.c_str());
    assert_true(parse_comment("")->empty());
    assert_true(parse_comment("(null)")->empty());
    assert_false(parse_comment("rack 12, reserved for the chemistry group").has_value());
    assert_string_equal(format_comment({}).c_str(), "");
    // Damaged items are skipped, not misread.
    assert_int_equal(parse_comment("aihpc-warm:zz:shared:00:1,aa:u:00:1,aa:shared:00:x")->size(), 0);
}

static void scontrol_records_are_read_with_values_that_hold_spaces(void**) {
    std::string text =
        "NodeName=n1 Arch=x86_64 CoresPerSocket=1 AvailableFeatures=gpu,aihpc_00000000000000aa "
        "ActiveFeatures=gpu,aihpc_00000000000000aa Gres=(null) NodeAddr=127.0.0.1 State=IDLE ThreadsPerCore=1 "
        "Comment=aihpc-warm:00000000000000aa:shared:0123456789abcdef:1700000000 Reason=disk slow [root@2024-01-01]\n"
        "NodeName=n2 AvailableFeatures=(null) ActiveFeatures=(null) State=MIXED Partitions=debug,gpu Comment=rack 12, row 3 Extra=x\n";
    std::vector<NodeRecord> nodes = parse_show_node(text);
    assert_int_equal(nodes.size(), 2);
    assert_string_equal(nodes[0].name.c_str(), "n1");
    assert_true(nodes[0].available == std::vector<std::string>({"gpu", "aihpc_00000000000000aa"}));
    assert_string_equal(nodes[0].state.c_str(), "IDLE");
    assert_true(nodes[0].comment.starts_with("aihpc-warm:"));
    assert_true(nodes[1].available.empty());
    assert_string_equal(nodes[1].comment.c_str(), "rack 12, row 3");
    assert_string_equal(nodes[1].state.c_str(), "MIXED");
    assert_true(nodes[1].partitions == std::vector<std::string>({"debug", "gpu"}));
    assert_true(partitions_of(nodes, {"n1", "n2"}) == std::vector<std::string>({"debug", "gpu"}));
    assert_true(partitions_of(nodes, {"n1"}).empty());
    assert_int_equal(idle_nodes(nodes).size(), 1);
    assert_string_equal(idle_nodes(nodes)[0].name.c_str(), "n1");
}

static NodeRecord node(const std::string& name, const std::vector<std::string>& features, const std::string& comment) {
    NodeRecord r;
    r.name = name;
    r.available = features;
    r.active = features;
    r.comment = comment;
    r.state = "IDLE";
    return r;
}

static void where_lists_the_current_version_and_stale_ones_on_request(void**) {
    std::string k = "aihpc_00000000000000aa";
    std::vector<NodeRecord> nodes = {
        node("n1", {k}, format_comment({entry(k, true, 0, hash_b, 200)})),                             // older version
        node("n2", {"gpu", k}, format_comment({entry(k, true, 0, hash_a, 100)})),                      // current
        node("n3", {k + "_u1001"}, format_comment({entry(k, false, 1001, hash_a, 300)})),              // current, user 1001's
        node("n4", {k + "_u1002"}, format_comment({entry(k, false, 1002, hash_a, 400)})),              // another user's
        node("n5", {k}, "the site's own comment"),                                                     // no version said
        node("n6", {}, ""),
    };
    std::vector<WarmNode> rows = nodes_holding(nodes, k, hash_a, 1001, false);
    assert_int_equal(rows.size(), 2);
    assert_string_equal(rows[0].node.c_str(), "n3");  // the most recent use first
    assert_string_equal(mode_name(rows[0].entry), "user");
    assert_string_equal(rows[1].node.c_str(), "n2");
    assert_string_equal(mode_name(rows[1].entry), "shared");
    assert_false(rows[1].stale);
    std::vector<WarmNode> with_stale = nodes_holding(nodes, k, hash_a, 1001, true);
    assert_int_equal(with_stale.size(), 4);
    assert_true(with_stale[2].stale && with_stale[3].stale);
    assert_true(where_line(rows[1]).starts_with("n2 shared 19"));
    assert_true(where_line(with_stale[3]).ends_with(" stale"));
    assert_true(where_json(rows[0]).find("\"mode\": \"user\"") != std::string::npos);
    assert_string_equal(iso_time(1700000000).c_str(), "2023-11-14T22:13:20Z");
    // At submit: the features of the job's sources that some node announces.
    std::vector<std::string> f = announced_features(nodes, {k, "aihpc_00000000000000cc"}, 1001);
    assert_true(f == std::vector<std::string>({k, k + "_u1001"}));
    assert_true(nodes_announcing(nodes, f) == std::vector<std::string>({"n1", "n2", "n3", "n5"}));
}

static void the_clusters_job_submit_plugins_are_read_from_its_config(void**) {
    std::string config = "Configuration data as of 2024-01-01T00:00:00\nJobCompType             = jobcomp/none\n"
                         "JobSubmitPlugins        = lua,require_timelimit\nKillWait = 5\n";
    assert_string_equal(config_value(config, "JobSubmitPlugins").c_str(), "lua,require_timelimit");
    assert_true(has_lua(config_value(config, "JobSubmitPlugins")));
    assert_false(has_lua(config_value("JobSubmitPlugins = (null)\n", "JobSubmitPlugins")));
    assert_false(has_lua("require_timelimit"));
}

static void write(const std::string& path, const std::string& text) {
    std::ofstream(path) << text;
}

static void a_nodes_caches_are_listed_shared_and_per_user(void**) {
    TempDir root;
    std::string r = root.path();
    for (const char* d : {"/shared", "/shared/entries", "/shared/locks", "/shared/entries/k1", "/cache", "/cache/1001",
                          "/cache/1001/entries", "/cache/1001/locks", "/cache/1001/entries/k2",
                          "/cache/1001/entries/.tmp.k3.1", "/cache/1001/digests"})
        assert_int_equal(::mkdir((r + d).c_str(), 0700), 0);
    write(r + "/shared/entries/k1/info", "src=/d/a\nrealpath=/d/a\nkind=tree\nmanifest_hash=" + hash_a + "\n");
    write(r + "/shared/locks/k1.lock", "");
    write(r + "/cache/1001/entries/k2/info", "src=b.tar\nrealpath=/d/b.tar\nkind=archive\nmanifest_hash=" + hash_b + "\n");
    // A hash that is not hex never reaches the Comment: the entry is not announced.
    assert_int_equal(::mkdir((r + "/cache/1001/entries/k4").c_str(), 0700), 0);
    write(r + "/cache/1001/entries/k4/info", "src=c\nrealpath=/d/c\nkind=tree\nmanifest_hash=aa,bb:cc\n");
    std::vector<WarmEntry> all = list_warm_entries(r);
    assert_int_equal(all.size(), 2);
    assert_true(all[0].shared);
    assert_string_equal(all[0].key.c_str(), data_key(SourceKind::tree, "/d/a").c_str());
    assert_false(all[1].shared);
    assert_int_equal(all[1].uid, 1001);
    assert_string_equal(all[1].key.c_str(), data_key(SourceKind::archive, "/d/b.tar").c_str());
    assert_true(all[1].last_use > 0);  // no lock file: the entry's own mtime
    assert_true(list_warm_entries(r + "/missing").empty());
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_data_key_names_a_source_whatever_its_version),
        cmocka_unit_test(feature_names_say_shared_or_whose),
        cmocka_unit_test(the_hottest_n_features_keep_their_versions),
        cmocka_unit_test(the_merge_keeps_the_sites_features_and_replaces_aihpcs),
        cmocka_unit_test(the_comment_reads_back_and_a_sites_own_is_not_ours),
        cmocka_unit_test(uses_alone_rewrite_the_comment_only_once_they_have_moved_enough),
        cmocka_unit_test(scontrol_records_are_read_with_values_that_hold_spaces),
        cmocka_unit_test(where_lists_the_current_version_and_stale_ones_on_request),
        cmocka_unit_test(the_clusters_job_submit_plugins_are_read_from_its_config),
        cmocka_unit_test(a_nodes_caches_are_listed_shared_and_per_user),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
