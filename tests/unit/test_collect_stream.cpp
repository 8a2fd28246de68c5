// lib/collect's large-sweep paths: the single-pass result reader against the JSON tree
// reader, the compact row encoding, and collect_rows (a bounded heap for --top, sort
// keys beside compact rows for a full sort) against read_results, sort_rows and keep_top.
// Every sweep is a real sweep dir written by lib/sweep, its results by the runner's own
// result_json() or, for odd documents, written out as a task could.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "collect/result_table.hpp"
#include "collect/row_store.hpp"
#include "collect/writers.hpp"
#include "common/error.hpp"
#include "common/json.hpp"
#include "sweep/results.hpp"
#include "sweep/runner.hpp"
#include "sweep/spec.hpp"
#include "sweep/sweep_dir.hpp"
#include "temp_dir.hpp"
#include "sweep/rounds.hpp"

#include "cmocka_cxx.hpp"  // last: its macros would rename members of the headers above

using namespace aihpc;
using namespace aihpc::collect;

namespace {

std::string describe(const sweep::Assignment& values) {
    std::string out;
    for (auto& [k, v] : values) out += k + "=" + v.json + "|" + v.plain + ";";
    return out;
}

std::string describe(const std::vector<std::string>& words) {
    std::string out;
    for (auto& w : words) out += w + ";";
    return out;
}

// Every field of a row as text, so that two rows compare in one string.
std::string describe(const ResultRow& r) {
    std::string out = std::to_string(r.index) + " " + task_state_name(r.state) + " phase=" + r.phase;
    out += " exit=" + (r.exit_code ? std::to_string(*r.exit_code) : std::string("none"));
    if (r.elapsed_s) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%a", *r.elapsed_s);
        out += std::string(" elapsed=") + buf;
    }
    out += " node=" + r.node + " start=" + r.start + " end=" + r.end + " job=" + r.job_id + " array=" + r.array_job_id + "_" + r.array_task_id;
    out += " signal=" + r.signal + " error=" + r.error + " tail=" + describe(r.stderr_tail) + " non_finite=" + describe(r.non_finite);
    out += " params=" + describe(r.params) + " metrics=" + describe(r.metrics);
    return out;
}

// What a reader makes of a document: its row, or that it refused it.
std::string outcome(const std::function<ResultRow(std::string_view)>& read, std::string_view text) {
    try {
        return describe(read(text));
    } catch (const Error& e) {
        return "refused";
    }
}

sweep::SweepDir make_sweep(const TempDir& tmp, const std::string& spec_json) {
    auto spec = sweep::parse_spec(spec_json);
    sweep::write_sweep_dir(spec, tmp.path() + "/s", sweep::Provenance{"test", "2024-06-11T12:00:00+00:00", "abc123"});
    return sweep::open_sweep(tmp.path() + "/s");
}

std::string render(const ResultTable& header, const RowSource& rows, Format f) {
    std::string out;
    write_rows(header, rows, f, [&](std::string_view s) { out += s; });
    return out;
}

std::string render(const ResultTable& t, Format f) {
    std::string out;
    write_rows(t, f, [&](std::string_view s) { out += s; });
    return out;
}

// A sweep of 2100 tasks (read by several threads) whose loss has many ties, some
// results without a loss, some failed, some missing, a NaN and a string metric.
sweep::SweepDir tied_sweep(const TempDir& tmp) {
    auto sw = make_sweep(tmp, R"({"axes":[{"param":"a","range":[0,2100]},{"param":"opt","values":["sgd"]}],"command":"true"})");
    sweep::TaskIndex index(sw.path);
    const auto& phase = sw.spec.final_phase();
    for (std::uint64_t i = 0; i < 2100; ++i) {
        if (i % 41 == 9) continue;  // missing
        sweep::TaskOutcome o;
        o.exit_code = i % 37 == 4 ? 2 : 0;
        o.elapsed_s = static_cast<double>(i % 13) / 4;
        if (i % 29 == 3) o.metrics_json = R"({"acc":0.5})";  // no loss
        else if (i == 1234) o.metrics_json = R"({"loss":NaN,"acc":1})";
        else if (i == 2000) o.metrics_json = R"({"loss":"high","note":"a \"q\""})";
        else o.metrics_json = "{\"loss\":" + std::to_string(i % 7) + (i % 2 ? ".0" : "") + ",\"acc\":" + std::to_string(i % 5) + "}";
        sweep::TaskContext c;
        c.node = "n" + std::to_string(i % 3);
        sweep::write_file_atomic(sweep::result_path(sw, phase, i), sweep::result_json(sw, phase, index.task(i), {"true"}, o, c));
    }
    return sw;
}

// The rows read_results, sort_rows and keep_top give, in a format.
std::string reference(const ResultTable& full, const CollectOptions& o, Format f) {
    auto t = full;
    bool ranked = o.sort && sort_rows(t, *o.sort) == SortSource::metric;
    keep_top(t, o.top, ranked);
    return render(t, f);
}

std::string reference(const sweep::SweepDir& sw, const CollectOptions& o, Format f) {
    ReadOptions ro;
    ro.include_missing = o.include_missing;
    return reference(read_results(sw, ro), o, f);
}

std::string collected(const sweep::SweepDir& sw, CollectOptions o, Format f) {
    o.detail = f == Format::jsonl ? RowDetail::full : RowDetail::columns;
    auto rows = collect_rows(sw, o);
    return render(rows.header, rows, f);
}

}  // namespace

// ---- the single-pass reader

static void the_single_pass_reader_reads_every_document_as_the_tree_reader(void**) {
    const char* documents[] = {
        // as the runner writes them
        R"({"index":3,"exit_code":0,"phase":"main","params":{"lr":0.1,"opt":"sgd"},"task_seed":7,"start":"2024-06-11T12:00:00+00:00","end":"2024-06-11T12:01:00+00:00","elapsed_s":60.125,"node":"n1","job_id":"1003","array_job_id":"999","array_task_id":"3","command":["python","train.py"],"metrics":{"loss":0.25,"acc":1,"epoch":10},"provenance":{"spec_hash":"0123","git_commit":null,"staged":[],"binding":{"cpus":"0-3","gpus":null}}})",
        R"({"index":4,"exit_code":-9,"signal":"SIGKILL","error":"out of memory","stderr_tail":["a","b c"],"metrics":{}})",
        R"({"index":5,"exit_code":0,"metrics":{"big":9223372036854775807,"neg":-9223372036854775808,"z":-0.0,"e":1E+300,"t":true,"f":false,"n":null,"s":"x y"}})",
        R"( {"index":6 , "exit_code" : 0 ,"job_id":1006,"node":null,"phase":true,"metrics":{"a":1}}	)",
        R"({"index":7,"exit_code":0,"metrics":{"loss":null},"non_finite":["loss"]})",
        R"({"exit_code":0,"index":8,"elapsed_s":3,"metrics":{"x":1},"extra":[[[{"k":[1,2,{"m":"n"}]}]],{}]})",
        R"({})",
        // what the tree reader has to decide
        R"({"index":9,"exit_code":0,"metrics":{"loss":NaN,"gain":-Infinity}})",
        R"({"index":10,"exit_code":0,"metrics":{"s":"tab\there \u00e9 \ud83d\ude00"}})",
        R"({"index":11,"exit_code":0,"node":"a\/b","metrics":{"obj":{"a":[1,2]},"arr":[true]}})",
        R"({"index":12,"exit_code":0,"elapsed_s":Infinity,"metrics":{}})",
        R"({"index":13,"exit_code":99999999999999999999,"metrics":{}})",
        R"({"index":-1,"exit_code":0})",
        R"({"index":14,"exit_code":1.0})",
        R"({"index":15,"exit_code":0,"elapsed_s":null})",
        R"({"index":16,"exit_code":0,"node":{"x":1}})",
        R"({"index":17,"exit_code":0,"stderr_tail":["a",1]})",
        // what both must refuse
        R"({"index":18,"exit_code":0,"metrics":{"a":1,}})",
        R"({"index":19,"exit_code":0,"metrics":{"a":1,"a":2}})",
        R"({"index":20,"exit_code":0,"provenance":{"x":1,"x":1}})",
        R"({"index":21,"index":21,"exit_code":0})",
        R"({"index":22,"exit_code":0,"metrics":{"a":01}})",
        R"({"index":23,"exit_code":0,"metrics":{"a":1.}})",
        R"({"index":24,"exit_code":0,"metrics":{"a":"x
"}})",
        R"({"index":25,"exit_code":0,"command":["a",]})",
        R"({"index":26,"exit_code":0} x)",
        R"({"index":27,"exit_code":0)",
        R"([1,2])",
        R"({"index":28,"exit_code":0,"metrics":{"a":tru}})",
        R"({"index":29,"exit_code":0,"metrics":{"a":-}})",
        R"({"index":30,"exit_code":0,"metrics":{"a":1e}})",
        "",
    };
    for (const char* doc : documents) {
        auto fast = outcome(parse_result, doc);
        auto tree = outcome(parse_result_tree, doc);
        if (fast != tree) fail_msg("%s\n  single pass: %s\n  tree:        %s", doc, fast.c_str(), tree.c_str());
    }
    // Nested past the tree reader's limit: both refuse.
    std::string deep = R"({"index":1,"exit_code":0,"x":)" + std::string(300, '[') + std::string(300, ']') + "}";
    assert_string_equal(outcome(parse_result, deep).c_str(), "refused");
}

static void task_lines_read_as_the_sweep_reads_them(void**) {
    const char* lines[] = {
        R"({"index":0,"params":{"lr":0.001,"opt":"sgd","n":9223372036854775807,"z":-0.0,"on":true,"off":false},"task_seed":1})",
        R"({"task_seed":18446744073709551615,"params":{},"index":2})",
        R"( {"index":3 ,"params":{"a":1e-05,"b":"x y"},"task_seed":4} )",
        // what the sweep's reader decides
        R"({"index":4,"params":{"s":"caf\u00e9"},"task_seed":1})",
        R"({"index":5,"params":{"n":9223372036854775808},"task_seed":1})",
        R"({"index":6,"params":{"n":null},"task_seed":1})",
        R"({"index":7,"params":{"n":[1]},"task_seed":1})",
        R"({"index":8,"params":{"a":1,"a":2},"task_seed":1})",
        R"({"index":9,"params":{},"task_seed":1,"extra":0})",
        R"({"index":10,"params":{}})",
        R"({"index":-1,"params":{},"task_seed":1})",
        R"({"index":11,"params":{"a":1,},"task_seed":1})",
        R"({"index":12,"params":{},"task_seed":1,"index":12})",
        R"({"index":13,"params":{"a":NaN},"task_seed":1})",
        "",
    };
    for (const char* line : lines) {
        std::string fast, tree;
        try {
            fast = describe(task_params(line));
        } catch (const Error& e) {
            fast = std::string("refused: ") + e.what();
        }
        try {
            tree = describe(sweep::parse_task_line(line).params);
        } catch (const Error& e) {
            tree = std::string("refused: ") + e.what();
        }
        if (fast != tree) fail_msg("%s\n  single pass: %s\n  sweep:       %s", line, fast.c_str(), tree.c_str());
    }
}

// ---- compact rows

static void a_row_encoded_and_decoded_is_the_same_row(void**) {
    ResultRow r;
    r.index = 123456789012ULL;
    r.state = TaskState::failed;
    r.phase = "train";
    r.exit_code = -2147483648L;
    r.elapsed_s = 0.1 + 0.2;
    r.node = "n\xc3\xa9";
    r.start = "2024-06-11T12:00:00+00:00";
    r.end = "e";
    r.job_id = "1";
    r.array_job_id = "2";
    r.array_task_id = "3";
    r.signal = "SIGTERM";
    r.error = "line\nbreak";
    r.stderr_tail = {"", "x\"y"};
    r.non_finite = {"bad"};
    r.params = {{"lr", sweep::Scalar{"1e-05", "1e-05"}}, {"opt", sweep::scalar_string("a \"b\"\n")}, {"flag", sweep::scalar_bool(true)}};
    r.metrics = {{"bad", sweep::Scalar{"null", "NaN"}},
                 {"big", sweep::Scalar{"-9223372036854775808", "-9223372036854775808"}},
                 {"odd", sweep::Scalar{"{\"a\":1}", "something else"}},
                 {"empty", sweep::scalar_string("")}};
    NameTable table;
    NameCache names(table);
    std::string bytes;
    encode_row(r, RowDetail::full, names, bytes);
    ResultRow back;
    back.sacct = SacctRecord{"x", "y", "z", "w"};
    decode_row(bytes.data(), table, back);
    assert_string_equal(describe(back).c_str(), describe(r).c_str());
    assert_false(back.sacct.has_value());

    // The columns alone: what no column shows comes back empty, the rest exact.
    encode_row(r, RowDetail::columns, names, bytes);
    decode_row(bytes.data(), table, back);
    ResultRow shown = r;
    shown.start = shown.end = shown.job_id = shown.array_job_id = shown.array_task_id = shown.signal = shown.error = "";
    shown.stderr_tail.clear();
    shown.non_finite.clear();
    assert_string_equal(describe(back).c_str(), describe(shown).c_str());
    assert_true(bytes.size() < 160);

    // Decoding into a row that held more leaves nothing of it behind.
    ResultRow plain;
    plain.index = 1;
    encode_row(plain, RowDetail::full, names, bytes);
    decode_row(bytes.data(), table, back);
    assert_string_equal(describe(back).c_str(), describe(plain).c_str());
}

// ---- collect_rows against read_results, sort_rows and keep_top

static void top_k_is_the_first_k_of_the_full_sort_with_ties_by_index(void**) {
    TempDir tmp;
    auto sw = tied_sweep(tmp);
    ReadOptions ro;
    auto read = read_results(sw, ro);
    ro.include_missing = true;
    auto read_all = read_results(sw, ro);
    const char* sorts[] = {"loss", "loss:max", "acc:max", "a:max", "index:max", "exit_code:max", "elapsed_s", ""};
    for (const char* s : sorts) {
        for (std::size_t top : {std::size_t{1}, std::size_t{5}, std::size_t{2099}, std::size_t{0}}) {
            for (bool all : {false, true}) {
                CollectOptions o;
                if (*s) {
                    auto [column, maximize] = sweep::parse_metric_direction(s, "--sort");
                    o.sort = SortKey{column, maximize};
                }
                o.top = top;
                o.include_missing = all;
                for (Format f : {Format::csv, Format::jsonl}) {
                    auto want = reference(all ? read_all : read, o, f);
                    auto got = collected(sw, o, f);
                    if (want != got)
                        fail_msg("--sort '%s' --top %zu%s (%s): %zu bytes, not the %zu of the full read", s, top, all ? " --all" : "",
                                 format_name(f), got.size(), want.size());
                }
            }
        }
    }
}

static void the_kept_rows_are_only_those_shown(void**) {
    TempDir tmp;
    auto sw = tied_sweep(tmp);
    CollectOptions o;
    o.sort = SortKey{"loss", false};
    o.top = 10;
    auto rows = collect_rows(sw, o);
    assert_int_equal(rows.size(), 10);
    // Ties by index: the ten lowest losses are the first tasks with loss 0.
    std::vector<std::uint64_t> got;
    for (std::size_t k = 0; k < rows.size(); ++k) got.push_back(rows.row(k).index);
    std::vector<std::uint64_t> want;
    for (std::uint64_t i = 0; want.size() < 10; ++i)
        if (i % 7 == 0 && i % 41 != 9 && i % 29 != 3) want.push_back(i);
    assert_true(got == want);
    // The columns and the task states still cover every row read.
    assert_true(rows.header.metric_names == (std::vector<std::string>{"loss", "acc", "note"}));
    auto reread = read_results(sw);
    assert_int_equal(rows.failed_or_missing().size(), reread.failed_or_missing().size());
    assert_true(rows.failed_or_missing() == reread.failed_or_missing());
}

static void other_formats_match_the_full_read_too(void**) {
    TempDir tmp;
    auto sw = tied_sweep(tmp);
    for (Format f : {Format::table, Format::markdown}) {
        CollectOptions o;
        assert_true(reference(sw, o, f) == collected(sw, o, f));
        o.sort = SortKey{"acc", true};
        o.top = 50;
        assert_true(reference(sw, o, f) == collected(sw, o, f));
    }
}

static void an_unknown_sort_column_is_the_same_error(void**) {
    TempDir tmp;
    auto sw = tied_sweep(tmp);
    CollectOptions o;
    o.sort = SortKey{"los", false};
    for (std::size_t top : {std::size_t{0}, std::size_t{3}}) {
        o.top = top;
        std::string got, want;
        try {
            collect_rows(sw, o);
        } catch (const Error& e) {
            got = e.what();
        }
        try {
            auto t = read_results(sw);
            sort_rows(t, *o.sort);
        } catch (const Error& e) {
            want = e.what();
        }
        assert_string_equal(got.c_str(), want.c_str());
        assert_non_null(std::strstr(got.c_str(), "metrics: loss, acc, note"));
    }
    // With no row at all, there is nothing to sort and nothing to refuse.
    TempDir empty;
    auto none = make_sweep(empty, R"({"axes":[{"param":"a","range":[0,3]}],"command":"true"})");
    o.top = 0;
    assert_int_equal(collect_rows(none, o).size(), 0);
}

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_single_pass_reader_reads_every_document_as_the_tree_reader),
        cmocka_unit_test(task_lines_read_as_the_sweep_reads_them),
        cmocka_unit_test(a_row_encoded_and_decoded_is_the_same_row),
        cmocka_unit_test(top_k_is_the_first_k_of_the_full_sort_with_ties_by_index),
        cmocka_unit_test(the_kept_rows_are_only_those_shown),
        cmocka_unit_test(other_formats_match_the_full_read_too),
        cmocka_unit_test(an_unknown_sort_column_is_the_same_error),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
