// libFuzzer target: the option grammar and the site-key parser must turn any input
// into either a value or an aihpc::Error, never a crash, hang or other exception.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/text.hpp"
#include "config/site_config.hpp"
#include "config/user_options.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    // First byte picks the parser; the rest is the text.
    std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
    using namespace aihpc::config;
    try {
        switch (data[0] % 8) {
        case 0: parse_stage(text); break;
        case 1: parse_stage_out(text); break;
        case 2: parse_container_binds(text); break;
        case 3: parse_bind(text); break;
        case 4: parse_site_config(aihpc::split(text, ' ')); break;
        case 5: parse_size_limit("cache_max", text); break;
        case 6: aihpc::parse_id_list(text); break;
        case 7: {
            auto options = parse_user_options({{"aihpc-stage", text}, {"aihpc-stage-out", text}});
            check_job_shape(options, 2);
            break;
        }
        }
    } catch (const aihpc::Error&) {
    }
    return 0;
}
