#include "sweep/command.hpp"

#include <cctype>

#include "common/error.hpp"

namespace aihpc::sweep {

std::vector<std::string> split_command(std::string_view text) {
    std::vector<std::string> words;
    std::string word;
    bool in_word = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (c == ' ' || c == '\t' || c == '\n') {
            if (in_word) words.push_back(std::move(word));
            word.clear();
            in_word = false;
        } else if (c == '\'') {
            auto end = text.find('\'', i + 1);
            if (end == std::string_view::npos) throw Error("command: unterminated single quote in '" + std::string(text) + "'");
            word.append(text.substr(i + 1, end - i - 1));
            i = end;
            in_word = true;
        } else if (c == '"') {
            ++i;
            for (; i < text.size() && text[i] != '"'; ++i) {
                // Inside double quotes a backslash escapes only these, as in POSIX sh.
                if (text[i] == '\\' && i + 1 < text.size() && std::string_view("\"\\$`\n").find(text[i + 1]) != std::string_view::npos)
                    ++i;
                word += text[i];
            }
            if (i >= text.size()) throw Error("command: unterminated double quote in '" + std::string(text) + "'");
            in_word = true;
        } else if (c == '\\') {
            if (i + 1 >= text.size()) throw Error("command: trailing backslash in '" + std::string(text) + "'");
            word += text[++i];
            in_word = true;
        } else {
            word += c;
            in_word = true;
        }
    }
    if (in_word) words.push_back(std::move(word));
    return words;
}

namespace {

bool name_char(char c, bool first) {
    return std::isalpha(static_cast<unsigned char>(c)) || c == '_' ||
           (!first && (std::isdigit(static_cast<unsigned char>(c)) || c == '.' || c == '-'));
}

// Walks one word, calling on_text for literal pieces and on_ref for {name} references.
template <typename Text, typename Ref>
void scan_word(std::string_view word, Text on_text, Ref on_ref) {
    for (std::size_t i = 0; i < word.size(); ++i) {
        char c = word[i];
        if ((c == '{' || c == '}') && i + 1 < word.size() && word[i + 1] == c) {
            on_text(std::string_view(&word[i], 1));
            ++i;
            continue;
        }
        if (c == '{' && !(i > 0 && word[i - 1] == '$')) {
            std::size_t j = i + 1;
            while (j < word.size() && name_char(word[j], j == i + 1)) ++j;
            if (j > i + 1 && j < word.size() && word[j] == '}') {
                on_ref(word.substr(i + 1, j - i - 1));
                i = j;
                continue;
            }
        }
        on_text(std::string_view(&word[i], 1));
    }
}

}  // namespace

std::vector<std::string> template_references(const std::vector<std::string>& words) {
    std::vector<std::string> refs;
    for (const auto& w : words) scan_word(w, [](std::string_view) {}, [&](std::string_view name) { refs.emplace_back(name); });
    return refs;
}

std::optional<std::string> unclosed_reference(const std::vector<std::string>& words) {
    for (const auto& w : words) {
        for (std::size_t i = 0; i < w.size(); ++i) {
            if (w[i] == '{' && i + 1 < w.size() && w[i + 1] == '{') {
                ++i;
                continue;
            }
            if (w[i] != '{' || (i > 0 && w[i - 1] == '$')) continue;
            std::size_t j = i + 1;
            while (j < w.size() && name_char(w[j], j == i + 1)) ++j;
            if (j > i + 1 && w.find('}', j) == std::string::npos) return w.substr(i, j - i);
        }
    }
    return std::nullopt;
}

std::vector<std::string> substitute(const std::vector<std::string>& words,
                                    const std::function<std::optional<std::string>(std::string_view)>& lookup) {
    std::vector<std::string> out;
    out.reserve(words.size());
    for (const auto& w : words) {
        std::string result;
        scan_word(
            w, [&](std::string_view text) { result.append(text); },
            [&](std::string_view name) {
                auto value = lookup(name);
                if (!value) throw Error("command: {" + std::string(name) + "} names no parameter (use {{ and }} for literal braces)");
                result += *value;
            });
        out.push_back(std::move(result));
    }
    return out;
}

}  // namespace aihpc::sweep
