-- attnlab.run_config: the config a run gets -- the script's defaults, the checkpoint's config when
-- it resumes, then the command line's overrides (`attnlab run SCRIPT steps=500 lr=3e-4`), each
-- checked against the default's type and the kinds the script declares.  run.lua (lab.run.start,
-- lab.run.resolve_config) is its one user; `attnlab sweep` reaches it through resolve_config.
local core = require "attnlab.core"

local M = {}

local function fail(msg) core.raise("run: " .. msg) end

-- keys every run accepts on the command line, with their types, whether or not the config has them
local RESERVED = { resume = "string", log_every = "number", seed = "number", checkpoint_every = "number" }

-- A table's keys in the one order a run writes or names them in (numbers first, then strings, each
-- ascending): config keys in messages, tracked state in checkpoints (run_checkpoint.lua).
local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    if type(a) == type(b) then return a < b end
    return type(a) == "number"
  end)
  return keys
end
M.sorted_keys = sorted_keys

local function describe(v)
  return type(v) == "string" and string.format("'%s'", v) or tostring(v)
end

-- Counts that are integers in every script: a fractional override of these is an error even when
-- the script declares nothing (steps=1.5 would otherwise run 2 steps, or 1, silently).
local INTEGER_KEYS = { steps = true, batch = true, seed = true, log_every = true, eval_every = true }

-- A declared kind of a config key (opts.kinds of start): "integer", or a list of the strings the key
-- may take.  Checked against the resolved value, so a default that breaks it is caught too.
local function check_kind(k, v, kind, default)
  if kind == "integer" then
    if type(v) ~= "number" or v ~= math.floor(v) or v ~= v or math.abs(v) == math.huge then
      fail(string.format("config key '%s' expects an integer (default %s), got %s", k, describe(default), describe(v)))
    end
  elseif type(kind) == "table" then
    for _, choice in ipairs(kind) do if v == choice then return end end
    local shown = {}
    for i, choice in ipairs(kind) do shown[i] = describe(choice) end
    fail(string.format("config key '%s' must be one of %s, got %s", k, table.concat(shown, ", "), describe(v)))
  else
    fail(string.format("start: kinds.%s must be \"integer\" or a list of the values it may take (got %s)", k,
      describe(kind)))
  end
end

-- An override must name a key of the defaults (or a reserved one) and match its type.  Strings
-- take the text as typed (raw), so name=007 stays "007" when the default is a string.
local function apply_overrides(config, defaults, overrides, raw)
  for _, k in ipairs(sorted_keys(overrides)) do
    local v = overrides[k]
    local default = defaults[k]
    local want = default ~= nil and type(default) or RESERVED[k]
    if not want then
      local valid = sorted_keys(defaults)
      for i, key in ipairs(valid) do valid[i] = tostring(key) end
      local reserved = {}
      for _, key in ipairs(sorted_keys(RESERVED)) do
        if defaults[key] == nil then reserved[#reserved + 1] = key end
      end
      fail(string.format("unknown config key '%s' (valid keys: %s%s)", tostring(k),
           #valid > 0 and table.concat(valid, ", ") or "none",
           #reserved > 0 and "; also " .. table.concat(reserved, ", ") or ""))
    end
    if want == "string" then
      v = raw and raw[k] or tostring(v)
    elseif want == "table" then
      fail(string.format("config key '%s' holds a table and cannot be set from the command line", k))
    elseif type(v) ~= want then
      fail(string.format("config key '%s' expects a %s (default %s), got %s", k, want,
           describe(default), describe(raw and raw[k] or v)))
    end
    if want == "number" and INTEGER_KEYS[k] and v ~= math.floor(v) then check_kind(k, v, "integer", default) end
    if k ~= "resume" then config[k] = v end
  end
end

-- The config a run gets: the defaults, then (when resuming) the checkpoint's config (a resumed run
-- is the same experiment), then the overrides on top (steps=, to run longer); every override and
-- every declared kind checked.  Raises on the first bad key or value.
local function resolve(defaults, kinds, overrides, raw, checkpoint_config)
  local config = {}
  for k, v in pairs(defaults) do config[k] = v end
  for k, v in pairs(checkpoint_config or {}) do
    if defaults[k] ~= nil or RESERVED[k] then config[k] = v end
  end
  apply_overrides(config, defaults, overrides, raw)
  if kinds ~= nil and type(kinds) ~= "table" then fail("start: kinds must be a table {key = kind}") end
  for k, kind in pairs(kinds or {}) do
    if defaults[k] == nil then fail(string.format("start: kinds names '%s', which is not a config key", tostring(k))) end
    check_kind(k, config[k], kind, defaults[k])
  end
  return config
end

-- What start would make of these overrides, without starting anything: `attnlab sweep` checks

M.resolve, M.describe = resolve, describe
return M
