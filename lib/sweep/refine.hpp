// The next round of a sweep, around its best tasks: each of the top K becomes a union
// member whose numeric parameters are drawn from a window around its values, shrunk
// by a factor of the original span; everything else stays fixed.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "sweep/sweep_dir.hpp"

namespace aihpc::sweep {

// The span a numeric parameter covers in a spec.
struct ParamRange {
    double lo = 0, hi = 0;
    bool log = false;      // logspace, loguniform
    bool integer = false;  // integer range, int, integer values
};

std::map<std::string, ParamRange> param_ranges(const SweepSpec& spec);

struct RankedTask {
    TaskRecord task;
    double metric = 0;
};

// The best `top` finished tasks by a metric of the last phase's results.
std::vector<RankedTask> best_tasks(const SweepDir& sweep, const std::string& metric, bool maximize, std::size_t top);

// The refined spec: a random sweep of `trials` trials (same command, phases and slurm
// options, seed + 1) over one union member per distinct best task.
SweepSpec refine_spec(const SweepSpec& spec, const std::vector<TaskRecord>& best, double shrink, std::uint64_t trials);

}  // namespace aihpc::sweep
