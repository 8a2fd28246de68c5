// Submission planning, pure: which arrays to submit for which phases and chunks, with
// which array spec and dependency, and the text of the generated scripts. The tool
// runs sbatch on the result; nothing here talks to Slurm.
#pragma once
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "sweep/sweep_dir.hpp"

namespace aihpc::sweep {

// A slice of the global task range submitted as one array, indexed from 0.
struct Chunk {
    unsigned index = 0;
    std::uint64_t offset = 0;    // global index of its first task
    std::uint64_t count = 0;     // tasks in it
    std::uint64_t elements = 0;  // array elements: ceil(count / pack)
};

// Splits `tasks` so that no chunk has more than max_array_size elements (array ids
// 0..max_array_size-1), each element running `pack` consecutive tasks.
std::vector<Chunk> plan_chunks(std::uint64_t tasks, std::uint64_t max_array_size, std::uint64_t pack);

// The global indices array element `element` of a chunk runs.
std::vector<std::uint64_t> element_tasks(std::uint64_t element, std::uint64_t offset, std::uint64_t count, std::uint64_t pack);

// "0-999" or "3,7,12-15", with "%N" when throttle > 0.
std::string array_spec(const std::set<std::uint64_t>& ids, std::uint64_t throttle);

struct SubmitOptions {
    std::uint64_t throttle = 0;
    std::uint64_t max_array_size = 1001;
    std::uint64_t pack = 1;
    std::vector<std::string> sbatch_args;  // extra words for the sbatch line or the script
    std::string tool_path;                 // absolute path of aihpc-sweep
    std::string tool_version;
};

struct ArraySubmission {
    std::string phase;
    std::string label;        // "prep.0": phase and chunk (or resubmission group)
    std::uint64_t offset = 0;
    std::uint64_t count = 0;
    std::uint64_t pack = 1;
    std::string array;        // the --array value
    std::string after;        // label of the array it waits on (aftercorr); empty: none
    std::string script;       // absolute path
    std::vector<std::string> extra;  // sbatch words before the script (resubmit)
    std::string job_id;       // once submitted

    // sbatch argv; `dependency_job` is the job id of `after` (or a placeholder).
    std::vector<std::string> argv(const std::string& dependency_job) const;
};

// Every phase and chunk, phases in spec order, the chunks of one phase together.
std::vector<ArraySubmission> plan_submit(const SweepDir& sweep, const SubmitOptions& options);

// The given global indices again, every phase, chunked by max_array_size with pack 1 so
// that array ids are exactly index - offset.
std::vector<ArraySubmission> plan_resubmit(const SweepDir& sweep, const std::set<std::uint64_t>& indices,
                                           const SubmitOptions& options, const std::string& label_prefix);

std::string script_path(const SweepDir& sweep, const std::string& phase);

// Sbatch words for a sweep: when they ask for a container (--aihpc-container) without
// saying where the batch script runs, --aihpc-container-scope=steps is added, so that
// aihpc-sweep stays on the host and each task's command runs in the image as a step.
// Words that stage data (--aihpc-stage) without --aihpc-gravity get --aihpc-gravity: the
// tasks prefer the nodes that hold their data warm (--aihpc-gravity=off keeps them from it).
std::vector<std::string> with_host_runner(std::vector<std::string> words);

// The sbatch options of one phase's script (its #SBATCH lines): the job name and output,
// the spec's sbatch and aihpc words, the phase's, then the extra words.
std::vector<std::string> phase_sbatch_words(const SweepDir& sweep, const Phase& phase, const SubmitOptions& options);

// Checks the --aihpc-* words among sbatch words with the plugin's own parser
// (config::parse_user_options), so that an unknown option or a bad value is refused
// before anything is queued, not by every array task. Throws aihpc::Error naming the
// option; `where` says whose words they are ("phase 'train'").
void check_aihpc_options(const std::vector<std::string>& words, const std::string& where);

// #SBATCH lines of sbatch words: an option word starts a line, the words that follow it
// (its value) join it, as `-c 4` must stay together.
std::string sbatch_lines(const std::vector<std::string>& words);

// The batch script of one phase; its arguments are OFFSET COUNT PACK.
std::string phase_script(const SweepDir& sweep, const Phase& phase, const SubmitOptions& options);

// The sbatch line as a shell would read it, with {LABEL} for job ids not known yet.
// `script_words` (phase_sbatch_words) are shown on the line too, so that a dry run shows
// every option the array gets, its script's included.
std::string dry_run_line(const ArraySubmission& submission, const std::vector<std::string>& script_words = {});

// chunks.json: the submissions and their job ids.
std::string chunks_json(const std::vector<ArraySubmission>& submissions, const SubmitOptions& options);

// MaxArraySize out of `scontrol show config` output.
std::uint64_t parse_max_array_size(const std::string& scontrol_output);

}  // namespace aihpc::sweep
