// What the fuzz targets share: a check that turns a broken invariant into a crash the
// fuzzer reports, and a private directory for the parsers that read files.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace aihpc::fuzz {

// A parser accepted the input but broke a promise of its interface (a round trip that
// does not hold): as much a bug as a crash.
inline void check(bool holds, const char* promise) {
    if (holds) return;
    std::fprintf(stderr, "fuzz check failed: %s\n", promise);
    std::abort();
}

// A private temporary directory, made once per process and removed at exit.
inline const std::string& scratch_dir() {
    // Never destroyed: the removal at exit still needs the name.
    static const std::string* const dir = [] {
        std::string pattern = (std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") + std::string("/aihpc-fuzz.XXXXXX");
        if (!::mkdtemp(pattern.data())) std::abort();
        std::atexit([] { std::error_code ignored; std::filesystem::remove_all(scratch_dir(), ignored); });
        return new std::string(pattern);
    }();
    return *dir;
}

// Replaces `path` with exactly `text`.
inline void write_whole_file(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    if (!out.flush()) std::abort();
}

}  // namespace aihpc::fuzz
