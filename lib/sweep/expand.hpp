// Expansion of a spec into its tasks, streamed: an odometer over per-axis value lists
// (a union is a sub-odometer per branch), so that memory stays bounded by the spec,
// not by the number of tasks.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "sweep/spec.hpp"

namespace aihpc::sweep {

// A uniform draw in [0, 1) that depends only on (seed, name, n, stream): a counter-based
// hash, so that adding an axis leaves every other axis's draws unchanged.
double unit_draw(std::uint64_t seed, std::string_view name, std::uint64_t n, unsigned stream = 0);

// Draw number n of a distribution axis (uniform, loguniform, int, normal).
Scalar draw_value(const Axis& axis, std::uint64_t seed, std::uint64_t n);

// The most tasks a sweep may have at all; --max-tasks sets the limit below it.
constexpr std::uint64_t kMaxSweepTasks = std::uint64_t(1) << 48;

// A leaf axis's number of values, and its k-th value, computed without a value list. A
// grid's int axis draws without replacement: its n values are distinct.
std::uint64_t axis_length(const Axis& axis);
Scalar axis_value_at(const Axis& axis, std::uint64_t seed, std::uint64_t k);
// The number of integers an int axis spans (0: all 2^64).
std::uint64_t int_span(const Axis& axis);

// The value list of a leaf axis in a grid sweep (values, range, linspace, logspace, or
// `count` draws of a distribution, or 0..N-1 for repeat).
std::vector<Scalar> axis_values(const Axis& axis, std::uint64_t seed);

// task_seed: a hash of the sweep seed and the task's canonical parameter text (the
// params object as written in tasks.jsonl), kept to 32 bits so that every RNG takes it.
std::uint64_t task_seed(std::uint64_t seed, std::string_view params_object);

struct Node;
struct TrialAxis;

class TaskStream {
public:
    explicit TaskStream(const SweepSpec& spec);
    ~TaskStream();
    TaskStream(const TaskStream&) = delete;
    TaskStream& operator=(const TaskStream&) = delete;

    // Moves to the next task that no exclusion rule removes; false at the end.
    bool next();
    std::uint64_t index() const { return index_; }
    // The params object of the current task, braces included: {"lr":0.001,"bs":32}
    std::string_view params() const { return params_; }
    std::uint64_t task_seed() const;
    // Tasks before exclusions: an upper bound known up front (it counts a random
    // sweep's repeat only where it is not inside a union branch)...
    std::uint64_t product_size() const { return product_size_; }
    // ...and the exact number so far: the tasks next() has looked at, excluded or not.
    std::uint64_t generated() const { return generated_; }
    // How many tasks each exclusion rule matched so far, in spec order.
    const std::vector<std::uint64_t>& exclude_hits() const { return rule_hits_; }
    // A random sweep over a finite space: its number of distinct configurations (repeat
    // left out), else 0. When it is no more than the trials asked, each runs once.
    std::uint64_t distinct_configurations() const { return distinct_; }
    bool enumerates_space() const { return enumerate_; }

private:
    bool step();
    bool excluded();
    void build_trial();

    SweepSpec spec_;  // a copy: a stream may outlive the spec it was made from
    std::vector<Node> nodes_;
    std::vector<TrialAxis> trial_axes_;  // random sweeps only; points into spec_
    std::uint64_t product_size_ = 0;
    std::uint64_t index_ = 0;
    std::uint64_t produced_ = 0;
    std::uint64_t generated_ = 0;
    std::uint64_t trial_ = 0;   // trials accepted
    std::uint64_t draw_ = 0;    // draw numbers used (a repeated configuration is drawn again)
    std::uint64_t distinct_ = 0;
    bool enumerate_ = false;
    bool exhausted_ = false;
    std::unordered_set<std::uint64_t> seen_trials_;
    std::vector<std::uint64_t> rule_hits_;
    bool started_ = false;
    bool done_ = false;
    std::string params_;
    std::vector<const std::pair<std::string, Scalar>*> cells_;
    std::vector<std::size_t> starts_, cell_starts_;  // where each top-level node's text and cells begin
};

}  // namespace aihpc::sweep
