// Registration of the --aihpc-* options, and the one way to read them.
#pragma once
#include <string>

#include "config/user_options.hpp"
#include "plugin/spank_api.hpp"

namespace aihpc::plugin {

// Registers every option of config::option_table(). Called from slurm_spank_init in
// every context that parses options.
int register_options(const Spank& spank);

// The variable through which Slurm forwards an option given at submit to the job's
// steps: SLURM_SPANK__SLURM_SPANK_OPTION_aihpc_aihpc_stage_out.
std::string forwarded_option_variable(const config::OptionSpec& spec);

// Fills state().raw_options for options the callbacks did not see, from the AIHPC_*
// variables (process env locally, job env remotely), then parses them into
// state().options. Throws aihpc::Error on a bad value.
void resolve_options(const Spank& spank);

}  // namespace aihpc::plugin
