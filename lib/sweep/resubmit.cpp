#include "sweep/resubmit.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/error.hpp"
#include "sweep/results.hpp"
#include "sweep/runner.hpp"

namespace aihpc::sweep {

namespace {

// A sweep submitted before resubmit kept scripts may have none: they are written as
// submit would, without the words after resubmit's --, which go on the sbatch lines.
void write_missing_scripts(const SweepDir& sweep, const SubmitOptions& options) {
    for (auto& phase : sweep.spec.phases) {
        if (is_file(script_path(sweep, phase.name))) continue;
        SubmitOptions o = options;
        o.sbatch_args.clear();
        write_scripts(sweep, o);
        return;
    }
}

// The earlier results set aside, each with the array that runs its task again.
class SetAsideResults {
public:
    SetAsideResults(const SweepDir& sweep, const std::vector<ArraySubmission>& subs, const std::set<std::uint64_t>& indices)
        : subs_(subs) {
        for (std::size_t k = 0; k < subs.size(); ++k) {
            const Phase& phase = find_phase(sweep.spec, subs[k].phase);
            for (auto it = indices.lower_bound(subs[k].offset); it != indices.end() && *it < subs[k].offset + subs[k].count; ++it) {
                auto path = result_path(sweep, phase, *it);
                if (!is_file(path)) continue;
                if (::rename(path.c_str(), (path + ".prev").c_str()) != 0) {
                    int e = errno;
                    auto restore = put_back(true);
                    throw Error("cannot set aside " + path + ": " + std::strerror(e) + "; nothing was submitted" + restore);
                }
                aside_.push_back({path, k});
            }
        }
    }

    // Puts back every result (all) or those of the arrays that have no job id; returns
    // what an error adds about those that could not be.
    std::string put_back(bool all) const {
        std::string failed;
        for (auto& a : aside_)
            if ((all || subs_[a.sub].job_id.empty()) && ::rename((a.path + ".prev").c_str(), a.path.c_str()) != 0)
                failed += " " + a.path + ".prev";
        return failed.empty() ? std::string() : "; could not restore" + failed + " (rename them back by hand)";
    }

private:
    struct Aside {
        std::string path;
        std::size_t sub;
    };
    const std::vector<ArraySubmission>& subs_;
    std::vector<Aside> aside_;
};

}  // namespace

std::set<std::uint64_t> tasks_to_resubmit(const SweepDir& sweep, const std::optional<std::string>& list, bool failed, bool missing,
                                          std::ostream& warnings) {
    std::set<std::uint64_t> indices;
    if (list) indices = parse_index_list(*list);
    if (failed || missing) {
        auto scan = scan_results(sweep);
        warnings << unreadable_warnings("aihpc-sweep", scan.unreadable);
        if (failed) indices.insert(scan.failed.begin(), scan.failed.end());
        if (missing) {
            auto m = scan.missing(sweep.tasks);
            indices.insert(m.begin(), m.end());
        }
    }
    return indices;
}

void resubmit_tasks(const SweepDir& sweep, std::vector<ArraySubmission>& subs, const std::set<std::uint64_t>& indices,
                    const SubmitOptions& options, const Submitter& submitter) {
    // Sweeps expanded before expand refused a spec without a command may still lack one.
    require_commands(sweep.spec);
    write_missing_scripts(sweep, options);
    SetAsideResults aside(sweep, subs, indices);
    try {
        submit_arrays(sweep, subs, [] {}, submitter);
    } catch (const Error& e) {
        std::vector<ArraySubmission> submitted;
        for (auto& s : subs)
            if (!s.job_id.empty()) submitted.push_back(s);
        if (!submitted.empty()) append_chunks(sweep, submitted, options);
        throw Error(e.what() + aside.put_back(false));
    }
    append_chunks(sweep, subs, options);
}

}  // namespace aihpc::sweep
