// The --aihpc-* user options: their table, their grammar and their typed form.
#pragma once
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace aihpc::config {

enum class BindMode { auto_, gpu, numa, cores, none };
enum class DistKind { none, torch };
// cache: the shared cache where the source is world-readable and the site allows it,
// else the user's own; user: the user's own cache only; private: a writable copy.
enum class StageMode { cache, user, private_ };
enum class ContainerScope { all, steps };

const char* to_string(BindMode mode);
const char* to_string(DistKind kind);
const char* to_string(StageMode mode);
const char* to_string(ContainerScope scope);

struct OptionSpec {
    const char* name;         // without the leading "--": "aihpc-stage"
    const char* arg_info;     // nullptr: a flag without value
    bool arg_optional;        // --aihpc-dist[=torch]
    const char* usage;
    const char* env_var;      // AIHPC_STAGE
    bool step_local;          // given to one step only; steps do not inherit it
};

const std::vector<OptionSpec>& option_table();
const OptionSpec* find_option(const std::string& name);

struct StageItem {
    std::string src;    // as given; resolved on the node against SLURM_SUBMIT_DIR if relative
    std::string name;   // one path component
};

struct StageOutItem {
    std::string local;  // path below the stage dir
    std::string dest;   // may contain %j and %n
};

struct ContainerMount {
    std::string src;
    std::string dst;
    bool read_only = false;
};

struct BindRequest {
    BindMode mode = BindMode::none;
    bool verbose = false;
    bool nomem = false;
    bool nonic = false;
    bool hbm = false;          // prefer the memory-only (high-bandwidth) nodes near each task
    unsigned threads = 0;      // threads per task (OMP_NUM_THREADS); 0: one per core
};

// --aihpc-checkpoint[=SIG@SECS]: SIG is sent SECS before the time limit, and a task that
// exits with checkpoint_requeue_exit afterwards has its job requeued.
struct CheckpointRequest {
    int signal = 10;              // SIGUSR1 on Linux
    std::string signal_name = "USR1";
    unsigned seconds = 120;
};
// The exit status that says "checkpoint written, requeue me": EX_TEMPFAIL of sysexits.h,
// a temporary failure to be tried again.
inline constexpr int checkpoint_requeue_exit = 75;

// Raw option values as Slurm handed them: name (without "--") -> value ("" for a flag).
using RawOptions = std::map<std::string, std::string>;

struct UserOptions {
    std::vector<StageItem> stage;
    std::vector<StageOutItem> stage_out;
    StageMode stage_mode = StageMode::cache;
    bool stage_verify = false;
    std::string container;                       // raw image reference, "" = none
    ContainerScope container_scope = ContainerScope::all;
    std::vector<ContainerMount> container_binds;
    std::optional<BindRequest> bind;             // nullopt: site's bind_default
    std::optional<DistKind> dist;                // nullopt: site's dist_default
    std::optional<CheckpointRequest> checkpoint;  // nullopt: no checkpoint signal, no requeue
    // --aihpc-gravity[=prefer|off]: true, prefer the nodes that hold the --aihpc-stage data
    // warm; false, never; nullopt, as the site key gravity says (SiteConfig::gravity_default).
    std::optional<bool> gravity;
    bool verbose = false;
};

// Parses every option present in `raw`. Throws aihpc::Error whose message starts with
// the option ("--aihpc-stage: ...").
UserOptions parse_user_options(const RawOptions& raw);

// The longest stage NAME: each node makes names of it with up to 31 bytes more
// (".NAME.aihpc-link.PID.N", with a 7-digit PID and a 10-digit counter), which must stay
// within the file system's NAME_MAX of 255. A longer NAME is refused at submit time rather
// than failing on every node.
inline constexpr std::size_t stage_name_max = 255 - 31;

// Parsers of single option values, each throwing aihpc::Error naming the option.
std::vector<StageItem> parse_stage(const std::string& value);
std::vector<StageOutItem> parse_stage_out(const std::string& value);
std::vector<ContainerMount> parse_container_binds(const std::string& value);
BindRequest parse_bind(const std::string& value);
BindMode parse_bind_mode(const std::string& what, const std::string& value);
DistKind parse_dist(const std::string& what, const std::string& value);
// "" (the defaults), "SIG", "SIG@SECS" or "@SECS"; SIG by name (USR1, SIGUSR1) or number.
CheckpointRequest parse_checkpoint(const std::string& what, const std::string& value);

// Stage NAME default: base name of SRC minus any archive suffix.
std::string default_stage_name(const std::string& src);

// Whether a stage-out DEST holds the %n escape (the node name); "%%n" does not.
bool dest_names_node(const std::string& dest);

// Checks that need to know the job's shape, done at submit: a stage-out DEST without %n
// on more than one node.
void check_job_shape(const UserOptions& options, unsigned node_count);

}  // namespace aihpc::config
