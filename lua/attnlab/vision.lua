-- attnlab.vision: the image ops of lab (NCHW tensors (N, C, H, W)): lab.conv2d, lab.max_pool2d,
-- lab.avg_pool2d, lab.ecc_pool2d and lab.ecc_pool2d_sizes, lab.interpolate, lab.grid_sample and
-- lab.pad.  Options are checked here for type and unknown keys (naming the function and the valid
-- keys), shapes and meaning in C.  init.lua loads it with the helpers the two share.
local ffi = require "ffi"

return function(lab, helpers)
  local C, raise, wrap, wrap_slot = helpers.C, helpers.raise, helpers.wrap, helpers.wrap_slot
  local typename, expect_tensor, is_tensor = helpers.typename, helpers.expect_tensor, helpers.is_tensor
  local ref_array = helpers.ref_array

  -- opts: nil or a table whose keys are all in valid (a list, the order of the message)
  local function options(opts, fn, valid)
    if opts == nil then return {} end
    if type(opts) ~= "table" or is_tensor(opts) then
      raise(string.format("%s: options must be a table {%s = ...} (got %s)", fn, table.concat(valid, "=, "), typename(opts)))
    end
    local known = {}
    for _, k in ipairs(valid) do known[k] = true end
    local unknown = {}
    for k in pairs(opts) do if not known[k] then unknown[#unknown + 1] = type(k) == "string" and "'" .. k .. "'" or "[" .. tostring(k) .. "]" end end
    if #unknown > 0 then
      table.sort(unknown)
      raise(string.format("%s: unknown option%s %s (valid: %s)", fn, #unknown > 1 and "s" or "", table.concat(unknown, ", "),
        table.concat(valid, ", ")))
    end
    return opts
  end

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

  ---------------------------------------------------------------------------------------------------
  -- lab.conv2d(x, w [, b] [, {stride = 1, padding = 0, dilation = 1, groups = 1}])
  ---------------------------------------------------------------------------------------------------
  local conv_opts_t = ffi.typeof("al_conv2d_opts")
  local conv_keys = { "stride", "padding", "dilation", "groups" }
  -- the C options from a table (shared with nn.Conv2d); kh, kw are the kernel's, for padding = "same"
  local function conv_options(opts, fn, kh, kw)
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
  lab._conv_options = conv_options

  function lab.conv2d(x, w, b, opts)
    expect_tensor(x, "conv2d", "x"); expect_tensor(w, "conv2d", "weight")
    if opts == nil and type(b) == "table" and not is_tensor(b) then b, opts = nil, b end
    if b ~= nil then expect_tensor(b, "conv2d", "bias") end
    opts = options(opts, "conv2d", conv_keys)
    local kh, kw = 1, 1
    if w:dim() == 4 then kh, kw = w:size(3), w:size(4) end
    return wrap(C.al_conv2d(x, w, helpers.opt_tensor(b), conv_options(opts, "conv2d", kh, kw)))
  end

  ---------------------------------------------------------------------------------------------------
  -- lab.max_pool2d(x, kernel [, opts]), lab.avg_pool2d(x, kernel [, opts])
  ---------------------------------------------------------------------------------------------------
  local pool_opts_t = ffi.typeof("al_pool2d_opts")
  local max_keys = { "stride", "padding", "dilation", "ceil_mode", "indices" }
  local avg_keys = { "stride", "padding", "ceil_mode", "count_include_pad" }
  local function pool_options(kernel, opts, fn, is_max)
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
  lab._pool_options = pool_options

  local idx_out = ref_array(1)
  function lab.max_pool2d(x, kernel, opts)
    expect_tensor(x, "max_pool2d", "x")
    opts = options(opts, "max_pool2d", max_keys)
    local want = boolean(opts.indices, "max_pool2d", "indices", false)
    local y = wrap(C.al_max_pool2d(x, pool_options(kernel, opts, "max_pool2d", true), want and idx_out or nil))
    if want then return y, wrap_slot(idx_out[0]):add(1) end   -- 1-based positions (iy - 1) W + ix
    return y
  end
  function lab.avg_pool2d(x, kernel, opts)
    expect_tensor(x, "avg_pool2d", "x")
    opts = options(opts, "avg_pool2d", avg_keys)
    return wrap(C.al_avg_pool2d(x, pool_options(kernel, opts, "avg_pool2d", false)))
  end

  ---------------------------------------------------------------------------------------------------
  -- lab.ecc_pool2d(x, {fixation =, slope =, deg2px =, stride = 2, rf_min = 2, fovea = 4, ring = 1,
  --                    mode = "avg"}), lab.ecc_pool2d_sizes(height, width, {...})
  ---------------------------------------------------------------------------------------------------
  local ecc_opts_t = ffi.typeof("al_ecc_pool2d_opts")
  local ecc_keys = { "fixation", "slope", "deg2px", "stride", "rf_min", "fovea", "ring", "mode" }
  local ecc_modes = { avg = 0, max = 1 }
  -- The C options, and the double array of fixations they point into (the caller keeps it alive
  -- through the call).  fixation: {x, y}, or for one per image a list of pairs or an (N, 2) tensor.
  local function ecc_options(opts, fn, one_only)
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
  lab._ecc_options = ecc_options

  function lab.ecc_pool2d(x, opts)
    expect_tensor(x, "ecc_pool2d", "x")
    opts = options(opts, "ecc_pool2d", ecc_keys)
    local o, keep = ecc_options(opts, "ecc_pool2d", false)
    local y = wrap(C.al_ecc_pool2d(x, o))
    keep = nil   -- o.fixation points into keep: it must stay alive through the call
    return y
  end

  function lab.ecc_pool2d_sizes(height, width, opts)
    if not is_int(height, 0) or not is_int(width, 0) then
      raise("ecc_pool2d_sizes: height and width must be integers >= 0 (got " .. tostring(height) .. ", " .. tostring(width) .. ")")
    end
    opts = options(opts, "ecc_pool2d_sizes", ecc_keys)
    local o, keep = ecc_options(opts, "ecc_pool2d_sizes", true)
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
    opts = options(opts, "interpolate", interp_keys)
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
    opts = options(opts, "grid_sample", sample_keys)
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
end
