-- attnlab.sweep_grid: the points of a sweep from its axes (lab.sweep.axis, lab.sweep.expand).
--
-- An axis is a config key and the values it takes, written on the command line as
--   key=a,b,c       the listed values
--   key=1..8        the integers 1 to 8 (inclusive; ascending, so 8..1 is an empty range, an error)
--   key=1..3,10     lists and ranges mix
-- The values stay text, as typed: each point runs as `attnlab run SCRIPT key=value ...`, where the
-- script's config decides what the text means (a number, a boolean, a string), exactly as for a
-- single run.  A value with a comma in it (a list-valued string key such as eval_lengths=20,40)
-- goes in with --set key=value instead, which is taken literally and never split.
--
-- Expansion: cartesian (every combination, the first axis varying slowest, like nested loops in
-- the order of the command line) or zipped (the i-th value of every axis together; the axes must
-- have the same length, except axes of one value, which every point shares).
local core = require "attnlab.core"

local M = {}

local function fail(msg) core.raise("sweep: " .. msg) end

-- a config key as `attnlab run` accepts one on the command line (lua/command_line.c, is_override)
local function valid_key(k)
  return type(k) == "string" and k:match("^[%a_][%w_.]*$") ~= nil
end
M.valid_key = valid_key

-- The values of one item of a list: "7" or "1..8".
local function expand_item(text, item, out)
  local a, b = item:match("^(%-?%d+)%.%.(%-?%d+)$")
  if a then
    a, b = tonumber(a), tonumber(b)
    if b < a then fail(string.format("%s: %s is an empty range (ranges go up: %d..%d)", text, item, b, a)) end
    if b - a >= 100000 then fail(string.format("%s: %s has %d values; a sweep that large is surely a typo", text, item, b - a + 1)) end
    for v = a, b do out[#out + 1] = tostring(v) end
  elseif item:find("..", 1, true) then
    fail(string.format("%s: '%s' is not a range (ranges are integers, FIRST..LAST, e.g. 1..8)", text, item))
  else
    out[#out + 1] = item
  end
end

-- "key=a,b,1..3" -> {key = "key", values = {"a", "b", "1", "2", "3"}, text = "key=a,b,1..3"}.
-- literal: the value is one value, never split (--set).
function M.axis(text, literal)
  if type(text) ~= "string" then fail("axis expects 'key=values', got a " .. type(text)) end
  local key, spec = text:match("^([^=]*)=(.*)$")
  if not key then fail(string.format("'%s' is not key=values", text)) end
  if not valid_key(key) then fail(string.format("'%s': '%s' is not a config key name", text, key)) end
  if literal then return { key = key, values = { spec }, text = text } end
  if spec == "" then fail(string.format("%s gives no values (key=a,b,c or key=1..8; --set %s= for an empty string)", text, key)) end
  local values = {}
  for item in (spec .. ","):gmatch("([^,]*),") do
    if item == "" then fail(string.format("%s has an empty value (two commas, or one at an end)", text)) end
    expand_item(text, item, values)
  end
  return { key = key, values = values, text = text }
end

-- axes: a list of axes (as M.axis returns, or {key =, values = {...}}); zip: pair values by
-- position instead of taking every combination.  Returns the list of points, each a list of
-- {key, value} in the order of the axes.
function M.expand(axes, zip)
  if type(axes) ~= "table" then fail("expand expects a list of axes {key =, values = {...}}") end
  local seen = {}
  for i, ax in ipairs(axes) do
    if type(ax) ~= "table" or not valid_key(ax.key) or type(ax.values) ~= "table" then
      fail(string.format("expand: axis %d is not {key = name, values = {...}}", i))
    end
    if #ax.values == 0 then fail(string.format("expand: axis '%s' has no values", ax.key)) end
    for j, v in ipairs(ax.values) do
      if type(v) ~= "string" and type(v) ~= "number" and type(v) ~= "boolean" then
        fail(string.format("expand: value %d of axis '%s' is a %s (values are strings, numbers or booleans)", j, ax.key, type(v)))
      end
    end
    if seen[ax.key] then fail(string.format("'%s' is given twice (%s and %s)", ax.key, seen[ax.key], ax.text or ax.key)) end
    seen[ax.key] = ax.text or ax.key
  end
  local points = {}
  if zip then
    local n = 1
    for _, ax in ipairs(axes) do
      if #ax.values > 1 then
        if n > 1 and #ax.values ~= n then
          local lens = {}
          for _, a in ipairs(axes) do lens[#lens + 1] = string.format("%s has %d", a.key, #a.values) end
          fail("--zip pairs the values by position, so the axes need the same number of values ("
            .. table.concat(lens, ", ") .. ")")
        end
        n = #ax.values
      end
    end
    for i = 1, n do
      local p = {}
      for _, ax in ipairs(axes) do p[#p + 1] = { ax.key, tostring(ax.values[#ax.values > 1 and i or 1]) } end
      points[i] = p
    end
  else
    local function walk(level, prefix)
      if level > #axes then
        local p = {}
        for i, kv in ipairs(prefix) do p[i] = kv end
        points[#points + 1] = p
        return
      end
      for _, v in ipairs(axes[level].values) do
        prefix[level] = { axes[level].key, tostring(v) }
        walk(level + 1, prefix)
      end
      prefix[level] = nil
    end
    walk(1, {})
  end
  return points
end

return M
