-- attnlab.nn_vision: the image modules of lab.nn over lab.conv2d and the pooling ops (vision.lua):
-- Conv2d, MaxPool2d, AvgPool2d and EccPool2d.  Inputs are (N, C, H, W).  nn.lua hands what this
-- returns to lab.nn.
local lab = require "attnlab"
local core, args = require "attnlab.core", require "attnlab.args"
local nn_module = require "attnlab.nn_module"
local vision_options = require "attnlab.vision_options"
local raise, is_tensor = core.raise, core.is_tensor

local nn = {}   -- what this file gives lab.nn

local check_options, check_positive_int, uniform = nn_module.check_options, nn_module.check_positive_int, nn_module.uniform
local options_table = args.options

-- an integer >= 1 or {h, w}: returns h, w
local function kernel_pair(k, fn)
  if type(k) == "number" then check_positive_int(k, fn, "kernel_size") return k, k end
  if type(k) == "table" and #k == 2 then
    check_positive_int(k[1], fn, "kernel_size[1]"); check_positive_int(k[2], fn, "kernel_size[2]")
    return k[1], k[2]
  end
  raise(string.format("%s: kernel_size must be an integer >= 1 or a table {h, w} (got %s)", fn, tostring(k)))
end

local function expect_image(self, x)
  if not is_tensor(x) or x:dim() ~= 4 then
    raise(string.format("%s: input must be a 4-d tensor (N, C, H, W) (got %s)", self:describe(),
      is_tensor(x) and x:shape_string() or type(x)))
  end
end

local function show(v) return type(v) == "table" and "{" .. table.concat(v, ", ") .. "}" or tostring(v) end

-------------------------------------------------------------------------------------------------
-- Conv2d(in, out, kernel_size [, {stride = 1, padding = 0, dilation = 1, groups = 1, bias = true}])
--   weight (out, in/groups, kh, kw) and bias (out) initialised U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
--   fan_in = in/groups kh kw: PyTorch's default (kaiming_uniform_ with a = sqrt(5) comes to this).
-------------------------------------------------------------------------------------------------
local Conv2d = nn_module.class("Conv2d")
nn.Conv2d = Conv2d
local conv_keys = { "stride", "padding", "dilation", "groups", "bias" }
function Conv2d:init(nin, nout, kernel, opts)
  check_positive_int(nin, "Conv2d", "in_channels")
  check_positive_int(nout, "Conv2d", "out_channels")
  local kh, kw = kernel_pair(kernel, "Conv2d")
  opts = options_table(opts, "Conv2d", conv_keys)
  local groups = opts.groups or 1
  check_positive_int(groups, "Conv2d", "groups")
  if nin % groups ~= 0 or nout % groups ~= 0 then
    raise(string.format("Conv2d: groups = %d must divide in_channels = %d and out_channels = %d", groups, nin, nout))
  end
  if opts.bias ~= nil and type(opts.bias) ~= "boolean" then raise("Conv2d: bias must be true or false (got " .. tostring(opts.bias) .. ")") end
  self.nin, self.nout, self.kh, self.kw, self.groups = nin, nout, kh, kw, groups
  self.stride, self.padding, self.dilation = opts.stride or 1, opts.padding or 0, opts.dilation or 1
  self.conv_opts = { stride = self.stride, padding = self.padding, dilation = self.dilation, groups = groups }
  vision_options.conv_options(self.conv_opts, "Conv2d", kh, kw)   -- the options' errors now, not at the first forward
  local bound = 1 / math.sqrt(nin / groups * kh * kw)
  self.weight = self:add_param("weight", uniform({ nout, nin / groups, kh, kw }, bound))
  if opts.bias ~= false then self.bias = self:add_param("bias", uniform({ nout }, bound)) end
end
function Conv2d:forward(x)
  expect_image(self, x)
  if x:size(2) ~= self.nin then
    raise(string.format("%s: input of shape %s does not have %d channels", self:describe(), x:shape_string(), self.nin))
  end
  return lab.conv2d(x, self.weight, self.bias, self.conv_opts)
end
function Conv2d:describe()
  local extra = {}
  if self.stride ~= 1 then extra[#extra + 1] = "stride=" .. show(self.stride) end
  if self.padding ~= 0 then extra[#extra + 1] = "padding=" .. show(self.padding) end
  if self.dilation ~= 1 then extra[#extra + 1] = "dilation=" .. show(self.dilation) end
  if self.groups ~= 1 then extra[#extra + 1] = "groups=" .. self.groups end
  if not self.bias then extra[#extra + 1] = "bias=false" end
  return string.format("Conv2d(%d, %d, %s%s)", self.nin, self.nout, self.kh == self.kw and self.kh or show{ self.kh, self.kw },
    #extra > 0 and ", " .. table.concat(extra, ", ") or "")
end

-------------------------------------------------------------------------------------------------
-- MaxPool2d(kernel_size [, {stride = kernel_size, padding = 0, dilation = 1, ceil_mode = false}]),
-- AvgPool2d(kernel_size [, {stride = kernel_size, padding = 0, ceil_mode = false, count_include_pad = true}])
-------------------------------------------------------------------------------------------------
local function pool_class(name, fn, keys, is_max)
  local cls = nn_module.class(name)
  function cls:init(kernel, opts)
    local kh, kw = kernel_pair(kernel, name)
    opts = options_table(opts, name, keys)
    self.kernel, self.opts = kernel, {}
    for _, k in ipairs(keys) do self.opts[k] = opts[k] end
    vision_options.pool_options({ kh, kw }, self.opts, name, is_max)   -- the options' errors now
  end
  function cls:forward(x)
    expect_image(self, x)
    return lab[fn](x, self.kernel, self.opts)
  end
  function cls:describe()
    local extra = {}
    for _, k in ipairs(keys) do if self.opts[k] ~= nil then extra[#extra + 1] = k .. "=" .. show(self.opts[k]) end end
    return string.format("%s(%s%s)", name, show(self.kernel), #extra > 0 and ", " .. table.concat(extra, ", ") or "")
  end
  return cls
end
nn.MaxPool2d = pool_class("MaxPool2d", "max_pool2d", { "stride", "padding", "dilation", "ceil_mode" }, true)
nn.AvgPool2d = pool_class("AvgPool2d", "avg_pool2d", { "stride", "padding", "ceil_mode", "count_include_pad" }, false)

-------------------------------------------------------------------------------------------------
-- EccPool2d{slope =, deg2px =, stride = 2, rf_min = 2, fovea = 4, ring = 1, mode = "avg", fixation =}:
--   lab.ecc_pool2d as a module.  forward(x [, fixation]) pools around the fixation given, else
--   around m.fixation (set it before each forward inside a Sequential).
-------------------------------------------------------------------------------------------------
local EccPool2d = nn_module.class("EccPool2d")
nn.EccPool2d = EccPool2d
local ecc_keys = { "slope", "deg2px", "stride", "rf_min", "fovea", "ring", "mode", "fixation" }
function EccPool2d:init(opts)
  if type(opts) ~= "table" or is_tensor(opts) then
    raise("EccPool2d: expects a table of options {slope =, deg2px =, ...} (got " .. type(opts) .. ")")
  end
  check_options(opts, "EccPool2d", ecc_keys)
  self.opts = {}
  for _, k in ipairs(ecc_keys) do if k ~= "fixation" then self.opts[k] = opts[k] end end
  self.fixation = opts.fixation
  -- the options' errors now (with a stand-in fixation when none is given yet)
  local probe = {}
  for k, v in pairs(self.opts) do probe[k] = v end
  probe.fixation = self.fixation or { 0, 0 }
  vision_options.ecc_options(probe, "EccPool2d", false)
end
function EccPool2d:forward(x, fixation)
  expect_image(self, x)
  local call = {}
  for k, v in pairs(self.opts) do call[k] = v end
  call.fixation = fixation or self.fixation
  if call.fixation == nil then raise("EccPool2d: no fixation (give forward(x, {x, y}) or set m.fixation)") end
  return lab.ecc_pool2d(x, call)
end
function EccPool2d:describe()
  return string.format("EccPool2d(slope=%g, deg2px=%g, stride=%d, mode=%s)", self.opts.slope, self.opts.deg2px,
    self.opts.stride or 2, self.opts.mode or "avg")
end

return nn
