#include "sweep/expand.hpp"

#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <cstring>

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

std::vector<Scalar> axis_values(const Axis& axis, std::uint64_t seed) {
    std::vector<Scalar> out;
    switch (axis.kind) {
    case AxisKind::values: return axis.values;
    case AxisKind::repeat:
        for (std::uint64_t i = 0; i < axis.repeat; ++i) out.push_back(scalar_int(static_cast<std::int64_t>(i)));
        return out;
    case AxisKind::range: {
        const auto &s = axis.args[0], &e = axis.args[1], &st = axis.args[2];
        if (s.is_int && e.is_int && st.is_int) {
            for (auto v = s.i; st.i > 0 ? v < e.i : v > e.i; v += st.i) out.push_back(scalar_int(v));
        } else {
            // start + k*step, not a running sum, so that errors do not accumulate.
            for (std::uint64_t k = 0;; ++k) {
                double v = s.value() + static_cast<double>(k) * st.value();
                if (st.value() > 0 ? v >= e.value() : v <= e.value()) break;
                out.push_back(scalar_double(v));
            }
        }
        return out;
    }
    case AxisKind::linspace:
    case AxisKind::logspace: {
        auto n = static_cast<std::uint64_t>(axis.args[2].i);
        double a = axis.args[0].value(), b = axis.args[1].value();
        for (std::uint64_t k = 0; k < n; ++k) {
            double v;
            if (k == 0) v = a;
            else if (k == n - 1) v = b;
            else if (axis.kind == AxisKind::linspace) v = a + (b - a) * static_cast<double>(k) / static_cast<double>(n - 1);
            else v = std::pow(10.0, std::log10(a) + (std::log10(b) - std::log10(a)) * static_cast<double>(k) / static_cast<double>(n - 1));
            out.push_back(scalar_double(v));
        }
        return out;
    }
    case AxisKind::uniform:
    case AxisKind::loguniform:
    case AxisKind::int_:
    case AxisKind::normal:
        for (std::uint64_t k = 0; k < axis.count; ++k) out.push_back(draw_value(axis, seed, k));
        return out;
    default: throw Error(std::string("internal: ") + axis_kind_name(axis.kind) + " is not a leaf axis");
    }
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

struct Node {
    bool is_union = false;
    std::vector<Row> rows;
    std::vector<Branch_> branches;
    std::size_t pos = 0;
};

namespace {

constexpr std::uint64_t kMaxTasks = std::uint64_t(1) << 48;

std::uint64_t checked_mul(std::uint64_t a, std::uint64_t b) {
    if (a && b > kMaxTasks / a) throw Error("sweep spec: the sweep has more than 2^48 tasks");
    return a * b;
}

std::uint64_t size_of(const std::vector<Node>& nodes);

std::uint64_t size_of(const Node& node) {
    if (!node.is_union) return node.rows.size();
    std::uint64_t sum = 0;
    for (auto& b : node.branches) {
        sum += size_of(b.nodes);
        if (sum > kMaxTasks) throw Error("sweep spec: the sweep has more than 2^48 tasks");
    }
    return sum;
}

std::uint64_t size_of(const std::vector<Node>& nodes) {
    std::uint64_t n = 1;
    for (auto& node : nodes) n = checked_mul(n, size_of(node));
    return n;
}

std::vector<Row> rows_of(const Axis& axis, std::uint64_t seed) {
    std::vector<Row> rows;
    if (axis.kind == AxisKind::zip) {
        for (std::size_t r = 0; r < axis.zip_columns[0].size(); ++r) {
            Assignment cells;
            for (std::size_t c = 0; c < axis.zip_names.size(); ++c) cells.emplace_back(axis.zip_names[c], axis.zip_columns[c][r]);
            rows.push_back(make_row(std::move(cells)));
        }
    } else {
        for (auto& v : axis_values(axis, seed)) rows.push_back(make_row({{axis.param, v}}));
    }
    return rows;
}

std::vector<Node> grid_nodes(const std::vector<Axis>& axes, std::uint64_t seed) {
    std::vector<Node> nodes;
    for (const auto& axis : axes) {
        Node node;
        if (axis.kind == AxisKind::union_) {
            node.is_union = true;
            for (const auto& b : axis.branches) node.branches.push_back(Branch_{make_row(b.fixed), grid_nodes(b.axes, seed)});
        } else {
            node.rows = rows_of(axis, seed);
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

}  // namespace

// What a random sweep samples from, computed once: per axis its value rows and the key
// its index is drawn under, per union branch the same for the branch's axes.
struct TrialAxis {
    const Axis* axis = nullptr;
    std::vector<Row> rows;
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
            t.rows = rows_of(axis, seed);
            t.key = "zip:";
            for (auto& n : axis.zip_names) t.key += n + ",";
            break;
        default: t.rows = rows_of(axis, seed); t.key = axis.param;
        }
        out.push_back(std::move(t));
    }
    return out;
}

// One trial of a random sweep: every axis sampled once, except repeat, which stays a
// product so that replicates of a trial share its parameters.
std::vector<Node> trial_nodes(const std::vector<TrialAxis>& axes, std::uint64_t seed, std::uint64_t trial) {
    std::vector<Node> nodes;
    nodes.reserve(axes.size());
    for (const auto& t : axes) {
        const Axis& axis = *t.axis;
        Node node;
        auto pick = [&](std::string_view key, std::size_t n) {
            return std::min<std::size_t>(n - 1, static_cast<std::size_t>(unit_draw(seed, key, trial) * static_cast<double>(n)));
        };
        switch (axis.kind) {
        case AxisKind::union_: {
            node.is_union = true;
            auto b = pick(t.key, t.branch_axes.size());
            node.branches.push_back(Branch_{t.branch_fixed[b], trial_nodes(t.branch_axes[b], seed, trial)});
            break;
        }
        case AxisKind::repeat: node.rows = t.rows; break;
        case AxisKind::uniform:
        case AxisKind::loguniform:
        case AxisKind::int_:
        case AxisKind::normal: node.rows.push_back(make_row({{axis.param, draw_value(axis, seed, trial)}})); break;
        default: node.rows.push_back(t.rows[pick(t.key, t.rows.size())]);
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
    std::size_t n = node.is_union ? node.branches.size() : node.rows.size();
    if (++node.pos < n) return false;
    node.pos = 0;
    return true;
}

bool advance(std::vector<Node>& nodes) {
    for (auto it = nodes.rbegin(); it != nodes.rend(); ++it)
        if (!advance(*it)) return false;
    return true;
}

void append_fragment(std::string& out, const Row& row, std::vector<const std::pair<std::string, Scalar>*>& cells) {
    if (row.fragment.empty()) return;
    if (out.size() > 1) out += ',';
    out += row.fragment;
    for (auto& c : row.cells) cells.push_back(&c);
}

void render(const std::vector<Node>& nodes, std::string& out, std::vector<const std::pair<std::string, Scalar>*>& cells) {
    for (const auto& node : nodes) {
        if (node.is_union) {
            const auto& b = node.branches[node.pos];
            append_fragment(out, b.fixed, cells);
            render(b.nodes, out, cells);
        } else {
            append_fragment(out, node.rows[node.pos], cells);
        }
    }
}

}  // namespace

TaskStream::TaskStream(const SweepSpec& spec) : spec_(spec) {
    if (spec.method == Method::grid) {
        nodes_ = grid_nodes(spec_.axes, spec.seed);
        product_size_ = size_of(nodes_);
    } else {
        std::uint64_t per_trial = 1;
        for (auto& a : spec.axes)
            if (a.kind == AxisKind::repeat) per_trial = checked_mul(per_trial, a.repeat);
        product_size_ = checked_mul(spec.trials, per_trial);
        trial_axes_ = trial_axes(spec_.axes, spec.seed);
    }
    params_.reserve(256);
}

TaskStream::~TaskStream() = default;

void TaskStream::build_trial() { nodes_ = trial_nodes(trial_axes_, spec_.seed, trial_); }

bool TaskStream::step() {
    if (done_) return false;
    if (!started_) {
        started_ = true;
        if (spec_.method == Method::random) build_trial();
    } else if (advance(nodes_)) {
        if (spec_.method == Method::grid || ++trial_ >= spec_.trials) {
            done_ = true;
            return false;
        }
        build_trial();
    }
    if (product_size_ == 0) {
        done_ = true;
        return false;
    }
    ++generated_;
    params_.assign(1, '{');
    cells_.clear();
    render(nodes_, params_, cells_);
    params_ += '}';
    return true;
}

bool TaskStream::excluded() const {
    for (const auto& rule : spec_.exclude) {
        bool all = true;
        for (const auto& [k, v] : rule) {
            bool hit = false;
            for (auto* c : cells_)
                if (c->first == k) {
                    hit = c->second.json == v.json;
                    break;
                }
            if (!hit) {
                all = false;
                break;
            }
        }
        if (all) return true;
    }
    return false;
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
