// bench/stage/fsync.sh's driver. Flushes one freshly written tree to disk, either as a
// cache publish and a stage-out now do (fsync of its own files and directories, in
// parallel) or with syncfs of the whole file system, and prints the seconds it took:
//   aihpc-bench-fsync fsync|syncfs DIR [THREADS]
// Or times a whole publish, the copy included, the way the engine makes a cache entry:
// SRC is scanned and copied to DIR (which must not exist), then flushed one way:
//   aihpc-bench-fsync publish-fsync|publish-syncfs SRC DIR [THREADS]
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
#include "stage/manifest.hpp"
#include "stage/tree_copy.hpp"
#include "stage/tree_flush.hpp"

namespace {

void flush(bool use_syncfs, int dir_fd, unsigned threads, const std::string& shown) {
    if (use_syncfs) {
        if (::syncfs(dir_fd) != 0) aihpc::throw_errno("cannot syncfs " + shown);
    } else {
        aihpc::stage::fsync_tree(dir_fd, threads, shown);
    }
}

}  // namespace

int main(int argc, char** argv) {
    std::string mode = argc > 1 ? argv[1] : "";
    bool publish = mode.rfind("publish-", 0) == 0;
    std::string how = publish ? mode.substr(8) : mode;
    if ((how != "fsync" && how != "syncfs") || argc < (publish ? 4 : 3)) {
        std::fprintf(stderr,
                     "usage: aihpc-bench-fsync fsync|syncfs DIR [THREADS]\n"
                     "       aihpc-bench-fsync publish-fsync|publish-syncfs SRC DIR [THREADS]\n");
        return 2;
    }
    const int threads_arg = publish ? 4 : 3;
    unsigned threads = argc > threads_arg ? static_cast<unsigned>(std::atoi(argv[threads_arg])) : aihpc::stage::fsync_threads;
    try {
        if (!publish) {
            aihpc::UniqueFd dir = aihpc::stage::open_dir(argv[2]);
            auto start = std::chrono::steady_clock::now();
            flush(how == "syncfs", dir.get(), threads, argv[2]);
            std::printf("%.6f\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
            return 0;
        }
        std::string src = argv[2], dst = argv[3];
        aihpc::UniqueFd src_fd = aihpc::stage::open_dir(src);
        aihpc::UniqueFd parent = aihpc::stage::open_dir(aihpc::stage::dirname_of(dst));
        auto start = std::chrono::steady_clock::now();
        aihpc::stage::Manifest manifest = aihpc::stage::scan_tree(src_fd.get(), src, aihpc::stage::default_copy_threads());
        aihpc::stage::CopyOptions options;
        options.threads = aihpc::stage::default_copy_threads();
        options.read_only = true;
        std::string name = aihpc::stage::basename_of(dst);
        aihpc::stage::copy_item(src_fd.get(), manifest, parent.get(), name, options, src, dst);
        aihpc::UniqueFd copy = aihpc::stage::open_dir(dst);
        flush(how == "syncfs", copy.get(), threads, dst);
        std::printf("%.6f\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "aihpc-bench-fsync: %s\n", e.what());
        return 1;
    }
    return 0;
}
