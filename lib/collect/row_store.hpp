// Rows as the outputs take them, one at a time, and the rows of a sweep kept compact:
// each row encoded into a few bytes of an arena (names interned, values as their text),
// and only the rows the output shows (a bounded heap for --top K, sort keys beside the
// rows for a full sort). What lets aihpc-collect hold a million rows in little memory.
#pragma once
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "collect/result_table.hpp"
#include "sweep/sweep_dir.hpp"

namespace aihpc::collect {

// Parameter and metric names, each kept once; shared by the reader threads.
class NameTable {
public:
    std::uint32_t intern(std::string_view name);
    const std::string& name(std::uint32_t id) const;  // not while another thread interns

private:
    struct Hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>()(s); }
    };
    std::mutex lock_;
    std::deque<std::string> names_;
    std::unordered_map<std::string_view, std::uint32_t, Hash, std::equal_to<>> ids_;
};

// What of a row an output shows: its columns alone (table, csv, markdown) or all of it
// (jsonl: times, job ids, why it failed). Sacct records are never encoded.
enum class RowDetail { columns, full };

// A row as bytes, and back. Decoding gives the row that was encoded, every text and
// value exact; with RowDetail::columns, the fields no column shows come back empty.
// `names` is the thread's own view of the shared table (it locks only for new names).
class NameCache {
public:
    explicit NameCache(NameTable& table) : table_(table) {}
    std::uint32_t id(const std::string& name);

private:
    NameTable& table_;
    std::unordered_map<std::string, std::uint32_t> ids_;
};
void encode_row(const ResultRow& row, RowDetail detail, NameCache& names, std::string& out);
void decode_row(const char* bytes, const NameTable& names, ResultRow& row);

struct CollectOptions {
    bool include_missing = false;
    std::string phase;  // as ReadOptions::phase
    std::optional<SortKey> sort;
    std::size_t top = 0;  // 0: every row
    RowDetail detail = RowDetail::full;
};

// The rows of a sweep as collect_rows keeps them: the header (names, counts) of a
// ResultTable whose rows are kept here, compact, in output order.
class CollectedRows : public RowSource {
public:
    ResultTable header;            // every field but rows; done and failed stay empty
    std::vector<TaskState> state;  // each task's state (missing: no result)

    std::size_t size() const override { return order_.size(); }
    const ResultRow& row(std::size_t k) const override;
    // Failed and missing indices: what `aihpc-sweep resubmit` would run again.
    std::set<std::uint64_t> failed_or_missing() const;

private:
    friend CollectedRows collect_rows(const sweep::SweepDir& sweep, const CollectOptions& options);
    std::unique_ptr<NameTable> names_ = std::make_unique<NameTable>();
    std::vector<std::unique_ptr<char[]>> blocks_;  // the arenas rows are encoded into
    std::vector<std::string> kept_;                // or, for --top, each row kept alone
    std::vector<const char*> order_;               // the rows shown, in order
    mutable ResultRow scratch_;
};

// Reads every result of a sweep in parallel and keeps, compact, the rows the options
// select, exactly as read_results, sort_rows and keep_top would: by index, or sorted by
// the key (rows without a numeric value last, ties by index), the first `top` of them
// (by a metric, the first `top` tasks that succeeded).
// An unknown sort column is the aihpc::Error of sort_rows.
CollectedRows collect_rows(const sweep::SweepDir& sweep, const CollectOptions& options);

}  // namespace aihpc::collect
