// libFuzzer target: what aihpc-sweep reads from its command line: the parameter
// shorthand with the expand options that add to it (--repeat, --exclude, --random,
// --seed, the template after --), and the index lists of resubmit --indices. A
// shorthand that compiles must give a spec that parse_spec accepts or refuses cleanly.
// Input: one command-line word a line, as `aihpc-sweep expand` would get them; a line
// "--indices LIST" is read as resubmit's list instead.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/text.hpp"
#include "sweep/results.hpp"
#include "sweep/shorthand.hpp"
#include "sweep/spec.hpp"

namespace {

std::uint64_t number(const std::string& text) {
    auto value = aihpc::parse_uint(text);
    if (!value) throw aihpc::Error("not a number: " + text);
    return *value;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string text(reinterpret_cast<const char*>(data), size);
    using namespace aihpc::sweep;
    try {
        std::vector<std::string> terms;
        SpecOverrides overrides;
        std::vector<std::string> lines = aihpc::split(text, '\n');
        for (std::size_t i = 0; i < lines.size(); ++i) {
            const std::string& line = lines[i];
            auto option = [&](const char* name) { return aihpc::starts_with(line, std::string(name) + " "); };
            std::string value = line.substr(line.find(' ') == std::string::npos ? line.size() : line.find(' ') + 1);
            if (option("--indices")) parse_index_list(value);
            else if (option("--repeat")) overrides.repeat = number(value);
            else if (option("--random")) overrides.random_trials = number(value);
            else if (option("--seed")) overrides.seed = number(value);
            else if (option("--exclude")) overrides.exclude.push_back(value);
            else if (line == "--") overrides.command.assign(lines.begin() + static_cast<long>(i) + 1, lines.end()), i = lines.size();
            else terms.push_back(line);
        }
        parse_spec(compile_shorthand(terms, overrides));
    } catch (const aihpc::Error&) {
        // A correct refusal.
    }
    return 0;
}
