// The parameter shorthand of the command line (aihpc-sweep(1), "Parameter shorthand"),
// compiled one-to-one into the JSON spec, which parse_spec() then reads like any spec
// file:
//
//   lr=1e-4,3e-4,1e-3            values
//   bs=range(32,129,32)          range, linspace, logspace: (a,b[,step or n])
//   lr=loguniform(1e-5,1e-2,n=6) uniform, loguniform, int, normal: (a,b,n=COUNT)
//   zip(wd=[0,0.05],beta2=[0.95,0.999])
//   momentum=0.9,0.99@opt=sgd    conditional: only in tasks whose opt is sgd
#pragma once
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "sweep/spec.hpp"

namespace aihpc::sweep {

// Options of `expand` that add to or override the spec, whichever form it came in.
struct SpecOverrides {
    std::optional<std::uint64_t> random_trials;  // --random N
    std::optional<std::uint64_t> seed;           // --seed S
    std::optional<std::uint64_t> repeat;         // --repeat N
    std::vector<std::string> exclude;            // --exclude K=V,... (one rule each)
    std::vector<std::string> command;            // words after --
};

// Compiles shorthand terms (and the overrides) into a JSON spec document.
// `notes`, when given, gets a line for each number whose text says more than the number
// (ver=1.10 is 1.1, id=007 is 7), which a quoted value would keep.
std::string compile_shorthand(const std::vector<std::string>& terms, const SpecOverrides& overrides,
                              std::vector<std::string>* notes = nullptr);

// Applies the overrides to a JSON spec document, returning the new document.
std::string apply_overrides(const std::string& json_text, const SpecOverrides& overrides);

// A shorthand value as JSON text: integers and numbers (shortest round-trip), booleans
// as JSON and YAML write them (true, True, TRUE, false, ...), quoted strings, and
// anything else as a string. In a list, [a,b] is a,b; a list with any text value is all
// text, each value as written; the same value twice is an error.
std::string shorthand_value(const std::string& token);

// "opt=sgd,bs=96" as a JSON object.
std::string exclusion_rule(const std::string& text);

// The spec of an expand command line, parsed and checked to expand, and its JSON text:
// one word naming a file (one that exists, or a name ending in .json) is a JSON spec,
// which the overrides change; other words are shorthand terms. A file's errors name the
// file, with a hint where it looks like YAML. The shorthand's notes go to `notes`.
struct CommandLineSpec {
    std::string text;
    SweepSpec spec;
};
CommandLineSpec read_command_line_spec(const std::vector<std::string>& words, const SpecOverrides& overrides, std::ostream& notes);

}  // namespace aihpc::sweep
