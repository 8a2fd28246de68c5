#include "collect/writers.hpp"

#include <algorithm>

#include "common/error.hpp"
#include "common/json.hpp"

namespace aihpc::collect {

Format parse_format(const std::string& name) {
    if (name == "table") return Format::table;
    if (name == "csv") return Format::csv;
    if (name == "jsonl") return Format::jsonl;
    if (name == "markdown" || name == "md") return Format::markdown;
    throw Error("--format must be table, csv, jsonl or markdown, not '" + name + "'");
}

const char* format_name(Format format) {
    switch (format) {
    case Format::table: return "table";
    case Format::csv: return "csv";
    case Format::jsonl: return "jsonl";
    case Format::markdown: return "markdown";
    }
    return "?";
}

namespace {

// Collects text and hands it to the sink in pieces of about 64 KiB.
class Buffered {
public:
    explicit Buffered(const Sink& sink) : sink_(sink) { buf_.reserve(kSize + 4096); }
    ~Buffered() { flush(); }
    Buffered(const Buffered&) = delete;
    Buffered& operator=(const Buffered&) = delete;
    std::string& text() { return buf_; }
    void line_done() {
        if (buf_.size() >= kSize) flush();
    }
    void flush() {
        if (!buf_.empty()) sink_(buf_);
        buf_.clear();
    }

private:
    static constexpr std::size_t kSize = 1 << 16;
    const Sink& sink_;
    std::string buf_;
};

std::size_t display_width(std::string_view s) {
    std::size_t n = 0;
    for (unsigned char c : s)
        if ((c & 0xc0) != 0x80) ++n;  // count UTF-8 code points, not bytes
    return n;
}

void write_table(const RowSource& rows, const std::vector<Column>& cols, Buffered& out) {
    std::vector<std::size_t> width(cols.size());
    std::vector<bool> right(cols.size());
    for (std::size_t c = 0; c < cols.size(); ++c) {
        width[c] = display_width(cols[c].name);
        right[c] = column_is_numeric(rows, cols[c]);
    }
    for (std::size_t r = 0; r < rows.size(); ++r) {
        const auto& row = rows.row(r);
        for (std::size_t c = 0; c < cols.size(); ++c) {
            auto t = cell_text(row, cols[c]);
            width[c] = std::max(width[c], t.empty() ? 1 : display_width(t));
        }
    }
    auto emit = [&](std::size_t c, const std::string& text) {
        auto& s = out.text();
        std::size_t pad = width[c] - display_width(text);
        bool last = c + 1 == cols.size();
        if (c) s += "  ";
        if (right[c]) s.append(pad, ' ');
        s += text;
        if (!right[c] && !last) s.append(pad, ' ');
    };
    for (std::size_t c = 0; c < cols.size(); ++c) emit(c, cols[c].name);
    out.text() += '\n';
    for (std::size_t r = 0; r < rows.size(); ++r) {
        const auto& row = rows.row(r);
        for (std::size_t c = 0; c < cols.size(); ++c) {
            auto t = cell_text(row, cols[c]);
            emit(c, t.empty() ? "-" : t);
        }
        out.text() += '\n';
        out.line_done();
    }
}

void write_csv(const RowSource& rows, const std::vector<Column>& cols, Buffered& out) {
    for (std::size_t c = 0; c < cols.size(); ++c) out.text() += (c ? "," : "") + csv_field(cols[c].name);
    out.text() += '\n';
    for (std::size_t r = 0; r < rows.size(); ++r) {
        const auto& row = rows.row(r);
        for (std::size_t c = 0; c < cols.size(); ++c) {
            if (c) out.text() += ',';
            out.text() += csv_field(cell_text(row, cols[c]));
        }
        out.text() += '\n';
        out.line_done();
    }
}

std::string markdown_cell(std::string_view text) {
    std::string out;
    for (char ch : text) {
        if (ch == '|') out += "\\|";
        else if (ch == '\n') out += "<br>";
        else if (ch != '\r') out += ch;
    }
    return out;
}

void write_markdown(const RowSource& rows, const std::vector<Column>& cols, Buffered& out) {
    auto& s = out.text();
    s += "|";
    for (auto& c : cols) s += " " + markdown_cell(c.name) + " |";
    s += "\n|";
    for (auto& c : cols) s += column_is_numeric(rows, c) ? " ---: |" : " --- |";
    s += "\n";
    for (std::size_t r = 0; r < rows.size(); ++r) {
        const auto& row = rows.row(r);
        out.text() += "|";
        for (auto& c : cols) out.text() += " " + markdown_cell(cell_text(row, c)) + " |";
        out.text() += "\n";
        out.line_done();
    }
}

std::string object_of(const sweep::Assignment& values) {
    std::string out = "{";
    for (std::size_t i = 0; i < values.size(); ++i)
        out += (i ? "," : "") + json_quote(values[i].first) + ":" + values[i].second.json;
    return out + "}";
}

}  // namespace

std::string csv_field(std::string_view text) {
    if (text.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(text);
    std::string out = "\"";
    for (char ch : text) {
        if (ch == '"') out += '"';
        out += ch;
    }
    return out + "\"";
}

std::string row_json(const ResultTable& table, const ResultRow& row) {
    std::string out = "{\"index\":" + std::to_string(row.index) + ",\"status\":\"" + task_state_name(row.state) + "\"";
    if (!row.phase.empty()) out += ",\"phase\":" + json_quote(row.phase);
    out += ",\"params\":" + object_of(row.params);
    if (table.aggregated) out += ",\"replicates\":" + (row.replicates ? std::to_string(row.replicates) : std::string("null"));
    out += ",\"metrics\":" + object_of(row.metrics);
    // NaN and infinities are not JSON: null, and named here.
    if (!row.non_finite.empty()) out += ",\"non_finite\":" + json_string_array(row.non_finite);
    out += ",\"exit_code\":" + (row.exit_code ? std::to_string(*row.exit_code) : std::string("null"));
    Column elapsed{Column::elapsed_s, "elapsed_s", ""};
    out += ",\"elapsed_s\":" + cell_json(row, elapsed);
    out += ",\"node\":" + json_quote_or_null(row.node) + ",\"start\":" + json_quote_or_null(row.start) + ",\"end\":" + json_quote_or_null(row.end) +
           ",\"job_id\":" + json_quote_or_null(row.job_id) + ",\"array_job_id\":" + json_quote_or_null(row.array_job_id) +
           ",\"array_task_id\":" + json_quote_or_null(row.array_task_id);
    if (!row.signal.empty()) out += ",\"signal\":" + json_quote(row.signal);
    if (!row.error.empty()) out += ",\"error\":" + json_quote(row.error);
    if (!row.stderr_tail.empty()) out += ",\"stderr_tail\":" + json_string_array(row.stderr_tail);
    if (table.with_sacct) {
        if (row.sacct)
            out += ",\"sacct\":{\"State\":" + json_quote_or_null(row.sacct->state) + ",\"ExitCode\":" + json_quote_or_null(row.sacct->exit_code) +
                   ",\"Elapsed\":" + json_quote_or_null(row.sacct->elapsed) + ",\"MaxRSS\":" + json_quote_or_null(row.sacct->max_rss) + "}";
        else
            out += ",\"sacct\":null";
    }
    return out + "}";
}

void write_rows(const ResultTable& table, Format format, const Sink& sink) { write_rows(table, TableRows(table), format, sink); }

bool column_is_numeric(const RowSource& rows, const Column& c) {
    switch (c.kind) {
    case Column::index:
    case Column::replicates:
    case Column::exit_code:
    case Column::elapsed_s: return true;
    case Column::param:
    case Column::metric: {
        bool any = false;
        for (std::size_t r = 0; r < rows.size(); ++r) {
            const auto& row = rows.row(r);
            const auto& values = c.kind == Column::param ? row.params : row.metrics;
            auto v = std::find_if(values.begin(), values.end(), [&](const auto& kv) { return kv.first == c.key; });
            if (v == values.end()) continue;
            if (!number_of(v->second)) return false;
            any = true;
        }
        return any;
    }
    default: return false;
    }
}

void write_rows(const ResultTable& header, const RowSource& rows, Format format, const Sink& sink) {
    Buffered out(sink);
    auto cols = columns(header);
    switch (format) {
    case Format::table: write_table(rows, cols, out); break;
    case Format::csv: write_csv(rows, cols, out); break;
    case Format::markdown: write_markdown(rows, cols, out); break;
    case Format::jsonl:
        for (std::size_t r = 0; r < rows.size(); ++r) {
            out.text() += row_json(header, rows.row(r));
            out.text() += '\n';
            out.line_done();
        }
        break;
    }
}

}  // namespace aihpc::collect
