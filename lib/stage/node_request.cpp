#include "stage/node_request.hpp"

#include <cstdint>

#include "common/error.hpp"
#include "common/json.hpp"

namespace aihpc::stage {

namespace {

std::string text_member(json_object* object, const char* key) {
    json_object* value = json_member(object, key);
    if (!value || !json_object_is_type(value, json_type_string)) throw Error(std::string("request: '") + key + "' is missing");
    return json_object_get_string(value);
}

// A count or id no larger than `max`: one that would wrap on its way into a uid_t or a
// job id (2^32 is uid 0) is refused, never narrowed.
std::uint64_t number_member(json_object* object, const char* key, std::uint64_t max = UINT32_MAX) {
    json_object* value = json_member(object, key);
    if (!value || !json_object_is_type(value, json_type_int) || json_object_get_int64(value) < 0)
        throw Error(std::string("request: '") + key + "' is missing or not a count");
    auto number = static_cast<std::uint64_t>(json_object_get_int64(value));
    if (number > max) throw Error(std::string("request: '") + key + "' is out of range");
    return number;
}

}  // namespace

std::string format_node_request(const NodeRequest& r) {
    std::string text = "{\"site\":" + json_string_array(r.site_args) + ",\"options\":{";
    bool first = true;
    for (const auto& [name, value] : r.raw_options) {
        text += (first ? "" : ",") + json_quote(name) + ":" + json_quote(value);
        first = false;
    }
    text += "},\"job\":" + std::to_string(r.job_id) + ",\"uid\":" + std::to_string(r.uid) +
            ",\"gid\":" + std::to_string(r.gid) + ",\"node\":" + json_quote(r.node) +
            ",\"submit_dir\":" + json_quote(r.submit_dir) + ",\"step\":" + std::to_string(r.step_id) +
            ",\"local_tasks\":" + std::to_string(r.local_tasks);
    if (r.limits.max_bytes != 0 || r.limits.low_bytes != 0)
        text += ",\"limits\":{\"max\":" + std::to_string(r.limits.max_bytes) +
                ",\"low\":" + std::to_string(r.limits.low_bytes) + "}";
    if (!r.groups.empty()) {
        text += ",\"groups\":[";
        for (std::size_t i = 0; i < r.groups.size(); ++i) text += (i ? "," : "") + std::to_string(r.groups[i]);
        text += "]";
    }
    if (!r.mounts.empty()) text += ",\"mounts\":" + json_string_array(r.mounts);
    if (!r.shared_items.empty()) text += ",\"shared\":" + json_string_array(r.shared_items);
    if (r.fanout_nodes > 1)
        text += ",\"fanout\":{\"nodes\":" + std::to_string(r.fanout_nodes) + ",\"index\":" + std::to_string(r.fanout_index) +
                ",\"sender\":" + json_quote(r.fanout_sender) + ",\"nodelist\":" + json_quote(r.fanout_nodelist) + "}";
    if (r.no_cache) text += ",\"no_cache\":true";
    if (r.any_runtime) text += ",\"any_runtime\":true";
    if (r.argv0) text += ",\"argv0\":" + json_quote(*r.argv0);
    if (r.checkpoint_dir) text += ",\"checkpoint_dir\":" + json_quote(*r.checkpoint_dir);
    return text + "}";
}

namespace {

// An optional array of strings; empty when absent.
std::vector<std::string> string_array_member(json_object* doc, const char* name) {
    std::vector<std::string> out;
    json_object* array = json_member(doc, name);
    if (!array) return out;
    if (!json_object_is_type(array, json_type_array)) throw Error(std::string("request: '") + name + "' is no array");
    for (std::size_t i = 0; i < json_object_array_length(array); ++i) {
        json_object* item = json_object_array_get_idx(array, i);
        if (!json_object_is_type(item, json_type_string)) throw Error(std::string("request: '") + name + "' holds a non-string");
        out.emplace_back(json_object_get_string(item));
    }
    return out;
}

}  // namespace

NodeRequest parse_node_request(const std::string& text) {
    JsonRef doc = parse_json(text);
    if (!doc || !json_object_is_type(doc.get(), json_type_object)) throw Error("the request from slurmstepd is not a JSON object");
    NodeRequest r;
    json_object* site = json_member(doc.get(), "site");
    if (!site || !json_object_is_type(site, json_type_array)) throw Error("request: 'site' is missing");
    for (std::size_t i = 0; i < json_object_array_length(site); ++i) {
        json_object* arg = json_object_array_get_idx(site, i);
        if (!json_object_is_type(arg, json_type_string)) throw Error("request: 'site' holds a non-string");
        r.site_args.emplace_back(json_object_get_string(arg));
    }
    r.site = config::parse_site_config(r.site_args);
    json_object* options = json_member(doc.get(), "options");
    if (!options || !json_object_is_type(options, json_type_object)) throw Error("request: 'options' is missing");
    json_object_object_foreach(options, name, value) {
        if (!json_object_is_type(value, json_type_string)) throw Error("request: option " + std::string(name) + " is no string");
        r.raw_options[name] = json_object_get_string(value);
    }
    r.options = config::parse_user_options(r.raw_options);
    r.job_id = static_cast<std::uint32_t>(number_member(doc.get(), "job"));
    // (uid_t)-1 is no id: setresuid and setresgid read it as "leave unchanged".
    r.uid = static_cast<uid_t>(number_member(doc.get(), "uid", UINT32_MAX - 1));
    r.gid = static_cast<gid_t>(number_member(doc.get(), "gid", UINT32_MAX - 1));
    r.node = text_member(doc.get(), "node");
    r.submit_dir = text_member(doc.get(), "submit_dir");
    if (json_object* limits = json_member(doc.get(), "limits")) {
        r.limits.max_bytes = number_member(limits, "max", INT64_MAX);
        r.limits.low_bytes = number_member(limits, "low", INT64_MAX);
    }
    if (json_object* groups = json_member(doc.get(), "groups")) {
        if (!json_object_is_type(groups, json_type_array)) throw Error("request: 'groups' is no array");
        for (std::size_t i = 0; i < json_object_array_length(groups); ++i) {
            json_object* g = json_object_array_get_idx(groups, i);
            if (!json_object_is_type(g, json_type_int) || json_object_get_int64(g) < 0 || json_object_get_int64(g) >= UINT32_MAX)
                throw Error("request: 'groups' holds something other than a group id");
            r.groups.push_back(static_cast<gid_t>(json_object_get_int64(g)));
        }
    }
    r.mounts = string_array_member(doc.get(), "mounts");
    r.shared_items = string_array_member(doc.get(), "shared");
    if (json_object* fanout = json_member(doc.get(), "fanout")) {
        r.fanout_nodes = static_cast<std::uint32_t>(number_member(fanout, "nodes", UINT32_MAX));
        r.fanout_index = static_cast<std::uint32_t>(number_member(fanout, "index", UINT32_MAX));
        r.fanout_sender = text_member(fanout, "sender");
        r.fanout_nodelist = text_member(fanout, "nodelist");
        if (r.fanout_index >= r.fanout_nodes || r.fanout_sender.empty() || r.fanout_sender.find('/') != std::string::npos)
            throw Error("request: 'fanout' names no node of the step");
    }
    if (json_object* no_cache = json_member(doc.get(), "no_cache")) r.no_cache = json_object_get_boolean(no_cache);
    if (json_object* any = json_member(doc.get(), "any_runtime")) r.any_runtime = json_object_get_boolean(any);
    if (json_member(doc.get(), "step")) r.step_id = static_cast<std::uint32_t>(number_member(doc.get(), "step"));
    if (json_member(doc.get(), "local_tasks"))
        r.local_tasks = static_cast<std::uint32_t>(number_member(doc.get(), "local_tasks"));
    if (json_member(doc.get(), "argv0")) r.argv0 = text_member(doc.get(), "argv0");
    if (json_member(doc.get(), "checkpoint_dir")) r.checkpoint_dir = text_member(doc.get(), "checkpoint_dir");
    // Fail closed: a request without a real job and user is refused, never run as 0.
    if (r.job_id == 0 || r.node.empty()) throw Error("the request names no job or node; nothing was done");
    return r;
}

}  // namespace aihpc::stage
