#include "sweep/shorthand.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "common/error.hpp"
#include "common/json.hpp"
#include "common/text.hpp"
#include "sweep/spec.hpp"
#include "sweep/sweep_dir.hpp"

namespace aihpc::sweep {

namespace {

[[noreturn]] void fail(const std::string& term, const std::string& what) {
    throw Error("parameter '" + term + "': " + what);
}

// Where a value's characters stand: inside quotes, or how deep in brackets and
// parentheses.
struct Nesting {
    int depth = 0;
    char quote = 0;
    // Takes `c`; true when it lies at the top level and is none of the nesting's own.
    bool top_level_after(char c) {
        if (quote) {
            if (c == quote) quote = 0;
            return false;
        }
        if (c == '\'' || c == '"') quote = c;
        else if (c == '(' || c == '[') ++depth;
        else if (c == ')' || c == ']') --depth;
        else return depth == 0;
        return false;
    }
};

// Splits at `sep` outside quotes, brackets and parentheses.
std::vector<std::string> split_top(const std::string& text, char sep) {
    std::vector<std::string> out;
    std::string cur;
    Nesting nesting;
    for (char c : text) {
        if (nesting.top_level_after(c) && c == sep) {
            out.push_back(cur);
            cur.clear();
            continue;
        }
        cur += c;
    }
    out.push_back(cur);
    return out;
}

// Position of the last `c` outside quotes and brackets, or npos.
std::size_t find_top(const std::string& text, char c) {
    Nesting nesting;
    std::size_t found = std::string::npos;
    for (std::size_t i = 0; i < text.size(); ++i)
        if (nesting.top_level_after(text[i]) && text[i] == c) found = i;
    return found;
}

const char* const kFunctions[] = {"range", "linspace", "logspace", "uniform", "loguniform", "int", "normal"};

std::string known_functions() {
    std::string out;
    for (const char* f : kFunctions) out += (out.empty() ? "" : ", ") + std::string(f) + "()";
    return out + " and zip()";
}

// A value that reads as a call, NAME(..., is a typo of a function far more often than a
// string wanted: it must be quoted to be a string. Unbalanced brackets likewise.
void check_plain_value(const std::string& token, const std::string& term) {
    if (token.size() >= 2 && (token.front() == '\'' || token.front() == '"') && token.back() == token.front()) return;
    std::size_t i = 0;
    while (i < token.size() && (std::isalnum(static_cast<unsigned char>(token[i])) || token[i] == '_')) ++i;
    if (i > 0 && i < token.size() && token[i] == '(' && !std::isdigit(static_cast<unsigned char>(token[0])))
        fail(term, "'" + token.substr(0, i) + "(' is not a known function; the known ones are " + known_functions() +
                       " (quote the value, as '" + token + "', to mean the text)");
    Nesting nesting;
    for (char c : token) {
        nesting.top_level_after(c);
        if (nesting.depth < 0) break;
    }
    if (nesting.depth != 0 || nesting.quote) fail(term, "'" + token + "' has unbalanced quotes, brackets or parentheses (quote the value to mean the text)");
}

std::string number_text(const std::string& token, const std::string& term) {
    auto v = shorthand_value(token);
    if (v.empty() || !(std::isdigit(static_cast<unsigned char>(v[0])) || v[0] == '-'))
        fail(term, "'" + token + "' is not a number");
    return v;
}

bool is_quoted(const std::string& token) {
    return token.size() >= 2 && (token.front() == '\'' || token.front() == '"') && token.back() == token.front();
}

// The values of a list as JSON texts. A list is of one type: when any value is text,
// every value is, each kept as written (ver=1.10,1.9,latest keeps "1.10", which as a
// number would be 1.1). The same value twice would run the same tasks twice.
// Whether a number's text says more than the number does: a trailing zero of a fraction
// (1.10) or a leading zero (007), which only a string would keep.
bool text_beyond_number(const std::string& token, const std::string& json) {
    if (json.empty() || json[0] == '"' || json == "true" || json == "false") return false;
    std::string digits = token[0] == '-' || token[0] == '+' ? token.substr(1) : token;
    bool leading_zero = digits.size() > 1 && digits[0] == '0' && digits[1] != '.';
    bool trailing_zero = digits.find('.') != std::string::npos && digits.find_first_of("eE") == std::string::npos &&
                         digits.back() == '0' && digits.size() - digits.find('.') > 2;
    return leading_zero || trailing_zero;
}

std::vector<std::string> value_list(const std::string& list, const std::string& term, std::vector<std::string>* notes) {
    auto items = split_top(list, ',');
    std::vector<std::string> out;
    bool text = false;
    for (auto& item : items) {
        if (item.empty()) fail(term, "has an empty value");
        check_plain_value(item, term);
        out.push_back(shorthand_value(item));
        text = text || out.back()[0] == '"';
    }
    if (text)
        for (std::size_t i = 0; i < items.size(); ++i)
            if (!is_quoted(items[i])) out[i] = json_quote(items[i]);
    if (notes && !text)
        for (std::size_t i = 0; i < items.size(); ++i)
            if (text_beyond_number(items[i], out[i]))
                notes->push_back("parameter '" + term + "': " + items[i] + " is read as the number " + out[i] + "; quote it ('" +
                                 items[i] + "') to keep the text");
    for (std::size_t i = 0; i < out.size(); ++i)
        for (std::size_t j = 0; j < i; ++j)
            if (out[i] == out[j])
                fail(term, "the value " + items[i] + (items[i] == items[j] ? std::string() : " (the same as " + items[j] + ")") +
                               " is given twice; each value makes its own tasks");
    return out;
}

std::string values_array(const std::vector<std::string>& values) {
    std::string out = "[";
    for (std::size_t i = 0; i < values.size(); ++i) out += (i ? "," : "") + values[i];
    return out + "]";
}

// A list in brackets, [a,b], is the list a,b (as in a zip column, Hydra and JSON).
std::string unbracket(const std::string& rhs, const std::string& term) {
    if (rhs.size() < 2 || rhs.front() != '[' || rhs.back() != ']') return rhs;
    int depth = 0;
    char quote = 0;
    for (std::size_t i = 0; i < rhs.size(); ++i) {
        char c = rhs[i];
        if (quote) {
            if (c == quote) quote = 0;
        } else if (c == '\'' || c == '"') {
            quote = c;
        } else if (c == '(' || c == '[') {
            ++depth;
        } else if ((c == ')' || c == ']') && --depth == 0 && i + 1 != rhs.size()) {
            return rhs;  // [a],[b]: not one list in brackets
        }
    }
    auto inner = rhs.substr(1, rhs.size() - 2);
    if (inner.empty()) fail(term, "has no values ([] is empty)");
    return inner;
}

struct Term {
    std::string raw;         // as given, for messages
    std::string axis_json;   // the axis object
    std::string name;        // the parameter it gives (not for zip)
    std::string param;       // for values axes: a possible condition key
    std::vector<std::string> values;  // JSON texts, for values axes
    std::string cond_key, cond_value;  // after @ (the value as JSON text)
    std::string cond_raw;              // the value as given
};

Term parse_term(const std::string& raw, std::vector<std::string>* notes) {
    Term t;
    t.raw = raw;
    std::string body = raw;
    auto at = find_top(raw, '@');
    if (at != std::string::npos) {
        body = raw.substr(0, at);
        auto cond = raw.substr(at + 1);
        auto eq = cond.find('=');
        if (eq == std::string::npos || eq == 0 || eq + 1 == cond.size()) fail(raw, "the condition after @ must be NAME=VALUE");
        t.cond_key = cond.substr(0, eq);
        check_plain_value(cond.substr(eq + 1), raw);
        t.cond_raw = cond.substr(eq + 1);
        t.cond_value = shorthand_value(t.cond_raw);
    }
    if (body.rfind("zip(", 0) == 0) {
        if (body.back() != ')') fail(raw, "zip(...) is not closed");
        std::string out = "{\"zip\":{";
        auto cols = split_top(body.substr(4, body.size() - 5), ',');
        for (std::size_t i = 0; i < cols.size(); ++i) {
            auto eq = cols[i].find('=');
            if (eq == std::string::npos || eq == 0) fail(raw, "each zip column must be NAME=[v,...]");
            auto list = cols[i].substr(eq + 1);
            if (list.size() < 2 || list.front() != '[' || list.back() != ']') fail(raw, "each zip column must be NAME=[v,...]");
            if (i) out += ',';
            auto column = split_top(list.substr(1, list.size() - 2), ',');
            for (auto& v : column) {
                if (v.empty()) fail(raw, "has an empty value");
                check_plain_value(v, raw);
            }
            // A zip column may repeat a value: it is paired with different ones.
            std::string cells = "[";
            for (std::size_t k = 0; k < column.size(); ++k) cells += (k ? "," : "") + shorthand_value(column[k]);
            out += json_quote(cols[i].substr(0, eq)) + ":" + cells + "]";
        }
        t.axis_json = out + "}}";
        return t;
    }
    auto eq = body.find('=');
    if (eq == std::string::npos || eq == 0) fail(raw, "must be NAME=VALUES, NAME=FUNC(...) or zip(...)");
    t.param = body.substr(0, eq);
    t.name = t.param;
    auto rhs = body.substr(eq + 1);
    if (rhs.empty()) fail(raw, "has no values");
    for (const char* f : kFunctions) {
        std::string prefix = std::string(f) + "(";
        if (rhs.rfind(prefix, 0) != 0) continue;
        if (rhs.back() != ')') fail(raw, std::string(f) + "(...) is not closed");
        auto args = split_top(rhs.substr(prefix.size(), rhs.size() - prefix.size() - 1), ',');
        std::string nums, count;
        for (auto& a : args) {
            auto k = a.find('=');
            if (k != std::string::npos) {
                auto key = a.substr(0, k);
                if (key != "n" && key != "count") fail(raw, "unknown argument '" + key + "'");
                count = number_text(a.substr(k + 1), raw);
                continue;
            }
            if (!nums.empty()) nums += ',';
            nums += number_text(a, raw);
        }
        t.axis_json = "{\"param\":" + json_quote(t.param) + ",\"" + f + "\":[" + nums + "]";
        if (!count.empty()) t.axis_json += ",\"count\":" + count;
        t.axis_json += "}";
        t.param.clear();  // only a values axis may be a condition key
        return t;
    }
    t.values = value_list(unbracket(rhs, raw), raw, notes);
    t.axis_json = "{\"param\":" + json_quote(t.param) + ",\"values\":" + values_array(t.values) + "}";
    return t;
}

}  // namespace

std::string shorthand_value(const std::string& token) {
    if (token.size() >= 2 && (token.front() == '\'' || token.front() == '"') && token.back() == token.front())
        return json_quote(token.substr(1, token.size() - 2));
    // Booleans as JSON and YAML 1.2 write them.
    if (token == "true" || token == "True" || token == "TRUE") return "true";
    if (token == "false" || token == "False" || token == "FALSE") return "false";
    const char* b = token.data();
    const char* e = b + token.size();
    std::int64_t i = 0;
    auto ri = std::from_chars(b, e, i);
    if (ri.ec == std::errc() && ri.ptr == e) return std::to_string(i);
    double d = 0;
    auto rd = std::from_chars(b, e, d);
    if (rd.ec == std::errc() && rd.ptr == e && std::isfinite(d)) {
        // An integer literal too big for int64 stays as written in JSON, a double.
        return format_double(d);
    }
    return json_quote(token);
}

std::string exclusion_rule(const std::string& text) {
    std::string out = "{";
    auto items = split_top(text, ',');
    for (std::size_t i = 0; i < items.size(); ++i) {
        auto eq = items[i].find('=');
        if (eq == std::string::npos || eq == 0) throw Error("--exclude '" + text + "': each item must be NAME=VALUE");
        check_plain_value(items[i].substr(eq + 1), "--exclude " + text);
        if (i) out += ',';
        out += json_quote(items[i].substr(0, eq)) + ":" + shorthand_value(items[i].substr(eq + 1));
    }
    return out + "}";
}

std::string compile_shorthand(const std::vector<std::string>& raw_terms, const SpecOverrides& o, std::vector<std::string>* notes) {
    if (raw_terms.empty()) throw Error("no parameters given: name a spec file or give NAME=VALUES terms");
    std::vector<Term> terms;
    for (auto& r : raw_terms) terms.push_back(parse_term(r, notes));
    // A condition key is checked like an --exclude key: it must be a parameter that a
    // list of values gives, or a typo (@optim= for @opt=) would silently add a parameter
    // and give the conditional one to every task.
    for (auto& t : terms) {
        if (t.cond_key.empty()) continue;
        bool listed = false, named = false;
        std::string names;
        for (auto& u : terms) {
            if (!u.cond_key.empty() || u.name.empty()) continue;
            listed = listed || u.param == t.cond_key;
            named = named || u.name == t.cond_key;
            names += (names.empty() ? "" : ", ") + u.name;
        }
        if (listed) continue;
        if (named) fail(t.raw, "the condition key '" + t.cond_key + "' must be a parameter given by a list of values (as " + t.cond_key + "=a,b), not by a function");
        fail(t.raw, "the condition key '" + t.cond_key + "' is not a parameter" + (names.empty() ? std::string() : " (parameters: " + names + ")") +
                        "; declare it first, as " + t.cond_key + "=" + t.cond_raw + ",...");
    }

    // Conditional terms gather into one union per condition key, placed where that key's
    // own values axis stands: one member per value, in the order the values are listed.
    std::vector<std::string> axes;
    auto is_key = [&](const std::string& name) {
        for (auto& t : terms)
            if (t.cond_key == name) return true;
        return false;
    };
    auto make_union = [&](const std::string& key, const std::vector<std::string>& order) {
        for (auto& t : terms) {
            if (t.cond_key != key) continue;
            // A list of text keeps its numbers as written: so does its condition.
            if (std::find(order.begin(), order.end(), t.cond_value) == order.end() &&
                std::find(order.begin(), order.end(), json_quote(t.cond_raw)) != order.end())
                t.cond_value = json_quote(t.cond_raw);
            if (std::find(order.begin(), order.end(), t.cond_value) == order.end())
                throw Error("parameter '" + key + "' has no value " + t.cond_value + " for the condition @" + key + "=" + t.cond_value);
        }
        std::string out = "{\"union\":[";
        for (std::size_t i = 0; i < order.size(); ++i) {
            if (i) out += ',';
            out += "{\"fixed\":{" + json_quote(key) + ":" + order[i] + "},\"axes\":[";
            bool first = true;
            for (auto& t : terms) {
                if (t.cond_key != key || t.cond_value != order[i]) continue;
                if (!first) out += ',';
                first = false;
                out += t.axis_json;
            }
            out += "]}";
        }
        return out + "]}";
    };
    for (auto& t : terms) {
        if (!t.cond_key.empty()) continue;  // in its key's union
        if (!t.param.empty() && is_key(t.param)) axes.push_back(make_union(t.param, t.values));
        else axes.push_back(t.axis_json);
    }
    if (o.repeat) axes.push_back("{\"repeat\":" + std::to_string(*o.repeat) + "}");

    std::string out = "{";
    if (o.seed) out += "\"seed\":" + std::to_string(*o.seed) + ",";
    if (o.random_trials) out += "\"method\":\"random\",\"trials\":" + std::to_string(*o.random_trials) + ",";
    out += "\"axes\":[";
    for (std::size_t i = 0; i < axes.size(); ++i) out += (i ? "," : "") + axes[i];
    out += "]";
    if (!o.exclude.empty()) {
        out += ",\"exclude\":[";
        for (std::size_t i = 0; i < o.exclude.size(); ++i) out += (i ? "," : "") + exclusion_rule(o.exclude[i]);
        out += "]";
    }
    if (!o.command.empty()) {
        out += ",\"command\":" + json_string_array(o.command);
    }
    return out + "}";
}

std::string apply_overrides(const std::string& json_text, const SpecOverrides& o) {
    JsonValue doc;
    try {
        doc = parse_json_value(json_text);
        doc.as_object("");
    } catch (const JsonError& e) {
        throw Error(std::string("sweep spec: not valid JSON: ") + e.what());
    }
    if (!o.random_trials && !o.seed && !o.repeat && o.exclude.empty() && o.command.empty()) return json_text;
    // The document again, member by member, with the overridden members replaced.
    std::string out = "{";
    auto put = [&](std::string_view key, const std::string& value) {
        if (out.size() > 1) out += ',';
        out += json_quote(key) + ':' + value;
    };
    bool exclude_done = false;
    for (const auto& [key, value] : doc.members()) {
        if ((key == "seed" && o.seed) || ((key == "method" || key == "trials") && o.random_trials) || (key == "command" && !o.command.empty()))
            continue;
        if (key == "axes" && o.repeat && value.is_array()) {
            std::string axes = value.to_json();
            axes.pop_back();
            put(key, axes + (value.items().empty() ? "" : ",") + "{\"repeat\":" + std::to_string(*o.repeat) + "}]");
            continue;
        }
        if (key == "exclude" && !o.exclude.empty() && value.is_array()) {
            std::string rules = value.to_json();
            rules.pop_back();
            for (std::size_t i = 0; i < o.exclude.size(); ++i) rules += (i || !value.items().empty() ? "," : "") + exclusion_rule(o.exclude[i]);
            put(key, rules + "]");
            exclude_done = true;
            continue;
        }
        put(key, value.to_json());
    }
    if (o.seed) put("seed", std::to_string(*o.seed));
    if (o.random_trials) {
        put("method", "\"random\"");
        put("trials", std::to_string(*o.random_trials));
    }
    if (!o.exclude.empty() && !exclude_done) {
        std::string rules = "[";
        for (std::size_t i = 0; i < o.exclude.size(); ++i) rules += (i ? "," : "") + exclusion_rule(o.exclude[i]);
        put("exclude", rules + "]");
    }
    if (!o.command.empty()) put("command", json_string_array(o.command));
    return out + "}";
}

namespace {

// A spec file's error, naming the file where the spec's errors say "sweep spec".
Error spec_file_error(const std::string& file, const std::string& file_text, const Error& e) {
    std::string what = e.what();
    constexpr std::string_view prefix = "sweep spec: ";
    if (starts_with(what, prefix)) what = what.substr(prefix.size());
    std::string hint;
    auto first = file_text.find_first_not_of(" \t\r\n");
    bool not_json = first != std::string::npos && file_text[first] != '{' && file_text[first] != '[';
    if (starts_with(what, "not valid JSON") && (ends_with(file, ".yaml") || ends_with(file, ".yml") || not_json))
        hint = "; aihpc-sweep reads JSON specs only (a YAML spec converts with: python3 -c 'import json,sys,yaml; "
               "json.dump(yaml.safe_load(sys.stdin),sys.stdout)' <" + file + " >spec.json)";
    return Error(file + ": " + what + hint);
}

}  // namespace

CommandLineSpec read_command_line_spec(const std::vector<std::string>& words, const SpecOverrides& overrides, std::ostream& notes) {
    CommandLineSpec out;
    bool from_file = words.size() == 1 && (is_file(words[0]) || ends_with(words[0], ".json"));
    std::string file_text;
    try {
        if (from_file) {
            file_text = read_file(words[0]);
            out.text = apply_overrides(file_text, overrides);
        } else {
            std::vector<std::string> lines;
            out.text = compile_shorthand(words, overrides, &lines);
            for (auto& n : lines) notes << "aihpc-sweep: note: " << n << "\n";
        }
        out.spec = parse_spec(out.text);
        check_spec_to_expand(out.spec);
    } catch (const Error& e) {
        if (!from_file) throw;
        throw spec_file_error(words[0], file_text, e);
    }
    return out;
}

}  // namespace aihpc::sweep
