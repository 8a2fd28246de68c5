-- contrib/job_submit.lua: aihpc's data gravity for Slurm's job_submit/lua plugin.
--
-- Install it as job_submit.lua beside slurm.conf and set JobSubmitPlugins=lua (add lua to
-- the list where the site has other job_submit plugins). A site that has a job_submit.lua
-- of its own calls aihpc_gravity(job_desc) from its slurm_job_submit instead.
--
-- At submit, aihpc.so (sbatch, salloc, srun) finds which nodes announce the job's
-- --aihpc-stage sources warm (node features aihpc_*, see aihpc(8), DATA GRAVITY) and puts
-- them in the job's control environment (job_desc.spank_job_env):
--   AIHPC_GRAVITY_FEATURES  "aihpc_<k>|aihpc_<k>_u<uid>": the features that nodes idle
--                           now announce (a job preferring busy nodes would wait for the
--                           next backfill pass: Slurm's main scheduler does not fall
--                           back from --prefer, on 22.05 and 24.11 alike)
--   AIHPC_GRAVITY_IDLE      how many of those nodes are idle: a job of more nodes gets
--                           no preference, which it could not have at once
--   AIHPC_GRAVITY_ASKED     "prefer" when the user gave --aihpc-gravity
-- This script turns them into the job's --prefer (job_desc.prefer), which Slurm honours
-- only where a preferred node is free now: the job never waits for a warm node.
-- A --prefer the user gave is kept as it is.

-- Site-wide gravity: every job that stages data prefers the nodes that hold it, without
-- --aihpc-gravity (a user's --aihpc-gravity=off still turns it off).
aihpc_gravity_all = false

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

local function log(fmt, ...)
   slurm.log_info("aihpc: " .. fmt, ...)
end

function aihpc_gravity(job_desc)
   local features = env_value(job_desc.spank_job_env, "AIHPC_GRAVITY_FEATURES")
   local asked = env_value(job_desc.spank_job_env, "AIHPC_GRAVITY_ASKED")
   if aihpc_gravity_debug then
      log("job_submit.lua: user %s: spank_job_env features=%s asked=%s idle=%s; prefer=%s min_nodes=%s req_nodes=%s",
          tostring(job_desc.user_id), tostring(features), tostring(asked),
          tostring(env_value(job_desc.spank_job_env, "AIHPC_GRAVITY_IDLE")), tostring(job_desc.prefer),
          tostring(job_desc.min_nodes), tostring(job_desc.req_nodes))
   end
   if features == nil or features == "" then return end
   if asked == nil and not aihpc_gravity_all then return end
   -- Only feature names aihpc made: letters, digits, underscores, joined by "|".
   if not string.match(features, "^[%w_|]+$") then return end
   -- A job of more nodes than the idle warm ones, or with its own node list, is left alone.
   local idle = tonumber(env_value(job_desc.spank_job_env, "AIHPC_GRAVITY_IDLE") or "0") or 0
   local nodes = job_desc.min_nodes
   if nodes == nil or nodes == slurm.NO_VAL or nodes == 4294967294 or nodes < 1 then nodes = 1 end
   if nodes > idle then return end
   if job_desc.req_nodes ~= nil and job_desc.req_nodes ~= "" then return end
   if job_desc.prefer ~= nil and job_desc.prefer ~= "" then
      if aihpc_gravity_debug then log("job_submit.lua: the job's own --prefer=%s is kept", job_desc.prefer) end
      return
   end
   job_desc.prefer = features
   if aihpc_gravity_debug then log("job_submit.lua: --prefer=%s (data gravity)", features) end
end

function slurm_job_submit(job_desc, part_list, submit_uid)
   aihpc_gravity(job_desc)
   return slurm.SUCCESS
end

function slurm_job_modify(job_desc, job_rec, part_list, modify_uid)
   return slurm.SUCCESS
end

return slurm.SUCCESS
