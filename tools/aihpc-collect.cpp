// aihpc-collect: the results of a sweep, gathered: one row per task (table, csv, jsonl,
// markdown), the failed and missing indices, status counts, a live progress bar, an
// MLflow file store and an HTML report. A thin main over lib/collect; see
// aihpc-collect(1).
#include <malloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "collect/accounting.hpp"
#include "collect/html.hpp"
#include "collect/mlflow.hpp"
#include "collect/queue.hpp"
#include "collect/result_table.hpp"
#include "collect/row_store.hpp"
#include "collect/writers.hpp"
#include "common/error.hpp"
#include "common/text.hpp"
#include "config.h"
#include "sweep/results.hpp"
#include "sweep/rounds.hpp"
#include "sweep/submit_plan.hpp"
#include "sweep/sweep_dir.hpp"

using namespace aihpc;
using namespace aihpc::collect;

namespace {

const char* kUsage =
    "Usage: aihpc-collect SWEEP [OPTIONS]\n"
    "Gathers the results of a sweep: one row per task, with its parameters, metrics,\n"
    "exit code, elapsed time and node.\n"
    "\n"
    "  --format F        table (default), csv, jsonl or markdown\n"
    "  -o, --output FILE write the table to FILE instead of stdout\n"
    "  --sort M[:min|max] order by a metric (or parameter, index, exit_code, elapsed_s);\n"
    "                    min by default\n"
    "  --columns A,B,... only these columns, in this order (table, csv, markdown)\n"
    "  --precision N     floats with N significant digits (default: 6 in the table,\n"
    "                    exact in csv and markdown)\n"
    "  --top K           keep the first K rows (by a metric: the best K that succeeded)\n"
    "  --aggregate mean|median  one row per configuration: each metric the mean or\n"
    "                    median over its successful replicates (--repeat)\n"
    "  --phase NAME      the rows of an earlier phase: its metrics, exit code and time\n"
    "                    (default: the last phase)\n"
    "  --all             add a row for every task without a result (status missing)\n"
    "  --sacct           add State, ExitCode, Elapsed and MaxRSS from sacct\n"
    "  --failed          print the failed and missing indices in Slurm array syntax;\n"
    "                    with --format F -o FILE, also write the table, in one pass\n"
    "  --why             with --failed: also each failed task's failing phase, exit\n"
    "                    code or signal, and the last lines of its stderr; and why\n"
    "                    sacct says it ended (TIMEOUT, OUT_OF_MEMORY, PREEMPTED...)\n"
    "  --status          print counts of done, failed, missing, running and pending\n"
    "  --json            with --status: one JSON object\n"
    "  --watch           a live progress bar on stderr until no task is queued\n"
    "  --timeout S       with --watch: give up after S seconds\n"
    "  --mlflow DIR      write an MLflow file store (a parent run, a child run per task)\n"
    "  --html FILE       write a self-contained HTML report\n"
    "  --progress        report what is written on stderr (default: when it is a terminal)\n"
    "  -h, --help        show this help\n"
    "  -V, --version     show the version\n"
    "See aihpc-collect(1).\n";

struct UsageError : Error {
    using Error::Error;
};

struct Options {
    std::string sweep;
    std::optional<Format> format;
    std::string output;
    std::optional<SortKey> sort;
    std::size_t top = 0;
    bool all = false, sacct = false, failed = false, status = false, json = false, watch = false, progress = false, why = false;
    std::optional<double> timeout;
    std::string mlflow, html;
    std::string phase;
    std::optional<sweep::Aggregate> aggregate;
    std::vector<std::string> columns;
    std::optional<int> precision;
};

// --columns and --precision on the table of the text formats (jsonl keeps every value).
void shape_table(ResultTable& header, const Options& o, Format format) {
    if (format == Format::jsonl) return;
    header.shown_columns = o.columns;
    header.precision = o.precision.value_or(format == Format::table ? 6 : 0);
    columns(header);  // an unknown name is refused before anything is written
}

std::uint64_t number(const std::string& option, const std::string& text) {
    auto n = parse_uint(text);
    if (!n) throw UsageError(option + ": '" + text + "' is not a non-negative integer");
    return *n;
}

Options parse_args(const std::vector<std::string>& words) {
    Options o;
    o.progress = ::isatty(2);
    for (std::size_t i = 0; i < words.size(); ++i) {
        // A long option may carry its value after '=' (--sort=val_loss), as GNU tools accept.
        std::string w = words[i];
        std::optional<std::string> inline_value;
        if (w.size() > 2 && w.compare(0, 2, "--") == 0)
            if (auto eq = w.find('='); eq != std::string::npos) {
                inline_value = w.substr(eq + 1);
                w.resize(eq);
            }
        auto value = [&]() -> std::string {
            if (inline_value) {
                std::string v = std::move(*inline_value);
                inline_value.reset();
                return v;
            }
            if (i + 1 >= words.size()) throw UsageError(w + " needs a value");
            return words[++i];
        };
        // A flag given a value (--all=no) is a mistake, never a silent yes.
        bool is_flag = w == "--all" || w == "--sacct" || w == "--failed" || w == "--why" || w == "--status" || w == "--json" ||
                       w == "--watch" || w == "--progress";
        if (is_flag && inline_value) throw UsageError(w + " takes no value (given '" + *inline_value + "')");
        if (w == "--format") {
            auto v = value();
            try {
                o.format = parse_format(v);
            } catch (const Error& e) {
                throw UsageError(e.what());
            }
        } else if (w == "-o" || w == "--output") o.output = value();
        else if (w == "--sort") {
            auto v = value();
            try {
                auto [column, maximize] = sweep::parse_metric_direction(v, "--sort");
                o.sort = SortKey{column, maximize};
            } catch (const Error& e) {
                throw UsageError(e.what());
            }
        } else if (w == "--top") {
            o.top = number(w, value());
            if (o.top == 0) throw UsageError("--top must be at least 1");
        } else if (w == "--all") o.all = true;
        else if (w == "--sacct") o.sacct = true;
        else if (w == "--failed") o.failed = true;
        else if (w == "--why") o.why = true;
        else if (w == "--status") o.status = true;
        else if (w == "--json") o.json = true;
        else if (w == "--watch") o.watch = true;
        else if (w == "--timeout") o.timeout = static_cast<double>(number(w, value()));
        else if (w == "--mlflow") o.mlflow = value();
        else if (w == "--html") o.html = value();
        else if (w == "--columns") {
            o.columns = split(value(), ',');
            for (auto& c : o.columns)
                if (c.empty()) throw UsageError("--columns: an empty column name (give names separated by commas)");
        } else if (w == "--precision") {
            auto v = value();
            auto n = number(w, v);
            if (n < 1 || n > 17) throw UsageError("--precision: '" + v + "' is not a number of digits from 1 to 17");
            o.precision = static_cast<int>(n);
        } else if (w == "--aggregate") {
            try {
                o.aggregate = sweep::parse_aggregate(value());
            } catch (const UsageError&) {
                throw;
            } catch (const Error& e) {
                throw UsageError(e.what());
            }
        } else if (w == "--phase") {
            o.phase = value();
            if (o.phase.empty()) throw UsageError("--phase needs a phase name");
        } else if (w == "--progress") o.progress = true;
        else if (w.size() > 1 && w[0] == '-') throw UsageError("unknown option " + w);
        else if (o.sweep.empty()) o.sweep = w;
        else throw UsageError("one SWEEP dir only ('" + o.sweep + "', then '" + w + "')");
    }
    if (o.sweep.empty()) throw UsageError("give a SWEEP dir");
    if (o.status && o.watch) throw UsageError("--status and --watch do not go together");
    if ((o.status || o.watch) && (o.failed || o.format || !o.output.empty() || o.sort || o.top || o.sacct || !o.mlflow.empty() || !o.html.empty() ||
                                    !o.columns.empty() || o.precision || o.aggregate || !o.phase.empty()))
        throw UsageError(std::string(o.status ? "--status" : "--watch") + " takes no table options");
    if (o.why && !o.failed) throw UsageError("--why goes with --failed");
    if (o.aggregate && (o.status || o.watch || o.failed || o.sacct || !o.mlflow.empty()))
        throw UsageError("--aggregate makes rows of configurations; --status, --watch, --failed, --sacct and --mlflow are about tasks");
    if (!o.phase.empty() && (o.status || o.watch || o.failed || o.sacct))
        throw UsageError("--phase chooses the rows of the table; --status, --watch, --failed and --sacct are about whole tasks");
    if (o.json && !o.status) throw UsageError("--json goes with --status (for rows, use --format jsonl)");
    if (o.timeout && !o.watch) throw UsageError("--timeout goes with --watch");
    if (o.failed && o.format && o.output.empty())
        throw UsageError("--failed prints the index list on stdout; give -o FILE for the --format table");
    return o;
}

// A stdio stream that is closed, and checked, exactly once.
class OutputFile {
public:
    explicit OutputFile(const std::string& path) : path_(path) {
        if (path.empty() || path == "-") {
            f_ = stdout;
            path_ = "standard output";
        } else {
            f_ = std::fopen(path.c_str(), "w");
            if (!f_) throw_errno("cannot create " + path);
            owned_ = true;
        }
    }
    ~OutputFile() {
        if (owned_ && f_) std::fclose(f_);
    }
    OutputFile(const OutputFile&) = delete;
    OutputFile& operator=(const OutputFile&) = delete;
    Sink sink() {
        return [this](std::string_view text) {
            if (std::fwrite(text.data(), 1, text.size(), f_) != text.size()) throw_errno("cannot write " + path_);
        };
    }
    void close() {
        bool bad = std::fflush(f_) != 0 || std::ferror(f_);
        if (owned_) {
            bad = std::fclose(f_) != 0 || bad;
            f_ = nullptr;
        }
        if (bad) throw_errno("cannot write " + path_);
    }

private:
    std::string path_;
    std::FILE* f_ = nullptr;
    bool owned_ = false;
};

int run_status(const Options& o) {
    auto sweep = sweep::open_sweep(o.sweep);
    auto scan = sweep::scan_results(sweep);
    std::cerr << sweep::unreadable_warnings("aihpc-collect", scan.unreadable);
    auto arrays = read_arrays(sweep.path);
    auto counts = count_status(sweep.tasks, scan.done, scan.failed, arrays, query_queue(arrays));
    std::cout << (o.json ? status_json(counts) : status_text(counts));
    return 0;
}

std::string progress_line(const StatusCounts& c) {
    const int width = 30;
    std::uint64_t ended = c.done + c.failed;
    int filled = c.tasks ? static_cast<int>(ended * width / c.tasks) : width;
    std::string bar(static_cast<std::size_t>(filled), '#');
    bar.resize(width, '-');
    int pct = c.tasks ? static_cast<int>(ended * 100 / c.tasks) : 100;
    return "[" + bar + "] " + std::to_string(pct) + "% " + std::to_string(c.done) + "/" + std::to_string(c.tasks) + " done, " +
           std::to_string(c.failed) + " failed, " + std::to_string(c.running) + " running, " + std::to_string(c.pending) + " pending, " +
           std::to_string(c.missing) + " missing";
}

int run_watch(const Options& o) {
    auto sweep = sweep::open_sweep(o.sweep);
    bool tty = ::isatty(2);
    auto start = std::chrono::steady_clock::now();
    std::string last;
    StatusCounts counts;
    for (;;) {
        auto scan = sweep::scan_results(sweep);
        auto arrays = read_arrays(sweep.path);
        if (arrays.empty()) throw Error(o.sweep + " was not submitted (no chunks.json): nothing to watch");
        counts = count_status(sweep.tasks, scan.done, scan.failed, arrays, query_queue(arrays));
        auto line = progress_line(counts);
        if (tty) std::cerr << "\r" << line << "\033[K" << std::flush;
        else if (line != last) std::cerr << line << "\n";
        last = line;
        if (!counts.queued()) break;
        double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (o.timeout && waited + 2 > *o.timeout) {
            if (tty) std::cerr << "\n";
            throw Error("still " + std::to_string(counts.running + counts.pending) + " tasks queued after " +
                        std::to_string(static_cast<long>(*o.timeout)) + " s (--timeout)");
        }
        std::this_thread::sleep_for(std::chrono::seconds(2));
    }
    if (tty) std::cerr << "\n";
    if (counts.failed || counts.missing) {
        std::cerr << "aihpc-collect: the sweep ended with " << counts.failed << " failed and " << counts.missing
                  << " missing tasks; aihpc-sweep resubmit " << o.sweep << " --failed --missing runs them again\n";
        return 1;
    }
    return 0;
}

// Rows are only of tasks that left a result: say how many are not shown, rather than let
// a short table pass for a whole sweep.
void note_missing(const Options& o, std::uint64_t missing, std::uint64_t tasks) {
    if (o.all || o.failed || missing == 0) return;
    std::cerr << "aihpc-collect: note: " << missing << " of " << tasks << " tasks have no result" << (o.phase.empty() ? "" : " of phase " + o.phase)
              << " and are not shown (--all adds them; --failed lists them)\n";
}

// Rows alone: kept compact, and only those shown (the first K of --top).
void write_rows_only(const Options& o, const sweep::SweepDir& sweep) {
    CollectOptions co;
    co.include_missing = o.all;
    co.phase = o.phase;
    co.sort = o.sort;
    co.top = o.top;
    Format format = o.format.value_or(Format::table);
    co.detail = format == Format::jsonl ? RowDetail::full : RowDetail::columns;
    auto rows = collect_rows(sweep, co);
    shape_table(rows.header, o, format);
    std::cerr << sweep::unreadable_warnings("aihpc-collect", rows.header.unreadable);
    note_missing(o, static_cast<std::uint64_t>(std::count(rows.state.begin(), rows.state.end(), TaskState::missing)), sweep.tasks);
    OutputFile out(o.output);
    write_rows(rows.header, rows, format, out.sink());
    out.close();
    if (o.progress && !o.output.empty()) std::cerr << "aihpc-collect: " << rows.size() << " rows in " << o.output << "\n";
    if (o.failed) {
        auto list = rows.failed_or_missing();
        if (!list.empty()) std::cout << sweep::array_spec(list, 0) << "\n";
    }
}

// --failed --why: each failed task with how it ended, its error, its stderr tail and
// what Slurm says of it; then the tasks without a result that Slurm says something of.
void print_why(const sweep::SweepDir& sweep, const ResultTable& table, const std::set<std::uint64_t>& list) {
    std::string note;
    auto why = why_lines(sweep, table, list, note);
    if (!note.empty()) std::cerr << "aihpc-collect: " << note << "\n";
    for (const auto& row : table.rows) {
        if (row.state != TaskState::failed) continue;
        std::cout << "task " << row.index << ": phase " << (row.phase.empty() ? "?" : row.phase);
        if (!row.signal.empty()) std::cout << ", killed by " << row.signal;
        else if (row.exit_code) std::cout << ", exit code " << *row.exit_code;
        if (!row.node.empty()) std::cout << ", on " << row.node;
        std::cout << "\n";
        if (!row.error.empty()) std::cout << "  " << row.error << "\n";
        for (const auto& line : row.stderr_tail) std::cout << "  | " << line << "\n";
        for (const auto& line : why[row.index]) std::cout << line << "\n";
    }
    auto missing = table.missing();
    for (auto index : missing)
        if (why.count(index)) {
            std::cout << "task " << index << ": no result\n";
            for (const auto& line : why[index]) std::cout << line << "\n";
        }
    if (!missing.empty()) std::cout << "missing (no result): " << sweep::array_spec(missing, 0) << "\n";
}

int run_table(const Options& o) {
    auto sweep = sweep::open_sweep(o.sweep);
    bool rows_out = !o.failed && (o.format || !o.output.empty() || (o.mlflow.empty() && o.html.empty()));
    bool rows_to_file = o.failed && !o.output.empty();
    if (o.failed && !o.why && !rows_to_file && o.mlflow.empty() && o.html.empty()) {
        // The list alone: the result scan is all it takes.
        auto scan = sweep::scan_results(sweep);
        std::cerr << sweep::unreadable_warnings("aihpc-collect", scan.unreadable);
        auto list = scan.missing(sweep.tasks);
        list.insert(scan.failed.begin(), scan.failed.end());
        if (!list.empty()) std::cout << sweep::array_spec(list, 0) << "\n";
        return 0;
    }

    if (!o.sacct && !o.why && o.mlflow.empty() && o.html.empty() && !o.aggregate) {
        write_rows_only(o, sweep);
        return 0;
    }

    ReadOptions ro;
    ro.include_missing = o.all;
    ro.phase = o.phase;
    ResultTable table = read_results(sweep, ro);
    std::cerr << sweep::unreadable_warnings("aihpc-collect", table.unreadable);
    if (rows_out || rows_to_file) note_missing(o, table.missing().size(), sweep.tasks);
    if (o.sacct) {
        auto arrays = read_arrays(sweep.path);
        join_sacct(table, query_sacct(table, arrays, sweep.spec.final_phase().name), arrays, sweep.spec.final_phase().name);
    }
    if (o.aggregate) aggregate_replicates(table, *o.aggregate, sweep::has_repeat_axis(sweep.spec));
    bool ranked = o.sort && sort_rows(table, *o.sort) == SortSource::metric;

    if (rows_out || rows_to_file) {
        // --top cuts the rows printed; the report and the MLflow store keep every task
        // (sorted), so the copy is made only for them.
        bool keep_all = o.top && (!o.mlflow.empty() || !o.html.empty());
        ResultTable top_copy;
        if (keep_all) top_copy = table;
        ResultTable& shown = keep_all ? top_copy : table;
        keep_top(shown, o.top, ranked);
        Format format = o.format.value_or(Format::table);
        shape_table(shown, o, format);
        OutputFile out(o.output);
        write_rows(shown, format, out.sink());
        out.close();
        // The report and the MLflow store keep every column and every digit.
        shown.shown_columns.clear();
        shown.precision = 0;
        if (o.progress && !o.output.empty())
            std::cerr << "aihpc-collect: " << shown.rows.size() << " rows in " << o.output << "\n";
    }
    if (!o.mlflow.empty()) {
        auto s = write_mlflow(table, sweep, o.mlflow);
        if (!s.skipped.empty())
            std::cerr << "aihpc-collect: MLflow refuses these names as file names, so they were left out: " << join(s.skipped, ", ")
                      << "\n";
        if (o.progress)
            std::cerr << "aihpc-collect: MLflow experiment " << s.experiment_id << " in " << s.root << ": parent run " << s.parent_run_id
                      << ", " << s.child_runs << " child runs\n";
    }
    if (!o.html.empty()) {
        HtmlOptions ho;
        if (o.sort) {
            ho.color_metric = o.sort->column;
            ho.maximize = o.sort->maximize;
            ho.direction_given = true;
        } else if (auto loop = sweep::closed_loop_goal(sweep.path)) {
            // A closed loop's metric and direction, from SWEEP/rounds.json.
            std::tie(ho.color_metric, ho.maximize) = *loop;
            ho.direction_given = true;
        }
        OutputFile out(o.html);
        write_html(table, sweep, ho, out.sink());
        out.close();
        if (o.progress) std::cerr << "aihpc-collect: report in " << o.html << "\n";
    }
    if (o.failed) {
        auto list = table.failed_or_missing();
        if (!list.empty()) std::cout << sweep::array_spec(list, 0) << "\n";
        if (o.why) {
            // The reasons come from the full read, whatever --top kept.
            if (o.top || o.sort) table = read_results(sweep, ro);
            print_why(sweep, table, list);
        }
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    // json-c allocates a few dozen small blocks per result parsed: grow the heap in large
    // steps rather than one system call at a time.
    ::mallopt(M_TOP_PAD, 64 << 20);
    ::mallopt(M_TRIM_THRESHOLD, 256 << 20);
    std::vector<std::string> words(argv + 1, argv + argc);
    for (auto& w : words) {
        if (w == "-h" || w == "--help") {
            std::cout << kUsage;
            return 0;
        }
        if (w == "-V" || w == "--version") {
            std::cout << "aihpc-collect " << PACKAGE_VERSION << "\n";
            return 0;
        }
    }
    try {
        Options o = parse_args(words);
        if (o.status) return run_status(o);
        if (o.watch) return run_watch(o);
        return run_table(o);
    } catch (const UsageError& e) {
        std::cerr << "aihpc-collect: " << e.what() << "\nTry 'aihpc-collect --help'.\n";
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "aihpc-collect: " << e.what() << "\n";
        return 1;
    }
}
