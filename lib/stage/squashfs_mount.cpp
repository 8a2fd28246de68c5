#include "stage/squashfs_mount.hpp"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/process.hpp"
#include "common/text.hpp"
#include "stage/fs.hpp"
#include "stage/source.hpp"

namespace aihpc::stage {

namespace {

constexpr std::uint32_t squashfs_magic = 0x73717368;  // "hsqs", little-endian
constexpr std::size_t superblock_size = 96;
constexpr long fuse_super_magic = 0x65735546;

std::uint64_t little_endian(const unsigned char* p, int bytes) {
    std::uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

bool on_path(const std::string& program) {
    const char* path = std::getenv("PATH");
    for (const std::string& dir : split(path ? path : "/usr/bin:/bin", ':'))
        if (!dir.empty() && ::access(join_path(dir, program).c_str(), X_OK) == 0) return true;
    return false;
}

// squashfuse_ll answers from the kernel's low-level interface, with fewer copies of
// each path than the high-level squashfuse; both are in Debian's squashfuse package.
std::string squashfuse_program() {
    for (const char* program : {"squashfuse_ll", "squashfuse"})
        if (on_path(program)) return program;
    throw Error("mounting a squashfs image needs squashfuse on this node, and it is not installed (apt-get install "
                "squashfuse); ask the site to install it, or stage the extracted directory instead");
}

enum class MountState { none, live, dead };

// What is at dir_fd/NAME: nothing mounted, a mount that answers, or one whose daemon is
// gone (ENOTCONN). statfs tells a FUSE mount, and a device other than DIR's a mount.
MountState mount_state(int dir_fd, const std::string& name) {
    struct stat dir_st {};
    if (::fstat(dir_fd, &dir_st) != 0) throw_errno("cannot stat the stage directory");
    struct stat st {};
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
        return errno == ENOTCONN ? MountState::dead : MountState::none;
    if (st.st_dev == dir_st.st_dev) return MountState::none;
    UniqueFd mount(::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    struct statfs fs {};
    if (!mount || ::fstatfs(mount.get(), &fs) != 0) return errno == ENOTCONN ? MountState::dead : MountState::live;
    return fs.f_type == fuse_super_magic ? MountState::live : MountState::dead;
}

void lazy_unmount(const std::string& path) {
    CommandOutput out = capture_output({"fusermount3", "-u", "-z", path});
    if (out.status != 0)
        throw Error("cannot unmount the earlier mount at " + path + ": " + failure_line(out, "fusermount3") +
                    "; unmount it (fusermount3 -u " + path + ") and run the step again");
}

// DIR/NAME as an empty directory to mount on; anything else there is the user's own.
void ensure_mount_point(int dir_fd, const std::string& name, const std::string& shown) {
    if (::mkdirat(dir_fd, name.c_str(), 0700) != 0 && errno != EEXIST) throw_errno("cannot make the mount point " + shown);
    UniqueFd point(::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!point) throw Error(shown + " already exists and is not a directory aihpc can mount on; remove it or stage under another NAME");
    DirectoryNames names(point.get(), shown);
    if (names.size() != 0) throw Error(shown + " already exists and is not empty; remove it or stage under another NAME");
}

std::string squashfuse_failure(const std::string& shown, const CommandOutput& out) {
    std::string why = failure_line(out, "squashfuse");
    if (why.find("/dev/fuse") != std::string::npos)
        why += " (this node does not let users mount FUSE file systems: /dev/fuse must be mode 0666, as udev makes it)";
    return "squashfuse could not mount the image at " + shown + ": " + why +
           "; check the image with unsquashfs -s, or stage the extracted directory";
}

// Detaches the mount at parent_fd/NAME: the parent pinned by its descriptor, the last
// component never followed.
void detach_at(int parent_fd, const std::string& name, const std::string& shown) {
    UniqueFd cwd(::open(".", O_PATH | O_DIRECTORY | O_CLOEXEC));
    int err = 0;
    if (::fchdir(parent_fd) != 0 || ::umount2(name.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) != 0) err = errno;
    if (cwd && ::fchdir(cwd.get()) != 0 && err == 0) err = errno;
    if (err != 0) throw SystemError("cannot unmount " + shown, err);
}

// The decoded mount point of one /proc/self/mountinfo line ("\040" is a space).
std::string mount_point_of(const std::string& line) {
    std::vector<std::string> fields = split(line, ' ');
    if (fields.size() < 5) return {};
    const std::string& raw = fields[4];
    std::string out;
    for (std::size_t i = 0; i < raw.size(); ++i) {
        auto octal = [&](std::size_t j) { return j < raw.size() && raw[j] >= '0' && raw[j] <= '7'; };
        if (raw[i] == '\\' && octal(i + 1) && octal(i + 2) && octal(i + 3)) {
            out += static_cast<char>((raw[i + 1] - '0') * 64 + (raw[i + 2] - '0') * 8 + (raw[i + 3] - '0'));
            i += 3;
        } else {
            out += raw[i];
        }
    }
    return out;
}

// Whether `path` (absolute, real) is a mount point in this mount namespace.
bool mounted_at(const std::string& path) {
    std::ifstream mountinfo("/proc/self/mountinfo");
    for (std::string line; std::getline(mountinfo, line);)
        if (mount_point_of(line) == path) return true;
    return false;
}

// Runs argv as `user`, with `fd` as its descriptor 3 besides stdin, stdout and stderr;
// no_new_privs, as every helper of the job's. Waits for it: squashfuse returns once it
// serves, leaving its daemon behind in a session of its own.
CommandOutput run_as_user(const UserIds& user, const std::vector<std::string>& argv, int fd) {
    CaptureOptions options;
    options.user = user;
    options.fd3 = fd;
    return capture_output_with(argv, options);
}

}  // namespace

ImageSuperblock check_image_superblock(int fd, const std::string& shown) {
    unsigned char sb[superblock_size];
    ssize_t got = ::pread(fd, sb, sizeof sb, 0);
    if (got < 0) throw_errno("cannot read " + shown);
    if (static_cast<std::size_t>(got) < sizeof sb || little_endian(sb, 4) != squashfs_magic)
        throw Error(shown + " is not a squashfs image (no squashfs superblock at its start); make one with aihpc-stage pack");
    ImageSuperblock out;
    out.inodes = static_cast<std::uint32_t>(little_endian(sb + 4, 4));
    out.block_size = static_cast<std::uint32_t>(little_endian(sb + 12, 4));
    unsigned block_log = static_cast<unsigned>(little_endian(sb + 22, 2));
    unsigned major = static_cast<unsigned>(little_endian(sb + 28, 2));
    out.bytes_used = little_endian(sb + 40, 8);
    if (major != 4) throw Error(shown + " is a squashfs " + std::to_string(major) + " image; squashfuse reads squashfs 4: pack it again with aihpc-stage pack");
    if (block_log < 12 || block_log > 20 || out.block_size != (1u << block_log))
        throw Error(shown + " has a damaged squashfs superblock (block size " + std::to_string(out.block_size) + "); pack it again");
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw_errno("cannot stat " + shown);
    if (out.bytes_used < superblock_size || out.bytes_used > static_cast<std::uint64_t>(st.st_size))
        throw Error(shown + " is truncated: its superblock says the image holds " + std::to_string(out.bytes_used) +
                    " bytes, and the file has " + std::to_string(st.st_size) + "; copy it again whole, or pack it again");
    return out;
}

std::vector<std::string> refused_image_entries(const std::string& listing) {
    std::vector<std::string> refused;
    for (const std::string& line : split(listing, '\n')) {
        // "-rwsr-xr-x 0/0  5 1970-01-01 00:00 squashfs-root/x": a mode string first.
        if (line.size() < 11 || std::string_view("-dlcbps").find(line[0]) == std::string_view::npos) continue;
        std::string_view rights(line.data() + 1, 9);
        if (rights.find_first_not_of("rwxsStT-") != std::string_view::npos) continue;
        std::size_t at = line.find(" squashfs-root");
        std::string entry = at == std::string::npos ? line : line.substr(at + 14);
        if (entry.empty()) entry = "/";
        char type = line[0];
        if (type == 'c' || type == 'b') refused.push_back(entry + " is a device node");
        else if (type == 'p') refused.push_back(entry + " is a FIFO");
        else if (type == 's') refused.push_back(entry + " is a socket");
        else if (type == '-' && (rights[2] == 's' || rights[2] == 'S')) refused.push_back(entry + " is setuid");
        else if (type == '-' && (rights[5] == 's' || rights[5] == 'S')) refused.push_back(entry + " is setgid");
    }
    return refused;
}

void check_image_entries(const std::string& path, const std::string& shown) {
    if (!on_path("unsquashfs"))
        throw Error("checking the squashfs image " + shown + " needs unsquashfs on this node, and it is not installed "
                    "(apt-get install squashfs-tools); ask the site to install it");
    // -UTC: unsquashfs otherwise converts every entry's mtime to local time, which costs
    // four fifths of its time on an image of 100,000 files; the times are not read here.
    CommandOutput out = capture_output({"unsquashfs", "-no-progress", "-UTC", "-lln", path});
    if (out.status != 0)
        throw Error(shown + " is not a readable squashfs image (" +
                    failure_line(out, "unsquashfs") +
                    "); copy it again whole, or pack it again with aihpc-stage pack");
    std::vector<std::string> refused = refused_image_entries(out.out);
    if (refused.empty()) return;
    std::vector<std::string> named(refused.begin(), refused.begin() + std::min<std::size_t>(refused.size(), 3));
    throw Error("the squashfs image " + shown + " is refused: " + join(named, ", ") +
                (refused.size() > 3 ? " (and " + std::to_string(refused.size() - 3) + " more)" : "") +
                "; a dataset image holds only files, directories and symlinks: pack it again with aihpc-stage pack");
}

std::string image_link_name(const std::string& name) { return "." + name + ".aihpc-image"; }

const char* to_string(ImageMount state) {
    switch (state) {
    case ImageMount::kept: return "kept";
    case ImageMount::wanted: return "wanted";
    case ImageMount::mounted: return "mounted";
    }
    return "?";
}

ImageMount image_mount_needed(int dir_fd, const std::string& shown_dir, const std::string& name,
                              const std::string& image_target, const std::string& previous_target) {
    MountState state = mount_state(dir_fd, name);
    if (state == MountState::live && previous_target == image_target) return ImageMount::kept;
    if (state == MountState::none) ensure_mount_point(dir_fd, name, join_path(shown_dir, name));
    return ImageMount::wanted;
}

ImageMount mount_image(int dir_fd, const std::string& shown_dir, const std::string& name, const std::string& image_target,
                       const std::string& previous_target) {
    std::string shown = join_path(shown_dir, name);
    MountState state = mount_state(dir_fd, name);
    if (state == MountState::live && previous_target == image_target) return ImageMount::kept;
    std::string program = squashfuse_program();
    if (state != MountState::none) lazy_unmount(shown);
    ensure_mount_point(dir_fd, name, shown);
    // nosuid and nodev whoever mounts it (aihpc-stage in by root too); ro, since a
    // staged item is never written.
    CommandOutput out =
        capture_output({program, "-o", "ro,nosuid,nodev", join_path(shown_dir, image_link_name(name)), shown});
    if (out.status != 0) {
        // squashfuse may have mounted before it failed; nothing is left behind.
        if (mount_state(dir_fd, name) != MountState::none) capture_output({"fusermount3", "-u", "-z", shown});
        throw Error(squashfuse_failure(shown, out));
    }
    if (mount_state(dir_fd, name) != MountState::live)
        throw Error("squashfuse exited without a working mount at " + shown + "; stage the extracted directory instead");
    return ImageMount::mounted;
}

void mount_image_for_user(const std::string& job_dir, const std::string& name, const UserIds& user) {
    std::string shown = join_path(job_dir, name);
    if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos)
        throw Error("no image may be mounted at " + shown);
    std::string program = squashfuse_program();
    UniqueFd job(::open(job_dir.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!job) throw_errno("cannot open the job's stage dir " + job_dir);
    if (mounted_at(shown)) detach_at(job.get(), name, shown);
    UniqueFd point(::openat(job.get(), name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    struct stat st {};
    if (!point || ::fstat(point.get(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != user.uid)
        throw Error("the mount point " + shown + " is not a directory of the job's user; remove it and run the step again");
    UniqueFd fuse(::open("/dev/fuse", O_RDWR | O_CLOEXEC));
    if (!fuse) throw_errno("cannot open /dev/fuse to mount " + shown + " (is the fuse module loaded?)");
    std::string options = "fd=" + std::to_string(fuse.get()) + ",rootmode=40000,user_id=" + std::to_string(user.uid) +
                          ",group_id=" + std::to_string(user.gid);
    // Through the descriptor: the very directory checked above, whatever the user renamed.
    std::string target = "/proc/self/fd/" + std::to_string(point.get());
    std::string source = join_path(job_dir, image_link_name(name));
    if (::mount(source.c_str(), target.c_str(), "fuse.squashfuse", MS_RDONLY | MS_NOSUID | MS_NODEV, options.c_str()) != 0)
        throw_errno("cannot mount a FUSE file system at " + shown);
    CommandOutput out = run_as_user(user, {program, "-o", "ro", source, "/dev/fd/3"}, fuse.get());
    if (out.status != 0) {
        detach_at(job.get(), name, shown);
        throw Error(squashfuse_failure(shown, out));
    }
}

std::vector<std::string> unmount_below(const std::string& dir) {
    std::vector<std::string> below;
    std::ifstream mountinfo("/proc/self/mountinfo");
    for (std::string line; std::getline(mountinfo, line);) {
        std::string point = mount_point_of(line);
        if (point != dir && path_is_under(point, dir)) below.push_back(point);
    }
    // Deepest first, so a mount inside another goes before it.
    std::sort(below.begin(), below.end(), [](const std::string& a, const std::string& b) {
        return std::count(a.begin(), a.end(), '/') > std::count(b.begin(), b.end(), '/');
    });
    std::vector<std::string> stayed;
    if (below.empty()) return stayed;
    UniqueFd top(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    UniqueFd cwd(::open(".", O_PATH | O_DIRECTORY | O_CLOEXEC));
    for (const std::string& point : below) {
        std::string relative = point.substr(dir.size() + 1);
        std::string parent = dirname_of(relative) == "." ? std::string() : dirname_of(relative);
        std::string base = basename_of(relative);
        int fd = top ? open_beneath(top.get(), parent, O_PATH | O_DIRECTORY) : -1;
        UniqueFd parent_fd(fd);
        if (!parent_fd || ::fchdir(parent_fd.get()) != 0 || ::umount2(base.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) != 0)
            stayed.push_back(point + ": " + std::strerror(errno));
    }
    if (cwd && ::fchdir(cwd.get()) != 0) stayed.push_back("cannot return to the working directory: " + std::string(std::strerror(errno)));
    return stayed;
}

}  // namespace aihpc::stage
