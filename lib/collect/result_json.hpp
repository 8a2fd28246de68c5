// Apart from common/json for speed: one pass builds each row from the bytes, no json-c tree.
// aihpc-collect reads a result document per task (a million in a large sweep) and the
// task's line of tasks.jsonl; a json-c tree built and freed for each document takes two
// to three times as long as this scan.
// It accepts only what the strict reader accepts and reads it the same way; whatever it
// is not sure of (an escape in a string, a bare NaN, a metric that is an object, a number
// that does not fit) it declines, and the caller reads the text with the tree reader,
// which decides (parse_result, task_params).
#pragma once
#include <string_view>

#include "collect/result_table.hpp"
#include "sweep/spec.hpp"

namespace aihpc::collect {

// A result document's row (index, state and params are the caller's). False, with `row`
// partly filled, for any document the scan declines.
bool scan_result(std::string_view text, ResultRow& row);

// The params of a line of tasks.jsonl (exactly index, params and task_seed), as
// sweep::parse_task_line reads them. False, with `params` partly filled, for any line the
// scan declines.
bool scan_task_params(std::string_view line, sweep::Assignment& params);

}  // namespace aihpc::collect
