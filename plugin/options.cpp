// Option callbacks may fire more than once (sbatch re-parses #SBATCH lines; slurmstepd
// replays inherited and own options), and a failing callback in remote context is only
// logged. So a callback stores the raw text and nothing else; validation happens once,
// in init_post_opt. The same rule holds in every context: a command-line option, else
// its AIHPC_* variable. Steps of a batch job do not inherit step-local options because
// the batch step removes both forms from the job's environment.
#include "plugin/options.hpp"

#include <cstring>
#include <vector>

#include "plugin/plugin_state.hpp"

namespace aihpc::plugin {

namespace {

int store_option(int index, const char* optarg, int /*remote*/) {
    const auto& table = config::option_table();
    if (index < 0 || static_cast<std::size_t>(index) >= table.size()) return -1;
    // Slurm forwards a flag given to sbatch to its steps as the text "(null)".
    std::string value = optarg && std::strcmp(optarg, "(null)") != 0 ? optarg : "";
    state().raw_options[table[static_cast<std::size_t>(index)].name] = value;
    return 0;
}

}  // namespace

std::string forwarded_option_variable(const config::OptionSpec& spec) {
    std::string name = std::string("SLURM_SPANK__SLURM_SPANK_OPTION_aihpc_") + spec.name;
    for (char& c : name)
        if (c == '-') c = '_';
    return name;
}

int register_options(const Spank& spank) {
    const auto& table = config::option_table();
    for (std::size_t i = 0; i < table.size(); ++i) {
        const config::OptionSpec& spec = table[i];
        struct spank_option option;
        std::memset(&option, 0, sizeof option);
        option.name = const_cast<char*>(spec.name);
        option.arginfo = const_cast<char*>(spec.arg_info);
        option.usage = const_cast<char*>(spec.usage);
        option.has_arg = spec.arg_info == nullptr ? 0 : (spec.arg_optional ? 2 : 1);
        option.val = static_cast<int>(i);
        option.cb = store_option;
        spank_err_t rc = spank_option_register(spank.handle(), &option);
        if (rc != ESPANK_SUCCESS) {
            slurm_error("aihpc: cannot register option --%s: %s", spec.name, spank_strerror(rc));
            return -1;
        }
    }
    return 0;
}

void resolve_options(const Spank& spank) {
    PluginState& st = state();
    for (const config::OptionSpec& spec : config::option_table()) {
        if (st.raw_options.count(spec.name)) continue;
        if (auto value = spank.getenv(spec.env_var)) st.raw_options[spec.name] = *value;
    }
    st.options = config::parse_user_options(st.raw_options);
}

}  // namespace aihpc::plugin
