// libFuzzer target: what lib/stage reads back from files a user can write: a cache
// entry's manifest, a job's items record (jobs/<jobid>.aihpc/items), a cache entry's info
// record (entries/<key>/info, read for a hit and for the node-wide accounting), and the
// escaped path text of manifests. What parses must also survive its own round trip, as
// the records are written, read back and written again.
// Input: the first byte picks the record ('0' to '3'), the rest is its text.
#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/error.hpp"
#include "fuzz_support.hpp"
#include "stage/manifest.hpp"
#include "stage/node_cache.hpp"
#include "stage/node_layout.hpp"

namespace {

constexpr const char* entry_key = "0123456789abcdef0123456789abcdef";

// A user's cache with one entry whose info file each input replaces.
aihpc::stage::NodeCache& cache() {
    static aihpc::stage::NodeCache cache = [] {
        aihpc::stage::NodeCache made(aihpc::fuzz::scratch_dir() + "/cache");
        std::filesystem::create_directories(made.entry_path(entry_key) + "/data");
        return made;
    }();
    return cache;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    cache();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
    using namespace aihpc::stage;
    using aihpc::fuzz::check;
    try {
        switch (static_cast<unsigned char>(data[0] - '0') % 4) {
        case 0: {
            std::string once = Manifest::parse(text).serialize();
            check(Manifest::parse(once).serialize() == once, "a parsed manifest reads back as itself");
            break;
        }
        case 1: {
            std::string once = format_job_items(parse_job_items(text));
            check(format_job_items(parse_job_items(once)) == once, "parsed job items read back as themselves");
            break;
        }
        case 2: {
            aihpc::fuzz::write_whole_file(cache().entry_path(entry_key) + "/info", text);
            cache().stored_info(entry_key);
            aihpc::UniqueFd dir(::open(cache().dir().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
            cache_bytes_at(dir.get());
            break;
        }
        case 3:
            if (auto path = unescape_path(text)) check(unescape_path(escape_path(*path)) == path, "an escaped path reads back as itself");
            break;
        }
    } catch (const aihpc::Error&) {
        // A correct refusal.
    }
    return 0;
}
