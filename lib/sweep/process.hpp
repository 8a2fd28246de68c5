// The sweep tools run commands through the one in lib/common.
#pragma once
#include "common/process.hpp"

namespace aihpc::sweep {
using aihpc::capture_output;
using aihpc::CommandOutput;
}  // namespace aihpc::sweep
