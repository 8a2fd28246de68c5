// libFuzzer target: the option grammar (--aihpc-* values) and the site keys
// (plugstack.conf arguments). Every input must end as a value or an aihpc::Error, never a
// crash, hang or other exception.
// Input: the first byte picks the parser ('0' to '9'), the rest is its text.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/text.hpp"
#include "config/site_config.hpp"
#include "config/user_options.hpp"

namespace {

// "aihpc-stage=a,b\naihpc-bind=auto": what Slurm hands the plugin, one option a line.
aihpc::config::RawOptions raw_options(const std::string& text) {
    aihpc::config::RawOptions raw;
    for (const std::string& line : aihpc::split(text, '\n')) {
        auto eq = line.find('=');
        raw[line.substr(0, eq)] = eq == std::string::npos ? "" : line.substr(eq + 1);
    }
    return raw;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
    using namespace aihpc::config;
    try {
        switch (static_cast<unsigned char>(data[0] - '0') % 10) {
        case 0: parse_stage(text); break;
        case 1: parse_stage_out(text); break;
        case 2: parse_container_binds(text); break;
        case 3: parse_bind(text); break;
        case 4: parse_site_config(aihpc::split(text, ' ')); break;
        case 5: parse_size_limit("cache_max", text).resolve(1ULL << 40); break;
        case 6: aihpc::parse_id_list(text); break;
        case 7: check_job_shape(parse_user_options(raw_options(text)), 2); break;
        case 8: parse_duration("stage_timeout", text); break;
        case 9: parse_dist("--aihpc-dist", text), default_stage_name(text); break;
        }
    } catch (const aihpc::Error&) {
        // A correct refusal.
    }
    return 0;
}
