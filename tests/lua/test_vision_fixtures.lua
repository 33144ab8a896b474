-- test_vision_fixtures.lua -- the image ops against PyTorch: forward values and gradients of conv2d,
-- max_pool2d (and its indices), avg_pool2d, interpolate, grid_sample and pad, and of ecc_pool2d (and
-- its window sizes) against an independent reference built from PyTorch's pooling, all from
-- tests/fixtures/vision_fixtures.safetensors (made by tests/fixtures/make_vision_fixtures.py, which
-- says how to rerun it).  Each case's lab function and options are in the file's metadata, so the
-- calls below are built from what the generator ran.
--
-- Tolerance: max|attnlab - torch| / max|torch| per tensor, below 1e-10 for float64 cases and 1e-5 for
-- float32 ones ("_f32"); indices and sizes exactly.
--
-- Run: ./build/attnlab tests/lua/test_vision_fixtures.lua
local lab = rawget(_G, "lab") or require "attnlab"
local check = dofile("tests/lua/check.lua")("vision_fixtures")

local PATH = "tests/fixtures/vision_fixtures.safetensors"
local FX = dofile("tests/lua/fixtures.lua")(check, PATH)
local meta, get, compare = FX.meta, FX.get, FX.compare
local json = lab.json

local function exactly(what, got, want)
  if not check.ok(got:shape_string() == want:shape_string(), what .. ": shape", got:shape_string() .. " vs " .. want:shape_string()) then
    return
  end
  check.value((got:to("float64") - want:to("float64")):abs():max():item() == 0, what)
end

-- the call of each op, given the case's leaves (in the generator's order) and options
local function copy(t) local c = {} for k, v in pairs(t) do c[k] = v end return c end
local calls = {
  conv2d = function(inputs, opts) return lab.conv2d(inputs[1], inputs[2], inputs[3], opts) end,
  max_pool2d = function(inputs, opts)
    local o = copy(opts)
    local kernel = o.kernel
    o.kernel, o.indices = nil, true
    return lab.max_pool2d(inputs[1], kernel, o)
  end,
  avg_pool2d = function(inputs, opts)
    local o = copy(opts)
    local kernel = o.kernel
    o.kernel = nil
    return lab.avg_pool2d(inputs[1], kernel, o)
  end,
  ecc_pool2d = function(inputs, opts) return lab.ecc_pool2d(inputs[1], opts) end,
  interpolate = function(inputs, opts) return lab.interpolate(inputs[1], opts) end,
  grid_sample = function(inputs, opts) return lab.grid_sample(inputs[1], inputs[2], opts) end,
  pad = function(inputs, opts) return lab.pad(inputs[1], opts.pads, opts.value) end,
}

-- the cases, in a fixed order
local cases = {}
for key in pairs(meta) do
  local case = key:match("^(.*)%.op$")
  if case then cases[#cases + 1] = case end
end
table.sort(cases)
check.ok(#cases >= 40, "the file holds the cases (" .. #cases .. ")")
local seen_ops = {}

for _, case in ipairs(cases) do
  local op, opts, names = meta[case .. ".op"], json.decode(meta[case .. ".opts"]), json.decode(meta[case .. ".inputs"])
  seen_ops[op] = true
  local inputs = {}
  for i, n in ipairs(names) do inputs[i] = get(case .. "." .. n):clone():requires_grad(true) end
  local okf, y, extra = pcall(calls[op], inputs, opts)
  if check.ok(okf, case .. ": forward", not okf and tostring(y) or nil) then
    compare(case .. ": y", y, get(case .. ".y"))
    local okb, err = pcall(function() (y * get(case .. ".gy")):sum():backward() end)
    if check.ok(okb, case .. ": backward", not okb and tostring(err) or nil) then
      for i, n in ipairs(names) do
        local g = inputs[i].grad
        if check.ok(g ~= nil, case .. ": d" .. n .. " present") then compare(case .. ": d" .. n, g, get(case .. ".d" .. n)) end
      end
    end
    if op == "max_pool2d" then   -- PyTorch's indices are 0-based, attnlab's 1-based
      exactly(case .. ": indices", extra - 1, get(case .. ".indices"))
    elseif op == "ecc_pool2d" then
      local fix = opts.fixation
      if type(fix[1]) == "table" then fix = fix[1] end
      local o = copy(opts)
      o.fixation = fix
      local x = inputs[1]
      exactly(case .. ": window sizes (ecc_pool2d_sizes, first fixation)", lab.ecc_pool2d_sizes(x:size(3), x:size(4), o),
        get(case .. ".sizes"))
    end
  end
end
for _, op in ipairs{ "conv2d", "max_pool2d", "avg_pool2d", "ecc_pool2d", "interpolate", "grid_sample", "pad" } do
  check.ok(seen_ops[op], "the fixtures cover " .. op)
end

-- the same through the modules: nn.Conv2d with a fixture's parameters, as float32 (the modules' dtype)
do
  local m = lab.nn.Conv2d(6, 9, 3, { groups = 3, stride = 2, padding = 1 })
  m:load_state_dict{ weight = get("conv_groups.w"), bias = get("conv_groups.b") }
  local y = m(get("conv_groups.x"):to("float32"))
  compare("nn.Conv2d: y (float32 module, float64 reference)", y, get("conv_groups.y"):to("float32"))
  local mp = lab.nn.MaxPool2d(3, { stride = 2, padding = 1 })
  compare("nn.MaxPool2d: y", mp(get("max_stride_pad.x")), get("max_stride_pad.y"))
  local ap = lab.nn.AvgPool2d(3, { stride = 2, padding = 1, count_include_pad = false })
  compare("nn.AvgPool2d: y", ap(get("avg_pad_nocount.x")), get("avg_pad_nocount.y"))
  local o = json.decode(meta["ecc_avg.opts"])
  local fixation = o.fixation
  o.fixation = nil
  local ep = lab.nn.EccPool2d(o)
  compare("nn.EccPool2d: y", ep(get("ecc_avg.x"), fixation), get("ecc_avg.y"))
end

-- every tensor in the file was checked
FX.all_used()

os.exit(check.report(), true)
