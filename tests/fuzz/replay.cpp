// Replays a fuzz target's seed corpus and regression inputs without libFuzzer, so that
// `make check` (g++, no clang) fails when a parser crashes again on an input that once
// crashed it. The program is named replay_X and links fuzz_X.cpp; it reads
// $srcdir/tests/fuzz/corpus/fuzz_X/ and $srcdir/tests/fuzz/regressions/fuzz_X/.
//
// Each input runs in a child process, so that one crash is reported with its file and
// the others still run. A child that dies by a signal or exits non-zero has crashed.
// Inputs listed in tests/fuzz/unfixed-crashes are crashes known to be fixed elsewhere:
// they must still crash here (the list is then out of date when they do not).
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) __attribute__((weak));

namespace fs = std::filesystem;

namespace {

std::string read_bytes(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// "fuzz_X/FILE  what it does" lines, '#' comments.
std::map<std::string, std::string> unfixed_crashes(const fs::path& list) {
    std::map<std::string, std::string> out;
    std::ifstream in(list);
    for (std::string line; std::getline(in, line);) {
        if (line.empty() || line[0] == '#') continue;
        auto space = line.find_first_of(" \t");
        out[line.substr(0, space)] = space == std::string::npos ? "" : line.substr(line.find_first_not_of(" \t", space));
    }
    return out;
}

// How the child ended: "" when it returned normally.
std::string run_in_child(const std::string& input) {
    std::fflush(nullptr);
    pid_t pid = ::fork();
    if (pid < 0) return std::string("cannot fork: ") + std::strerror(errno);
    if (pid == 0) {
        // A guard, not a measure: an input that makes a parser spin or grow without end
        // (what the fuzzer reports as a hang or an out-of-memory) is stopped here. A parse
        // of these few bytes takes milliseconds, sanitizers included, on any machine.
        rlimit cpu{10, 10};
        ::setrlimit(RLIMIT_CPU, &cpu);
#if !defined(__SANITIZE_ADDRESS__)
        rlimit memory{4UL << 30, 4UL << 30};
        ::setrlimit(RLIMIT_AS, &memory);
#endif
        LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(input.data()), input.size());
        std::fflush(nullptr);
        ::_exit(0);
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return std::string("waitpid: ") + std::strerror(errno);
    if (WIFSIGNALED(status)) return std::string("killed by ") + ::strsignal(WTERMSIG(status));
    if (WEXITSTATUS(status) != 0) return "exit status " + std::to_string(WEXITSTATUS(status));
    return "";
}

}  // namespace

int main(int argc, char** argv) {
    std::string program = fs::path(argv[0]).filename().string();
    if (program.rfind("replay_", 0) != 0) {
        std::fprintf(stderr, "%s: the program must be named replay_TARGET\n", program.c_str());
        return 2;
    }
    std::string target = "fuzz_" + program.substr(7);
    const char* srcdir = std::getenv("srcdir");
    fs::path fuzz_dir = fs::path(srcdir ? srcdir : ".") / "tests" / "fuzz";
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    auto unfixed = unfixed_crashes(fuzz_dir / "unfixed-crashes");

    std::vector<std::pair<std::string, fs::path>> inputs;  // (target/name, path)
    for (const char* kind : {"corpus", "regressions"}) {
        fs::path dir = fuzz_dir / kind / target;
        if (!fs::is_directory(dir)) continue;
        for (const auto& entry : fs::directory_iterator(dir))
            if (entry.is_regular_file()) inputs.emplace_back(target + "/" + entry.path().filename().string(), entry.path());
    }
    std::sort(inputs.begin(), inputs.end());
    if (inputs.empty()) {
        std::printf("not ok - %s: no input under %s/corpus/%s\n", target.c_str(), fuzz_dir.c_str(), target.c_str());
        return 1;
    }

    int failures = 0, number = 0;
    for (const auto& [name, path] : inputs) {
        std::string ended = run_in_child(read_bytes(path));
        auto known = unfixed.find(name);
        ++number;
        if (known == unfixed.end()) {
            if (ended.empty()) {
                std::printf("ok %d - %s\n", number, path.c_str());
            } else {
                std::printf("not ok %d - %s crashed the parser (%s)\n", number, path.c_str(), ended.c_str());
                ++failures;
            }
        } else if (ended.empty()) {
            std::printf("not ok %d - %s no longer crashes: remove its line from %s/unfixed-crashes\n", number, path.c_str(),
                        fuzz_dir.c_str());
            ++failures;
        } else {
            std::printf("ok %d - %s # TODO crashes still (%s): %s\n", number, path.c_str(), ended.c_str(), known->second.c_str());
        }
    }
    for (const auto& [name, what] : unfixed)
        if (name.rfind(target + "/", 0) == 0 &&
            std::none_of(inputs.begin(), inputs.end(), [&](const auto& input) { return input.first == name; })) {
            std::printf("not ok - %s is listed in unfixed-crashes but is not in regressions/\n", name.c_str());
            ++failures;
        }
    std::printf("1..%d\n", number);
    return failures ? 1 : 0;
}
