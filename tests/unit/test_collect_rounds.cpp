// The closed loop of `aihpc-sweep submit --rounds`: rounds.json, the controller's script
// and sbatch line (pure), and one real `aihpc-sweep advance` step against an sbatch
// stand-in that records its arguments and hands out job ids.
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

#include "built_tool.hpp"
#include "cmocka_cxx.hpp"
#include "common/paths.hpp"
#include "common/text.hpp"
#include "sweep/rounds.hpp"
#include "sweep/runner.hpp"
#include "sweep/spec.hpp"
#include "sweep/sweep_dir.hpp"
#include "temp_dir.hpp"

using namespace aihpc;
using namespace aihpc::sweep;

namespace {

RoundsRecord sample_record() {
    RoundsRecord r;
    r.plan.rounds = 3;
    r.plan.metric = "val loss";
    r.plan.maximize = true;
    r.plan.top = 4;
    r.plan.shrink = 0.25;
    r.plan.trials = 12;
    r.plan.throttle = 5;
    r.plan.max_array_size = 1001;
    r.plan.pack = 2;
    r.plan.sbatch = {"--gpus=1", "-p", "gpu"};
    r.plan.tool = "/opt/aihpc/bin/aihpc-sweep";
    Round a;
    a.round = 1;
    a.dir = "/w/s";
    a.tasks = 8;
    a.jobs = {"10", "11"};
    a.controller = "12";
    a.best = RoundBest{3, 0.125, "{\"lr\":0.001}"};
    Round b;
    b.round = 2;
    b.dir = "/w/s/rounds/2";
    b.tasks = 12;
    b.jobs = {"20"};
    r.history = {a, b};
    return r;
}

}  // namespace

static void rounds_json_reads_back_the_plan_and_every_round(void**) {
    auto r = parse_rounds_json(rounds_json(sample_record()));
    assert_int_equal(r.plan.rounds, 3);
    assert_string_equal(r.plan.metric.c_str(), "val loss");
    assert_true(r.plan.maximize);
    assert_int_equal(r.plan.top, 4);
    assert_true(r.plan.shrink == 0.25);
    assert_int_equal(*r.plan.trials, 12);
    assert_int_equal(r.plan.throttle, 5);
    assert_int_equal(r.plan.pack, 2);
    assert_true(r.plan.sbatch == (std::vector<std::string>{"--gpus=1", "-p", "gpu"}));
    assert_string_equal(r.plan.tool.c_str(), "/opt/aihpc/bin/aihpc-sweep");
    assert_string_equal(r.state.c_str(), "running");
    assert_int_equal(r.history.size(), 2);
    assert_true(r.history[0].jobs == (std::vector<std::string>{"10", "11"}));
    assert_string_equal(r.history[0].controller.c_str(), "12");
    assert_int_equal(r.history[0].best->index, 3);
    assert_true(r.history[0].best->metric == 0.125);
    assert_string_equal(r.history[0].best->params_json.c_str(), "{\"lr\":0.001}");
    assert_false(r.history[1].best.has_value());
    assert_string_equal(r.history[1].dir.c_str(), "/w/s/rounds/2");
    assert_string_equal(r.history[1].controller.c_str(), "");
    // A loop may rank configurations by their replicates' mean; older files have no such field.
    assert_true(r.plan.aggregate == Aggregate::none);
    auto mean = sample_record();
    mean.plan.aggregate = Aggregate::median;
    assert_true(parse_rounds_json(rounds_json(mean)).plan.aggregate == Aggregate::median);
}

static void a_closed_loop_reports_the_best_over_all_rounds(void**) {
    auto r = sample_record();
    r.plan.metric = "loss";
    r.plan.maximize = false;
    r.history[1].best = RoundBest{7, 0.5, "{\"lr\":0.002}"};  // round 2 is worse than round 1
    auto best = overall_best(r);
    assert_true(best.has_value());
    assert_int_equal(best->first, 1);
    assert_int_equal(best->second.index, 3);
    assert_true(rounds_json(r).find(R"("best":{"round":1,"index":3,"metric":0.125,"params":{"lr":0.001}})") != std::string::npos);
    r.plan.maximize = true;
    assert_int_equal(overall_best(r)->first, 2);
}

static void a_damaged_rounds_json_is_refused(void**) {
    expect_error_containing([] { parse_rounds_json("{\"rounds\":2}"); }, "rounds.json is damaged");
    expect_error_containing([] { parse_rounds_json("not json"); }, "rounds.json is damaged");
    expect_error_containing([] { parse_rounds_json("{\"history\":[]}"); }, "no round");
}

static void metric_direction_defaults_to_min(void**) {
    assert_true(parse_metric_direction("loss") == std::make_pair(std::string("loss"), false));
    assert_true(parse_metric_direction("loss:min") == std::make_pair(std::string("loss"), false));
    assert_true(parse_metric_direction("acc:max") == std::make_pair(std::string("acc"), true));
    expect_error_containing([] { parse_metric_direction("acc:best"); }, "min or max");
    expect_error_containing([] { parse_metric_direction(":max"); }, "needs a name");
}

static void round_one_is_the_sweep_itself_later_rounds_nest(void**) {
    assert_string_equal(round_dir("/w/s", 1).c_str(), "/w/s");
    assert_string_equal(round_dir("/w/s", 2).c_str(), "/w/s/rounds/2");
    assert_string_equal(round_dir("/w/s", 10).c_str(), "/w/s/rounds/10");
}

static void a_later_round_finds_the_goal_of_its_loop(void**) {
    TempDir tmp;
    tmp.make_dir("s/rounds/2");
    tmp.make_dir("plain");
    tmp.write("s/rounds.json", rounds_json(sample_record()));
    auto first = closed_loop_goal(tmp.path() + "/s");
    auto later = closed_loop_goal(tmp.path() + "/s/rounds/2");
    assert_true(first.has_value() && later.has_value());
    assert_true(*first == std::make_pair(std::string("val loss"), true));
    assert_true(*later == *first);
    assert_false(closed_loop_goal(tmp.path() + "/plain").has_value());
    tmp.write("s/rounds.json", "{\"plan\": 3");
    assert_false(closed_loop_goal(tmp.path() + "/s/rounds/2").has_value());  // damaged: no direction, no error
}

static void the_controller_script_is_tiny_and_calls_the_tool_by_its_path(void**) {
    auto text = controller_script("/w/my sweep", "grid", "/opt/x/aihpc-sweep", "1.0");
    assert_true(starts_with(text, "#!/bin/sh\n"));
    for (auto line : {"#SBATCH --job-name=grid.advance\n", "#SBATCH --output=/w/my sweep/logs/advance-%j.out\n",
                      "#SBATCH --ntasks=1\n", "#SBATCH --cpus-per-task=1\n", "#SBATCH --time=00:10:00\n",
                      "exec /opt/x/aihpc-sweep advance '/w/my sweep'\n"})
        assert_true(text.find(line) != std::string::npos);
    assert_true(text.find("--gpus") == std::string::npos);
}

static void only_placement_options_reach_the_controller(void**) {
    struct Case {
        std::vector<std::string> in, out;
    } cases[] = {
        {{"--gpus=1", "--time=01:00:00", "-c", "4"}, {}},
        {{"-p", "gpu", "--gpus=1"}, {"-p", "gpu"}},
        {{"--partition=gpu", "--account", "proj", "-Aother"}, {"--partition=gpu", "--account", "proj", "-Aother"}},
        {{"--qos=high", "--reservation", "r1", "--mem=4G", "-pdebug"}, {"--qos=high", "--reservation", "r1", "-pdebug"}},
        {{"--partitions=x", "--accounting"}, {}},
    };
    for (auto& c : cases) assert_true(placement_args(c.in) == c.out);
}

static void the_controller_waits_for_every_job_of_the_round(void**) {
    auto argv = controller_argv("/w/s/scripts/advance.sh", {"10", "11", "12"}, {"-p", "gpu"});
    assert_true(argv == (std::vector<std::string>{"sbatch", "--parsable", "--dependency=afterany:10:11:12", "-p", "gpu",
                                                  "/w/s/scripts/advance.sh"}));
    expect_error_containing([] { controller_argv("/x", {}, {}); }, "without jobs");
}

// One step of the loop for real: round 1 has results; advance writes round 2 as a
// complete sweep dir, submits its array and the next controller (to a stand-in
// sbatch), and records both in rounds.json.
static void run_advance_two_rounds(const std::string& tool) {
    TempDir tmp;
    std::string bin = tmp.path() + "/bin";
    ::mkdir(bin.c_str(), 0777);
    // The stand-in prints job ids 500, 501, ... and logs each argv on one line.
    write_file_atomic(bin + "/sbatch",
                      "#!/bin/sh\nn=$(cat \"$0.n\" 2>/dev/null || echo 500)\necho $((n + 1)) > \"$0.n\"\n"
                      "echo \"$@\" >> \"$0.log\"\necho \"$n\"\n");
    ::chmod((bin + "/sbatch").c_str(), 0755);

    auto spec = parse_spec(R"({"name":"loop","axes":[{"param":"x","uniform":[0,10],"count":6},{"param":"y","values":[1,2]}],
        "command":"true"})");
    std::string root = tmp.path() + "/s";
    write_sweep_dir(spec, root, Provenance{"t", "2024-06-11T12:00:00+00:00", ""});
    SweepDir sweep = open_sweep(root);
    TaskIndex index(root);
    for (std::uint64_t i = 0; i < sweep.tasks; ++i) {
        TaskOutcome o;
        o.metrics_json = "{\"loss\":" + std::to_string(static_cast<double>(i % 5)) + "}";
        write_file_atomic(result_path(sweep, sweep.spec.final_phase(), i),
                          result_json(sweep, sweep.spec.final_phase(), index.task(i), {"true"}, o, TaskContext{}));
    }
    RoundsRecord r;
    r.plan.rounds = 2;
    r.plan.metric = "loss";
    r.plan.top = 2;
    r.plan.max_array_size = 5;
    r.plan.sbatch = {"--time=5", "-p", "debug"};
    r.plan.tool = tool;
    Round first;
    first.dir = sweep.path;
    first.tasks = sweep.tasks;
    first.jobs = {"100"};
    r.history = {first};
    write_file_atomic(root + "/rounds.json", rounds_json(r));

    std::string cmd = "PATH=" + bin + ":$PATH SLURM_JOB_ID=77 " + tool + " advance " + root + " > " + tmp.path() + "/out 2>&1";
    int st = std::system(cmd.c_str());
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) print_error("%s\n", file_text(tmp.path() + "/out").c_str());
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);

    // Round 2: a complete sweep dir of 12 trials (round 1's task count), 3 chunks of <= 5.
    SweepDir next = open_sweep(root + "/rounds/2");
    assert_int_equal(next.tasks, 12);
    assert_true(path_exists(root + "/rounds/2/tasks.idx") && path_exists(root + "/rounds/2/scripts/main.sh"));
    auto rec = parse_rounds_json(file_text(root + "/rounds.json"));
    assert_string_equal(rec.state.c_str(), "running");
    assert_int_equal(rec.history.size(), 2);
    assert_true(rec.history[0].best.has_value());
    assert_true(rec.history[0].best->metric == 0);
    assert_int_equal(rec.history[0].best->index, 0);
    assert_true(rec.history[1].jobs == (std::vector<std::string>{"500", "501", "502"}));
    assert_string_equal(rec.history[1].controller.c_str(), "503");
    assert_true(file_text(root + "/rounds/2/chunks.json").find("\"job_id\":\"502\"") != std::string::npos);
    auto calls = split(file_text(bin + "/sbatch.log"), '\n');
    assert_true(starts_with(calls[0], "--parsable --array=0-4 " + root + "/rounds/2/scripts/main.sh 0 5 1"));
    assert_string_equal(calls[3].c_str(), ("--parsable --dependency=afterany:500:501:502 -p debug " + root + "/scripts/advance.sh").c_str());
    // The arrays of every round keep the options given at submit.
    assert_true(file_text(root + "/rounds/2/scripts/main.sh").find("#SBATCH --time=5\n") != std::string::npos);

    // The last controller records round 2's best and ends the loop; a requeued one does nothing.
    TaskIndex index2(next.path);
    for (std::uint64_t i = 0; i < next.tasks; ++i) {
        TaskOutcome o;
        o.metrics_json = "{\"loss\":" + std::to_string(10.0 - static_cast<double>(i)) + "}";
        write_file_atomic(result_path(next, next.spec.final_phase(), i),
                          result_json(next, next.spec.final_phase(), index2.task(i), {"true"}, o, TaskContext{}));
    }
    assert_int_equal(std::system(cmd.c_str()), 0);
    rec = parse_rounds_json(file_text(root + "/rounds.json"));
    assert_string_equal(rec.state.c_str(), "done");
    assert_int_equal(rec.history[1].best->index, 11);
    assert_int_equal(std::system(cmd.c_str()), 0);
    assert_int_equal(split(file_text(bin + "/sbatch.log"), '\n').size(), 5);  // 4 calls and the final newline
    assert_false(path_exists(root + "/rounds/3"));
}

static void advance_refines_submits_the_next_round_and_its_controller(void**) {
    if (!path_exists(built_tool("aihpc-sweep"))) skip();  // nothing with a destructor is alive here
    run_advance_two_rounds(built_tool("aihpc-sweep"));
}

static void run_advance_without_metric(const std::string& tool) {
    TempDir tmp;
    auto spec = parse_spec(R"({"axes":[{"param":"x","values":[1,2]}],"command":"true"})");
    std::string root = tmp.path() + "/s";
    write_sweep_dir(spec, root, Provenance{"t", "2024-06-11T12:00:00+00:00", ""});
    RoundsRecord r;
    r.plan.rounds = 3;
    r.plan.metric = "loss";
    Round first;
    first.dir = open_sweep(root).path;
    first.jobs = {"1"};
    r.history = {first};
    write_file_atomic(root + "/rounds.json", rounds_json(r));
    std::string cmd = tool + " advance " + root + " > /dev/null 2>&1";
    int st = std::system(cmd.c_str());
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    auto rec = parse_rounds_json(file_text(root + "/rounds.json"));
    assert_string_equal(rec.state.c_str(), "stopped");
    assert_true(rec.message.find("reports the metric 'loss'") != std::string::npos);
}

static void advance_stops_the_loop_when_no_task_reports_the_metric(void**) {
    if (!path_exists(built_tool("aihpc-sweep"))) skip();
    run_advance_without_metric(built_tool("aihpc-sweep"));
}

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rounds_json_reads_back_the_plan_and_every_round),
        cmocka_unit_test(a_damaged_rounds_json_is_refused),
        cmocka_unit_test(a_closed_loop_reports_the_best_over_all_rounds),
        cmocka_unit_test(metric_direction_defaults_to_min),
        cmocka_unit_test(round_one_is_the_sweep_itself_later_rounds_nest),
        cmocka_unit_test(a_later_round_finds_the_goal_of_its_loop),
        cmocka_unit_test(the_controller_script_is_tiny_and_calls_the_tool_by_its_path),
        cmocka_unit_test(only_placement_options_reach_the_controller),
        cmocka_unit_test(the_controller_waits_for_every_job_of_the_round),
        cmocka_unit_test(advance_refines_submits_the_next_round_and_its_controller),
        cmocka_unit_test(advance_stops_the_loop_when_no_task_reports_the_metric),
    };
    return cmocka_run_group_tests_name("collect_rounds", tests, nullptr, nullptr);
}
