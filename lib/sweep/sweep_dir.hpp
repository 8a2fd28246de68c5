// The sweep dir on disk (aihpc-sweep(1), "The sweep dir"): writing it from a spec,
// opening it again, and looking up one task in O(1) through tasks.idx.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/fd.hpp"
#include "sweep/spec.hpp"

namespace aihpc::sweep {

struct Provenance {
    std::string version;     // tool version
    std::string created;     // RFC 3339
    std::string git_commit;  // empty: not in a git work tree
};

struct ExpandSummary {
    std::uint64_t tasks = 0;
    std::uint64_t excluded = 0;
    std::string spec_hash;
    // A random sweep over a finite space: its distinct configurations (0: not finite),
    // and whether there were no more of them than trials, so that each ran once.
    std::uint64_t distinct = 0;
    bool whole_space = false;
};

struct ExpandOptions {
    // Above this many tasks (before exclusions) the expand is refused before anything
    // is written.
    std::uint64_t max_tasks = 10'000'000;
    // An exclusion rule that matches no task is an error unless this is set: it is a
    // typo far more often than intended.
    bool allow_empty_exclude = false;
};

// Hex XXH3-64 of the normalized spec text.
std::string spec_hash(const SweepSpec& spec);

// Writes tasks.jsonl, tasks.idx and sweep.json under `dir` (created if missing), with
// results/, logs/ and scripts/. Refuses a dir that already holds a sweep. When it fails,
// it leaves nothing behind: no file, and no directory it created.
ExpandSummary write_sweep_dir(const SweepSpec& spec, const std::string& dir, const Provenance& provenance,
                              const ExpandOptions& options = {});

struct SweepDir {
    std::string path;  // absolute
    SweepSpec spec;
    std::string spec_hash;
    std::string git_commit;
    std::uint64_t tasks = 0;
};

SweepDir open_sweep(const std::string& dir);

// One task as tasks.jsonl holds it.
struct TaskRecord {
    std::uint64_t index = 0;
    std::string params_json;  // the params object text, as written
    Assignment params;        // in order; values as Scalar
    std::uint64_t task_seed = 0;
};

// One line of tasks.jsonl, read strictly: malformed text or a value of the wrong type
// (a `params` that is not an object) is an aihpc::Error, never a crash.
TaskRecord parse_task_line(std::string_view line);

// O(1) lookup of task i: two preads in tasks.idx, one in tasks.jsonl.
class TaskIndex {
public:
    explicit TaskIndex(const std::string& dir);
    std::uint64_t size() const { return count_; }
    std::string line(std::uint64_t i) const;
    TaskRecord task(std::uint64_t i) const { return parse_task_line(line(i)); }

private:
    std::string dir_;
    UniqueFd lines_;
    UniqueFd offsets_;
    std::uint64_t count_ = 0;
    std::uint64_t lines_size_ = 0;
};

// Writes `text` to `path` atomically: a temporary file beside it, then rename.
void write_file_atomic(const std::string& path, std::string_view text);
std::string read_file(const std::string& path);

// Whether `path` is a regular file (a link followed): how the sweep dir's records
// (chunks.json, rounds.json, scripts, results) are known to be there.
bool is_file(const std::string& path);

// Current time, RFC 3339 with a UTC offset.
std::string rfc3339_now();

}  // namespace aihpc::sweep
