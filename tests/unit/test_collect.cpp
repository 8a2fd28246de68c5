// lib/collect: reading a sweep's results, the writers, the Slurm parsers and joins, the
// MLflow file store and the HTML report. Every sweep here is a real sweep dir written by
// lib/sweep, with result files written by the runner's own result_json().
#include <dirent.h>
#include <json-c/json.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>

#include "collect/row_store.hpp"  // before cmocka_cxx.hpp, whose macros would rename members of its headers
#include "built_tool.hpp"
#include "cmocka_cxx.hpp"
#include "collect/html.hpp"
#include "collect/mlflow.hpp"
#include "collect/queue.hpp"
#include "collect/result_table.hpp"
#include "collect/writers.hpp"
#include "common/json.hpp"
#include "common/paths.hpp"
#include "common/text.hpp"
#include "sweep/results.hpp"
#include "sweep/rounds.hpp"
#include "sweep/runner.hpp"
#include "sweep/spec.hpp"
#include "sweep/submit_plan.hpp"
#include "sweep/sweep_dir.hpp"
#include "temp_dir.hpp"

using namespace aihpc;
using namespace aihpc::collect;

namespace {

sweep::SweepDir make_sweep(const TempDir& tmp, const std::string& spec_json, const std::string& name = "s") {
    auto spec = sweep::parse_spec(spec_json);
    sweep::write_sweep_dir(spec, tmp.path() + "/" + name, sweep::Provenance{"test", "2024-06-11T12:00:00+00:00", "abc123"});
    return sweep::open_sweep(tmp.path() + "/" + name);
}

// Writes the result of task i for a phase ("" = the last), as the runner would.
void put_result(const sweep::SweepDir& sw, std::uint64_t i, int exit_code, const std::string& metrics = "{}",
                const std::string& phase_name = "", const std::string& array_job = "", const std::string& array_task = "") {
    const auto& phase = sweep::find_phase(sw.spec, phase_name);
    sweep::TaskIndex index(sw.path);
    auto task = index.task(i);
    sweep::TaskOutcome o;
    o.exit_code = exit_code;
    o.start = "2024-06-11T12:00:00+00:00";
    o.end = "2024-06-11T12:00:02.500+00:00";
    o.elapsed_s = 2.5;
    o.metrics_json = metrics;
    sweep::TaskContext c;
    c.node = "n1";
    c.job_id = array_job.empty() ? "" : "9" + array_task;
    c.array_job_id = array_job;
    c.array_task_id = array_task;
    if (&phase != &sw.spec.final_phase()) ::mkdir((sw.path + "/results/" + phase.name).c_str(), 0777);
    sweep::write_file_atomic(sweep::result_path(sw, phase, i), sweep::result_json(sw, phase, task, {"true"}, o, c));
}

std::string render(const ResultTable& t, Format f) {
    std::string out;
    write_rows(t, f, [&](std::string_view s) { out += s; });
    return out;
}

std::vector<std::string> lines_of(const std::string& text) {
    auto v = split(text, '\n');
    if (!v.empty() && v.back().empty()) v.pop_back();
    return v;
}

std::vector<std::uint64_t> indices(const ResultTable& t) {
    std::vector<std::uint64_t> out;
    for (auto& r : t.rows) out.push_back(r.index);
    return out;
}

std::vector<std::string> entries(const std::string& dir) {
    std::vector<std::string> out;
    if (DIR* d = ::opendir(dir.c_str())) {
        while (auto* e = ::readdir(d))
            if (e->d_name[0] != '.') out.push_back(e->d_name);
        ::closedir(d);
    }
    std::sort(out.begin(), out.end());
    return out;
}

// lr x opt: 6 tasks; indices 0..5 = (1e-3,sgd) (1e-3,adam) (1e-2,sgd) (1e-2,adam) (0.1,sgd) (0.1,adam)
const char* kGrid = R"({"name":"grid","axes":[{"param":"lr","values":[0.001,0.01,0.1]},{"param":"opt","values":["sgd","adam"]}],"command":"true"})";

// --sort as aihpc-collect reads it.
SortKey sort_key(const std::string& text) {
    auto [column, maximize] = sweep::parse_metric_direction(text, "--sort");
    return SortKey{column, maximize};
}

}  // namespace

// ---- reading

static void rows_join_parameters_from_the_task_index(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, kGrid);
    put_result(sw, 3, 0, R"({"loss":0.5})");
    auto t = read_results(sw);
    assert_int_equal(t.rows.size(), 1);
    const auto& r = t.rows[0];
    assert_int_equal(r.index, 3);
    assert_int_equal(r.params.size(), 2);
    assert_string_equal(r.params[0].first.c_str(), "lr");
    assert_string_equal(r.params[0].second.json.c_str(), "0.01");
    assert_string_equal(r.params[1].second.plain.c_str(), "adam");
    assert_string_equal(r.metrics[0].second.json.c_str(), "0.5");
    assert_int_equal(*r.exit_code, 0);
    assert_true(*r.elapsed_s == 2.5);
    assert_string_equal(r.node.c_str(), "n1");
    assert_true(r.state == TaskState::done);
}

static void a_non_zero_exit_code_is_failed_and_no_result_is_missing(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, kGrid);
    put_result(sw, 0, 0);
    put_result(sw, 2, 3);
    auto t = read_results(sw);
    assert_true(indices(t) == (std::vector<std::uint64_t>{0, 2}));
    assert_true(t.rows[1].state == TaskState::failed);
    assert_true(t.done == (std::set<std::uint64_t>{0}));
    assert_true(t.failed == (std::set<std::uint64_t>{2}));
    assert_true(t.missing() == (std::set<std::uint64_t>{1, 3, 4, 5}));
}

static void a_failed_earlier_phase_makes_the_task_failed_and_shows_that_phase(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, R"({"axes":[{"param":"a","range":[0,4]}],"command":"true",
        "phases":[{"name":"prep"},{"name":"train","after":"prep"}]})");
    for (int i = 0; i < 4; ++i) put_result(sw, i, i == 1 ? 7 : 0, "{}", "prep");
    put_result(sw, 0, 0);
    put_result(sw, 2, 0);
    auto t = read_results(sw);
    assert_true(indices(t) == (std::vector<std::uint64_t>{0, 1, 2}));
    assert_true(t.rows[1].state == TaskState::failed);
    assert_string_equal(t.rows[1].phase.c_str(), "prep");
    assert_int_equal(*t.rows[1].exit_code, 7);
    assert_string_equal(t.rows[0].phase.c_str(), "train");
    assert_true(t.missing() == (std::set<std::uint64_t>{3}));
}


static void a_failed_phase_shows_even_when_a_later_phase_left_a_result(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, R"({"axes":[{"param":"a","range":[0,2]}],"command":"true",
        "phases":[{"name":"prep"},{"name":"train","after":"prep"},{"name":"eval","after":"train"}]})");
    put_result(sw, 0, 0, "{}", "prep");
    put_result(sw, 0, 9, "{}", "train");
    put_result(sw, 0, 0, R"({"acc":0.5})");  // eval ran anyway (resubmitted by hand)
    auto t = read_results(sw);
    assert_true(t.rows[0].state == TaskState::failed);
    assert_string_equal(t.rows[0].phase.c_str(), "train");
    assert_int_equal(*t.rows[0].exit_code, 9);
}

static void non_finite_metrics_are_null_in_json_and_nan_in_tables(void**) {
    // What Python's json.dump writes for float('nan') and float('inf').
    auto m = sweep::parse_metrics(R"({"loss": NaN, "acc": Infinity, "low": -Infinity, "big": 9223372036854775807, "f": 1.0, "nest": {"x": NaN}})");
    assert_string_equal(m.json.c_str(), R"({"loss":null,"acc":null,"low":null,"big":9223372036854775807,"f":1.0,"nest":{"x":null}})");
    assert_true(m.non_finite == (std::vector<std::string>{"loss", "acc", "low", "nest.x"}));
    auto lines = sweep::parse_metrics("loss=nan\nacc=inf\nn=18446744073709551615\nk=9223372036854775807\n");
    assert_string_equal(lines.json.c_str(), R"({"loss":null,"acc":null,"n":18446744073709551615,"k":9223372036854775807})");
    TempDir tmp;
    auto sw = make_sweep(tmp, R"({"axes":[{"param":"a","range":[0,2]}],"command":"true"})");
    put_result(sw, 0, 0, R"({"loss":0.5,"big":9223372036854775807})");
    {
        const auto& phase = sw.spec.final_phase();
        auto task = sweep::TaskIndex(sw.path).task(1);
        sweep::TaskOutcome o;
        o.metrics_json = m.json;
        o.non_finite = m.non_finite;
        sweep::write_file_atomic(sweep::result_path(sw, phase, 1), sweep::result_json(sw, phase, task, {"true"}, o, sweep::TaskContext{}));
    }
    auto t = read_results(sw);
    auto table = render(t, Format::table);
    assert_true(table.find("NaN") != std::string::npos);
    assert_true(table.find("9223372036854775807") != std::string::npos);
    auto jsonl = lines_of(render(t, Format::jsonl));
    assert_true(jsonl[1].find(R"("loss":null)") != std::string::npos);
    assert_true(jsonl[1].find(R"("non_finite":["loss","acc","low","nest.x"])") != std::string::npos);
    for (auto& line : jsonl) parse_json_value(line);  // strict JSON: no bare NaN
    // A NaN is kept out of sorting: it goes last, like an absent value.
    sort_rows(t, SortKey{"loss", false});
    assert_int_equal(t.rows[0].index, 0);
}

static void a_failed_task_result_keeps_its_stderr_tail_and_signal(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, R"({"axes":[{"param":"a","range":[0,1]}],"command":"true"})");
    const auto& phase = sw.spec.final_phase();
    auto task = sweep::TaskIndex(sw.path).task(0);
    sweep::TaskOutcome o;
    o.exit_code = 137;
    o.signal = "SIGKILL";
    std::string err;
    for (int i = 0; i < 30; ++i) err += "line " + std::to_string(i) + "\n";
    o.stderr_tail = sweep::last_lines(err, sweep::kStderrTailLines);
    assert_int_equal(o.stderr_tail.size(), 20);
    assert_string_equal(o.stderr_tail.front().c_str(), "line 10");
    assert_string_equal(o.stderr_tail.back().c_str(), "line 29");
    sweep::write_file_atomic(sweep::result_path(sw, phase, 0), sweep::result_json(sw, phase, task, {"true"}, o, sweep::TaskContext{}));
    auto t = read_results(sw);
    assert_string_equal(t.rows[0].signal.c_str(), "SIGKILL");
    assert_int_equal(t.rows[0].stderr_tail.size(), 20);
    assert_true(render(t, Format::jsonl).find(R"("stderr_tail":["line 10",)") != std::string::npos);
    // A malformed result is an error naming its path, never a crash.
    expect_error_containing([] { parse_result(R"({"index":1,"metrics":[1]})"); }, "metrics: must be an object");
    expect_error_containing([] { parse_result(R"({"index":1,"exit_code":0,})"); }, "trailing comma");
}

static void the_reader_counts_tasks_exactly_as_scan_results(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, R"({"axes":[{"param":"a","range":[0,12]}],"command":"true",
        "phases":[{"name":"prep"},{"name":"train","after":"prep"}]})");
    for (int i = 0; i < 10; ++i) put_result(sw, i, i == 4 ? 1 : 0, "{}", "prep");
    for (int i : {0, 1, 2, 3, 5, 6, 8}) put_result(sw, i, i == 6 ? 2 : 0);
    put_result(sw, 4, 0);  // a later success cannot hide an earlier failure
    auto t = read_results(sw);
    auto scan = sweep::scan_results(sw);
    assert_true(t.done == scan.done);
    assert_true(t.failed == scan.failed);
    assert_true(t.missing() == scan.missing(sw.tasks));
}

static void kept_aside_and_temporary_files_are_not_results(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, kGrid);
    put_result(sw, 1, 0);
    ::rename((sw.path + "/results/1.json").c_str(), (sw.path + "/results/1.json.prev").c_str());
    put_result(sw, 2, 0);
    sweep::write_file_atomic(sw.path + "/results/3.json.tmp.123", "{\"index\":3,\"exit_code\":0}");
    sweep::write_file_atomic(sw.path + "/results/4.json", "{\"index\":4,");  // half written
    sweep::write_file_atomic(sw.path + "/results/99.json", "{\"index\":99,\"exit_code\":0}");  // beyond the sweep
    auto t = read_results(sw);
    assert_true(indices(t) == (std::vector<std::uint64_t>{2}));
    assert_true(t.missing() == (std::set<std::uint64_t>{0, 1, 3, 4, 5}));
}

// Above a few thousand files the reading is split among worker threads.
static void a_large_sweep_read_in_parallel_loses_no_row(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, R"({"axes":[{"param":"a","range":[0,5000]}],"command":"true"})");
    sweep::TaskIndex index(sw.path);
    for (std::uint64_t i = 0; i < 5000; ++i) {
        if (i % 50 == 7) continue;
        sweep::TaskOutcome o;
        o.exit_code = i % 101 == 3 ? 1 : 0;
        o.metrics_json = "{\"m\":" + std::to_string(i * 2) + "}";
        const auto& phase = sw.spec.final_phase();
        sweep::write_file_atomic(sweep::result_path(sw, phase, i),
                                 sweep::result_json(sw, phase, index.task(i), {"true"}, o, sweep::TaskContext{}));
    }
    auto t = read_results(sw);
    auto scan = sweep::scan_results(sw);
    assert_int_equal(t.rows.size(), 4900);
    assert_true(t.done == scan.done);
    assert_true(t.failed == scan.failed);
    for (std::size_t k = 0; k < t.rows.size(); ++k) {
        const auto& r = t.rows[k];
        assert_true(k == 0 || t.rows[k - 1].index < r.index);
        assert_string_equal(r.params[0].second.json.c_str(), std::to_string(r.index).c_str());
        assert_string_equal(r.metrics[0].second.json.c_str(), std::to_string(r.index * 2).c_str());
    }
}

static void include_missing_adds_a_row_per_task_without_result(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, kGrid);
    put_result(sw, 4, 0);
    ReadOptions o;
    o.include_missing = true;
    auto t = read_results(sw, o);
    assert_true(indices(t) == (std::vector<std::uint64_t>{0, 1, 2, 3, 4, 5}));
    assert_true(t.rows[0].state == TaskState::missing);
    assert_string_equal(t.rows[0].params[1].second.plain.c_str(), "sgd");
}

static void metric_columns_follow_first_appearance_by_index(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, kGrid);
    put_result(sw, 5, 0, R"({"acc":0.9,"loss":1})");
    put_result(sw, 1, 0, R"({"loss":2,"tag":"x y"})");
    auto t = read_results(sw);
    assert_true(t.metric_names == (std::vector<std::string>{"loss", "tag", "acc"}));
}

// ---- writers

static void table_format_aligns_every_column(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, kGrid);
    put_result(sw, 0, 0, R"({"loss":0.25})");
    put_result(sw, 5, 1);
    auto lines = lines_of(render(read_results(sw), Format::table));
    assert_int_equal(lines.size(), 3);
    assert_true(starts_with(lines[0], "index  status     lr  opt   loss  exit_code  elapsed_s  node"));
    // Numbers align right under their header, text left; an empty cell is "-".
    auto col = lines[0].find("loss");
    assert_string_equal(lines[1].substr(col, 4).c_str(), "0.25");
    assert_string_equal(lines[2].substr(col + 3, 1).c_str(), "-");
    assert_int_equal(lines[1].find("sgd"), lines[0].find("opt"));
    assert_int_equal(lines[1].size(), lines[2].size());
}

static void csv_fields_are_quoted_as_rfc_4180_says(void**) {
    struct Case {
        const char *in, *out;
    } cases[] = {{"plain", "plain"},       {"", ""},          {"a,b", "\"a,b\""}, {"say \"hi\"", "\"say \"\"hi\"\"\""},
                 {"two\nlines", "\"two\nlines\""}, {"cr\r", "\"cr\r\""}, {" spaced ", " spaced "}};
    for (auto& c : cases) assert_string_equal(csv_field(c.in).c_str(), c.out);
}

static void csv_has_a_header_and_one_line_per_row(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, kGrid);
    put_result(sw, 0, 0, R"({"note":"a, b"})");
    put_result(sw, 1, 0);
    auto lines = lines_of(render(read_results(sw), Format::csv));
    assert_int_equal(lines.size(), 3);
    assert_string_equal(lines[0].c_str(), "index,status,lr,opt,note,exit_code,elapsed_s,node");
    assert_string_equal(lines[1].c_str(), "0,done,0.001,sgd,\"a, b\",0,2.500,n1");
    assert_string_equal(lines[2].c_str(), "1,done,0.001,adam,,0,2.500,n1");
}

static void jsonl_rows_parse_back_with_their_types(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, kGrid);
    put_result(sw, 2, 0, R"({"loss":0.125,"best":true})");
    put_result(sw, 3, 9);
    auto lines = lines_of(render(read_results(sw), Format::jsonl));
    assert_int_equal(lines.size(), 2);
    json_object* r = json_tokener_parse(lines[0].c_str());
    assert_non_null(r);
    json_object *v = nullptr, *m = nullptr;
    assert_true(json_object_object_get_ex(r, "index", &v) && json_object_get_int(v) == 2);
    assert_true(json_object_object_get_ex(r, "params", &v));
    json_object* lr = nullptr;
    assert_true(json_object_object_get_ex(v, "lr", &lr) && json_object_is_type(lr, json_type_double));
    assert_true(json_object_object_get_ex(r, "metrics", &m) && json_object_object_get_ex(m, "best", &v) &&
                json_object_is_type(v, json_type_boolean));
    assert_true(json_object_object_get_ex(r, "status", &v) && std::string(json_object_get_string(v)) == "done");
    json_object_put(r);
    r = json_tokener_parse(lines[1].c_str());
    assert_true(json_object_object_get_ex(r, "exit_code", &v) && json_object_get_int(v) == 9);
    assert_true(json_object_object_get_ex(r, "status", &v) && std::string(json_object_get_string(v)) == "failed");
    json_object_put(r);
}

static void markdown_has_a_separator_row_and_escapes_pipes(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, kGrid);
    put_result(sw, 0, 0, R"({"note":"a|b"})");
    auto lines = lines_of(render(read_results(sw), Format::markdown));
    assert_int_equal(lines.size(), 3);
    assert_true(starts_with(lines[0], "| index | status | lr | opt | note |"));
    assert_true(starts_with(lines[1], "| ---: | --- | ---: | --- | --- |"));
    assert_true(lines[2].find("| a\\|b |") != std::string::npos);
}

static void format_names_are_checked(void**) {
    assert_true(parse_format("csv") == Format::csv);
    assert_true(parse_format("markdown") == Format::markdown);
    expect_error_containing([] { parse_format("xml"); }, "table, csv, jsonl or markdown");
}

// ---- sort and top

static void sort_orders_by_a_metric_min_or_max_with_absent_values_last(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, kGrid);
    put_result(sw, 0, 0, R"({"loss":3})");
    put_result(sw, 1, 0, R"({"loss":1})");
    put_result(sw, 2, 1);
    put_result(sw, 3, 0, R"({"loss":2})");
    put_result(sw, 4, 0, R"({"loss":1})");
    auto t = read_results(sw);
    sort_rows(t, sort_key("loss"));
    assert_true(indices(t) == (std::vector<std::uint64_t>{1, 4, 3, 0, 2}));
    sort_rows(t, sort_key("loss:max"));
    assert_true(indices(t) == (std::vector<std::uint64_t>{0, 3, 1, 4, 2}));
    sort_rows(t, sort_key("lr:max"));
    assert_true(indices(t) == (std::vector<std::uint64_t>{4, 2, 3, 0, 1}));
}

static void top_keeps_the_first_k_rows_after_sorting(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, kGrid);
    for (int i = 0; i < 6; ++i) put_result(sw, i, 0, "{\"acc\":" + std::to_string(i * 10 % 7) + "}");
    auto t = read_results(sw);
    sort_rows(t, sort_key("acc:max"));
    keep_top(t, 2);
    // acc by index: 0 3 6 2 5 1
    assert_true(indices(t) == (std::vector<std::uint64_t>{2, 4}));
}

static void sort_on_an_unknown_metric_names_those_there_are(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, kGrid);
    put_result(sw, 0, 0, R"({"loss":3,"acc":1})");
    auto t = read_results(sw);
    expect_error_containing([&] { sort_rows(t, sort_key("los")); }, "metrics: loss, acc");
    expect_error_containing([] { sort_key("loss:up"); }, "min or max");
}

// "Best" is never a failed run: a failed task's partial loss is the lowest here.
static void the_best_by_a_metric_is_never_a_failed_or_unreadable_run(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, kGrid);
    put_result(sw, 0, 0, R"({"loss":3})");
    put_result(sw, 1, 1, R"({"loss":0.5})");
    put_result(sw, 2, 0, R"({"loss":2})");
    sweep::write_file_atomic(sw.path + "/results/3.json", R"({"index":2,"exit_code":0,"metrics":{"loss":0.1}})");
    sweep::write_file_atomic(sw.path + "/results/4.json", R"({"index":4,"exit_code":0,"metrics":{"loss":0.2})");
    auto t = read_results(sw);
    bool ranked = sort_rows(t, sort_key("loss")) == SortSource::metric;
    assert_true(ranked);
    assert_true(indices(t) == (std::vector<std::uint64_t>{2, 0, 1}));  // the failed one after every success
    keep_top(t, 1, ranked);
    assert_true(indices(t) == (std::vector<std::uint64_t>{2}));
    // More asked than succeeded: only those that did.
    t = read_results(sw);
    keep_top(t, 5, sort_rows(t, sort_key("loss")) == SortSource::metric);
    assert_true(indices(t) == (std::vector<std::uint64_t>{2, 0}));
    // The compact rows of the text formats, with --top and without, the same.
    CollectOptions co;
    co.sort = sort_key("loss");
    co.top = 1;
    auto rows = collect_rows(sw, co);
    assert_int_equal(rows.size(), 1);
    assert_int_equal(rows.row(0).index, 2);
    co.top = 0;
    auto all = collect_rows(sw, co);
    assert_int_equal(all.size(), 3);
    assert_int_equal(all.row(2).index, 1);
    // Sorted by a parameter, every row keeps its place: that is no ranking of runs.
    t = read_results(sw);
    assert_true(sort_rows(t, sort_key("index:max")) != SortSource::metric);
    assert_true(indices(t) == (std::vector<std::uint64_t>{2, 1, 0}));
}

// One verdict per result file, the same for the table, the compact rows and the scan
// that status, --failed and resubmit use; the unreadable ones are named.
static void an_unreadable_result_gets_one_verdict_in_every_reader(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, R"({"axes":[{"param":"a","range":[0,6]}],"command":"true",
        "phases":[{"name":"prep"},{"name":"train","after":"prep"}]})");
    for (int i = 0; i < 6; ++i) put_result(sw, i, 0, "{}", "prep");
    put_result(sw, 0, 0, R"({"loss":1})");
    put_result(sw, 1, 2, R"({"loss":1})");
    sweep::write_file_atomic(sw.path + "/results/2.json", R"({"index":2,"exit_code":0,"metrics":{"loss":)");
    sweep::write_file_atomic(sw.path + "/results/3.json", R"({"index":5,"exit_code":0,"metrics":{}})");
    sweep::write_file_atomic(sw.path + "/results/4.json", R"({"index":4,"exit_code":0,"metrics":[1]})");  // metrics not an object
    sweep::write_file_atomic(sw.path + "/results/prep/5.json", R"({"index":5,"exit_code":1)");
    ReadOptions ro;
    ro.include_missing = true;
    auto t = read_results(sw, ro);
    auto scan = sweep::scan_results(sw);
    CollectOptions co;
    co.include_missing = true;
    auto rows = collect_rows(sw, co);
    assert_true(t.done == (std::set<std::uint64_t>{0}));
    assert_true(t.failed == (std::set<std::uint64_t>{1}));
    assert_true(t.missing() == (std::set<std::uint64_t>{2, 3, 4, 5}));
    assert_true(scan.done == t.done);
    assert_true(scan.failed == t.failed);
    assert_true(rows.failed_or_missing() == t.failed_or_missing());
    for (auto& r : t.rows)
        if (r.index >= 2) assert_true(r.state == TaskState::missing);
    auto names = [](std::vector<sweep::UnreadableResult> list) {
        std::set<std::string> out;
        for (auto& u : list) out.insert(u.path.substr(u.path.find("/results/")));
        return out;
    };
    std::set<std::string> want = {"/results/2.json", "/results/3.json", "/results/4.json", "/results/prep/5.json"};
    assert_true(names(t.unreadable) == want);
    assert_true(names(rows.header.unreadable) == want);
    assert_true(names(scan.unreadable) == want);
}

// prep -> train -> eval: the loss train wrote is collectable, ranked like any metric.
static void the_metrics_of_an_earlier_phase_are_collectable(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, R"({"axes":[{"param":"a","range":[0,4]}],"command":"true",
        "phases":[{"name":"prep"},{"name":"train","after":"prep"},{"name":"eval","after":"train"}]})");
    for (int i = 0; i < 4; ++i) put_result(sw, i, i == 3 ? 1 : 0, "{}", "prep");
    put_result(sw, 0, 0, R"({"val_loss":0.5})", "train");
    put_result(sw, 1, 0, R"({"val_loss":0.2})", "train");
    put_result(sw, 2, 4, R"({"val_loss":0.1})", "train");  // failed: never the best
    for (int i = 0; i < 2; ++i) put_result(sw, i, 0, R"({"acc":0.9})");
    ReadOptions ro;
    ro.phase = "train";
    auto t = read_results(sw, ro);
    assert_true(t.metric_names == (std::vector<std::string>{"val_loss"}));
    assert_true(t.done == (std::set<std::uint64_t>{0, 1}));
    assert_true(t.failed == (std::set<std::uint64_t>{2, 3}));  // 3 failed in prep
    keep_top(t, 1, sort_rows(t, sort_key("val_loss")) == SortSource::metric);
    assert_int_equal(t.rows[0].index, 1);
    assert_string_equal(t.rows[0].phase.c_str(), "train");
    CollectOptions co;
    co.phase = "train";
    co.sort = sort_key("val_loss");
    co.top = 1;
    auto rows = collect_rows(sw, co);
    assert_int_equal(rows.size(), 1);
    assert_int_equal(rows.row(0).index, 1);
    // A metric the phase read does not report: the error names the phase, and --phase.
    auto train = read_results(sw, ro);
    expect_error_containing([&] { sort_rows(train, sort_key("acc")); },
                            "no result of phase 'train' reports a metric 'acc' (metrics: val_loss); --phase NAME collects");
    ro.phase = "tarin";
    expect_error_containing([&] { read_results(sw, ro); }, "no phase 'tarin' in this sweep (phases: prep, train, eval)");
}

static void aggregate_gives_one_row_per_configuration(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, R"({"axes":[{"param":"a","values":[1,2]},{"repeat":3}],"command":"true"})");
    put_result(sw, 0, 0, R"({"loss":1,"tag":"x"})");
    put_result(sw, 1, 0, R"({"loss":2,"tag":"y"})");
    put_result(sw, 2, 0, R"({"loss":6})");
    put_result(sw, 3, 0, R"({"loss":0.5})");
    put_result(sw, 4, 1, R"({"loss":0.1})");  // failed: in no aggregate
    auto t = read_results(sw);
    aggregate_replicates(t, sweep::Aggregate::mean, true);
    assert_true(t.param_names == (std::vector<std::string>{"a"}));
    assert_int_equal(t.rows.size(), 3);
    assert_int_equal(t.rows[0].replicates, 3);
    assert_string_equal(t.rows[0].metrics[0].second.json.c_str(), "3.0");
    assert_string_equal(t.rows[0].metrics[1].second.plain.c_str(), "x");
    assert_int_equal(t.rows[1].replicates, 1);
    assert_true(t.rows[2].state == TaskState::failed);
    auto text = render(t, Format::csv);
    assert_true(text.rfind("index,status,a,replicates,loss,tag,", 0) == 0);
    t = read_results(sw);
    aggregate_replicates(t, sweep::Aggregate::median, true);
    assert_string_equal(t.rows[0].metrics[0].second.json.c_str(), "2.0");
    keep_top(t, 1, sort_rows(t, sort_key("loss")) == SortSource::metric);
    assert_int_equal(t.rows[0].index, 3);
}

static void nested_metrics_are_flattened_with_dots(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, kGrid);
    put_result(sw, 0, 0, R"({"val":{"loss":0.5,"acc":{"top1":0.9}},"steps":[1,2],"train_loss":1})");
    put_result(sw, 1, 0, R"({"val":{"loss":0.25,"acc":{"top1":0.8}},"train_loss":2})");
    auto t = read_results(sw);
    assert_true(t.metric_names == (std::vector<std::string>{"val.loss", "val.acc.top1", "steps", "train_loss"}));
    assert_true(sort_rows(t, sort_key("val.loss")) == SortSource::metric);
    assert_int_equal(t.rows[0].index, 1);
    // The compact reader of the text formats reads them the same way.
    CollectOptions co;
    co.sort = sort_key("val.acc.top1:max");
    co.top = 1;
    auto rows = collect_rows(sw, co);
    assert_true(rows.header.metric_names == t.metric_names);
    assert_int_equal(rows.row(0).index, 0);
}

static void nan_sorts_last_whichever_the_direction(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, kGrid);
    put_result(sw, 0, 0, R"({"loss":NaN})");
    put_result(sw, 1, 0, R"({"loss":2})");
    put_result(sw, 2, 0, R"({"loss":1})");
    put_result(sw, 3, 0, R"({"loss":"Infinity"})");
    auto t = read_results(sw);
    sort_rows(t, sort_key("loss"));
    assert_true(indices(t) == (std::vector<std::uint64_t>{2, 1, 0, 3}));
    sort_rows(t, sort_key("loss:max"));
    assert_true(indices(t) == (std::vector<std::uint64_t>{1, 2, 0, 3}));
}

static void columns_and_precision_shape_the_text_formats(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, kGrid);
    put_result(sw, 0, 0, R"({"loss":0.123456789012,"n":12345678,"tag":"a b"})");
    auto t = read_results(sw);
    t.shown_columns = {"loss", "lr", "n", "tag"};
    t.precision = 4;
    assert_string_equal(render(t, Format::csv).c_str(), "loss,lr,n,tag\n0.1235,0.001,12345678,a b\n");
    t.precision = 0;
    assert_string_equal(render(t, Format::csv).c_str(), "loss,lr,n,tag\n0.123456789012,0.001,12345678,a b\n");
    t.shown_columns = {"los"};
    expect_error_containing([&] { columns(t); }, "--columns: there is no column 'los' (columns: index, status, lr, opt, loss, n, tag,");
}

// ---- the failed list

static void failed_list_joins_failed_and_missing_in_array_syntax(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, R"({"axes":[{"param":"a","range":[0,16]}],"command":"true"})");
    for (int i = 0; i < 16; ++i)
        if (i != 3 && i != 7 && !(i >= 12 && i <= 15)) put_result(sw, i, 0);
    put_result(sw, 7, 1);
    put_result(sw, 13, 2);
    auto t = read_results(sw);
    assert_string_equal(sweep::array_spec(t.failed_or_missing(), 0).c_str(), "3,7,12-15");
}

static void the_failed_list_does_not_depend_on_sort_or_top(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, kGrid);
    put_result(sw, 0, 0, R"({"loss":1})");
    put_result(sw, 1, 0, R"({"loss":2})");
    put_result(sw, 4, 5);
    auto t = read_results(sw);
    sort_rows(t, sort_key("loss"));
    keep_top(t, 1);
    assert_int_equal(t.rows.size(), 1);
    assert_string_equal(sweep::array_spec(t.failed_or_missing(), 0).c_str(), "2-5");
}

// The tool, run for real: one pass writes the table to FILE and the list to stdout.
static void run_failed_with_output(const std::string& tool) {
    TempDir tmp;
    auto sw = make_sweep(tmp, kGrid);
    put_result(sw, 0, 0, R"({"loss":1})");
    put_result(sw, 2, 4);
    std::string cmd = tool + " " + sw.path + " --failed --format csv -o " + tmp.path() + "/t.csv > " + tmp.path() + "/list";
    assert_int_equal(std::system(cmd.c_str()), 0);
    assert_string_equal(file_text(tmp.path() + "/list").c_str(), "1-5\n");
    auto csv = lines_of(file_text(tmp.path() + "/t.csv"));
    assert_int_equal(csv.size(), 3);
    assert_true(starts_with(csv[2], "2,failed,0.01,sgd,"));
    // --format without -o would put two things on stdout: refused as a usage error.
    cmd = tool + " " + sw.path + " --failed --format csv >/dev/null 2>&1";
    int st = std::system(cmd.c_str());
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 2);
}

static void tool_failed_with_output_writes_table_and_list_in_one_run(void**) {
    if (!path_exists(built_tool("aihpc-collect"))) skip();  // nothing with a destructor is alive here
    run_failed_with_output(built_tool("aihpc-collect"));
}

// ---- Slurm: chunks.json, squeue, sacct

static void chunks_json_reads_back_as_the_submitted_arrays(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, kGrid);
    sweep::SubmitOptions so;
    so.max_array_size = 4;
    so.pack = 1;
    auto subs = sweep::plan_submit(sw, so);
    subs[0].job_id = "101";
    subs[1].job_id = "102";
    sweep::write_file_atomic(sw.path + "/chunks.json", sweep::chunks_json(subs, so));
    auto arrays = read_arrays(sw.path);
    assert_int_equal(arrays.size(), 2);
    assert_string_equal(arrays[1].job_id.c_str(), "102");
    assert_int_equal(arrays[1].offset, 4);
    assert_int_equal(arrays[1].count, 2);
    assert_string_equal(arrays[1].array.c_str(), "0-1");
    assert_true(read_arrays(tmp.path() + "/nowhere").empty());
}

static void squeue_lines_give_running_and_pending_elements(void**) {
    auto q = parse_squeue("101 0 RUNNING\n101 1 COMPLETING\n101 2 PENDING\n102 [0-3%2] PENDING\n103 N/A RUNNING\n101 5 COMPLETED\n\n");
    assert_true(q.at({"101", 0}) == QueueState::running);
    assert_true(q.at({"101", 1}) == QueueState::running);
    assert_true(q.at({"101", 2}) == QueueState::pending);
    for (std::uint64_t i = 0; i < 4; ++i) assert_true(q.at({"102", i}) == QueueState::pending);
    assert_false(q.count({"101", 5}));
    assert_int_equal(q.size(), 7);
}

static void status_counts_results_first_then_the_queue(void**) {
    // 10 tasks, pack 2: element e runs tasks 2e and 2e+1; phase prep then train.
    std::vector<sweep::ArraySubmission> arrays(2);
    arrays[0].phase = "prep";
    arrays[0].job_id = "201";
    arrays[1].phase = "train";
    arrays[1].job_id = "202";
    for (auto& a : arrays) {
        a.offset = 0;
        a.count = 10;
        a.pack = 2;
    }
    QueueSnapshot q = {{{"202", 0}, QueueState::pending}, {{"202", 1}, QueueState::running}, {{"201", 1}, QueueState::pending},
                       {{"202", 2}, QueueState::pending},  {{"999", 4}, QueueState::running}};
    auto c = count_status(10, {0, 5}, {1, 8}, arrays, q);
    // 0 done, 1 failed (results win); 2,3 running; 4 pending; 5 done; 6,7,9 missing; 8 failed.
    assert_int_equal(c.tasks, 10);
    assert_int_equal(c.done, 2);
    assert_int_equal(c.failed, 2);
    assert_int_equal(c.running, 2);
    assert_int_equal(c.pending, 1);
    assert_int_equal(c.missing, 3);
    assert_true(c.queued());
    assert_string_equal(status_text(c).c_str(), "tasks    10\ndone     2\nfailed   2\nmissing  3\nrunning  2\npending  1\n");
}

// Recorded from `sacct -j 123 -n -P -o JobID,State,ExitCode,Elapsed,MaxRSS` (Slurm 22.05).
const char* kSacctSample =
    "123_0|COMPLETED|0:0|00:00:02|\n"
    "123_0.batch|COMPLETED|0:0|00:00:02|1876K\n"
    "123_0.extern|COMPLETED|0:0|00:00:02|0\n"
    "123_1|FAILED|1:0|00:00:01|\n"
    "123_1.batch|FAILED|1:0|00:00:01|812K\n"
    "123_1.extern|COMPLETED|0:0|00:00:01|0\n"
    "123_1.0|COMPLETED|0:0|00:00:01|2.50M\n"
    "123_2|CANCELLED by 1000|0:15|00:00:00|\n"
    "123_[3-5%2]|PENDING|0:0|00:00:00|\n";

static void sacct_lines_give_each_element_its_state_and_largest_step_rss(void**) {
    auto t = parse_sacct(kSacctSample);
    auto& a = t.at({"123", 0});
    assert_string_equal(a.state.c_str(), "COMPLETED");
    assert_string_equal(a.exit_code.c_str(), "0:0");
    assert_string_equal(a.elapsed.c_str(), "00:00:02");
    assert_string_equal(a.max_rss.c_str(), "1876K");
    assert_string_equal(t.at({"123", 1}).max_rss.c_str(), "2.50M");
    assert_string_equal(t.at({"123", 1}).state.c_str(), "FAILED");
    assert_string_equal(t.at({"123", 2}).state.c_str(), "CANCELLED by 1000");
    assert_string_equal(t.at({"123", 2}).max_rss.c_str(), "");
    for (std::uint64_t i = 3; i <= 5; ++i) assert_string_equal(t.at({"123", i}).state.c_str(), "PENDING");
    assert_int_equal(t.size(), 6);
}

static void rss_values_compare_by_their_unit(void**) {
    assert_true(rss_bytes("1024") == 1024);
    assert_true(rss_bytes("2K") == 2048);
    assert_true(rss_bytes("1.5M") == 1.5 * 1024 * 1024);
    assert_true(rss_bytes("1G") > rss_bytes("900M"));
    assert_true(rss_bytes("") == 0);
}

static void sacct_joins_by_the_element_each_result_names(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, kGrid);
    put_result(sw, 0, 0, "{}", "", "123", "0");
    put_result(sw, 1, 1, "{}", "", "123", "1");
    ReadOptions o;
    o.include_missing = true;
    auto t = read_results(sw, o);
    std::vector<sweep::ArraySubmission> arrays(1);
    arrays[0].phase = "main";
    arrays[0].job_id = "123";
    arrays[0].offset = 0;
    arrays[0].count = 6;
    arrays[0].array = "0-5%2";
    join_sacct(t, parse_sacct(kSacctSample), arrays, "main");
    assert_true(t.with_sacct);
    assert_string_equal(t.rows[0].sacct->max_rss.c_str(), "1876K");
    assert_string_equal(t.rows[1].sacct->state.c_str(), "FAILED");
    assert_string_equal(t.rows[4].sacct->state.c_str(), "PENDING");  // no result: found through chunks.json
    auto csv = lines_of(render(t, Format::csv));
    assert_true(ends_with(csv[0], ",State,ExitCode,Elapsed,MaxRSS"));
    assert_true(ends_with(csv[2], ",FAILED,1:0,00:00:01,2.50M"));
}

// ---- MLflow

static std::map<std::string, std::string> yaml_fields(const std::string& text) {
    std::map<std::string, std::string> out;
    for (auto& line : split(text, '\n')) {
        auto colon = line.find(": ");
        if (colon != std::string::npos) out[line.substr(0, colon)] = line.substr(colon + 2);
    }
    return out;
}

static void mlflow_store_has_experiments_a_parent_run_and_a_child_per_task(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, kGrid);
    put_result(sw, 0, 0, R"({"loss":0.5,"note":"ok"})");
    put_result(sw, 1, 2);
    auto t = read_results(sw);
    auto s = write_mlflow(t, sw, tmp.path() + "/mlruns");
    std::string root = tmp.path() + "/mlruns";
    auto def = yaml_fields(file_text(root + "/0/meta.yaml"));
    assert_string_equal(def["name"].c_str(), "'Default'");
    assert_string_equal(def["experiment_id"].c_str(), "'0'");
    assert_string_equal(s.experiment_id.c_str(), "1");
    auto exp = yaml_fields(file_text(root + "/1/meta.yaml"));
    assert_string_equal(exp["name"].c_str(), "'grid'");
    assert_string_equal(exp["lifecycle_stage"].c_str(), "active");
    assert_true(starts_with(exp["artifact_location"], "'file:///"));
    for (auto k : {"creation_time", "last_update_time"}) assert_true(parse_uint(exp[k]).has_value());
    assert_true(path_exists(root + "/.trash"));

    auto runs = entries(root + "/1");
    assert_int_equal(runs.size(), 4);  // meta.yaml, parent, 2 children
    assert_int_equal(s.child_runs, 2);
    std::string parent = root + "/1/" + s.parent_run_id;
    assert_int_equal(s.parent_run_id.size(), 32);
    auto pm = yaml_fields(file_text(parent + "/meta.yaml"));
    assert_string_equal(pm["run_id"].c_str(), s.parent_run_id.c_str());
    assert_string_equal(pm["run_uuid"].c_str(), s.parent_run_id.c_str());
    assert_string_equal(pm["experiment_id"].c_str(), "'1'");
    assert_string_equal(pm["status"].c_str(), "1");  // tasks still missing: RUNNING
    assert_string_equal(file_text(parent + "/tags/mlflow.runName").c_str(), "s");

    int children = 0;
    for (auto& r : runs) {
        if (r == "meta.yaml" || r == s.parent_run_id) continue;
        ++children;
        std::string run = root + "/1/" + r;
        auto m = yaml_fields(file_text(run + "/meta.yaml"));
        for (auto k : {"artifact_uri", "end_time", "entry_point_name", "experiment_id", "lifecycle_stage", "run_id", "run_name", "run_uuid",
                       "source_name", "source_type", "source_version", "start_time", "status", "tags", "user_id"})
            assert_true(m.count(k));
        assert_string_equal(m["run_id"].c_str(), r.c_str());
        assert_string_equal(file_text(run + "/tags/mlflow.parentRunId").c_str(), s.parent_run_id.c_str());
        assert_string_equal(m["start_time"].c_str(), "1718107200000");
        assert_string_equal(m["end_time"].c_str(), "1718107202500");
        std::string index = file_text(run + "/tags/aihpc.index");
        assert_string_equal(file_text(run + "/tags/mlflow.runName").c_str(), ("s-" + index).c_str());
        assert_string_equal(file_text(run + "/params/lr").c_str(), "0.001");
        assert_string_equal(file_text(run + "/params/opt").c_str(), index == "0" ? "sgd" : "adam");
        if (index == "0") {
            assert_string_equal(m["status"].c_str(), "3");
            assert_string_equal(file_text(run + "/metrics/loss").c_str(), "1718107202500 0.5 0\n");
            assert_string_equal(file_text(run + "/tags/aihpc.metric.note").c_str(), "ok");  // metrics are numbers
        } else {
            assert_string_equal(m["status"].c_str(), "4");
            assert_string_equal(file_text(run + "/tags/aihpc.exit_code").c_str(), "2");
        }
    }
    assert_int_equal(children, 2);
}

static void collecting_again_replaces_the_same_runs(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, kGrid);
    put_result(sw, 0, 0, R"({"loss":0.5})");
    std::string root = tmp.path() + "/mlruns";
    auto first = write_mlflow(read_results(sw), sw, root);
    put_result(sw, 0, 0, R"({"loss":0.25})");
    auto second = write_mlflow(read_results(sw), sw, root);
    assert_string_equal(first.parent_run_id.c_str(), second.parent_run_id.c_str());
    assert_string_equal(second.experiment_id.c_str(), "1");
    assert_int_equal(entries(root + "/1").size(), 3);
    // Another sweep of the same name joins the experiment with runs of its own.
    auto other = make_sweep(tmp, kGrid, "t");
    put_result(other, 0, 0, R"({"loss":1})");
    auto third = write_mlflow(read_results(other), other, root);
    assert_string_equal(third.experiment_id.c_str(), "1");
    assert_int_equal(entries(root + "/1").size(), 5);
    assert_int_equal(entries(root).size(), 2);  // 0 and 1
}

static void rfc3339_times_become_epoch_milliseconds(void**) {
    assert_true(*rfc3339_millis("1970-01-01T00:00:00+00:00") == 0);
    assert_true(*rfc3339_millis("2024-06-11T12:00:00Z") == 1718107200000);
    assert_true(*rfc3339_millis("2024-06-11T14:00:00+02:00") == 1718107200000);
    assert_true(*rfc3339_millis("2024-06-11T07:30:00-04:30") == 1718107200000);
    assert_true(*rfc3339_millis("2024-06-11T12:00:00.250+00:00") == 1718107200250);
    assert_false(rfc3339_millis("").has_value());
    assert_false(rfc3339_millis("2024-06-11 12:00").has_value());
}

static void mlflow_runs_get_steps_of_list_metrics_and_why_a_run_failed(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, kGrid);
    put_result(sw, 0, 0, R"({"loss":[0.9,0.5,0.25],"names":["a","b"]})");
    sweep::write_file_atomic(sw.path + "/results/1.json",
                             R"({"index":1,"exit_code":3,"metrics":{},"stderr_tail":["Traceback","ValueError: bad lr"]})");
    auto t = read_results(sw);
    auto s = write_mlflow(t, sw, tmp.path() + "/mlruns");
    std::string experiment = tmp.path() + "/mlruns/" + s.experiment_id;
    std::map<std::string, std::string> run_of;  // aihpc.index -> run dir
    for (auto& e : entries(experiment))
        if (path_exists(experiment + "/" + e + "/tags/aihpc.index"))
            run_of[file_text(experiment + "/" + e + "/tags/aihpc.index")] = experiment + "/" + e;
    assert_int_equal(run_of.size(), 2);
    auto steps = lines_of(file_text(run_of["0"] + "/metrics/loss"));
    assert_int_equal(steps.size(), 3);
    assert_true(steps[0].size() > 6 && steps[0].substr(steps[0].find(' ')) == " 0.9 0");
    assert_true(steps[2].substr(steps[2].find(' ')) == " 0.25 2");
    assert_false(path_exists(run_of["0"] + "/metrics/names"));  // not numbers: a tag, as before
    assert_string_equal(file_text(run_of["1"] + "/artifacts/stderr_tail.txt").c_str(), "Traceback\nValueError: bad lr\n");
    auto note = file_text(run_of["1"] + "/tags/mlflow.note.content");
    assert_non_null(std::strstr(note.c_str(), "exit code 3"));
    assert_non_null(std::strstr(note.c_str(), "ValueError: bad lr"));
}

static void mlflow_names_are_those_its_file_store_accepts(void**) {
    for (auto ok : {"loss", "val/acc", "lr-1", "top 5", "a.b_c"}) assert_true(mlflow_name_ok(ok));
    for (auto bad : {"", "/abs", "a/../b", "x/", "a//b", "semi;colon", "new\nline", "quote'"}) assert_false(mlflow_name_ok(bad));
    assert_string_equal(yaml_quote("it's").c_str(), "'it''s'");
    // What MLflow's path check refuses: '.', a '.' component, a leading '..'.
    for (auto bad : {".", "x/.", "./x", "..a", ".."}) assert_false(mlflow_name_ok(bad));
    assert_string_equal(mlflow_escaped_name(".").c_str(), "_");
    assert_string_equal(mlflow_escaped_name("x/.").c_str(), "x/_");
    assert_string_equal(mlflow_escaped_name("a;b").c_str(), "a_b");
    assert_true(mlflow_name_ok(mlflow_escaped_name("..a")));
    // A parameter MLflow would refuse is refused at expand.
    expect_error_containing([] { sweep::parse_spec(R"({"axes":[{"param":".","values":[1]}]})"); }, "MLflow refuses");
}

static void mlflow_store_takes_odd_metric_names_nan_and_skips_trashed_ids(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, kGrid);
    put_result(sw, 0, 0, R"({".":1,"x/.":2,"loss":null})");
    {
        // A NaN loss, as the runner writes it.
        const auto& phase = sw.spec.final_phase();
        auto task = sweep::TaskIndex(sw.path).task(1);
        sweep::TaskOutcome o;
        auto m = sweep::parse_metrics(R"({"loss": NaN})");
        o.metrics_json = m.json;
        o.non_finite = m.non_finite;
        sweep::write_file_atomic(sweep::result_path(sw, phase, 1), sweep::result_json(sw, phase, task, {"true"}, o, sweep::TaskContext{}));
    }
    std::string root = tmp.path() + "/mlruns";
    ::mkdir(root.c_str(), 0777);
    ::mkdir((root + "/.trash").c_str(), 0777);
    ::mkdir((root + "/.trash/7").c_str(), 0777);  // a deleted experiment
    auto s = write_mlflow(read_results(sw), sw, root);
    assert_string_equal(s.experiment_id.c_str(), "8");
    std::string run0 = root + "/8/" + mlflow_run_id(sw.spec_hash + "\n" + sw.path + "\n0");
    assert_true(path_exists(run0 + "/metrics/_"));
    assert_true(path_exists(run0 + "/metrics/x/_"));
    assert_string_equal(file_text(run0 + "/tags/aihpc.metric_name.x/_").c_str(), "x/.");
    std::string run1 = root + "/8/" + mlflow_run_id(sw.spec_hash + "\n" + sw.path + "\n1");
    assert_true(file_text(run1 + "/metrics/loss").find(" nan 0") != std::string::npos);
    assert_string_equal(file_text(run1 + "/tags/aihpc.non_finite").c_str(), "loss");
    for (auto& e : entries(root + "/8")) assert_true(e.find(".tmp") == std::string::npos);  // nothing half-written
}

// ---- HTML

static std::size_t count_of(const std::string& text, const std::string& needle) {
    std::size_t n = 0;
    for (auto pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) ++n;
    return n;
}

static void html_report_holds_table_scatter_plots_and_parallel_coordinates(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, R"({"name":"r","axes":[{"param":"lr","logspace":[0.001,0.1,3]},{"param":"opt","values":["sgd","adam"]},
        {"param":"fixed","values":[1]}],"command":"true"})");
    sw.spec.name = "r<&>";  // parse_spec refuses such a name; the page escapes it all the same
    for (int i = 0; i < 6; ++i) put_result(sw, i, i == 5 ? 1 : 0, "{\"loss\":" + std::to_string(i + 1) + ",\"acc\":0." + std::to_string(i) + "}");
    auto t = read_results(sw);
    std::string page;
    write_html(t, sw, HtmlOptions{}, [&](std::string_view s) { page += s; });
    assert_true(starts_with(page, "<!DOCTYPE html>"));
    assert_true(page.find("<h1>r&lt;&amp;&gt;</h1>") != std::string::npos);
    assert_int_equal(count_of(page, "<tr class=\""), 6);
    assert_int_equal(count_of(page, "<tr class=\"failed\">"), 1);
    // 2 metrics x 2 varying parameters (fixed does not vary): 4 scatter plots of 6 points.
    assert_int_equal(count_of(page, "<svg class=\"scatter\""), 4);
    assert_int_equal(count_of(page, "<circle"), 24);
    assert_true(page.find("aria-label=\"loss against lr\"") != std::string::npos);
    assert_true(page.find("lr (log)") != std::string::npos);
    assert_int_equal(count_of(page, "<svg class=\"parallel\""), 1);
    assert_int_equal(count_of(page, "<path class=\"line\""), 6);
    assert_true(page.find("<style>") != std::string::npos && page.find("<script>") != std::string::npos);
    // Self-contained: nothing is fetched.
    for (auto ref : {"http://", "https://", "src=", "<link"}) assert_int_equal(count_of(page, ref), 0);
}

static void html_report_opens_with_the_best_run_and_plots_no_constant_metric(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, R"({"name":"r","axes":[{"param":"lr","values":[0.1,0.2,0.3,0.4]}],"command":"true"})");
    put_result(sw, 0, 0, R"({"loss":0.5,"epochs":10})");
    put_result(sw, 1, 1, R"({"loss":0.1,"epochs":10})");  // failed: never the best run
    put_result(sw, 2, 0, R"({"loss":0.3,"epochs":10})");
    put_result(sw, 3, 0, R"({"loss":0.4,"epochs":10})");
    auto t = read_results(sw);
    std::string page;
    write_html(t, sw, HtmlOptions{}, [&](std::string_view s) { page += s; });
    auto best = page.find("<p class=\"best\" id=\"best\">Task 2: <b>loss 0.3</b> (lowest) &middot; lr=0.3</p>");
    assert_true(best != std::string::npos);
    assert_true(best < page.find("<h2>Results</h2>"));
    // epochs is 10 everywhere: no plot of it.
    assert_int_equal(count_of(page, "aria-label=\"epochs against"), 0);
    assert_int_equal(count_of(page, "aria-label=\"loss against lr\""), 1);
    // The table's sort puts cells that are no number (NaN, -) last either way.
    assert_true(page.find("if(ax!==ay)return ax?-1:1") != std::string::npos);
}

static std::string parallel_stroke_of(const std::string& page, int index) {
    // The stroke of the line whose title is #index.
    auto title = page.find("<title>#" + std::to_string(index) + "</title></path>");
    auto start = page.rfind("<path class=\"line\"", title);
    auto s = page.find("stroke=\"", start) + 8;
    return page.substr(s, page.find('"', s) - s);
}

static void html_report_colours_by_the_metric_direction_and_brushes(void**) {
    TempDir tmp;
    auto sw = make_sweep(tmp, R"({"name":"r","axes":[{"param":"lr","values":[0.1,0.2,0.3,0.4]}],"command":"true"})");
    for (int i = 0; i < 4; ++i) put_result(sw, i, 0, "{\"accuracy\":0." + std::to_string(i + 1) + "}");
    auto t = read_results(sw);
    std::string page;
    // No --sort: accuracy rises, so the highest accuracy (#3) gets the bright end of the ramp.
    write_html(t, sw, HtmlOptions{}, [&](std::string_view s) { page += s; });
    assert_true(page.find("bright is best (highest, as its name says") != std::string::npos);
    std::string best = parallel_stroke_of(page, 3), worst = parallel_stroke_of(page, 0);
    // --sort accuracy:min turns it round.
    HtmlOptions given;
    given.color_metric = "accuracy";
    given.maximize = false;
    given.direction_given = true;
    std::string sorted;
    write_html(t, sw, given, [&](std::string_view s) { sorted += s; });
    assert_true(sorted.find("bright is best (lowest)") != std::string::npos);
    assert_string_equal(parallel_stroke_of(sorted, 0).c_str(), best.c_str());
    assert_string_equal(parallel_stroke_of(sorted, 3).c_str(), worst.c_str());
    assert_string_not_equal(best.c_str(), worst.c_str());
    // Brushing: every line carries its axis positions, every axis a drag target.
    assert_int_equal(count_of(page, "<rect class=\"brush\""), 2);
    assert_int_equal(count_of(page, "data-f=\""), 4);
    assert_true(page.find("data-f=\"0,0\"") != std::string::npos);  // #0: lowest lr, lowest accuracy
    assert_true(page.find("data-f=\"1,1\"") != std::string::npos);
    // Wide tables wrap rather than run off the page.
    assert_true(page.find("overflow-wrap:anywhere") != std::string::npos);
}

static void metric_names_say_their_direction(void**) {
    for (auto name : {"accuracy", "val_acc", "AUC", "f1_macro", "mean_reward", "bleu", "samples_per_sec"}) assert_true(higher_is_better(name));
    for (auto name : {"loss", "val_loss", "error_rate", "perplexity", "rmse", "train_time", "score_loss", "unknown"})
        assert_false(higher_is_better(name));
}

static void plot_axes_place_numbers_logs_and_categories(void**) {
    auto s = [](const std::string& json) { return sweep::Scalar{json, json}; };
    std::vector<sweep::Scalar> v = {s("1"), s("10"), s("100")};
    std::vector<const sweep::Scalar*> p = {&v[0], &v[1], &v[2]};
    std::vector<sweep::Scalar> even = {s("1"), s("10"), s("100"), s("50")};
    auto lin = make_axis("x", {&even[0], &even[1], &even[2], &even[3]}, false);
    assert_false(lin.categorical);
    assert_false(lin.log);
    assert_true(std::abs(lin.position(v[1]) - 9.0 / 99) < 1e-9);
    // Listed values spaced by factors get a log axis of their own accord.
    assert_true(make_axis("x", p, false).log);
    std::vector<sweep::Scalar> lr = {s("1e-04"), s("3e-04"), s("1e-03")}, bs = {s("16"), s("32"), s("64"), s("128"), s("256")};
    assert_true(make_axis("lr", {&lr[0], &lr[1], &lr[2]}, false).log);
    assert_true(make_axis("bs", {&bs[0], &bs[1], &bs[2], &bs[3], &bs[4]}, false).log);
    std::vector<sweep::Scalar> steps = {s("10"), s("20"), s("30"), s("40"), s("100")};
    assert_false(make_axis("n", {&steps[0], &steps[1], &steps[2], &steps[3], &steps[4]}, false).log);
    // A NaN (null) stays out of the scale: the axis stays numeric, and it has no place.
    std::vector<sweep::Scalar> nan = {s("1"), sweep::Scalar{"null", "NaN"}, s("3")};
    auto with_nan = make_axis("m", {&nan[0], &nan[1], &nan[2]}, false);
    assert_false(with_nan.categorical);
    assert_true(with_nan.lo == 1 && with_nan.hi == 3);
    assert_true(with_nan.position(nan[1]) < 0);
    auto lg = make_axis("x", p, true);
    assert_true(lg.log);
    assert_true(std::abs(lg.position(v[1]) - 0.5) < 1e-9);
    std::vector<sweep::Scalar> c = {s("b"), s("a"), s("b")};
    auto cat = make_axis("c", {&c[0], &c[1], &c[2]}, true);
    assert_true(cat.categorical);
    assert_true(cat.categories == (std::vector<std::string>{"a", "b"}));
    assert_true(cat.position(c[0]) == 1.0);
    assert_true(cat.position(s("zzz")) < 0);
}

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rows_join_parameters_from_the_task_index),
        cmocka_unit_test(a_non_zero_exit_code_is_failed_and_no_result_is_missing),
        cmocka_unit_test(a_failed_earlier_phase_makes_the_task_failed_and_shows_that_phase),
        cmocka_unit_test(a_failed_phase_shows_even_when_a_later_phase_left_a_result),
        cmocka_unit_test(non_finite_metrics_are_null_in_json_and_nan_in_tables),
        cmocka_unit_test(a_failed_task_result_keeps_its_stderr_tail_and_signal),
        cmocka_unit_test(the_reader_counts_tasks_exactly_as_scan_results),
        cmocka_unit_test(the_best_by_a_metric_is_never_a_failed_or_unreadable_run),
        cmocka_unit_test(an_unreadable_result_gets_one_verdict_in_every_reader),
        cmocka_unit_test(the_metrics_of_an_earlier_phase_are_collectable),
        cmocka_unit_test(aggregate_gives_one_row_per_configuration),
        cmocka_unit_test(nested_metrics_are_flattened_with_dots),
        cmocka_unit_test(nan_sorts_last_whichever_the_direction),
        cmocka_unit_test(columns_and_precision_shape_the_text_formats),
        cmocka_unit_test(kept_aside_and_temporary_files_are_not_results),
        cmocka_unit_test(a_large_sweep_read_in_parallel_loses_no_row),
        cmocka_unit_test(include_missing_adds_a_row_per_task_without_result),
        cmocka_unit_test(metric_columns_follow_first_appearance_by_index),
        cmocka_unit_test(table_format_aligns_every_column),
        cmocka_unit_test(csv_fields_are_quoted_as_rfc_4180_says),
        cmocka_unit_test(csv_has_a_header_and_one_line_per_row),
        cmocka_unit_test(jsonl_rows_parse_back_with_their_types),
        cmocka_unit_test(markdown_has_a_separator_row_and_escapes_pipes),
        cmocka_unit_test(format_names_are_checked),
        cmocka_unit_test(sort_orders_by_a_metric_min_or_max_with_absent_values_last),
        cmocka_unit_test(top_keeps_the_first_k_rows_after_sorting),
        cmocka_unit_test(sort_on_an_unknown_metric_names_those_there_are),
        cmocka_unit_test(failed_list_joins_failed_and_missing_in_array_syntax),
        cmocka_unit_test(the_failed_list_does_not_depend_on_sort_or_top),
        cmocka_unit_test(tool_failed_with_output_writes_table_and_list_in_one_run),
        cmocka_unit_test(chunks_json_reads_back_as_the_submitted_arrays),
        cmocka_unit_test(squeue_lines_give_running_and_pending_elements),
        cmocka_unit_test(status_counts_results_first_then_the_queue),
        cmocka_unit_test(sacct_lines_give_each_element_its_state_and_largest_step_rss),
        cmocka_unit_test(rss_values_compare_by_their_unit),
        cmocka_unit_test(sacct_joins_by_the_element_each_result_names),
        cmocka_unit_test(mlflow_store_has_experiments_a_parent_run_and_a_child_per_task),
        cmocka_unit_test(mlflow_runs_get_steps_of_list_metrics_and_why_a_run_failed),
        cmocka_unit_test(collecting_again_replaces_the_same_runs),
        cmocka_unit_test(rfc3339_times_become_epoch_milliseconds),
        cmocka_unit_test(mlflow_names_are_those_its_file_store_accepts),
        cmocka_unit_test(mlflow_store_takes_odd_metric_names_nan_and_skips_trashed_ids),
        cmocka_unit_test(html_report_holds_table_scatter_plots_and_parallel_coordinates),
        cmocka_unit_test(html_report_opens_with_the_best_run_and_plots_no_constant_metric),
        cmocka_unit_test(html_report_colours_by_the_metric_direction_and_brushes),
        cmocka_unit_test(metric_names_say_their_direction),
        cmocka_unit_test(plot_axes_place_numbers_logs_and_categories),
    };
    return cmocka_run_group_tests_name("collect", tests, nullptr, nullptr);
}
