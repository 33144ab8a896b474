-- bench/conv_passes.lua -- ms of each pass of a 2-D convolution on its own, on bench/conv_step.lua's
-- shapes: the forward (under no_grad), the weight gradient alone (x without a gradient) and the input
-- gradient alone (w without one), each the median of `reps` timed calls after 5 untimed ones.  For
-- comparing two builds of attnlab pass by pass (bench/RESULTS.md), not against PyTorch (conv_step.lua).
--   attnlab --threads N bench/conv_passes.lua [reps=30]
local lab = require "attnlab"

local cfg = { reps = 30 }
for _, a in ipairs(arg or {}) do
  local k, v = a:match("^(%w+)=(%d+)$")
  if k ~= "reps" then error("conv_passes: the only option is reps=N (got " .. a .. ")") end
  cfg.reps = tonumber(v)
end
local median = dofile("bench/stats.lua").median
lab.seed(1)
-- N, C, H, W, O, K, padding
local SHAPES = { { 8, 1, 128, 128, 16, 5, 2 }, { 8, 16, 64, 64, 32, 3, 1 }, { 8, 32, 32, 32, 64, 3, 1 }, { 16, 64, 32, 32, 64, 3, 1 } }
for _, s in ipairs(SHAPES) do
  local N, C, H, W, O, K, P = unpack(s)
  local opts, out = { padding = P }, {}
  for _, pass in ipairs{ "forward", "weight_grad", "input_grad" } do
    local x = lab.randn{ N, C, H, W }:requires_grad(pass == "input_grad")
    local w = (lab.randn{ O, C, K, K } * (1 / math.sqrt(C * K * K))):requires_grad(pass == "weight_grad")
    local g = lab.randn(lab.no_grad(function() return lab.conv2d(x, w, nil, opts) end):size())
    local times = {}
    for r = 1, cfg.reps + 5 do
      local t
      if pass == "forward" then
        local t0 = lab.time()
        lab.no_grad(function() return lab.conv2d(x, w, nil, opts) end)
        t = lab.time() - t0
      else
        local y = lab.conv2d(x, w, nil, opts)
        local t0 = lab.time()
        y:backward(g)
        t = lab.time() - t0
        x:zero_grad(); w:zero_grad()
      end
      if r > 5 then times[#times + 1] = t * 1e3 end
    end
    out[#out + 1] = string.format('"%s_ms": %.3f', pass, median(times))
  end
  print(string.format('{"shape": "%dx%dx%dx%d-%dx%d-p%d", "threads": %d, %s}', N, C, H, W, O, K, P, lab.num_threads(),
                      table.concat(out, ", ")))
end
