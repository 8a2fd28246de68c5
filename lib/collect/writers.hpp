// The table of a sweep in the text formats of --format: aligned columns for people, CSV
// (RFC 4180 quoting), JSON lines and a Markdown table. Each writer streams its text to
// a sink in large pieces.
#pragma once
#include <functional>
#include <string>
#include <string_view>

#include "collect/result_table.hpp"

namespace aihpc::collect {

enum class Format { table, csv, jsonl, markdown };

Format parse_format(const std::string& name);  // throws aihpc::Error naming the choices
const char* format_name(Format format);

using Sink = std::function<void(std::string_view)>;

void write_rows(const ResultTable& table, Format format, const Sink& sink);
// The same for rows kept elsewhere: `header` gives the columns (its rows are not read),
// `rows` the rows in order, each decoded as it is written.
void write_rows(const ResultTable& header, const RowSource& rows, Format format, const Sink& sink);

// Whether every value a column holds over `rows` is a number (right-aligned).
bool column_is_numeric(const RowSource& rows, const Column& column);

// One CSV field, quoted only when it holds a comma, a double quote or a line break.
std::string csv_field(std::string_view text);

// One row of a sweep as a JSON object (the jsonl format).
std::string row_json(const ResultTable& table, const ResultRow& row);

}  // namespace aihpc::collect
