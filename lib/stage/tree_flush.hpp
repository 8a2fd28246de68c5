// Flushing a written tree to disk: what a stage makes durable before it publishes it,
// and no more than that.
#pragma once
#include <string>

namespace aihpc::stage {

// Makes every regular file and directory below dir_fd, and dir_fd itself, durable,
// `threads` at a time, so that only what was written is flushed, never the whole file
// system (as syncfs does). Each file's fsync where nothing better is known (a network
// file system, whose every fsync waits on its server: `threads` of them in flight); on a
// journaled ext4 or XFS, each file's data written and waited for, then one journal
// commit and each directory's fsync, with at most twice the usable CPUs at work, since
// there the cost is the CPU that submits the writeback. Symlinks are persisted by their
// directory's fsync, and a directory on another device is left alone. Throws
// aihpc::Error naming the entry.
inline constexpr unsigned fsync_threads = 32;
void fsync_tree(int dir_fd, unsigned threads, const std::string& shown_path);
// The same for one item: a directory tree, or a lone file and its parent directory.
void fsync_item_at(int parent_fd, const std::string& name, unsigned threads, const std::string& shown_path);

}  // namespace aihpc::stage
