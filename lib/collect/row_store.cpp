#include "collect/row_store.hpp"
#include "sweep/rungs.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <tuple>

#include "common/json.hpp"
#include "sweep/runner.hpp"
#include "sweep/spec.hpp"

namespace aihpc::collect {

std::uint32_t NameTable::intern(std::string_view name) {
    std::lock_guard guard(lock_);
    if (auto it = ids_.find(name); it != ids_.end()) return it->second;
    auto id = static_cast<std::uint32_t>(names_.size());
    names_.emplace_back(name);
    ids_.emplace(names_.back(), id);
    return id;
}

const std::string& NameTable::name(std::uint32_t id) const { return names_.at(id); }

std::uint32_t NameCache::id(const std::string& name) {
    if (auto it = ids_.find(name); it != ids_.end()) return it->second;
    auto id = table_.intern(name);
    ids_.emplace(name, id);
    return id;
}

namespace {

void put_varint(std::string& out, std::uint64_t v) {
    while (v >= 0x80) {
        out += static_cast<char>((v & 0x7f) | 0x80);
        v >>= 7;
    }
    out += static_cast<char>(v);
}

std::uint64_t get_varint(const char*& p) {
    std::uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
        auto b = static_cast<unsigned char>(*p++);
        v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
        if (!(b & 0x80)) return v;
    }
}

void put_text(std::string& out, std::string_view s) {
    put_varint(out, s.size());
    out.append(s);
}

std::string_view get_text(const char*& p) {
    auto n = static_cast<std::size_t>(get_varint(p));
    std::string_view s(p, n);
    p += n;
    return s;
}

// How a value's plain text relates to its JSON text.
enum : char { kSame = 0, kNaN = 1, kQuoted = 2, kBoth = 3 };

bool quotes_plainly(const sweep::Scalar& v) {
    const auto& j = v.json;
    const auto& p = v.plain;
    if (j.size() != p.size() + 2 || j.front() != '"' || j.back() != '"' || j.compare(1, p.size(), p) != 0) return j == json_quote(p);
    for (unsigned char c : p)
        if (c == '"' || c == '\\' || c < 0x20) return j == json_quote(p);
    return true;
}

void put_scalar(std::string& out, const sweep::Scalar& v) {
    if (v.plain == v.json) {
        out += kSame;
        put_text(out, v.json);
    } else if (v.json == "null" && v.plain == "NaN") {
        out += kNaN;
    } else if (quotes_plainly(v)) {
        out += kQuoted;  // a string: its JSON is json_quote of its text
        put_text(out, v.plain);
    } else {
        out += kBoth;
        put_text(out, v.json);
        put_text(out, v.plain);
    }
}

void get_scalar(const char*& p, sweep::Scalar& v) {
    char tag = *p++;
    switch (tag) {
    case kSame:
        v.json.assign(get_text(p));
        v.plain.assign(v.json);
        break;
    case kNaN:
        v.json.assign("null");
        v.plain.assign("NaN");
        break;
    case kQuoted:
        v.plain.assign(get_text(p));
        v.json = json_quote(v.plain);
        break;
    default:
        v.json.assign(get_text(p));
        v.plain.assign(get_text(p));
    }
}

void put_values(std::string& out, const sweep::Assignment& values, NameCache& names) {
    put_varint(out, values.size());
    for (const auto& [name, value] : values) {
        put_varint(out, names.id(name));
        put_scalar(out, value);
    }
}

void get_values(const char*& p, const NameTable& names, sweep::Assignment& values) {
    values.resize(static_cast<std::size_t>(get_varint(p)));
    for (auto& [name, value] : values) {
        name.assign(names.name(static_cast<std::uint32_t>(get_varint(p))));
        get_scalar(p, value);
    }
}

void put_words(std::string& out, const std::vector<std::string>& words) {
    put_varint(out, words.size());
    for (const auto& w : words) put_text(out, w);
}

void get_words(const char*& p, std::vector<std::string>& words) {
    words.resize(static_cast<std::size_t>(get_varint(p)));
    for (auto& w : words) w.assign(get_text(p));
}

enum : unsigned char { kHasExit = 1, kHasElapsed = 2, kFull = 4 };

}  // namespace

void encode_row(const ResultRow& row, RowDetail detail, NameCache& names, std::string& out) {
    out.clear();
    put_varint(out, row.index);
    out += static_cast<char>(row.state);
    bool full = detail == RowDetail::full;
    out += static_cast<char>((row.exit_code ? kHasExit : 0) | (row.elapsed_s ? kHasElapsed : 0) | (full ? kFull : 0));
    if (row.exit_code) {
        auto code = static_cast<std::int64_t>(*row.exit_code);
        put_varint(out, (static_cast<std::uint64_t>(code) << 1) ^ static_cast<std::uint64_t>(code >> 63));
    }
    if (row.elapsed_s) {
        char bytes[sizeof(double)];
        std::memcpy(bytes, &*row.elapsed_s, sizeof bytes);
        out.append(bytes, sizeof bytes);
    }
    put_text(out, row.phase);
    put_text(out, row.node);
    if (full) {
        for (const auto* s : {&row.start, &row.end, &row.job_id, &row.array_job_id, &row.array_task_id, &row.signal, &row.error})
            put_text(out, *s);
        put_words(out, row.stderr_tail);
        put_words(out, row.non_finite);
    }
    put_values(out, row.params, names);
    put_values(out, row.metrics, names);
}

void decode_row(const char* p, const NameTable& names, ResultRow& row) {
    row.index = get_varint(p);
    row.state = static_cast<TaskState>(*p++);
    auto flags = static_cast<unsigned char>(*p++);
    row.exit_code.reset();
    row.elapsed_s.reset();
    if (flags & kHasExit) {
        auto z = get_varint(p);
        row.exit_code = static_cast<long>(static_cast<std::int64_t>(z >> 1) ^ -static_cast<std::int64_t>(z & 1));
    }
    if (flags & kHasElapsed) {
        double d;
        std::memcpy(&d, p, sizeof d);
        p += sizeof d;
        row.elapsed_s = d;
    }
    row.phase.assign(get_text(p));
    row.node.assign(get_text(p));
    if (flags & kFull) {
        for (auto* s : {&row.start, &row.end, &row.job_id, &row.array_job_id, &row.array_task_id, &row.signal, &row.error})
            s->assign(get_text(p));
        get_words(p, row.stderr_tail);
        get_words(p, row.non_finite);
    } else {
        for (auto* s : {&row.start, &row.end, &row.job_id, &row.array_job_id, &row.array_task_id, &row.signal, &row.error}) s->clear();
        row.stderr_tail.clear();
        row.non_finite.clear();
    }
    get_values(p, names, row.params);
    get_values(p, names, row.metrics);
    row.sacct.reset();
}

const ResultRow& CollectedRows::row(std::size_t k) const {
    decode_row(order_.at(k), *names_, scratch_);
    return scratch_;
}

std::set<std::uint64_t> CollectedRows::failed_or_missing() const {
    std::set<std::uint64_t> out;
    for (std::uint64_t i = 0; i < state.size(); ++i)
        if (state[i] != TaskState::done) out.insert(out.end(), i);
    return out;
}

namespace {

// Encoded rows, one after another in blocks that never move.
class Arena {
public:
    const char* store(const std::string& bytes, std::vector<std::unique_ptr<char[]>>& blocks) {
        if (bytes.size() > left_) {
            std::size_t size = std::max(kBlock, bytes.size());
            blocks.push_back(std::make_unique<char[]>(size));
            next_ = blocks.back().get();
            left_ = size;
        }
        char* at = next_;
        std::memcpy(at, bytes.data(), bytes.size());
        next_ += bytes.size();
        left_ -= bytes.size();
        return at;
    }

private:
    static constexpr std::size_t kBlock = 1 << 20;
    char* next_ = nullptr;
    std::size_t left_ = 0;
};

// A row's place in the order of --sort: rows with a numeric value first, by value, ties
// (and rows without one) by index.
struct SortPlace {
    double value = 0;
    bool has = false;
    std::uint64_t index = 0;
};

bool before(const SortPlace& a, const SortPlace& b, bool maximize) {
    if (a.has != b.has) return a.has;
    if (a.has && a.value != b.value) return maximize ? a.value > b.value : a.value < b.value;
    return a.index < b.index;
}

SortPlace place_of(const ResultRow& row, SortSource source, const std::string& column) {
    SortPlace p;
    p.index = row.index;
    if (auto v = sort_value(row, source, column)) {
        p.value = *v;
        p.has = true;
    }
    return p;
}

struct HeapEntry {
    SortPlace place;
    std::string bytes;
};

struct Stored {
    const char* bytes;
    std::uint64_t index;
};

// A stored row's sort values, by each reading of the sort column (kept only with --sort).
struct SortValues {
    double value[2];
    unsigned char has[2];
};

struct Worker {
    explicit Worker(NameTable& table) : names(table) {}
    NameCache names;
    std::string bytes;
    std::vector<std::pair<std::uint64_t, std::size_t>> first_seen;  // by name id: (index, position) a metric first shows at
    std::size_t rows = 0;
    Arena arena;
    std::vector<std::unique_ptr<char[]>> blocks;
    std::deque<Stored> stored;
    std::deque<SortValues> values;  // beside stored
    std::vector<std::vector<HeapEntry>> heaps;  // by reading of the sort column
};

constexpr auto kNever = std::numeric_limits<std::uint64_t>::max();

// The metric columns in order of first appearance by index, as read_results lists them.
std::vector<std::string> metric_names_by_first_appearance(const std::vector<std::unique_ptr<Worker>>& workers,
                                                          const NameTable& names) {
    std::vector<std::tuple<std::uint64_t, std::size_t, std::uint32_t>> seen;
    std::vector<std::pair<std::uint64_t, std::size_t>> first;
    for (auto& w : workers) {
        if (first.size() < w->first_seen.size()) first.resize(w->first_seen.size(), {kNever, 0});
        for (std::size_t id = 0; id < w->first_seen.size(); ++id) first[id] = std::min(first[id], w->first_seen[id]);
    }
    for (std::size_t id = 0; id < first.size(); ++id)
        if (first[id].first != kNever) seen.emplace_back(first[id].first, first[id].second, static_cast<std::uint32_t>(id));
    std::sort(seen.begin(), seen.end());
    std::vector<std::string> metric_names;
    for (auto& [index, pos, id] : seen) metric_names.push_back(names.name(id));
    return metric_names;
}

// The readings of the sort column: a metric when any row reports one of that name
// (known only once every row is read), else a parameter or a built-in column.
std::vector<SortSource> sort_sources(const ResultTable& header, const CollectOptions& options) {
    std::vector<SortSource> sources;
    if (options.sort) {
        sources.push_back(SortSource::metric);
        if (auto other = fixed_sort_source(header, options.sort->column); other != SortSource::none) sources.push_back(other);
    } else if (options.top) {
        sources.push_back(SortSource::none);  // the first rows by index
    }
    return sources;
}

// --top: the best `top` rows of every worker's heap for the chosen reading, in order.
// The workers are let go before the sort, which then has their memory.
template <typename HeapOrder>
std::vector<std::string> take_best_rows(std::vector<std::unique_ptr<Worker>>& workers, std::size_t chosen, std::size_t top,
                                        const HeapOrder& heap_order) {
    std::vector<HeapEntry> kept;
    for (auto& w : workers)
        for (auto& e : w->heaps[chosen]) kept.push_back(std::move(e));
    workers.clear();
    std::sort(kept.begin(), kept.end(), heap_order);
    if (kept.size() > top) kept.resize(top);
    std::vector<std::string> rows;
    for (auto& e : kept) rows.push_back(std::move(e.bytes));
    return rows;
}

// Every stored row, by index, or `sorted` by the chosen reading of the sort column.
std::vector<const char*> stored_row_order(const std::vector<std::unique_ptr<Worker>>& workers, std::size_t rows, bool sorted,
                                          std::size_t chosen, bool maximize) {
    using Ref = std::pair<const Stored*, const SortValues*>;
    std::vector<Ref> refs;
    refs.reserve(rows);
    for (auto& w : workers)
        for (std::size_t k = 0; k < w->stored.size(); ++k) refs.emplace_back(&w->stored[k], sorted ? &w->values[k] : nullptr);
    if (!sorted) {
        std::sort(refs.begin(), refs.end(), [](const Ref& a, const Ref& b) { return a.first->index < b.first->index; });
    } else {
        auto place = [chosen](const Ref& r) { return SortPlace{r.second->value[chosen], r.second->has[chosen] != 0, r.first->index}; };
        std::sort(refs.begin(), refs.end(), [&](const Ref& a, const Ref& b) { return before(place(a), place(b), maximize); });
    }
    std::vector<const char*> order;
    order.reserve(refs.size());
    for (auto& r : refs) order.push_back(r.first->bytes);
    return order;
}

}  // namespace

CollectedRows collect_rows(const sweep::SweepDir& sweep, const CollectOptions& options) {
    CollectedRows out;
    auto& header = out.header;
    header.tasks = sweep.tasks;
    header.multi_phase = sweep.spec.phases.size() > 1;
    header.phase = sweep::find_phase(sweep.spec, options.phase).name;
    header.param_names = sweep::parameter_names(sweep.spec);
    for (auto& name : sweep::rung_columns(sweep.spec)) header.param_names.push_back(name);

    const std::string column = options.sort ? options.sort->column : std::string();
    const bool maximize = options.sort && options.sort->maximize;
    const std::vector<SortSource> sources = sort_sources(header, options);
    bool bounded = options.top > 0;

    std::vector<std::unique_ptr<Worker>> workers;
    for (unsigned w = 0; w < reader_threads(); ++w) {
        workers.push_back(std::make_unique<Worker>(*out.names_));
        workers.back()->heaps.resize(sources.size());
    }
    auto heap_order = [maximize](const HeapEntry& a, const HeapEntry& b) { return before(a.place, b.place, maximize); };

    out.state = for_each_row(sweep, options.include_missing, [&](unsigned w, ResultRow&& row) {
        auto& me = *workers[w];
        ++me.rows;
        for (std::size_t pos = 0; pos < row.metrics.size(); ++pos) {
            auto id = me.names.id(row.metrics[pos].first);
            if (me.first_seen.size() <= id) me.first_seen.resize(id + 1, {kNever, 0});
            me.first_seen[id] = std::min(me.first_seen[id], std::pair{row.index, pos});
        }
        if (bounded) {
            bool encoded = false;
            for (std::size_t s = 0; s < sources.size(); ++s) {
                // The best K by a metric are K tasks that succeeded, as keep_top keeps them.
                if (sources[s] == SortSource::metric && row.state != TaskState::done) continue;
                auto& heap = me.heaps[s];
                HeapEntry entry{place_of(row, sources[s], column), {}};
                if (heap.size() >= options.top && !before(entry.place, heap.front().place, maximize)) continue;
                if (!encoded) encode_row(row, options.detail, me.names, me.bytes);
                encoded = true;
                entry.bytes = me.bytes;
                if (heap.size() >= options.top) {
                    std::pop_heap(heap.begin(), heap.end(), heap_order);
                    heap.back() = std::move(entry);
                } else {
                    heap.push_back(std::move(entry));
                }
                std::push_heap(heap.begin(), heap.end(), heap_order);
            }
            return;
        }
        encode_row(row, options.detail, me.names, me.bytes);
        me.stored.push_back({me.arena.store(me.bytes, me.blocks), row.index});
        if (!sources.empty()) {
            SortValues v{};
            for (std::size_t k = 0; k < sources.size(); ++k) {
                auto p = place_of(row, sources[k], column);
                v.value[k] = p.value;
                v.has[k] = p.has;
            }
            me.values.push_back(v);
        }
    }, &header.unreadable, options.phase);

    header.metric_names = metric_names_by_first_appearance(workers, *out.names_);
    std::size_t rows = 0;
    for (auto& w : workers) rows += w->rows;

    std::size_t chosen = 0;
    if (options.sort) {
        bool is_metric = std::find(header.metric_names.begin(), header.metric_names.end(), column) != header.metric_names.end();
        if (!is_metric) {
            if (sources.size() < 2) {
                if (rows) throw_unknown_sort_column(column, header.metric_names, header.multi_phase ? header.phase : std::string());
                return out;  // no row to sort
            }
            chosen = 1;
        }
    }

    if (bounded) {
        out.kept_ = take_best_rows(workers, chosen, options.top, heap_order);
        for (auto& b : out.kept_) out.order_.push_back(b.data());
        return out;
    }

    out.order_ = stored_row_order(workers, rows, !sources.empty(), chosen, maximize);
    for (auto& w : workers) {
        w->stored = {};
        w->values = {};
        for (auto& b : w->blocks) out.blocks_.push_back(std::move(b));
    }
    return out;
}

}  // namespace aihpc::collect
