// libFuzzer target: one line of SWEEP/tasks.jsonl, as `aihpc-sweep run` and `params`
// read it through the task index. The file is the user's own and may be edited or torn.
// Input: the line.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/error.hpp"
#include "sweep/sweep_dir.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view line(reinterpret_cast<const char*>(data), size);
    try {
        aihpc::sweep::parse_task_line(line);
    } catch (const aihpc::Error&) {
        // A correct refusal.
    }
    return 0;
}
