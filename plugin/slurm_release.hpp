// The Slurm release aihpc.so was built against must be the one that loads it. Slurm's
// own check compares only the SPANK plugin ABI number, which stays the same across
// releases while the structures and the task launch path behind it change. A release
// is Slurm's major version, YY.MM (22.05, 24.11): micro versions of one release mix.
// This header is pure (no Slurm), so the unit tests cover it.
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace aihpc::plugin {

// "YY.MM" of a version string such as "24.11.5" or "26.05.0-0rc1"; nullopt when the
// text does not start with two dot-separated numbers.
std::optional<std::string> slurm_release_of(std::string_view version);

// Nullopt when `running` (the version of the slurmd, slurmstepd, srun or sbatch that
// loads the plugin) is of the same release as `built`; otherwise the message that
// refuses it, naming both. An unreadable running version is not refused.
std::optional<std::string> slurm_release_mismatch(std::string_view built, std::string_view running);

}  // namespace aihpc::plugin
