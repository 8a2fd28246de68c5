// What the tests of lib/sweep's submission and preview start from: a sweep dir made from
// a spec in the test's scratch dir, and submit options naming a tool and its version.
#pragma once
#include <cstdint>
#include <string>

#include "sweep/spec.hpp"
#include "sweep/submit_plan.hpp"
#include "sweep/sweep_dir.hpp"
#include "temp_dir.hpp"

inline aihpc::sweep::SweepDir make_sweep(const TempDir& tmp, const std::string& spec_json) {
    std::string dir = tmp.path() + "/sweep";
    aihpc::sweep::write_sweep_dir(aihpc::sweep::parse_spec(spec_json), dir,
                                  aihpc::sweep::Provenance{"test", "2026-01-01T00:00:00+00:00", ""});
    return aihpc::sweep::open_sweep(dir);
}

inline aihpc::sweep::SubmitOptions options_of(std::uint64_t max_array_size) {
    aihpc::sweep::SubmitOptions o;
    o.max_array_size = max_array_size;
    o.tool_path = "/bin/aihpc-sweep";
    o.tool_version = "test";
    return o;
}
