#include "container/image.hpp"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/error.hpp"
#include "common/text.hpp"

namespace aihpc::container {

namespace {

constexpr Runtime all_runtimes[] = {Runtime::apptainer, Runtime::singularity, Runtime::charliecloud,
                                    Runtime::enroot, Runtime::podman};

// Registry transports the runtimes understand; all of them pull over the network.
constexpr const char* registry_schemes[] = {"docker://", "oras://", "library://", "shub://"};

bool can_pull(Runtime runtime) {
    return runtime == Runtime::apptainer || runtime == Runtime::singularity || runtime == Runtime::podman;
}

bool allowed(const config::SiteConfig& site, Runtime runtime) {
    if (site.container_runtimes.empty()) return true;
    for (const std::string& name : site.container_runtimes)
        if (name == runtime_name(runtime)) return true;
    return false;
}

std::vector<Runtime> allowed_in_site_order(const config::SiteConfig& site) {
    std::vector<Runtime> out;
    if (site.container_runtimes.empty()) return {std::begin(all_runtimes), std::end(all_runtimes)};
    for (const std::string& name : site.container_runtimes)
        if (auto r = parse_runtime(name)) out.push_back(*r);
    return out;
}

std::string names(const std::vector<Runtime>& runtimes) {
    std::vector<std::string> words;
    for (Runtime r : runtimes) words.emplace_back(runtime_name(r));
    return join(words, ", ");
}

std::string allowed_text(const config::SiteConfig& site) {
    return "container_runtimes=" + join(site.container_runtimes, ",");
}

}  // namespace

const char* runtime_name(Runtime runtime) {
    switch (runtime) {
    case Runtime::apptainer: return "apptainer";
    case Runtime::singularity: return "singularity";
    case Runtime::charliecloud: return "charliecloud";
    case Runtime::enroot: return "enroot";
    case Runtime::podman: return "podman";
    }
    return "?";
}

const char* runtime_program(Runtime runtime) {
    return runtime == Runtime::charliecloud ? "ch-run" : runtime_name(runtime);
}

std::optional<Runtime> parse_runtime(std::string_view name) {
    for (Runtime r : all_runtimes)
        if (name == runtime_name(r)) return r;
    return std::nullopt;
}

const char* kind_name(ImageKind kind) {
    switch (kind) {
    case ImageKind::sif: return "SIF file";
    case ImageKind::squashfs: return "SquashFS file";
    case ImageKind::directory: return "directory";
    case ImageKind::registry: return "registry reference";
    case ImageKind::named: return "named container";
    }
    return "?";
}

ImageRef classify_image(const std::string& text, bool is_directory) {
    ImageRef ref;
    ref.text = text;
    ref.image = text;
    if (text.empty()) throw Error("--aihpc-container: the image is empty");
    std::size_t colon = text.find(':');
    if (colon != std::string::npos && text.compare(colon, 3, "://") != 0) {
        if (auto runtime = parse_runtime(std::string_view(text).substr(0, colon))) {
            ref.explicit_runtime = true;
            ref.candidates = {*runtime};
            ref.image = text.substr(colon + 1);
            if (ref.image.empty()) throw Error("--aihpc-container: '" + text + "' names no image after the runtime");
        }
    }
    const std::string& image = ref.image;
    for (const char* scheme : registry_schemes) {
        if (starts_with(image, scheme)) {
            ref.kind = ImageKind::registry;
            return ref;
        }
    }
    bool looks_like_path = image.front() == '/' || image.front() == '.' || image.find('/') != std::string::npos;
    if (ends_with(image, ".sif") || ends_with(image, ".simg")) {
        ref.kind = ImageKind::sif;
        if (!ref.explicit_runtime) ref.candidates = {Runtime::apptainer, Runtime::singularity};
    } else if (ends_with(image, ".sqsh") || ends_with(image, ".squashfs")) {
        ref.kind = ImageKind::squashfs;
        if (!ref.explicit_runtime) ref.candidates = {Runtime::enroot};
    } else if (is_directory) {
        ref.kind = ImageKind::directory;
        if (!ref.explicit_runtime) ref.candidates = {Runtime::charliecloud};
    } else if (ref.explicit_runtime && !looks_like_path) {
        // podman:alpine may be pulled; enroot:NAME is a container made by `enroot create`.
        ref.kind = ref.candidates[0] == Runtime::enroot ? ImageKind::named : ImageKind::registry;
    } else if (ref.explicit_runtime) {
        ref.kind = ImageKind::directory;  // a path that is not a directory: check_image says so
    } else {
        throw Error("--aihpc-container: cannot tell which runtime runs '" + text +
                    "': use a .sif file, a .sqsh file, an image directory, docker://REF, or name the runtime "
                    "as RUNTIME:IMAGE (apptainer, singularity, charliecloud, enroot, podman)");
    }
    return ref;
}

Runtime choose_runtime(const ImageRef& ref, const config::SiteConfig& site,
                       const std::function<bool(Runtime)>& installed) {
    if (ref.kind == ImageKind::registry && !site.registry)
        throw Error("--aihpc-container: '" + ref.text +
                    "' is a registry reference, and this cluster does not allow them (site key registry=no); "
                    "use an image file or directory");
    std::vector<Runtime> candidates = ref.candidates;
    if (candidates.empty()) {
        // docker:// and friends: the site's default, else the first allowed one installed.
        if (!site.container_default.empty()) candidates = {*parse_runtime(site.container_default)};
        else
            for (Runtime r : allowed_in_site_order(site))
                if (can_pull(r)) candidates.push_back(r);
        if (candidates.empty())
            throw Error("--aihpc-container: no allowed runtime can pull '" + ref.text + "' (" + allowed_text(site) +
                        "); use apptainer, singularity or podman");
    }
    std::vector<Runtime> permitted;
    for (Runtime r : candidates)
        if (allowed(site, r)) permitted.push_back(r);
    if (permitted.empty())
        throw Error("--aihpc-container: '" + ref.text + "' needs " + names(candidates) +
                    ", which this cluster does not allow (" + allowed_text(site) + ")");
    Runtime chosen = permitted.front();
    bool found = false;
    if (auto def = parse_runtime(site.container_default)) {
        for (Runtime r : permitted)
            if (r == *def && installed(r)) chosen = r, found = true;
    }
    for (Runtime r : permitted) {
        if (found) break;
        if (installed(r)) chosen = r, found = true;
    }
    if (ref.kind == ImageKind::registry && !can_pull(chosen))
        throw Error("--aihpc-container: " + std::string(runtime_name(chosen)) + " cannot run the registry reference '" +
                    ref.text + "'; import it first (enroot import, ch-image pull) and give the file or directory");
    return chosen;
}

bool path_is_under(const std::string& path, const std::vector<std::string>& dirs) {
    for (const std::string& dir : dirs) {
        if (dir == "/") return true;
        if (path == dir) return true;
        if (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/') return true;
    }
    return false;
}

std::string absolute_image_path(const std::string& image, const std::string& base) {
    if (image.empty() || image.front() == '/' || base.empty()) return image;
    std::string out = base;
    if (out.back() != '/') out += '/';
    return out + image;
}

ResolvedImage check_image(const std::string& text, const config::SiteConfig& site, const std::string& base,
                          const std::function<bool(Runtime)>& installed) {
    // Classify on the runtime-stripped text, then look at the path it names.
    std::string probe = text;
    std::size_t colon = text.find(':');
    if (colon != std::string::npos && text.compare(colon, 3, "://") != 0 && parse_runtime(text.substr(0, colon)))
        probe = text.substr(colon + 1);
    std::string path = absolute_image_path(probe, base);
    struct stat st {};
    bool exists = ::stat(path.c_str(), &st) == 0;
    int stat_errno = errno;
    ResolvedImage out;
    out.ref = classify_image(text, exists && S_ISDIR(st.st_mode));
    out.location = out.ref.image;
    if (out.ref.is_path()) {
        if (!exists)
            throw Error("--aihpc-container: image " + path + " cannot be used: " + std::strerror(stat_errno) +
                        "; give an existing image file or directory");
        if (out.ref.kind == ImageKind::directory ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode))
            throw Error("--aihpc-container: image " + path + " is not a " + kind_name(out.ref.kind));
        char real[PATH_MAX];
        if (!::realpath(path.c_str(), real)) throw_errno("--aihpc-container: cannot resolve image " + path);
        out.location = real;
        // The effective ids decide: on a node this runs with euid = the job's user and
        // the real uid root, which access() would consult instead.
        if (::faccessat(AT_FDCWD, real, R_OK | (S_ISDIR(st.st_mode) ? X_OK : 0), AT_EACCESS) != 0)
            throw Error("--aihpc-container: image " + out.location + " is not readable by you");
        if (!site.image_allow.empty() && !path_is_under(out.location, site.image_allow))
            throw Error("--aihpc-container: image " + out.location +
                        " is outside the directories this cluster allows images from (image_allow=" +
                        join(site.image_allow, ":") + "); use an image there");
    } else if (!site.image_allow.empty() && out.ref.kind == ImageKind::named) {
        throw Error("--aihpc-container: '" + text + "' is not a path, and images must lie under image_allow=" +
                    join(site.image_allow, ":"));
    }
    out.runtime = choose_runtime(out.ref, site, installed);
    return out;
}

std::vector<std::string> runtime_search_path(const config::SiteConfig& site, const char* process_path) {
    if (!site.runtime_path.empty()) return site.runtime_path;
    std::vector<std::string> dirs;
    for (const std::string& dir : split(process_path ? process_path : "/usr/local/bin:/usr/bin:/bin", ':'))
        if (!dir.empty() && dir.front() == '/') dirs.push_back(dir);
    return dirs;
}

}  // namespace aihpc::container
