// libFuzzer target: root's read of what a node helper sends back on its result socket
// (take_records in lib/common/node_helper.cpp). The helper runs as the job's user for
// the stage-in and stage-out, so every byte of it is the user's; slurmstepd parses it
// as root. Records are a kind, a decimal length, ':' and that many bytes, and arrive in
// pieces of any size.
// Input: the first byte says where the rest is cut in two, as two reads would cut it.
//
// take_records has internal linkage, so the target includes its file and fuzzes that
// very code; nothing of the library's own copy of the file is then linked.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/node_helper.cpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    std::string input(reinterpret_cast<const char*>(data) + 1, size - 1);
    std::size_t cut = input.empty() ? 0 : data[0] % (input.size() + 1);
    using aihpc::fuzz::check;

    aihpc::Records records;
    std::string pending = input.substr(0, cut);
    aihpc::take_records(pending, records);
    check(pending.size() <= cut, "what is left of one read is never more than it");
    pending += input.substr(cut);
    aihpc::take_records(pending, records);
    check(pending.size() <= input.size(), "what is left is never more than what came");
    std::size_t bodies = records.result.size() + records.error.size();
    for (const std::string& note : records.notes) bodies += note.size();
    check(bodies <= input.size(), "records never hold more than what came");
    check(records.has_error || records.error.empty(), "an error text comes only with an error record");

    // A whole input read at once parses the same way.
    aihpc::Records whole;
    std::string all = input;
    aihpc::take_records(all, whole);
    check(all.size() <= input.size(), "what is left is never more than what came");
    return 0;
}
