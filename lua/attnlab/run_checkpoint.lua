-- attnlab.run_checkpoint: a run's checkpoint -- what run:checkpoint writes, what resume= reads back
-- and puts in place (run.lua is its one user).
--
-- Resume is bit-identical to an uninterrupted run: a checkpoint holds every tracked tensor exactly
-- (float32 stays float32), the numbers of the tracked state (optimiser step counters, ...) and the
-- RNG's {seed, counter}; all are put back before the loop yields its first step.  The script must
-- draw its random numbers from lab's generator only (not math.random) for this to hold.
--
-- Checkpoint layout (standard safetensors; the attnlab parts live in "__metadata__", all strings):
--   tensors   "<tracked name>.<path>" e.g. "model.layers.1.wq", "optim.tensors.m.3"
--   format    "attnlab-checkpoint-1"
--   step      the last completed step; resuming continues at step + 1
--   rng_seed, rng_counter   the generator's state as decimal strings (uint64)
--   state     JSON: for each tracked name its state_dict's structure, tensors replaced by
--             {"$tensor": name}; tables are {"$table": [[key, value], ...]} so that number and
--             string keys come back as they were; non-finite numbers are {"$number": "inf"}
--   config    JSON of run.config; name, script
local lab = require "attnlab"
local core = require "attnlab.core"
local json = require "attnlab.json"
local run_config, run_dir = require "attnlab.run_config", require "attnlab.run_dir"

local M = {}

local FORMAT = "attnlab-checkpoint-1"
M.FORMAT = FORMAT

local function fail(msg) core.raise("run: " .. msg) end
local is_tensor, sorted_keys = core.is_tensor, run_config.sorted_keys

-- A state_dict (nested tables of tensors, numbers, strings, booleans) becomes a JSON-able skeleton;
-- its tensors go into `tensors` under names "<prefix>.<key>.<key>...".
local function skeleton(value, name, tensors)
  if is_tensor(value) then
    if tensors[name] then fail("two pieces of tracked state are both named '" .. name .. "'") end
    tensors[name] = value
    return { ["$tensor"] = name }
  end
  local tv = type(value)
  if tv == "number" then
    if value ~= value then return { ["$number"] = "nan" } end
    if value == math.huge or value == -math.huge then return { ["$number"] = value > 0 and "inf" or "-inf" } end
    return value
  end
  if tv == "string" or tv == "boolean" then return value end
  if tv ~= "table" then fail("cannot checkpoint a " .. tv .. " (at " .. name .. ")") end
  local pairs_list = {}
  for _, k in ipairs(sorted_keys(value)) do
    if type(k) ~= "string" and type(k) ~= "number" then fail("cannot checkpoint a " .. type(k) .. " key (at " .. name .. ")") end
    pairs_list[#pairs_list + 1] = { k, skeleton(value[k], name .. "." .. tostring(k), tensors) }
  end
  return { ["$table"] = pairs_list }
end

local function rebuild(sk, tensors, path)
  if type(sk) ~= "table" then return sk end
  if sk["$tensor"] then
    local t = tensors[sk["$tensor"]]
    if t == nil then fail("checkpoint lacks tensor '" .. sk["$tensor"] .. "'") end
    return t
  end
  if sk["$number"] then return ({ nan = 0 / 0, inf = math.huge, ["-inf"] = -math.huge })[sk["$number"]] end
  local out = {}
  for _, kv in ipairs(sk["$table"] or {}) do out[kv[1]] = rebuild(kv[2], tensors, path) end
  return out
end

local function state_of(obj)
  if is_tensor(obj) then return obj end
  return obj:state_dict()
end

local function load_state(obj, state, name)
  if is_tensor(obj) then
    if not is_tensor(state) then fail("checkpoint state of '" .. name .. "' is not a tensor") end
    obj:copy_(state)
  else
    obj:load_state_dict(state)
  end
end

-- The checkpoint at path: {path, tensors, step, rng, state, config}, or an error naming resume=.
function M.read(path)
  if not run_dir.exists(path) then fail("resume: no checkpoint at '" .. path .. "'") end
  local tensors, meta = lab.load(path)
  if type(meta) == "string" then meta = json.decode(meta) end
  if type(meta) ~= "table" or meta.format ~= FORMAT then
    fail("resume: '" .. path .. "' is not an attnlab checkpoint (no '" .. FORMAT .. "' metadata)")
  end
  return {
    path = path, tensors = tensors, step = tonumber(meta.step),
    rng = { meta.rng_seed, meta.rng_counter },
    state = json.decode(meta.state), config = json.decode(meta.config),
  }
end

-- Writes everything run tracks (run.tracked by run.tracked_names), its step, config, name and script,
-- and the RNG's state as of now to path.
function M.write(path, run)
  local tensors, state = {}, {}
  for _, k in ipairs(run.tracked_names) do state[k] = skeleton(state_of(run.tracked[k]), k, tensors) end
  local rng = lab.rng_state()
  lab.save(path, tensors, {
    format = FORMAT, step = string.format("%d", run.step),
    rng_seed = tostring(rng[1]):gsub("U?LL$", ""), rng_counter = tostring(rng[2]):gsub("U?LL$", ""),
    state = json.encode(state), config = json.encode(run.config), name = run.name,
    script = run.script or "",
  })
end

-- Puts the checkpoint ck (as M.read gives it) back into what run tracks, and the RNG's state: every
-- piece of its state must be tracked, and everything tracked must have its state.
function M.restore(ck, run)
  local state = ck.state or {}
  for _, k in ipairs(sorted_keys(state)) do
    if not run.tracked[k] then
      fail(string.format("resume: the checkpoint holds state for '%s', which the script does not track", k))
    end
  end
  for _, k in ipairs(run.tracked_names) do
    if state[k] == nil then fail(string.format("resume: the checkpoint has no state for '%s'", k)) end
    load_state(run.tracked[k], rebuild(state[k], ck.tensors, k), k)
  end
  lab.set_rng_state(ck.rng)
end

return M
