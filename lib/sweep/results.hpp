// What the results/ folder says about a sweep's tasks, from the result files alone.
#pragma once
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "sweep/sweep_dir.hpp"

namespace aihpc::sweep {

struct ResultScan {
    std::set<std::uint64_t> done;    // the last phase ended with exit code 0
    std::set<std::uint64_t> failed;  // some phase ended with a non-zero exit code
    std::set<std::uint64_t> missing(std::uint64_t tasks) const;
};

ResultScan scan_results(const SweepDir& sweep);

// The top-level exit_code of one result document, or nullopt if it has none; a
// parameter or metric named exit_code is not it.
std::optional<long> result_exit_code(std::string_view text);

// Slurm array syntax, "3,7,12-15", into indices; throws on anything else.
std::set<std::uint64_t> parse_index_list(const std::string& text);

}  // namespace aihpc::sweep
