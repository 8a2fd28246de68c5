// The parallel copy of one staged item: a pure plan (which directories, links and file
// pieces, in what order) and the engine that carries it out with worker threads.
#pragma once
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "stage/io_pool.hpp"
#include "stage/manifest.hpp"

namespace aihpc::stage {

// Counters a progress display may read while a copy runs.
struct CopyProgress {
    std::atomic<std::uint64_t> bytes{0};
    std::atomic<std::uint64_t> files{0};
    std::atomic<std::uint64_t> total_bytes{0};
    std::atomic<std::uint64_t> total_files{0};
};

// One unit of work for a copy worker: a whole file, or a piece of a large one.
struct CopyPiece {
    std::size_t entry = 0;       // index into Manifest::entries
    std::uint64_t offset = 0;
    std::uint64_t length = 0;
    bool whole_file = true;
    std::size_t directory = 0;   // index into CopyPlan::listings of the file's directory
};

// A directory of the item with its direct entries in name order (the scan's order).
// Workers open each directory once for all its files, and compare the source's listing
// with it after the copy, so a file added or removed during the copy is detected.
struct DirectoryListing {
    std::optional<std::size_t> entry;  // index into Manifest::entries; none for the item's root
    std::vector<std::size_t> children;
};

struct CopyPlan {
    std::vector<std::size_t> directories;  // parents before children
    std::vector<std::size_t> symlinks;
    std::vector<std::size_t> split_files;  // files copied in pieces: created and sized first
    // The pieces of files larger than one piece, largest first; then the other files
    // whole, one directory's files together in name order. So the tail is many small
    // files, and a worker keeps the same directories open from one file to the next.
    std::vector<CopyPiece> pieces;
    std::vector<DirectoryListing> listings;  // [0] is the root; parents before children
};

struct PieceSizing {
    std::uint64_t split_above = 256ull << 20;  // files larger than this are split
    std::uint64_t piece_bytes = 64ull << 20;
};

// Splitting is disabled when content hashes are computed (a hash is one stream).
// Throws aihpc::Error when an entry comes before its directory.
CopyPlan plan_copy(const Manifest& manifest, bool allow_split, PieceSizing sizing = {});

// How the copy's files and directories are left.
struct CopyOptions {
    // Cap on source operations in flight (stage_threads). The workers start at
    // initial_workers (0: the usable CPUs) and grow to what the source's latency needs.
    unsigned threads = 4;
    unsigned initial_workers = 0;
    SourceOps* ops = nullptr;  // counts the copy's source operations, when given
    // The workers to run on, shared with the scan before, when given (threads and
    // initial_workers are then the pool's own).
    IoPool* pool = nullptr;
    bool read_only = false;   // cache entries: files 0444 (0555 if executable), dirs 0555
    bool hash = false;        // compute each file's xxh3 from the bytes read
    CopyProgress* progress = nullptr;
};

// The cap on work in flight when none was asked for (io_pool.hpp): the engine itself
// keeps few in flight on a fast local source and grows toward the cap on a slow one.
unsigned default_copy_threads();

// Mode given to a copied entry: its own, or the read-only form for a cache entry.
mode_t staged_mode(EntryType type, mode_t source_mode, bool read_only);

struct CopyStats {
    std::uint64_t files = 0;
    std::uint64_t bytes = 0;
    unsigned workers = 0;  // the copy's workers at its end
};

// Copies the item described by `manifest` from src_fd (its root directory, or the file
// itself for a lone file) to dst_parent_fd/dst_name, which must not exist. Sources are
// opened beneath src_fd and never through a symlink. Fills content hashes when
// options.hash. On failure the partial copy is left for the caller to remove (it owns
// the name).
// The copy is of the source as the manifest describes it, or it fails with "changed
// while staging": each file's type, mode, size and mtime are compared with the manifest
// once its bytes are copied, and each directory's listing, mode and mtime and each
// symlink's metadata once all files are. So no second scan is needed to trust it.
CopyStats copy_item(int src_fd, Manifest& manifest, int dst_parent_fd, const std::string& dst_name,
                    const CopyOptions& options, const std::string& shown_src, const std::string& shown_dst);

}  // namespace aihpc::stage
