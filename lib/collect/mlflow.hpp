// An MLflow file store (the layout mlflow's FileStore reads: DIR/<experiment>/meta.yaml,
// DIR/<experiment>/<run>/{meta.yaml,params,metrics,tags}): one experiment per sweep
// name, one parent run per sweep dir and one child run per task with a result. Run ids
// derive from the spec hash, the sweep dir and the task index, so that collecting again
// replaces the same runs instead of adding copies.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "collect/result_table.hpp"
#include "sweep/sweep_dir.hpp"

namespace aihpc::collect {

struct MlflowSummary {
    std::string root;            // absolute DIR
    std::string experiment_id;
    std::string parent_run_id;
    std::size_t child_runs = 0;
    std::vector<std::string> skipped;  // names MLflow would refuse as file names
};

MlflowSummary write_mlflow(const ResultTable& table, const sweep::SweepDir& sweep, const std::string& dir);

// 32 hex digits, as MLflow's run ids.
std::string mlflow_run_id(std::string_view seed);

// Milliseconds since the epoch of an RFC 3339 time ("2024-06-11T12:00:00+02:00").
std::optional<std::int64_t> rfc3339_millis(std::string_view text);

// A YAML single-quoted scalar.
std::string yaml_quote(std::string_view text);

// A param, metric or tag name MLflow accepts: letters, digits, _ - . space and /, no
// leading /, no "..".
bool mlflow_name_ok(std::string_view name);
// A metric name MLflow refuses, made one it takes: each character it refuses and each
// empty, '.' or '..' path component becomes '_' ("x/." -> "x/_", "." -> "_").
std::string mlflow_escaped_name(std::string_view name);

}  // namespace aihpc::collect
