#include "sweep/expand.hpp"

#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <unordered_set>

#include "common/error.hpp"
#include "common/json.hpp"

namespace aihpc::sweep {

double unit_draw(std::uint64_t seed, std::string_view name, std::uint64_t n, unsigned stream) {
    std::string key(name);
    key += '\0';
    for (int i = 0; i < 8; ++i) key += static_cast<char>((n >> (8 * i)) & 0xff);
    key += static_cast<char>(stream);
    std::uint64_t h = XXH3_64bits_withSeed(key.data(), key.size(), seed);
    return static_cast<double>(h >> 11) * 0x1p-53;
}

Scalar draw_value(const Axis& axis, std::uint64_t seed, std::uint64_t n) {
    double a = axis.args[0].value(), b = axis.args[1].value();
    double u = unit_draw(seed, axis.param, n);
    switch (axis.kind) {
    case AxisKind::uniform: return scalar_double(a + u * (b - a));
    case AxisKind::loguniform: return scalar_double(std::exp(std::log(a) + u * (std::log(b) - std::log(a))));
    case AxisKind::int_: {
        auto lo = axis.args[0].i, hi = axis.args[1].i;
        auto span = static_cast<double>(hi - lo) + 1;
        return scalar_int(std::min<std::int64_t>(hi, lo + static_cast<std::int64_t>(std::floor(u * span))));
    }
    case AxisKind::normal: {
        double u2 = unit_draw(seed, axis.param, n, 1);
        return scalar_double(a + b * std::sqrt(-2 * std::log1p(-u)) * std::cos(2 * M_PI * u2));
    }
    default: throw Error(std::string("internal: ") + axis_kind_name(axis.kind) + " is not a distribution");
    }
}

namespace {

// A seeded bijection on [0, span): a Feistel network on the smallest even power of two
// that holds span, walked until it lands inside (cycle walking). The k-th draw of a
// grid's int axis is lo + permute(k), so n draws never repeat a value and need no memory.
std::uint64_t permute(std::uint64_t k, std::uint64_t span, std::uint64_t seed, std::string_view name) {
    unsigned bits = 2;
    while (bits < 64 && (std::uint64_t(1) << bits) < span) bits += 2;
    unsigned half = bits / 2;
    std::uint64_t mask = (std::uint64_t(1) << half) - 1;
    std::uint64_t x = k;
    do {
        std::uint64_t l = x >> half, r = x & mask;
        for (unsigned round = 0; round < 4; ++round) {
            std::uint64_t f = static_cast<std::uint64_t>(unit_draw(seed ^ (r * 0x9e3779b97f4a7c15ULL), name, round, 7) * 0x1p53) & mask;
            std::uint64_t next = l ^ f;
            l = r;
            r = next;
        }
        x = (l << half) | r;
    } while (x >= span);
    return x;
}

// Values of a float range: start + k*step while short of stop, counted without a loop.
std::uint64_t float_range_length(const Axis& axis) {
    double s = axis.args[0].value(), e = axis.args[1].value(), st = axis.args[2].value();
    auto inside = [&](double k) {
        double v = s + k * st;
        return st > 0 ? v < e : v > e;
    };
    double n = std::ceil((e - s) / st);
    if (!(n > 0)) return 0;
    while (n > 0 && !inside(n - 1)) --n;
    while (inside(n)) ++n;
    return static_cast<std::uint64_t>(n);
}

}  // namespace

std::uint64_t int_span(const Axis& axis) {
    // hi - lo + 1 in unsigned arithmetic; 0 stands for the whole 2^64.
    return static_cast<std::uint64_t>(axis.args[1].i) - static_cast<std::uint64_t>(axis.args[0].i) + 1;
}

std::uint64_t axis_length(const Axis& axis) {
    switch (axis.kind) {
    case AxisKind::values: return axis.values.size();
    case AxisKind::repeat: return axis.repeat;
    case AxisKind::zip: return axis.zip_columns.empty() ? 0 : axis.zip_columns[0].size();
    case AxisKind::range: {
        const auto &s = axis.args[0], &e = axis.args[1], &st = axis.args[2];
        if (s.is_int && e.is_int && st.is_int) {
            if (st.i > 0) return e.i > s.i ? (static_cast<std::uint64_t>(e.i - s.i) + static_cast<std::uint64_t>(st.i) - 1) / static_cast<std::uint64_t>(st.i) : 0;
            return s.i > e.i ? (static_cast<std::uint64_t>(s.i - e.i) + static_cast<std::uint64_t>(-st.i) - 1) / static_cast<std::uint64_t>(-st.i) : 0;
        }
        return float_range_length(axis);
    }
    case AxisKind::linspace:
    case AxisKind::logspace: return static_cast<std::uint64_t>(axis.args[2].i);
    case AxisKind::uniform:
    case AxisKind::loguniform:
    case AxisKind::int_:
    case AxisKind::normal: return axis.count;
    default: throw Error(std::string("internal: ") + axis_kind_name(axis.kind) + " is not a leaf axis");
    }
}

Scalar axis_value_at(const Axis& axis, std::uint64_t seed, std::uint64_t k) {
    switch (axis.kind) {
    case AxisKind::values: return axis.values[k];
    case AxisKind::repeat: return scalar_int(static_cast<std::int64_t>(k));
    case AxisKind::range: {
        const auto &s = axis.args[0], &st = axis.args[2];
        if (s.is_int && axis.args[1].is_int && st.is_int) return scalar_int(s.i + static_cast<std::int64_t>(k) * st.i);
        // start + k*step, not a running sum, so that errors do not accumulate.
        return scalar_double(s.value() + static_cast<double>(k) * st.value());
    }
    case AxisKind::linspace:
    case AxisKind::logspace: {
        auto n = static_cast<std::uint64_t>(axis.args[2].i);
        double a = axis.args[0].value(), b = axis.args[1].value();
        double v;
        if (k == 0) v = a;
        else if (k == n - 1) v = b;
        else if (axis.kind == AxisKind::linspace) v = a + (b - a) * static_cast<double>(k) / static_cast<double>(n - 1);
        else v = std::pow(10.0, std::log10(a) + (std::log10(b) - std::log10(a)) * static_cast<double>(k) / static_cast<double>(n - 1));
        return scalar_double(v);
    }
    case AxisKind::int_: {
        auto span = int_span(axis);
        if (span == 0 || span > (std::uint64_t(1) << 62)) return draw_value(axis, seed, k);
        return scalar_int(static_cast<std::int64_t>(static_cast<std::uint64_t>(axis.args[0].i) + permute(k, span, seed, axis.param)));
    }
    case AxisKind::uniform:
    case AxisKind::loguniform:
    case AxisKind::normal: return draw_value(axis, seed, k);
    default: throw Error(std::string("internal: ") + axis_kind_name(axis.kind) + " is not a leaf axis");
    }
}

std::vector<Scalar> axis_values(const Axis& axis, std::uint64_t seed) {
    std::vector<Scalar> out;
    auto n = axis_length(axis);
    out.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(n, 1 << 20)));
    for (std::uint64_t k = 0; k < n; ++k) out.push_back(axis_value_at(axis, seed, k));
    return out;
}

std::uint64_t task_seed(std::uint64_t seed, std::string_view params_object) {
    return XXH3_64bits_withSeed(params_object.data(), params_object.size(), seed) & 0xffffffffu;
}

// One row of an axis: the values it assigns and their pre-rendered JSON members, so
// that writing a task is a few appends.
struct Row {
    Assignment cells;
    std::string fragment;
};

Row make_row(Assignment cells) {
    Row row{std::move(cells), {}};
    for (auto& [k, v] : row.cells) {
        if (!row.fragment.empty()) row.fragment += ',';
        row.fragment += json_quote(k) + ':' + v.json;
    }
    return row;
}

struct Branch_ {
    Row fixed;
    std::vector<Node> nodes;
};

// One axis in the odometer. A computed axis (range, linspace, logspace, draws, repeat)
// keeps no value list: its value at `pos` is computed when the task is written, so that
// memory does not grow with the axis's length.
struct Node {
    bool is_union = false;
    std::vector<Row> rows;
    std::vector<Branch_> branches;
    const Axis* computed = nullptr;
    std::uint64_t length = 0;  // of a computed axis
    std::uint64_t seed = 0;
    Row current;               // a computed axis's row at pos
    std::string member_key;    // its "name": text, quoted once
    std::uint64_t current_pos = ~std::uint64_t(0);
    std::uint64_t pos = 0;

    std::uint64_t size() const { return is_union ? branches.size() : computed ? length : rows.size(); }
    const Row& row() {
        if (!computed) return rows[pos];
        if (current_pos != pos) {
            // The last axis changes with every task: its row is updated in place, the
            // name quoted once, so that writing a task allocates nothing.
            if (current.cells.empty()) {
                current.cells.emplace_back(computed->param, Scalar{});
                member_key = json_quote(computed->param) + ':';
            }
            current.cells[0].second = axis_value_at(*computed, seed, pos);
            current.fragment.assign(member_key);
            current.fragment += current.cells[0].second.json;
            current_pos = pos;
        }
        return current;
    }
};

namespace {

std::uint64_t checked_mul(std::uint64_t a, std::uint64_t b) {
    if (a && b > kMaxSweepTasks / a) throw Error("sweep spec: the sweep has more than 2^48 tasks");
    return a * b;
}

std::uint64_t size_of(const std::vector<Node>& nodes);

std::uint64_t size_of(const Node& node) {
    if (!node.is_union) return node.size();
    std::uint64_t sum = 0;
    for (auto& b : node.branches) {
        sum += size_of(b.nodes);
        if (sum > kMaxSweepTasks) throw Error("sweep spec: the sweep has more than 2^48 tasks");
    }
    return sum;
}

std::uint64_t size_of(const std::vector<Node>& nodes) {
    std::uint64_t n = 1;
    for (auto& node : nodes) n = checked_mul(n, size_of(node));
    return n;
}

std::vector<Row> zip_rows(const Axis& axis) {
    std::vector<Row> rows;
    for (std::size_t r = 0; r < axis.zip_columns[0].size(); ++r) {
        Assignment cells;
        for (std::size_t c = 0; c < axis.zip_names.size(); ++c) cells.emplace_back(axis.zip_names[c], axis.zip_columns[c][r]);
        rows.push_back(make_row(std::move(cells)));
    }
    return rows;
}

Node leaf_node(const Axis& axis, std::uint64_t seed) {
    Node node;
    if (axis.kind == AxisKind::zip) {
        node.rows = zip_rows(axis);
    } else if (axis.kind == AxisKind::values) {
        for (auto& v : axis.values) node.rows.push_back(make_row({{axis.param, v}}));
    } else {
        node.computed = &axis;
        node.seed = seed;
        node.length = axis_length(axis);
    }
    return node;
}

// `whole_int`: an int axis stands for every integer of its range (a random sweep whose
// space is enumerated), not for `count` draws.
std::vector<Node> grid_nodes(const std::vector<Axis>& axes, std::uint64_t seed, bool whole_int = false) {
    std::vector<Node> nodes;
    for (const auto& axis : axes) {
        Node node;
        if (axis.kind == AxisKind::union_) {
            node.is_union = true;
            for (const auto& b : axis.branches) node.branches.push_back(Branch_{make_row(b.fixed), grid_nodes(b.axes, seed, whole_int)});
        } else {
            node = leaf_node(axis, seed);
            if (whole_int && axis.kind == AxisKind::int_) node.length = int_span(axis);
        }
        nodes.push_back(std::move(node));
    }
    return nodes;
}

std::string union_key(const Axis& axis) {
    std::vector<std::string> names;
    for (auto& b : axis.branches) {
        for (auto& [k, v] : b.fixed) names.push_back(k);
        for (auto& a : b.axes) names.push_back(a.kind == AxisKind::zip ? a.zip_names[0] : a.param);
    }
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    std::string key = "union:";
    for (auto& n : names) key += n + ",";
    return key;
}

// The number of distinct configurations a random sweep can draw (repeat left out, as it
// stays a product per trial); 0 when some axis is continuous.
std::uint64_t finite_space(const std::vector<Axis>& axes) {
    std::uint64_t n = 1;
    for (const auto& axis : axes) {
        std::uint64_t k = 0;
        switch (axis.kind) {
        case AxisKind::uniform:
        case AxisKind::loguniform:
        case AxisKind::normal: return 0;
        case AxisKind::int_:
            k = int_span(axis);
            if (k == 0 || k > kMaxSweepTasks) return 0;
            break;
        case AxisKind::repeat: k = 1; break;
        case AxisKind::union_:
            for (const auto& b : axis.branches) {
                auto m = finite_space(b.axes);
                if (m == 0) return 0;
                k += m;
                if (k > kMaxSweepTasks) return 0;
            }
            break;
        default: k = axis_length(axis);
        }
        if (k && n > kMaxSweepTasks / k) return 0;
        n *= k;
    }
    return n;
}

}  // namespace

// What a random sweep samples from, computed once: per axis its value rows (or the axis
// itself when computed) and the key its index is drawn under, per union branch the same
// for the branch's axes.
struct TrialAxis {
    const Axis* axis = nullptr;
    Node leaf;
    std::string key;
    std::vector<Row> branch_fixed;
    std::vector<std::vector<TrialAxis>> branch_axes;
};

namespace {

std::vector<TrialAxis> trial_axes(const std::vector<Axis>& axes, std::uint64_t seed) {
    std::vector<TrialAxis> out;
    for (const auto& axis : axes) {
        TrialAxis t;
        t.axis = &axis;
        switch (axis.kind) {
        case AxisKind::union_:
            t.key = union_key(axis);
            for (const auto& b : axis.branches) {
                t.branch_fixed.push_back(make_row(b.fixed));
                t.branch_axes.push_back(trial_axes(b.axes, seed));
            }
            break;
        case AxisKind::uniform:
        case AxisKind::loguniform:
        case AxisKind::int_:
        case AxisKind::normal: break;
        case AxisKind::zip:
            t.leaf = leaf_node(axis, seed);
            t.key = "zip:";
            for (auto& n : axis.zip_names) t.key += n + ",";
            break;
        default: t.leaf = leaf_node(axis, seed); t.key = axis.param;
        }
        out.push_back(std::move(t));
    }
    return out;
}

// One trial of a random sweep: every axis sampled once, except repeat, which stays a
// product so that replicates of a trial share its parameters.
std::vector<Node> trial_nodes(std::vector<TrialAxis>& axes, std::uint64_t seed, std::uint64_t trial) {
    std::vector<Node> nodes;
    nodes.reserve(axes.size());
    for (auto& t : axes) {
        const Axis& axis = *t.axis;
        Node node;
        auto pick = [&](std::string_view key, std::uint64_t n) {
            return std::min<std::uint64_t>(n - 1, static_cast<std::uint64_t>(unit_draw(seed, key, trial) * static_cast<double>(n)));
        };
        switch (axis.kind) {
        case AxisKind::union_: {
            node.is_union = true;
            auto b = pick(t.key, t.branch_axes.size());
            node.branches.push_back(Branch_{t.branch_fixed[b], trial_nodes(t.branch_axes[b], seed, trial)});
            break;
        }
        case AxisKind::repeat: node = leaf_node(axis, seed); break;
        case AxisKind::uniform:
        case AxisKind::loguniform:
        case AxisKind::int_:
        case AxisKind::normal: node.rows.push_back(make_row({{axis.param, draw_value(axis, seed, trial)}})); break;
        default:
            t.leaf.pos = pick(t.key, t.leaf.size());
            node.rows.push_back(t.leaf.row());
        }
        nodes.push_back(std::move(node));
    }
    return nodes;
}

// Odometer step: the last node varies fastest. Returns true when every node wrapped.
bool advance(std::vector<Node>& nodes);

bool advance(Node& node) {
    if (node.is_union) {
        if (!advance(node.branches[node.pos].nodes)) return false;
    }
    if (++node.pos < node.size()) return false;
    node.pos = 0;
    return true;
}

bool advance(std::vector<Node>& nodes) {
    for (auto it = nodes.rbegin(); it != nodes.rend(); ++it)
        if (!advance(*it)) return false;
    return true;
}

// The same, saying in `first_changed` the leftmost top-level node that moved: the text of
// the nodes before it stays as it was.
bool advance(std::vector<Node>& nodes, std::size_t& first_changed) {
    for (std::size_t i = nodes.size(); i-- > 0;) {
        first_changed = i;
        if (!advance(nodes[i])) return false;
    }
    first_changed = 0;
    return true;
}

void append_fragment(std::string& out, const Row& row, std::vector<const std::pair<std::string, Scalar>*>& cells) {
    if (row.fragment.empty()) return;
    if (out.size() > 1) out += ',';
    out += row.fragment;
    for (auto& c : row.cells) cells.push_back(&c);
}

void render(std::vector<Node>& nodes, std::string& out, std::vector<const std::pair<std::string, Scalar>*>& cells);

void render_node(Node& node, std::string& out, std::vector<const std::pair<std::string, Scalar>*>& cells) {
    if (node.is_union) {
        auto& b = node.branches[node.pos];
        append_fragment(out, b.fixed, cells);
        render(b.nodes, out, cells);
    } else {
        append_fragment(out, node.row(), cells);
    }
}

void render(std::vector<Node>& nodes, std::string& out, std::vector<const std::pair<std::string, Scalar>*>& cells) {
    for (auto& node : nodes) render_node(node, out, cells);
}

// Trials drawn at most this many times over before a random sweep of a finite space
// settles for the distinct configurations it has found.
constexpr std::uint64_t kDrawsPerTrial = 64;

}  // namespace

TaskStream::TaskStream(const SweepSpec& spec) : spec_(spec) {
    rule_hits_.assign(spec_.exclude.size(), 0);
    if (spec.method == Method::grid) {
        nodes_ = grid_nodes(spec_.axes, spec.seed);
        product_size_ = size_of(nodes_);
    } else {
        std::uint64_t per_trial = 1;
        for (auto& a : spec.axes)
            if (a.kind == AxisKind::repeat) per_trial = checked_mul(per_trial, a.repeat);
        distinct_ = finite_space(spec_.axes);
        if (distinct_ && distinct_ <= spec.trials) {
            // Every configuration is wanted: run each once rather than draw with repeats.
            enumerate_ = true;
            nodes_ = grid_nodes(spec_.axes, spec.seed, true);
            product_size_ = size_of(nodes_);
        } else {
            product_size_ = checked_mul(spec.trials, per_trial);
            trial_axes_ = trial_axes(spec_.axes, spec.seed);
        }
    }
    params_.reserve(256);
}

TaskStream::~TaskStream() = default;

void TaskStream::build_trial() {
    // Draws of a finite space that repeat an earlier trial are drawn again, under the
    // next draw number: trials sample without replacement.
    for (;;) {
        nodes_ = trial_nodes(trial_axes_, spec_.seed, draw_);
        ++draw_;
        if (!distinct_) return;
        std::string first = "{";
        std::vector<const std::pair<std::string, Scalar>*> cells;
        render(nodes_, first, cells);
        if (seen_trials_.insert(XXH3_64bits(first.data(), first.size())).second) return;
        if (draw_ >= kDrawsPerTrial * spec_.trials + 1024) {
            exhausted_ = true;
            return;
        }
    }
}

bool TaskStream::step() {
    if (done_) return false;
    std::size_t from = 0;
    bool random = spec_.method == Method::random && !enumerate_;
    if (!started_) {
        started_ = true;
        if (random) build_trial();
    } else if (advance(nodes_, from)) {
        if (!random || ++trial_ >= spec_.trials) {
            done_ = true;
            return false;
        }
        build_trial();
        from = 0;
    }
    if (product_size_ == 0 || exhausted_) {
        done_ = true;
        return false;
    }
    ++generated_;
    // Only the nodes from the leftmost that moved are written again (most often the last
    // one alone): the text before them is the previous task's.
    if (from == 0 || from >= starts_.size()) {
        from = 0;
        params_.assign(1, '{');
        cells_.clear();
        starts_.resize(nodes_.size());
        cell_starts_.resize(nodes_.size());
    } else {
        params_.resize(starts_[from]);
        cells_.resize(cell_starts_[from]);
    }
    for (std::size_t i = from; i < nodes_.size(); ++i) {
        starts_[i] = params_.size();
        cell_starts_[i] = cells_.size();
        render_node(nodes_[i], params_, cells_);
    }
    params_ += '}';
    return true;
}

bool TaskStream::excluded() {
    bool any = false;
    for (std::size_t r = 0; r < spec_.exclude.size(); ++r) {
        bool all = true;
        for (const auto& [k, v] : spec_.exclude[r]) {
            bool hit = false;
            for (auto* c : cells_)
                if (c->first == k) {
                    // Typed: the JSON texts differ for 96 and 96.0, and for 1 and true.
                    hit = c->second.json == v.json;
                    break;
                }
            if (!hit) {
                all = false;
                break;
            }
        }
        if (all) {
            ++rule_hits_[r];
            any = true;
        }
    }
    return any;
}

bool TaskStream::next() {
    while (step()) {
        if (!spec_.exclude.empty() && excluded()) continue;
        index_ = produced_++;
        return true;
    }
    return false;
}

std::uint64_t TaskStream::task_seed() const { return sweep::task_seed(spec_.seed, params_); }

}  // namespace aihpc::sweep
