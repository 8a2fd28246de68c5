// Context: remote task_init, as the user, in the forked task just before exec.
#include "plugin/task_argv.hpp"

#include <cstdlib>
#include <cstring>

#include "config.h"
#include "common/error.hpp"
#include "common/text.hpp"
#include "container/launch.hpp"

namespace aihpc::plugin {

#if HAVE_DECL_SPANK_PREPEND_TASK_ARGV

std::optional<std::string> put_in_front_of_task(const Spank& spank, const std::vector<std::string>& words,
                                                const std::string& what) {
    std::vector<const char*> argv;
    for (const std::string& w : words) argv.push_back(w.c_str());
    if (spank_prepend_task_argv(spank.handle(), static_cast<int>(argv.size()), argv.data()) != ESPANK_SUCCESS)
        throw Error(what + ": Slurm refused to start the task through " + words.front());
    return std::nullopt;
}

#else

std::optional<std::string> put_in_front_of_task(const Spank& spank, const std::vector<std::string>& words,
                                                const std::string& what) {
    auto major = parse_uint(spank.str(S_SLURM_VERSION_MAJOR).value_or(""));
    auto minor = parse_uint(spank.str(S_SLURM_VERSION_MINOR).value_or(""));
    if (!major || !minor ||
        !container::task_argv_is_step_argv(static_cast<unsigned>(*major), static_cast<unsigned>(*minor)))
        throw Error(what + ": this Slurm (" + spank.str(S_SLURM_VERSION).value_or("unknown version") +
                    ") cannot start tasks through aihpc; rebuild aihpc against its headers");
    int argc = 0;
    char** argv = nullptr;
    if (spank_get_item(spank.handle(), S_JOB_ARGV, &argc, &argv) != ESPANK_SUCCESS || !argv || argc < 1 || !argv[0])
        throw Error(what + ": the task has no command to run");
    char* program = ::strdup(words.front().c_str());
    if (!program) throw Error(what + ": out of memory");
    std::string displaced = argv[0];
    // The array is Slurm's, in this task's own memory; the task execs right after.
    argv[0] = program;
    return displaced;
}

#endif

}  // namespace aihpc::plugin
