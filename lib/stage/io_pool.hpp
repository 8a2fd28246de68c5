// How much source I/O the staging engine keeps in flight, and the workers that carry it.
// A copy from a network file system is bound by round trips (lookup, open, read, stat,
// each a request to a server), not by CPU: it needs as many requests in flight as the
// latency hides, whatever the core count. From the page cache, each operation is CPU
// work, and more workers than CPUs only contend. The pool measures the latency of the
// operations it runs and grows from the CPU count to the latency-sized count, never past
// the cap (stage_threads).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace aihpc::stage {

// The cap on work in flight when the site sets no stage_threads.
inline constexpr unsigned default_in_flight_cap = 64;

// Pure: how many source operations to keep in flight, from the median latency of one
// operation as measured, the CPUs this process may use, and the cap. By Little's law, a
// CPU issuing an operation every `cpu_cost_ns` keeps latency / cpu_cost_ns of them in
// flight: about one per CPU on a local source, dozens on a remote one.
unsigned choose_in_flight(std::uint64_t median_latency_ns, unsigned cpus, unsigned cap);

// The CPUs this process may run on (a job's cgroup, not the whole node).
unsigned usable_cpus();

// Counters of the source operations of one stage (each a round trip on a network file
// system), for aihpc-stage --json.
struct SourceOps {
    std::atomic<std::uint64_t> ops{0};            // opens, reads, stats, listings, closes
    std::atomic<std::uint64_t> in_flight{0};
    std::atomic<std::uint64_t> peak_in_flight{0};
    std::atomic<std::uint64_t> latency_ns_total{0};

    // Marks one operation as started; the returned time is handed to done().
    std::uint64_t start();
    // Marks it finished: returns its latency in nanoseconds.
    std::uint64_t done(std::uint64_t started_ns);
};

// What a timed operation is, for the pool's probe, which sizes the pool by each kind on
// its own: the stat of an entry, the listing of a directory (of which a tree has far
// fewer), or an open or read of a file. A source may answer one kind from a cache and
// not another: a network file system that lists directories with every entry's
// attributes (NFS's READDIRPLUS) answers a scan's stats from the client's cache, while
// its listings, and every open of a file, are round trips.
enum class OpKind { entry = 0, listing = 1, data = 2 };

// Times one source operation for the counters and, while the pool is still sizing
// itself, for its probe: then it also notes whether the operation waited (the thread
// gave up its CPU, as for a round trip or a disk read) or was CPU work (the page cache,
// the client's attribute cache), which a loaded machine's preemption does not blur.
class TimedOp {
public:
    TimedOp(SourceOps* ops, class IoPool* pool, OpKind kind = OpKind::entry);
    ~TimedOp();
    TimedOp(const TimedOp&) = delete;
    TimedOp& operator=(const TimedOp&) = delete;

private:
    SourceOps* ops_;
    IoPool* pool_;
    OpKind kind_;
    long waits_ = -1;  // voluntary context switches before it, while probing
    std::uint64_t started_;
};

// A queue of tasks run by a pool that starts at `initial` workers and grows, once the
// first operations of a kind have been timed, to choose_in_flight() of their median
// latency, an operation that did not wait counting as none.
// Tasks may submit more tasks. run() returns when the queue is empty and no task runs;
// the first exception a task threw is rethrown there, and no task starts after it. The
// workers outlive run(): a stage's scan and copy share them (and what the probe learnt),
// and they leave with the pool.
class IoPool {
public:
    IoPool(unsigned initial, unsigned cap);
    ~IoPool();
    IoPool(const IoPool&) = delete;
    IoPool& operator=(const IoPool&) = delete;

    void submit(std::function<void()> task);
    // Runs before what is queued: work that holds a resource (an open directory) is
    // finished before new work that would open more.
    void submit_first(std::function<void()> task);
    void run();

    // A source operation took this long, and waited or not: feeds the probe that sizes
    // the pool. Operations that never wait have no latency to hide.
    void observe_latency(std::uint64_t ns, bool waited = true, OpKind kind = OpKind::entry);
    // Whether operations of this kind are still being sampled.
    bool probing(OpKind kind) const { return !sized_[static_cast<int>(kind)].load(std::memory_order_relaxed); }
    // Starts the latency-sized count of workers at once, skipping the probe (the scan
    // already measured the source).
    void grow_to(unsigned workers);

    unsigned workers() const { return workers_.load(); }
    std::uint64_t median_latency_ns() const;
    bool failed() const { return failed_.load(std::memory_order_relaxed); }

    // Samples of each kind taken before the pool is sized by them. A tree has a listing
    // for every hundred or so entries, and a large file is read in a few long pieces, so
    // few listings, opens and reads decide; stats, which one source may answer from a
    // cache for some entries and not others, take more.
    static constexpr std::size_t probe_samples = 24;
    static constexpr std::size_t few_probe_samples = 4;
    static constexpr int kinds = 3;

private:
    void work();
    void spawn(unsigned count);  // lock_ held

    unsigned cap_;
    std::atomic<unsigned> workers_{0};
    mutable std::mutex lock_;
    std::condition_variable ready_;
    std::deque<std::function<void()>> queue_;
    std::condition_variable idle_;
    std::size_t busy_ = 0;
    bool running_ = false;
    bool stopping_ = false;
    std::vector<std::thread> threads_;
    std::exception_ptr error_;
    std::atomic<bool> failed_{false};
    std::vector<std::uint64_t> samples_[kinds];
    std::atomic<bool> sized_[kinds] = {false, false, false};
    std::uint64_t median_ns_ = 0;  // the largest of the kinds measured
};

}  // namespace aihpc::stage
