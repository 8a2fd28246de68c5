// bench/stage/prepare-cost.sh's driver. A node cache where one user (uid 1000) holds
// FILES cached files and another (uid 1001) a few; the ledger is made once. Then, in
// one run, it times what a prepare of uid 1001 costs, that is root_cache_limits, which
// measures 1001 alone and takes 1000's measures as recorded; against the ledger made
// anew, which walks every user's cache (what every prepare did before the ledger kept
// its measures). Prints one line per round: "user_s full_s".
//   aihpc-bench-prepare-cost DIR FILES ROUNDS
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "stage/cache_ledger.hpp"
#include "stage/fs.hpp"

namespace {

using Clock = std::chrono::steady_clock;

void make_dir(const std::string& path, mode_t mode) {
    if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) aihpc::throw_errno("cannot make " + path);
}

// FILES empty files in entries of 10,000 files each, in directories of 1,000.
void fill_cache(const std::string& user_dir, unsigned long files) {
    make_dir(user_dir, 0700);
    make_dir(user_dir + "/entries", 0700);
    for (unsigned long made = 0, entry = 0; made < files; ++entry) {
        std::string e = user_dir + "/entries/" + std::string(31, 'a') + std::to_string(100000 + entry);
        make_dir(e, 0700);
        make_dir(e + "/data", 0700);
        aihpc::UniqueFd info(::open((e + "/info").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
        for (unsigned long d = 0; d < 10 && made < files; ++d) {
            std::string dir = e + "/data/d" + std::to_string(d);
            make_dir(dir, 0700);
            for (unsigned long f = 0; f < 1000 && made < files; ++f, ++made) {
                int fd = ::open((dir + "/f" + std::to_string(f)).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
                if (fd < 0) aihpc::throw_errno("cannot make a file in " + dir);
                ::close(fd);
            }
        }
    }
}

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fputs("usage: aihpc-bench-prepare-cost DIR FILES ROUNDS\n", stderr);
        return 2;
    }
    try {
        std::string dir = argv[1];
        unsigned long files = std::strtoul(argv[2], nullptr, 10);
        int rounds = std::atoi(argv[3]);
        make_dir(dir, 0700);
        make_dir(dir + "/cache", 0700);
        make_dir(dir + "/jobs", 0700);
        fill_cache(dir + "/cache/1000", files);
        fill_cache(dir + "/cache/1001", 100);
        aihpc::UniqueFd cache(::open((dir + "/cache").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!cache) aihpc::throw_errno("cannot open " + dir + "/cache");
        std::uint64_t gib = std::uint64_t{1} << 30;
        aihpc::stage::refresh_cache_ledger(cache.get(), dir + "/cache");  // the ledger, made once
        for (int round = 0; round < rounds; ++round) {
            Clock::time_point start = Clock::now();
            aihpc::stage::root_cache_limits(cache.get(), 1001, 100 * gib, 90 * gib, 0, dir + "/cache");
            double user_s = seconds_since(start);
            // Without the ledger's measures, every user's cache is walked again.
            ::unlinkat(cache.get(), "ledger", 0);
            start = Clock::now();
            aihpc::stage::refresh_cache_ledger(cache.get(), dir + "/cache");
            double full_s = seconds_since(start);
            std::printf("%.6f %.6f\n", user_s, full_s);
            std::fflush(stdout);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "aihpc-bench-prepare-cost: %s\n", e.what());
        return 1;
    }
    return 0;
}
