// The next round of a sweep, around its best tasks: each of the top K becomes a union
// member whose numeric parameters are drawn from a window around its values, shrunk
// by a factor of the original span; everything else stays fixed.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "sweep/results.hpp"
#include "sweep/sweep_dir.hpp"

namespace aihpc::sweep {

// The span a numeric parameter covers in a spec.
struct ParamRange {
    double lo = 0, hi = 0;
    bool log = false;      // logspace, loguniform
    bool integer = false;  // integer range, int, integer values
    // A parameter given only by lists of values (values axes, zip columns): those values,
    // in numeric order. A refined round picks among its neighbours in the list, so that
    // bs=[64,128,256] never becomes 91, and a log-spaced list stays log-spaced.
    std::vector<Scalar> list;
};

std::map<std::string, ParamRange> param_ranges(const SweepSpec& spec);

struct RankedTask {
    TaskRecord task;          // the configuration's first replicate
    double metric = 0;        // its metric, or its replicates' aggregate
    std::size_t replicates = 1;  // the successful replicates counted
};

// The best `top` configurations by a metric of the last phase's results, from tasks that
// succeeded only. The replicates of one configuration (differing only in `repeat`) count
// once: by the best of them, or with `how`, by their mean or median.
std::vector<RankedTask> best_tasks(const SweepDir& sweep, const std::string& metric, bool maximize, std::size_t top,
                                   Aggregate how = Aggregate::none);

// The refined spec: a random sweep of `trials` trials (same command, phases and slurm
// options, seed + 1) over one union member per distinct best task.
SweepSpec refine_spec(const SweepSpec& spec, const std::vector<TaskRecord>& best, double shrink, std::uint64_t trials);

// How a refined round is expanded: it keeps the first round's exclusion rules, which its
// narrower space may no longer reach; its size was bounded by the first round's.
ExpandOptions refined_expand_options();

}  // namespace aihpc::sweep
