#include "container/launch.hpp"

#include <set>

#include "common/error.hpp"
#include "common/paths.hpp"
#include "common/json.hpp"
#include "common/text.hpp"

namespace aihpc::container {

namespace {

// Host paths that mean nothing inside an image; enroot and podman keep the image's own.
const std::set<std::string> host_only_vars = {"PATH", "LD_LIBRARY_PATH", "LD_PRELOAD", "HOME"};

// charliecloud's conventional spare mount points: /mnt/aihpc from aihpc's image recipe,
// /mnt/0../mnt/9 from ch-image.
std::vector<std::string> spare_mount_points(bool stage_first) {
    std::vector<std::string> slots;
    if (stage_first) slots.emplace_back("/mnt/aihpc");
    for (int i = 0; i <= 9; ++i) slots.push_back("/mnt/" + std::to_string(i));
    if (!stage_first) slots.emplace_back("/mnt/aihpc");
    return slots;
}

enum class MountRole { stage, script, tmpdir, metrics, user };

struct PlannedMount {
    std::string src, dst;
    bool read_only = false;
    MountRole role = MountRole::user;
};

std::string parent_dir(const std::string& path) {
    std::size_t slash = path.find_last_of('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

bool below(const std::string& path, const std::string& dir) {
    return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                           (dir == "/" || path[dir.size()] == '/'));
}

// Where a host path is seen inside the container; the last mount covering it wins, as
// later mounts shadow earlier ones.
std::optional<std::string> translate(const std::vector<PlannedMount>& mounts, const std::string& path) {
    for (auto it = mounts.rbegin(); it != mounts.rend(); ++it) {
        if (!below(path, it->src)) continue;
        std::string rest = path.substr(it->src.size());
        if (it->dst == "/" && !rest.empty()) return rest;
        return it->dst + rest;
    }
    return std::nullopt;
}

std::vector<PlannedMount> wanted_mounts(const LaunchRequest& request, const TaskView& task) {
    std::vector<PlannedMount> mounts;
    auto add = [&](const std::string& src, const std::string& dst, bool ro, MountRole role) {
        for (const PlannedMount& m : mounts)
            if (m.src == src && m.dst == dst) return;
        mounts.push_back({src, dst, ro, role});
    };
    if (request.stage_root) add(*request.stage_root, *request.stage_root, false, MountRole::stage);
    if (request.batch_script && !task.argv.empty() && task.argv[0].front() == '/') {
        std::string dir = parent_dir(task.argv[0]);
        add(dir, dir, true, MountRole::script);
    }
    // ch-run puts the host's $TMPDIR at /tmp itself; the others need it bound.
    if (request.runtime != Runtime::charliecloud)
        if (auto tmp = env_get(task.env, "TMPDIR"); tmp && !tmp->empty() && tmp->front() == '/' && *tmp != "/tmp")
            add(*tmp, *tmp, false, MountRole::tmpdir);
    for (const config::ContainerMount& bind : request.binds) add(bind.src, bind.dst, bind.read_only, MountRole::user);
    return mounts;
}

// The directory ch-run shows at the container's /tmp: the host's $TMPDIR, else /tmp.
std::string charliecloud_host_tmp(const std::vector<std::string>& env) {
    auto tmp = env_get(env, "TMPDIR");
    return tmp && !tmp->empty() && tmp->front() == '/' ? *tmp : "/tmp";
}

// A sweep task's metrics file (AIHPC_METRICS_FILE) lives on the host, where aihpc-sweep
// reads it; its directory is bound unless a mount already shows it (ch-run's /tmp does
// for a file below the host's $TMPDIR).
void add_metrics_mount(std::vector<PlannedMount>& mounts, const LaunchRequest& request, const TaskView& task) {
    auto file = env_get(task.env, metrics_file_var);
    if (!file || file->size() < 2 || file->front() != '/') return;
    std::string dir = parent_dir(*file);
    if (dir == "/" || translate(mounts, dir)) return;
    if (request.runtime == Runtime::charliecloud && below(dir, charliecloud_host_tmp(task.env))) return;
    mounts.push_back({dir, dir, false, MountRole::metrics});
}

// Where a host path is seen inside: through the planned mounts, or for charliecloud
// through the /tmp that ch-run binds itself.
std::optional<std::string> inside_path(const std::vector<PlannedMount>& mounts, const LaunchRequest& request,
                                       const TaskView& task, const std::string& path) {
    if (auto inside = translate(mounts, path)) return inside;
    if (request.runtime == Runtime::charliecloud) {
        std::string tmp = charliecloud_host_tmp(task.env);
        if (below(path, tmp)) return "/tmp" + path.substr(tmp == "/" ? 0 : tmp.size());
    }
    return std::nullopt;
}

// The first word of the command that names a file in the working directory, which the
// task will not find when that directory is not in the container ("train.py" of
// python3 train.py); empty when there is none or the question cannot be asked.
std::string relative_file_word(const TaskView& task) {
    if (!task.exists_on_host) return "";
    for (std::size_t i = 0; i < task.argv.size(); ++i) {
        const std::string& word = task.argv[i];
        if (i == 0 && word.find('/') == std::string::npos) continue;  // a program looked up in PATH
        if (!word.empty() && word[0] != '/' && word[0] != '-' && task.exists_on_host(word)) return word;
    }
    return "";
}

// Says, when it matters, that the task will not start where the user stood: a task that
// needs no file of its working directory runs as quietly as any other.
void warn_unbound_cwd(RuntimeCommand& out, const LaunchRequest& request, const TaskView& task, const std::string& starts_in,
                      const char* bind_note) {
    if (task.cwd.empty() || request.batch_script) return;
    std::string relative = relative_file_word(task);
    if (relative.empty()) return;
    out.warnings.push_back("'" + relative + "' is relative to the working directory " + task.cwd +
                           ", which is not bound into the container " + request.image + ", so the task starts in " +
                           starts_in + "; bind it with --aihpc-container-bind=" + task.cwd + ":" + task.cwd + bind_note +
                           " so that relative paths work");
}

// ch-run cannot create a mount point in a read-only image: a stage root or script dir
// missing from the image moves to a spare mount point (the stage root to /mnt/aihpc
// first); a user's missing DST is an error.
void place_for_charliecloud(std::vector<PlannedMount>& mounts, const ImageProbe& probe, const std::string& image) {
    std::set<std::string> taken;
    for (const PlannedMount& m : mounts) taken.insert(m.dst);
    for (PlannedMount& m : mounts) {
        if (m.role == MountRole::user) {
            if (m.read_only)
                throw Error("--aihpc-container-bind: " + m.src + ":" + m.dst +
                            ":ro cannot be honoured by charliecloud (ch-run binds read-write); drop :ro");
            if (probe(m.dst) == PathKind::none)
                throw Error("--aihpc-container-bind: " + m.dst + " does not exist in the image " + image +
                            ", and charliecloud cannot create mount points in a read-only image; "
                            "bind to a directory the image has (such as /mnt/0 to /mnt/9) or add it to the image");
            continue;
        }
        if (probe(m.dst) == PathKind::directory) continue;
        bool placed = false;
        for (const std::string& slot : spare_mount_points(m.role == MountRole::stage)) {
            if (taken.count(slot) || probe(slot) != PathKind::directory) continue;
            taken.insert(slot);
            m.dst = slot;
            placed = true;
            break;
        }
        if (!placed)
            throw Error("the image " + image + " has no free mount point for " + m.src +
                        ": charliecloud needs /mnt/aihpc or /mnt/0 to /mnt/9 in the image (mkdir -p " + image +
                        "/mnt/aihpc " + image + "/mnt/{0..9})");
    }
}

std::string joined_ids(const std::vector<std::string>& ids) { return join(ids, ","); }

std::string ordinal_list(std::size_t count) {
    std::vector<std::string> ids;
    for (std::size_t i = 0; i < count; ++i) ids.push_back(std::to_string(i));
    return join(ids, ",");
}

void pass_env_by_name(std::vector<std::string>& argv, const char* flag, const std::vector<std::string>& env) {
    for (const std::string& entry : env) {
        std::string name = entry.substr(0, entry.find('='));
        if (name.empty() || host_only_vars.count(name)) continue;
        argv.emplace_back(flag);
        argv.push_back(name);
    }
}

}  // namespace

std::optional<std::string> env_get(const std::vector<std::string>& env, const std::string& name) {
    for (const std::string& entry : env)
        if (entry.size() > name.size() && entry[name.size()] == '=' && entry.compare(0, name.size(), name) == 0)
            return entry.substr(name.size() + 1);
    return std::nullopt;
}

void env_set(std::vector<std::string>& env, const std::string& name, const std::string& value) {
    for (std::string& entry : env)
        if (entry.size() > name.size() && entry[name.size()] == '=' && entry.compare(0, name.size(), name) == 0) {
            entry = name + "=" + value;
            return;
        }
    env.push_back(name + "=" + value);
}

void env_unset(std::vector<std::string>& env, const std::string& name) {
    std::erase_if(env, [&](const std::string& entry) {
        return entry.size() > name.size() && entry[name.size()] == '=' && entry.compare(0, name.size(), name) == 0;
    });
}

GpuSet detect_gpus(const std::vector<std::string>& env) {
    GpuSet gpus;
    auto listed = [](const std::optional<std::string>& value) {
        return value && !value->empty() && *value != "NoDevFiles";
    };
    auto cuda = env_get(env, "CUDA_VISIBLE_DEVICES");
    auto rocr = env_get(env, "ROCR_VISIBLE_DEVICES");
    if (listed(cuda)) gpus.vendor = GpuSet::Vendor::nvidia;
    else if (listed(rocr)) gpus.vendor = GpuSet::Vendor::amd;
    else return gpus;
    // Slurm's own lists hold physical indices; the *_VISIBLE_DEVICES may be renumbered
    // inside a device cgroup.
    std::string ids = gpus.vendor == GpuSet::Vendor::nvidia ? *cuda : *rocr;
    for (const char* name : {"SLURM_JOB_GPUS", "SLURM_STEP_GPUS"})
        if (auto value = env_get(env, name); listed(value)) ids = *value;
    for (const std::string& id : split(ids, ','))
        if (!id.empty()) gpus.devices.push_back(id);
    return gpus;
}

namespace {

// Variables that name host paths (the stage dir, the data items, the metrics file) now
// name the container's. An entry without '=' (execve allows one) names no value to
// translate.
void translate_path_variables(std::vector<std::string>& env, const std::vector<PlannedMount>& mounts,
                              const LaunchRequest& request, const TaskView& task) {
    for (std::string& entry : env) {
        std::size_t eq = entry.find('=');
        if (eq == std::string::npos) continue;
        std::string name = entry.substr(0, eq);
        if (name != "AIHPC_STAGE_DIR" && !starts_with(name, "AIHPC_DATA_") && name != metrics_file_var) continue;
        if (auto inside = inside_path(mounts, request, task, entry.substr(eq + 1))) entry = name + "=" + *inside;
    }
}

// podman's words for the task's GPUs: NVIDIA's by CDI name, AMD's as their device nodes.
void add_podman_gpus(std::vector<std::string>& argv, std::vector<std::string>& env, const GpuSet& gpus) {
    if (gpus.vendor == GpuSet::Vendor::nvidia) {
        for (const std::string& id : gpus.devices) {
            argv.emplace_back("--device");
            argv.push_back("nvidia.com/gpu=" + id);
        }
        // The container sees only its CDI devices, numbered from 0.
        env_set(env, "CUDA_VISIBLE_DEVICES", ordinal_list(gpus.devices.size()));
    } else if (gpus.vendor == GpuSet::Vendor::amd) {
        argv.insert(argv.end(), {"--device", "/dev/kfd", "--device", "/dev/dri"});
    }
}

}  // namespace

RuntimeCommand build_runtime_command(const LaunchRequest& request, const TaskView& task, const ImageProbe& probe) {
    if (task.argv.empty()) throw Error("the task has no command to run in the container");
    std::vector<PlannedMount> mounts = wanted_mounts(request, task);
    add_metrics_mount(mounts, request, task);
    if (request.runtime == Runtime::charliecloud) place_for_charliecloud(mounts, probe, request.image);

    RuntimeCommand out;
    out.env = task.env;
    translate_path_variables(out.env, mounts, request, task);
    std::vector<std::string> command = task.argv;
    if (request.batch_script)
        if (auto inside = translate(mounts, command[0])) command[0] = *inside;
    std::optional<std::string> cwd_inside = inside_path(mounts, request, task, task.cwd);
    const GpuSet& gpus = task.gpus;
    std::vector<std::string>& argv = out.argv;
    argv.push_back(request.program);

    switch (request.runtime) {
    case Runtime::apptainer:
    case Runtime::singularity:
        argv.emplace_back("exec");
        if (gpus.vendor == GpuSet::Vendor::nvidia) argv.emplace_back("--nv");
        if (gpus.vendor == GpuSet::Vendor::amd) argv.emplace_back("--rocm");
        for (const PlannedMount& m : mounts) {
            argv.emplace_back("--bind");
            argv.push_back(m.src + ":" + m.dst + (m.read_only ? ":ro" : ""));
        }
        if (!task.cwd.empty()) {
            argv.emplace_back("--pwd");
            argv.push_back(cwd_inside.value_or(task.cwd));  // apptainer mounts the cwd itself
        }
        argv.push_back(request.image);
        break;
    case Runtime::charliecloud:
        for (const PlannedMount& m : mounts) {
            argv.emplace_back("-b");
            argv.push_back(m.src + ":" + m.dst);
        }
        // The task starts where the user stood when that directory is bound in; else
        // relative paths (python3 train.py) would resolve against another directory,
        // so say which.
        if (cwd_inside) {
            argv.push_back("--cd=" + *cwd_inside);
        } else {
            bool same_path = !task.cwd.empty() && probe(task.cwd) == PathKind::directory;
            argv.push_back("--cd=" + (same_path ? task.cwd : std::string("/")));
            warn_unbound_cwd(out, request, task, "the image's " + (same_path ? task.cwd : std::string("/")),
                             " (the path must exist in the image)");
        }
        // ch-run unsets TMPDIR and shows the host's $TMPDIR at /tmp.
        if (env_get(task.env, "TMPDIR")) argv.emplace_back("--set-env=TMPDIR=/tmp");
        argv.push_back(request.image);
        argv.emplace_back("--");
        break;
    case Runtime::enroot:
        argv.emplace_back("start");
        if (gpus.vendor == GpuSet::Vendor::nvidia) {
            env_set(out.env, "NVIDIA_VISIBLE_DEVICES", joined_ids(gpus.devices));
            if (!env_get(out.env, "NVIDIA_DRIVER_CAPABILITIES"))
                env_set(out.env, "NVIDIA_DRIVER_CAPABILITIES", "compute,utility");
        }
        for (const PlannedMount& m : mounts) {
            argv.emplace_back("--mount");
            argv.push_back(m.src + ":" + m.dst + ":x-create=auto,rbind" + (m.read_only ? ",ro" : ""));
        }
        pass_env_by_name(argv, "--env", out.env);
        argv.push_back(request.image);
        // enroot start has no working-directory option: its init goes to $HOME and the
        // image's /etc/rc to the image's WORKDIR before the command runs. So the image's
        // shell changes to the task's directory, then execs the command, keeping every
        // word as it is.
        if (cwd_inside) {
            argv.insert(argv.end(), {"/bin/sh", "-c", "cd \"$1\" && shift && exec \"$@\"", "aihpc-cd", *cwd_inside});
        } else {
            warn_unbound_cwd(out, request, task, "the image's own working directory", "");
        }
        break;
    case Runtime::podman:
        argv.insert(argv.end(), {"run", "--rm", "--interactive", "--network=host", "--userns=keep-id"});
        add_podman_gpus(argv, out.env, gpus);
        for (const PlannedMount& m : mounts) {
            argv.emplace_back("--volume");
            argv.push_back(m.src + ":" + m.dst + (m.read_only ? ":ro" : ""));
        }
        if (cwd_inside) argv.push_back("--workdir=" + *cwd_inside);
        else warn_unbound_cwd(out, request, task, "the image's WORKDIR", "");
        pass_env_by_name(argv, "--env", out.env);
        if (request.kind == ImageKind::directory) argv.emplace_back("--rootfs");
        argv.push_back(request.image);
        break;
    }
    argv.insert(argv.end(), command.begin(), command.end());
    return out;
}

std::vector<std::string> launcher_candidates(const std::string& plugin_path, const std::string& installed_path) {
    return helper_program_candidates(plugin_path, "aihpc-launch", installed_path);
}

const char* installed_launcher_path() {
#ifdef AIHPC_LAUNCH_PATH
    return AIHPC_LAUNCH_PATH;
#else
    return "";
#endif
}

bool task_argv_is_step_argv(unsigned major, unsigned minor) {
    // slurmstepd points every task's argv at the step's array from 20.11 (where our
    // tests run 22.05) until 23.11 brought spank_prepend_task_argv.
    unsigned version = major * 100 + minor;
    return version >= 2011 && version < 2311;
}

// ---- the request as text (json-c)

namespace {

const char* kind_key(ImageKind kind) {
    switch (kind) {
    case ImageKind::sif: return "sif";
    case ImageKind::squashfs: return "squashfs";
    case ImageKind::directory: return "directory";
    case ImageKind::registry: return "registry";
    case ImageKind::named: return "named";
    }
    return "directory";
}

std::string get_string(json_object* obj, const char* key, bool required = true) {
    json_object* value = nullptr;
    if (!json_object_object_get_ex(obj, key, &value) || !json_object_is_type(value, json_type_string)) {
        if (required) throw Error(std::string("launch request lacks '") + key + "'");
        return "";
    }
    return json_object_get_string(value);
}

bool get_bool(json_object* obj, const char* key) {
    json_object* value = nullptr;
    return json_object_object_get_ex(obj, key, &value) && json_object_get_boolean(value);
}

}  // namespace

std::string encode_request(const LaunchRequest& request) {
    JsonRef root(json_object_new_object());
    json_object_object_add(root.get(), "runtime", json_object_new_string(runtime_name(request.runtime)));
    json_object_object_add(root.get(), "program", json_object_new_string(request.program.c_str()));
    json_object_object_add(root.get(), "image", json_object_new_string(request.image.c_str()));
    json_object_object_add(root.get(), "kind", json_object_new_string(kind_key(request.kind)));
    json_object* binds = json_object_new_array();
    for (const config::ContainerMount& m : request.binds) {
        json_object* b = json_object_new_object();
        json_object_object_add(b, "src", json_object_new_string(m.src.c_str()));
        json_object_object_add(b, "dst", json_object_new_string(m.dst.c_str()));
        json_object_object_add(b, "ro", json_object_new_boolean(m.read_only));
        json_object_array_add(binds, b);
    }
    json_object_object_add(root.get(), "binds", binds);
    if (request.stage_root)
        json_object_object_add(root.get(), "stage_root", json_object_new_string(request.stage_root->c_str()));
    json_object_object_add(root.get(), "batch_script", json_object_new_boolean(request.batch_script));
    if (request.argv0) json_object_object_add(root.get(), "argv0", json_object_new_string(request.argv0->c_str()));
    json_object_object_add(root.get(), "verbose", json_object_new_boolean(request.verbose));
    return json_object_to_json_string_ext(root.get(), JSON_C_TO_STRING_PLAIN);
}

LaunchRequest decode_request(const std::string& text) {
    JsonRef root = parse_json(text);
    if (!root || !json_object_is_type(root.get(), json_type_object)) throw Error("launch request is not a JSON object");
    LaunchRequest request;
    std::string runtime = get_string(root.get(), "runtime");
    auto parsed = parse_runtime(runtime);
    if (!parsed) throw Error("launch request names an unknown runtime '" + runtime + "'");
    request.runtime = *parsed;
    request.program = get_string(root.get(), "program");
    request.image = get_string(root.get(), "image");
    std::string kind = get_string(root.get(), "kind");
    bool known = false;
    for (ImageKind k : {ImageKind::sif, ImageKind::squashfs, ImageKind::directory, ImageKind::registry, ImageKind::named})
        if (kind == kind_key(k)) request.kind = k, known = true;
    if (!known) throw Error("launch request has an unknown image kind '" + kind + "'");
    json_object* binds = nullptr;
    if (json_object_object_get_ex(root.get(), "binds", &binds) && json_object_is_type(binds, json_type_array)) {
        for (std::size_t i = 0; i < json_object_array_length(binds); ++i) {
            json_object* b = json_object_array_get_idx(binds, i);
            request.binds.push_back({get_string(b, "src"), get_string(b, "dst"), get_bool(b, "ro")});
        }
    }
    json_object* stage_root = nullptr;
    if (json_object_object_get_ex(root.get(), "stage_root", &stage_root)) {
        request.stage_root = get_string(root.get(), "stage_root");
        if (request.stage_root->empty() || request.stage_root->front() != '/')
            throw Error("launch request's stage_root '" + *request.stage_root + "' is not an absolute path");
    }
    request.batch_script = get_bool(root.get(), "batch_script");
    json_object* argv0 = nullptr;
    if (json_object_object_get_ex(root.get(), "argv0", &argv0)) request.argv0 = get_string(root.get(), "argv0");
    request.verbose = get_bool(root.get(), "verbose");
    if (request.program.empty() || request.program.front() != '/')
        throw Error("launch request's program '" + request.program + "' is not an absolute path");
    return request;
}

}  // namespace aihpc::container
