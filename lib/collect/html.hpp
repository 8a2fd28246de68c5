// The HTML report: one self-contained page (inline CSS, JS and SVG; nothing fetched)
// with the table, every metric plotted against every parameter, and parallel
// coordinates over the parameters and metrics.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "collect/result_table.hpp"
#include "collect/writers.hpp"
#include "sweep/sweep_dir.hpp"

namespace aihpc::collect {

struct HtmlOptions {
    std::size_t max_table_rows = 1000;  // the page stays usable on large sweeps
    std::size_t max_plot_rows = 5000;
    std::string color_metric;           // colours the parallel coordinates; default: the first metric
    bool maximize = false;              // whether high values of color_metric are the good ones
    bool direction_given = false;       // false: the direction is read from the metric's name
};

// Whether high values of a metric named so are the good ones, by the names ML code
// gives them: accuracy, AUC, F1, precision, recall, score, reward, R2, IoU, mAP, BLEU,
// ROUGE and throughput rise; loss, error, perplexity, time and anything else fall.
bool higher_is_better(std::string_view metric_name);

void write_html(const ResultTable& table, const sweep::SweepDir& sweep, const HtmlOptions& options, const Sink& sink);

std::string html_escape(std::string_view text);

// One plotted dimension: numbers on a linear or log scale, or categories evenly spaced.
struct PlotAxis {
    std::string name;
    bool categorical = false;
    bool log = false;
    double lo = 0, hi = 0;
    std::vector<std::string> categories;
    // Position of a value in [0, 1]; negative when the value cannot be placed.
    double position(const sweep::Scalar& value) const;
    std::string label(double fraction) const;  // tick text at a fraction of the axis
};

// The axis of a parameter or metric over the given values (absent ones skipped).
PlotAxis make_axis(const std::string& name, const std::vector<const sweep::Scalar*>& values, bool prefer_log);

}  // namespace aihpc::collect
