// Read once per job: on a step over N > 1 nodes, the step's node 0 reads each source
// and sends it to the step's other nodes with sbcast, as one file (a squashfs image or a
// lone file as it is, an archive as copied before its extraction, a tree as a pax tar
// written from node 0's cache entry), Slurm's own broadcast through slurmd's tree, which
// authenticates with the job's credential and writes as the job's user. The shared
// file system serves the source once, not N times.
//
// The sender stages the item as usual (from the source on a miss, from its cache on a
// hit), then sends the data, then a small marker with the data's size and xxh3. Each
// other node that misses in its cache waits for the marker, checks the received file
// against it (and a lone file against the source's size), and publishes it into its cache as a local stage does: atomically, accounted,
// under the source's own cache key. A node that hits takes no part in the copy (what
// sbcast writes there is left to the job's end). A node whose copy did not arrive, or arrived
// other than sent, reads the source itself: the job never fails for a peer.
//
// The received files lie in the job's meta dir, as the sender's node names it: the same
// path on every node where local_root holds no %n, and, in a cluster of one host whose
// nodes share a file system (the mini-cluster), the sender's own. A tree that arrives
// is extracted and kept only when it is the source's tree, as scanned here. Node 0 sends
// a cache entry once per job and node list: a later step's nodes hold it warm, and get a
// marker that nothing comes.
#pragma once
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "common/fd.hpp"
#include "stage/manifest.hpp"

namespace aihpc::stage {

struct FanoutStep {
    std::uint32_t job_id = 0;
    std::uint32_t step_id = 0;
    std::uint32_t nodes = 1;       // in the step
    std::uint32_t index = 0;       // this node's, 0 is the sender
    std::string sender;            // node 0's name
    std::string dir;               // where sbcast writes, as node 0 names it
    std::string nodelist;          // the step's nodes
    std::chrono::seconds wait{600};  // the longest a receiver waits for node 0
    bool sender_keeps_copy = false;  // the nodes share dir (a one-host cluster)
};

// Pure: the received data and its marker for item `item` of the step.
std::string fanout_data_path(const FanoutStep& step, std::size_t item);
std::string fanout_marker_path(const FanoutStep& step, std::size_t item);

// Pure: the marker's text for a file of `size` bytes with content hash `xxh3`, and back.
std::string format_fanout_marker(std::uint64_t size, const std::string& xxh3);
struct FanoutMarker {
    std::uint64_t size = 0;
    std::string xxh3;
};
std::optional<FanoutMarker> parse_fanout_marker(const std::string& text);

// As the user, on node 0: sends the staged file at `data_path` to the step's nodes,
// then its marker. Returns a line for --aihpc-verbose; throws nothing (a failed send
// leaves the other nodes to read the source themselves).
std::string send_to_peers(const FanoutStep& step, std::size_t item, const std::string& data_path, bool read_source);

// As the user, on node 0: whether this job already sent the cache entry `key` to this
// very node list (an earlier step), so the nodes hold it warm; and the record of a send.
// Kept in node 0's own meta dir (meta_fd), one line per send.
bool sent_before(int meta_fd, const FanoutStep& step, const std::string& key);
void record_sent(int meta_fd, const FanoutStep& step, const std::string& key);

// As the user, on node 0, when it has no file to send for `item` (an archive it found
// extracted in its cache): tells the other nodes so, and they read the source at once.
std::string send_nothing_to_peers(const FanoutStep& step, std::size_t item, const std::string& why);

// As the user, on another node: waits for node 0's marker of `item`, then opens the
// received file and checks it against the marker and `source` (the source's manifest
// of one file). Returns the open file, or nullopt with `why` set. The received file is
// unlinked once open: what the caller copies from it is gone with the descriptor.
std::optional<UniqueFd> receive_from_peer(const FanoutStep& step, std::size_t item, const Manifest& source, std::string* why);

}  // namespace aihpc::stage
