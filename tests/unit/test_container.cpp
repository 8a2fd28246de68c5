// lib/container: image classification, the site's runtime policy, the runtime command
// line of every runtime, the launch request, image digests and the launcher's place.
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "cmocka_cxx.hpp"
#include "common/text.hpp"
#include "config/site_config.hpp"
#include "container/digest.hpp"
#include "container/digest_cache.hpp"
#include "container/image.hpp"
#include "container/launch.hpp"
#include "temp_dir.hpp"

using namespace aihpc;
using namespace aihpc::container;

namespace {

config::SiteConfig site_with(const std::vector<std::string>& args) { return config::parse_site_config(args); }

bool every_runtime(Runtime) { return true; }

std::string words(const std::vector<std::string>& argv) { return join(argv, " "); }

void assert_words(const std::vector<std::string>& argv, const std::string& expected) {
    std::string got = words(argv);
    if (got != expected) {
        print_error("argv:     %s\nexpected: %s\n", got.c_str(), expected.c_str());
        fail();
    }
}

// The node's local_root, as the plugin's staging lays it out: jobs/<jobid>/NAME, a
// relative link into cache/<uid>/entries/<key>/data (or a private copy).
const std::string stage_root = "/local/aihpc/n1";

// The task every argv case starts from: two ranks' worth of Slurm env, a stage dir, a
// working dir the image lacks.
TaskView base_task() {
    TaskView task;
    task.argv = {"python3", "train.py", "--lr", "1e-3"};
    task.env = {"PATH=/usr/bin:/bin", "HOME=/home/u", "SLURM_PROCID=1",
                "AIHPC_STAGE_DIR=/local/aihpc/n1/jobs/42", "AIHPC_DATA_CIFAR=/local/aihpc/n1/jobs/42/cifar",
                "TMPDIR=/tmp/job42"};
    task.cwd = "/home/u/project";
    return task;
}

// As the plugin asks for base_task, which stages: with the node's stage root.
LaunchRequest request_for(Runtime runtime, const std::string& program, const std::string& image,
                          ImageKind kind = ImageKind::directory) {
    LaunchRequest r;
    r.runtime = runtime;
    r.program = program;
    r.image = image;
    r.kind = kind;
    r.stage_root = stage_root;
    return r;
}

// Where a relative link at `link` (a path inside the container) leads, resolved
// lexically as the kernel does when no component on the way is itself a link.
std::string resolve_relative_link(const std::string& link, const std::string& target) {
    std::vector<std::string> parts;
    for (const std::string& p : split(link.substr(0, link.find_last_of('/')), '/'))
        if (!p.empty()) parts.push_back(p);
    for (const std::string& p : split(target, '/')) {
        if (p.empty() || p == ".") continue;
        if (p == "..") {
            if (!parts.empty()) parts.pop_back();
        } else {
            parts.push_back(p);
        }
    }
    return "/" + join(parts, "/");
}

// An image that has /mnt/aihpc, /mnt/0..9, /data and /etc/hosts.
PathKind typical_image(const std::string& path) {
    if (path == "/mnt/aihpc" || path == "/data" || path == "/" || path == "/home") return PathKind::directory;
    if (path.size() == 6 && path.compare(0, 5, "/mnt/") == 0 && path[5] >= '0' && path[5] <= '9')
        return PathKind::directory;
    if (path == "/etc/hosts") return PathKind::file;
    return PathKind::none;
}

PathKind bare_image(const std::string& path) { return path == "/" ? PathKind::directory : PathKind::none; }

}  // namespace

// ---- classification

static void image_kind_follows_suffix_directory_and_scheme(void**) {
    struct Case { const char* text; bool dir; ImageKind kind; std::vector<Runtime> candidates; const char* image; };
    const Case cases[] = {
        {"/img/torch.sif", false, ImageKind::sif, {Runtime::apptainer, Runtime::singularity}, "/img/torch.sif"},
        {"old.simg", false, ImageKind::sif, {Runtime::apptainer, Runtime::singularity}, "old.simg"},
        {"/img/torch.sqsh", false, ImageKind::squashfs, {Runtime::enroot}, "/img/torch.sqsh"},
        {"/img/torch.squashfs", false, ImageKind::squashfs, {Runtime::enroot}, "/img/torch.squashfs"},
        {"/img/busybox", true, ImageKind::directory, {Runtime::charliecloud}, "/img/busybox"},
        {"docker://alpine:3.19", false, ImageKind::registry, {}, "docker://alpine:3.19"},
        {"podman:alpine", false, ImageKind::registry, {Runtime::podman}, "alpine"},
        {"podman:/img/rootfs", true, ImageKind::directory, {Runtime::podman}, "/img/rootfs"},
        {"enroot:pytorch", false, ImageKind::named, {Runtime::enroot}, "pytorch"},
        {"apptainer:docker://ubuntu", false, ImageKind::registry, {Runtime::apptainer}, "docker://ubuntu"},
        {"singularity:/img/a.sif", false, ImageKind::sif, {Runtime::singularity}, "/img/a.sif"},
        {"charliecloud:/img/x", true, ImageKind::directory, {Runtime::charliecloud}, "/img/x"},
    };
    for (const Case& c : cases) {
        ImageRef ref = classify_image(c.text, c.dir);
        if (ref.kind != c.kind || ref.candidates != c.candidates || ref.image != c.image) {
            print_error("case %s: kind %s, image %s\n", c.text, kind_name(ref.kind), ref.image.c_str());
            fail();
        }
    }
}

static void runtime_prefix_is_recorded_as_explicit(void**) {
    assert_true(classify_image("podman:alpine", false).explicit_runtime);
    assert_false(classify_image("/img/a.sif", false).explicit_runtime);
}

static void image_of_unknown_kind_is_refused_with_the_choices(void**) {
    expect_error_containing([] { classify_image("/img/rootfs.tar", false); }, "cannot tell which runtime");
    expect_error_containing([] { classify_image("/img/rootfs.tar", false); }, "RUNTIME:IMAGE");
    expect_error_containing([] { classify_image("foo:bar", false); }, "cannot tell");
    expect_error_containing([] { classify_image("podman:", false); }, "names no image");
}

// ---- choosing the runtime under the site's keys

static void sif_prefers_apptainer_then_whichever_is_installed(void**) {
    config::SiteConfig site;
    ImageRef sif = classify_image("/i/a.sif", false);
    assert_true(choose_runtime(sif, site, every_runtime) == Runtime::apptainer);
    assert_true(choose_runtime(sif, site, [](Runtime r) { return r == Runtime::singularity; }) == Runtime::singularity);
    // Nothing installed: the first candidate, so the node's error names it.
    assert_true(choose_runtime(sif, site, [](Runtime) { return false; }) == Runtime::apptainer);
}

static void container_default_decides_between_candidates(void**) {
    config::SiteConfig site = site_with({"container_default=singularity"});
    assert_true(choose_runtime(classify_image("/i/a.sif", false), site, every_runtime) == Runtime::singularity);
}

static void runtime_outside_container_runtimes_is_refused(void**) {
    config::SiteConfig site = site_with({"container_runtimes=charliecloud,podman"});
    expect_error_containing([&] { choose_runtime(classify_image("/i/a.sif", false), site, every_runtime); },
                            "apptainer, singularity, which this cluster does not allow (container_runtimes=charliecloud,podman)");
    expect_error_containing([&] { choose_runtime(classify_image("enroot:x", false), site, every_runtime); },
                            "does not allow");
    assert_true(choose_runtime(classify_image("/i/d", true), site, every_runtime) == Runtime::charliecloud);
}

static void registry_reference_needs_registry_yes(void**) {
    config::SiteConfig site;
    expect_error_containing([&] { choose_runtime(classify_image("docker://alpine", false), site, every_runtime); },
                            "registry=no");
    expect_error_containing([&] { choose_runtime(classify_image("podman:alpine", false), site, every_runtime); },
                            "registry=no");
}

static void registry_reference_goes_to_the_default_runtime(void**) {
    ImageRef ref = classify_image("docker://alpine", false);
    assert_true(choose_runtime(ref, site_with({"registry=yes"}), every_runtime) == Runtime::apptainer);
    assert_true(choose_runtime(ref, site_with({"registry=yes", "container_default=podman"}), every_runtime) ==
                Runtime::podman);
    assert_true(choose_runtime(ref, site_with({"registry=yes", "container_runtimes=charliecloud,podman"}),
                               every_runtime) == Runtime::podman);
}

static void registry_reference_with_a_runtime_that_cannot_pull_is_refused(void**) {
    ImageRef ref = classify_image("docker://alpine", false);
    expect_error_containing(
        [&] { choose_runtime(ref, site_with({"registry=yes", "container_default=charliecloud"}), every_runtime); },
        "charliecloud cannot run the registry reference");
    expect_error_containing(
        [&] { choose_runtime(ref, site_with({"registry=yes", "container_runtimes=enroot,charliecloud"}), every_runtime); },
        "no allowed runtime can pull");
}

// ---- paths and policy

static void path_is_under_respects_component_boundaries(void**) {
    struct Case { const char* path; std::vector<std::string> dirs; bool under; };
    const Case cases[] = {
        {"/images/a.sif", {"/images"}, true},
        {"/images", {"/images"}, true},
        {"/images2/a.sif", {"/images"}, false},
        {"/imag", {"/images"}, false},
        {"/x/a.sif", {"/images", "/x"}, true},
        {"/anything", {"/"}, true},
        {"/x/a.sif", {}, false},
    };
    for (const Case& c : cases) assert_int_equal(path_is_under(c.path, c.dirs), c.under);
}

static void relative_image_is_taken_from_the_submit_dir(void**) {
    assert_string_equal(absolute_image_path("img.sif", "/home/u").c_str(), "/home/u/img.sif");
    assert_string_equal(absolute_image_path("img.sif", "/home/u/").c_str(), "/home/u/img.sif");
    assert_string_equal(absolute_image_path("/abs/img.sif", "/home/u").c_str(), "/abs/img.sif");
}

static void nonexistent_image_is_refused(void**) {
    TempDir t;
    expect_error_containing([&] { check_image(t.path() + "/none.sif", {}, "/", every_runtime); },
                            "No such file or directory");
    expect_error_containing([&] { check_image("missing-dir", {}, t.path(), every_runtime); }, "cannot tell");
}

static void image_outside_image_allow_is_refused(void**) {
    TempDir t;
    t.make_dir("allowed");
    std::string sif = t.write("elsewhere.sif", "x");
    config::SiteConfig site = site_with({"image_allow=" + t.path() + "/allowed"});
    expect_error_containing([&] { check_image(sif, site, "/", every_runtime); }, "outside the directories");
    expect_error_containing([&] { check_image(sif, site, "/", every_runtime); }, "image_allow=" + t.path() + "/allowed");
}

static void image_allow_is_checked_on_the_real_path(void**) {
    TempDir t;
    t.make_dir("allowed");
    t.write("outside.sif", "x");
    std::string link = t.path() + "/allowed/inside.sif";
    assert_int_equal(::symlink((t.path() + "/outside.sif").c_str(), link.c_str()), 0);
    config::SiteConfig site = site_with({"image_allow=" + t.path() + "/allowed"});
    expect_error_containing([&] { check_image(link, site, "/", every_runtime); }, "outside the directories");
}

static void image_inside_image_allow_resolves_to_its_real_path(void**) {
    TempDir t;
    std::string dir = t.make_dir("allowed/busybox");
    config::SiteConfig site = site_with({"image_allow=" + t.path() + "/allowed"});
    ResolvedImage image = check_image("allowed/busybox", site, t.path(), every_runtime);
    assert_true(image.runtime == Runtime::charliecloud);
    assert_true(image.ref.kind == ImageKind::directory);
    char real[4096];
    assert_non_null(::realpath(dir.c_str(), real));
    assert_string_equal(image.location.c_str(), real);
}

static void sif_path_that_is_a_directory_is_refused(void**) {
    TempDir t;
    t.make_dir("odd.sif");
    expect_error_containing([&] { check_image(t.path() + "/odd.sif", {}, "/", every_runtime); }, "is not a SIF file");
}

static void runtime_is_looked_up_in_runtime_path_only(void**) {
    TempDir t;
    t.make_dir("a");
    t.make_dir("b");
    t.write("a/ch-run", "#!/bin/sh\n", 0644);   // not executable: skipped
    std::string good = t.write("b/ch-run", "#!/bin/sh\n", 0755);
    assert_string_equal(find_program("ch-run", {t.path() + "/a", t.path() + "/b"}).value().c_str(), good.c_str());
    assert_false(find_program("apptainer", {t.path() + "/a", t.path() + "/b"}).has_value());
    assert_true(runtime_search_path(site_with({"runtime_path=/opt/rt:/usr/bin"}), "/job/bin") ==
                std::vector<std::string>({"/opt/rt", "/usr/bin"}));
    assert_true(runtime_search_path(config::SiteConfig{}, "/usr/bin:relative:/bin") ==
                std::vector<std::string>({"/usr/bin", "/bin"}));
}

// ---- runtime command lines

static void apptainer_exec_binds_stage_tmpdir_and_user_mounts(void**) {
    LaunchRequest r = request_for(Runtime::apptainer, "/usr/bin/apptainer", "/img/torch.sif", ImageKind::sif);
    r.binds = {{"/scratch/u", "/scratch", false}, {"/ref", "/ref", true}};
    RuntimeCommand c = build_runtime_command(r, base_task(), bare_image);
    assert_words(c.argv,
                 "/usr/bin/apptainer exec --bind /local/aihpc/n1:/local/aihpc/n1 "
                 "--bind /tmp/job42:/tmp/job42 --bind /scratch/u:/scratch --bind /ref:/ref:ro "
                 "--pwd /home/u/project /img/torch.sif python3 train.py --lr 1e-3");
    assert_true(c.env == base_task().env);  // passed through unchanged (no --cleanenv)
}

static void apptainer_and_singularity_get_nv_or_rocm_for_gpus(void**) {
    TaskView task = base_task();
    task.gpus = {GpuSet::Vendor::nvidia, {"2", "3"}};
    LaunchRequest r = request_for(Runtime::singularity, "/bin/singularity", "/i.sif", ImageKind::sif);
    std::vector<std::string> argv = build_runtime_command(r, task, bare_image).argv;
    assert_words({argv.begin(), argv.begin() + 3}, "/bin/singularity exec --nv");
    task.gpus = {GpuSet::Vendor::amd, {"0"}};
    assert_string_equal(build_runtime_command(r, task, bare_image).argv[2].c_str(), "--rocm");
    task.gpus = {};
    assert_string_equal(build_runtime_command(r, task, bare_image).argv[2].c_str(), "--bind");
}

static void charliecloud_moves_a_missing_stage_root_to_mnt_aihpc(void**) {
    LaunchRequest r = request_for(Runtime::charliecloud, "/usr/bin/ch-run", "/img/bb");
    r.binds = {{"/scratch/u", "/data", false}};
    RuntimeCommand c = build_runtime_command(r, base_task(), typical_image);
    assert_words(c.argv,
                 "/usr/bin/ch-run -b /local/aihpc/n1:/mnt/aihpc -b /scratch/u:/data --cd=/ "
                 "--set-env=TMPDIR=/tmp /img/bb -- python3 train.py --lr 1e-3");
    assert_string_equal(env_get(c.env, "AIHPC_STAGE_DIR").value().c_str(), "/mnt/aihpc/jobs/42");
    assert_string_equal(env_get(c.env, "AIHPC_DATA_CIFAR").value().c_str(), "/mnt/aihpc/jobs/42/cifar");
    assert_string_equal(env_get(c.env, "PATH").value().c_str(), "/usr/bin:/bin");
}

static void charliecloud_keeps_a_stage_root_the_image_has(void**) {
    LaunchRequest r = request_for(Runtime::charliecloud, "/usr/bin/ch-run", "/img/bb");
    r.stage_root = "/data";
    TaskView task = base_task();
    env_set(task.env, "AIHPC_STAGE_DIR", "/data/jobs/42");
    RuntimeCommand c = build_runtime_command(r, task, typical_image);
    assert_string_equal(c.argv[2].c_str(), "/data:/data");
    assert_string_equal(env_get(c.env, "AIHPC_STAGE_DIR").value().c_str(), "/data/jobs/42");
}

static void charliecloud_working_dir_follows_binds_then_the_image(void**) {
    LaunchRequest r = request_for(Runtime::charliecloud, "/usr/bin/ch-run", "/img/bb");
    TaskView task = base_task();
    task.cwd = "/local/aihpc/n1/jobs/42/cifar";
    assert_true(words(build_runtime_command(r, task, typical_image).argv).find("--cd=/mnt/aihpc/jobs/42/cifar") != std::string::npos);
    assert_true(build_runtime_command(r, task, typical_image).warnings.empty());
    // A bound working directory: the task starts at the same path inside.
    r.binds = {{"/home/u/proj", "/home", false}};
    task.cwd = "/home/u/proj/sub";
    assert_true(words(build_runtime_command(r, task, typical_image).argv).find("--cd=/home/sub ") != std::string::npos);
    r.binds = {{"/data", "/data", false}};
    task.cwd = "/data/run";
    assert_true(words(build_runtime_command(r, task, typical_image).argv).find("--cd=/data/run ") != std::string::npos);
    assert_true(build_runtime_command(r, task, typical_image).warnings.empty());
    // Not bound, and the command names a file there (python3 train.py): a warning naming
    // the working directory, never a silent --cd=/.
    r.binds.clear();
    task.argv = {"python3", "train.py", "--lr", "1e-3"};
    task.exists_on_host = [](const std::string& p) { return p == "train.py" || p == "python3"; };
    task.cwd = "/home";
    RuntimeCommand c = build_runtime_command(r, task, typical_image);
    assert_true(words(c.argv).find("--cd=/home ") != std::string::npos);
    assert_int_equal(c.warnings.size(), 1);
    assert_true(c.warnings[0].find("'train.py' is relative to the working directory /home, which is not bound") != std::string::npos);
    task.cwd = "/home/u/proj";
    c = build_runtime_command(r, task, typical_image);
    assert_true(words(c.argv).find("--cd=/ ") != std::string::npos);
    assert_true(c.warnings[0].find("--aihpc-container-bind=/home/u/proj:/home/u/proj") != std::string::npos);
    // A command that needs no file of its working directory runs as quietly as any other.
    task.argv = {"sh", "-c", "pwd"};
    assert_true(build_runtime_command(r, task, typical_image).warnings.empty());
}

static void charliecloud_refuses_a_user_bind_target_missing_from_the_image(void**) {
    LaunchRequest r = request_for(Runtime::charliecloud, "/usr/bin/ch-run", "/img/bb");
    r.binds = {{"/scratch/u", "/scratch", false}};
    expect_error_containing([&] { build_runtime_command(r, base_task(), typical_image); },
                            "/scratch does not exist in the image /img/bb");
}

static void charliecloud_refuses_read_only_binds(void**) {
    LaunchRequest r = request_for(Runtime::charliecloud, "/usr/bin/ch-run", "/img/bb");
    r.binds = {{"/scratch/u", "/data", true}};
    expect_error_containing([&] { build_runtime_command(r, base_task(), typical_image); }, "drop :ro");
}

static void charliecloud_without_spare_mount_points_says_how_to_add_them(void**) {
    LaunchRequest r = request_for(Runtime::charliecloud, "/usr/bin/ch-run", "/img/bb");
    expect_error_containing([&] { build_runtime_command(r, base_task(), bare_image); }, "mkdir -p /img/bb/mnt/aihpc");
}

static void charliecloud_batch_script_is_bound_into_a_spare_mount_point(void**) {
    LaunchRequest r = request_for(Runtime::charliecloud, "/usr/bin/ch-run", "/img/bb");
    r.batch_script = true;
    TaskView task = base_task();
    task.argv = {"/var/spool/slurmd/job00042/slurm_script"};
    RuntimeCommand c = build_runtime_command(r, task, typical_image);
    assert_words(c.argv,
                 "/usr/bin/ch-run -b /local/aihpc/n1:/mnt/aihpc -b /var/spool/slurmd/job00042:/mnt/0 --cd=/ "
                 "--set-env=TMPDIR=/tmp /img/bb -- /mnt/0/slurm_script");
}

static void other_runtimes_bind_the_batch_script_at_its_own_path(void**) {
    LaunchRequest r = request_for(Runtime::apptainer, "/usr/bin/apptainer", "/i.sif", ImageKind::sif);
    r.batch_script = true;
    TaskView task = base_task();
    task.argv = {"/var/spool/slurmd/job00042/slurm_script", "arg"};
    std::string argv = words(build_runtime_command(r, task, bare_image).argv);
    assert_true(argv.find("--bind /var/spool/slurmd/job00042:/var/spool/slurmd/job00042:ro") != std::string::npos);
    assert_true(ends_with(argv, "/i.sif /var/spool/slurmd/job00042/slurm_script arg"));
}

// ---- staged data inside: the stage root (local_root, with jobs/ and cache/) is bound

// An image with /mnt/0../mnt/9 but no /mnt/aihpc.
PathKind image_without_mnt_aihpc(const std::string& path) {
    return path == "/mnt/aihpc" ? PathKind::none : typical_image(path);
}

// An image that has the node's local_root itself.
PathKind image_with_stage_root(const std::string& path) {
    return path == stage_root ? PathKind::directory : bare_image(path);
}

static void every_runtime_binds_the_stage_root_and_names_the_staged_data_inside(void**) {
    struct Case {
        Runtime runtime;
        const char* program;
        ImageKind kind;
        PathKind (*probe)(const std::string&);
        const char* mount;       // the words that bind the stage root
        const char* stage_dir;   // AIHPC_STAGE_DIR inside
    };
    const Case cases[] = {
        {Runtime::apptainer, "/usr/bin/apptainer", ImageKind::sif, bare_image,
         "--bind /local/aihpc/n1:/local/aihpc/n1", "/local/aihpc/n1/jobs/42"},
        {Runtime::singularity, "/usr/bin/singularity", ImageKind::sif, bare_image,
         "--bind /local/aihpc/n1:/local/aihpc/n1", "/local/aihpc/n1/jobs/42"},
        {Runtime::enroot, "/usr/bin/enroot", ImageKind::squashfs, bare_image,
         "--mount /local/aihpc/n1:/local/aihpc/n1:x-create=auto,rbind", "/local/aihpc/n1/jobs/42"},
        {Runtime::podman, "/usr/bin/podman", ImageKind::registry, bare_image,
         "--volume /local/aihpc/n1:/local/aihpc/n1", "/local/aihpc/n1/jobs/42"},
        {Runtime::charliecloud, "/usr/bin/ch-run", ImageKind::directory, image_with_stage_root,
         "-b /local/aihpc/n1:/local/aihpc/n1", "/local/aihpc/n1/jobs/42"},
        {Runtime::charliecloud, "/usr/bin/ch-run", ImageKind::directory, typical_image,
         "-b /local/aihpc/n1:/mnt/aihpc", "/mnt/aihpc/jobs/42"},
        {Runtime::charliecloud, "/usr/bin/ch-run", ImageKind::directory, image_without_mnt_aihpc,
         "-b /local/aihpc/n1:/mnt/0", "/mnt/0/jobs/42"},
    };
    for (const Case& c : cases) {
        RuntimeCommand cmd = build_runtime_command(request_for(c.runtime, c.program, "/img/x", c.kind), base_task(), c.probe);
        std::string argv = " " + words(cmd.argv) + " ";
        std::string stage_dir = env_get(cmd.env, "AIHPC_STAGE_DIR").value_or("");
        std::string data = env_get(cmd.env, "AIHPC_DATA_CIFAR").value_or("");
        if (argv.find(" " + std::string(c.mount) + " ") == std::string::npos || stage_dir != c.stage_dir ||
            data != std::string(c.stage_dir) + "/cifar" || argv.find("jobs/42:") != std::string::npos) {
            print_error("%s: argv %s\n  AIHPC_STAGE_DIR=%s AIHPC_DATA_CIFAR=%s\n  expected %s and %s\n", c.program,
                        argv.c_str(), stage_dir.c_str(), data.c_str(), c.mount, c.stage_dir);
            fail();
        }
    }
}

static void cached_item_link_resolves_inside_the_bound_stage_root(void**) {
    // jobs/42/cifar -> ../../cache/1000/entries/K/data, as the node cache publishes it.
    const std::string link_target = "../../cache/1000/entries/0123abcd/data";
    for (auto probe : {typical_image, image_with_stage_root}) {
        RuntimeCommand c = build_runtime_command(request_for(Runtime::charliecloud, "/usr/bin/ch-run", "/img/bb"),
                                                 base_task(), probe);
        std::string mount = c.argv[2];  // -b SRC:DST
        std::string inside = mount.substr(mount.find(':') + 1);
        std::string data = env_get(c.env, "AIHPC_DATA_CIFAR").value();
        assert_string_equal(resolve_relative_link(data, link_target).c_str(),
                            (inside + "/cache/1000/entries/0123abcd/data").c_str());
    }
}

static void without_a_stage_root_nothing_of_local_root_is_bound(void**) {
    for (Runtime runtime : {Runtime::apptainer, Runtime::charliecloud, Runtime::enroot, Runtime::podman}) {
        LaunchRequest r = request_for(runtime, "/usr/bin/rt", "/img/x", runtime == Runtime::charliecloud
                                                                              ? ImageKind::directory
                                                                              : ImageKind::sif);
        r.stage_root.reset();
        RuntimeCommand c = build_runtime_command(r, base_task(), typical_image);
        assert_true(words(c.argv).find("/local/aihpc") == std::string::npos);
        assert_string_equal(env_get(c.env, "AIHPC_STAGE_DIR").value().c_str(), "/local/aihpc/n1/jobs/42");
    }
}

static void enroot_start_passes_each_variable_by_name_and_sets_nvidia_hooks(void**) {
    LaunchRequest r = request_for(Runtime::enroot, "/usr/bin/enroot", "/img/t.sqsh", ImageKind::squashfs);
    r.binds = {{"/ref", "/ref", true}};
    TaskView task = base_task();
    task.gpus = {GpuSet::Vendor::nvidia, {"1", "3"}};
    RuntimeCommand c = build_runtime_command(r, task, bare_image);
    assert_words(c.argv,
                 "/usr/bin/enroot start "
                 "--mount /local/aihpc/n1:/local/aihpc/n1:x-create=auto,rbind "
                 "--mount /tmp/job42:/tmp/job42:x-create=auto,rbind --mount /ref:/ref:x-create=auto,rbind,ro "
                 "--env SLURM_PROCID --env AIHPC_STAGE_DIR --env AIHPC_DATA_CIFAR --env TMPDIR "
                 "--env NVIDIA_VISIBLE_DEVICES --env NVIDIA_DRIVER_CAPABILITIES "
                 "/img/t.sqsh python3 train.py --lr 1e-3");
    assert_string_equal(env_get(c.env, "NVIDIA_VISIBLE_DEVICES").value().c_str(), "1,3");
    assert_string_equal(env_get(c.env, "NVIDIA_DRIVER_CAPABILITIES").value().c_str(), "compute,utility");
}

static void podman_run_uses_cdi_devices_and_renumbers_cuda_devices(void**) {
    LaunchRequest r = request_for(Runtime::podman, "/usr/bin/podman", "docker.io/library/alpine", ImageKind::registry);
    TaskView task = base_task();
    task.env.push_back("CUDA_VISIBLE_DEVICES=2,3");
    task.gpus = {GpuSet::Vendor::nvidia, {"2", "3"}};
    task.cwd = "/local/aihpc/n1/jobs/42";
    RuntimeCommand c = build_runtime_command(r, task, bare_image);
    assert_words(c.argv,
                 "/usr/bin/podman run --rm --interactive --network=host --userns=keep-id "
                 "--device nvidia.com/gpu=2 --device nvidia.com/gpu=3 "
                 "--volume /local/aihpc/n1:/local/aihpc/n1 --volume /tmp/job42:/tmp/job42 "
                 "--workdir=/local/aihpc/n1/jobs/42 "
                 "--env SLURM_PROCID --env AIHPC_STAGE_DIR --env AIHPC_DATA_CIFAR --env TMPDIR "
                 "--env CUDA_VISIBLE_DEVICES docker.io/library/alpine python3 train.py --lr 1e-3");
    assert_string_equal(env_get(c.env, "CUDA_VISIBLE_DEVICES").value().c_str(), "0,1");
}

static void podman_runs_a_directory_image_as_rootfs_and_passes_amd_devices(void**) {
    LaunchRequest r = request_for(Runtime::podman, "/usr/bin/podman", "/img/rootfs");
    r.binds = {{"/ref", "/ref", true}};
    TaskView task = base_task();
    task.gpus = {GpuSet::Vendor::amd, {"0"}};
    std::string argv = words(build_runtime_command(r, task, bare_image).argv);
    assert_true(argv.find("--device /dev/kfd --device /dev/dri") != std::string::npos);
    assert_true(argv.find("--volume /ref:/ref:ro") != std::string::npos);
    assert_true(argv.find("--rootfs /img/rootfs python3") != std::string::npos);
    assert_true(argv.find("--workdir") == std::string::npos);  // the cwd is not in the container
    assert_true(argv.find("--env PATH") == std::string::npos);
    assert_true(argv.find("--env HOME") == std::string::npos);
}

static void enroot_starts_in_a_bound_working_dir_through_the_image_shell(void**) {
    LaunchRequest r = request_for(Runtime::enroot, "/usr/bin/enroot", "/img/t.sqsh", ImageKind::squashfs);
    r.binds = {{"/home/u/project", "/work", false}};
    TaskView task = base_task();
    task.argv = {"python3", "train.py", "--name", "a b"};
    RuntimeCommand c = build_runtime_command(r, task, bare_image);
    std::vector<std::string> tail(c.argv.end() - 10, c.argv.end());
    std::vector<std::string> expected = {"/img/t.sqsh", "/bin/sh", "-c", "cd \"$1\" && shift && exec \"$@\"",
                                         "aihpc-cd", "/work", "python3", "train.py", "--name", "a b"};
    assert_true(tail == expected);  // every word kept as it was, none joined or split
    assert_true(c.warnings.empty());
}

static void enroot_and_podman_warn_of_an_unbound_working_dir_the_command_needs(void**) {
    for (Runtime runtime : {Runtime::enroot, Runtime::podman}) {
        LaunchRequest r = request_for(runtime, "/usr/bin/rt", "/img/t.sqsh", ImageKind::squashfs);
        TaskView task = base_task();
        task.exists_on_host = [](const std::string& p) { return p == "train.py"; };
        RuntimeCommand c = build_runtime_command(r, task, bare_image);
        assert_int_equal(c.warnings.size(), 1);
        assert_true(c.warnings[0].find("'train.py' is relative to the working directory /home/u/project, which is not bound") !=
                    std::string::npos);
        assert_true(c.warnings[0].find("--aihpc-container-bind=/home/u/project:/home/u/project") != std::string::npos);
        assert_true(words(c.argv).find("aihpc-cd") == std::string::npos);
        assert_true(words(c.argv).find("--workdir") == std::string::npos);
        task.argv = {"sh", "-c", "pwd"};
        assert_true(build_runtime_command(r, task, bare_image).warnings.empty());
    }
    // apptainer mounts the working directory itself: nothing to say.
    TaskView task = base_task();
    task.exists_on_host = [](const std::string& p) { return p == "train.py"; };
    assert_true(build_runtime_command(request_for(Runtime::apptainer, "/a", "/i.sif", ImageKind::sif), task, bare_image)
                    .warnings.empty());
}

static void charliecloud_shows_a_metrics_file_below_the_host_tmpdir_at_its_tmp(void**) {
    LaunchRequest r = request_for(Runtime::charliecloud, "/usr/bin/ch-run", "/img/bb");
    r.stage_root.reset();
    TaskView task = base_task();
    task.env.push_back("AIHPC_METRICS_FILE=/tmp/job42/aihpc-sweep-metrics.Ab12/metrics");
    RuntimeCommand c = build_runtime_command(r, task, typical_image);
    assert_string_equal(env_get(c.env, "AIHPC_METRICS_FILE").value().c_str(), "/tmp/aihpc-sweep-metrics.Ab12/metrics");
    assert_true(words(c.argv).find("-b ") == std::string::npos);  // ch-run's own /tmp shows it
    // Without TMPDIR, ch-run shows the host's /tmp.
    env_unset(task.env, "TMPDIR");
    env_set(task.env, "AIHPC_METRICS_FILE", "/tmp/aihpc-sweep-metrics.Cd34/metrics");
    c = build_runtime_command(r, task, typical_image);
    assert_string_equal(env_get(c.env, "AIHPC_METRICS_FILE").value().c_str(), "/tmp/aihpc-sweep-metrics.Cd34/metrics");
    // Elsewhere, its directory goes to a spare mount point.
    env_set(task.env, "AIHPC_METRICS_FILE", "/scratch/sweep/results/.3.metrics");
    c = build_runtime_command(r, task, typical_image);
    assert_true(words(c.argv).find("-b /scratch/sweep/results:/mnt/0 ") != std::string::npos);
    assert_string_equal(env_get(c.env, "AIHPC_METRICS_FILE").value().c_str(), "/mnt/0/.3.metrics");
}

static void other_runtimes_bind_the_metrics_dir_unless_a_mount_shows_it(void**) {
    TaskView task = base_task();
    task.env.push_back("AIHPC_METRICS_FILE=/var/tmp/aihpc-sweep-metrics.Ab12/metrics");
    std::string argv = words(build_runtime_command(request_for(Runtime::podman, "/usr/bin/podman", "alpine", ImageKind::registry),
                                                   task, bare_image).argv);
    assert_true(argv.find("--volume /var/tmp/aihpc-sweep-metrics.Ab12:/var/tmp/aihpc-sweep-metrics.Ab12 ") != std::string::npos);
    argv = words(build_runtime_command(request_for(Runtime::enroot, "/usr/bin/enroot", "/i.sqsh", ImageKind::squashfs), task,
                                       bare_image).argv);
    assert_true(argv.find("--mount /var/tmp/aihpc-sweep-metrics.Ab12:/var/tmp/aihpc-sweep-metrics.Ab12:x-create=auto,rbind ") !=
                std::string::npos);
    // Below the task's TMPDIR, which is bound already: no second mount.
    env_set(task.env, "AIHPC_METRICS_FILE", "/tmp/job42/aihpc-sweep-metrics.Ab12/metrics");
    RuntimeCommand c = build_runtime_command(request_for(Runtime::apptainer, "/a", "/i.sif", ImageKind::sif), task, bare_image);
    assert_true(words(c.argv).find("aihpc-sweep-metrics") == std::string::npos);
    assert_string_equal(env_get(c.env, "AIHPC_METRICS_FILE").value().c_str(), "/tmp/job42/aihpc-sweep-metrics.Ab12/metrics");
}

static void task_without_a_command_is_refused(void**) {
    TaskView task = base_task();
    task.argv.clear();
    expect_error_containing(
        [&] { build_runtime_command(request_for(Runtime::podman, "/p", "x", ImageKind::registry), task, bare_image); },
        "no command");
}

// ---- GPUs

static void gpus_come_from_slurm_physical_indices(void**) {
    GpuSet g = detect_gpus({"CUDA_VISIBLE_DEVICES=0,1", "SLURM_JOB_GPUS=4,5", "SLURM_STEP_GPUS=6,7"});
    assert_true(g.vendor == GpuSet::Vendor::nvidia);
    assert_true(g.devices == std::vector<std::string>({"6", "7"}));
    g = detect_gpus({"CUDA_VISIBLE_DEVICES=0,1", "SLURM_JOB_GPUS=4,5"});
    assert_true(g.devices == std::vector<std::string>({"4", "5"}));
    g = detect_gpus({"CUDA_VISIBLE_DEVICES=GPU-aa,GPU-bb"});
    assert_true(g.devices == std::vector<std::string>({"GPU-aa", "GPU-bb"}));
    g = detect_gpus({"ROCR_VISIBLE_DEVICES=1"});
    assert_true(g.vendor == GpuSet::Vendor::amd);
}

static void no_gpus_without_visible_devices(void**) {
    assert_true(detect_gpus({"PATH=/bin"}).vendor == GpuSet::Vendor::none);
    assert_true(detect_gpus({"CUDA_VISIBLE_DEVICES="}).vendor == GpuSet::Vendor::none);
    assert_true(detect_gpus({"CUDA_VISIBLE_DEVICES=NoDevFiles"}).vendor == GpuSet::Vendor::none);
}

// ---- the request handed to aihpc-launch

static void launch_request_round_trips(void**) {
    LaunchRequest r = request_for(Runtime::enroot, "/usr/bin/enroot", "/img/a b\"c.sqsh", ImageKind::squashfs);
    r.binds = {{"/x", "/y", true}, {"/p,q", "/r", false}};
    r.batch_script = true;
    r.argv0 = "/spool/job1/slurm_script";
    r.stage_root = "/local/aihpc/n1";
    r.verbose = true;
    LaunchRequest back = decode_request(encode_request(r));
    assert_true(back.runtime == Runtime::enroot);
    assert_string_equal(back.program.c_str(), "/usr/bin/enroot");
    assert_string_equal(back.image.c_str(), "/img/a b\"c.sqsh");
    assert_true(back.kind == ImageKind::squashfs);
    assert_int_equal(back.binds.size(), 2);
    assert_string_equal(back.binds[1].src.c_str(), "/p,q");
    assert_true(back.binds[0].read_only && !back.binds[1].read_only);
    assert_true(back.batch_script && back.verbose);
    assert_string_equal(back.argv0.value().c_str(), "/spool/job1/slurm_script");
    assert_string_equal(back.stage_root.value().c_str(), "/local/aihpc/n1");
    LaunchRequest plain = request_for(Runtime::podman, "/p", "i");
    plain.stage_root.reset();
    LaunchRequest plain_back = decode_request(encode_request(plain));
    assert_false(plain_back.argv0.has_value());
    assert_false(plain_back.stage_root.has_value());
}

static void launch_request_that_is_damaged_is_refused(void**) {
    expect_error_containing([] { decode_request("not json"); }, "not a JSON object");
    expect_error_containing([] { decode_request("{\"runtime\":\"docker\"}"); }, "unknown runtime 'docker'");
    expect_error_containing([] { decode_request("{\"runtime\":\"podman\",\"program\":\"podman\",\"image\":\"i\",\"kind\":\"registry\"}"); },
                            "not an absolute path");
    expect_error_containing([] { decode_request("{\"runtime\":\"podman\",\"image\":\"i\"}"); }, "lacks 'program'");
    expect_error_containing(
        [] {
            decode_request("{\"runtime\":\"podman\",\"program\":\"/p\",\"image\":\"i\",\"kind\":\"registry\","
                           "\"stage_root\":\"aihpc\"}");
        },
        "stage_root 'aihpc' is not an absolute path");
}

// ---- where the launcher is, and when Slurm's argv may be rewritten

static void launcher_is_found_beside_the_build_tree_then_installed(void**) {
    assert_true(launcher_candidates("/src/aihpc/plugin/.libs/aihpc.so", "/usr/libexec/aihpc/aihpc-launch") ==
                std::vector<std::string>({"/src/aihpc/plugin/.libs/../../tools/aihpc-launch",
                                          "/usr/libexec/aihpc/aihpc-launch"}));
    assert_true(launcher_candidates("/usr/lib/x86_64-linux-gnu/slurm-wlm/aihpc.so", "/usr/libexec/aihpc/aihpc-launch") ==
                std::vector<std::string>({"/usr/libexec/aihpc/aihpc-launch"}));
    assert_true(ends_with(installed_launcher_path(), "/aihpc-launch"));
}

static void argv_rewrite_is_used_only_on_slurm_versions_whose_task_argv_is_the_step_argv(void**) {
    struct Case { unsigned major, minor; bool ok; };
    const Case cases[] = {{20, 2, false}, {20, 11, true}, {21, 8, true}, {22, 5, true},
                          {23, 2, true},  {23, 11, false}, {24, 5, false}};
    for (const Case& c : cases) assert_int_equal(task_argv_is_step_argv(c.major, c.minor), c.ok);
}

// ---- digests and the look inside images

static void file_digest_is_xxh3_of_the_bytes(void**) {
    TempDir t;
    assert_string_equal(file_digest(t.write("empty.sif", "")).c_str(), "xxh3:2d06800538d394c2");
    assert_string_not_equal(file_digest(t.write("a.sif", "a")).c_str(), file_digest(t.write("b.sif", "b")).c_str());
}

static void directory_digest_is_stable_and_follows_the_manifest(void**) {
    TempDir t;
    t.make_dir("img/bin");
    t.write("img/bin/sh", "#!", 0755);
    t.write("img/etc", "x");
    std::string first = directory_digest(t.path() + "/img");
    assert_true(starts_with(first, "xxh3:") && first.size() == 21);
    assert_string_equal(directory_digest(t.path() + "/img").c_str(), first.c_str());
    ::chmod((t.path() + "/img/bin/sh").c_str(), 0700);
    std::string after_chmod = directory_digest(t.path() + "/img");
    assert_string_not_equal(after_chmod.c_str(), first.c_str());
    t.write("img/etc", "xy");
    assert_string_not_equal(directory_digest(t.path() + "/img").c_str(), after_chmod.c_str());
}

static void path_kind_in_image_resolves_links_inside_the_image(void**) {
    TempDir t;
    t.make_dir("img/mnt/aihpc");
    t.make_dir("img/usr/bin");
    t.write("img/usr/bin/sh", "");
    assert_int_equal(::symlink("/usr/bin", (t.path() + "/img/bin").c_str()), 0);
    std::string root = t.path() + "/img";
    assert_true(path_kind_in_image(root, "/mnt/aihpc") == PathKind::directory);
    assert_true(path_kind_in_image(root, "/bin/sh") == PathKind::file);   // /bin -> /usr/bin of the image
    assert_true(path_kind_in_image(root, "/mnt/0") == PathKind::none);
    assert_true(path_kind_in_image(root, "/") == PathKind::directory);
}


// ---- the node's digest cache

namespace {

// A cache in the scratch dir whose hasher counts the times it reads an image.
struct CountingCache {
    TempDir& t;
    int reads = 0;
    DigestCacheSettings settings;
    explicit CountingCache(TempDir& dir) : t(dir) {
        settings.dir = t.path() + "/digests";
        settings.settle_ns = 0;
        settings.hasher = [this](int fd, const std::string& shown) {
            ++reads;
            return hash_open_file(fd, shown);
        };
    }
    CachedDigest lookup(const std::string& path) { return cached_file_digest(path, settings); }
    std::string entry_path(const std::string& image) const {
        char real[PATH_MAX];
        if (!::realpath(image.c_str(), real)) fail_msg("no real path for %s", image.c_str());
        return settings.dir + "/" + digest_entry_name(real);
    }
};

mode_t mode_of(const std::string& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) fail_msg("cannot stat %s", path.c_str());
    return st.st_mode & 07777;
}

void set_mtime(const std::string& path, time_t seconds) {
    struct timespec times[2] = {{seconds, 0}, {seconds, 0}};
    if (::utimensat(AT_FDCWD, path.c_str(), times, 0) != 0) fail_msg("cannot set the mtime of %s", path.c_str());
}

ImageFileIdentity sample_identity() {
    ImageFileIdentity id;
    id.realpath = "/images/a b\nc.sif";
    id.device = 2049;
    id.inode = 131;
    id.size = 4096;
    id.mtime_ns = 1700000000123456789;
    id.ctime_ns = 1700000001000000007;
    return id;
}

}  // namespace

static void digest_entry_is_served_only_for_the_identity_it_was_written_for(void**) {
    const ImageFileIdentity id = sample_identity();
    const std::string entry = format_digest_entry(id, "xxh3:0123456789abcdef");
    auto served = digest_from_entry(entry, id);
    assert_true(served.has_value());
    assert_string_equal(served->c_str(), "xxh3:0123456789abcdef");
    struct Change {
        const char* field;
        void (*apply)(ImageFileIdentity&);
    };
    const Change changes[] = {
        {"realpath", [](ImageFileIdentity& i) { i.realpath += "x"; }},
        {"device", [](ImageFileIdentity& i) { ++i.device; }},
        {"inode", [](ImageFileIdentity& i) { ++i.inode; }},
        {"size", [](ImageFileIdentity& i) { ++i.size; }},
        {"mtime", [](ImageFileIdentity& i) { ++i.mtime_ns; }},
        // Bytes rewritten and the mtime set back (cp -p, rsync -t): only ctime tells.
        {"ctime", [](ImageFileIdentity& i) { ++i.ctime_ns; }},
    };
    for (const Change& c : changes) {
        ImageFileIdentity other = id;
        c.apply(other);
        if (digest_from_entry(entry, other)) fail_msg("an entry was served after its image's %s changed", c.field);
    }
}

static void damaged_digest_entry_text_is_not_served(void**) {
    const ImageFileIdentity id = sample_identity();
    const std::string entry = format_digest_entry(id, "xxh3:0123456789abcdef");
    const std::string damaged[] = {
        "",
        "garbage",
        entry.substr(0, entry.size() - 1),                       // torn before the last newline
        entry.substr(0, entry.size() / 2),                       // torn in the middle
        "x" + entry,                                             // another header
        format_digest_entry(id, "xxh3:0123"),                    // short digest
        format_digest_entry(id, "xxh3:0123456789ABCDEF"),        // not lower-case hex
        format_digest_entry(id, "md5:0123456789abcdef01"),       // another hash
        entry + "digest=xxh3:fedcba9876543210\n",                // a field appended
    };
    for (const std::string& text : damaged)
        if (digest_from_entry(text, id)) fail_msg("a damaged entry was served:\n%s", text.c_str());
}

static void digest_entry_names_differ_per_real_path(void**) {
    std::string a = digest_entry_name("/images/a.sif");
    assert_int_equal(a.size(), 32);
    assert_string_equal(digest_entry_name("/images/a.sif").c_str(), a.c_str());
    assert_string_not_equal(digest_entry_name("/images/b.sif").c_str(), a.c_str());
}

static void first_lookup_hashes_the_image_and_stores_its_digest(void**) {
    TempDir t;
    CountingCache cache(t);
    std::string image = t.write("img.sif", "image bytes");
    CachedDigest d = cache.lookup(image);
    assert_string_equal(d.digest.c_str(), file_digest(image).c_str());
    assert_false(d.from_cache);
    assert_true(d.stored);
    assert_string_equal(d.cache_problem.c_str(), "");
    assert_int_equal(cache.reads, 1);
    assert_int_equal(mode_of(cache.settings.dir), 0700);
    assert_int_equal(mode_of(cache.entry_path(image)), 0600);
    assert_true(file_text(cache.entry_path(image)).find("digest=" + d.digest + "\n") != std::string::npos);
}

static void unchanged_image_is_served_from_the_cache_without_reading_it(void**) {
    TempDir t;
    CountingCache cache(t);
    std::string image = t.write("img.sif", "image bytes");
    std::string first = cache.lookup(image).digest;
    CachedDigest second = cache.lookup(image);
    assert_true(second.from_cache);
    assert_false(second.stored);
    assert_string_equal(second.digest.c_str(), first.c_str());
    assert_int_equal(cache.reads, 1);
}

static void image_reached_by_another_path_shares_its_entry(void**) {
    TempDir t;
    CountingCache cache(t);
    std::string image = t.write("img.sif", "image bytes");
    assert_int_equal(::symlink(image.c_str(), (t.path() + "/link.sif").c_str()), 0);
    cache.lookup(image);
    assert_true(cache.lookup(t.path() + "/link.sif").from_cache);
    assert_int_equal(cache.reads, 1);
}

static void image_of_the_same_size_with_a_new_mtime_is_hashed_again(void**) {
    TempDir t;
    CountingCache cache(t);
    std::string image = t.write("img.sif", "aaaa");
    set_mtime(image, 1600000000);
    std::string before = cache.lookup(image).digest;
    t.write("img.sif", "bbbb");  // in place: same inode, same size
    set_mtime(image, 1600000100);
    CachedDigest after = cache.lookup(image);
    assert_false(after.from_cache);
    assert_true(after.stored);
    assert_string_equal(after.digest.c_str(), file_digest(image).c_str());
    assert_string_not_equal(after.digest.c_str(), before.c_str());
    assert_int_equal(cache.reads, 2);
    assert_true(cache.lookup(image).from_cache);
}

static void image_replaced_by_a_rename_is_hashed_again(void**) {
    TempDir t;
    CountingCache cache(t);
    std::string image = t.write("img.sif", "old image");
    std::string before = cache.lookup(image).digest;
    std::string fresh = t.write("img.sif.new", "new image");
    assert_int_equal(::rename(fresh.c_str(), image.c_str()), 0);
    CachedDigest after = cache.lookup(image);
    assert_false(after.from_cache);
    assert_string_equal(after.digest.c_str(), file_digest(image).c_str());
    assert_string_not_equal(after.digest.c_str(), before.c_str());
    assert_int_equal(cache.reads, 2);
}

static void corrupt_entry_is_ignored_and_rewritten(void**) {
    TempDir t;
    CountingCache cache(t);
    std::string image = t.write("img.sif", "image bytes");
    std::string digest = cache.lookup(image).digest;
    std::string entry = cache.entry_path(image);
    std::string text = file_text(entry);
    std::string forged = text.substr(0, text.rfind("digest=")) + "digest=xxh3:00000000000000\n";
    t.write(entry.substr(t.path().size() + 1), forged, 0600);
    CachedDigest again = cache.lookup(image);
    assert_false(again.from_cache);
    assert_true(again.stored);
    assert_string_equal(again.digest.c_str(), digest.c_str());
    assert_string_equal(file_text(entry).c_str(), text.c_str());
    assert_int_equal(cache.reads, 2);
}

static void image_changed_within_the_settle_time_is_hashed_but_not_stored(void**) {
    TempDir t;
    CountingCache cache(t);
    cache.settings.settle_ns = 3600LL * 1'000'000'000;  // the image was written just now
    std::string image = t.write("img.sif", "image bytes");
    CachedDigest d = cache.lookup(image);
    assert_string_equal(d.digest.c_str(), file_digest(image).c_str());
    assert_false(d.stored);
    assert_true(d.cache_problem.find("changed too recently") != std::string::npos);
    assert_int_equal(::access(cache.entry_path(image).c_str(), F_OK), -1);
}

static void cache_dir_others_can_reach_is_not_used(void**) {
    TempDir t;
    CountingCache cache(t);
    std::string image = t.write("img.sif", "image bytes");
    ::mkdir(cache.settings.dir.c_str(), 0700);
    ::chmod(cache.settings.dir.c_str(), 0755);
    CachedDigest d = cache.lookup(image);
    assert_string_equal(d.digest.c_str(), file_digest(image).c_str());
    assert_false(d.stored);
    assert_true(d.cache_problem.find("not private") != std::string::npos);
    assert_false(cache.lookup(image).from_cache);
    assert_int_equal(cache.reads, 2);
}

static void without_a_cache_dir_the_digest_is_computed(void**) {
    TempDir t;
    CountingCache cache(t);
    cache.settings.dir.clear();
    std::string image = t.write("img.sif", "image bytes");
    CachedDigest d = cache.lookup(image);
    assert_string_equal(d.digest.c_str(), file_digest(image).c_str());
    assert_false(d.from_cache || d.stored);
    assert_true(d.cache_problem.find("no digest cache") != std::string::npos);
}

static void cached_image_the_user_can_no_longer_read_is_refused(void**) {
    if (::geteuid() == 0) skip();  // root reads any file: the permission check needs a user
    TempDir t;
    CountingCache cache(t);
    std::string image = t.write("img.sif", "image bytes");
    cache.lookup(image);
    ::chmod(image.c_str(), 0);
    expect_error_containing([&] { cache.lookup(image); }, "cannot read image");
    assert_int_equal(cache.reads, 1);
}

static void the_digest_helpers_answer_reads_back_with_the_image_it_resolved(void**) {
    container::ResolvedImage image;
    image.ref = container::classify_image("/images/py\nthon", true);
    image.runtime = container::Runtime::charliecloud;
    image.location = "/real/images/py\nthon";
    container::ImageDigest d{"xxh3:0123", "cached"};
    container::DigestResult back =
        container::parse_digest_result("/images/py\nthon", container::format_digest_result(image, d));
    assert_string_equal(back.digest.c_str(), "xxh3:0123");
    assert_string_equal(back.provenance.c_str(), "cached");
    assert_true(back.image.runtime == container::Runtime::charliecloud);
    assert_true(back.image.ref.kind == container::ImageKind::directory);
    assert_string_equal(back.image.location.c_str(), "/real/images/py\nthon");
    expect_error_containing([] { container::parse_digest_result("x.sif", "xxh3:1\nfrom\n"); }, "another shape");
    expect_error_containing([] { container::parse_digest_result("x.sif", "xxh3:1\nfrom\nnosuch\n0\n/x.sif"); },
                            "another shape");
}

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_digest_helpers_answer_reads_back_with_the_image_it_resolved),
        cmocka_unit_test(image_kind_follows_suffix_directory_and_scheme),
        cmocka_unit_test(runtime_prefix_is_recorded_as_explicit),
        cmocka_unit_test(image_of_unknown_kind_is_refused_with_the_choices),
        cmocka_unit_test(sif_prefers_apptainer_then_whichever_is_installed),
        cmocka_unit_test(container_default_decides_between_candidates),
        cmocka_unit_test(runtime_outside_container_runtimes_is_refused),
        cmocka_unit_test(registry_reference_needs_registry_yes),
        cmocka_unit_test(registry_reference_goes_to_the_default_runtime),
        cmocka_unit_test(registry_reference_with_a_runtime_that_cannot_pull_is_refused),
        cmocka_unit_test(path_is_under_respects_component_boundaries),
        cmocka_unit_test(relative_image_is_taken_from_the_submit_dir),
        cmocka_unit_test(nonexistent_image_is_refused),
        cmocka_unit_test(image_outside_image_allow_is_refused),
        cmocka_unit_test(image_allow_is_checked_on_the_real_path),
        cmocka_unit_test(image_inside_image_allow_resolves_to_its_real_path),
        cmocka_unit_test(sif_path_that_is_a_directory_is_refused),
        cmocka_unit_test(runtime_is_looked_up_in_runtime_path_only),
        cmocka_unit_test(apptainer_exec_binds_stage_tmpdir_and_user_mounts),
        cmocka_unit_test(apptainer_and_singularity_get_nv_or_rocm_for_gpus),
        cmocka_unit_test(charliecloud_moves_a_missing_stage_root_to_mnt_aihpc),
        cmocka_unit_test(charliecloud_keeps_a_stage_root_the_image_has),
        cmocka_unit_test(charliecloud_working_dir_follows_binds_then_the_image),
        cmocka_unit_test(charliecloud_refuses_a_user_bind_target_missing_from_the_image),
        cmocka_unit_test(charliecloud_refuses_read_only_binds),
        cmocka_unit_test(charliecloud_without_spare_mount_points_says_how_to_add_them),
        cmocka_unit_test(charliecloud_batch_script_is_bound_into_a_spare_mount_point),
        cmocka_unit_test(other_runtimes_bind_the_batch_script_at_its_own_path),
        cmocka_unit_test(every_runtime_binds_the_stage_root_and_names_the_staged_data_inside),
        cmocka_unit_test(cached_item_link_resolves_inside_the_bound_stage_root),
        cmocka_unit_test(without_a_stage_root_nothing_of_local_root_is_bound),
        cmocka_unit_test(enroot_start_passes_each_variable_by_name_and_sets_nvidia_hooks),
        cmocka_unit_test(podman_run_uses_cdi_devices_and_renumbers_cuda_devices),
        cmocka_unit_test(podman_runs_a_directory_image_as_rootfs_and_passes_amd_devices),
        cmocka_unit_test(enroot_starts_in_a_bound_working_dir_through_the_image_shell),
        cmocka_unit_test(enroot_and_podman_warn_of_an_unbound_working_dir_the_command_needs),
        cmocka_unit_test(charliecloud_shows_a_metrics_file_below_the_host_tmpdir_at_its_tmp),
        cmocka_unit_test(other_runtimes_bind_the_metrics_dir_unless_a_mount_shows_it),
        cmocka_unit_test(task_without_a_command_is_refused),
        cmocka_unit_test(gpus_come_from_slurm_physical_indices),
        cmocka_unit_test(no_gpus_without_visible_devices),
        cmocka_unit_test(launch_request_round_trips),
        cmocka_unit_test(launch_request_that_is_damaged_is_refused),
        cmocka_unit_test(launcher_is_found_beside_the_build_tree_then_installed),
        cmocka_unit_test(argv_rewrite_is_used_only_on_slurm_versions_whose_task_argv_is_the_step_argv),
        cmocka_unit_test(file_digest_is_xxh3_of_the_bytes),
        cmocka_unit_test(directory_digest_is_stable_and_follows_the_manifest),
        cmocka_unit_test(path_kind_in_image_resolves_links_inside_the_image),
        cmocka_unit_test(digest_entry_is_served_only_for_the_identity_it_was_written_for),
        cmocka_unit_test(damaged_digest_entry_text_is_not_served),
        cmocka_unit_test(digest_entry_names_differ_per_real_path),
        cmocka_unit_test(first_lookup_hashes_the_image_and_stores_its_digest),
        cmocka_unit_test(unchanged_image_is_served_from_the_cache_without_reading_it),
        cmocka_unit_test(image_reached_by_another_path_shares_its_entry),
        cmocka_unit_test(image_of_the_same_size_with_a_new_mtime_is_hashed_again),
        cmocka_unit_test(image_replaced_by_a_rename_is_hashed_again),
        cmocka_unit_test(corrupt_entry_is_ignored_and_rewritten),
        cmocka_unit_test(image_changed_within_the_settle_time_is_hashed_but_not_stored),
        cmocka_unit_test(cache_dir_others_can_reach_is_not_used),
        cmocka_unit_test(without_a_cache_dir_the_digest_is_computed),
        cmocka_unit_test(cached_image_the_user_can_no_longer_read_is_refused),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
