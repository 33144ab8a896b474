-- attnlab.vision_options: the options tables of the image ops made into the C structs they pass
-- (al_conv2d_opts, al_pool2d_opts, al_ecc_pool2d_opts), checked for type and range, naming the
-- function the user called.  lab.conv2d and the pooling ops (vision.lua) and their modules
-- (nn.Conv2d, nn.MaxPool2d, ..., nn_vision.lua, which check at construction) share them.
local ffi = require "ffi"
local core, args = require "attnlab.core", require "attnlab.args"

local raise, is_tensor = core.raise, core.is_tensor
local typename = args.typename

local M = {}

local function is_int(v, least) return type(v) == "number" and v == math.floor(v) and v >= least and v < 2^53 end

-- an integer for both axes, or a table {h, w}: returns h, w
local function pair(v, fn, what, least)
  if is_int(v, least) then return v, v end
  if type(v) == "table" and not is_tensor(v) and #v == 2 and is_int(v[1], least) and is_int(v[2], least) then return v[1], v[2] end
  raise(string.format("%s: %s must be an integer >= %d or a table {h, w} of them (got %s)", fn, what, least,
    type(v) == "table" and "a table of " .. #v .. " entries" or tostring(v)))
end

local function boolean(v, fn, what, default)
  if v == nil then return default end
  if type(v) ~= "boolean" then raise(string.format("%s: %s must be true or false (got %s)", fn, what, tostring(v))) end
  return v
end

local function number(v, fn, what, default, least)
  if v == nil then v = default end
  if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge or v < least then
    raise(string.format("%s: %s must be a number >= %g (got %s)", fn, what, least, tostring(v)))
  end
  return v
end

M.is_int, M.pair, M.boolean, M.number = is_int, pair, boolean, number

local conv_opts_t = ffi.typeof("al_conv2d_opts")
M.conv_keys = { "stride", "padding", "dilation", "groups" }
-- the C options from a table (shared with nn.Conv2d); kh, kw are the kernel's, for padding = "same"
function M.conv_options(opts, fn, kh, kw)
  local o = conv_opts_t()
  local sh, sw = pair(opts.stride or 1, fn, "stride", 1)
  local dh, dw = pair(opts.dilation or 1, fn, "dilation", 1)
  local groups = opts.groups or 1
  if not is_int(groups, 1) then raise(fn .. ": groups must be an integer >= 1 (got " .. tostring(groups) .. ")") end
  local pad = opts.padding or 0
  local top, bottom, left, right
  if pad == "valid" then
    top, bottom, left, right = 0, 0, 0, 0
  elseif pad == "same" then
    -- PyTorch's rule: the total dilation (k - 1) split with the odd one after
    if sh ~= 1 or sw ~= 1 then raise(fn .. ": padding = \"same\" needs stride 1 (got stride {" .. sh .. "," .. sw .. "})") end
    local th, tw = dh * (kh - 1), dw * (kw - 1)
    top, left = math.floor(th / 2), math.floor(tw / 2)
    bottom, right = th - top, tw - left
  elseif type(pad) == "string" then
    raise(fn .. ": padding must be an integer, {h, w}, \"same\" or \"valid\" (got \"" .. pad .. "\")")
  else
    top, left = pair(pad, fn, "padding", 0)
    bottom, right = top, left
  end
  o.stride[0], o.stride[1] = sh, sw
  o.dilation[0], o.dilation[1] = dh, dw
  o.padding[0], o.padding[1], o.padding[2], o.padding[3] = top, bottom, left, right
  o.groups = groups
  return o
end

local pool_opts_t = ffi.typeof("al_pool2d_opts")
M.max_keys = { "stride", "padding", "dilation", "ceil_mode", "indices" }
M.avg_keys = { "stride", "padding", "ceil_mode", "count_include_pad" }
function M.pool_options(kernel, opts, fn, is_max)
  local o = pool_opts_t()
  local kh, kw = pair(kernel, fn, "kernel", 1)
  o.kernel[0], o.kernel[1] = kh, kw
  o.stride[0], o.stride[1] = pair(opts.stride or { kh, kw }, fn, "stride", 1)
  o.padding[0], o.padding[1] = pair(opts.padding or 0, fn, "padding", 0)
  if is_max then o.dilation[0], o.dilation[1] = pair(opts.dilation or 1, fn, "dilation", 1) end
  o.ceil_mode = boolean(opts.ceil_mode, fn, "ceil_mode", false) and 1 or 0
  if not is_max then o.count_include_pad = boolean(opts.count_include_pad, fn, "count_include_pad", true) and 1 or 0 end
  return o
end

local ecc_opts_t = ffi.typeof("al_ecc_pool2d_opts")
M.ecc_keys = { "fixation", "slope", "deg2px", "stride", "rf_min", "fovea", "ring", "mode" }
local ecc_modes = { avg = 0, max = 1 }
-- The C options, and the double array of fixations they point into (the caller keeps it alive
-- through the call).  fixation: {x, y}, or for one per image a list of pairs or an (N, 2) tensor.
function M.ecc_options(opts, fn, one_only)
  local fix = opts.fixation
  local flat = {}
  if is_tensor(fix) then
    if one_only or fix:dim() ~= 2 or fix:size(2) ~= 2 then
      raise(string.format("%s: fixation must be %s (got a tensor of shape %s)", fn,
        one_only and "a pair {x, y}" or "{x, y} or an (N, 2) tensor", fix:shape_string()))
    end
    for i, row in ipairs(fix:to("float64"):totable()) do flat[2 * i - 1], flat[2 * i] = row[1], row[2] end
  elseif type(fix) == "table" and type(fix[1]) == "number" then
    if #fix ~= 2 or type(fix[2]) ~= "number" then
      raise(string.format("%s: fixation must be a pair {x, y} (got a table of %d entries)", fn, #fix))
    end
    flat = { fix[1], fix[2] }
  elseif type(fix) == "table" and not one_only and #fix > 0 then
    for i, p in ipairs(fix) do
      if type(p) ~= "table" or #p ~= 2 or type(p[1]) ~= "number" or type(p[2]) ~= "number" then
        raise(string.format("%s: fixation[%d] must be a pair {x, y} (got %s)", fn, i, typename(p)))
      end
      flat[2 * i - 1], flat[2 * i] = p[1], p[2]
    end
  else
    raise(string.format("%s: opts.fixation, the point {x, y} in pixels from the top-left corner, is required (got %s)", fn,
      typename(fix)))
  end
  if opts.slope == nil or opts.deg2px == nil then
    raise(fn .. ": opts.slope and opts.deg2px are required (eccNET: slope 0.07, 0.16, 0.32 with deg2px 8, 4, 2 at pool3..5)")
  end
  local o = ecc_opts_t()
  local arr = ffi.new("double[?]", #flat)
  for i = 1, #flat do arr[i - 1] = flat[i] end
  o.fixation, o.n_fixations = arr, #flat / 2
  if not is_int(opts.stride or 2, 1) then raise(fn .. ": stride must be an integer >= 1 (got " .. tostring(opts.stride) .. ")") end
  if not is_int(opts.rf_min or 2, 1) then raise(fn .. ": rf_min must be an integer >= 1 (got " .. tostring(opts.rf_min) .. ")") end
  o.stride = opts.stride or 2
  o.rf_min = opts.rf_min or 2
  o.slope = number(opts.slope, fn, "slope", nil, 0)
  o.deg2px = number(opts.deg2px, fn, "deg2px", nil, 0)
  o.fovea = number(opts.fovea, fn, "fovea", 4, 0)
  o.ring = number(opts.ring, fn, "ring", 1, 0)
  local mode = ecc_modes[opts.mode or "avg"]
  if not mode then raise(fn .. ": mode must be \"avg\" or \"max\" (got " .. tostring(opts.mode) .. ")") end
  o.max_pool = mode
  return o, arr
end

return M
