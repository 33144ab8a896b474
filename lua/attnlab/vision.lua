-- attnlab.vision: the image ops of lab (NCHW tensors (N, C, H, W)): lab.conv2d, lab.max_pool2d,
-- lab.avg_pool2d, lab.ecc_pool2d and lab.ecc_pool2d_sizes, lab.interpolate, lab.grid_sample and
-- lab.pad.  Options are checked here for type and unknown keys (naming the function and the valid
-- keys; vision_options.lua makes the C structs), shapes and meaning in C.  init.lua hands what this
-- returns to lab.
local ffi = require "ffi"
local core, args = require "attnlab.core", require "attnlab.args"
local O = require "attnlab.vision_options"

local C, raise, wrap, wrap_slot, is_tensor = core.C, core.raise, core.wrap, core.wrap_slot, core.is_tensor
local typename, expect_tensor = args.typename, args.expect_tensor
local is_int, pair, boolean, number = O.is_int, O.pair, O.boolean, O.number
local ref_array = core.ref_array

local lab = {}   -- the functions this file gives lab

---------------------------------------------------------------------------------------------------
-- lab.conv2d(x, w [, b] [, {stride = 1, padding = 0, dilation = 1, groups = 1}])
---------------------------------------------------------------------------------------------------

function lab.conv2d(x, w, b, opts)
  expect_tensor(x, "conv2d", "x"); expect_tensor(w, "conv2d", "weight")
  if opts == nil and type(b) == "table" and not is_tensor(b) then b, opts = nil, b end
  if b ~= nil then expect_tensor(b, "conv2d", "bias") end
  opts = args.options(opts, "conv2d", O.conv_keys)
  local kh, kw = 1, 1
  if w:dim() == 4 then kh, kw = w:size(3), w:size(4) end
  return wrap(C.al_conv2d(x, w, core.opt_tensor(b), O.conv_options(opts, "conv2d", kh, kw)))
end

---------------------------------------------------------------------------------------------------
-- lab.max_pool2d(x, kernel [, opts]), lab.avg_pool2d(x, kernel [, opts])
---------------------------------------------------------------------------------------------------

local idx_out = ref_array(1)
function lab.max_pool2d(x, kernel, opts)
  expect_tensor(x, "max_pool2d", "x")
  opts = args.options(opts, "max_pool2d", O.max_keys)
  local want = boolean(opts.indices, "max_pool2d", "indices", false)
  local y = wrap(C.al_max_pool2d(x, O.pool_options(kernel, opts, "max_pool2d", true), want and idx_out or nil))
  if want then return y, wrap_slot(idx_out[0]):add(1) end   -- 1-based positions (iy - 1) W + ix
  return y
end
function lab.avg_pool2d(x, kernel, opts)
  expect_tensor(x, "avg_pool2d", "x")
  opts = args.options(opts, "avg_pool2d", O.avg_keys)
  return wrap(C.al_avg_pool2d(x, O.pool_options(kernel, opts, "avg_pool2d", false)))
end

---------------------------------------------------------------------------------------------------
-- lab.ecc_pool2d(x, {fixation =, slope =, deg2px =, stride = 2, rf_min = 2, fovea = 4, ring = 1,
--                    mode = "avg"}), lab.ecc_pool2d_sizes(height, width, {...})
---------------------------------------------------------------------------------------------------

function lab.ecc_pool2d(x, opts)
  expect_tensor(x, "ecc_pool2d", "x")
  opts = args.options(opts, "ecc_pool2d", O.ecc_keys)
  local o, keep = O.ecc_options(opts, "ecc_pool2d", false)
  local y = wrap(C.al_ecc_pool2d(x, o))
  keep = nil   -- o.fixation points into keep: it must stay alive through the call
  return y
end

function lab.ecc_pool2d_sizes(height, width, opts)
  if not is_int(height, 0) or not is_int(width, 0) then
    raise("ecc_pool2d_sizes: height and width must be integers >= 0 (got " .. tostring(height) .. ", " .. tostring(width) .. ")")
  end
  opts = args.options(opts, "ecc_pool2d_sizes", O.ecc_keys)
  local o, keep = O.ecc_options(opts, "ecc_pool2d_sizes", true)
  local sizes = wrap(C.al_ecc_pool2d_sizes(height, width, o))
  keep = nil   -- (as in ecc_pool2d)
  return sizes
end

---------------------------------------------------------------------------------------------------
-- lab.interpolate(x, {size = | scale_factor =, mode = "bilinear", align_corners = false})
---------------------------------------------------------------------------------------------------
local interp_keys = { "size", "scale_factor", "mode", "align_corners" }
local interp_modes = { bilinear = 0, nearest = 1 }
function lab.interpolate(x, opts)
  expect_tensor(x, "interpolate", "x")
  opts = args.options(opts, "interpolate", interp_keys)
  if (opts.size == nil) == (opts.scale_factor == nil) then
    raise("interpolate: give exactly one of opts.size ({h, w} or one integer) and opts.scale_factor")
  end
  local mode = interp_modes[opts.mode or "bilinear"]
  if not mode then raise("interpolate: mode must be \"bilinear\" or \"nearest\" (got " .. tostring(opts.mode) .. ")") end
  local align = boolean(opts.align_corners, "interpolate", "align_corners", false)
  if mode == 1 and opts.align_corners ~= nil then
    raise("interpolate: align_corners applies to mode \"bilinear\" only (as in PyTorch)")
  end
  local oh, ow, sh, sw = 0, 0, 0, 0
  if opts.size ~= nil then
    oh, ow = pair(opts.size, "interpolate", "size", 1)
  else
    local sf = opts.scale_factor
    if type(sf) == "number" then sh, sw = sf, sf
    elseif type(sf) == "table" and #sf == 2 then sh, sw = sf[1], sf[2]
    else raise("interpolate: scale_factor must be a number or a table {h, w} (got " .. typename(sf) .. ")") end
    sh = number(sh, "interpolate", "scale_factor", nil, 0)
    sw = number(sw, "interpolate", "scale_factor", nil, 0)
    if sh == 0 or sw == 0 then raise("interpolate: scale_factor must be > 0") end
    if x:dim() == 4 then oh, ow = math.floor(x:size(3) * sh), math.floor(x:size(4) * sw) end
  end
  return wrap(C.al_interpolate(x, oh, ow, mode, align and 1 or 0, sh, sw))
end

---------------------------------------------------------------------------------------------------
-- lab.grid_sample(x, grid [, {align_corners = false, padding_mode = "zeros"}])
---------------------------------------------------------------------------------------------------
local sample_keys = { "align_corners", "padding_mode" }
local padding_modes = { zeros = 0, border = 1 }
function lab.grid_sample(x, grid, opts)
  expect_tensor(x, "grid_sample", "x"); expect_tensor(grid, "grid_sample", "grid")
  opts = args.options(opts, "grid_sample", sample_keys)
  local pm = padding_modes[opts.padding_mode or "zeros"]
  if not pm then raise("grid_sample: padding_mode must be \"zeros\" or \"border\" (got " .. tostring(opts.padding_mode) .. ")") end
  local align = boolean(opts.align_corners, "grid_sample", "align_corners", false)
  return wrap(C.al_grid_sample(x, grid, align and 1 or 0, pm))
end

---------------------------------------------------------------------------------------------------
-- lab.pad(x, pads [, value])
---------------------------------------------------------------------------------------------------
function lab.pad(x, pads, value)
  expect_tensor(x, "pad", "x")
  if type(pads) ~= "table" or is_tensor(pads) or #pads == 0 or #pads % 2 ~= 0 then
    raise("pad: pads must be a table of (before, after) pairs, last dimension first: {left, right [, top, bottom ...]} (got " ..
      (type(pads) == "table" and "a table of " .. #pads .. " entries" or typename(pads)) .. ")")
  end
  local arr = ffi.new("int64_t[?]", #pads)
  for i, p in ipairs(pads) do
    if not is_int(p, -2^53 + 1) then raise(string.format("pad: pads[%d] must be an integer (got %s)", i, tostring(p))) end
    arr[i - 1] = p
  end
  if value ~= nil and type(value) ~= "number" then raise("pad: value must be a number (got " .. typename(value) .. ")") end
  return wrap(C.al_pad(x, #pads / 2, arr, value or 0))
end

return lab
