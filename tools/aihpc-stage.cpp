// aihpc-stage: the staging engine of aihpc.so, run by hand or from scripts.
//   aihpc-stage in SRC[:NAME]... --to DIR [--cache DIR] [--mode cache|private] [--verify]
//                  [--threads N] [--max SIZE] [--allow DIR[:DIR...]] [--json] [--progress]
//   aihpc-stage out LOCAL:DEST... [--from DIR] [--job-id ID] [--node NAME] [--threads N] [--json]
//   aihpc-stage cache ls|gc|verify --cache DIR [--max SIZE] [--json]
//   aihpc-stage kept [--local-root DIR] [--node NAME] [--json]
//   aihpc-stage deliver JOBID [--local-root DIR] [--node NAME] [--threads N] [--json]
//   aihpc-stage pack DIR OUT.sqsh [--threads N] [--json]
//   aihpc-stage where SRC [--stale] [--allow DIR[:DIR...]] [--threads N] [--json]
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/error.hpp"
#include "common/text.hpp"
#include "config.h"
#include "config/site_config.hpp"
#include "config/user_options.hpp"
#include "stage/fs.hpp"
#include "stage/node_cache.hpp"
#include "stage/node_layout.hpp"
#include "common/json.hpp"
#include "common/paths.hpp"
#include "stage/squashfs_pack.hpp"
#include "stage/stage_in.hpp"
#include "stage/stage_out.hpp"
#include "stage/tree_copy.hpp"
#include "stage/warm_data.hpp"

using namespace aihpc;
using namespace aihpc::stage;

namespace {

const char* usage_text =
    "Usage: aihpc-stage in SRC[:NAME]... --to DIR [--cache DIR] [--mode cache|private]\n"
    "                      [--verify] [--threads N] [--max SIZE] [--allow DIR[:DIR...]]\n"
    "                      [--json] [--progress]\n"
    "       aihpc-stage out LOCAL:DEST... [--from DIR] [--job-id ID] [--node NAME] [--threads N] [--json]\n"
    "       aihpc-stage cache ls|gc|verify --cache DIR [--max SIZE] [--json]\n"
    "       aihpc-stage kept [--local-root DIR] [--node NAME] [--json]\n"
    "       aihpc-stage deliver JOBID [--local-root DIR] [--node NAME] [--threads N] [--json]\n"
    "       aihpc-stage pack DIR OUT.sqsh [--threads N] [--json]\n"
    "       aihpc-stage where SRC [--stale] [--allow DIR[:DIR...]] [--threads N] [--json]\n"
    "\n"
    "Stages data to node-local storage with the engine of aihpc.so.\n"
    "  in      copy or extract each SRC (file, directory, .tar, .tar.gz, .tar.zst) to DIR/NAME;\n"
    "          a squashfs image (.sqsh, .squashfs) is staged as one file and mounted\n"
    "          read-only at DIR/NAME with squashfuse\n"
    "          with --cache, one read-only copy per source is shared (default mode: cache\n"
    "          when --cache is given, else private)\n"
    "  out     copy LOCAL to DEST beside-then-rename; an existing DEST is never replaced\n"
    "          (the copy goes to DEST.<jobid>). DEST may contain %j and %n.\n"
    "  cache   ls: list entries; gc: evict unused entries down to --max (default: all\n"
    "          unused); verify: check every entry against its manifest\n"
    "  kept    list this user's stage dirs that this node keeps because their stage-out\n"
    "          did not deliver (a time limit, a cancel, a preemption, a failure)\n"
    "  deliver finish the stage-out of a kept job, on the node that keeps it; the kept\n"
    "          stage dir is released when the job this runs in ends\n"
    "  pack    make a squashfs image of DIR (zstd, 1 MiB blocks, no xattrs, owned by\n"
    "          root, times 0: the same tree gives the same bytes) to stage as one file\n"
    "  where   list the nodes that hold SRC's current version warm, one per line:\n"
    "          NODE MODE LAST_USE (mode shared or user); --stale adds those that hold\n"
    "          an older version, marked stale\n"
    "\n"
    "Options:\n"
    "  --to DIR          stage directory (created if missing)\n"
    "  --cache DIR       the node cache directory of this user\n"
    "  --mode MODE       cache or private\n"
    "  --verify          check every staged file against xxh3 content hashes\n"
    "  --threads N       cap on source operations in flight (default 64; below it the\n"
    "                    count adapts to the source's latency)\n"
    "  --max SIZE        cache cap: bytes with K/M/G/T suffix, or N% of the file system\n"
    "  --allow DIRS      sources must lie under one of these (colon-separated)\n"
"  --from DIR        the stage dir LOCAL is relative to (default: $AIHPC_STAGE_DIR,\n"
    "                    else the current directory)\n"
    "  --job-id ID       job id for %j and DEST.<jobid> (default: $SLURM_JOB_ID)\n"
    "  --node NAME       node name for %n (default: $SLURMD_NODENAME or the host name)\n"
    "  --local-root DIR  the node's aihpc local_root (default: $AIHPC_LOCAL_ROOT, else the\n"
    "                    local_root of aihpc.so in the plugstack.conf beside $SLURM_CONF)\n"
    "  --stale           where: also the nodes holding an older version of SRC\n"
    "  --json            one JSON object per item on stdout\n"
    "  --progress        show progress on stderr even when it is not a terminal\n"
    "  -h, --help        show this help\n"
    "  -V, --version     show the version\n";

struct UsageError : Error {
    using Error::Error;
};

struct Args {
    std::string command, subcommand;
    std::vector<std::string> items;
    std::string to, cache, mode, max, allow, job_id, node, from, local_root;
    bool verify = false, json = false, progress = false, stale = false;
    unsigned threads = 0;
};

Args parse_args(int argc, char** argv) {
    Args args;
    std::vector<std::string> words(argv + 1, argv + argc);
    for (std::size_t i = 0; i < words.size(); ++i) {
        const std::string& w = words[i];
        auto value = [&](const char* name) -> std::string {
            std::string prefix = std::string(name) + "=";
            if (w.rfind(prefix, 0) == 0) return w.substr(prefix.size());
            if (i + 1 >= words.size()) throw UsageError(std::string(name) + " needs a value");
            return words[++i];
        };
        auto is = [&](const char* name) { return w == name || w.rfind(std::string(name) + "=", 0) == 0; };
        if (is("--to")) args.to = value("--to");
        else if (is("--cache")) args.cache = value("--cache");
        else if (is("--mode")) args.mode = value("--mode");
        else if (is("--max")) args.max = value("--max");
        else if (is("--allow")) args.allow = value("--allow");
        else if (is("--job-id")) args.job_id = value("--job-id");
        else if (is("--node")) args.node = value("--node");
        else if (is("--from")) args.from = value("--from");
        else if (is("--local-root")) args.local_root = value("--local-root");
        else if (is("--threads")) {
            auto n = parse_uint(value("--threads"));
            if (!n || *n == 0 || *n > 256) throw UsageError("--threads needs a number from 1 to 256");
            args.threads = static_cast<unsigned>(*n);
        } else if (w == "--verify") args.verify = true;
        else if (w == "--json") args.json = true;
        else if (w == "--progress") args.progress = true;
        else if (w == "--stale") args.stale = true;
        else if (w == "--") {
            for (++i; i < words.size(); ++i) args.items.push_back(words[i]);
        } else if (w.size() > 1 && w[0] == '-') throw UsageError("unknown option " + w);
        else if (args.command.empty()) args.command = w;
        else if (args.command == "cache" && args.subcommand.empty()) args.subcommand = w;
        else args.items.push_back(w);
    }
    return args;
}

CacheLimits resolve_limits(const std::string& max, const std::string& cache_dir) {
    if (max.empty()) return {};
    config::SizeLimit limit = config::parse_size_limit("--max", max);
    struct statvfs fs {};
    std::uint64_t fs_bytes = 0;
    if (::statvfs(cache_dir.c_str(), &fs) == 0) fs_bytes = static_cast<std::uint64_t>(fs.f_blocks) * fs.f_frsize;
    CacheLimits limits;
    limits.max_bytes = limit.resolve(fs_bytes);
    limits.low_bytes = limits.max_bytes / 10 * 9;
    return limits;
}

std::string human(std::uint64_t bytes) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double value = static_cast<double>(bytes);
    int unit = 0;
    while (value >= 1024 && unit < 4) {
        value /= 1024;
        ++unit;
    }
    char text[32];
    std::snprintf(text, sizeof text, unit ? "%.1f %s" : "%.0f %s", value, units[unit]);
    return text;
}

// A one-line progress bar on stderr, redrawn a few times a second.
class ProgressBar {
public:
    ProgressBar(bool enabled, CopyProgress& progress) : enabled_(enabled), progress_(progress) {
        if (enabled_) thread_ = std::thread([this] { loop(); });
    }
    ~ProgressBar() {
        if (!enabled_) return;
        {
            std::lock_guard<std::mutex> guard(lock_);
            done_ = true;
        }
        wake_.notify_all();
        thread_.join();
        draw();
        std::fputc('\n', stderr);
    }

private:
    void loop() {
        std::unique_lock<std::mutex> guard(lock_);
        while (!wake_.wait_for(guard, std::chrono::milliseconds(200), [this] { return done_; })) draw();
    }
    void draw() {
        std::uint64_t bytes = progress_.bytes, total = progress_.total_bytes;
        double share = total ? std::min(1.0, static_cast<double>(bytes) / static_cast<double>(total)) : 0.0;
        int filled = static_cast<int>(share * 30);
        std::fprintf(stderr, "\raihpc-stage: [%-30s] %3d%% %s / %s, %" PRIu64 " files", std::string(filled, '#').c_str(),
                     static_cast<int>(share * 100), human(bytes).c_str(), human(total).c_str(),
                     static_cast<std::uint64_t>(progress_.files));
        std::fflush(stderr);
    }

    bool enabled_;
    CopyProgress& progress_;
    std::thread thread_;
    std::mutex lock_;
    std::condition_variable wake_;
    bool done_ = false;
};

int run_in(const Args& args) {
    if (args.items.empty()) throw UsageError("in needs at least one SRC");
    if (args.to.empty()) throw UsageError("in needs --to DIR");
    if (!args.mode.empty() && args.mode != "cache" && args.mode != "private")
        throw UsageError("--mode must be cache or private");
    bool private_mode = args.mode == "private" || (args.mode.empty() && args.cache.empty());
    if (!private_mode && args.cache.empty()) throw UsageError("--mode cache needs --cache DIR");

    std::vector<config::StageItem> items;
    for (const std::string& word : args.items)
        for (config::StageItem& item : config::parse_stage(word)) items.push_back(std::move(item));

    CopyProgress progress;
    StageSettings settings;
    settings.to_dir = args.to;
    if (!private_mode) settings.cache_dir = args.cache;
    settings.private_mode = private_mode;
    settings.verify = args.verify;
    settings.threads = args.threads ? args.threads : default_copy_threads();
    settings.uid = ::getuid();
    char cwd[4096];
    settings.base_dir = ::getcwd(cwd, sizeof cwd) ? cwd : "/";
    for (const std::string& root : split(args.allow, ':'))
        if (!root.empty()) settings.allow.push_back(root);
    settings.progress = &progress;
    if (!private_mode) settings.limits = resolve_limits(args.max, args.cache);

    std::vector<StagedItem> staged;
    {
        ProgressBar bar(args.progress || ::isatty(STDERR_FILENO), progress);
        for (const config::StageItem& item : items) staged.push_back(stage_in(item.src, item.name, settings));
    }
    for (const StagedItem& item : staged) {
        if (args.json) std::printf("%s\n", staged_item_json(item).c_str());
        else
            std::printf("%s -> %s: %" PRIu64 " files, %s, %.3fs, %s%s\n", item.src.c_str(), item.path.c_str(), item.files,
                        human(item.bytes).c_str(), item.seconds, to_string(item.outcome),
                        item.mount == "mounted" ? ", mounted with squashfuse (fusermount3 -u it when done)" : "");
    }
    return 0;
}

int run_out(const Args& args) {
    if (args.items.empty()) throw UsageError("out needs at least one LOCAL:DEST");
    std::string job_id = args.job_id;
    if (job_id.empty() && std::getenv("SLURM_JOB_ID")) job_id = std::getenv("SLURM_JOB_ID");
    if (job_id.empty()) job_id = std::to_string(::getpid());
    std::string node = args.node;
    if (node.empty() && std::getenv("SLURMD_NODENAME")) node = std::getenv("SLURMD_NODENAME");
    if (node.empty()) {
        char host[256] = {};
        ::gethostname(host, sizeof host - 1);
        node = host;
    }
    // LOCAL is relative to the stage dir, as in --aihpc-stage-out.
    std::string from = args.from;
    if (from.empty() && std::getenv("AIHPC_STAGE_DIR")) from = std::getenv("AIHPC_STAGE_DIR");
    if (from.empty()) from = ".";
    std::vector<config::StageOutItem> items;
    for (const std::string& word : args.items)
        for (config::StageOutItem& item : config::parse_stage_out(word)) items.push_back(std::move(item));
    CopyProgress progress;
    int status = 0;
    ProgressBar bar(args.progress || ::isatty(STDERR_FILENO), progress);
    for (const config::StageOutItem& item : items) {
        // LOCAL is relative to the stage dir when one is known, else to the current directory.
        std::string local = join_path(from, item.local);
        try {
            StageOutResult r = stage_out(local, expand_dest(item.dest, job_id, node), job_id,
                                         args.threads ? args.threads : default_copy_threads(), &progress);
            if (args.json)
                std::printf("%s\n", stage_out_result_json(r).c_str());
            else
                std::printf("%s\n", r.message().c_str());
            if (r.diverted) std::fprintf(stderr, "aihpc-stage: %s\n", r.message().c_str());
        } catch (const Error& e) {
            std::fprintf(stderr, "aihpc-stage: %s\n", e.what());
            status = 1;
        }
    }
    return status;
}

int run_cache(const Args& args) {
    if (args.cache.empty()) throw UsageError("cache needs --cache DIR");
    NodeCache cache(args.cache, resolve_limits(args.max, args.cache));
    if (args.subcommand == "ls") {
        for (const CacheEntryInfo& e : cache.list()) {
            if (args.json)
                std::printf("%s\n", cache_entry_json(e).c_str());
            else
                std::printf("%s %10s %8" PRIu64 " files %-6s %s\n", e.key.c_str(), human(e.bytes).c_str(), e.files,
                            e.in_use ? "in-use" : "idle", e.realpath.empty() ? e.src.c_str() : e.realpath.c_str());
        }
        return 0;
    }
    if (args.subcommand == "gc") {
        std::uint64_t target = args.max.empty() ? 0 : resolve_limits(args.max, args.cache).max_bytes;
        std::vector<std::string> evicted = cache.collect(target);
        if (args.json) std::printf("{\"evicted\": %zu}\n", evicted.size());
        else std::printf("evicted %zu entries\n", evicted.size());
        return 0;
    }
    if (args.subcommand == "verify") {
        int status = 0;
        for (const CacheEntryInfo& e : cache.list()) {
            std::string verdict = "ok";
            try {
                std::optional<Lease> lease = cache.lease(e.key);
                if (!lease) continue;  // evicted meanwhile
                std::optional<Manifest> manifest = cache.stored_manifest(e.key);
                if (!manifest) throw Error("no manifest");
                std::string data = join_path(cache.entry_path(e.key), "data");
                UniqueFd fd(::open(data.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
                if (!fd) throw_errno("cannot open " + data);
                verify_item(fd.get(), *manifest, true, args.threads ? args.threads : default_copy_threads(), data);
            } catch (const Error& err) {
                verdict = err.what();
                status = 1;
            }
            if (args.json)
                std::printf("%s\n", cache_verdict_json(e.key, verdict == "ok" ? "" : verdict).c_str());
            else
                std::printf("%s %s\n", e.key.c_str(), verdict.c_str());
        }
        return status;
    }
    throw UsageError(args.subcommand.empty() ? "cache needs ls, gc or verify" : "unknown cache command " + args.subcommand);
}

std::string local_time(std::int64_t seconds) {
    std::time_t t = static_cast<std::time_t>(seconds);
    struct tm parts {};
    char text[32] = "?";
    if (::localtime_r(&t, &parts)) std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &parts);
    return text;
}

// ---- kept stage dirs: what this node keeps of the user's jobs, and their delivery

std::string this_node(const Args& args) {
    if (!args.node.empty()) return args.node;
    if (const char* n = std::getenv("SLURMD_NODENAME"); n && *n) return n;
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    std::string name = host;
    return name.substr(0, name.find('.'));
}

// The site's local_root from the plugstack configuration that slurmd reads, as the
// plugin would see it: the arguments after aihpc.so on its line.
std::optional<std::string> plugstack_local_root(const std::string& node) {
    const char* conf = std::getenv("SLURM_CONF");
    std::string etc = dirname_of(conf && *conf ? conf : "/etc/slurm/slurm.conf");
    std::vector<std::string> files = {join_path(etc, "plugstack.conf")};
    if (UniqueFd d{::open(join_path(etc, "plugstack.conf.d").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)}) {
        DirectoryNames names(d.get(), "plugstack.conf.d");
        for (std::size_t i = 0; i < names.size(); ++i)
            if (std::string(names[i]).ends_with(".conf")) files.push_back(join_path(join_path(etc, "plugstack.conf.d"), std::string(names[i])));
    }
    for (const std::string& file : files) {
        UniqueFd dir(::open(dirname_of(file).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        std::optional<std::string> text = dir ? read_small_file_at(dir.get(), basename_of(file), 1 << 20) : std::nullopt;
        if (!text) continue;
        for (const std::string& line : split(*text, '\n')) {
            std::vector<std::string> words;
            for (const std::string& w : split(line, ' '))
                if (!w.empty()) words.push_back(w);
            if (words.size() < 2 || words[0].starts_with('#') || !words[1].ends_with("aihpc.so")) continue;
            std::vector<std::string> site(words.begin() + 2, words.end());
            return config::parse_site_config(site).local_root_for(node);
        }
    }
    return std::nullopt;
}

std::string find_local_root(const Args& args, const std::string& node) {
    std::string root = args.local_root;
    if (root.empty())
        if (const char* env = std::getenv("AIHPC_LOCAL_ROOT"); env && *env) root = env;
    if (root.empty()) root = plugstack_local_root(node).value_or(config::SiteConfig{}.local_root);
    config::SiteConfig site;
    site.local_root = root;
    return site.local_root_for(node);
}

std::string kept_json(const KeptJob& k, const std::string& local_root, const std::string& node) {
    std::string items;
    for (const KeptDelivery& d : k.deliveries)
        items += std::string(items.empty() ? "" : ", ") + "{\"step\": " + std::to_string(d.step) +
                 ", \"local\": " + json_quote(d.local) + ", \"dest\": " + json_quote(d.dest) + "}";
    return "{\"job\": " + std::to_string(k.job_id) + ", \"node\": " + json_quote(node) +
           ", \"stage_dir\": " + json_quote(join_path(join_path(local_root, "jobs"), std::to_string(k.job_id))) +
           ", \"since\": " + std::to_string(k.since) + ", \"ended\": " + (k.ended ? "true" : "false") +
           ", \"reason\": " + json_quote(k.reason) + ", \"deliveries\": [" + items + "]}";
}

int run_kept(const Args& args) {
    if (!args.items.empty()) throw UsageError("kept takes no arguments");
    std::string node = this_node(args);
    std::string local_root = find_local_root(args, node);
    UniqueFd root(::open(local_root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!root) throw_errno("cannot open the node's local_root " + local_root + " (give --local-root)");
    for (const KeptJob& k : kept_jobs_at(root.get())) {
        if (k.uid != ::getuid()) continue;
        if (args.json) {
            std::printf("%s\n", kept_json(k, local_root, node).c_str());
            continue;
        }
        std::printf("job %u on %s: %s/jobs/%u kept since %s (%s)%s\n", k.job_id, node.c_str(), local_root.c_str(),
                    k.job_id, local_time(k.since).c_str(), k.reason.c_str(), k.ended ? "" : "; the job still runs");
        for (const KeptDelivery& d : k.deliveries)
            std::printf("  step %u: %s -> %s\n", d.step, d.local.c_str(), d.dest.c_str());
        if (k.ended) std::printf("  finish it with: aihpc-stage deliver %u   (in a job on %s)\n", k.job_id, node.c_str());
    }
    return 0;
}

int run_deliver(const Args& args) {
    if (args.items.size() != 1) throw UsageError("deliver needs one JOBID");
    auto id = parse_uint(args.items[0]);
    if (!id || *id == 0 || *id > UINT32_MAX) throw UsageError("deliver needs a job id, not '" + args.items[0] + "'");
    std::uint32_t job = static_cast<std::uint32_t>(*id);
    std::string node = this_node(args);
    std::string local_root = find_local_root(args, node);
    UniqueFd root(::open(local_root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!root) throw_errno("cannot open the node's local_root " + local_root + " (give --local-root)");
    std::optional<KeptJob> k = kept_job_at(root.get(), job);
    if (!k)
        throw Error("node " + node + " keeps nothing of job " + args.items[0] +
                    " (aihpc-stage kept lists what it keeps; a kept job is on the node that ran it)");
    if (k->uid != ::getuid()) throw Error("job " + args.items[0] + " is not yours; only its user can deliver it");
    if (!k->ended)
        throw Error("job " + args.items[0] + " has not ended on " + node +
                    ": its own stage-out may still run; deliver it once the job is over");
    JobLayout layout = job_layout(local_root, job, k->uid);
    unsigned threads = args.threads ? args.threads : default_copy_threads();
    KeptJobDelivery delivery = deliver_kept_job(layout, *k, threads);
    for (const auto& [step, report] : delivery.steps) {
        for (const std::string& note : report.notes) std::fprintf(stderr, "aihpc-stage: %s\n", note.c_str());
        for (const std::string& dest : report.delivered) {
            if (args.json)
                std::printf("{\"job\": %u, \"step\": %u, \"dest\": %s}\n", job, step, json_quote(dest).c_str());
            else
                std::printf("delivered job %u step %u to %s\n", job, step, dest.c_str());
        }
        for (const std::string& failure : report.failures) std::fprintf(stderr, "aihpc-stage: %s\n", failure.c_str());
    }
    int status = delivery.complete() ? 0 : 1;
    if (status == 0)
        std::fprintf(stderr, "aihpc-stage: job %u is delivered; its kept stage dir on %s is released when this job ends\n",
                     job, node.c_str());
    return status;
}

int run_pack(const Args& args) {
    if (args.items.size() != 2) throw UsageError("pack needs DIR and OUT.sqsh");
    PackReport report = pack_squashfs(args.items[0], args.items[1], args.threads);
    if (args.json)
        std::printf("{\"dir\": %s, \"image\": %s, \"files\": %llu, \"bytes\": %llu, \"image_bytes\": %llu}\n",
                    json_quote(args.items[0]).c_str(), json_quote(args.items[1]).c_str(),
                    static_cast<unsigned long long>(report.files), static_cast<unsigned long long>(report.bytes),
                    static_cast<unsigned long long>(report.image_bytes));
    else
        std::printf("packed %s (%llu files, %llu bytes) into %s (%llu bytes)\n", args.items[0].c_str(),
                    static_cast<unsigned long long>(report.files), static_cast<unsigned long long>(report.bytes),
                    args.items[1].c_str(), static_cast<unsigned long long>(report.image_bytes));
    return 0;
}

// The nodes that hold SRC warm, from what they announce to Slurm (warm_data.hpp).
int run_where(const Args& args) {
    if (args.items.size() != 1) throw UsageError("where needs one SRC");
    std::vector<std::string> allow;
    for (const std::string& dir : split(args.allow, ':'))
        if (!dir.empty()) allow.push_back(dir);
    char cwd[4096];
    std::string base = ::getcwd(cwd, sizeof cwd) ? cwd : "/";
    unsigned threads = args.threads ? args.threads : default_copy_threads();
    for (const warm::WarmNode& node : warm::where(args.items[0], base, allow, threads, ::getuid(), args.stale))
        std::printf("%s\n", (args.json ? warm::where_json(node) : warm::where_line(node)).c_str());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--") == 0) break;
        if (std::strcmp(argv[i], "-h") == 0 || std::strcmp(argv[i], "--help") == 0) {
            std::fputs(usage_text, stdout);
            return 0;
        }
        if (std::strcmp(argv[i], "-V") == 0 || std::strcmp(argv[i], "--version") == 0) {
            std::printf("aihpc-stage %s\n", PACKAGE_VERSION);
            return 0;
        }
    }
    try {
        Args args = parse_args(argc, argv);
        if (args.command == "in") return run_in(args);
        if (args.command == "out") return run_out(args);
        if (args.command == "cache") return run_cache(args);
        if (args.command == "kept") return run_kept(args);
        if (args.command == "deliver") return run_deliver(args);
        if (args.command == "pack") return run_pack(args);
        if (args.command == "where") return run_where(args);
        throw UsageError(args.command.empty() ? "needs a command: in, out, cache, kept, deliver, pack or where"
                                              : "unknown command " + args.command);
    } catch (const UsageError& e) {
        std::fprintf(stderr, "aihpc-stage: %s\nTry 'aihpc-stage --help'.\n", e.what());
        return 2;
    } catch (const Error& e) {
        std::fprintf(stderr, "aihpc-stage: %s\n", e.what());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "aihpc-stage: %s\n", e.what());
        return 1;
    }
}
