// libFuzzer target: the sweep spec (SPEC.json of aihpc-sweep expand). Every input must
// end as a spec or an aihpc::Error; a spec that parses must survive normalization, as
// sweep.json stores it and every later command reads it back.
// Input: the spec's JSON text.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/error.hpp"
#include "fuzz_support.hpp"
#include "sweep/spec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    using namespace aihpc::sweep;
    try {
        SweepSpec spec = parse_spec(text);
        std::string normalized = normalize(spec);
        aihpc::fuzz::check(normalize(parse_spec(normalized)) == normalized, "parse_spec(normalize(spec)) is the same spec");
    } catch (const aihpc::Error&) {
        // A correct refusal.
    }
    return 0;
}
