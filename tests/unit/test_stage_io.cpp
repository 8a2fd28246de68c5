// lib/stage I/O scheduling: how many source operations are kept in flight, the pool
// that carries them (driven here by a fake slow file system: tasks that sleep like a
// round trip to a server), the round trips a scan and a copy cost per entry, and the
// trust rules of source opens (no FIFO blocks, the cache key sees ctime and inode,
// holes stay holes).
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "common/fd.hpp"
#include "stage/fs.hpp"
#include "stage/io_pool.hpp"
#include "stage/manifest.hpp"
#include "stage/stage_in.hpp"
#include "stage/tree_copy.hpp"
// Last: cmocka's fail() macro breaks <ios> included after it.
#include "cmocka_cxx.hpp"
#include "temp_dir.hpp"

using namespace aihpc::stage;

namespace {

void write_file(const std::string& p, const std::string& content) {
    aihpc::UniqueFd fd(::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    assert_true(static_cast<bool>(fd));
    assert_int_equal(::write(fd.get(), content.data(), content.size()), static_cast<ssize_t>(content.size()));
}

std::string read_file(const std::string& p) {
    aihpc::UniqueFd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
    assert_true(static_cast<bool>(fd));
    std::string out;
    char buf[65536];
    ssize_t n;
    while ((n = ::read(fd.get(), buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
    return out;
}

void sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    ::nanosleep(&ts, nullptr);
}

// One operation of the fake slow file system: a round trip of `us` microseconds,
// counted and timed as the engine times its own.
void slow_op(SourceOps& ops, IoPool& pool, long us, std::atomic<int>& running, std::atomic<int>& peak) {
    TimedOp op(&ops, &pool);
    int now = ++running;
    int seen = peak.load();
    while (now > seen && !peak.compare_exchange_weak(seen, now)) {
    }
    if (us > 0) sleep_us(us);
    --running;
}

}  // namespace

// ---- the pure choice

static void a_local_source_keeps_about_one_operation_per_cpu_in_flight(void**) {
    assert_int_equal(choose_in_flight(2000, 2, 64), 2);      // page cache: 2 us per statx
    assert_int_equal(choose_in_flight(0, 8, 64), 8);
    assert_int_equal(choose_in_flight(1000, 16, 64), 16);
}

static void a_slow_source_keeps_many_in_flight_whatever_the_cpu_count(void**) {
    assert_int_equal(choose_in_flight(500000, 2, 64), 64);   // 0.5 ms: a network file system
    assert_int_equal(choose_in_flight(2000000, 1, 64), 64);
    assert_int_equal(choose_in_flight(100000, 2, 64), 50);   // 0.1 ms on 2 CPUs
    assert_true(choose_in_flight(100000, 2, 64) > 2);
}

static void stage_threads_caps_the_operations_in_flight(void**) {
    assert_int_equal(choose_in_flight(500000, 2, 8), 8);
    assert_int_equal(choose_in_flight(500000, 2, 1), 1);
    assert_int_equal(choose_in_flight(500000, 2, 0), 1);     // a cap of 0 still copies
    assert_int_equal(choose_in_flight(0, 32, 4), 4);         // even below the CPU count
}

// ---- the pool, on a fake slow file system

static void the_pool_grows_to_the_latency_sized_count_on_a_slow_source(void**) {
    SourceOps ops;
    IoPool pool(1, 32);
    std::atomic<int> running{0}, peak{0};
    for (int i = 0; i < 400; ++i) pool.submit([&] { slow_op(ops, pool, 2000, running, peak); });
    pool.run();
    assert_int_equal(pool.workers(), 32);  // 2 ms per operation: the cap, on any CPU count
    assert_true(pool.median_latency_ns() >= 2000000);
    assert_int_equal(ops.ops.load(), 400);
    assert_true(ops.peak_in_flight.load() > 1);
    assert_true(peak.load() > 1);
    assert_int_equal(ops.in_flight.load(), 0);
}

static void the_pool_stays_at_the_cpu_count_on_a_fast_source(void**) {
    SourceOps ops;
    unsigned cpus = usable_cpus();
    IoPool pool(cpus, 64);
    std::atomic<int> running{0}, peak{0};
    for (int i = 0; i < 400; ++i) pool.submit([&] { slow_op(ops, pool, 0, running, peak); });
    pool.run();
    // An operation that never waits (the page cache) costs less than the CPU cost of one:
    // no growth.
    assert_true(pool.median_latency_ns() < 200000);
    assert_int_equal(pool.workers(), std::min(choose_in_flight(pool.median_latency_ns(), cpus, 64), 64u));
    assert_true(pool.workers() < 64);
    assert_int_equal(ops.ops.load(), 400);
}

// CPU work that takes long (a busy loop, as a listing of a huge directory in the page
// cache) gives the thread up to nothing: it is no latency to hide with more workers.
static void long_operations_that_never_wait_do_not_grow_the_pool(void**) {
    SourceOps ops;
    IoPool pool(1, 64);
    for (int i = 0; i < 100; ++i)
        pool.submit([&] {
            TimedOp op(&ops, &pool);
            struct timespec start {}, now {};
            ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &start);
            do {
                ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
            } while ((now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) < 300000);
        });
    pool.run();
    assert_int_equal(pool.median_latency_ns(), 0);
    assert_true(pool.workers() <= std::max(1u, usable_cpus()));  // at most one per CPU, never 64
}

// A source that answers stats from a cache (NFS after READDIRPLUS) but makes a round trip
// of each directory listing: the few listings size the pool.
static void slow_listings_grow_the_pool_among_fast_stats(void**) {
    SourceOps ops;
    IoPool pool(1, 32);
    std::atomic<int> running{0}, peak{0};
    for (int d = 0; d < 8; ++d)
        pool.submit([&] {
            {
                TimedOp op(&ops, &pool, OpKind::listing);
                sleep_us(2000);
            }
            for (int i = 0; i < 50; ++i) slow_op(ops, pool, 0, running, peak);
        });
    pool.run();
    assert_int_equal(pool.workers(), 32);
    assert_true(pool.median_latency_ns() >= 2000000);
}

// A stage's scan and copy share one pool: it runs again after run() returned, with the
// workers and the size the first run gave it.
static void a_pool_runs_again_with_its_workers_and_its_size(void**) {
    SourceOps ops;
    IoPool pool(1, 16);
    std::atomic<int> running{0}, peak{0}, done{0};
    for (int i = 0; i < 100; ++i) pool.submit([&] { slow_op(ops, pool, 1000, running, peak); });
    pool.run();
    assert_int_equal(pool.workers(), 16);
    peak = 0;
    for (int i = 0; i < 64; ++i)
        pool.submit([&] {
            slow_op(ops, pool, 2000, running, peak);
            ++done;
        });
    pool.run();
    assert_int_equal(done.load(), 64);
    assert_true(peak.load() > 8);  // all 16 workers from the first task on
    assert_int_equal(pool.workers(), 16);
}

static void tasks_queued_by_tasks_all_run_before_the_pool_returns(void**) {
    IoPool pool(3, 8);
    std::atomic<int> done{0};
    std::function<void(int)> fan = [&](int depth) {
        ++done;
        if (depth < 6)
            for (int k = 0; k < 2; ++k) pool.submit([&, depth] { fan(depth + 1); });
    };
    pool.submit([&] { fan(0); });
    pool.run();
    assert_int_equal(done.load(), 127);  // 2^7 - 1 nodes of a binary tree of depth 6
}

static void the_first_failure_stops_the_pool_and_is_rethrown(void**) {
    IoPool pool(2, 4);
    std::atomic<int> ran{0};
    pool.submit([] { throw aihpc::Error("the source went away"); });
    for (int i = 0; i < 1000; ++i) pool.submit([&] { ++ran; sleep_us(100); });
    bool thrown = false;
    try {
        pool.run();
    } catch (const aihpc::Error& e) {
        thrown = std::string(e.what()).find("the source went away") != std::string::npos;
    }
    assert_true(thrown);
    assert_true(ran.load() < 1000);
}

// ---- round trips of a scan and a copy

static void a_scan_reads_each_directory_once_and_stats_each_entry_once(void**) {
    TempDir dir;
    std::string src = dir.make_dir("src");
    for (int i = 0; i < 200; ++i) write_file(src + "/f" + std::to_string(i), std::string(static_cast<std::size_t>(i), 'x'));
    aihpc::UniqueFd fd(::open(src.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    SourceOps ops;
    ScanOptions options;
    options.cap = 16;
    options.ops = &ops;
    Manifest m = scan_tree(fd.get(), src, options);
    assert_int_equal(m.entries.size(), 200);
    // One open and one listing of the directory, one statx per entry: nothing else.
    assert_int_equal(ops.ops.load(), 2 + 200);
    Manifest serial = scan_tree(fd.get(), src, 1u);
    assert_true(serial.serialize() == m.serialize());
}

static void a_copy_costs_an_open_a_read_and_a_stat_per_small_file(void**) {
    TempDir dir;
    std::string src = dir.make_dir("src");
    for (int i = 0; i < 50; ++i) write_file(src + "/f" + std::to_string(i), "content " + std::to_string(i));
    aihpc::UniqueFd fd(::open(src.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    Manifest m = scan_tree(fd.get(), src, 4u);
    aihpc::UniqueFd dst(::open(dir.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    SourceOps ops;
    CopyOptions options;
    options.threads = 8;
    options.ops = &ops;
    CopyStats stats = copy_item(fd.get(), m, dst.get(), "copy", options, src, dir.path() + "/copy");
    assert_int_equal(stats.files, 50);
    assert_int_equal(ops.ops.load(), 3 * 50);  // the root directory needs no open of its own
    assert_true(read_file(dir.path() + "/copy/f7") == "content 7");
}

// ---- trust: FIFOs, freshness, holes

static void a_fifo_put_in_place_of_a_scanned_file_fails_the_copy_without_blocking(void**) {
    TempDir dir;
    std::string src = dir.make_dir("src");
    write_file(src + "/data", "12345");
    aihpc::UniqueFd fd(::open(src.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    Manifest m = scan_tree(fd.get(), src, 1u);
    ::unlink((src + "/data").c_str());
    assert_int_equal(::mkfifo((src + "/data").c_str(), 0644), 0);
    pid_t child = ::fork();
    if (child == 0) {
        ::alarm(20);  // a blocked open would be killed by SIGALRM and fail the test
        aihpc::UniqueFd dst(::open(dir.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        CopyOptions options;
        try {
            copy_item(fd.get(), m, dst.get(), "copy", options, src, dir.path() + "/copy");
        } catch (const aihpc::Error& e) {
            ::_exit(std::string(e.what()).find("data changed while staging") != std::string::npos ? 0 : 3);
        }
        ::_exit(4);
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void a_fifo_given_as_the_source_is_refused_without_blocking(void**) {
    TempDir dir;
    std::string fifo = dir.path() + "/pipe";
    assert_int_equal(::mkfifo(fifo.c_str(), 0644), 0);
    pid_t child = ::fork();
    if (child == 0) {
        ::alarm(20);
        StageSettings settings;
        settings.to_dir = dir.path() + "/job";
        settings.private_mode = true;
        try {
            stage_in(fifo, "pipe", settings);
        } catch (const aihpc::Error& e) {
            ::_exit(std::string(e.what()).find("neither a file nor a directory") != std::string::npos ? 0 : 3);
        }
        ::_exit(4);
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void a_file_changed_with_its_size_and_mtime_put_back_is_staged_again(void**) {
    TempDir dir;
    std::string src = dir.make_dir("src");
    write_file(src + "/weights", "version-1");
    struct timespec old_times[2] = {{1000000000, 0}, {1000000000, 0}};
    ::utimensat(AT_FDCWD, (src + "/weights").c_str(), old_times, 0);
    StageSettings settings;
    settings.to_dir = dir.path() + "/job";
    settings.cache_dir = dir.path() + "/cache";
    settings.uid = ::getuid();
    StagedItem first = stage_in(src, "set", settings);
    assert_true(first.outcome == StageOutcome::miss);
    ::unlink((dir.path() + "/job/set").c_str());

    // As `touch -d` would leave it: same size, same mtime, new content (and ctime).
    sleep_us(20000);
    write_file(src + "/weights", "version-2");
    ::utimensat(AT_FDCWD, (src + "/weights").c_str(), old_times, 0);
    StagedItem second = stage_in(src, "set", settings);
    assert_true(second.outcome == StageOutcome::miss);
    assert_true(second.manifest_hash == first.manifest_hash);  // size and mtime alone cannot tell
    assert_true(read_file(dir.path() + "/job/set/weights") == "version-2");

    ::unlink((dir.path() + "/job/set").c_str());
    StagedItem third = stage_in(src, "set", settings);
    assert_true(third.outcome == StageOutcome::hit);
}

static void a_sparse_file_keeps_its_holes(void**) {
    TempDir dir;
    std::string src = dir.make_dir("src");
    std::string f = src + "/sparse";
    {
        aihpc::UniqueFd fd(::open(f.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
        assert_int_equal(::pwrite(fd.get(), "head", 4, 0), 4);
        assert_int_equal(::pwrite(fd.get(), "middle", 6, 100 << 20), 6);
        assert_int_equal(::ftruncate(fd.get(), 600ll << 20), 0);  // a hole at the end too
    }
    struct stat st {};
    ::stat(f.c_str(), &st);
    if (static_cast<std::uint64_t>(st.st_blocks) * 512 >= static_cast<std::uint64_t>(st.st_size)) {
        skip();  // the scratch file system keeps no holes; nothing to check here
        return;
    }
    aihpc::UniqueFd fd(::open(src.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    for (bool hash : {false, true}) {
        Manifest m = scan_tree(fd.get(), src, 2u);
        aihpc::UniqueFd dst(::open(dir.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        CopyOptions options;
        options.threads = 4;
        options.hash = hash;  // with hashing the file is one piece; without, 64 MiB pieces
        std::string name = hash ? "hashed" : "split";
        copy_item(fd.get(), m, dst.get(), name, options, src, dir.path() + "/" + name);
        std::string copy = dir.path() + "/" + name + "/sparse";
        struct stat cst {};
        assert_int_equal(::stat(copy.c_str(), &cst), 0);
        assert_int_equal(cst.st_size, 600ll << 20);
        assert_true(static_cast<std::uint64_t>(cst.st_blocks) * 512 < (8ull << 20));
        aihpc::UniqueFd c(::open(copy.c_str(), O_RDONLY | O_CLOEXEC));
        char buf[8] = {};
        assert_int_equal(::pread(c.get(), buf, 4, 0), 4);
        assert_true(std::string(buf, 4) == "head");
        assert_int_equal(::pread(c.get(), buf, 6, 100 << 20), 6);
        assert_true(std::string(buf, 6) == "middle");
        assert_int_equal(::pread(c.get(), buf, 4, 50 << 20), 4);
        assert_true(std::string(buf, 4) == std::string(4, '\0'));
        if (hash) {
            aihpc::UniqueFd s(::open(f.c_str(), O_RDONLY | O_CLOEXEC));
            for (const ManifestEntry& e : m.entries)
                if (e.path == "sparse") assert_true(e.content_hash && *e.content_hash == hash_fd(s.get(), f));
        }
    }
}

#define T(f) cmocka_unit_test(f)

int main() {
    const struct CMUnitTest tests[] = {
        T(a_local_source_keeps_about_one_operation_per_cpu_in_flight),
        T(a_slow_source_keeps_many_in_flight_whatever_the_cpu_count),
        T(stage_threads_caps_the_operations_in_flight),
        T(the_pool_grows_to_the_latency_sized_count_on_a_slow_source),
        T(the_pool_stays_at_the_cpu_count_on_a_fast_source),
        T(long_operations_that_never_wait_do_not_grow_the_pool),
        T(slow_listings_grow_the_pool_among_fast_stats),
        T(a_pool_runs_again_with_its_workers_and_its_size),
        T(tasks_queued_by_tasks_all_run_before_the_pool_returns),
        T(the_first_failure_stops_the_pool_and_is_rethrown),
        T(a_scan_reads_each_directory_once_and_stats_each_entry_once),
        T(a_copy_costs_an_open_a_read_and_a_stat_per_small_file),
        T(a_fifo_put_in_place_of_a_scanned_file_fails_the_copy_without_blocking),
        T(a_fifo_given_as_the_source_is_refused_without_blocking),
        T(a_file_changed_with_its_size_and_mtime_put_back_is_staged_again),
        T(a_sparse_file_keeps_its_holes),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
