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
#include <cstdint>
#include <string>
#include <vector>

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

enum class ImageMount { mounted, kept };

// Mounts the image that dir_fd/image_link_name(name) points at on dir_fd/NAME, which is
// made if missing and must otherwise be an empty directory or a mount of aihpc's. A
// live mount that already shows `image_target` is kept; a dead one (its squashfuse
// gone), or one of another image, is detached first (fusermount3 -u -z). `shown_dir` is
// DIR for messages. Throws saying what failed, nothing left mounted by this call.
ImageMount mount_image(int dir_fd, const std::string& shown_dir, const std::string& name, const std::string& image_target,
                       const std::string& previous_target);

// As root: every mount point below `dir` (an absolute, real path) detached, deepest
// first, each through a descriptor on its parent, so no symlink the user made in the
// meantime can point the unmount elsewhere. Returns a line per mount that stayed.
std::vector<std::string> unmount_below(const std::string& dir);

}  // namespace aihpc::stage
