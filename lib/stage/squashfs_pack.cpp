#include "stage/squashfs_pack.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <vector>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "common/text.hpp"
#include "stage/fs.hpp"
#include "stage/manifest.hpp"
#include "common/process.hpp"

namespace aihpc::stage {

namespace {

// The image's temporary file, removed unless kept.
class TemporaryImage {
public:
    explicit TemporaryImage(std::string path) : path_(std::move(path)) {}
    ~TemporaryImage() {
        if (!kept_) ::unlink(path_.c_str());
    }
    TemporaryImage(const TemporaryImage&) = delete;
    TemporaryImage& operator=(const TemporaryImage&) = delete;
    const std::string& path() const { return path_; }
    void keep() { kept_ = true; }

private:
    std::string path_;
    bool kept_ = false;
};

// What may not go into a dataset image: setuid and setgid files (the mount is nosuid
// anyway; an image that asks for it is refused at pack time, where the user can fix it).
void refuse_privileged_files(const Manifest& manifest, const std::string& dir) {
    std::vector<std::string> found;
    for (const ManifestEntry& e : manifest.entries)
        if (e.type == EntryType::file && (e.mode & (S_ISUID | S_ISGID)) != 0) found.push_back(join_path(dir, e.path));
    if (found.empty()) return;
    std::vector<std::string> shown(found.begin(), found.begin() + std::min<std::size_t>(found.size(), 3));
    throw Error(join(shown, ", ") + (found.size() > 3 ? " (and " + std::to_string(found.size() - 3) + " more)" : "") +
                (found.size() == 1 ? " is" : " are") +
                " setuid or setgid; a dataset image holds no such file: clear the bits (chmod ug-s), or pack a copy without them");
}

}  // namespace

bool is_squashfs_name(std::string_view path) { return path.ends_with(".sqsh") || path.ends_with(".squashfs"); }

PackReport pack_squashfs(const std::string& dir, const std::string& out, unsigned threads) {
    if (!is_squashfs_name(out)) throw Error("the image's name must end in .sqsh or .squashfs, as " + out + " does not");
    UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir_fd) throw_errno("cannot open the directory " + dir);
    // Sockets, FIFOs and devices are refused by the scan, with their names.
    Manifest manifest = scan_tree(dir_fd.get(), dir, std::max(1u, threads));
    refuse_privileged_files(manifest, dir);

    struct stat st {};
    if (::lstat(out.c_str(), &st) == 0) throw Error(out + " already exists; remove it or choose another name");
    std::string parent = dirname_of(out), name = basename_of(out);
    TemporaryImage image(join_path(parent, "." + name + ".aihpc-pack." + std::to_string(::getpid())));
    ::unlink(image.path().c_str());  // a leftover of a killed pack with this pid
    std::vector<std::string> command = {"mksquashfs", dir, image.path(), "-noappend", "-comp", "zstd", "-b", "1M",
                                        "-no-xattrs", "-all-root", "-all-time", "0", "-mkfs-time", "0",
                                        "-no-progress", "-quiet"};
    if (threads) {
        command.push_back("-processors");
        command.push_back(std::to_string(threads));
    }
    CommandOutput run = capture_output(command);
    if (run.status == 127)
        throw Error("mksquashfs is missing: install squashfs-tools (apt-get install squashfs-tools)");
    if (run.status != 0) {
        std::string said = std::string(trim(run.err.empty() ? run.out : run.err));
        throw Error("mksquashfs failed (exit " + std::to_string(run.status) + ")" + (said.empty() ? "" : ": " + said));
    }
    UniqueFd written(::open(image.path().c_str(), O_RDONLY | O_CLOEXEC));
    if (!written || ::fsync(written.get()) != 0 || ::fstat(written.get(), &st) != 0)
        throw_errno("cannot flush the image " + image.path());
    if (::renameat2(AT_FDCWD, image.path().c_str(), AT_FDCWD, out.c_str(), RENAME_NOREPLACE) != 0) {
        if (errno == EEXIST) throw Error(out + " appeared while the image was made; it was left as it is");
        throw_errno("cannot rename the image to " + out);
    }
    image.keep();
    PackReport report;
    report.files = manifest.file_count();
    report.bytes = manifest.byte_count();
    report.image_bytes = static_cast<std::uint64_t>(st.st_size);
    return report;
}

}  // namespace aihpc::stage
