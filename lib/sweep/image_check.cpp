#include "sweep/image_check.hpp"

#include <sys/stat.h>

#include "common/error.hpp"
#include "common/text.hpp"
#include "container/image.hpp"

namespace aihpc::sweep {

void check_container_images(const std::vector<std::string>& words, const std::string& where, const std::string& base) {
    for (std::size_t i = 0; i < words.size(); ++i) {
        std::string text;
        if (starts_with(words[i], "--aihpc-container=")) text = words[i].substr(std::string("--aihpc-container=").size());
        else if (words[i] == "--aihpc-container" && i + 1 < words.size()) text = words[++i];
        else continue;
        if (text.empty()) continue;  // no container: the plugin's parser has its say
        // The image after any RUNTIME: prefix, to look at it before classifying it.
        std::string image = text;
        if (auto colon = text.find(':'); colon != std::string::npos && text.compare(colon, 3, "://") != 0 &&
                                         container::parse_runtime(std::string_view(text).substr(0, colon)))
            image = text.substr(colon + 1);
        std::string path = container::absolute_image_path(image, base);
        struct stat st {};
        bool exists = !image.empty() && ::stat(path.c_str(), &st) == 0;
        container::ImageRef ref;
        try {
            ref = container::classify_image(text, exists && S_ISDIR(st.st_mode));
        } catch (const Error& e) {
            throw Error(where + ": " + e.what());
        }
        if (ref.is_path() && !exists)
            throw Error(where + ": --aihpc-container: the image " + path + " does not exist, and sbatch would refuse it; give the path " +
                        "of a .sif or .sqsh file or an image directory");
    }
}

void check_phase_options(const SweepDir& sweep, const SubmitOptions& options, const std::string& base) {
    for (const auto& phase : sweep.spec.phases) {
        auto words = phase_sbatch_words(sweep, phase, options);
        std::string where = sweep.spec.phases.size() > 1 ? "phase '" + phase.name + "'" : std::string("the sbatch options");
        check_aihpc_options(words, where);
        check_container_images(words, where, base);
    }
}

}  // namespace aihpc::sweep
