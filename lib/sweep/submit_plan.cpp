#include "sweep/submit_plan.hpp"

#include <cstring>

#include "common/error.hpp"
#include "common/json.hpp"
#include "common/text.hpp"
#include "config/user_options.hpp"

namespace aihpc::sweep {

std::vector<Chunk> plan_chunks(std::uint64_t tasks, std::uint64_t max_array_size, std::uint64_t pack) {
    if (max_array_size == 0) throw Error("max array size must be at least 1");
    if (pack == 0) throw Error("--pack must be at least 1");
    std::vector<Chunk> chunks;
    std::uint64_t per_chunk = max_array_size * pack;
    for (std::uint64_t offset = 0; offset < tasks; offset += per_chunk) {
        Chunk c;
        c.index = static_cast<unsigned>(chunks.size());
        c.offset = offset;
        c.count = std::min(per_chunk, tasks - offset);
        c.elements = (c.count + pack - 1) / pack;
        chunks.push_back(c);
    }
    return chunks;
}

std::vector<std::uint64_t> element_tasks(std::uint64_t element, std::uint64_t offset, std::uint64_t count, std::uint64_t pack) {
    std::vector<std::uint64_t> out;
    for (std::uint64_t k = 0; k < pack; ++k) {
        std::uint64_t local = element * pack + k;
        if (local >= count) break;
        out.push_back(offset + local);
    }
    return out;
}

std::string array_spec(const std::set<std::uint64_t>& ids, std::uint64_t throttle) {
    std::string out;
    auto it = ids.begin();
    while (it != ids.end()) {
        std::uint64_t first = *it, last = *it;
        for (++it; it != ids.end() && *it == last + 1; ++it) last = *it;
        if (!out.empty()) out += ',';
        out += std::to_string(first);
        if (last != first) out += "-" + std::to_string(last);
    }
    if (throttle) out += "%" + std::to_string(throttle);
    return out;
}

std::vector<std::string> ArraySubmission::argv(const std::string& dependency_job) const {
    std::vector<std::string> out = {"sbatch", "--parsable", "--array=" + array};
    if (!after.empty()) {
        out.push_back("--dependency=aftercorr:" + dependency_job);
        out.push_back("--kill-on-invalid-dep=yes");
    }
    out.insert(out.end(), extra.begin(), extra.end());
    out.push_back(script);
    out.push_back(std::to_string(offset));
    out.push_back(std::to_string(count));
    out.push_back(std::to_string(pack));
    return out;
}

std::string script_path(const SweepDir& sweep, const std::string& phase) { return sweep.path + "/scripts/" + phase + ".sh"; }

namespace {

std::string range_spec(std::uint64_t elements, std::uint64_t throttle) {
    std::string out = elements == 1 ? "0" : "0-" + std::to_string(elements - 1);
    if (throttle) out += "%" + std::to_string(throttle);
    return out;
}

std::string chunk_label(const std::string& phase, const std::string& group) { return phase + "." + group; }

}  // namespace

// #SBATCH lines: an option word starts a line, the words that follow it (its value)
// join it, as `-c 4` must stay together.
std::string sbatch_lines(const std::vector<std::string>& words) {
    std::string out;
    bool open = false;
    for (const auto& w : words) {
        std::string word = w.find_first_of(" \t") == std::string::npos ? w : "\"" + w + "\"";
        if (!w.empty() && w[0] == '-') {
            if (open) out += '\n';
            out += "#SBATCH " + word;
            open = true;
        } else if (open) {
            out += " " + word;
        } else {
            throw Error("sbatch argument '" + w + "' is not an option (options start with -)");
        }
    }
    if (open) out += '\n';
    return out;
}

std::vector<ArraySubmission> plan_submit(const SweepDir& sweep, const SubmitOptions& options) {
    auto chunks = plan_chunks(sweep.tasks, options.max_array_size, options.pack);
    std::vector<ArraySubmission> out;
    for (const auto& phase : sweep.spec.phases)
        for (const auto& c : chunks) {
            ArraySubmission s;
            s.phase = phase.name;
            s.label = chunk_label(phase.name, std::to_string(c.index));
            s.offset = c.offset;
            s.count = c.count;
            s.pack = options.pack;
            s.array = range_spec(c.elements, options.throttle);
            if (!phase.after.empty()) s.after = chunk_label(phase.after, std::to_string(c.index));
            s.script = script_path(sweep, phase.name);
            out.push_back(std::move(s));
        }
    return out;
}

std::vector<ArraySubmission> plan_resubmit(const SweepDir& sweep, const std::set<std::uint64_t>& indices,
                                           const SubmitOptions& options, const std::string& label_prefix) {
    if (options.max_array_size == 0) throw Error("max array size must be at least 1");
    std::vector<std::pair<std::uint64_t, std::set<std::uint64_t>>> groups;  // offset, array ids
    for (auto i : indices) {
        if (i >= sweep.tasks)
            throw Error("task index " + std::to_string(i) + " is out of range: the sweep has " + std::to_string(sweep.tasks) + " tasks");
        std::uint64_t offset = i / options.max_array_size * options.max_array_size;
        if (groups.empty() || groups.back().first != offset) groups.push_back({offset, {}});
        groups.back().second.insert(i - offset);
    }
    std::vector<ArraySubmission> out;
    for (const auto& phase : sweep.spec.phases)
        for (std::size_t g = 0; g < groups.size(); ++g) {
            ArraySubmission s;
            s.phase = phase.name;
            s.label = chunk_label(phase.name, label_prefix + std::to_string(g));
            s.offset = groups[g].first;
            s.count = std::min(options.max_array_size, sweep.tasks - s.offset);
            s.pack = 1;
            s.array = array_spec(groups[g].second, options.throttle);
            if (!phase.after.empty()) s.after = chunk_label(phase.after, label_prefix + std::to_string(g));
            s.script = script_path(sweep, phase.name);
            s.extra = with_host_runner(options.sbatch_args);
            out.push_back(std::move(s));
        }
    return out;
}

std::vector<std::string> with_host_runner(std::vector<std::string> words) {
    bool container = false, scope = false, stage = false, gravity = false;
    for (std::size_t i = 0; i < words.size(); ++i) {
        const std::string& w = words[i];
        if (w == "--aihpc-container" && i + 1 < words.size()) container = !words[i + 1].empty();
        else if (starts_with(w, "--aihpc-container=")) container = w.size() > std::strlen("--aihpc-container=");
        else if (w == "--aihpc-container-scope" || starts_with(w, "--aihpc-container-scope=")) scope = true;
        else if (w == "--aihpc-stage" || starts_with(w, "--aihpc-stage=")) stage = true;
        else if (w == "--aihpc-gravity" || starts_with(w, "--aihpc-gravity=")) gravity = true;
    }
    if (container && !scope) words.emplace_back("--aihpc-container-scope=steps");
    // A sweep's tasks read the same data again and again: they prefer the nodes that hold
    // it warm, unless the spec says --aihpc-gravity=off.
    if (stage && !gravity) words.emplace_back("--aihpc-gravity");
    return words;
}

namespace {

std::vector<std::string> option_words(const SweepDir& sweep, const Phase& phase, const SubmitOptions& options) {
    const auto& spec = sweep.spec;
    std::vector<std::string> words = spec.slurm.sbatch;
    words.insert(words.end(), phase.sbatch.begin(), phase.sbatch.end());
    words.insert(words.end(), spec.slurm.aihpc.begin(), spec.slurm.aihpc.end());
    words.insert(words.end(), phase.aihpc.begin(), phase.aihpc.end());
    words.insert(words.end(), options.sbatch_args.begin(), options.sbatch_args.end());
    return with_host_runner(std::move(words));
}

}  // namespace

std::vector<std::string> phase_sbatch_words(const SweepDir& sweep, const Phase& phase, const SubmitOptions& options) {
    std::vector<std::string> words = {"--job-name=" + sweep.spec.name + "." + phase.name, "--output=" + sweep.path + "/logs/%A_%a.out"};
    auto rest = option_words(sweep, phase, options);
    words.insert(words.end(), rest.begin(), rest.end());
    return words;
}

void check_aihpc_options(const std::vector<std::string>& words, const std::string& where) {
    config::RawOptions raw;
    for (std::size_t i = 0; i < words.size(); ++i) {
        const auto& w = words[i];
        if (!starts_with(w, "--aihpc-")) continue;
        auto eq = w.find('=');
        std::string name = w.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
        const config::OptionSpec* spec = config::find_option(name);
        if (!spec) {
            std::vector<std::string> known;
            for (const auto& o : config::option_table()) known.push_back(std::string("--") + o.name);
            throw Error(where + ": --" + name + " is not an aihpc option (options: " + join(known, ", ") + ")");
        }
        std::string value;
        if (eq != std::string::npos) {
            if (!spec->arg_info) throw Error(where + ": --" + name + " takes no value");
            value = w.substr(eq + 1);
        } else if (spec->arg_info && !spec->arg_optional) {
            // sbatch also takes "--aihpc-stage SRC", the value as the next word.
            if (i + 1 >= words.size()) throw Error(where + ": --" + name + " needs a value (" + spec->arg_info + ")");
            value = words[++i];
        }
        raw[name] = value;
    }
    if (raw.empty()) return;
    try {
        config::parse_user_options(raw);
    } catch (const Error& e) {
        throw Error(where + ": " + e.what());
    }
}

std::string phase_script(const SweepDir& sweep, const Phase& phase, const SubmitOptions& options) {
    const auto& spec = sweep.spec;
    std::string out = "#!/bin/sh\n";
    out += sbatch_lines(phase_sbatch_words(sweep, phase, options));
    out += "# Written by aihpc-sweep " + options.tool_version + " for sweep '" + spec.name + "' (spec " + sweep.spec_hash +
           "), phase '" + phase.name + "'.\n";
    out += "# Arguments: OFFSET COUNT PACK; this element runs global tasks\n";
    out += "# OFFSET + SLURM_ARRAY_TASK_ID * PACK + k for k < PACK, below OFFSET + COUNT.\n";
    out += "exec " + shell_quote(options.tool_path) + " run " + shell_quote(sweep.path) + " --phase " + shell_quote(phase.name) +
           " --offset \"$1\" --count \"$2\" --pack \"$3\"\n";
    return out;
}

std::string dry_run_line(const ArraySubmission& s, const std::vector<std::string>& script_words) {
    auto words = s.argv("{" + s.after + "}");
    // After --array and the dependency, before the words of the line itself (which, like
    // the command line of sbatch, win over the script's).
    std::size_t at = s.after.empty() ? 3 : 5;
    words.insert(words.begin() + static_cast<long>(at), script_words.begin(), script_words.end());
    std::string out;
    for (std::size_t i = 0; i < words.size(); ++i) {
        if (i) out += ' ';
        // The placeholder stays readable; everything else is quoted for the shell.
        out += words[i].find("aftercorr:{") != std::string::npos ? words[i] : shell_quote(words[i]);
    }
    return out;
}

std::string chunks_json(const std::vector<ArraySubmission>& subs, const SubmitOptions& options) {
    std::string out = "{\"max_array_size\":" + std::to_string(options.max_array_size) + ",\"pack\":" + std::to_string(options.pack) +
                      ",\"throttle\":" + std::to_string(options.throttle) + ",\"arrays\":[";
    for (std::size_t i = 0; i < subs.size(); ++i) {
        const auto& s = subs[i];
        if (i) out += ",\n";
        out += "{\"phase\":" + json_quote(s.phase) + ",\"label\":" + json_quote(s.label) + ",\"offset\":" + std::to_string(s.offset) +
               ",\"count\":" + std::to_string(s.count) + ",\"pack\":" + std::to_string(s.pack) + ",\"array\":" + json_quote(s.array) +
               ",\"after\":" + json_quote_or_null(s.after) +
               ",\"job_id\":" + json_quote_or_null(s.job_id) + "}";
    }
    return out + "]}\n";
}

std::uint64_t parse_max_array_size(const std::string& text) {
    for (auto& line : split(text, '\n')) {
        auto t = trim(line);
        if (!starts_with(t, "MaxArraySize")) continue;
        auto eq = t.find('=');
        if (eq == std::string_view::npos) break;
        if (auto n = parse_uint(trim(t.substr(eq + 1)))) {
            if (*n == 0) break;
            return *n;
        }
        break;
    }
    throw Error("cannot read MaxArraySize from `scontrol show config`; give --max-array-size N");
}

}  // namespace aihpc::sweep
