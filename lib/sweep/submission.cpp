#include "sweep/submission.hpp"

#include <sys/stat.h>

#include <cstdlib>

#include "common/error.hpp"
#include "common/json.hpp"
#include "common/text.hpp"

extern char** environ;

namespace aihpc::sweep {

void forget_job_environment() {
    std::vector<std::string> names;
    for (char** e = environ; e && *e; ++e) {
        std::string_view kv(*e);
        auto name = kv.substr(0, kv.find('='));
        if (starts_with(name, "SLURM_") && name != "SLURM_CONF") names.emplace_back(name);
    }
    for (auto& n : names) ::unsetenv(n.c_str());
}

std::uint64_t cluster_max_array_size(bool preview, std::ostream& notes) {
    std::string why;
    try {
        auto r = capture_output({"scontrol", "show", "config"});
        if (r.status == 0) return parse_max_array_size(r.out);
        why = std::string(trim(r.err));
    } catch (const Error& e) {
        why = e.what();
    }
    // Its first line says why; the rest repeats it.
    why = why.substr(0, why.find('\n'));
    // A failure that says nothing leaves Slurm's default, without a word.
    if (why.empty()) return SubmitOptions{}.max_array_size;
    if (!preview) throw Error("cannot read MaxArraySize: scontrol show config failed (" + why + "); give --max-array-size N");
    notes << "aihpc-sweep: note: MaxArraySize unknown (scontrol show config failed: " << why
          << "); planned with Slurm's default, 1001; give --max-array-size N for your cluster's\n";
    return 1001;
}

void write_scripts(const SweepDir& sweep, const SubmitOptions& options) {
    for (const auto& phase : sweep.spec.phases) {
        auto path = script_path(sweep, phase.name);
        write_file_atomic(path, phase_script(sweep, phase, options));
        if (::chmod(path.c_str(), 0755) != 0) throw_errno("cannot make " + path + " executable");
    }
}

void submit_arrays(const SweepDir& sweep, std::vector<ArraySubmission>& subs, const std::function<void()>& record,
                   const Submitter& submitter) {
    for (auto& s : subs) {
        std::string dep;
        for (auto& prior : subs)
            if (!s.after.empty() && prior.label == s.after) dep = prior.job_id;
        bool any = &s != &subs.front();
        std::string where = any ? "; the arrays submitted so far are in " + sweep.path + "/chunks.json" : "; no array was submitted";
        auto r = submitter.sbatch(s.argv(dep));
        if (r.status != 0) {
            if (any) record();
            throw Error("sbatch failed for " + s.label + " (exit " + std::to_string(r.status) + "): " + std::string(trim(r.err)) + where);
        }
        auto id = std::string(trim(r.out));
        s.job_id = id.substr(0, id.find(';'));
        if (!parse_uint(s.job_id)) {
            s.job_id.clear();
            if (any) record();
            throw Error("sbatch printed no job id for " + s.label + ": '" + id + "'" + where);
        }
        record();
        if (submitter.progress)
            *submitter.progress << "aihpc-sweep: submitted " << s.label << " (tasks " << s.offset << "-" << s.offset + s.count - 1
                                << ") as job " << s.job_id << "\n";
    }
}

void submit_sweep(const SweepDir& sweep, std::vector<ArraySubmission>& subs, const SubmitOptions& options,
                  const Submitter& submitter) {
    // Sweeps expanded before expand refused a spec without a command may still lack one.
    require_commands(sweep.spec);
    if (is_file(sweep.path + "/chunks.json"))
        throw Error(sweep.path + " was already submitted (see chunks.json); use aihpc-sweep resubmit");
    write_scripts(sweep, options);
    auto record = [&] { write_file_atomic(sweep.path + "/chunks.json", chunks_json(subs, options)); };
    submit_arrays(sweep, subs, record, submitter);
}

void append_chunks(const SweepDir& sweep, const std::vector<ArraySubmission>& subs, const SubmitOptions& options) {
    std::string path = sweep.path + "/chunks.json";
    std::string fresh = chunks_json(subs, options);
    if (!is_file(path)) {
        write_file_atomic(path, fresh);
        return;
    }
    JsonRef old = parse_json(read_file(path));
    JsonRef add = parse_json(fresh);
    json_object *arrays = nullptr, *more = nullptr;
    if (json_object_object_get_ex(old.get(), "arrays", &arrays) && json_object_object_get_ex(add.get(), "arrays", &more)) {
        for (std::size_t i = 0; i < json_object_array_length(more); ++i)
            json_object_array_add(arrays, json_object_get(json_object_array_get_idx(more, i)));
        write_file_atomic(path, std::string(json_object_to_json_string_ext(old.get(), JSON_C_TO_STRING_PLAIN)) + "\n");
    } else {
        write_file_atomic(path, fresh);
    }
}

std::vector<std::string> job_ids(const std::vector<ArraySubmission>& subs) {
    std::vector<std::string> out;
    for (auto& s : subs) out.push_back(s.job_id);
    return out;
}

}  // namespace aihpc::sweep
