// The pieces of a step's staging on a node that aihpc-node does for slurmstepd: root's
// (the job's directories under local_root and its share of the node cache, the cache's
// accounting, the record of a kept or delivered stage-out, the mounts of images, the
// job epilog) and the user's (the stage-in with its read-once fan-out, the stage-out
// that the task wrapper did not finish, an image's digest, the epilog's delivery of what
// was kept). Each takes the request slurmstepd sent and answers on the helper's channel
// (lib/common/node_helper.hpp); which user runs it is the caller's choice, but for
// prepare_stage_in, which drops to the job's user itself between root's part and the
// user's. Errors are thrown as aihpc::Error, which the helper sends as its error.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/node_helper.hpp"
#include "config/site_config.hpp"
#include "stage/node_layout.hpp"
#include "stage/node_request.hpp"

namespace aihpc::stage::node {

// The id Slurm gives a job's batch step (SLURM_BATCH_SCRIPT).
inline constexpr std::uint32_t batch_step_id = 0xfffffffb;

// The request's node's local_root, the job's id as text, and the job's dirs below it.
std::string local_root(const NodeRequest& r);
std::string job_text(const NodeRequest& r);
JobLayout layout(const NodeRequest& r);
// The site's stage_threads, or the default where it left them unset.
unsigned stage_threads(const config::SiteConfig& site);
// Each --aihpc-stage-out item of the step: LOCAL, and DEST expanded and made absolute.
std::vector<KeptDelivery> planned_deliveries(const NodeRequest& r);

// As root: the job's and the user's directories, root's record that the step's
// stage-out is still due, and the user's share of the node cache. Result: "MAX LOW".
void prepare(const NodeRequest& r, const HelperChannel& channel);
// As root, after the user's stage-in: what the user's cache now holds, into the ledger.
void account(const NodeRequest& r, const HelperChannel& channel);
// As root, after a stage-out that did not deliver: the job's stage dir is kept.
void keep(const NodeRequest& r, const HelperChannel& channel);
// As the user: every item staged, the leases handed over. Result: the items.
void stage_in(const NodeRequest& r, const HelperChannel& channel);
// As root, then as the job's user for good: prepare, then the stage-in with prepare's
// limits (in `r`). The result is stage-in's.
void prepare_stage_in(NodeRequest& r, const HelperChannel& channel);
// As root: the squashfs items named in r.mounts mounted for the user.
void mount_images(const NodeRequest& r, const HelperChannel& channel);
// As the user: the step's stage-out that its last task did not finish.
void stage_out(const NodeRequest& r, const HelperChannel& channel);
// As root: the record that the step delivered.
void delivered(const NodeRequest& r, const HelperChannel& channel);
// As the user: the job's image resolved and its content hash.
void digest(const NodeRequest& r, const HelperChannel& channel);
// As the job's user, from its epilog: the kept stage-out finished within the deadline.
void deliver_kept(const NodeRequest& r, const HelperChannel& channel);
// As root, from the job epilog: the job's mounts and stage dirs go, or stay kept.
void epilog(const NodeRequest& r, const HelperChannel& channel);

}  // namespace aihpc::stage::node
