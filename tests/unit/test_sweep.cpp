// lib/sweep: the spec, the shorthand, expansion, the task index, submission planning
// and the runner.
#include <json-c/json.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <sstream>

#include "cmocka_cxx.hpp"
#include "common/paths.hpp"
#include "sweep/command.hpp"
#include "sweep/expand.hpp"
#include "sweep/image_check.hpp"
#include "sweep/refine.hpp"
#include "sweep/results.hpp"
#include "sweep/runner.hpp"
#include "sweep/shorthand.hpp"
#include "sweep/spec.hpp"
#include "sweep/submit_plan.hpp"
#include "sweep/sweep_dir.hpp"
#include "temp_dir.hpp"

using namespace aihpc::sweep;

// ---- helpers

namespace {

std::vector<std::string> task_lines(const SweepSpec& spec) {
    std::vector<std::string> out;
    TaskStream s(spec);
    while (s.next()) out.push_back(std::to_string(s.index()) + " " + std::string(s.params()));
    return out;
}

std::vector<std::string> params_of(const std::string& json) {
    std::vector<std::string> out;
    TaskStream s(parse_spec(json));
    while (s.next()) out.emplace_back(s.params());
    return out;
}

// The values one parameter takes, in task order.
std::vector<std::string> column(const std::vector<std::string>& params, const std::string& name) {
    std::vector<std::string> out;
    std::string key = "\"" + name + "\":";
    for (auto& p : params) {
        auto pos = p.find(key);
        if (pos == std::string::npos) {
            out.emplace_back("-");
            continue;
        }
        pos += key.size();
        auto end = p.find_first_of(",}", pos);
        out.push_back(p.substr(pos, end - pos));
    }
    return out;
}

void assert_strings(const std::vector<std::string>& got, const std::vector<std::string>& want) {
    if (got != want) {
        std::string g, w;
        for (auto& s : got) g += s + " ";
        for (auto& s : want) w += s + " ";
        print_error("got  [%s]\nwant [%s]\n", g.c_str(), w.c_str());
        fail();
    }
}

std::string slurp(const std::string& path) { return read_file(path); }

// A spec as expand takes it: parsed, then held to what a new sweep must be.
SweepSpec checked_spec(const std::string& json) {
    auto spec = parse_spec(json);
    check_spec_to_expand(spec);
    return spec;
}

SweepDir make_sweep(const TempDir& tmp, const std::string& spec_json) {
    std::string dir = tmp.path() + "/sweep";
    write_sweep_dir(parse_spec(spec_json), dir, Provenance{"test", "2024-01-01T00:00:00+00:00", "abc123"});
    return open_sweep(dir);
}

}  // namespace

// ---- numbers and values

static void numbers_print_as_shortest_round_trip_text(void**) {
    assert_string_equal(format_double(0.1).c_str(), "0.1");
    // A float stays a float when read back: 3.0, not 3; -0.0 keeps its sign.
    assert_string_equal(format_double(3.0).c_str(), "3.0");
    assert_string_equal(format_double(-0.0).c_str(), "-0.0");
    assert_string_equal(format_double(1e22).c_str(), "1e+22");
    assert_string_equal(format_double(0.001).c_str(), "0.001");
    assert_string_equal(format_double(1.0 / 3).c_str(), "0.3333333333333333");
    assert_true(std::strtod(format_double(1e-4).c_str(), nullptr) == 1e-4);
    assert_string_equal(scalar_string("a\"b").json.c_str(), "\"a\\\"b\"");
    assert_string_equal(scalar_string("a\"b").plain.c_str(), "a\"b");
}

// ---- axis kinds

static void values_axis_keeps_types_and_order(void**) {
    auto p = params_of(R"({"axes":[{"param":"x","values":[1,2.5,"s",true]}]})");
    assert_strings(p, {"{\"x\":1}", "{\"x\":2.5}", "{\"x\":\"s\"}", "{\"x\":true}"});
}

static void range_excludes_stop_and_keeps_integers(void**) {
    assert_strings(column(params_of(R"({"axes":[{"param":"bs","range":[32,129,32]}]})"), "bs"), {"32", "64", "96", "128"});
    assert_strings(column(params_of(R"({"axes":[{"param":"i","range":[0,3]}]})"), "i"), {"0", "1", "2"});
    assert_strings(column(params_of(R"({"axes":[{"param":"d","range":[3,0,-1]}]})"), "d"), {"3", "2", "1"});
    assert_strings(column(params_of(R"({"axes":[{"param":"f","range":[0,1,0.25]}]})"), "f"), {"0.0", "0.25", "0.5", "0.75"});
    assert_strings(column(params_of(R"({"axes":[{"param":"f","range":[0,0.3,0.1]}]})"), "f"), {"0.0", "0.1", "0.2"});
}

static void linspace_and_logspace_include_both_ends(void**) {
    assert_strings(column(params_of(R"({"axes":[{"param":"x","linspace":[0,1,5]}]})"), "x"), {"0.0", "0.25", "0.5", "0.75", "1.0"});
    assert_strings(column(params_of(R"({"axes":[{"param":"x","linspace":[2,2,1]}]})"), "x"), {"2.0"});
    assert_strings(column(params_of(R"({"axes":[{"param":"x","logspace":[1,1000,4]}]})"), "x"), {"1.0", "10.0", "100.0", "1000.0"});
    auto lr = column(params_of(R"({"axes":[{"param":"lr","logspace":[1e-5,1e-2,4]}]})"), "lr");
    assert_int_equal(lr.size(), 4);
    const double want[] = {1e-5, 1e-4, 1e-3, 1e-2};
    for (int i = 0; i < 4; ++i) assert_true(std::fabs(std::strtod(lr[i].c_str(), nullptr) / want[i] - 1) < 1e-12);
    assert_true(std::strtod(lr[0].c_str(), nullptr) == 1e-5);
    assert_true(std::strtod(lr[3].c_str(), nullptr) == 1e-2);
}

static void distributions_draw_count_values_within_bounds(void**) {
    auto u = column(params_of(R"({"seed":7,"axes":[{"param":"u","uniform":[2,3],"count":50}]})"), "u");
    assert_int_equal(u.size(), 50);
    for (auto& v : u) {
        double d = std::strtod(v.c_str(), nullptr);
        assert_true(d >= 2 && d < 3);
    }
    auto l = column(params_of(R"({"seed":7,"axes":[{"param":"l","loguniform":[1e-5,1e-2],"count":50}]})"), "l");
    for (auto& v : l) {
        double d = std::strtod(v.c_str(), nullptr);
        assert_true(d >= 1e-5 && d <= 1e-2);
    }
    // A grid's int draws never repeat: n draws of [1, 3] with n = 3 are 1, 2 and 3.
    auto n = column(params_of(R"({"seed":7,"axes":[{"param":"n","int":[1,3],"count":3}]})"), "n");
    std::set<std::string> seen(n.begin(), n.end());
    assert_true(seen == (std::set<std::string>{"1", "2", "3"}));  // integers, both ends included
    auto wide = column(params_of(R"({"seed":7,"axes":[{"param":"n","int":[0,999999],"count":5000}]})"), "n");
    assert_int_equal(std::set<std::string>(wide.begin(), wide.end()).size(), 5000);
    auto g = column(params_of(R"({"seed":7,"axes":[{"param":"g","normal":[10,0],"count":3}]})"), "g");
    assert_strings(g, {"10.0", "10.0", "10.0"});  // draws of a normal are floats
    auto g2 = column(params_of(R"({"seed":7,"axes":[{"param":"g","normal":[0,1],"count":400}]})"), "g");
    double sum = 0;
    for (auto& v : g2) sum += std::strtod(v.c_str(), nullptr);
    assert_true(std::fabs(sum / 400) < 0.3);
}

static void zip_pairs_columns_row_by_row(void**) {
    auto p = params_of(R"({"axes":[{"zip":{"wd":[0,0.05],"beta2":[0.95,0.999]}}]})");
    assert_strings(p, {"{\"wd\":0,\"beta2\":0.95}", "{\"wd\":0.05,\"beta2\":0.999}"});
}

static void repeat_adds_a_counter_that_changes_task_seed(void**) {
    auto spec = parse_spec(R"({"axes":[{"param":"a","values":[1]},{"repeat":3}]})");
    TaskStream s(spec);
    std::set<std::uint64_t> seeds;
    std::vector<std::string> p;
    while (s.next()) {
        p.emplace_back(s.params());
        seeds.insert(s.task_seed());
    }
    assert_strings(p, {"{\"a\":1,\"repeat\":0}", "{\"a\":1,\"repeat\":1}", "{\"a\":1,\"repeat\":2}"});
    assert_int_equal(seeds.size(), 3);
}

static void product_varies_the_last_axis_fastest(void**) {
    auto p = params_of(R"({"axes":[{"param":"a","values":[1,2]},{"param":"b","values":["x","y","z"]}]})");
    assert_strings(column(p, "a"), {"1", "1", "1", "2", "2", "2"});
    assert_strings(column(p, "b"), {"\"x\"", "\"y\"", "\"z\"", "\"x\"", "\"y\"", "\"z\""});
}

static void union_expands_each_branch_as_a_sub_product(void**) {
    const char* json = R"({"axes":[
        {"param":"lr","values":[1,2,3]},
        {"union":[
          {"fixed":{"opt":"sgd"},"axes":[{"param":"momentum","values":[0.9,0.99]}]},
          {"fixed":{"opt":"adamw"},"axes":[{"zip":{"wd":[0,0.05],"beta2":[0.95,0.999]}}]},
          {"fixed":{"opt":"lbfgs"}}]},
        {"repeat":2}]})";
    auto p = params_of(json);
    assert_int_equal(p.size(), 3 * (2 + 2 + 1) * 2);
    assert_string_equal(p[0].c_str(), "{\"lr\":1,\"opt\":\"sgd\",\"momentum\":0.9,\"repeat\":0}");
    assert_string_equal(p[4].c_str(), "{\"lr\":1,\"opt\":\"adamw\",\"wd\":0,\"beta2\":0.95,\"repeat\":0}");
    assert_string_equal(p[8].c_str(), "{\"lr\":1,\"opt\":\"lbfgs\",\"repeat\":0}");
    assert_string_equal(p[10].c_str(), "{\"lr\":2,\"opt\":\"sgd\",\"momentum\":0.9,\"repeat\":0}");
    // a union member may be an axis itself
    assert_int_equal(params_of(R"({"axes":[{"union":[{"param":"a","values":[1,2]},{"zip":{"b":[1],"c":[2]}}]}]})").size(), 3);
}

static void nested_unions_count_as_sums_of_products(void**) {
    auto p = params_of(R"({"axes":[{"union":[
        {"fixed":{"k":"a"},"axes":[{"param":"x","values":[1,2]},
           {"union":[{"fixed":{"m":1},"axes":[{"param":"y","values":[1,2,3]}]},{"fixed":{"m":2}}]}]},
        {"fixed":{"k":"b"},"axes":[{"param":"x","values":[5]}]}]}]})");
    assert_int_equal(p.size(), 2 * (3 + 1) + 1);
    assert_string_equal(p.back().c_str(), "{\"k\":\"b\",\"x\":5}");
}

static void exclusions_drop_matching_tasks_and_renumber(void**) {
    auto spec = parse_spec(R"({"axes":[{"param":"opt","values":["sgd","adam"]},{"param":"bs","values":[32,96]}],
                              "exclude":[{"opt":"sgd","bs":96}]})");
    auto lines = task_lines(spec);
    assert_strings(lines, {"0 {\"opt\":\"sgd\",\"bs\":32}", "1 {\"opt\":\"adam\",\"bs\":32}", "2 {\"opt\":\"adam\",\"bs\":96}"});
}

static void exclusion_compares_typed_values(void**) {
    // linspace gives floats: 96.0 is not the int 96, and bs=96.0 matches it.
    auto p = params_of(R"({"axes":[{"param":"bs","linspace":[32,96,3]}],"exclude":[{"bs":96}]})");
    assert_strings(column(p, "bs"), {"32.0", "64.0", "96.0"});
    p = params_of(R"({"axes":[{"param":"bs","linspace":[32,96,3]}],"exclude":[{"bs":96.0}]})");
    assert_strings(column(p, "bs"), {"32.0", "64.0"});
    p = params_of(R"({"axes":[{"param":"bs","values":[64,96]}],"exclude":[{"bs":96}]})");
    assert_strings(column(p, "bs"), {"64"});
}

static void exclusion_of_a_parameter_absent_from_a_branch_does_not_match(void**) {
    auto p = params_of(R"({"axes":[{"union":[{"fixed":{"o":"a"},"axes":[{"param":"m","values":[1,2]}]},{"fixed":{"o":"b"}}]}],
                          "exclude":[{"m":1}]})");
    assert_strings(p, {"{\"o\":\"a\",\"m\":2}", "{\"o\":\"b\"}"});
}


// ---- exact values, strict input, nothing silent

static void integral_floats_stay_floats_and_ints_stay_ints(void**) {
    auto text = compile_shorthand({"dropout=0.0,0.5", "bs=32,64", "z=-0.0"}, {});
    auto p = params_of(text);
    assert_strings(column(p, "dropout"), {"0.0", "0.0", "0.5", "0.5"});
    assert_strings(column(p, "bs"), {"32", "64", "32", "64"});
    assert_strings(column(p, "z"), {"-0.0", "-0.0", "-0.0", "-0.0"});
    assert_strings(column(params_of(R"({"axes":[{"param":"x","values":[1.0,2.0,3]}]})"), "x"), {"1.0", "2.0", "3"});
    // The text substituted into commands keeps the type too: python's float("1.0").
    auto spec = parse_spec(R"({"axes":[{"param":"x","values":[1.0]}],"command":"run {x}"})");
    assert_string_equal(spec.axes[0].values[0].plain.c_str(), "1.0");
}

static void an_exclude_rule_that_matches_nothing_is_an_error(void**) {
    TempDir tmp;
    auto spec = parse_spec(R"({"axes":[{"param":"bs","values":[64.0,96.0]}],"exclude":[{"bs":96}]})");
    expect_error_containing([&] { write_sweep_dir(spec, tmp.path() + "/s", Provenance{}); }, "matches no task");
    expect_error_containing([&] { write_sweep_dir(spec, tmp.path() + "/s", Provenance{}); }, "--allow-empty-exclude");
    // ...and the failed expand left nothing behind.
    assert_false(aihpc::path_exists(tmp.path() + "/s"));
    ExpandOptions allow;
    allow.allow_empty_exclude = true;
    auto summary = write_sweep_dir(spec, tmp.path() + "/s", Provenance{}, allow);
    assert_int_equal(summary.tasks, 2);
}

static void a_sweep_above_max_tasks_is_refused_before_anything_is_written(void**) {
    TempDir tmp;
    // 10^12 tasks
    auto spec = parse_spec(R"({"axes":[{"param":"a","range":[0,1000000]},{"param":"b","range":[0,1000000]}]})");
    expect_error_containing([&] { write_sweep_dir(spec, tmp.path() + "/deep/s", Provenance{}); }, "1,000,000,000,000 tasks");
    expect_error_containing([&] { write_sweep_dir(spec, tmp.path() + "/deep/s", Provenance{}); }, "--max-tasks 10,000,000");
    assert_false(aihpc::path_exists(tmp.path() + "/deep"));
    ExpandOptions small;
    small.max_tasks = 3;
    expect_error_containing([&] { write_sweep_dir(parse_spec(R"({"axes":[{"param":"a","range":[0,4]}]})"), tmp.path() + "/s", Provenance{}, small); },
                            "has 4 tasks");
    assert_false(aihpc::path_exists(tmp.path() + "/s"));
}

static void a_long_computed_axis_is_never_held_in_memory(void**) {
    // 10^7 values: the stream computes each one as it goes (a value list would take GBs).
    auto spec = parse_spec(R"({"axes":[{"param":"i","range":[0,10000000]},{"param":"x","linspace":[0,1,10000001]}]})");
    assert_int_equal(axis_length(spec.axes[0]), 10000000);
    assert_string_equal(axis_value_at(spec.axes[0], 0, 9999999).json.c_str(), "9999999");
    assert_string_equal(axis_value_at(spec.axes[1], 0, 5000000).json.c_str(), "0.5");
    TaskStream s(spec);
    assert_true(s.product_size() == 100000010000000ULL);
    assert_true(s.next());
    assert_string_equal(std::string(s.params()).c_str(), "{\"i\":0,\"x\":0.0}");
    assert_true(s.next());
    assert_string_equal(std::string(s.params()).c_str(), "{\"i\":0,\"x\":1e-07}");
}

static void strict_json_errors_name_the_path(void**) {
    expect_error_containing([] { parse_spec(R"({"axes":[{"param":"x","values":[1,2,]}]})"); }, "axes[0].values");
    expect_error_containing([] { parse_spec(R"({"axes":[{"param":"x","values":[1,2,]}]})"); }, "trailing comma");
    expect_error_containing([] { parse_spec(R"({"axes":[{"param":"x","values":[1]},],})"); }, "trailing comma");
    expect_error_containing([] { parse_spec(R"({"axes":[{"param":"x","param":"y","values":[1]}]})"); }, "axes[0]: duplicate key 'param'");
    expect_error_containing([] { parse_spec(R"({"seed":"7","axes":[{"param":"x","values":[1]}]})"); }, "seed: must be an integer");
    expect_error_containing([] { parse_spec(R"({"axes":{"param":"x"}})"); }, "axes: must be an array, not an object");
    expect_error_containing([] { parse_spec(R"({"axes":[{"param":"x","values":[[1]]}]})"); }, "axes[0].values[0]");
    // Where, as an editor shows it.
    expect_error_containing([] { parse_spec("{\"axes\":[\n  {\"param\":\"x\",\n   \"values\":[1,2,]}]}"); }, "(line 3, column 18)");
}

static void a_shorthand_call_of_an_unknown_function_is_an_error(void**) {
    expect_error_containing([] { compile_shorthand({"lr=logspce(1e-5,1e-2,4)"}, {}); }, "'logspce(' is not a known function");
    expect_error_containing([] { compile_shorthand({"lr=logspce(1e-5,1e-2,4)"}, {}); }, "logspace()");
    expect_error_containing([] { compile_shorthand({"pat=a(b,[c"}, {}); }, "parameter 'pat=a(b,[c'");
    expect_error_containing([] { compile_shorthand({"pat=[c"}, {}); }, "unbalanced");
    // Quoted, it is the text.
    auto p = params_of(compile_shorthand({"pat='a(b,[c'"}, {}));
    assert_strings(p, {R"({"pat":"a(b,[c"})"});
}

static void random_search_of_a_small_space_runs_each_configuration_once(void**) {
    // --random 9 over a 3x3 space: all 9, each once.
    auto text = compile_shorthand({"a=1,2,3", "b=x,y,z"}, SpecOverrides{9, 1, std::nullopt, {}, {}});
    auto p = params_of(text);
    assert_int_equal(p.size(), 9);
    assert_int_equal(std::set<std::string>(p.begin(), p.end()).size(), 9);
    TaskStream s(parse_spec(text));
    assert_int_equal(s.distinct_configurations(), 9);
    assert_true(s.enumerates_space());
    // --random 12 asks for more than there are: still the 9.
    assert_int_equal(params_of(compile_shorthand({"a=1,2,3", "b=x,y,z"}, SpecOverrides{12, 1, std::nullopt, {}, {}})).size(), 9);
    // --random 6: six distinct draws, for any seed.
    for (std::uint64_t seed = 0; seed < 20; ++seed) {
        auto q = params_of(compile_shorthand({"a=1,2,3", "b=x,y,z"}, SpecOverrides{6, seed, std::nullopt, {}, {}}));
        assert_int_equal(q.size(), 6);
        assert_int_equal(std::set<std::string>(q.begin(), q.end()).size(), 6);
    }
}

static void a_task_line_whose_params_is_not_an_object_is_an_error(void**) {
    // This used to crash aihpc-sweep (json-c's object walk on a number).
    expect_error_containing([] { parse_task_line(R"({"index":0,"params":5,"task_seed":1})"); }, "params: must be an object");
    expect_error_containing([] { parse_task_line(R"({"index":0,"params":[1],"task_seed":1})"); }, "params: must be an object");
    expect_error_containing([] { parse_task_line(R"({"index":0,"params":{"a":{"b":1}},"task_seed":1})"); }, "params.a");
    expect_error_containing([] { parse_task_line(R"({"index":0,"params":{},"task_seed":1,})"); }, "trailing comma");
    expect_error_containing([] { parse_task_line(R"({"index":"0","params":{},"task_seed":1})"); }, "index: must be an integer");
    expect_error_containing([] { parse_task_line("{\"index\":0,\"par"); }, "tasks.jsonl");
    auto rec = parse_task_line(R"({"index":4,"params":{"lr":1.0,"bs":32,"o":"a"},"task_seed":9})");
    assert_int_equal(rec.index, 4);
    assert_string_equal(rec.params_json.c_str(), R"({"lr":1.0,"bs":32,"o":"a"})");
    assert_string_equal(rec.params[0].second.plain.c_str(), "1.0");
}

// ---- random draws

static void same_spec_gives_the_same_tasks(void**) {
    const char* json = R"({"seed":42,"method":"random","trials":20,"axes":[{"param":"lr","loguniform":[1e-5,1e-2]},
        {"param":"bs","values":[16,32,64]},{"union":[{"fixed":{"o":"a"}},{"fixed":{"o":"b"},"axes":[{"param":"m","uniform":[0,1]}]}]}]})";
    assert_true(task_lines(parse_spec(json)) == task_lines(parse_spec(json)));
    assert_int_equal(task_lines(parse_spec(json)).size(), 20);
}

static void adding_an_axis_leaves_other_draws_unchanged(void**) {
    auto before = params_of(R"({"seed":5,"method":"random","trials":30,"axes":[
        {"param":"lr","loguniform":[1e-5,1e-2]},{"param":"bs","values":[16,32,64,128]}]})");
    auto after = params_of(R"({"seed":5,"method":"random","trials":30,"axes":[
        {"param":"wd","uniform":[0,0.1]},{"param":"lr","loguniform":[1e-5,1e-2]},
        {"param":"drop","values":[0,0.1]},{"param":"bs","values":[16,32,64,128]}]})");
    assert_strings(column(after, "lr"), column(before, "lr"));
    assert_strings(column(after, "bs"), column(before, "bs"));
    // and in a grid sweep, a distribution's `count` draws stay the same too
    auto g1 = params_of(R"({"seed":5,"axes":[{"param":"lr","uniform":[0,1],"count":4}]})");
    auto g2 = params_of(R"({"seed":5,"axes":[{"param":"a","uniform":[0,1],"count":3},{"param":"lr","uniform":[0,1],"count":4}]})");
    auto lr2 = column(g2, "lr");
    assert_strings(std::vector<std::string>(lr2.begin(), lr2.begin() + 4), column(g1, "lr"));
}

static void a_different_seed_gives_different_draws(void**) {
    auto a = params_of(R"({"seed":1,"axes":[{"param":"x","uniform":[0,1],"count":5}]})");
    auto b = params_of(R"({"seed":2,"axes":[{"param":"x","uniform":[0,1],"count":5}]})");
    assert_true(a != b);
}

static void random_method_keeps_repeat_as_a_product(void**) {
    auto p = params_of(R"({"method":"random","trials":3,"axes":[{"param":"x","uniform":[0,1]},{"repeat":2}]})");
    assert_int_equal(p.size(), 6);
    auto x = column(p, "x");
    assert_string_equal(x[0].c_str(), x[1].c_str());
    assert_string_equal(x[2].c_str(), x[3].c_str());
    assert_strings(column(p, "repeat"), {"0", "1", "0", "1", "0", "1"});
}

// The expansion of this spec as first released: draws, picks by index from value lists,
// union branches with a repeat inside, zip rows and exclusions must keep giving it.
static void random_sweep_gives_the_recorded_tasks(void**) {
    auto spec = parse_spec(R"({"seed":7,"method":"random","trials":12,"axes":[{"param":"lr","logspace":[1e-5,1e-2,50]},
        {"param":"bs","values":[16,32,64]},{"param":"w","range":[0,10,3]},{"zip":{"a":[1,2,3],"b":["x","y","z"]}},
        {"param":"n","normal":[0,1]},{"param":"k","int":[1,9]},
        {"union":[{"fixed":{"o":"sgd"},"axes":[{"param":"m","values":[0.9,0.99]},{"repeat":2}]},
                  {"fixed":{"o":"adam"},"axes":[{"param":"beta","uniform":[0.9,0.999]}]}]}],
        "exclude":[{"o":"sgd","m":0.9}]})");
    assert_strings(task_lines(spec), {
        R"(0 {"lr":0.0004498432668969444,"bs":32,"w":6,"a":1,"b":"x","n":-0.5737459853678684,"k":8,"o":"adam","beta":0.9464746236644168})",
        R"(1 {"lr":0.0021209508879201904,"bs":16,"w":9,"a":2,"b":"y","n":0.6582463432326655,"k":7,"o":"sgd","m":0.99,"repeat":0})",
        R"(2 {"lr":0.0021209508879201904,"bs":16,"w":9,"a":2,"b":"y","n":0.6582463432326655,"k":7,"o":"sgd","m":0.99,"repeat":1})",
        R"(3 {"lr":6.250551925273976e-05,"bs":64,"w":0,"a":1,"b":"x","n":-0.044780630575557305,"k":4,"o":"adam","beta":0.9836851618287266})",
        R"(4 {"lr":8.286427728546843e-05,"bs":32,"w":3,"a":1,"b":"x","n":1.3430886177955623,"k":3,"o":"adam","beta":0.9560385133170296})",
        R"(5 {"lr":0.0021209508879201904,"bs":64,"w":9,"a":2,"b":"y","n":-0.11863655758880443,"k":1,"o":"sgd","m":0.99,"repeat":0})",
        R"(6 {"lr":0.0021209508879201904,"bs":64,"w":9,"a":2,"b":"y","n":-0.11863655758880443,"k":1,"o":"sgd","m":0.99,"repeat":1})",
        R"(7 {"lr":0.00019306977288832496,"bs":32,"w":9,"a":1,"b":"x","n":-0.11082478004753646,"k":9,"o":"adam","beta":0.9049576659488855})",
    });
}

static void random_sweep_counts_excluded_tasks_of_a_repeat_inside_a_union(void**) {
    TempDir tmp;
    // Two trials of a space with one configuration: it runs once, with its 3 replicates.
    auto summary = write_sweep_dir(parse_spec(R"({"method":"random","trials":2,
        "axes":[{"union":[{"fixed":{"o":"a"},"axes":[{"repeat":3}]}]}],"exclude":[{"repeat":0}]})"),
                                   tmp.path() + "/sweep", Provenance{"test", "2024-01-01T00:00:00+00:00", "abc123"});
    assert_int_equal(summary.tasks, 2);
    assert_int_equal(summary.excluded, 1);
    assert_int_equal(summary.distinct, 1);
    assert_true(slurp(tmp.path() + "/sweep/sweep.json").find("\"excluded\":1,") != std::string::npos);
}

// ---- shorthand

static void shorthand_compiles_to_the_same_tasks_as_json(void**) {
    SpecOverrides o;
    o.repeat = 3;
    o.exclude = {"opt=sgd,bs=96"};
    auto compiled = compile_shorthand({"lr=1e-4,3e-4,1e-3", "bs=range(32,129,32)", "opt=sgd,adamw", "momentum=0.9,0.99@opt=sgd",
                                       "zip(wd=[0,0.05],beta2=[0.95,0.999])@opt=adamw"},
                                      o);
    const char* json = R"({"axes":[{"param":"lr","values":[0.0001,0.0003,0.001]},{"param":"bs","range":[32,129,32]},
        {"union":[{"fixed":{"opt":"sgd"},"axes":[{"param":"momentum","values":[0.9,0.99]}]},
                  {"fixed":{"opt":"adamw"},"axes":[{"zip":{"wd":[0,0.05],"beta2":[0.95,0.999]}}]}]},
        {"repeat":3}],"exclude":[{"opt":"sgd","bs":96}]})";
    assert_true(task_lines(parse_spec(compiled)) == task_lines(parse_spec(json)));
    assert_string_equal(normalize(parse_spec(compiled)).c_str(), normalize(parse_spec(json)).c_str());
}

static void shorthand_functions_compile_to_their_axis_kinds(void**) {
    struct Case {
        const char* term;
        const char* json_axis;
    } cases[] = {
        {"lr=logspace(1e-5,1e-2,6)", R"({"param":"lr","logspace":[1e-05,0.01,6]})"},
        {"lr=loguniform(1e-5,1e-2,n=6)", R"({"param":"lr","loguniform":[1e-05,0.01],"count":6})"},
        {"x=linspace(0,1,3)", R"({"param":"x","linspace":[0,1,3]})"},
        {"k=int(1,8,count=4)", R"({"param":"k","int":[1,8],"count":4})"},
        {"g=normal(0,1,n=2)", R"({"param":"g","normal":[0,1],"count":2})"},
        {"u=uniform(0,1,n=2)", R"({"param":"u","uniform":[0,1],"count":2})"},
        {"name='a,b',c", R"({"param":"name","values":["a,b","c"]})"},
        {"flag=true,false", R"({"param":"flag","values":[true,false]})"},
    };
    for (auto& c : cases) {
        auto compiled = compile_shorthand({c.term}, {});
        auto want = std::string(R"({"axes":[)") + c.json_axis + "]}";
        if (task_lines(parse_spec(compiled)) != task_lines(parse_spec(want))) {
            print_error("%s compiled to %s\n", c.term, compiled.c_str());
            fail();
        }
    }
}

// A condition key is checked like an --exclude key: a typo never adds a parameter.
static void shorthand_condition_keys_must_be_declared_parameters(void**) {
    auto p = params_of(compile_shorthand({"opt=sgd,adam", "momentum=0.9,0.99@opt=sgd", "beta=0.9@opt=adam"}, {}));
    assert_strings(p, {"{\"opt\":\"sgd\",\"momentum\":0.9}", "{\"opt\":\"sgd\",\"momentum\":0.99}", "{\"opt\":\"adam\",\"beta\":0.9}"});
    expect_error_containing([] { compile_shorthand({"opt=sgd,adam", "momentum=0.9,0.99@optim=sgd"}, {}); },
                            "parameter 'momentum=0.9,0.99@optim=sgd': the condition key 'optim' is not a parameter (parameters: opt)");
    expect_error_containing([] { compile_shorthand({"momentum=0.9@opt=sgd"}, {}); }, "declare it first, as opt=sgd,...");
    expect_error_containing([] { compile_shorthand({"bs=range(1,4)", "x=1@bs=2"}, {}); }, "not by a function");
}

static void shorthand_random_seed_and_command_become_spec_fields(void**) {
    SpecOverrides o;
    o.random_trials = 4;
    o.seed = 9;
    o.command = {"python", "t.py", "--lr", "{lr}"};
    auto spec = parse_spec(compile_shorthand({"lr=loguniform(1e-5,1e-2)"}, o));
    assert_true(spec.method == Method::random);
    assert_int_equal(spec.trials, 4);
    assert_int_equal(spec.seed, 9);
    assert_int_equal(spec.command.size(), 4);
}

static void shorthand_errors_name_the_term(void**) {
    expect_error_containing([] { compile_shorthand({"lr"}, {}); }, "parameter 'lr'");
    expect_error_containing([] { compile_shorthand({"lr=range(a,2)"}, {}); }, "'a' is not a number");
    expect_error_containing([] { compile_shorthand({"opt=sgd", "m=1@opt=adam"}, {}); }, "no value \"adam\"");
    expect_error_containing([] { compile_shorthand({"x=uniform(0,1,k=3)"}, {}); }, "unknown argument 'k'");
}

static void overrides_apply_to_a_json_spec(void**) {
    SpecOverrides o;
    o.repeat = 2;
    o.exclude = {"a=1"};
    o.command = {"echo", "{a}"};
    auto spec = parse_spec(apply_overrides(R"({"axes":[{"param":"a","values":[1,2]}]})", o));
    assert_int_equal(task_lines(spec).size(), 2);
    assert_string_equal(spec.command[1].c_str(), "{a}");
}

// ---- bad specs

static void bad_specs_name_the_path_into_the_document(void**) {
    struct Case {
        const char* json;
        const char* message;
    } cases[] = {
        {R"({"axes":[{"param":"a","values":[1]},{"param":"b","values":[1]},
            {"union":[{"fixed":{"o":1}},{"zip":{"x":[1,2],"y":[1,2,3]}}]}]})",
         "sweep spec: axes[2].union[1].zip: columns have lengths 2 and 3"},
        {R"({"axes":[{"union":[{"fixed":{"o":1},"axes":[{"zip":{"x":[1],"y":[]}}]}]}]})", "axes[0].union[0].axes[0].zip: columns have lengths 1 and 0"},
        {R"({"axes":[{"param":"a","vals":[1]}]})", "axes[0]: unknown key 'vals'"},
        {R"({"axes":[{"param":"a"}]})", "axes[0]: parameter 'a' needs one of values"},
        {R"({"axes":[{"param":"a","values":[]}]})", "axes[0].values: is empty"},
        {R"({"axes":[{"param":"a","values":[[1]]}]})", "axes[0].values[0]: a parameter value must be"},
        {R"({"axes":[{"param":"a","range":[1,1]}]})", "axes[0].range: is empty"},
        {R"({"axes":[{"param":"a","range":[0,5,0]}]})", "axes[0].range: step must not be 0"},
        {R"({"axes":[{"param":"a","linspace":[0,1]}]})", "axes[0].linspace: must be [first, last, n]"},
        {R"({"axes":[{"param":"a","logspace":[0,1,3]}]})", "axes[0].logspace: both ends must be positive"},
        {R"({"axes":[{"param":"a","uniform":[0,1]}]})", "axes[0]: a 'uniform' axis needs a count in a grid sweep"},
        {R"({"axes":[{"param":"a","int":[0,1.5],"count":2}]})", "axes[0].int: both ends must be integers"},
        {R"({"axes":[{"param":"a","uniform":[2,1],"count":2}]})", "axes[0].uniform: low must not exceed high"},
        {R"({"axes":[{"param":"a","values":[1]},{"param":"a","values":[2]}]})", "axes[1]: parameter 'a' is given twice"},
        {R"({"axes":[{"param":"a","values":[1]}],"exclude":[{"b":1}]})", "exclude[0]: 'b' is not a parameter"},
        {R"({"axes":[{"param":"a","values":[1]}],"command":"run {b}"})", "command: {b} names no parameter"},
        {R"({"axes":[{"param":"a","values":[1]}],"command":"run 'x"})", "command: command: unterminated single quote"},
        {R"({"axes":[{"param":"a","values":[1]}],"phases":[{"name":"t","after":"p"}]})", "phases[0].after: 'p' is not an earlier phase"},
        {R"({"axes":[{"param":"a","values":[1]}],"method":"random"})", "a random sweep needs \"trials\""},
        {R"({"axes":[{"param":"a","values":[1]}],"method":"bayes"})", "method: must be \"grid\" or \"random\""},
        {R"({"axes":[{"param":"a","values":[1]}],"slurm":{"pack":0}})", "slurm.pack: must be an integer >= 1"},
        {R"({"axes":[{"param":"a","values":[1]}],"slurm":{"aihpc":["--gpus=1"]}})", "slurm.aihpc[0]: must be an --aihpc-* option"},
        {R"({"axes":[{"param":"index","values":[1]}]})", "'index' is reserved"},
        {R"({"name":"a b","axes":[{"param":"a","values":[1]}]})", "name: may hold only letters, digits, '_', '-' and '.'"},
        {R"({"name":"x\n#SBATCH --uid=0","axes":[{"param":"a","values":[1]}]})", "name: may hold only letters"},
        {R"({"name":"","axes":[{"param":"a","values":[1]}]})", "name: is empty"},
        {R"({"axes":[{"repeat":0}]})", "axes[0].repeat: must be an integer >= 1"},
        {R"({"axes":[]})", "axes: is empty"},
        {R"({"axis":[]})", "unknown key 'axis'"},
        {R"({"axes":[{"param":"a","values":[1]}]} x)", "not valid JSON"},
        {R"({"axes":[{"param":"a","values":[1]}],)", "not valid JSON"},
    };
    for (auto& c : cases) expect_error_containing([&] { parse_spec(c.json); }, c.message);
}

static void result_field_names_are_not_parameter_names(void**) {
    struct Case {
        const char* json;
        const char* message;
    } cases[] = {
        {R"({"axes":[{"param":"exit_code","values":[0,1]}]})", "axes[0].param: 'exit_code' is a field of every result"},
        {R"({"axes":[{"param":"elapsed_s","values":[1]}]})", "axes[0].param: 'elapsed_s' is a field of every result"},
        {R"({"axes":[{"param":"a","values":[1]},{"param":"metrics","values":[1]}]})", "axes[1].param: 'metrics' is a field"},
        {R"({"axes":[{"zip":{"a":[1],"node":[2]}}]})", "'node' is a field of every result"},
        {R"({"axes":[{"union":[{"fixed":{"job_id":1}}]}]})", "'job_id' is a field of every result"},
        {R"({"axes":[{"param":"provenance","values":[1]}]})", "'provenance' is a field of every result"},
        {R"({"axes":[{"param":"params","values":[1]}]})", "'params' is a field of every result"},
    };
    for (auto& c : cases) expect_error_containing([&] { parse_spec(c.json); }, c.message);
}

static void result_exit_code_reads_only_the_top_level_member(void**) {
    struct Case {
        const char* text;
        std::optional<long> code;
    } cases[] = {
        {R"({"index":3,"exit_code":7,"phase":"main","params":{"a":1}})", 7},
        // the layout of results written before exit_code came second
        {R"({"index":3,"phase":"main","params":{"exit_code":0},"task_seed":1,"exit_code":2,"metrics":{}})", 2},
        {R"({"index":3,"metrics":{"exit_code":0},"exit_code":4})", 4},
        {R"({"index":1,"command":["echo \"exit_code\":9"],"exit_code" : 1})", 1},
        {R"({"index":1,"params":{"exit_code":0},"metrics":{"exit_code":0}})", std::nullopt},
        {R"({"index":1,"exit_code":"x"})", std::nullopt},
        {"", std::nullopt},
    };
    for (auto& c : cases) {
        auto got = result_exit_code(c.text);
        if (got != c.code) {
            print_error("%s: got %ld, want %ld\n", c.text, got ? *got : -999L, c.code ? *c.code : -999L);
            fail();
        }
    }
}

static void normalized_spec_parses_back_to_the_same_tasks(void**) {
    const char* json = R"({"name":"n","seed":3,"axes":[{"param":"lr","loguniform":[1e-5,1e-2],"count":3},
        {"union":[{"fixed":{"o":"a"},"axes":[{"param":"m","values":[0.9]}]},{"zip":{"x":[1,2],"y":["a","b"]}}]},{"repeat":2}],
        "exclude":[{"o":"a","repeat":1}],"command":"python t.py --lr {lr}",
        "slurm":{"throttle":5,"max_array_size":100,"pack":2,"sbatch":["-c","2"],"aihpc":["--aihpc-bind=auto"]},
        "phases":[{"name":"prep","command":"prep {index}"},{"name":"train","after":"prep","sbatch":["--gpus=1"]}]})";
    auto spec = parse_spec(json);
    auto again = parse_spec(normalize(spec));
    assert_string_equal(normalize(again).c_str(), normalize(spec).c_str());
    assert_true(task_lines(again) == task_lines(spec));
    assert_int_equal(again.slurm.pack, 2);
    assert_string_equal(again.phases[1].after.c_str(), "prep");
}

// ---- command templates

static void commands_split_like_a_posix_shell(void**) {
    struct Case {
        const char* text;
        std::vector<std::string> words;
    } cases[] = {
        {"python train.py --lr {lr}", {"python", "train.py", "--lr", "{lr}"}},
        {"a 'b c' \"d e\"", {"a", "b c", "d e"}},
        {"a\\ b 'it''s'", {"a b", "its"}},
        {"sh -c 'echo $HOME > out'", {"sh", "-c", "echo $HOME > out"}},
        {"\"a\\\"b\" \"$x\"", {"a\"b", "$x"}},
        {"  x\t y  ", {"x", "y"}},
        {"''", {""}},
    };
    for (auto& c : cases) assert_true(split_command(c.text) == c.words);
    expect_error_containing([] { split_command("a \"b"); }, "unterminated double quote");
    expect_error_containing([] { split_command("a\\"); }, "trailing backslash");
}

static void templates_substitute_inside_words(void**) {
    auto lookup = [](std::string_view n) -> std::optional<std::string> {
        if (n == "lr") return "0.1";
        if (n == "index") return "7";
        return std::nullopt;
    };
    auto out = substitute({"--lr={lr}", "run{index}.log", "{{literal}}", "${HOME}", "{}"}, lookup);
    assert_true(out == (std::vector<std::string>{"--lr=0.1", "run7.log", "{literal}", "${HOME}", "{}"}));
    expect_error_containing([&] { substitute({"{nope}"}, lookup); }, "{nope} names no parameter");
    assert_true(template_references({"a{x}b{y}", "${z}"}) == (std::vector<std::string>{"x", "y"}));
}

static void task_command_uses_the_phase_command_or_the_spec_command(void**) {
    auto spec = parse_spec(R"({"axes":[{"param":"lr","values":[0.5]},{"param":"name","values":["a b"]}],
        "command":["train","--lr","{lr}","--name={name}","--seed","{task_seed}"],
        "phases":[{"name":"prep","command":"prep {index} {phase}"},{"name":"train","after":"prep"}]})");
    TaskRecord task = parse_task_line(R"({"index":3,"params":{"lr":0.5,"name":"a b"},"task_seed":99})");
    assert_true(task_command(spec, spec.phases[0], task) == (std::vector<std::string>{"prep", "3", "prep"}));
    assert_true(task_command(spec, spec.phases[1], task) ==
                (std::vector<std::string>{"train", "--lr", "0.5", "--name=a b", "--seed", "99"}));
}

// ---- the sweep dir and the task index

static void expansion_is_byte_for_byte_deterministic(void**) {
    TempDir a, b;
    const char* json = R"({"seed":1,"axes":[{"param":"x","uniform":[0,1],"count":20},{"param":"y","values":["p","q"]}]})";
    write_sweep_dir(parse_spec(json), a.path() + "/s", Provenance{"t", "now", ""});
    write_sweep_dir(parse_spec(json), b.path() + "/s", Provenance{"t", "later", ""});
    assert_true(slurp(a.path() + "/s/tasks.jsonl") == slurp(b.path() + "/s/tasks.jsonl"));
    assert_true(slurp(a.path() + "/s/tasks.idx") == slurp(b.path() + "/s/tasks.idx"));
}

static void sweep_dir_holds_tasks_index_and_metadata(void**) {
    TempDir tmp;
    auto sweep = make_sweep(tmp, R"({"name":"demo","axes":[{"param":"a","values":[1,2,3]},{"param":"b","values":["x","y"]}]})");
    assert_int_equal(sweep.tasks, 6);
    assert_string_equal(sweep.git_commit.c_str(), "abc123");
    assert_int_equal(sweep.spec_hash.size(), 16);
    assert_string_equal(sweep.spec_hash.c_str(), spec_hash(sweep.spec).c_str());
    auto lines = slurp(sweep.path + "/tasks.jsonl");
    std::string want = "{\"index\":0,\"params\":{\"a\":1,\"b\":\"x\"},\"task_seed\":" +
                       std::to_string(task_seed(0, "{\"a\":1,\"b\":\"x\"}")) + "}";
    assert_string_equal(lines.substr(0, lines.find('\n')).c_str(), want.c_str());
    assert_int_equal(slurp(sweep.path + "/tasks.idx").size(), 6 * 8);
    struct stat st;
    for (auto sub : {"/results", "/logs", "/scripts"}) assert_int_equal(::stat((sweep.path + sub).c_str(), &st), 0);
    expect_error_containing([&] { write_sweep_dir(sweep.spec, sweep.path, Provenance{}); }, "already holds a sweep");
}

static void task_index_returns_every_line_by_offset(void**) {
    TempDir tmp;
    auto sweep = make_sweep(tmp, R"({"axes":[{"param":"a","range":[0,300]},{"param":"s","values":["x","yy"]}]})");
    TaskIndex index(sweep.path);
    assert_int_equal(index.size(), 600);
    std::istringstream all(slurp(sweep.path + "/tasks.jsonl"));
    std::string line;
    for (std::uint64_t i = 0; std::getline(all, line); ++i) {
        assert_string_equal(index.line(i).c_str(), line.c_str());
        assert_int_equal(index.task(i).index, i);
    }
    expect_error_containing([&] { index.line(600); }, "out of range");
}

static void task_index_reads_the_offset_table_not_the_lines_before(void**) {
    TempDir tmp;
    auto sweep = make_sweep(tmp, R"({"axes":[{"param":"a","values":[1,2,3]}]})");
    // Lines that are no task, and offsets shifted past them: counting newlines would now
    // find the wrong line; following the offsets finds the right one.
    std::string junk = "junk\nmore junk\n";
    write_file_atomic(sweep.path + "/tasks.jsonl", junk + slurp(sweep.path + "/tasks.jsonl"));
    std::string idx = slurp(sweep.path + "/tasks.idx");
    for (std::size_t e = 0; e < idx.size() / 8; ++e) {
        std::uint64_t v = 0;
        for (int k = 7; k >= 0; --k) v = (v << 8) | static_cast<unsigned char>(idx[e * 8 + k]);
        v += junk.size();
        for (int k = 0; k < 8; ++k) idx[e * 8 + k] = static_cast<char>((v >> (8 * k)) & 0xff);
    }
    write_file_atomic(sweep.path + "/tasks.idx", idx);
    TaskIndex index(sweep.path);
    assert_int_equal(index.task(0).index, 0);
    assert_int_equal(index.task(2).index, 2);
    assert_string_equal(index.task(2).params_json.c_str(), "{\"a\":3}");
}

static void task_record_keeps_number_text_and_plain_strings(void**) {
    auto rec = parse_task_line(R"({"index":5,"params":{"lr":1e-05,"opt":"a\"b","on":true},"task_seed":12})");
    assert_int_equal(rec.index, 5);
    assert_int_equal(rec.task_seed, 12);
    assert_string_equal(rec.params_json.c_str(), R"({"lr":1e-05,"opt":"a\"b","on":true})");
    assert_string_equal(rec.params[0].second.plain.c_str(), "1e-05");
    assert_string_equal(rec.params[1].second.plain.c_str(), "a\"b");
    assert_string_equal(rec.params[2].second.plain.c_str(), "true");
}

// ---- chunks and submission plans

static void chunks_never_exceed_max_array_size(void**) {
    auto c = plan_chunks(2500, 1001, 1);
    assert_int_equal(c.size(), 3);
    assert_int_equal(c[0].offset, 0);
    assert_int_equal(c[1].offset, 1001);
    assert_int_equal(c[2].offset, 2002);
    assert_int_equal(c[0].elements, 1001);
    assert_int_equal(c[2].count, 498);
    assert_int_equal(c[2].elements, 498);
    auto one = plan_chunks(1001, 1001, 1);
    assert_int_equal(one.size(), 1);
    assert_int_equal(plan_chunks(1002, 1001, 1).size(), 2);
}

static void pack_runs_k_tasks_per_element(void**) {
    auto c = plan_chunks(2500, 1001, 10);
    assert_int_equal(c.size(), 1);
    assert_int_equal(c[0].elements, 250);
    auto d = plan_chunks(25, 2, 10);  // 2 elements of 10 per chunk
    assert_int_equal(d.size(), 2);
    assert_int_equal(d[1].offset, 20);
    assert_int_equal(d[1].count, 5);
    assert_int_equal(d[1].elements, 1);
    assert_true(element_tasks(3, 1001, 1001, 1) == (std::vector<std::uint64_t>{1004}));
    assert_true(element_tasks(1, 20, 5, 3) == (std::vector<std::uint64_t>{23, 24}));
    assert_true(element_tasks(2, 20, 5, 3).empty());
}

static void array_specs_compress_ranges_and_throttle(void**) {
    assert_string_equal(array_spec({3, 7, 12, 13, 14, 15}, 0).c_str(), "3,7,12-15");
    assert_string_equal(array_spec({0, 1, 2}, 50).c_str(), "0-2%50");
    assert_true(parse_index_list("3,7,12-15") == (std::set<std::uint64_t>{3, 7, 12, 13, 14, 15}));
    expect_error_containing([] { parse_index_list("3,x"); }, "not an index list");
    expect_error_containing([] { parse_index_list("5-2"); }, "not an index list");
    // The largest index there is ends its range (the loop once wrapped and never ended).
    assert_true(parse_index_list("3,18446744073709551615,12-13") ==
                (std::set<std::uint64_t>{3, 12, 13, 18446744073709551615ull}));
    assert_true(parse_index_list("18446744073709551614-18446744073709551615") ==
                (std::set<std::uint64_t>{18446744073709551614ull, 18446744073709551615ull}));
}

static void dry_run_lines_chain_phases_chunk_by_chunk(void**) {
    TempDir tmp;
    auto sweep = make_sweep(tmp, R"({"axes":[{"param":"a","range":[0,2500]}],"command":"true",
        "phases":[{"name":"prep"},{"name":"train","after":"prep"},{"name":"eval","after":"train"}]})");
    SubmitOptions o;
    o.max_array_size = 1001;
    o.throttle = 50;
    auto subs = plan_submit(sweep, o);
    assert_int_equal(subs.size(), 9);
    std::string p = sweep.path + "/scripts/";
    assert_string_equal(dry_run_line(subs[0]).c_str(), ("sbatch --parsable --array=0-1000%50 " + p + "prep.sh 0 1001 1").c_str());
    assert_string_equal(dry_run_line(subs[2]).c_str(), ("sbatch --parsable --array=0-497%50 " + p + "prep.sh 2002 498 1").c_str());
    assert_string_equal(dry_run_line(subs[4]).c_str(),
                        ("sbatch --parsable --array=0-1000%50 --dependency=aftercorr:{prep.1} --kill-on-invalid-dep=yes " + p +
                         "train.sh 1001 1001 1").c_str());
    assert_string_equal(subs[8].after.c_str(), "train.2");
    auto argv = subs[4].argv("123");
    assert_string_equal(argv[3].c_str(), "--dependency=aftercorr:123");
}

static void dry_run_with_pack_gives_250_elements(void**) {
    TempDir tmp;
    auto sweep = make_sweep(tmp, R"({"axes":[{"param":"a","range":[0,2500]}],"command":"true"})");
    SubmitOptions o;
    o.max_array_size = 1001;
    o.pack = 10;
    auto subs = plan_submit(sweep, o);
    assert_int_equal(subs.size(), 1);
    assert_string_equal(dry_run_line(subs[0]).c_str(), ("sbatch --parsable --array=0-249 " + sweep.path + "/scripts/main.sh 0 2500 10").c_str());
}

static void resubmission_keeps_global_indices(void**) {
    TempDir tmp;
    auto sweep = make_sweep(tmp, R"({"axes":[{"param":"a","range":[0,2500]}],"command":"true",
        "phases":[{"name":"prep"},{"name":"train","after":"prep"}]})");
    SubmitOptions o;
    o.max_array_size = 1001;
    o.sbatch_args = {"--time=5"};
    auto subs = plan_resubmit(sweep, {3, 7, 1005, 1007, 1008}, o, "r-");
    assert_int_equal(subs.size(), 4);
    assert_string_equal(subs[0].array.c_str(), "3,7");
    assert_int_equal(subs[0].offset, 0);
    assert_string_equal(subs[1].array.c_str(), "4,6-7");
    assert_int_equal(subs[1].offset, 1001);
    assert_int_equal(subs[1].pack, 1);
    assert_string_equal(subs[3].after.c_str(), "prep.r-1");
    auto argv = subs[3].argv("77");
    assert_true(std::find(argv.begin(), argv.end(), "--time=5") != argv.end());
    expect_error_containing([&] { plan_resubmit(sweep, {2500}, o, "r"); }, "out of range");
}

static void phase_scripts_carry_sbatch_and_aihpc_options(void**) {
    TempDir tmp;
    auto sweep = make_sweep(tmp, R"({"name":"demo","axes":[{"param":"a","values":[1]}],"command":"true",
        "slurm":{"sbatch":["--time=01:00:00"],"aihpc":["--aihpc-bind=auto"]},
        "phases":[{"name":"prep","sbatch":["-c","4"]}]})");
    SubmitOptions o;
    o.tool_path = "/opt/aihpc/bin/aihpc-sweep";
    o.sbatch_args = {"--partition", "debug"};
    auto text = phase_script(sweep, sweep.spec.phases[0], o);
    for (auto want : {"#!/bin/sh\n", "#SBATCH --job-name=demo.prep\n", "#SBATCH --time=01:00:00\n", "#SBATCH -c 4\n",
                      "#SBATCH --aihpc-bind=auto\n", "#SBATCH --partition debug\n", "/logs/%A_%a.out\n",
                      "exec /opt/aihpc/bin/aihpc-sweep run "})
        if (text.find(want) == std::string::npos) {
            print_error("script lacks '%s':\n%s", want, text.c_str());
            fail();
        }
    assert_true(text.find("--phase prep --offset \"$1\" --count \"$2\" --pack \"$3\"") != std::string::npos);
}

static void a_container_in_the_spec_or_sbatch_args_keeps_the_runner_on_the_host(void**) {
    TempDir tmp;
    auto sweep = make_sweep(tmp, R"({"name":"demo","axes":[{"param":"a","values":[1]}],"command":"python3 t.py",
        "slurm":{"aihpc":["--aihpc-container=/img/py"]}})");
    SubmitOptions o;
    o.tool_path = "/opt/aihpc/bin/aihpc-sweep";
    auto text = phase_script(sweep, sweep.spec.phases[0], o);
    assert_true(text.find("#SBATCH --aihpc-container=/img/py\n#SBATCH --aihpc-container-scope=steps\n") != std::string::npos);
    // In submit's sbatch args, in either spelling.
    TempDir tmp2;
    auto plain = make_sweep(tmp2, R"({"name":"p","axes":[{"param":"a","values":[1]}],"command":"true"})");
    o.sbatch_args = {"--aihpc-container", "/img/py"};
    assert_true(phase_script(plain, plain.spec.phases[0], o).find("#SBATCH --aihpc-container-scope=steps\n") != std::string::npos);
    // A scope the user chose stays theirs; no container, no scope.
    using V = std::vector<std::string>;
    assert_true(with_host_runner({"--aihpc-container=/i", "--aihpc-container-scope=all"}) ==
                V({"--aihpc-container=/i", "--aihpc-container-scope=all"}));
    assert_true(with_host_runner({"--gpus=1"}) == V({"--gpus=1"}));
    assert_true(with_host_runner({"--aihpc-container="}) == V({"--aihpc-container="}));
    assert_true(with_host_runner({"--aihpc-container-bind=/a:/a"}) == V({"--aihpc-container-bind=/a:/a"}));
    // resubmit's extra sbatch words get it too.
    o.sbatch_args = {"--aihpc-container=/img/py"};
    o.max_array_size = 10;
    auto subs = plan_resubmit(plain, {0}, o, "r");
    assert_true(subs[0].extra == V({"--aihpc-container=/img/py", "--aihpc-container-scope=steps"}));
}

static void a_sweep_that_stages_data_prefers_the_nodes_holding_it(void**) {
    TempDir tmp;
    auto sweep = make_sweep(tmp, R"({"name":"demo","axes":[{"param":"a","values":[1]}],"command":"python3 t.py",
        "slurm":{"aihpc":["--aihpc-stage=/datasets/cifar"]}})");
    SubmitOptions o;
    o.tool_path = "/opt/aihpc/bin/aihpc-sweep";
    assert_true(phase_script(sweep, sweep.spec.phases[0], o).find("#SBATCH --aihpc-stage=/datasets/cifar\n#SBATCH --aihpc-gravity\n") !=
                std::string::npos);
    using V = std::vector<std::string>;
    // Either spelling of --aihpc-stage; an explicit choice wins; other stage options are not data.
    assert_true(with_host_runner({"--aihpc-stage", "/d"}) == V({"--aihpc-stage", "/d", "--aihpc-gravity"}));
    assert_true(with_host_runner({"--aihpc-stage=/d", "--aihpc-gravity=off"}) == V({"--aihpc-stage=/d", "--aihpc-gravity=off"}));
    assert_true(with_host_runner({"--aihpc-stage-out=a:/b", "--aihpc-stage-mode=private"}) ==
                V({"--aihpc-stage-out=a:/b", "--aihpc-stage-mode=private"}));
}

static void tasks_run_as_steps_only_from_a_host_batch_script_of_a_container_job(void**) {
    using V = std::vector<std::string>;
    const std::string opt = "SLURM_SPANK__SLURM_SPANK_OPTION_aihpc_aihpc_container";
    V host = {"SLURM_JOB_ID=7", "SLURMD_NODENAME=n2", opt + "=/img/py", opt + "_scope=steps"};
    TaskLaunch l = task_launch_from(host);
    assert_true(l.as_step);
    assert_true(step_command(l, {"python3", "t.py", "a b"}) ==
                V({"srun", "--ntasks=1", "--nodes=1", "--quiet", "--nodelist=n2", "python3", "t.py", "a b"}));
    // The variables do as well as the forwarded options.
    assert_true(task_launch_from({"SLURM_JOB_ID=7", "AIHPC_CONTAINER=/img/py", "AIHPC_CONTAINER_SCOPE=steps"}).as_step);
    // The batch script inside the container (scope all), a step, no container, no job.
    assert_false(task_launch_from({"SLURM_JOB_ID=7", opt + "=/img/py"}).as_step);
    assert_false(task_launch_from({"SLURM_JOB_ID=7", opt + "=/img/py", opt + "_scope=all", "AIHPC_CONTAINER_SCOPE=steps"}).as_step);
    V in_step = host;
    in_step.push_back("SLURM_STEP_ID=0");
    assert_false(task_launch_from(in_step).as_step);
    // Slurm 26.05 names the batch step in SLURM_STEP_ID: -5, SLURM_BATCH_SCRIPT.
    V batch_26 = host;
    batch_26.push_back("SLURM_STEP_ID=-5");
    assert_true(task_launch_from(batch_26).as_step);
    assert_false(task_launch_from({"SLURM_JOB_ID=7", opt + "_scope=steps"}).as_step);
    assert_false(task_launch_from({opt + "=/img/py", opt + "_scope=steps"}).as_step);
    TaskLaunch direct;
    assert_true(step_command(direct, {"python3", "t.py"}) == V({"python3", "t.py"}));
}

static void max_array_size_is_read_from_scontrol(void**) {
    assert_int_equal(parse_max_array_size("AccountingStorageType = x\nMaxArraySize            = 1001\nMaxJobCount = 10\n"), 1001);
    expect_error_containing([] { parse_max_array_size("MaxJobCount = 10\n"); }, "--max-array-size");
}

// ---- runner

static void metrics_are_a_json_object_or_name_value_lines(void**) {
    assert_string_equal(metrics_to_json("{\"loss\": 0.5, \"acc\": 1e-3}\n").c_str(), "{\"loss\":0.5,\"acc\":1e-3}");
    assert_string_equal(metrics_to_json("loss=0.5\n# comment\nacc = 0.9\nnote=ok\n").c_str(), "{\"loss\":0.5,\"acc\":0.9,\"note\":\"ok\"}");
    assert_string_equal(metrics_to_json("").c_str(), "{}");
}

static void result_paths_separate_earlier_phases(void**) {
    TempDir tmp;
    auto sweep = make_sweep(tmp, R"({"axes":[{"param":"a","values":[1]}],"command":"true",
        "phases":[{"name":"prep"},{"name":"train","after":"prep"}]})");
    assert_string_equal(result_path(sweep, sweep.spec.phases[0], 7).c_str(), (sweep.path + "/results/prep/7.json").c_str());
    assert_string_equal(result_path(sweep, sweep.spec.phases[1], 7).c_str(), (sweep.path + "/results/7.json").c_str());
}

static void run_writes_a_complete_result_and_returns_the_exit_code(void**) {
    TempDir tmp;
    auto sweep = make_sweep(tmp, R"({"axes":[{"param":"lr","values":[0.5,0.25]},{"param":"name","values":["a b"]}],
        "command":["sh","-c","echo \"loss=$0\" > \"$AIHPC_METRICS_FILE\"; test \"$AIHPC_PARAM_NAME\" = '{name}' && exit {index}","{lr}"]})");
    ::setenv("AIHPC_STAGE_MANIFESTS", "cifar=abc,imnet=def", 1);
    ::setenv("AIHPC_STAGE", "/data/cifar.tar.zst,/data/imagenet:imnet", 1);
    ::setenv("CUDA_VISIBLE_DEVICES", "1,2", 1);
    RunRequest req;
    req.index = 0;
    assert_int_equal(run_tasks(sweep, req), 0);
    req.index = 1;
    assert_int_equal(run_tasks(sweep, req), 1);
    ::unsetenv("AIHPC_STAGE_MANIFESTS");
    ::unsetenv("AIHPC_STAGE");
    ::unsetenv("CUDA_VISIBLE_DEVICES");
    json_object* r = json_tokener_parse(slurp(sweep.path + "/results/0.json").c_str());
    assert_non_null(r);
    auto field = [&](json_object* o, const char* k) {
        json_object* v = nullptr;
        if (!json_object_object_get_ex(o, k, &v)) {
            print_error("result lacks %s\n", k);
            fail();
        }
        return v;
    };
    assert_int_equal(json_object_get_int(field(r, "exit_code")), 0);
    assert_true(json_object_get_double(field(field(r, "metrics"), "loss")) == 0.5);
    assert_string_equal(json_object_get_string(field(field(r, "params"), "name")), "a b");
    for (auto k : {"index", "task_seed", "start", "end", "elapsed_s", "node", "job_id", "array_job_id", "array_task_id"}) field(r, k);
    auto prov = field(r, "provenance");
    assert_string_equal(json_object_get_string(field(prov, "spec_hash")), sweep.spec_hash.c_str());
    assert_string_equal(json_object_get_string(field(prov, "git_commit")), "abc123");
    auto staged = field(prov, "staged");
    assert_int_equal(json_object_array_length(staged), 2);
    assert_string_equal(json_object_get_string(field(json_object_array_get_idx(staged, 1), "src")), "/data/imagenet");
    assert_string_equal(json_object_get_string(field(json_object_array_get_idx(staged, 0), "manifest_hash")), "abc");
    auto binding = field(prov, "binding");
    assert_string_equal(json_object_get_string(field(binding, "gpus")), "1,2");
    assert_non_null(json_object_get_string(field(binding, "cpus")));
    json_object_put(r);
    r = json_tokener_parse(slurp(sweep.path + "/results/1.json").c_str());
    assert_int_equal(json_object_get_int(field(r, "exit_code")), 1);
    json_object_put(r);
    auto scan = scan_results(sweep);
    assert_true(scan.done == (std::set<std::uint64_t>{0}));
    assert_true(scan.failed == (std::set<std::uint64_t>{1}));
}

static void run_resolves_packed_tasks_from_the_array_task_id(void**) {
    TempDir tmp;
    auto sweep = make_sweep(tmp, R"({"axes":[{"param":"a","range":[0,30]}],"command":"true"})");
    ::setenv("SLURM_ARRAY_TASK_ID", "2", 1);
    RunRequest req;
    req.offset = 20;
    req.count = 10;
    req.pack = 4;
    assert_int_equal(run_tasks(sweep, req), 0);
    ::unsetenv("SLURM_ARRAY_TASK_ID");
    auto scan = scan_results(sweep);
    assert_true(scan.done == (std::set<std::uint64_t>{28, 29}));
    assert_int_equal(scan.missing(sweep.tasks).size(), 28);
}

static void a_command_that_cannot_start_exits_127(void**) {
    TempDir tmp;
    auto sweep = make_sweep(tmp, R"({"axes":[{"param":"a","values":[1]}],"command":"/nonexistent/prog {a}"})");
    RunRequest req;
    req.index = 0;
    assert_int_equal(run_tasks(sweep, req), 127);
    assert_int_equal(*result_exit_code(slurp(sweep.path + "/results/0.json")), 127);
}

static void sigterm_is_forwarded_to_the_command_and_recorded(void**) {
    TempDir tmp;
    std::string marker = tmp.path() + "/started";
    auto sweep = make_sweep(tmp, std::string(R"({"axes":[{"param":"a","values":[1]}],"command":["sh","-c","trap 'exit 7' TERM; touch )") +
                                     marker + R"(; while :; do sleep 0.05; done"]})");
    pid_t pid = ::fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        RunRequest req;
        req.index = 0;
        ::_exit(run_tasks(sweep, req));
    }
    struct stat st;
    while (::stat(marker.c_str(), &st) != 0) ::usleep(10000);
    ::kill(pid, SIGTERM);
    int status = 0;
    ::waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 7);
    auto text = slurp(sweep.path + "/results/0.json");
    assert_true(text.find("\"forwarded_signal\":\"SIGTERM\"") != std::string::npos);
    assert_int_equal(*result_exit_code(text), 7);
}

// ---- refine

static void param_ranges_cover_numeric_axes_only(void**) {
    auto r = param_ranges(parse_spec(R"({"axes":[{"param":"lr","loguniform":[1e-5,1e-2],"count":2},{"param":"bs","range":[32,129,32]},
        {"param":"opt","values":["a","b"]},{"param":"d","values":[0,0.5]},{"repeat":2}]})"));
    assert_int_equal(r.size(), 3);
    assert_true(r["lr"].log && !r["lr"].integer && r["lr"].lo == 1e-5 && r["lr"].hi == 1e-2);
    assert_true(r["bs"].integer && r["bs"].lo == 32 && r["bs"].hi == 128);
    assert_true(!r["d"].log && r["d"].hi == 0.5);
}

static void refine_widens_the_numbers_of_union_members(void**) {
    // momentum=0.9,0.99@opt=sgd and zip(wd=[0,0.05],beta2=[0.95,0.999])@opt=adamw, and
    // numbers fixed in a member.
    auto spec = parse_spec(R"({"axes":[{"union":[
        {"fixed":{"opt":"sgd","layers":2},"axes":[{"param":"momentum","values":[0.9,0.99]}]},
        {"fixed":{"opt":"adamw","layers":4},"axes":[{"zip":{"wd":[0.0,0.05],"beta2":[0.95,0.999]}}]}]}]})");
    auto r = param_ranges(spec);
    assert_true(r.count("momentum") && r["momentum"].lo == 0.9 && r["momentum"].hi == 0.99 && !r["momentum"].integer);
    assert_true(r.count("wd") && r["wd"].hi == 0.05 && !r["wd"].integer);
    assert_true(r.count("beta2") && r["beta2"].lo == 0.95);
    assert_true(r.count("layers") && r["layers"].integer && r["layers"].lo == 2 && r["layers"].hi == 4);
    assert_false(r.count("opt"));
    auto best = {parse_task_line(R"({"index":2,"params":{"opt":"adamw","layers":4,"wd":0.05,"beta2":0.95},"task_seed":1})")};
    auto next = refine_spec(spec, best, 0.5, 20);
    TaskStream s(next);
    std::set<std::string> wd, layers;
    while (s.next()) {
        auto p = std::string(s.params());
        wd.insert(column({p}, "wd")[0]);
        layers.insert(column({p}, "layers")[0]);
        assert_true(p.find("\"opt\":\"adamw\"") != std::string::npos);
    }
    assert_true(wd.size() > 1);  // drawn, not fixed
    for (auto& l : layers) assert_true(l == "3" || l == "4");  // integers stay integers
    // A float axis never becomes an int one: 1.0 and 2.0 are floats.
    auto f = param_ranges(parse_spec(R"({"axes":[{"param":"x","values":[1.0,2.0]}]})"));
    assert_false(f["x"].integer);
}

static void refine_draws_around_each_best_task_within_the_original_span(void**) {
    auto spec = parse_spec(R"({"seed":4,"axes":[{"param":"lr","loguniform":[1e-5,1e-1],"count":8},{"param":"bs","range":[16,257,16]},
        {"param":"opt","values":["sgd","adam"]},{"repeat":2}],"command":"train {lr} {bs} {opt}"})");
    auto best = {parse_task_line(R"({"index":1,"params":{"lr":0.001,"bs":32,"opt":"adam","repeat":0},"task_seed":1})"),
                 parse_task_line(R"({"index":2,"params":{"lr":0.001,"bs":32,"opt":"adam","repeat":1},"task_seed":2})"),
                 parse_task_line(R"({"index":3,"params":{"lr":1e-5,"bs":256,"opt":"sgd","repeat":0},"task_seed":3})")};
    auto next = refine_spec(spec, best, 0.5, 40);
    assert_true(next.method == Method::random);
    assert_int_equal(next.trials, 40);
    assert_int_equal(next.seed, 5);
    assert_int_equal(next.axes[0].branches.size(), 2);  // replicates of one config count once
    assert_true(next.command == spec.command);
    TaskStream s(next);
    int n = 0;
    while (s.next()) {
        ++n;
        auto p = std::string(s.params());
        auto lr = std::strtod(column({p}, "lr")[0].c_str(), nullptr);
        auto bs = std::strtol(column({p}, "bs")[0].c_str(), nullptr, 10);
        if (p.find("\"opt\":\"adam\"") != std::string::npos) {
            assert_true(lr >= 1e-4 && lr <= 1e-2);  // (1e4)^(0.25) = 10 either side of 1e-3
            assert_true(bs >= 16 && bs <= 92);      // +-60 around 32, within 16..256
        } else {
            assert_true(lr >= 1e-5 && lr <= 1e-4);
            assert_true(bs >= 196 && bs <= 256);
        }
    }
    assert_int_equal(n, 80);  // 40 trials x repeat 2
}

static void refine_keeps_lists_as_lists(void**) {
    auto spec = parse_spec(R"({"axes":[{"param":"bs","values":[64,128,256]},{"param":"lr","values":[1e-4,1e-3,1e-2,1e-1,1.0]}],"command":"t"})");
    auto best = {parse_task_line(R"({"index":1,"params":{"bs":128,"lr":1.0},"task_seed":1})")};
    auto next = refine_spec(spec, best, 0.5, 30);
    TaskStream s(next);
    std::set<std::string> bs, lr;
    while (s.next()) {
        auto p = std::string(s.params());
        bs.insert(column({p}, "bs")[0]);
        lr.insert(column({p}, "lr")[0]);
    }
    // bs: 128 and its neighbours, never 91; lr: the top of a log-spaced list and the one
    // below it (radius lround(4 * 0.5 / 2) = 1), never a value between.
    assert_true(bs == (std::set<std::string>{"64", "128", "256"}));
    assert_true(lr == (std::set<std::string>{"0.1", "1.0"}));
}

static void refine_counts_the_replicates_of_a_configuration_once(void**) {
    TempDir tmp;
    auto sweep = make_sweep(tmp, R"({"axes":[{"param":"a","values":[1,2,3]},{"repeat":2}],"command":"true"})");
    // a=1: 0.1 and 0.3; a=2: 0.15 twice; a=3: 0.5 and a failed 0.01.
    const char* loss[] = {"0.1", "0.3", "0.15", "0.15", "0.5", "0.01"};
    for (int i = 0; i < 6; ++i)
        write_file_atomic(sweep.path + "/results/" + std::to_string(i) + ".json",
                          "{\"index\":" + std::to_string(i) + ",\"exit_code\":" + (i == 5 ? "1" : "0") + ",\"metrics\":{\"loss\":" + loss[i] + "}}");
    auto best = best_tasks(sweep, "loss", false, 2);
    assert_int_equal(best.size(), 2);
    assert_int_equal(best[0].task.index, 0);  // a=1 by its best replicate, once
    assert_true(best[0].metric == 0.1);
    assert_int_equal(best[0].replicates, 2);
    assert_int_equal(best[1].task.index, 2);  // a=2, not a=1's other replicate
    auto mean = best_tasks(sweep, "loss", false, 3, Aggregate::mean);
    assert_int_equal(mean.size(), 3);
    assert_int_equal(mean[0].task.index, 2);
    assert_true(std::fabs(mean[1].metric - 0.2) < 1e-12);
    assert_int_equal(mean[2].task.index, 4);
    assert_int_equal(mean[2].replicates, 1);  // the failed replicate does not count
    assert_true(aggregate_of({3, 1, 2, 10}, Aggregate::median) == 2.5);
    expect_error_containing([] { parse_aggregate("max"); }, "mean or median");
}

// ---- shorthand values as a Hydra or YAML user reads them

static void shorthand_lists_in_brackets_are_lists(void**) {
    assert_strings(column(params_of(compile_shorthand({"lr=[1e-4,3e-4]"}, {})), "lr"), {"1e-04", "3e-04"});
    assert_strings(column(params_of(compile_shorthand({"x=[7]"}, {})), "x"), {"7"});
    expect_error_containing([] { compile_shorthand({"x=[]"}, {}); }, "has no values");
    // A value that is itself bracketed twice stays a string, not a list.
    assert_strings(column(params_of(compile_shorthand({"x=[a],[b]"}, {})), "x"), {"\"[a]\"", "\"[b]\""});
}

static void shorthand_booleans_are_read_as_json_and_yaml_write_them(void**) {
    assert_strings(column(params_of(compile_shorthand({"amp=True,false"}, {})), "amp"), {"true", "false"});
    assert_strings(column(params_of(compile_shorthand({"amp=TRUE,False"}, {})), "amp"), {"true", "false"});
    assert_strings(column(params_of(compile_shorthand({"amp='True'"}, {})), "amp"), {"\"True\""});
}

static void shorthand_text_lists_keep_numbers_as_written(void**) {
    assert_strings(column(params_of(compile_shorthand({"ver=1.10,1.9,latest"}, {})), "ver"), {"\"1.10\"", "\"1.9\"", "\"latest\""});
    // All numbers: numbers.
    assert_strings(column(params_of(compile_shorthand({"ver=1.10,1.9"}, {})), "ver"), {"1.1", "1.9"});
    // Alone, 1.10 is a number; the loss of its text is said.
    std::vector<std::string> notes;
    compile_shorthand({"ver=1.10,2", "id=007", "lr=0.5,1e-3,2.0,-0.25"}, {}, &notes);
    assert_strings(notes, {"parameter 'ver=1.10,2': 1.10 is read as the number 1.1; quote it ('1.10') to keep the text",
                           "parameter 'id=007': 007 is read as the number 7; quote it ('007') to keep the text"});
    // A condition on such a list matches the text.
    auto p = params_of(compile_shorthand({"ver=1.10,latest", "x=1@ver=1.10"}, {}));
    assert_strings(p, {"{\"ver\":\"1.10\",\"x\":1}", "{\"ver\":\"latest\"}"});
}

static void the_same_value_twice_is_refused(void**) {
    expect_error_containing([] { compile_shorthand({"lr=0.1,0.1,0.2"}, {}); }, "the value 0.1 is given twice");
    expect_error_containing([] { compile_shorthand({"lr=0.1,0.10"}, {}); }, "the value 0.10 (the same as 0.1) is given twice");
    expect_error_containing([] { checked_spec(R"({"axes":[{"param":"a","values":["x","y","x"]}]})"); }, "axes[0].values[2]: is \"x\" again (as axes[0].values[0])");
    // The spec of a sweep written before the check still opens: only a new one is refused.
    parse_spec(R"({"axes":[{"param":"a","values":["x","x"]}]})");
    // An integer and a float are two values; a zip column may repeat one.
    assert_int_equal(params_of(R"({"axes":[{"param":"a","values":[1,1.0]}]})").size(), 2);
    assert_int_equal(params_of(compile_shorthand({"zip(a=[1,1],b=[2,3])"}, {})).size(), 2);
}

static void an_unclosed_reference_in_a_template_is_refused(void**) {
    expect_error_containing([] { checked_spec(R"({"axes":[{"param":"lr","values":[1]}],"command":"train --lr={lr"})"); },
                            "command: '{lr' is not closed");
    expect_error_containing([] { checked_spec(R"({"axes":[{"param":"lr","values":[1]}],"command":["train","{lr"]})"); }, "is not closed");
    // Braces that something else closes are the program's own.
    checked_spec(R"({"axes":[{"param":"lr","values":[1]}],"command":["awk","{print $1}","{a,b}","${HOME}","{{lr","{lr}"]})");
}

static void a_count_a_random_sweep_does_not_use_is_named(void**) {
    SpecOverrides random;
    random.random_trials = 5;
    auto spec = parse_spec(compile_shorthand({"lr=uniform(0,1,n=2)", "bs=int(1,9)", "opt=a,b"}, random));
    assert_strings(counts_unused(spec), {"lr"});
    assert_true(counts_unused(parse_spec(compile_shorthand({"lr=uniform(0,1,n=2)"}, {}))).empty());
}

static void two_parameters_never_share_a_variable(void**) {
    expect_error_containing([] { checked_spec(R"({"axes":[{"param":"model.depth","values":[1]},{"param":"model_depth","values":[2]}]})"); },
                            "parameters 'model.depth' and 'model_depth' both become the variable AIHPC_PARAM_MODEL_DEPTH");
    expect_error_containing([] { checked_spec(R"({"axes":[{"param":"lr","values":[1]},{"param":"LR","values":[2]}]})"); }, "AIHPC_PARAM_LR");
    // The members of one union may share a name, and so its variable.
    parse_spec(R"({"axes":[{"union":[{"fixed":{"a":1}},{"fixed":{"a":2}}]}]})");
}

// ---- what expand refuses

static void a_template_naming_a_parameter_some_tasks_lack_is_refused_at_expand(void**) {
    TempDir tmp;
    auto spec = parse_spec(compile_shorthand({"opt=sgd,adam", "momentum=0.9,0.99@opt=sgd"}, SpecOverrides{{}, {}, {}, {}, {"train", "--m", "{momentum}"}}));
    expect_error_containing([&] { write_sweep_dir(spec, tmp.path() + "/a", Provenance{}); },
                            "task 2 {\"opt\":\"adam\"} has no parameter 'momentum', which the command template uses as {momentum}");
    assert_false(aihpc::path_exists(tmp.path() + "/a"));
    // A phase's own command is checked too, and named.
    auto phased = parse_spec(R"({"axes":[{"union":[{"fixed":{"opt":"sgd"},"axes":[{"param":"m","values":[1]}]},{"fixed":{"opt":"adam"}}]}],
        "command":"train {opt}","phases":[{"name":"prep"},{"name":"eval","after":"prep","command":"eval {m}"}]})");
    expect_error_containing([&] { write_sweep_dir(phased, tmp.path() + "/b", Provenance{}); }, "which the command of phase 'eval' uses as {m}");
    // Given by every member, a conditional parameter is every task's.
    auto every = parse_spec(R"({"axes":[{"union":[{"fixed":{"opt":"sgd","m":1}},{"fixed":{"opt":"adam"},"axes":[{"param":"m","values":[2,3]}]}]}],
        "command":"train {opt} {m}"})");
    assert_int_equal(write_sweep_dir(every, tmp.path() + "/c", Provenance{}).tasks, 3);
    // A string value that looks like the member is not the member.
    auto tricky = parse_spec(R"({"axes":[{"union":[{"fixed":{"opt":"b","m":1}},{"fixed":{"opt":"a,\"m\":1"}}]}],"command":"train {m}"})");
    expect_error_containing([&] { write_sweep_dir(tricky, tmp.path() + "/d", Provenance{}); }, "task 1 ");
}

static void a_spec_without_a_command_is_refused(void**) {
    expect_error_containing([] { require_commands(parse_spec(R"({"axes":[{"param":"a","values":[1]}]})")); }, "there is no command to run");
    expect_error_containing(
        [] { require_commands(parse_spec(R"({"axes":[{"param":"a","values":[1]}],"phases":[{"name":"prep","command":"p"},{"name":"train"}]})")); },
        "phase 'train' has no command");
    require_commands(parse_spec(R"({"axes":[{"param":"a","values":[1]}],"command":"t {a}","phases":[{"name":"prep","command":"p"},{"name":"train"}]})"));
}

// ---- what a dry run shows and checks

static void a_dry_run_line_shows_every_option_of_the_array(void**) {
    TempDir tmp;
    auto sweep = make_sweep(tmp, R"({"name":"demo","axes":[{"param":"a","range":[0,3]}],"command":"true",
        "slurm":{"sbatch":["--gpus=1","--time=01:00:00"],"aihpc":["--aihpc-bind=auto"]},
        "phases":[{"name":"prep","sbatch":["-c","4"]},{"name":"train","after":"prep"}]})");
    SubmitOptions o;
    o.sbatch_args = {"--partition=gpu"};
    auto subs = plan_submit(sweep, o);
    auto line = dry_run_line(subs[1], phase_sbatch_words(sweep, sweep.spec.phases[1], o));
    std::string want = "sbatch --parsable --array=0-2 --dependency=aftercorr:{prep.0} --kill-on-invalid-dep=yes --job-name=demo.train --output=" +
                       sweep.path + "/logs/%A_%a.out --gpus=1 --time=01:00:00 --aihpc-bind=auto --partition=gpu " + sweep.path +
                       "/scripts/train.sh 0 3 1";
    assert_string_equal(line.c_str(), want.c_str());
    auto prep = dry_run_line(subs[0], phase_sbatch_words(sweep, sweep.spec.phases[0], o));
    assert_non_null(std::strstr(prep.c_str(), " --time=01:00:00 -c 4 --aihpc-bind=auto "));
    // The script holds the same options.
    auto script = phase_script(sweep, sweep.spec.phases[0], o);
    assert_non_null(std::strstr(script.c_str(), "#SBATCH -c 4\n"));
}

static void a_container_image_that_is_a_missing_path_is_refused(void**) {
    TempDir tmp;
    write_file_atomic(tmp.path() + "/torch.sif", "image");
    ::mkdir((tmp.path() + "/rootfs").c_str(), 0755);
    check_container_images({"--aihpc-container=" + tmp.path() + "/torch.sif"}, "x", "/");
    check_container_images({"--aihpc-container", "torch.sif", "--aihpc-container=rootfs"}, "x", tmp.path());
    check_container_images({"--aihpc-container=docker://pytorch/pytorch", "--aihpc-container=podman:alpine"}, "x", tmp.path());
    expect_error_containing([&] { check_container_images({"--aihpc-container=gone.sif"}, "phase 'train'", tmp.path()); },
                            "phase 'train': --aihpc-container: the image " + tmp.path() + "/gone.sif does not exist");
    expect_error_containing([&] { check_container_images({"--aihpc-container=charliecloud:" + tmp.path() + "/nope"}, "x", "/"); },
                            "does not exist");
    expect_error_containing([&] { check_container_images({"--aihpc-container=pytorch"}, "x", tmp.path()); }, "x: --aihpc-container: cannot tell which runtime");
}

static void aihpc_options_are_checked_with_the_plugin_parser(void**) {
    check_aihpc_options({"--gpus=1", "--aihpc-bind=auto", "--aihpc-stage", "/data/x.tar", "--aihpc-verbose"}, "phase 'p'");
    expect_error_containing([] { check_aihpc_options({"--aihpc-bogus=1"}, "phase 'p'"); },
                            "phase 'p': --aihpc-bogus is not an aihpc option (options: --aihpc-stage,");
    expect_error_containing([] { check_aihpc_options({"--aihpc-bind=sideways"}, "phase 'p'"); }, "phase 'p': --aihpc-bind: unknown mode 'sideways'");
    expect_error_containing([] { check_aihpc_options({"--aihpc-verbose=yes"}, "x"); }, "--aihpc-verbose takes no value");
    expect_error_containing([] { check_aihpc_options({"--aihpc-stage"}, "x"); }, "--aihpc-stage needs a value");
}

// ---- the verdict on a result file

static void a_parameter_name_never_starts_with_a_dash(void**) {
    expect_error_containing([] { checked_spec(R"({"axes":[{"param":"--random","values":[5]}]})"); }, "must not start with '-'");
    expect_error_containing([] { checked_spec(compile_shorthand({"-lr=1,2"}, {})); }, "must not start with '-'");
    expect_error_containing([] { checked_spec(R"({"axes":[{"zip":{"-a":[1],"b":[2]}}]})"); }, "must not start with '-'");
    // A dash inside a name is fine.
    checked_spec(R"({"axes":[{"param":"warm-up","values":[1]}]})");
}

static void the_verdict_checks_syntax_index_and_exit_code(void**) {
    assert_true(judge_result(R"({"index":4,"exit_code":0,"metrics":{"loss":NaN}})", 4).verdict == Verdict::done);
    auto failed = judge_result(R"({"exit_code":3,"index":4,"metrics":{"exit_code":0}})", 4);
    assert_true(failed.verdict == Verdict::failed);
    assert_int_equal(*failed.exit_code, 3);
    // Truncated, trailing text, trailing comma, not an object: unreadable, never done.
    for (const char* bad : {R"({"index":4,"exit_code":0,"metrics":{"loss":1)", R"({"index":4,"exit_code":0} x)",
                            R"({"index":4,"exit_code":0,})", "[1]", "", R"({"index":4,"exit_code":0,"m":"\q"})"})
        assert_true(judge_result(bad, 4).verdict == Verdict::unreadable);
    // Another task's result under this task's name.
    auto misplaced = judge_result(R"({"index":2,"exit_code":0})", 4);
    assert_true(misplaced.verdict == Verdict::unreadable);
    assert_non_null(std::strstr(misplaced.problem.c_str(), "result of task 2, not of task 4"));
    assert_true(judge_result(R"({"index":4})", 4).verdict == Verdict::unreadable);
    assert_true(judge_result(R"({"index":4,"exit_code":0.5})", 4).verdict == Verdict::unreadable);
}

static void a_corrupt_or_misplaced_result_counts_as_missing_with_a_warning(void**) {
    TempDir tmp;
    auto sweep = make_sweep(tmp, R"({"axes":[{"param":"a","range":[0,5]}],"command":"true"})");
    write_file_atomic(sweep.path + "/results/0.json", R"({"index":0,"exit_code":0,"metrics":{}})");
    write_file_atomic(sweep.path + "/results/1.json", R"({"index":1,"exit_code":0,"metrics":{"loss":)");  // cut short
    write_file_atomic(sweep.path + "/results/2.json", R"({"index":3,"exit_code":0,"metrics":{}})");       // task 3's
    write_file_atomic(sweep.path + "/results/3.json", R"({"index":3,"exit_code":1,"metrics":{}})");
    auto scan = scan_results(sweep);
    assert_true(scan.done == (std::set<std::uint64_t>{0}));
    assert_true(scan.failed == (std::set<std::uint64_t>{3}));
    assert_true(scan.missing(sweep.tasks) == (std::set<std::uint64_t>{1, 2, 4}));
    assert_int_equal(scan.unreadable.size(), 2);
    auto warning = unreadable_warnings("aihpc-sweep", scan.unreadable);
    assert_non_null(std::strstr(warning.c_str(), "aihpc-sweep: warning: "));
    assert_non_null(std::strstr(warning.c_str(), "/results/1.json "));
    assert_non_null(std::strstr(warning.c_str(), "/results/2.json holds the result of task 3, not of task 2"));
    assert_non_null(std::strstr(warning.c_str(), "resubmit SWEEP --missing"));
}

static void refine_ranks_only_tasks_that_succeeded(void**) {
    TempDir tmp;
    auto sweep = make_sweep(tmp, R"({"axes":[{"param":"a","range":[0,5]}],"command":"true"})");
    // The lowest loss is a failed run's partial one, then a misplaced and a corrupt file's.
    write_file_atomic(sweep.path + "/results/0.json", R"({"index":0,"exit_code":1,"metrics":{"loss":0.1}})");
    write_file_atomic(sweep.path + "/results/1.json", R"({"index":0,"exit_code":0,"metrics":{"loss":0.2}})");
    write_file_atomic(sweep.path + "/results/2.json", R"({"index":2,"exit_code":0,"metrics":{"loss":0.3}} trailing)");
    write_file_atomic(sweep.path + "/results/3.json", R"({"index":3,"exit_code":0,"metrics":{"loss":0.5}})");
    write_file_atomic(sweep.path + "/results/4.json", R"({"index":4,"exit_code":0,"metrics":{"loss":0.4}})");
    auto best = best_tasks(sweep, "loss", false, 1);
    assert_int_equal(best.size(), 1);
    assert_int_equal(best[0].task.index, 4);
    assert_true(best[0].metric == 0.4);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(numbers_print_as_shortest_round_trip_text),
        cmocka_unit_test(values_axis_keeps_types_and_order),
        cmocka_unit_test(range_excludes_stop_and_keeps_integers),
        cmocka_unit_test(linspace_and_logspace_include_both_ends),
        cmocka_unit_test(distributions_draw_count_values_within_bounds),
        cmocka_unit_test(zip_pairs_columns_row_by_row),
        cmocka_unit_test(repeat_adds_a_counter_that_changes_task_seed),
        cmocka_unit_test(product_varies_the_last_axis_fastest),
        cmocka_unit_test(union_expands_each_branch_as_a_sub_product),
        cmocka_unit_test(nested_unions_count_as_sums_of_products),
        cmocka_unit_test(exclusions_drop_matching_tasks_and_renumber),
        cmocka_unit_test(exclusion_compares_typed_values),
        cmocka_unit_test(exclusion_of_a_parameter_absent_from_a_branch_does_not_match),
        cmocka_unit_test(integral_floats_stay_floats_and_ints_stay_ints),
        cmocka_unit_test(an_exclude_rule_that_matches_nothing_is_an_error),
        cmocka_unit_test(a_sweep_above_max_tasks_is_refused_before_anything_is_written),
        cmocka_unit_test(a_long_computed_axis_is_never_held_in_memory),
        cmocka_unit_test(strict_json_errors_name_the_path),
        cmocka_unit_test(a_shorthand_call_of_an_unknown_function_is_an_error),
        cmocka_unit_test(random_search_of_a_small_space_runs_each_configuration_once),
        cmocka_unit_test(a_task_line_whose_params_is_not_an_object_is_an_error),
        cmocka_unit_test(same_spec_gives_the_same_tasks),
        cmocka_unit_test(adding_an_axis_leaves_other_draws_unchanged),
        cmocka_unit_test(a_different_seed_gives_different_draws),
        cmocka_unit_test(random_method_keeps_repeat_as_a_product),
        cmocka_unit_test(random_sweep_gives_the_recorded_tasks),
        cmocka_unit_test(random_sweep_counts_excluded_tasks_of_a_repeat_inside_a_union),
        cmocka_unit_test(shorthand_compiles_to_the_same_tasks_as_json),
        cmocka_unit_test(shorthand_functions_compile_to_their_axis_kinds),
        cmocka_unit_test(shorthand_condition_keys_must_be_declared_parameters),
        cmocka_unit_test(shorthand_random_seed_and_command_become_spec_fields),
        cmocka_unit_test(shorthand_errors_name_the_term),
        cmocka_unit_test(overrides_apply_to_a_json_spec),
        cmocka_unit_test(bad_specs_name_the_path_into_the_document),
        cmocka_unit_test(result_field_names_are_not_parameter_names),
        cmocka_unit_test(result_exit_code_reads_only_the_top_level_member),
        cmocka_unit_test(normalized_spec_parses_back_to_the_same_tasks),
        cmocka_unit_test(commands_split_like_a_posix_shell),
        cmocka_unit_test(templates_substitute_inside_words),
        cmocka_unit_test(task_command_uses_the_phase_command_or_the_spec_command),
        cmocka_unit_test(expansion_is_byte_for_byte_deterministic),
        cmocka_unit_test(sweep_dir_holds_tasks_index_and_metadata),
        cmocka_unit_test(task_index_returns_every_line_by_offset),
        cmocka_unit_test(task_index_reads_the_offset_table_not_the_lines_before),
        cmocka_unit_test(task_record_keeps_number_text_and_plain_strings),
        cmocka_unit_test(chunks_never_exceed_max_array_size),
        cmocka_unit_test(pack_runs_k_tasks_per_element),
        cmocka_unit_test(array_specs_compress_ranges_and_throttle),
        cmocka_unit_test(dry_run_lines_chain_phases_chunk_by_chunk),
        cmocka_unit_test(dry_run_with_pack_gives_250_elements),
        cmocka_unit_test(resubmission_keeps_global_indices),
        cmocka_unit_test(phase_scripts_carry_sbatch_and_aihpc_options),
        cmocka_unit_test(a_container_in_the_spec_or_sbatch_args_keeps_the_runner_on_the_host),
        cmocka_unit_test(a_sweep_that_stages_data_prefers_the_nodes_holding_it),
        cmocka_unit_test(tasks_run_as_steps_only_from_a_host_batch_script_of_a_container_job),
        cmocka_unit_test(max_array_size_is_read_from_scontrol),
        cmocka_unit_test(a_parameter_name_never_starts_with_a_dash),
        cmocka_unit_test(two_parameters_never_share_a_variable),
        cmocka_unit_test(a_count_a_random_sweep_does_not_use_is_named),
        cmocka_unit_test(a_dry_run_line_shows_every_option_of_the_array),
        cmocka_unit_test(aihpc_options_are_checked_with_the_plugin_parser),
        cmocka_unit_test(a_container_image_that_is_a_missing_path_is_refused),
        cmocka_unit_test(shorthand_lists_in_brackets_are_lists),
        cmocka_unit_test(shorthand_booleans_are_read_as_json_and_yaml_write_them),
        cmocka_unit_test(shorthand_text_lists_keep_numbers_as_written),
        cmocka_unit_test(the_same_value_twice_is_refused),
        cmocka_unit_test(an_unclosed_reference_in_a_template_is_refused),
        cmocka_unit_test(a_template_naming_a_parameter_some_tasks_lack_is_refused_at_expand),
        cmocka_unit_test(a_spec_without_a_command_is_refused),
        cmocka_unit_test(the_verdict_checks_syntax_index_and_exit_code),
        cmocka_unit_test(a_corrupt_or_misplaced_result_counts_as_missing_with_a_warning),
        cmocka_unit_test(refine_ranks_only_tasks_that_succeeded),
        cmocka_unit_test(refine_keeps_lists_as_lists),
        cmocka_unit_test(refine_counts_the_replicates_of_a_configuration_once),
        cmocka_unit_test(metrics_are_a_json_object_or_name_value_lines),
        cmocka_unit_test(result_paths_separate_earlier_phases),
        cmocka_unit_test(run_writes_a_complete_result_and_returns_the_exit_code),
        cmocka_unit_test(run_resolves_packed_tasks_from_the_array_task_id),
        cmocka_unit_test(a_command_that_cannot_start_exits_127),
        cmocka_unit_test(sigterm_is_forwarded_to_the_command_and_recorded),
        cmocka_unit_test(param_ranges_cover_numeric_axes_only),
        cmocka_unit_test(refine_draws_around_each_best_task_within_the_original_span),
        cmocka_unit_test(refine_widens_the_numbers_of_union_members),
    };
    return cmocka_run_group_tests_name("sweep", tests, nullptr, nullptr);
}
