-- attnlab.args: the argument checks every lab function makes before anything reaches the C core,
-- the second half of the shared layer (attnlab.core has the first: loading, raise, the core's errors).
--
-- A value the FFI cannot convert (a table where a double goes) would otherwise fail inside it, as
-- "bad argument #2 to 'al_fill_' (cannot convert 'table' to 'double')" at a line of the module: a
-- message that names neither the function the user called nor the user's line.  Each check here
-- raises "<fn>: <what> must be ... (got ...)" through core.raise, which locates it at the user's
-- line.  Every file that checks arguments requires this module; none keeps checkers of its own.
local core = require "attnlab.core"
local raise, is_tensor = core.raise, core.is_tensor

local args = {}

-- "tensor" for a tensor, else Lua's type name; "nan" for NaN (a number that fails every range)
local function typename(x)
  if is_tensor(x) then return "tensor" end
  return type(x)
end
args.typename = typename

-- what a value was, for a message: a number or string as itself, anything else by its type
local function show(x)
  if type(x) == "number" then
    if x ~= x then return "nan" end
    return tostring(x)
  end
  if type(x) == "string" then return string.format("%q", #x > 40 and x:sub(1, 40) .. "..." or x) end
  if type(x) == "boolean" then return tostring(x) end
  return typename(x)
end
args.show = show

function args.expect_tensor(x, fn, arg)
  if is_tensor(x) then return x end
  raise(string.format("%s: argument '%s' must be a tensor (got %s)", fn, arg, typename(x)))
end

function args.check_int(v, fn, what)
  if type(v) ~= "number" or v ~= v or v ~= math.floor(v) or v >= 2^53 or v <= -2^53 then
    raise(string.format("%s: %s must be an integer (got %s)", fn, what, show(v)))
  end
  return v
end

function args.check_positive_int(v, fn, what)
  if type(v) ~= "number" or v ~= math.floor(v) or v < 1 or v >= 2^53 then
    raise(string.format("%s: %s must be a positive integer (got %s)", fn, what, show(v)))
  end
  return v
end

-- A number for a scalar argument.  With no range any number passes, NaN and infinities included
-- (t:fill_(0/0) is a fair request).  A range is {lo, hi} with either end nil (open) and
-- exclusive ends marked by lo_open / hi_open; NaN never lies in a range, so giving one also
-- refuses NaN.  finite = true refuses NaN and the infinities alone.
--   check_number(v, "dropout", "p", {0, 1, hi_open = true})   -> "dropout: p must be a number in [0, 1) (got 2)"
local function describe_range(r)
  if r.finite and r[1] == nil and r[2] == nil then return "a finite number" end
  if r[1] == -math.huge and r[2] == math.huge then return "a number other than NaN" end
  if r[1] ~= nil and r[2] ~= nil then
    return string.format("a number in %s%g, %g%s", r.lo_open and "(" or "[", r[1], r[2], r.hi_open and ")" or "]")
  end
  if r[1] ~= nil then return string.format("a%s number %s %g", r.finite and " finite" or "", r.lo_open and ">" or ">=", r[1]) end
  return string.format("a%s number %s %g", r.finite and " finite" or "", r.hi_open and "<" or "<=", r[2])
end
local function in_range(v, r)
  if r.finite and (v ~= v or v == math.huge or v == -math.huge) then return false end
  local lo, hi = r[1], r[2]
  if lo ~= nil and not (r.lo_open and v > lo or not r.lo_open and v >= lo) then return false end
  if hi ~= nil and not (r.hi_open and v < hi or not r.hi_open and v <= hi) then return false end
  return true
end
function args.check_number(v, fn, what, range)
  if type(v) ~= "number" then
    local nan_only = range and range[1] == -math.huge and range[2] == math.huge
    raise(string.format("%s: %s must be %s (got %s)", fn, what, range and not nan_only and describe_range(range) or "a number", show(v)))
  end
  if range and not in_range(v, range) then
    raise(string.format("%s: %s must be %s (got %s)", fn, what, describe_range(range), show(v)))
  end
  return v
end
-- the same for an optional argument: nil gives default
function args.opt_number(v, default, fn, what, range)
  if v == nil then return default end
  return args.check_number(v, fn, what, range)
end

-- Every options table rejects a key it does not know, naming the function and the valid keys:
-- "attention: unknown option 'bogus' (valid: variant, causal, ...)".  valid is a list (the order
-- of the message); hint, when given, is hint(key) -> extra text or nil; where, when given, says
-- which table (" in attention = {...}").
function args.check_options(opts, fn, valid, hint, where)
  local known = {}
  for _, k in ipairs(valid) do known[k] = true end
  local unknown = {}
  for k in pairs(opts) do if not known[k] then unknown[#unknown + 1] = k end end
  if #unknown == 0 then return opts end
  table.sort(unknown, function(a, b) return tostring(a) < tostring(b) end)
  local names = {}
  for i, k in ipairs(unknown) do names[i] = type(k) == "string" and "'" .. k .. "'" or "[" .. tostring(k) .. "]" end
  local extra = hint and hint(unknown[1]) or nil
  raise(string.format("%s: unknown option%s %s%s (valid: %s)%s", fn, #unknown > 1 and "s" or "", table.concat(names, ", "),
    where or "", table.concat(valid, ", "), extra and "; " .. extra or ""))
end

-- A copy of defaults with opts over it, for the settings tables of the task modules (shelves.config,
-- shelf_search.params): a key of opts that defaults lacks is refused, the first pairs() meets, as
-- "fn: unknown NOUN 'key' (valid: the defaults' keys, sorted)".
function args.over_defaults(defaults, opts, fn, noun)
  for k in pairs(opts) do
    if defaults[k] == nil then
      local names = {}
      for name in pairs(defaults) do names[#names + 1] = name end
      table.sort(names)
      raise(fn .. ": unknown " .. noun .. " '" .. tostring(k) .. "' (valid: " .. table.concat(names, ", ") .. ")")
    end
  end
  local merged = {}
  for k, v in pairs(defaults) do
    if opts[k] ~= nil then merged[k] = opts[k] else merged[k] = v end
  end
  return merged
end

-- an options table that may be absent: nil gives {}, anything but a table is an error
function args.options_table(opts, fn, example)
  if opts == nil then return {} end
  if type(opts) ~= "table" or is_tensor(opts) then
    raise(string.format("%s: options must be a table %s (got %s)", fn, example or "{...}", typename(opts)))
  end
  return opts
end

-- Both at once, with the valid keys as the example: nil gives {}; a non-table is "conv2d: options
-- must be a table {stride=, padding=, dilation=, groups = ...} (got number)"; an unknown key is
-- refused as check_options refuses it.
function args.options(opts, fn, valid)
  opts = args.options_table(opts, fn, "{" .. table.concat(valid, "=, ") .. " = ...}")
  return args.check_options(opts, fn, valid)
end

return args
