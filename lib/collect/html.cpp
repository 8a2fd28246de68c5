#include "collect/html.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>

#include "sweep/refine.hpp"
#include "sweep/rungs.hpp"

namespace aihpc::collect {

std::string html_escape(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&#39;"; break;
        default: out += c;
        }
    }
    return out;
}

namespace {

std::string num(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", v);
    return buf;
}

std::string short_number(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.4g", v);
    return buf;
}

const sweep::Scalar* value_of(const ResultRow& row, const std::string& name, bool metric) {
    for (auto& [k, v] : metric ? row.metrics : row.params)
        if (k == name) return &v;
    return nullptr;
}

// A perceptually ordered ramp (dark purple, teal, yellow), t in [0, 1].
std::string ramp(double t) {
    static const double stops[3][3] = {{68, 1, 84}, {33, 145, 140}, {253, 231, 37}};
    t = std::clamp(t, 0.0, 1.0);
    int seg = t < 0.5 ? 0 : 1;
    double u = t < 0.5 ? t * 2 : (t - 0.5) * 2;
    char buf[16];
    std::snprintf(buf, sizeof buf, "#%02x%02x%02x", static_cast<int>(stops[seg][0] + (stops[seg + 1][0] - stops[seg][0]) * u),
                  static_cast<int>(stops[seg][1] + (stops[seg + 1][1] - stops[seg][1]) * u),
                  static_cast<int>(stops[seg][2] + (stops[seg + 1][2] - stops[seg][2]) * u));
    return buf;
}

const char* kStyle = R"(body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#555;margin:0 0 12px}.counts span{display:inline-block;margin-right:14px;padding:2px 8px;border-radius:3px;background:#f1f1f1}
.counts .failed{background:#fde2e1}.counts .done{background:#e3f4e1}.note{color:#666;font-size:12px}
.scroll{max-height:480px;overflow:auto;border:1px solid #ddd}
table{border-collapse:collapse;font-size:12px}th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
th{max-width:9em;overflow-wrap:anywhere}td{max-width:28em;overflow-wrap:anywhere}td.n{white-space:nowrap}
th{position:sticky;top:0;background:#f7f7f7;cursor:pointer;user-select:none}th[data-dir=asc]::after{content:" \25B2"}th[data-dir=desc]::after{content:" \25BC"}
td.n{text-align:right;font-variant-numeric:tabular-nums}tr.failed td{background:#fff3f2}tr.missing td{color:#999}
.plots{display:flex;flex-wrap:wrap;gap:12px}svg{background:#fff;border:1px solid #e3e3e3}svg text{font-size:10px;fill:#444}
svg .axis{stroke:#999;stroke-width:1}svg .grid{stroke:#eee}svg .title{font-size:11px;font-weight:600;fill:#222}
svg circle{fill:#3b6fb6;fill-opacity:.75}svg circle.failed{fill:#d9534f}svg path.line{fill:none;stroke-opacity:.55;stroke-width:1.2}
svg path.line.dim{stroke-opacity:.04}svg rect.brush{fill:transparent;cursor:crosshair}svg rect.sel{fill:#f0ad4e;fill-opacity:.25;stroke:#c77c02;pointer-events:none}
)";

const char* kScript = R"(document.querySelectorAll('table.sortable th').forEach(function(th,i){th.addEventListener('click',function(){
var tb=th.closest('table').tBodies[0],rows=Array.prototype.slice.call(tb.rows),asc=th.getAttribute('data-dir')!=='asc';
th.parentNode.querySelectorAll('th').forEach(function(h){h.removeAttribute('data-dir')});th.setAttribute('data-dir',asc?'asc':'desc');
rows.sort(function(a,b){var x=a.cells[i].textContent,y=b.cells[i].textContent,nx=parseFloat(x),ny=parseFloat(y),ax=!isNaN(nx),ay=!isNaN(ny);
if(ax!==ay)return ax?-1:1;var c=ax?nx-ny:x.localeCompare(y);return asc?c:-c});rows.forEach(function(r){tb.appendChild(r)})})});
document.querySelectorAll('svg.parallel').forEach(function(svg){
var T=+svg.getAttribute('data-top'),PH=+svg.getAttribute('data-height'),lines=[].slice.call(svg.querySelectorAll('path.line')),
ranges={},pt=svg.createSVGPoint(),count=document.getElementById(svg.getAttribute('data-count')),active=null;
function frac(e){pt.x=e.clientX;pt.y=e.clientY;var p=pt.matrixTransform(svg.getScreenCTM().inverse());return Math.min(1,Math.max(0,(T+PH-p.y)/PH))}
function apply(){var n=0;lines.forEach(function(l){var f=l.getAttribute('data-f').split(','),ok=true;
for(var k in ranges){var v=parseFloat(f[k]);if(isNaN(v)||v<ranges[k][0]||v>ranges[k][1]){ok=false;break}}
l.classList.toggle('dim',!ok);if(ok)n++});if(count)count.textContent=Object.keys(ranges).length?n+' of '+lines.length+' lines selected':''}
svg.querySelectorAll('rect.brush').forEach(function(r){r.addEventListener('mousedown',function(e){
active={i:r.getAttribute('data-i'),sel:r.nextElementSibling,start:frac(e)};e.preventDefault()})});
svg.addEventListener('mousemove',function(e){if(!active)return;var f=frac(e),lo=Math.min(active.start,f),hi=Math.max(active.start,f);
ranges[active.i]=[lo,hi];active.sel.setAttribute('y',T+PH-hi*PH);active.sel.setAttribute('height',Math.max(1,(hi-lo)*PH));
active.sel.style.display='';apply()});
window.addEventListener('mouseup',function(e){if(!active)return;if(Math.abs(frac(e)-active.start)<0.01){delete ranges[active.i];
active.sel.style.display='none';apply()}active=null})});
)";

struct Dimension {
    PlotAxis axis;
    bool metric = false;
};

void write_scatter(std::string& out, const std::vector<const ResultRow*>& rows, const Dimension& x, const Dimension& y) {
    const double W = 300, H = 230, L = 52, R = 12, T = 24, B = 40, pw = W - L - R, ph = H - T - B;
    // Points keep clear of the axis lines: fractions map into the inner 92% of the area.
    auto px = [&](double f) { return L + (0.04 + 0.92 * f) * pw; };
    auto py = [&](double f) { return T + ph - (0.04 + 0.92 * f) * ph; };
    out += "<svg class=\"scatter\" width=\"300\" height=\"230\" viewBox=\"0 0 300 230\" role=\"img\" aria-label=\"" +
           html_escape(y.axis.name + " against " + x.axis.name) + "\">";
    out += "<text class=\"title\" x=\"" + num(L) + "\" y=\"15\">" + html_escape(y.axis.name) + " vs " + html_escape(x.axis.name) + "</text>";
    for (int k = 0; k <= 2; ++k) {
        double f = k / 2.0;
        double gx = px(f), gy = py(f);
        out += "<line class=\"grid\" x1=\"" + num(gx) + "\" y1=\"" + num(T) + "\" x2=\"" + num(gx) + "\" y2=\"" + num(T + ph) + "\"/>";
        out += "<line class=\"grid\" x1=\"" + num(L) + "\" y1=\"" + num(gy) + "\" x2=\"" + num(L + pw) + "\" y2=\"" + num(gy) + "\"/>";
        if (!x.axis.categorical)
            out += "<text x=\"" + num(gx) + "\" y=\"" + num(T + ph + 14) + "\" text-anchor=\"middle\">" + html_escape(x.axis.label(f)) + "</text>";
        out += "<text x=\"" + num(L - 4) + "\" y=\"" + num(gy + 3) + "\" text-anchor=\"end\">" + html_escape(y.axis.label(f)) + "</text>";
    }
    if (x.axis.categorical)
        for (std::size_t c = 0; c < x.axis.categories.size(); ++c) {
            double f = x.axis.categories.size() == 1 ? 0.5 : static_cast<double>(c) / static_cast<double>(x.axis.categories.size() - 1);
            out += "<text x=\"" + num(px(f)) + "\" y=\"" + num(T + ph + 14) + "\" text-anchor=\"middle\">" +
                   html_escape(x.axis.categories[c].substr(0, 12)) + "</text>";
        }
    out += "<line class=\"axis\" x1=\"" + num(L) + "\" y1=\"" + num(T + ph) + "\" x2=\"" + num(L + pw) + "\" y2=\"" + num(T + ph) + "\"/>";
    out += "<line class=\"axis\" x1=\"" + num(L) + "\" y1=\"" + num(T) + "\" x2=\"" + num(L) + "\" y2=\"" + num(T + ph) + "\"/>";
    out += "<text x=\"" + num(L + pw / 2) + "\" y=\"" + num(H - 6) + "\" text-anchor=\"middle\">" + html_escape(x.axis.name) +
           (x.axis.log ? " (log)" : "") + "</text>";
    for (auto* row : rows) {
        auto* xv = value_of(*row, x.axis.name, x.metric);
        auto* yv = value_of(*row, y.axis.name, y.metric);
        if (!xv || !yv) continue;
        double fx = x.axis.position(*xv), fy = y.axis.position(*yv);
        if (fx < 0 || fy < 0) continue;
        out += "<circle" + std::string(row->state == TaskState::failed ? " class=\"failed\"" : "") + " cx=\"" + num(px(fx)) +
               "\" cy=\"" + num(py(fy)) + "\" r=\"3\"><title>#" + std::to_string(row->index) + " " +
               html_escape(x.axis.name + "=" + xv->plain + " " + y.axis.name + "=" + yv->plain) + "</title></circle>";
    }
    out += "</svg>\n";
}

void write_parallel(std::string& out, const std::vector<const ResultRow*>& rows, const std::vector<Dimension>& dims,
                    const Dimension* color, bool maximize) {
    const double step = 150, L = 60, R = 60, T = 30, B = 40, H = 380, ph = H - T - B;
    double W = L + R + step * static_cast<double>(dims.size() - 1);
    // data-f on each line holds its position on every axis, and a transparent rect over
    // each axis takes a drag: the script dims the lines outside every dragged range.
    out += "<svg class=\"parallel\" width=\"" + num(W) + "\" height=\"" + num(H) + "\" viewBox=\"0 0 " + num(W) + " " + num(H) +
           "\" data-top=\"" + num(T) + "\" data-height=\"" + num(ph) + "\" data-count=\"brushed\" role=\"img\" aria-label=\"parallel coordinates\">";
    for (auto* row : rows) {
        std::string d, fractions;
        bool pen = false;
        for (std::size_t i = 0; i < dims.size(); ++i) {
            auto* v = value_of(*row, dims[i].axis.name, dims[i].metric);
            double f = v ? dims[i].axis.position(*v) : -1;
            if (i > 0) fractions += ',';
            if (f < 0) {
                pen = false;
                continue;
            }
            char text[16];
            std::snprintf(text, sizeof text, "%.4g", f);  // finer than num(): a brush selects by it
            fractions += text;
            d += (pen ? "L" : "M") + num(L + step * static_cast<double>(i)) + " " + num(T + ph - f * ph);
            pen = true;
        }
        if (d.empty()) continue;
        std::string stroke = row->state == TaskState::failed ? "#d9534f" : "#3b6fb6";
        if (color && row->state != TaskState::failed)
            if (auto* cv = value_of(*row, color->axis.name, true)) {
                double f = color->axis.position(*cv);
                if (f >= 0) stroke = ramp(maximize ? f : 1 - f);
            }
        out += "<path class=\"line\" stroke=\"" + stroke + "\" data-f=\"" + fractions + "\" d=\"" + d + "\"><title>#" +
               std::to_string(row->index) + "</title></path>";
    }
    for (std::size_t i = 0; i < dims.size(); ++i) {
        double x = L + step * static_cast<double>(i);
        const auto& a = dims[i].axis;
        out += "<line class=\"axis\" x1=\"" + num(x) + "\" y1=\"" + num(T) + "\" x2=\"" + num(x) + "\" y2=\"" + num(T + ph) + "\"/>";
        out += "<rect class=\"brush\" data-i=\"" + std::to_string(i) + "\" x=\"" + num(x - 9) + "\" y=\"" + num(T) +
               "\" width=\"18\" height=\"" + num(ph) + "\"/><rect class=\"sel\" x=\"" + num(x - 6) + "\" y=\"" + num(T) +
               "\" width=\"12\" height=\"0\" style=\"display:none\"/>";
        out += "<text class=\"title\" x=\"" + num(x) + "\" y=\"" + num(T - 12) + "\" text-anchor=\"middle\">" + html_escape(a.name) +
               (a.log ? " (log)" : "") + "</text>";
        if (a.categorical) {
            for (std::size_t c = 0; c < a.categories.size(); ++c) {
                double f = a.categories.size() == 1 ? 0.5 : static_cast<double>(c) / static_cast<double>(a.categories.size() - 1);
                out += "<text x=\"" + num(x + 4) + "\" y=\"" + num(T + ph - f * ph + 3) + "\">" + html_escape(a.categories[c].substr(0, 14)) +
                       "</text>";
            }
        } else {
            out += "<text x=\"" + num(x + 4) + "\" y=\"" + num(T + ph + 12) + "\">" + html_escape(a.label(0)) + "</text>";
            out += "<text x=\"" + num(x + 4) + "\" y=\"" + num(T - 2) + "\">" + html_escape(a.label(1)) + "</text>";
        }
    }
    out += "</svg>\n";
}

}  // namespace

bool higher_is_better(std::string_view metric_name) {
    std::string name;
    for (char c : metric_name) name += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    // A falling word wins over a rising one: "score_loss" and "error_rate" fall.
    for (std::string_view falling : {"loss", "err", "perplexity", "ppl", "mse", "mae", "rmse", "time", "latency", "regret", "cost", "wer", "cer"})
        if (name.find(falling) != std::string::npos) return false;
    for (std::string_view rising : {"acc", "auc", "f1", "precision", "recall", "score", "reward", "r2", "iou", "map", "bleu", "rouge",
                                    "throughput", "per_sec", "per_second", "psnr", "ssim", "return"})
        if (name.find(rising) != std::string::npos) return true;
    return false;
}

double PlotAxis::position(const sweep::Scalar& value) const {
    if (categorical) {
        auto it = std::find(categories.begin(), categories.end(), value.plain);
        if (it == categories.end()) return -1;
        if (categories.size() == 1) return 0.5;
        return static_cast<double>(it - categories.begin()) / static_cast<double>(categories.size() - 1);
    }
    auto v = number_of(value);
    if (!v) return -1;
    if (hi <= lo) return 0.5;
    if (log) return *v > 0 ? (std::log(*v) - std::log(lo)) / (std::log(hi) - std::log(lo)) : -1;
    return (*v - lo) / (hi - lo);
}

std::string PlotAxis::label(double f) const {
    if (categorical) return "";
    if (log) return short_number(std::exp(std::log(lo) + f * (std::log(hi) - std::log(lo))));
    return short_number(lo + f * (hi - lo));
}

PlotAxis make_axis(const std::string& name, const std::vector<const sweep::Scalar*>& values, bool prefer_log) {
    PlotAxis a;
    a.name = name;
    a.lo = INFINITY;
    a.hi = -INFINITY;
    bool all_numeric = true, all_positive = true;
    std::vector<double> numbers;
    for (auto* v : values) {
        // NaN and infinities (null) are kept out of the scale: one of them must not
        // turn a metric into categories or stretch its axis.
        if (v->json == "null") continue;
        auto n = number_of(*v);
        if (!n) {
            all_numeric = false;
            break;
        }
        a.lo = std::min(a.lo, *n);
        a.hi = std::max(a.hi, *n);
        all_positive = all_positive && *n > 0;
        numbers.push_back(*n);
    }
    if (!all_numeric) {
        a.categorical = true;
        std::set<std::string> seen;
        for (auto* v : values)
            if (v->json != "null" && seen.insert(v->plain).second) a.categories.push_back(v->plain);
        std::sort(a.categories.begin(), a.categories.end());
        return a;
    }
    // Listed values spaced by factors (1e-5, 1e-4, 1e-3) read best on a log axis too:
    // their middle value sits far nearer the low end than the linear middle.
    bool log_spaced = false;
    if (all_positive && !numbers.empty() && a.hi >= 100 * a.lo) {
        std::sort(numbers.begin(), numbers.end());
        numbers.erase(std::unique(numbers.begin(), numbers.end()), numbers.end());
        if (numbers.size() >= 3) log_spaced = numbers[numbers.size() / 2] < a.lo + (a.hi - a.lo) / 10;
    }
    // A short list over a decade or more whose steps are near-equal factors and unequal
    // differences (1e-4, 3e-4, 1e-3; 16, 32, ... 256) is log-spaced too.
    if (!log_spaced && all_positive && a.hi >= 10 * a.lo) {
        std::sort(numbers.begin(), numbers.end());
        numbers.erase(std::unique(numbers.begin(), numbers.end()), numbers.end());
        auto spread = [](const std::vector<double>& gaps) {
            double mean = 0, var = 0;
            for (double g : gaps) mean += g;
            mean /= static_cast<double>(gaps.size());
            for (double g : gaps) var += (g - mean) * (g - mean);
            return std::sqrt(var / static_cast<double>(gaps.size())) / mean;  // coefficient of variation
        };
        if (numbers.size() >= 3 && numbers.size() <= 12) {
            std::vector<double> linear, factor;
            for (std::size_t k = 1; k < numbers.size(); ++k) {
                linear.push_back(numbers[k] - numbers[k - 1]);
                factor.push_back(std::log(numbers[k] / numbers[k - 1]));
            }
            log_spaced = spread(factor) < 0.25 && spread(linear) > 0.5;
        }
    }
    a.log = (prefer_log || log_spaced) && all_positive && a.hi > a.lo;
    if (numbers.empty()) {
        a.categorical = true;  // nothing numeric to scale
        a.lo = a.hi = 0;
    }
    return a;
}

namespace {

// A scheduled sweep: each configuration's metric at every budget it ran, one line per
// configuration, so that a reader sees where the stopped ones fell behind the promoted.
void write_rung_curves(std::string& out, const sweep::SweepDir& sweep, std::size_t max_configs) {
    const auto& schedule = *sweep.spec.schedule;
    auto state = sweep::read_rung_state(sweep);
    std::map<std::uint64_t, std::vector<std::pair<sweep::Scalar, sweep::Scalar>>> curves;  // budget, metric
    for (auto& [place, configs] : state.rungs) {
        const auto& bracket = sweep::find_bracket(state.brackets, place.first);
        auto budget = sweep::budget_scalar(bracket.rungs[place.second].budget);
        for (auto c : configs) {
            if (curves.size() >= max_configs && !curves.count(c)) continue;
            auto o = sweep::read_outcome(sweep::rung_result_path(sweep.path, place.first, place.second, c), c, schedule.metric);
            if (o.metric) curves[c].push_back({budget, sweep::scalar_double(*o.metric)});
        }
    }
    out += "<h2>" + html_escape(schedule.metric) + " against " + html_escape(schedule.resource) + "</h2>\n";
    std::vector<const sweep::Scalar*> xs, ys;
    for (auto& [c, points] : curves)
        for (auto& [x, y] : points) {
            xs.push_back(&x);
            ys.push_back(&y);
        }
    PlotAxis x = make_axis(schedule.resource, xs, true), y = make_axis(schedule.metric, ys, false);
    if (curves.empty() || x.categorical || y.categorical) {
        out += "<p class=\"note\">No configuration has reported " + html_escape(schedule.metric) + " at any rung yet.</p>\n";
        return;
    }
    out += "<p class=\"note\">One line per configuration, through the budgets of the rungs it ran; a line that stops early is a "
           "configuration that was stopped (failed runs and NaN are left out).</p>\n";
    const double W = 640, H = 320, L = 60, R = 16, T = 16, B = 40, pw = W - L - R, ph = H - T - B;
    auto px = [&](double f) { return L + (0.04 + 0.92 * f) * pw; };
    auto py = [&](double f) { return T + ph - (0.04 + 0.92 * f) * ph; };
    out += "<svg class=\"rungs\" width=\"640\" height=\"320\" viewBox=\"0 0 640 320\" role=\"img\" aria-label=\"" +
           html_escape(schedule.metric + " against " + schedule.resource) + "\">";
    for (int k = 0; k <= 4; ++k) {
        double f = k / 4.0;
        out += "<line class=\"grid\" x1=\"" + num(L) + "\" y1=\"" + num(py(f)) + "\" x2=\"" + num(L + pw) + "\" y2=\"" + num(py(f)) + "\"/>";
        out += "<text x=\"" + num(L - 4) + "\" y=\"" + num(py(f) + 3) + "\" text-anchor=\"end\">" + html_escape(y.label(f)) + "</text>";
        out += "<text x=\"" + num(px(f)) + "\" y=\"" + num(T + ph + 14) + "\" text-anchor=\"middle\">" + html_escape(x.label(f)) + "</text>";
    }
    out += "<line class=\"axis\" x1=\"" + num(L) + "\" y1=\"" + num(T + ph) + "\" x2=\"" + num(L + pw) + "\" y2=\"" + num(T + ph) + "\"/>";
    out += "<text x=\"" + num(L + pw / 2) + "\" y=\"" + num(H - 6) + "\" text-anchor=\"middle\">" + html_escape(schedule.resource) +
           (x.log ? " (log)" : "") + "</text>";
    for (auto& [c, points] : curves) {
        std::string d;
        for (auto& [bx, my] : points) d += (d.empty() ? "M" : " L") + num(px(x.position(bx))) + " " + num(py(y.position(my)));
        out += "<path class=\"curve\" d=\"" + d + "\" fill=\"none\" stroke=\"#3b6fb6\" stroke-opacity=\".6\"><title>configuration " +
               std::to_string(c) + "</title></path>";
        for (auto& [bx, my] : points)
            out += "<circle cx=\"" + num(px(x.position(bx))) + "\" cy=\"" + num(py(y.position(my))) + "\" r=\"2.5\"><title>#" + std::to_string(c) +
                   " " + html_escape(schedule.resource + "=" + bx.plain + " " + schedule.metric + "=" + my.plain) + "</title></circle>";
    }
    out += "</svg>\n";
}

// The best run first: what a reader of the report looks for, from a task that succeeded
// only.
void write_best_run(std::string& out, const ResultTable& table, const HtmlOptions& options) {
    std::string metric = options.color_metric;
    if (std::find(table.metric_names.begin(), table.metric_names.end(), metric) == table.metric_names.end())
        metric = table.metric_names.empty() ? "" : table.metric_names.front();
    bool maximize = options.direction_given && metric == options.color_metric ? options.maximize : higher_is_better(metric);
    const ResultRow* best = nullptr;
    double best_value = 0;
    for (const auto& row : table.rows) {
        if (row.state != TaskState::done) continue;
        const sweep::Scalar* v = metric.empty() ? nullptr : value_of(row, metric, true);
        auto n = v ? number_of(*v) : std::nullopt;
        if (!n) continue;
        if (!best || (maximize ? *n > best_value : *n < best_value)) {
            best = &row;
            best_value = *n;
        }
    }
    out += "<h2>Best run</h2>\n";
    if (!best) {
        out += "<p class=\"note\">" +
               (metric.empty() ? std::string("No result reports a metric.") : "No task that succeeded reports " + html_escape(metric) + ".") +
               "</p>\n";
    } else {
        out += "<p class=\"best\" id=\"best\">Task " + std::to_string(best->index) + ": <b>" + html_escape(metric) + " " +
               html_escape(value_of(*best, metric, true)->plain) + "</b> (" + (maximize ? "highest" : "lowest") + ")";
        for (const auto& [name, value] : best->params) out += " &middot; " + html_escape(name) + "=" + html_escape(value.plain);
        out += "</p>\n";
    }
}

// The results table, at most max_table_rows of it, handed to `sink` a megabyte at a time.
void write_results_table(std::string& out, const ResultTable& table, const HtmlOptions& options, const Sink& sink) {
    auto cols = columns(table);
    out += "<h2>Results</h2>\n";
    if (table.rows.size() > options.max_table_rows)
        out += "<p class=\"note\">The first " + std::to_string(options.max_table_rows) + " of " + std::to_string(table.rows.size()) +
               " rows; aihpc-collect --format csv gives them all.</p>\n";
    out += "<div class=\"scroll\"><table class=\"sortable\" id=\"results\">\n<thead><tr>";
    std::vector<bool> numeric;
    for (auto& c : cols) {
        numeric.push_back(column_is_numeric(TableRows(table), c));
        out += "<th>" + html_escape(c.name) + "</th>";
    }
    out += "</tr></thead>\n<tbody>\n";
    std::size_t shown = std::min(table.rows.size(), options.max_table_rows);
    for (std::size_t r = 0; r < shown; ++r) {
        const auto& row = table.rows[r];
        out += std::string("<tr class=\"") + task_state_name(row.state) + "\">";
        for (std::size_t c = 0; c < cols.size(); ++c)
            out += (numeric[c] ? "<td class=\"n\">" : "<td>") + html_escape(cell_text(row, cols[c])) + "</td>";
        out += "</tr>\n";
        if (out.size() > (1 << 20)) {
            sink(out);
            out.clear();
        }
    }
    out += "</tbody>\n</table></div>\n";
}

// The parameters that vary among the plotted rows, each an axis (logarithmic where the
// spec draws it so).
std::vector<Dimension> varying_params(const ResultTable& table, const sweep::SweepDir& sweep,
                                      const std::vector<const ResultRow*>& rows) {
    auto ranges = sweep::param_ranges(sweep.spec);
    std::vector<Dimension> params;
    for (auto& name : table.param_names) {
        std::vector<const sweep::Scalar*> values;
        std::set<std::string> distinct;
        for (auto* row : rows)
            if (auto* v = value_of(*row, name, false)) {
                values.push_back(v);
                distinct.insert(v->json);
            }
        if (distinct.size() < 2) continue;
        auto r = ranges.find(name);
        params.push_back({make_axis(name, values, r != ranges.end() && r->second.log), false});
    }
    return params;
}

// The metrics worth a plot: numeric, reported by at least three rows, not constant.
std::vector<Dimension> plotted_metrics(const ResultTable& table, const std::vector<const ResultRow*>& rows) {
    std::vector<Dimension> metrics;
    for (auto& name : table.metric_names) {
        std::vector<const sweep::Scalar*> values;
        std::size_t numbers = 0;
        for (auto* row : rows)
            if (auto* v = value_of(*row, name, true)) {
                values.push_back(v);
                if (number_of(*v)) ++numbers;
            }
        auto axis = make_axis(name, values, false);
        // A constant metric, or one that only a row or two report, plots nothing worth a
        // look.
        if (!axis.categorical && numbers >= 3 && axis.lo < axis.hi) metrics.push_back({axis, true});
    }
    return metrics;
}

}  // namespace

void write_html(const ResultTable& table, const sweep::SweepDir& sweep, const HtmlOptions& options, const Sink& sink) {
    std::string out;
    out.reserve(1 << 20);
    std::uint64_t missing = table.tasks - table.done.size() - table.failed.size();
    out += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>" + html_escape(sweep.spec.name) +
           " - aihpc-collect</title>\n<style>\n" + kStyle + "</style>\n</head>\n<body>\n";
    out += "<h1>" + html_escape(sweep.spec.name) + "</h1>\n<p class=\"meta\">" + html_escape(sweep.path) + " &middot; spec " +
           html_escape(sweep.spec_hash) + "</p>\n";
    out += "<p class=\"counts\"><span>" + std::to_string(table.tasks) + " tasks</span><span class=\"done\">" +
           std::to_string(table.done.size()) + " done</span><span class=\"failed\">" + std::to_string(table.failed.size()) +
           " failed</span><span>" + std::to_string(missing) + " missing</span></p>\n";

    write_best_run(out, table, options);

    write_results_table(out, table, options, sink);

    // The dimensions: parameters that vary, then metrics with numbers.
    std::vector<const ResultRow*> rows;
    for (auto& row : table.rows) {
        if (rows.size() >= options.max_plot_rows) break;
        if (row.state != TaskState::missing) rows.push_back(&row);
    }
    const std::vector<Dimension> params = varying_params(table, sweep, rows);
    const std::vector<Dimension> metrics = plotted_metrics(table, rows);

    if (sweep.spec.schedule) write_rung_curves(out, sweep, options.max_plot_rows);

    out += "<h2>Metrics against parameters</h2>\n";
    if (rows.size() < table.rows.size())
        out += "<p class=\"note\">Plots show the first " + std::to_string(rows.size()) + " rows.</p>\n";
    if (params.empty() || metrics.empty()) {
        out += "<p class=\"note\">Nothing to plot: " + std::string(metrics.empty() ? "no numeric metric" : "no parameter varies") +
               " among the results.</p>\n";
    } else {
        out += "<div class=\"plots\">\n";
        for (auto& m : metrics)
            for (auto& p : params) {
                write_scatter(out, rows, p, m);
                if (out.size() > (1 << 20)) {
                    sink(out);
                    out.clear();
                }
            }
        out += "</div>\n";
    }

    out += "<h2>Parallel coordinates</h2>\n";
    std::vector<Dimension> dims = params;
    dims.insert(dims.end(), metrics.begin(), metrics.end());
    if (dims.size() < 2) {
        out += "<p class=\"note\">Parallel coordinates need at least two varying parameters or metrics.</p>\n";
    } else {
        const Dimension* color = nullptr;
        for (auto& m : metrics)
            if (m.axis.name == options.color_metric) color = &m;
        if (!color && !metrics.empty()) color = &metrics.front();
        bool maximize = options.maximize;
        if (color && !(options.direction_given && color->axis.name == options.color_metric))
            maximize = higher_is_better(color->axis.name);
        if (color)
            out += "<p class=\"note\">Lines are coloured by " + html_escape(color->axis.name) + ": bright is best (" +
                   (maximize ? "highest" : "lowest") +
                   (options.direction_given && color->axis.name == options.color_metric ? "" : ", as its name says; choose with --sort METRIC:max or :min") +
                   "); failed tasks are red. Drag along an axis to select a range; click it to clear. <span id=\"brushed\"></span></p>\n";
        write_parallel(out, rows, dims, color, maximize);
    }
    out += "<script>\n" + std::string(kScript) + "</script>\n</body>\n</html>\n";
    sink(out);
}

}  // namespace aihpc::collect
