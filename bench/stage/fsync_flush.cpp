// bench/stage/fsync.sh's driver: flushes one freshly written tree to disk, either as a
// cache publish and a stage-out now do (fsync of its files and directories, in
// parallel) or with syncfs of the whole file system, and prints the seconds it took.
//   aihpc-bench-fsync fsync|syncfs DIR [THREADS]
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "stage/fs.hpp"

int main(int argc, char** argv) {
    if (argc < 3 || (std::strcmp(argv[1], "fsync") != 0 && std::strcmp(argv[1], "syncfs") != 0)) {
        std::fprintf(stderr, "usage: aihpc-bench-fsync fsync|syncfs DIR [THREADS]\n");
        return 2;
    }
    unsigned threads = argc > 3 ? static_cast<unsigned>(std::atoi(argv[3])) : 8;
    try {
        aihpc::UniqueFd dir = aihpc::stage::open_dir(argv[2]);
        auto start = std::chrono::steady_clock::now();
        if (std::strcmp(argv[1], "syncfs") == 0) {
            if (::syncfs(dir.get()) != 0) aihpc::throw_errno(std::string("cannot syncfs ") + argv[2]);
        } else {
            aihpc::stage::fsync_tree(dir.get(), threads, argv[2]);
        }
        std::printf("%.6f\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "aihpc-bench-fsync: %s\n", e.what());
        return 1;
    }
    return 0;
}
