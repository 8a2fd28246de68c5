// What aihpc-sweep shows before it queues or runs anything: plan's and a dry run's lines
// (lib/sweep/preview), params' text of a task (runner), the spec an expand command line
// gives (shorthand), and the phase options checked before submitting (image_check).
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "sweep/image_check.hpp"
#include "sweep/preview.hpp"
#include "sweep/rounds.hpp"
#include "sweep/runner.hpp"
#include "sweep/shorthand.hpp"
#include "sweep/submit_plan.hpp"
#include "sweep/sweep_dir.hpp"
#include "cmocka_cxx.hpp"
#include "sweep_fixture.hpp"
#include "temp_dir.hpp"

using namespace aihpc::sweep;

namespace {

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
}

bool starts(const std::string& text, const std::string& prefix) { return text.rfind(prefix, 0) == 0; }

const char* kTwoPhases = R"({"name":"tp","axes":[{"param":"a","range":[0,5]}],"command":"run {a}",
    "phases":[{"name":"prep"},{"name":"train","after":"prep"}]})";

}  // namespace

static void plan_shows_each_chunk(void**) {
    TempDir tmp;
    auto sweep = make_sweep(tmp, kTwoPhases);
    std::ostringstream out;
    print_chunks(sweep, options_of(3), out);
    assert_string_equal(out.str().c_str(),
                        "5 tasks, 2 phase(s), 2 chunk(s) of at most 3 array elements, pack 1\n"
                        "chunk 0: offset 0, 3 tasks, 3 elements\n"
                        "chunk 1: offset 3, 2 tasks, 2 elements\n");
}

static void a_dry_run_of_a_closed_loop_ends_with_its_controller_after_every_array(void**) {
    TempDir tmp;
    auto sweep = make_sweep(tmp, kTwoPhases);
    auto options = options_of(3);
    options.sbatch_args = {"--partition=gpu", "--gpus=1"};
    auto subs = plan_submit(sweep, options);
    std::ostringstream out;
    print_submit_dry_run(sweep, subs, options, true, out);
    auto lines = lines_of(out.str());
    assert_int_equal(lines.size(), 5);
    assert_true(starts(lines[2], "sbatch --parsable --array=0-2 --dependency=aftercorr:{prep.0} "));
    // Its job ids are not known yet: the placeholders stand unquoted; of the words after
    // --, only where the controller may run.
    assert_string_equal(lines[4].c_str(), ("sbatch --parsable --dependency=afterany:{prep.0}:{prep.1}:{train.0}:{train.1} --partition=gpu " +
                                           controller_script_path(sweep.path)).c_str());
    // The scripts the lines name are written; once submitted, a sweep keeps its own.
    assert_non_null(std::strstr(file_text(script_path(sweep, "train")).c_str(), "#SBATCH --gpus=1\n"));
    write_file_atomic(sweep.path + "/chunks.json", "{}\n");
    write_file_atomic(script_path(sweep, "train"), "submitted\n");
    std::ostringstream again;
    print_submit_dry_run(sweep, subs, options, false, again);
    assert_int_equal(lines_of(again.str()).size(), 4);
    assert_string_equal(file_text(script_path(sweep, "train")).c_str(), "submitted\n");
}

static void a_dry_run_of_a_schedule_shows_each_first_rung_and_its_controller(void**) {
    TempDir tmp;
    auto sweep = make_sweep(tmp, R"({"name":"hb","axes":[{"param":"x","range":[0,17]}],"command":"run {x} {epochs}",
        "schedule":{"type":"hyperband","resource":"epochs","min":1,"max":9,"eta":3,"metric":"val_loss"}})");
    auto options = options_of(1001);
    std::ostringstream plan;
    print_schedule_plan(sweep, options, plan);
    auto lines = lines_of(plan.str());
    assert_true(starts(lines[0], "17 configurations, hyperband over epochs from 1 to 9 (eta 3): 3 bracket(s), "));
    assert_true(starts(lines[1], "b2.r0: 9 configurations at epochs=1, array 0-8 (offset 0)"));
    assert_string_equal(lines[2].c_str(), "b2.r1: 3 configurations at epochs=3, after b2.r0 (promoted by its controller)");
    std::ostringstream dry;
    print_schedule_dry_run(sweep, rungs_plan(options), "test", dry);
    lines = lines_of(dry.str());
    // Bracket 2's first rung and controller, bracket 1's, and bracket 0's rung alone.
    assert_int_equal(lines.size(), 5);
    assert_non_null(std::strstr(lines[1].c_str(), " --dependency=afterany:{b2.r0} "));
    assert_true(is_file(rung_script_path(sweep.path)));
}

static void params_are_shown_in_each_format(void**) {
    TempDir tmp;
    auto sweep = make_sweep(tmp, R"({"axes":[{"param":"lr","values":[0.5]},{"param":"tag","values":["a b"]}],"command":"train --lr {lr} {tag}",
        "phases":[{"name":"prep","command":"prep {tag}"},{"name":"main","after":"prep"}]})");
    assert_string_equal(task_params_text(sweep.path, 0, "json", "").c_str(), "{\"lr\":0.5,\"tag\":\"a b\"}\n");
    assert_string_equal(task_params_text(sweep.path, 0, "args", "").c_str(), "--lr=0.5 '--tag=a b'\n");
    auto env = task_params_text(sweep.path, 0, "env", "");
    assert_non_null(std::strstr(env.c_str(), "AIHPC_PARAM_TAG=a b\n"));
    auto shell = task_params_text(sweep.path, 0, "shell", "");
    assert_non_null(std::strstr(shell.c_str(), "export AIHPC_PARAM_TAG='a b'\n"));
    assert_string_equal(task_params_text(sweep.path, 0, "cmd", "").c_str(), "train --lr 0.5 'a b'\n");
    assert_string_equal(task_params_text(sweep.path, 0, "cmd", "prep").c_str(), "prep 'a b'\n");
    expect_error_containing([&] { task_params_text(sweep.path, 0, "cmd", "eval"); }, "eval");
}

static void a_spec_file_names_itself_in_its_errors_and_shorthand_gives_notes(void**) {
    TempDir tmp;
    std::ostringstream notes;
    auto yaml = tmp.write("spec.yaml", "axes:\n  - param: a\n");
    expect_error_containing([&] { read_command_line_spec({yaml}, {}, notes); },
                            yaml + ": not valid JSON: ");
    expect_error_containing([&] { read_command_line_spec({yaml}, {}, notes); }, "aihpc-sweep reads JSON specs only");
    auto bad = tmp.write("bad.json", R"({"axes":[{"param":"a"}],"command":"t"})");
    expect_error_containing([&] { read_command_line_spec({bad}, {}, notes); }, bad + ": axes[0]");
    // A name ending in .json is a file even where there is none.
    expect_error_containing([&] { read_command_line_spec({tmp.path() + "/none.json"}, {}, notes); }, tmp.path() + "/none.json: ");
    SpecOverrides overrides;
    overrides.seed = 7;
    auto good = tmp.write("good.json", R"({"axes":[{"param":"a","values":[1,2]}],"command":"t {a}"})");
    auto from_file = read_command_line_spec({good}, overrides, notes);
    assert_int_equal(from_file.spec.seed, 7);
    assert_true(notes.str().empty());
    auto shorthand = read_command_line_spec({"ver=1.10", "a=1,2"}, overrides, notes);
    assert_non_null(std::strstr(shorthand.text.c_str(), "\"ver\""));
    assert_true(starts(notes.str(), "aihpc-sweep: note: parameter 'ver=1.10': 1.10 is read as the number 1.1"));
}

static void each_phase_s_options_are_checked_under_its_name(void**) {
    TempDir tmp;
    auto sweep = make_sweep(tmp, R"({"axes":[{"param":"a","values":[1]}],"command":"t",
        "phases":[{"name":"prep"},{"name":"train","after":"prep","aihpc":["--aihpc-container=gone.sif"]}]})");
    auto options = options_of(1001);
    expect_error_containing([&] { check_phase_options(sweep, options, tmp.path()); }, "phase 'train': --aihpc-container: the image ");
    TempDir tmp2;
    auto single = make_sweep(tmp2, R"({"axes":[{"param":"a","values":[1]}],"command":"t"})");
    options.sbatch_args = {"--aihpc-bind=sideways"};
    expect_error_containing([&] { check_phase_options(single, options, tmp.path()); }, "the sbatch options: --aihpc-bind: unknown mode");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plan_shows_each_chunk),
        cmocka_unit_test(a_dry_run_of_a_closed_loop_ends_with_its_controller_after_every_array),
        cmocka_unit_test(a_dry_run_of_a_schedule_shows_each_first_rung_and_its_controller),
        cmocka_unit_test(params_are_shown_in_each_format),
        cmocka_unit_test(a_spec_file_names_itself_in_its_errors_and_shorthand_gives_notes),
        cmocka_unit_test(each_phase_s_options_are_checked_under_its_name),
    };
    return cmocka_run_group_tests_name("sweep_preview", tests, nullptr, nullptr);
}
