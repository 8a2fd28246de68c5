#include "config/user_options.hpp"

#include <csignal>

#include "common/error.hpp"
#include "common/text.hpp"

namespace aihpc::config {

const char* to_string(BindMode mode) {
    switch (mode) {
    case BindMode::auto_: return "auto";
    case BindMode::gpu: return "gpu";
    case BindMode::numa: return "numa";
    case BindMode::cores: return "cores";
    case BindMode::none: return "none";
    }
    return "none";
}
const char* to_string(DistKind kind) { return kind == DistKind::torch ? "torch" : "none"; }
const char* to_string(StageMode mode) {
    switch (mode) {
    case StageMode::cache: return "cache";
    case StageMode::user: return "user";
    case StageMode::private_: return "private";
    }
    return "cache";
}
const char* to_string(ContainerScope scope) { return scope == ContainerScope::steps ? "steps" : "all"; }

const std::vector<OptionSpec>& option_table() {
    static const std::vector<OptionSpec> table = {
        {"aihpc-stage", "SRC[:NAME][,...]", false,
         "Stage files, trees or archives into $AIHPC_STAGE_DIR/NAME on every node", "AIHPC_STAGE", false},
        {"aihpc-stage-out", "LOCAL:DEST[,...]", false,
         "After the step, copy $AIHPC_STAGE_DIR/LOCAL to DEST (%j job id, %n node)", "AIHPC_STAGE_OUT", true},
        {"aihpc-stage-mode", "cache|user|private", false,
         "cache: one read-only copy per node, shared by all users when world-readable; user: your own cache only; private: a writable copy for this job", "AIHPC_STAGE_MODE", false},
        {"aihpc-stage-verify", nullptr, false,
         "Check every staged file against an xxh3 checksum manifest", "AIHPC_STAGE_VERIFY", false},
        {"aihpc-container", "IMAGE", false,
         "Run every task inside IMAGE (.sif, .sqsh, directory, docker://, RUNTIME:IMAGE)", "AIHPC_CONTAINER", false},
        {"aihpc-container-scope", "all|steps", false,
         "all: batch script and steps run inside; steps: only srun steps run inside", "AIHPC_CONTAINER_SCOPE", false},
        {"aihpc-container-bind", "SRC:DST[:ro][,...]", false,
         "Extra bind mounts into the container", "AIHPC_CONTAINER_BIND", false},
        {"aihpc-bind", "MODE[,verbose][,nomem][,nonic][,hbm][,threads=N]", false,
         "Bind tasks to CPUs, memory, GPUs and NICs: auto, gpu, numa, cores or none", "AIHPC_BIND", false},
        {"aihpc-dist", "torch|none", true,
         "Export MASTER_ADDR, RANK, WORLD_SIZE and friends (bare: torch)", "AIHPC_DIST", false},
        {"aihpc-checkpoint", "SIG@SECS", true,
         "Send SIG (USR1) SECS (120) before the time limit; on exit 75 or preemption, requeue the job",
         "AIHPC_CHECKPOINT", false},
        {"aihpc-gravity", "prefer|off", true,
         "Prefer the nodes that hold the --aihpc-stage data warm; never wait for them (bare: prefer)",
         "AIHPC_GRAVITY", false},
        {"aihpc-verbose", nullptr, false,
         "Log each phase of aihpc's work, with its time, to the job's stderr", "AIHPC_VERBOSE", false},
    };
    return table;
}

const OptionSpec* find_option(const std::string& name) {
    for (const OptionSpec& spec : option_table())
        if (name == spec.name) return &spec;
    return nullptr;
}

namespace {

[[noreturn]] void bad(const std::string& option, const std::string& why) {
    throw Error("--" + option + ": " + why);
}

// NAME is a single path component a user can type in a variable name's place.
void check_component(const std::string& option, const std::string& what, const std::string& name) {
    if (name.empty()) bad(option, what + " is empty");
    // NAME_MAX: a longer name would be queued and fail on every node.
    if (name.size() > 255)
        bad(option, what + " is " + std::to_string(name.size()) + " bytes long; a file name has at most 255");
    if (name == "." || name == ".." || name.find('/') != std::string::npos)
        bad(option, what + " '" + name + "' must be one path component: no '/', '.' or '..'");
    for (char c : name)
        if (static_cast<unsigned char>(c) < 0x20) bad(option, what + " '" + name + "' contains a control character");
}

// A path below the stage dir: relative, no "..", no empty parts.
void check_relative_path(const std::string& option, const std::string& what, const std::string& path) {
    if (path.empty()) bad(option, what + " is empty");
    if (path.front() == '/') bad(option, what + " '" + path + "' must be relative to $AIHPC_STAGE_DIR");
    for (const std::string& part : split(path, '/'))
        if (part == "..") bad(option, what + " '" + path + "' must stay inside $AIHPC_STAGE_DIR: no '..'");
}

void check_path_text(const std::string& option, const std::string& what, const std::string& path) {
    if (path.empty()) bad(option, what + " is empty");
    if (path.size() >= 4096)
        bad(option, what + " is " + std::to_string(path.size()) + " bytes long; a path has fewer than 4096");
    for (char c : path)
        if (static_cast<unsigned char>(c) < 0x20) bad(option, what + " '" + path + "' contains a control character");
}

bool parse_flag_value(const std::string& option, const std::string& value) {
    if (value.empty() || value == "1" || value == "yes" || value == "true") return true;
    if (value == "0" || value == "no" || value == "false") return false;
    bad(option, "takes no value (got '" + value + "')");
}

}  // namespace

std::string default_stage_name(const std::string& src) {
    std::string path = src;
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    std::string base = path.substr(path.find_last_of('/') + 1);
    // The one list of archive suffixes: staging extracts exactly the sources whose
    // default NAME loses one of them (aihpc::stage::is_archive_name).
    for (const char* suffix : {".tar.gz", ".tar.zst", ".tgz", ".tzst", ".tar"}) {
        if (base.size() > std::string(suffix).size() && ends_with(base, suffix)) {
            base.resize(base.size() - std::string(suffix).size());
            break;
        }
    }
    return base;
}

std::vector<StageItem> parse_stage(const std::string& value) {
    const std::string option = "aihpc-stage";
    std::vector<StageItem> items;
    if (value.empty()) bad(option, "needs SRC[:NAME][,SRC[:NAME]...]");
    for (const std::string& entry : split(value, ',')) {
        if (entry.empty()) bad(option, "empty entry in '" + value + "'");
        StageItem item;
        // NAME is whatever follows the last ':', so a hostile NAME can never hide in SRC.
        std::size_t colon = entry.rfind(':');
        item.src = entry.substr(0, colon);
        if (colon != std::string::npos) {
            item.name = entry.substr(colon + 1);
            check_component(option, "NAME", item.name);
        } else {
            item.name = default_stage_name(item.src);
        }
        check_path_text(option, "SRC", item.src);
        check_component(option, "NAME (from SRC '" + item.src + "')", item.name);
        if (item.name.size() > stage_name_max)
            bad(option, "NAME '" + item.name.substr(0, 32) + "...' is " + std::to_string(item.name.size()) +
                            " bytes long; a stage NAME has at most " + std::to_string(stage_name_max) +
                            " bytes, since each node names its temporaries after it within the 255 bytes a file name may "
                            "have; give a shorter :NAME");
        for (const StageItem& other : items)
            if (other.name == item.name) bad(option, "NAME '" + item.name + "' is used twice; give one a :NAME");
        items.push_back(std::move(item));
    }
    return items;
}

std::vector<StageOutItem> parse_stage_out(const std::string& value) {
    const std::string option = "aihpc-stage-out";
    std::vector<StageOutItem> items;
    if (value.empty()) bad(option, "needs LOCAL:DEST[,...]");
    for (const std::string& entry : split(value, ',')) {
        std::size_t colon = entry.find(':');
        if (colon == std::string::npos) bad(option, "'" + entry + "' is not LOCAL:DEST");
        StageOutItem item{entry.substr(0, colon), entry.substr(colon + 1)};
        check_relative_path(option, "LOCAL", item.local);
        check_path_text(option, "DEST", item.dest);
        for (std::size_t i = 0; i < item.dest.size(); ++i) {
            if (item.dest[i] != '%') continue;
            char next = i + 1 < item.dest.size() ? item.dest[i + 1] : '\0';
            if (next != 'j' && next != 'n' && next != '%')
                bad(option, "DEST '" + item.dest + "' has an unknown %-escape; use %j (job id), %n (node) or %%");
            ++i;
        }
        items.push_back(std::move(item));
    }
    return items;
}

std::vector<ContainerMount> parse_container_binds(const std::string& value) {
    const std::string option = "aihpc-container-bind";
    std::vector<ContainerMount> mounts;
    if (value.empty()) bad(option, "needs SRC:DST[:ro][,...]");
    for (const std::string& entry : split(value, ',')) {
        std::vector<std::string> parts = split(entry, ':');
        if (parts.size() < 2 || parts.size() > 3) bad(option, "'" + entry + "' is not SRC:DST[:ro]");
        ContainerMount mount{parts[0], parts[1], false};
        if (parts.size() == 3) {
            if (parts[2] == "ro") mount.read_only = true;
            else if (parts[2] != "rw") bad(option, "'" + entry + "': the third field must be ro or rw");
        }
        if (mount.src.empty() || mount.src.front() != '/') bad(option, "SRC '" + mount.src + "' must be an absolute path");
        if (mount.dst.empty() || mount.dst.front() != '/') bad(option, "DST '" + mount.dst + "' must be an absolute path");
        for (const std::string& part : split(mount.dst, '/'))
            if (part == "..") bad(option, "DST '" + mount.dst + "' must not contain '..'");
        check_path_text(option, "SRC", mount.src);
        mounts.push_back(std::move(mount));
    }
    return mounts;
}

BindMode parse_bind_mode(const std::string& what, const std::string& value) {
    if (value == "auto") return BindMode::auto_;
    if (value == "gpu") return BindMode::gpu;
    if (value == "numa") return BindMode::numa;
    if (value == "cores") return BindMode::cores;
    if (value == "none") return BindMode::none;
    bad(what, "unknown mode '" + value + "'; use auto, gpu, numa, cores or none");
}

BindRequest parse_bind(const std::string& value) {
    const std::string option = "aihpc-bind";
    if (value.empty()) bad(option, "needs MODE[,verbose][,nomem][,nonic][,hbm][,threads=N]");
    std::vector<std::string> words = split(value, ',');
    BindRequest request;
    request.mode = parse_bind_mode(option, words[0]);
    for (std::size_t i = 1; i < words.size(); ++i) {
        if (words[i] == "verbose") request.verbose = true;
        else if (words[i] == "nomem") request.nomem = true;
        else if (words[i] == "nonic") request.nonic = true;
        else if (words[i] == "hbm") request.hbm = true;
        else if (words[i].rfind("threads=", 0) == 0) {
            auto n = parse_uint(words[i].substr(8));
            if (!n || *n == 0 || *n > 65536) bad(option, "threads=N needs a count from 1 to 65536, not '" + words[i].substr(8) + "'");
            request.threads = static_cast<unsigned>(*n);
        } else bad(option, "unknown flag '" + words[i] + "'; use verbose, nomem, nonic, hbm or threads=N");
    }
    return request;
}

DistKind parse_dist(const std::string& what, const std::string& value) {
    if (value.empty() || value == "torch") return DistKind::torch;
    if (value == "none") return DistKind::none;
    bad(what, "unknown kind '" + value + "'; use torch or none");
}

CheckpointRequest parse_checkpoint(const std::string& what, const std::string& value) {
    // The signals a program may take to mean "checkpoint now", as Slurm's --signal names them.
    static const std::pair<const char*, int> names[] = {
        {"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2},
        {"ALRM", SIGALRM}, {"TERM", SIGTERM}, {"CONT", SIGCONT}, {"URG", SIGURG},   {"XCPU", SIGXCPU},
    };
    CheckpointRequest request;
    std::string sig = value, secs;
    if (auto at = value.find('@'); at != std::string::npos) {
        sig = value.substr(0, at);
        secs = value.substr(at + 1);
        auto n = parse_uint(secs);
        if (!n || *n == 0 || *n > 65535)
            bad(what, "'" + secs + "' is not a number of seconds from 1 to 65535 (SIG@SECS, as in USR1@120)");
        request.seconds = static_cast<unsigned>(*n);
    }
    if (sig.empty()) return request;
    std::string name = sig.rfind("SIG", 0) == 0 ? sig.substr(3) : sig;
    for (const auto& [known, number] : names) {
        if (name == known || (parse_uint(sig) && *parse_uint(sig) == static_cast<std::uint64_t>(number))) {
            request.signal = number;
            request.signal_name = known;
            return request;
        }
    }
    bad(what, "unknown signal '" + sig + "'; use USR1, USR2, TERM, INT, HUP, QUIT, ALRM, CONT, URG or XCPU");
}

UserOptions parse_user_options(const RawOptions& raw) {
    UserOptions options;
    for (const auto& [name, value] : raw) {
        if (!find_option(name)) throw Error("--" + name + ": not an aihpc option; see sbatch --help");
        if (name == "aihpc-stage") options.stage = parse_stage(value);
        else if (name == "aihpc-stage-out") options.stage_out = parse_stage_out(value);
        else if (name == "aihpc-stage-mode") {
            if (value == "cache") options.stage_mode = StageMode::cache;
            else if (value == "user") options.stage_mode = StageMode::user;
            else if (value == "private") options.stage_mode = StageMode::private_;
            else bad(name, "unknown mode '" + value + "'; use cache, user or private");
        } else if (name == "aihpc-stage-verify") options.stage_verify = parse_flag_value(name, value);
        else if (name == "aihpc-container") {
            if (value.empty()) bad(name, "needs an IMAGE");
            check_path_text(name, "IMAGE", value);
            options.container = value;
        } else if (name == "aihpc-container-scope") {
            if (value == "all") options.container_scope = ContainerScope::all;
            else if (value == "steps") options.container_scope = ContainerScope::steps;
            else bad(name, "unknown scope '" + value + "'; use all or steps");
        } else if (name == "aihpc-container-bind") options.container_binds = parse_container_binds(value);
        else if (name == "aihpc-bind") options.bind = parse_bind(value);
        else if (name == "aihpc-dist") options.dist = parse_dist(name, value);
        else if (name == "aihpc-checkpoint") options.checkpoint = parse_checkpoint(name, value);
        else if (name == "aihpc-gravity") {
            if (value.empty() || value == "prefer") options.gravity = true;
            else if (value == "off") options.gravity = false;
            else bad(name, "unknown value '" + value + "'; use prefer or off");
        } else if (name == "aihpc-verbose") options.verbose = parse_flag_value(name, value);
    }
    if (options.container.empty() && !options.container_binds.empty())
        bad("aihpc-container-bind", "needs --aihpc-container");
    return options;
}

bool dest_names_node(const std::string& dest) {
    // "%%n" is a literal "%n", not the node name: escapes are read left to right.
    for (std::size_t i = 0; i + 1 < dest.size(); ++i) {
        if (dest[i] != '%') continue;
        if (dest[i + 1] == 'n') return true;
        ++i;
    }
    return false;
}

void check_job_shape(const UserOptions& options, unsigned node_count) {
    if (node_count <= 1) return;
    for (const StageOutItem& item : options.stage_out)
        if (!dest_names_node(item.dest))
            bad("aihpc-stage-out", "DEST '" + item.dest + "' runs on " + std::to_string(node_count) +
                                       " nodes and would collide; add %n (node name) to it");
}

}  // namespace aihpc::config
