// lib/config: every option and every site key, good values and each kind of bad value.
#include <csignal>

#include "cmocka_cxx.hpp"
#include "config/site_config.hpp"
#include "config/user_options.hpp"

using namespace aihpc::config;

static UserOptions parse1(const std::string& name, const std::string& value) {
    return parse_user_options(RawOptions{{name, value}});
}

// ---- --aihpc-stage

static void stage_name_defaults_to_base_name_without_archive_suffix(void**) {
    auto items = parse_stage("/data/cifar.tar.zst,/data/imagenet/,/x/y.tar.gz,/x/z.tar,/x/plain.txt");
    assert_int_equal(items.size(), 5);
    assert_string_equal(items[0].name.c_str(), "cifar");
    assert_string_equal(items[1].name.c_str(), "imagenet");
    assert_string_equal(items[2].name.c_str(), "y");
    assert_string_equal(items[3].name.c_str(), "z");
    assert_string_equal(items[4].name.c_str(), "plain.txt");
    assert_string_equal(items[0].src.c_str(), "/data/cifar.tar.zst");
}

static void stage_explicit_name_follows_last_colon(void**) {
    auto items = parse_stage("/data/set:train,rel/dir:val");
    assert_string_equal(items[0].src.c_str(), "/data/set");
    assert_string_equal(items[0].name.c_str(), "train");
    assert_string_equal(items[1].src.c_str(), "rel/dir");
    assert_string_equal(items[1].name.c_str(), "val");
}

static void stage_name_drops_every_archive_suffix_staging_extracts(void**) {
    struct Case {
        const char* src;
        const char* name;
    } cases[] = {
        {"/d/a.tar", "a"},       {"/d/a.tar.gz", "a"},  {"/d/a.tgz", "a"},     {"/d/a.tar.zst", "a"},
        {"/d/a.tzst", "a"},      {"/d/a.zst", "a.zst"}, {"/d/a.gz", "a.gz"},   {"/d/.tzst", ".tzst"},
        {"/d/a.tar.bz2", "a.tar.bz2"},
    };
    for (const Case& c : cases) assert_string_equal(default_stage_name(c.src).c_str(), c.name);
}

static void stage_name_must_be_one_component(void**) {
    expect_error_containing([] { parse_stage("a:../x"); }, "one path component");
    expect_error_containing([] { parse_stage("a:x/y"); }, "one path component");
    expect_error_containing([] { parse_stage("a:.."); }, "one path component");
    expect_error_containing([] { parse_stage("a:"); }, "NAME is empty");
    expect_error_containing([] { parse_stage("/"); }, "NAME");
}

static void stage_rejects_empty_and_duplicate_entries(void**) {
    expect_error_containing([] { parse_stage(""); }, "--aihpc-stage: needs");
    expect_error_containing([] { parse_stage("/a,,/b"); }, "empty entry");
    expect_error_containing([] { parse_stage("/a/x,/b/x"); }, "used twice");
    expect_error_containing([] { parse_stage(":name"); }, "SRC is empty");
}

// ---- --aihpc-stage-out

static void stage_out_parses_local_and_dest(void**) {
    auto items = parse_stage_out("ckpt:/scratch/%j/%n/ckpt,logs/a:/home/u/logs%%");
    assert_int_equal(items.size(), 2);
    assert_string_equal(items[0].local.c_str(), "ckpt");
    assert_string_equal(items[0].dest.c_str(), "/scratch/%j/%n/ckpt");
    assert_string_equal(items[1].local.c_str(), "logs/a");
}

static void stage_out_rejects_escapes_and_bad_local(void**) {
    expect_error_containing([] { parse_stage_out("ckpt"); }, "not LOCAL:DEST");
    expect_error_containing([] { parse_stage_out("../x:/d"); }, "no '..'");
    expect_error_containing([] { parse_stage_out("/abs:/d"); }, "relative");
    expect_error_containing([] { parse_stage_out("x:/d/%u"); }, "%-escape");
    expect_error_containing([] { parse_stage_out("x:"); }, "DEST is empty");
}

static void stage_out_on_several_nodes_needs_node_escape(void**) {
    UserOptions options = parse1("aihpc-stage-out", "out:/scratch/%j");
    check_job_shape(options, 1);
    expect_error_containing([&] { check_job_shape(options, 2); }, "add %n");
    options = parse1("aihpc-stage-out", "out:/scratch/%j/%n");
    check_job_shape(options, 4);
    // "%%n" is a literal "%n": every node would write the same DEST.
    options = parse1("aihpc-stage-out", "out:/scratch/%%n");
    expect_error_containing([&] { check_job_shape(options, 2); }, "add %n");
    options = parse1("aihpc-stage-out", "out:/scratch/%%%n");
    check_job_shape(options, 2);
    assert_false(dest_names_node("/a/%%n%%"));
    assert_true(dest_names_node("/a/%%%n"));
}

static void stage_names_and_paths_are_bounded(void**) {
    std::string long_name(70000, 'a');
    expect_error_containing([&] { parse_stage("/data:" + long_name); }, "at most 255");
    expect_error_containing([&] { parse_stage("/" + long_name); }, "fewer than 4096");
    // Names the node derives from it (".NAME.aihpc-link.PID.N") must fit NAME_MAX too.
    expect_error_containing([&] { parse_stage("/data:" + std::string(255, 'b')); }, "a stage NAME has at most 224 bytes");
    expect_error_containing([&] { parse_stage("/data:" + std::string(225, 'b')); }, "225 bytes long");
    expect_error_containing([&] { parse_stage("/data/" + std::string(240, 'c') + ".tar"); }, "give a shorter :NAME");
    assert_int_equal(parse_stage("/data:" + std::string(224, 'b'))[0].name.size(), 224);
    std::string longest = "." + std::string(224, 'b') + ".aihpc-link.4194304.4294967295";
    assert_true(longest.size() <= 255);
}

// ---- --aihpc-stage-mode, --aihpc-stage-verify, --aihpc-verbose

static void stage_mode_accepts_cache_user_and_private(void**) {
    assert_int_equal(static_cast<int>(parse1("aihpc-stage-mode", "cache").stage_mode), static_cast<int>(StageMode::cache));
    assert_int_equal(static_cast<int>(parse1("aihpc-stage-mode", "user").stage_mode), static_cast<int>(StageMode::user));
    assert_int_equal(static_cast<int>(parse1("aihpc-stage-mode", "private").stage_mode),
                     static_cast<int>(StageMode::private_));
    expect_error_containing([] { parse1("aihpc-stage-mode", "shared"); }, "--aihpc-stage-mode: unknown mode 'shared'");
}

static void flags_take_no_value(void**) {
    assert_true(parse1("aihpc-stage-verify", "").stage_verify);
    assert_true(parse1("aihpc-verbose", "").verbose);
    assert_true(parse1("aihpc-verbose", "1").verbose);
    assert_false(parse1("aihpc-verbose", "0").verbose);
    expect_error_containing([] { parse1("aihpc-verbose", "loud"); }, "--aihpc-verbose: takes no value");
}

static void gravity_is_prefer_off_or_the_sites_choice(void**) {
    assert_false(parse_user_options({}).gravity.has_value());
    assert_true(*parse1("aihpc-gravity", "").gravity);
    assert_true(*parse1("aihpc-gravity", "prefer").gravity);
    assert_false(*parse1("aihpc-gravity", "off").gravity);
    expect_error_containing([] { parse1("aihpc-gravity", "require"); }, "--aihpc-gravity: unknown value 'require'");
}

// ---- containers

static void container_options_parse(void**) {
    RawOptions raw{{"aihpc-container", "/img/a.sif"},
                   {"aihpc-container-scope", "steps"},
                   {"aihpc-container-bind", "/scratch:/scratch,/data:/mnt/data:ro"}};
    UserOptions options = parse_user_options(raw);
    assert_string_equal(options.container.c_str(), "/img/a.sif");
    assert_int_equal(static_cast<int>(options.container_scope), static_cast<int>(ContainerScope::steps));
    assert_int_equal(options.container_binds.size(), 2);
    assert_false(options.container_binds[0].read_only);
    assert_true(options.container_binds[1].read_only);
    assert_string_equal(options.container_binds[1].dst.c_str(), "/mnt/data");
}

static void container_bad_values_are_named(void**) {
    expect_error_containing([] { parse1("aihpc-container", ""); }, "--aihpc-container: needs an IMAGE");
    expect_error_containing([] { parse1("aihpc-container-scope", "some"); }, "unknown scope 'some'");
    expect_error_containing([] { parse_container_binds("rel:/x"); }, "SRC 'rel' must be an absolute path");
    expect_error_containing([] { parse_container_binds("/a:b"); }, "DST 'b' must be an absolute path");
    expect_error_containing([] { parse_container_binds("/a:/b:rx"); }, "ro or rw");
    expect_error_containing([] { parse_container_binds("/a"); }, "not SRC:DST");
    expect_error_containing([] { parse_container_binds("/a:/b/../c"); }, "'..'");
    expect_error_containing([] { parse1("aihpc-container-bind", "/a:/b"); }, "needs --aihpc-container");
}

// ---- --aihpc-bind, --aihpc-dist

static void bind_modes_and_flags(void**) {
    BindRequest request = parse_bind("cores,verbose,nomem,nonic");
    assert_int_equal(static_cast<int>(request.mode), static_cast<int>(BindMode::cores));
    assert_true(request.verbose && request.nomem && request.nonic);
    for (const char* mode : {"auto", "gpu", "numa", "cores", "none"})
        assert_string_equal(to_string(parse_bind(mode).mode), mode);
    expect_error_containing([] { parse_bind("bogus"); }, "--aihpc-bind: unknown mode 'bogus'");
    expect_error_containing([] { parse_bind("gpu,loud"); }, "unknown flag 'loud'");
    expect_error_containing([] { parse_bind(""); }, "needs MODE");
}

static void dist_bare_means_torch(void**) {
    assert_int_equal(static_cast<int>(*parse1("aihpc-dist", "").dist), static_cast<int>(DistKind::torch));
    assert_int_equal(static_cast<int>(*parse1("aihpc-dist", "torch").dist), static_cast<int>(DistKind::torch));
    assert_int_equal(static_cast<int>(*parse1("aihpc-dist", "none").dist), static_cast<int>(DistKind::none));
    expect_error_containing([] { parse1("aihpc-dist", "mpi"); }, "--aihpc-dist: unknown kind 'mpi'");
    assert_false(parse_user_options({}).dist.has_value());
}

static void unknown_option_is_refused(void**) {
    expect_error_containing([] { parse1("aihpc-stagein", "x"); }, "--aihpc-stagein: not an aihpc option");
}

static void option_table_names_env_vars(void**) {
    for (const OptionSpec& spec : option_table()) {
        std::string expected;
        for (const char* c = spec.name; *c; ++c) expected += *c == '-' ? '_' : static_cast<char>(toupper(*c));
        assert_string_equal(spec.env_var, expected.c_str());
    }
    assert_non_null(find_option("aihpc-stage-out"));
    assert_true(find_option("aihpc-stage-out")->step_local);
    assert_null(find_option("stage"));
}

// ---- site keys

static void site_defaults(void**) {
    SiteConfig site = parse_site_config({});
    assert_string_equal(site.local_root.c_str(), "/var/lib/aihpc");
    assert_int_equal(site.stage_timeout_s, 3600);
    assert_int_equal(site.keep_failed_days, 7);
    assert_int_equal(site.epilog_deliver_timeout_s, 60);
    assert_int_equal(site.cache_user_inodes, 1000000);
    assert_int_equal(site.cache_user_max_bytes(1000), 500);
    assert_true(site.cache_max.is_percent);
    assert_int_equal(site.cache_max.resolve(1000), 500);
    assert_int_equal(site.cache_low_bytes(1000), 450);
    assert_false(site.registry);
    assert_true(site.cache_shared);
    assert_string_equal(site.shared_user.c_str(), "nobody");
    assert_int_equal(site.cache_shared_max_bytes(1000), 250);  // half of cache_max
    assert_int_equal(static_cast<int>(site.bind_default), static_cast<int>(BindMode::none));
    assert_int_equal(static_cast<int>(site.dist_default), static_cast<int>(DistKind::none));
}

static void site_every_key_good_value(void**) {
    SiteConfig site = parse_site_config({"local_root=/local/%n/aihpc", "cache_max=2G", "cache_low=1G",
                                         "stage_allow=/datasets:/scratch/", "stage_threads=8",
                                         "container_runtimes=charliecloud,podman", "container_default=podman",
                                         "image_allow=/images", "registry=yes", "runtime_path=/usr/bin:/opt/bin",
                                         "bind_default=auto", "dist_default=torch", "cache_user_max=1G",
                                         "stage_timeout=15m", "keep_failed_days=0", "cache_user_inodes=50000",
                                         "epilog_deliver_timeout=5m", "cache_shared=off", "shared_user=aihpc-reader",
                                         "cache_shared_max=3G", "gravity_features=4", "gravity=prefer"});
    assert_false(site.cache_shared);
    assert_string_equal(site.shared_user.c_str(), "aihpc-reader");
    assert_int_equal(site.cache_shared_max_bytes(0), 2ull << 30);  // never above cache_max
    assert_int_equal(site.cache_user_inodes, 50000);
    assert_int_equal(site.gravity_features, 4);
    assert_int_equal(parse_site_config({}).gravity_features, 16);
    assert_int_equal(parse_site_config({"gravity_features=0"}).gravity_features, 0);
    assert_true(site.gravity_default);
    assert_false(parse_site_config({}).gravity_default);
    assert_false(parse_site_config({"gravity=off"}).gravity_default);
    expect_error_containing([] { parse_site_config({"gravity=always"}); }, "'always' is not off or prefer");
    assert_int_equal(site.epilog_deliver_timeout_s, 300);
    assert_int_equal(parse_site_config({"epilog_deliver_timeout=0"}).epilog_deliver_timeout_s, 0);
    assert_int_equal(site.cache_user_max_bytes(0), 1ull << 30);
    assert_int_equal(site.stage_timeout_s, 900);
    assert_int_equal(site.keep_failed_days, 0);
    assert_string_equal(site.local_root_for("n1").c_str(), "/local/n1/aihpc");
    assert_int_equal(site.cache_max.bytes, 2ull << 30);
    assert_int_equal(site.cache_low_bytes(0), 1ull << 30);
    assert_int_equal(site.stage_allow.size(), 2);
    assert_string_equal(site.stage_allow[1].c_str(), "/scratch");
    assert_int_equal(site.stage_threads, 8);
    assert_int_equal(site.container_runtimes.size(), 2);
    assert_string_equal(site.container_default.c_str(), "podman");
    assert_true(site.registry);
    assert_int_equal(site.runtime_path.size(), 2);
    assert_int_equal(static_cast<int>(site.bind_default), static_cast<int>(BindMode::auto_));
    assert_int_equal(static_cast<int>(site.dist_default), static_cast<int>(DistKind::torch));
}

static void site_sizes(void**) {
    assert_int_equal(parse_size_limit("cache_max", "512K").bytes, 512ull << 10);
    assert_int_equal(parse_size_limit("cache_max", "3m").bytes, 3ull << 20);
    assert_int_equal(parse_size_limit("cache_max", "1T").bytes, 1ull << 40);
    assert_int_equal(parse_size_limit("cache_max", "4096").bytes, 4096);
    assert_int_equal(parse_size_limit("cache_max", "80%").resolve(1000), 800);
    for (const char* bad : {"", "0", "-1G", "1.5G", "G", "80", "101%", "0%", "x%", "99999999999999999999"}) {
        if (std::string(bad) == "80") continue;  // 80 bytes is a valid if odd size
        expect_error_containing([&] { parse_size_limit("cache_max", bad); }, "site key cache_max");
    }
}

static void site_bad_values_name_the_key(void**) {
    struct Case { const char* arg; const char* needle; } cases[] = {
        {"local_root=relative", "site key local_root"},
        {"local_root=/a/../b", "site key local_root"},
        {"cache_max=lots", "site key cache_max"},
        {"stage_timeout=0", "site key stage_timeout"},
        {"stage_timeout=1w", "site key stage_timeout"},
        {"stage_timeout=31d", "site key stage_timeout"},
        {"keep_failed_days=-1", "site key keep_failed_days"},
        {"epilog_deliver_timeout=-1", "site key epilog_deliver_timeout"},
        {"epilog_deliver_timeout=forever", "site key epilog_deliver_timeout"},
        {"cache_user_max=big", "site key cache_user_max"},
        {"cache_user_inodes=0", "site key cache_user_inodes"},
        {"cache_user_inodes=1M", "site key cache_user_inodes"},
        {"cache_user_inodes=1099511627777", "site key cache_user_inodes: '1099511627777' is not a number of files"},
        {"cache_low=2G", "site key cache_low"},  // above the cache_max given below
        {"stage_allow=data", "site key stage_allow"},
        {"stage_threads=0", "site key stage_threads"},
        {"stage_threads=many", "site key stage_threads"},
        {"container_runtimes=docker", "site key container_runtimes: unknown runtime 'docker'"},
        {"container_default=rkt", "site key container_default"},
        {"image_allow=images", "site key image_allow"},
        {"registry=maybe", "site key registry"},
        {"runtime_path=", "site key runtime_path"},
        {"bind_default=gpu", "site key bind_default"},
        {"dist_default=mpi", "site key dist_default"},
        {"cache_shared=yes", "site key cache_shared: 'yes' is not on or off"},
        {"shared_user=root", "site key shared_user"},
        {"shared_user=", "site key shared_user"},
        {"cache_shared_max=half", "site key cache_shared_max"},
        {"gravity_features=257", "site key gravity_features"},
        {"gravity_features=many", "site key gravity_features"},
    };
    for (const Case& c : cases)
        expect_error_containing([&] { parse_site_config({"cache_max=1G", c.arg}); }, c.needle);
}

static void site_unknown_repeated_and_malformed_keys(void**) {
    expect_error_containing([] { parse_site_config({"cache_size=1G"}); }, "unknown site key 'cache_size'");
    expect_error_containing([] { parse_site_config({"registry=no", "registry=yes"}); }, "site key registry: is given twice");
    expect_error_containing([] { parse_site_config({"verbose"}); }, "'verbose' is not key=value");
    expect_error_containing([] { parse_site_config({"container_runtimes=podman", "container_default=enroot"}); },
                            "not in container_runtimes");
}

static void checkpoint_signal_and_time_as_slurm_names_them(void**) {
    
    CheckpointRequest d = parse_checkpoint("aihpc-checkpoint", "");
    assert_int_equal(d.signal, SIGUSR1);
    assert_int_equal(d.seconds, 120);
    CheckpointRequest c = parse_checkpoint("aihpc-checkpoint", "SIGUSR2@300");
    assert_int_equal(c.signal, SIGUSR2);
    assert_string_equal(c.signal_name.c_str(), "USR2");
    assert_int_equal(c.seconds, 300);
    assert_int_equal(parse_checkpoint("aihpc-checkpoint", "TERM").signal, SIGTERM);
    assert_int_equal(parse_checkpoint("aihpc-checkpoint", "@60").seconds, 60);
    assert_int_equal(parse_checkpoint("aihpc-checkpoint", "10@5").signal, SIGUSR1);
    expect_error_containing([] { parse_checkpoint("aihpc-checkpoint", "KILL@60"); }, "unknown signal 'KILL'");
    expect_error_containing([] { parse_checkpoint("aihpc-checkpoint", "USR1@0"); }, "from 1 to 65535");
    expect_error_containing([] { parse_checkpoint("aihpc-checkpoint", "USR1@2m"); }, "'2m' is not a number of seconds");
    UserOptions o = parse_user_options({{"aihpc-checkpoint", ""}});
    assert_true(o.checkpoint.has_value());
    assert_false(parse_user_options({}).checkpoint.has_value());
}

static void checkpoint_root_is_an_absolute_directory(void**) {
    assert_string_equal(parse_site_config({"checkpoint_root=/scratch/%u/ckpt"}).checkpoint_root.c_str(),
                        "/scratch/%u/ckpt");
    expect_error_containing([] { parse_site_config({"checkpoint_root=ckpt"}); }, "checkpoint_root");
    expect_error_containing([] { parse_site_config({"checkpoint_root=/a/../b"}); }, "'..'");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stage_name_defaults_to_base_name_without_archive_suffix),
        cmocka_unit_test(stage_explicit_name_follows_last_colon),
        cmocka_unit_test(stage_name_drops_every_archive_suffix_staging_extracts),
        cmocka_unit_test(stage_name_must_be_one_component),
        cmocka_unit_test(stage_rejects_empty_and_duplicate_entries),
        cmocka_unit_test(stage_out_parses_local_and_dest),
        cmocka_unit_test(stage_out_rejects_escapes_and_bad_local),
        cmocka_unit_test(stage_out_on_several_nodes_needs_node_escape),
        cmocka_unit_test(stage_names_and_paths_are_bounded),
        cmocka_unit_test(stage_mode_accepts_cache_user_and_private),
        cmocka_unit_test(flags_take_no_value),
        cmocka_unit_test(gravity_is_prefer_off_or_the_sites_choice),
        cmocka_unit_test(container_options_parse),
        cmocka_unit_test(container_bad_values_are_named),
        cmocka_unit_test(bind_modes_and_flags),
        cmocka_unit_test(dist_bare_means_torch),
        cmocka_unit_test(unknown_option_is_refused),
        cmocka_unit_test(option_table_names_env_vars),
        cmocka_unit_test(site_defaults),
        cmocka_unit_test(site_every_key_good_value),
        cmocka_unit_test(site_sizes),
        cmocka_unit_test(site_bad_values_name_the_key),
        cmocka_unit_test(site_unknown_repeated_and_malformed_keys),
        cmocka_unit_test(checkpoint_signal_and_time_as_slurm_names_them),
        cmocka_unit_test(checkpoint_root_is_an_absolute_directory),
    };
    return cmocka_run_group_tests_name("config", tests, nullptr, nullptr);
}
