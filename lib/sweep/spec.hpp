// The sweep spec: the JSON document of aihpc-sweep(1), "The spec", as plain values.
// parse_spec() validates everything up front and names the path into the document in
// every error, so that a sweep that expands is a sweep that can run.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace aihpc::sweep {

// One parameter value, kept in the two forms the tools need: canonical JSON text
// (numbers as the shortest round-trip text) and the plain text substituted into commands.
struct Scalar {
    std::string json;
    std::string plain;
    bool operator==(const Scalar& other) const { return json == other.json; }
};

Scalar scalar_int(std::int64_t value);
Scalar scalar_double(double value);  // throws aihpc::Error on NaN or infinity
Scalar scalar_string(std::string_view value);
Scalar scalar_bool(bool value);

// A numeric argument of range/linspace/...: integers stay integers.
struct Number {
    bool is_int = true;
    std::int64_t i = 0;
    double d = 0;
    double value() const { return is_int ? static_cast<double>(i) : d; }
};

enum class AxisKind { values, range, linspace, logspace, uniform, loguniform, int_, normal, zip, union_, repeat };
const char* axis_kind_name(AxisKind kind);

struct Axis;

using Assignment = std::vector<std::pair<std::string, Scalar>>;

// A sub-space of a union: its fixed values plus its own axes (a product).
struct Branch {
    Assignment fixed;
    std::vector<Axis> axes;
};

struct Axis {
    AxisKind kind = AxisKind::values;
    std::string param;                        // leaf kinds
    std::vector<Scalar> values;               // values
    std::vector<Number> args;                 // range, linspace, logspace, distributions
    std::uint64_t count = 0;                  // distributions (0: not given)
    std::vector<std::string> zip_names;       // zip
    std::vector<std::vector<Scalar>> zip_columns;
    std::vector<Branch> branches;             // union
    std::uint64_t repeat = 0;                 // repeat
    std::string path;                         // where it came from, for messages
};

struct Phase {
    std::string name;
    std::string after;                       // empty: no dependency
    std::vector<std::string> sbatch;
    std::vector<std::string> aihpc;
    std::vector<std::string> command;        // empty: the spec's command
    bool command_given = false;
};

struct SlurmOptions {
    std::uint64_t throttle = 0;              // 0: none
    std::uint64_t max_array_size = 0;        // 0: auto
    std::uint64_t pack = 1;
    std::vector<std::string> sbatch;
    std::vector<std::string> aihpc;
};

enum class Method { grid, random };

// Early stopping (aihpc-sweep(1), EARLY STOPPING): the configurations of the space run
// in rungs of growing budget, and only the best of each rung go on. `resource` is the
// parameter that carries the budget; no axis gives it.
enum class ScheduleType { sha, hyperband, asha };
const char* schedule_type_name(ScheduleType type);

struct Schedule {
    ScheduleType type = ScheduleType::hyperband;
    std::string resource;
    std::uint64_t min = 1, max = 1, eta = 3;
    std::string metric;
    bool maximize = false;                   // mode "max"
};

struct SweepSpec {
    std::string name = "sweep";
    std::uint64_t seed = 0;
    Method method = Method::grid;
    std::uint64_t trials = 0;                // random
    std::vector<Axis> axes;
    std::vector<Assignment> exclude;
    std::vector<std::string> command;        // words
    SlurmOptions slurm;
    std::vector<Phase> phases;               // never empty after parsing: one "main" phase by default
    std::optional<Schedule> schedule;        // early stopping; none: every task runs once

    const Phase& final_phase() const { return phases.back(); }
    const std::vector<std::string>& command_of(const Phase& phase) const {
        return phase.command_given ? phase.command : command;
    }
};

// Parses and validates a JSON spec. Errors read "sweep spec: PATH: what is wrong".
SweepSpec parse_spec(std::string_view json_text);

// What a new sweep must satisfy beyond parse_spec (which also reads the specs of sweeps
// already written, and so stays as lenient as when they were): no parameter name that
// starts with '-', no two names that give the same AIHPC_PARAM_ variable, no value twice
// in a values axis, no "{name" left open in a command. Throws like parse_spec.
void check_spec_to_expand(const SweepSpec& spec);

// Refuses a spec with a phase that has no command (neither its own nor the spec's): it
// would expand and submit, then fail in every array task.
void require_commands(const SweepSpec& spec);

// The normalized spec as canonical JSON (defaults filled in, numbers shortest
// round-trip, fixed key order). parse_spec(normalize(s)) describes the same tasks.
std::string normalize(const SweepSpec& spec);

// The parameters of a random sweep whose distribution gives a count (n=), which a random
// sweep does not use: each trial draws every axis once. Empty for a grid.
std::vector<std::string> counts_unused(const SweepSpec& spec);

// Every parameter name a task may carry, in spec order (including repeat).
std::vector<std::string> parameter_names(const SweepSpec& spec);

// Numbers in the sweep dir's JSON text (quoting is common/json.hpp's json_quote).
std::string format_double(double value);  // shortest round-trip text, always with a fraction or an exponent

}  // namespace aihpc::sweep
