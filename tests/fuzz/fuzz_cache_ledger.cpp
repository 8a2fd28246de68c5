// libFuzzer target: root's cache ledger (LOCAL_ROOT/cache/ledger, stage/cache_ledger.hpp).
// Only root writes it, but a damaged or truncated one must cost a remeasure, never a
// crash nor a wrong number: malformed lines are skipped, sums saturate. What parses
// must survive its own round trip, as the ledger is read, updated and written again at
// every prepare. The book of copies in flight (cache/promises) is held to the same.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/error.hpp"
#include "fuzz_support.hpp"
#include "stage/cache_ledger.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string text(reinterpret_cast<const char*>(data), size);
    using namespace aihpc::stage;
    using aihpc::fuzz::check;
    try {
        CacheLedger ledger = CacheLedger::parse(text);
        std::string once = ledger.serialize();
        CacheLedger back = CacheLedger::parse(once);
        check(back.records.size() == ledger.records.size(), "every parsed record reads back");
        check(back.serialize() == once, "a parsed ledger reads back as itself");
        for (const LedgerRecord& r : ledger.records) {
            check(ledger.user_bytes(r.uid) >= r.bytes, "a user's bytes saturate, never wrap");
            check(ledger.user_inodes(r.uid) >= r.inodes, "a user's inodes saturate, never wrap");
            check(ledger.other_users_bytes(r.uid + 1) >= r.bytes || r.uid + 1 == 0, "others' bytes saturate, never wrap");
        }
    } catch (const aihpc::Error&) {
        // A correct refusal.
    }
    try {
        std::vector<RoomPromise> book = parse_room_promises(text);
        std::string once = format_room_promises(book);
        check(format_room_promises(parse_room_promises(once)) == once, "a parsed book of promises reads back as itself");
        for (const RoomPromise& p : book) {
            PromisedBytes sum = promised_bytes(book, p.uid, 0);
            check(sum.own >= p.bytes, "a user's promises saturate, never wrap");
        }
    } catch (const aihpc::Error&) {
    }
    return 0;
}
