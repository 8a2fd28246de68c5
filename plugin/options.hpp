// Registration of the --aihpc-* options, and the one way to read them.
#pragma once
#include "plugin/spank_api.hpp"

namespace aihpc::plugin {

// Registers every option of config::option_table(). Called from slurm_spank_init in
// every context that parses options.
int register_options(const Spank& spank);

// Fills state().raw_options for options the callbacks did not see, from the AIHPC_*
// variables (process env locally, job env remotely), then parses them into
// state().options. Throws aihpc::Error on a bad value.
void resolve_options(const Spank& spank);

}  // namespace aihpc::plugin
