-- contrib/job_submit.lua: aihpc's data gravity for Slurm's job_submit/lua plugin.
--
-- Install it as job_submit.lua beside slurm.conf and set JobSubmitPlugins=lua (add lua to
-- the list where the site has other job_submit plugins). A site that has a job_submit.lua
-- of its own calls aihpc_gravity(job_desc, part_list) from its slurm_job_submit instead.
--
-- At submit, aihpc.so (sbatch, salloc, srun) finds which nodes announce the job's
-- --aihpc-stage sources warm (node features aihpc_*, see aihpc(8), DATA GRAVITY) and puts
-- them in the job's control environment (job_desc.spank_job_env):
--   AIHPC_GRAVITY_FEATURES  "aihpc_<k>|aihpc_<k>_u<uid>": the features that the nodes
--                           able to take the job at once announce: before Slurm 26.05,
--                           only the idle ones (the main scheduler does not fall back
--                           from --prefer when the preferred nodes are busy: the job
--                           would wait for the next backfill pass, on 22.05 and 24.11)
--   AIHPC_GRAVITY_NODES     how many such nodes: a job of more nodes gets no preference,
--                           which it could not have at once
--   AIHPC_GRAVITY_PARTITIONS  the partitions of those nodes
--   AIHPC_GRAVITY_ASKED     "prefer" when the job wants gravity: --aihpc-gravity, or the
--                           site key gravity=prefer
-- Slurm refuses a job whose --prefer no node it may use can satisfy ("Requested node
-- configuration is not available"), and a job whose --prefer cannot go with its own
-- --constraint waits for the next backfill pass: so only a job without a node list,
-- excluded nodes or constraints of its own, whose partitions all hold such a warm node,
-- gets the preference.
-- This script turns them into the job's --prefer (job_desc.prefer), which Slurm honours
-- only where a preferred node is free now: the job never waits for a warm node.
-- A --prefer the user gave is kept as it is.

-- Site-wide gravity (every job that stages data prefers the nodes that hold it, without
-- --aihpc-gravity) is the plugin's site key gravity=prefer in plugstack.conf: aihpc.so
-- then sets AIHPC_GRAVITY_ASKED for every such job, and asks Slurm which nodes hold the
-- data only for the jobs that want it. A user's --aihpc-gravity=off still turns it off.

-- Log what each staging job's request holds, to see what this release exposes.
aihpc_gravity_debug = false

-- The value of NAME in a job_desc environment table: Slurm gives spank_job_env and
-- environment as arrays of "NAME=value" strings (indexed from 0 on some releases).
local function env_value(env, name)
   if type(env) ~= "table" then return nil end
   local prefix = name .. "="
   for key, entry in pairs(env) do
      if type(entry) == "string" then
         if string.sub(entry, 1, #prefix) == prefix then
            return string.sub(entry, #prefix + 1)
         end
         if key == name then return entry end
      end
   end
   return nil
end

local function given(value) return value ~= nil and value ~= "" end

local function log(fmt, ...)
   slurm.log_info("aihpc: " .. fmt, ...)
end

-- Whether every partition the job asks for (its default partition when it names none)
-- is one of `allowed` ("a,b").
local function in_partitions(job_desc, part_list, allowed)
   local ok = {}
   for name in string.gmatch(allowed, "[^,]+") do ok[name] = true end
   local asked = job_desc.partition
   if asked == nil or asked == "" then
      asked = nil
      for _, part in pairs(part_list or {}) do
         if part.flag_default == 1 or part.flag_default == true then asked = part.name end
      end
      if asked == nil then return false end
   end
   for name in string.gmatch(asked, "[^,]+") do
      if not ok[name] then return false end
   end
   return true
end

function aihpc_gravity(job_desc, part_list)
   local features = env_value(job_desc.spank_job_env, "AIHPC_GRAVITY_FEATURES")
   local asked = env_value(job_desc.spank_job_env, "AIHPC_GRAVITY_ASKED")
   if aihpc_gravity_debug then
      log("job_submit.lua: user %s: spank_job_env features=%s asked=%s nodes=%s; prefer=%s min_nodes=%s req_nodes=%s",
          tostring(job_desc.user_id), tostring(features), tostring(asked),
          tostring(env_value(job_desc.spank_job_env, "AIHPC_GRAVITY_NODES")), tostring(job_desc.prefer),
          tostring(job_desc.min_nodes), tostring(job_desc.req_nodes))
      log("job_submit.lua: exc_nodes=%s features=%s partition=%s", tostring(job_desc.exc_nodes),
          tostring(job_desc.features), tostring(job_desc.partition))
      for _, part in pairs(part_list or {}) do
         log("job_submit.lua: partition %s default=%s", tostring(part.name), tostring(part.flag_default))
      end
   end
   if features == nil or features == "" then return end
   if asked ~= "prefer" then return end
   -- Only feature names aihpc made: letters, digits, underscores, joined by "|".
   if not string.match(features, "^[%w_|]+$") then return end
   -- A job of more nodes than the warm ones, or with its own node list, is left alone.
   local warm = tonumber(env_value(job_desc.spank_job_env, "AIHPC_GRAVITY_NODES") or "0") or 0
   local nodes = job_desc.min_nodes
   if nodes == nil or nodes == slurm.NO_VAL or nodes == 4294967294 or nodes < 1 then nodes = 1 end
   if nodes > warm then return end
   -- (Not ipairs over the three: it stops at the first that is nil.)
   if given(job_desc.req_nodes) or given(job_desc.exc_nodes) or given(job_desc.features) then return end
   if not in_partitions(job_desc, part_list,
                        env_value(job_desc.spank_job_env, "AIHPC_GRAVITY_PARTITIONS") or "") then
      return
   end
   if job_desc.prefer ~= nil and job_desc.prefer ~= "" then
      if aihpc_gravity_debug then log("job_submit.lua: the job's own --prefer=%s is kept", job_desc.prefer) end
      return
   end
   job_desc.prefer = features
   if aihpc_gravity_debug then log("job_submit.lua: --prefer=%s (data gravity)", features) end
end

function slurm_job_submit(job_desc, part_list, submit_uid)
   aihpc_gravity(job_desc, part_list)
   return slurm.SUCCESS
end

function slurm_job_modify(job_desc, job_rec, part_list, modify_uid)
   return slurm.SUCCESS
end

return slurm.SUCCESS
