#include "stage/io_pool.hpp"

#include <sched.h>
#include <sys/resource.h>
#include <time.h>

#include <algorithm>

namespace aihpc::stage {

namespace {

// What one source operation costs the CPU that issues it (a system call and, on a
// network file system, the client's share of the request): below this latency an
// operation is CPU work, above it the CPU would wait.
constexpr std::uint64_t cpu_cost_per_op_ns = 4000;

std::uint64_t now_ns() {
    struct timespec ts {};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

}  // namespace

unsigned choose_in_flight(std::uint64_t median_latency_ns, unsigned cpus, unsigned cap) {
    cap = std::max(1u, cap);
    cpus = std::max(1u, cpus);
    std::uint64_t wanted = static_cast<std::uint64_t>(cpus) * median_latency_ns / cpu_cost_per_op_ns;
    wanted = std::max<std::uint64_t>(wanted, cpus);
    return static_cast<unsigned>(std::min<std::uint64_t>(wanted, cap));
}

unsigned usable_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) != 0) return 4;
    return std::max(1, CPU_COUNT(&set));
}

std::uint64_t SourceOps::start() {
    ops.fetch_add(1, std::memory_order_relaxed);
    std::uint64_t now = in_flight.fetch_add(1, std::memory_order_relaxed) + 1;
    std::uint64_t peak = peak_in_flight.load(std::memory_order_relaxed);
    while (now > peak && !peak_in_flight.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
    }
    return now_ns();
}

std::uint64_t SourceOps::done(std::uint64_t started_ns) {
    std::uint64_t took = now_ns() - started_ns;
    in_flight.fetch_sub(1, std::memory_order_relaxed);
    latency_ns_total.fetch_add(took, std::memory_order_relaxed);
    return took;
}

namespace {

long voluntary_switches() {
    struct rusage usage {};
    return ::getrusage(RUSAGE_THREAD, &usage) == 0 ? usage.ru_nvcsw : -1;
}

}  // namespace

TimedOp::TimedOp(SourceOps* ops, IoPool* pool, OpKind kind) : ops_(ops), pool_(pool), kind_(kind) {
    if (pool_ && pool_->probing(kind_)) waits_ = voluntary_switches();
    started_ = ops ? ops->start() : now_ns();
}

TimedOp::~TimedOp() {
    std::uint64_t took = ops_ ? ops_->done(started_) : now_ns() - started_;
    if (pool_ && waits_ >= 0) pool_->observe_latency(took, voluntary_switches() != waits_, kind_);
}

IoPool::IoPool(unsigned initial, unsigned cap) : cap_(std::max(1u, cap)) {
    workers_ = std::clamp(initial, 1u, cap_);
    for (int k = 0; k < kinds; ++k)
        samples_[k].reserve(k == static_cast<int>(OpKind::entry) ? probe_samples : few_probe_samples);
}

IoPool::~IoPool() {
    {
        std::lock_guard<std::mutex> guard(lock_);
        queue_.clear();
        failed_ = true;
        stopping_ = true;
    }
    ready_.notify_all();
    for (std::thread& t : threads_)
        if (t.joinable()) t.join();
}

void IoPool::submit(std::function<void()> task) {
    {
        std::lock_guard<std::mutex> guard(lock_);
        if (failed_) return;
        queue_.push_back(std::move(task));
    }
    ready_.notify_one();
}

void IoPool::submit_first(std::function<void()> task) {
    {
        std::lock_guard<std::mutex> guard(lock_);
        if (failed_) return;
        queue_.push_front(std::move(task));
    }
    ready_.notify_one();
}

void IoPool::spawn(unsigned count) {
    for (unsigned i = 0; i < count; ++i) threads_.emplace_back([this] { work(); });
}

void IoPool::grow_to(unsigned workers) {
    std::lock_guard<std::mutex> guard(lock_);
    for (auto& sized : sized_) sized = true;
    unsigned target = std::clamp(workers, 1u, cap_);
    if (target <= workers_) return;
    if (running_) spawn(target - workers_);
    workers_ = target;
}

void IoPool::observe_latency(std::uint64_t ns, bool waited, OpKind kind) {
    int k = static_cast<int>(kind);
    if (sized_[k].load(std::memory_order_relaxed)) return;
    std::lock_guard<std::mutex> guard(lock_);
    if (sized_[k]) return;
    std::vector<std::uint64_t>& samples = samples_[k];
    samples.push_back(waited ? ns : 0);
    if (samples.size() < (kind == OpKind::entry ? probe_samples : few_probe_samples)) return;
    std::nth_element(samples.begin(), samples.begin() + static_cast<long>(samples.size() / 2), samples.end());
    std::uint64_t median = samples[samples.size() / 2];
    median_ns_ = std::max(median_ns_, median);
    sized_[k] = true;
    unsigned target = choose_in_flight(median, usable_cpus(), cap_);
    if (target <= workers_) return;
    if (running_) spawn(target - workers_);
    workers_ = target;
}

std::uint64_t IoPool::median_latency_ns() const {
    std::lock_guard<std::mutex> guard(lock_);
    return median_ns_;
}

void IoPool::work() {
    std::unique_lock<std::mutex> guard(lock_);
    while (true) {
        ready_.wait(guard, [&] { return !queue_.empty() || stopping_; });
        // After a failure the queue stays empty: it is cleared with the failure, under
        // this lock, and submit() takes nothing more.
        if (stopping_) return;
        std::function<void()> task = std::move(queue_.front());
        queue_.pop_front();
        ++busy_;
        guard.unlock();
        std::exception_ptr error;
        try {
            task();
        } catch (...) {
            error = std::current_exception();
        }
        task = nullptr;
        guard.lock();
        --busy_;
        if (error && !failed_) {
            error_ = error;
            failed_ = true;
            queue_.clear();
        }
        // Nothing queued and nothing running that could queue more: the run is over.
        if (busy_ == 0 && queue_.empty()) idle_.notify_all();
    }
}

void IoPool::run() {
    std::unique_lock<std::mutex> guard(lock_);
    running_ = true;
    if (threads_.size() < workers_) spawn(workers_ - static_cast<unsigned>(threads_.size()));
    ready_.notify_all();
    idle_.wait(guard, [&] { return busy_ == 0 && queue_.empty(); });
    if (error_) std::rethrow_exception(error_);
}

}  // namespace aihpc::stage
