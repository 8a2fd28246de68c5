// libFuzzer target: a task's result, SWEEP/results/<I>.json, as every reader of the
// results dir takes it: the quick exit-code scan (resubmit --failed, collect --status),
// the table of aihpc-collect, the ranking of refine; and what comes into a result: the
// task's $AIHPC_METRICS_FILE, and the rounds record of a closed loop. Results are
// written by the user's tasks and may be anything.
// Input: the first byte picks the reader ('0' to '4'), the rest is the file's text.
#include <cstddef>
#include <cstdint>
#include <string>

#include "collect/result_table.hpp"
#include "common/error.hpp"
#include "common/json.hpp"
#include "fuzz_support.hpp"
#include "sweep/refine.hpp"
#include "sweep/results.hpp"
#include "sweep/rounds.hpp"
#include "sweep/runner.hpp"
#include "sweep/spec.hpp"
#include "sweep/sweep_dir.hpp"

namespace {

// A one-task sweep dir whose results/0.json each input replaces.
const aihpc::sweep::SweepDir& sweep() {
    static const aihpc::sweep::SweepDir dir = [] {
        using namespace aihpc::sweep;
        std::string path = aihpc::fuzz::scratch_dir() + "/sweep";
        write_sweep_dir(parse_spec(R"({"name":"fuzz","axes":[{"param":"lr","values":[0.1]}],"command":"true"})"), path,
                        {"fuzz", "2024-06-11T00:00:00Z", ""});
        return open_sweep(path);
    }();
    return dir;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    sweep();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
    using namespace aihpc::sweep;
    try {
        unsigned reader = static_cast<unsigned char>(data[0] - '0') % 5;
        if (reader == 1 || reader == 2)
            aihpc::fuzz::write_whole_file(result_path(sweep(), sweep().spec.final_phase(), 0), text);
        switch (reader) {
        case 0:
            result_exit_code(text);
            judge_result(text, 0);
            break;
        case 1: aihpc::collect::read_results(sweep(), {.include_missing = true, .phase = {}}); break;
        case 2: best_tasks(sweep(), "loss", false, 1); break;
        case 3: {
            std::string metrics = metrics_to_json(text);
            aihpc::JsonRef doc = aihpc::parse_json(metrics);
            aihpc::fuzz::check(doc && json_object_is_type(doc.get(), json_type_object), "metrics_to_json gives a JSON object");
            break;
        }
        case 4: parse_rounds_json(text); break;
        }
    } catch (const aihpc::Error&) {
        // A correct refusal.
    }
    return 0;
}
