// A staged squashfs image (--aihpc-stage=IMAGE.sqsh[:NAME]) is one file in the cache,
// mounted read-only at DIR/NAME with squashfuse, as the job's user: the kernel never
// parses a file a user wrote, and a million small files cost one staged file instead
// of a million copies. The mount is nosuid and nodev (fusermount makes a user's mount
// so in any case), and an image holding devices, setuid or setgid files, FIFOs or
// sockets is refused before it is mounted, as `aihpc-stage pack` refuses to make one.
//
// The mount lives as long as squashfuse: where slurmstepd ends a step's processes
// (proctrack/cgroup), the next step of the job finds it dead and mounts it again; the
// job epilog detaches whatever is left below the job's stage dir (unmount_below).
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/user_process.hpp"

namespace aihpc::stage {

struct ImageSuperblock {
    std::uint32_t inodes = 0;
    std::uint32_t block_size = 0;
    std::uint64_t bytes_used = 0;
};

// Reads and checks the superblock at the start of the open file `fd`: squashfs 4, a
// sane block size, and every byte it says the image uses present in the file (a
// truncated copy is refused here, not at its first read). Throws naming `shown`.
ImageSuperblock check_image_superblock(int fd, const std::string& shown);

// Pure: the refusals for an image from `unsquashfs -lln` output, one line each, naming
// the entry; empty when the image holds only files, directories and symlinks.
std::vector<std::string> refused_image_entries(const std::string& listing);

// Lists the image at `path` with unsquashfs (squashfs-tools), which also reads every
// directory and inode table, and refuses it for any refused entry. Throws naming `shown`.
void check_image_entries(const std::string& path, const std::string& shown);

// The hidden name beside DIR/NAME that points at the image the mount at NAME shows.
std::string image_link_name(const std::string& name);

// What a stage finds at DIR/NAME for an image that must be shown there: a live mount of
// this very image (kept), or the need for one (wanted: nothing mounted, a mount whose
// squashfuse is gone, or a mount of another image). An empty mount point is made when
// nothing is there. `image_target` and `previous_target` say what the hidden link
// points at now and pointed at before this stage.
enum class ImageMount { kept, wanted, mounted };
const char* to_string(ImageMount state);  // "kept", "wanted", "mounted"
ImageMount image_mount_needed(int dir_fd, const std::string& shown_dir, const std::string& name,
                              const std::string& image_target, const std::string& previous_target);

// By the user who runs it, through fusermount3 (aihpc-stage in by hand): mounts the image
// at dir_fd/NAME unless a live mount of it is kept. Throws saying what failed, nothing
// left mounted by this call.
ImageMount mount_image(int dir_fd, const std::string& shown_dir, const std::string& name, const std::string& image_target,
                       const std::string& previous_target);

// As root, for a job whose helpers run with no_new_privs (so fusermount3 cannot gain
// root): what fusermount3 would do. Whatever is mounted at job_dir/NAME is detached; the
// mount point, a directory of the user's, is opened beneath job_dir without following a
// symlink; root opens /dev/fuse and mounts it there (ro, nosuid, nodev, for the user's
// uid and gid alone); squashfuse then serves it as the user, from the image it opens as
// the user, on the descriptor it inherits. root never opens the image. Throws saying
// what failed, with nothing left mounted.
void mount_image_for_user(const std::string& job_dir, const std::string& name, const UserIds& user);

// As root: every mount point below `dir` (an absolute, real path) detached, deepest
// first, each through a descriptor on its parent, so no symlink the user made in the
// meantime can point the unmount elsewhere. Returns a line per mount that stayed.
std::vector<std::string> unmount_below(const std::string& dir);

}  // namespace aihpc::stage
