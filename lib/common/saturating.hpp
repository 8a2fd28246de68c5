// Sums and differences of sizes that never wrap: a size a user or a file claims may be
// anything, and a wrapped sum would make a full cache look empty.
#pragma once
#include <cstdint>

namespace aihpc {

constexpr std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) { return b > UINT64_MAX - a ? UINT64_MAX : a + b; }
// a - b, or 0 when b is larger.
constexpr std::uint64_t saturating_sub(std::uint64_t a, std::uint64_t b) { return a > b ? a - b : 0; }

}  // namespace aihpc
