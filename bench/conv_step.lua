-- bench/conv_step.lua -- ms of a 2-D convolution forward, and forward + backward (the gradients of
-- the input, the weight and the bias), on the shapes of the visual-search study's CNN, timed the way
-- bench/torch_ref/conv_step.py times PyTorch's conv2d: inputs made beforehand, `warmup` calls, then
-- the median of `reps` timed calls.  One JSON line per shape.
--   attnlab bench/conv_step.lua [reps=20] [warmup=5] [shapes=all]
-- A shape is NxCxHxW-OxK[-sS][-pP]: N images of C channels, H x W, O filters K x K, stride S, padding P.
local lab = require "attnlab"

local cfg = { reps = 20, warmup = 5, shapes = "all", seed = 1 }
local stats = dofile("bench/stats.lua")
stats.args("conv_step", cfg)
-- the SearchNet-like stack (three conv blocks on a 128 x 128 grey display), and a wider one
local SHAPES = { "8x1x128x128-16x5-p2", "8x16x64x64-32x3-p1", "8x32x32x32-64x3-p1", "16x64x32x32-64x3-p1" }
if cfg.shapes ~= "all" then SHAPES = {} for s in cfg.shapes:gmatch("[^,]+") do SHAPES[#SHAPES + 1] = s end end

local median = stats.median
lab.seed(cfg.seed)
for _, spec in ipairs(SHAPES) do
  local N, C, H, W, O, K = spec:match("^(%d+)x(%d+)x(%d+)x(%d+)%-(%d+)x(%d+)")
  if not N then error("conv_step: shape must be NxCxHxW-OxK[-sS][-pP] (got " .. spec .. ")") end
  N, C, H, W, O, K = tonumber(N), tonumber(C), tonumber(H), tonumber(W), tonumber(O), tonumber(K)
  local stride, padding = tonumber(spec:match("%-s(%d+)") or 1), tonumber(spec:match("%-p(%d+)") or 0)
  local x = lab.randn{ N, C, H, W }:requires_grad(true)
  local w = (lab.randn{ O, C, K, K } * (1 / math.sqrt(C * K * K))):requires_grad(true)
  local b = lab.zeros{ O }:requires_grad(true)
  local opts = { stride = stride, padding = padding }
  local fwd, both = {}, {}
  for r = 1, cfg.warmup + cfg.reps do
    local t0 = lab.time()
    local y = lab.no_grad(function() return lab.conv2d(x, w, b, opts) end)
    local t1 = lab.time()
    x:zero_grad(); w:zero_grad(); b:zero_grad()
    local t2 = lab.time()
    lab.conv2d(x, w, b, opts):sum():backward()
    local t3 = lab.time()
    if r > cfg.warmup then fwd[#fwd + 1], both[#both + 1] = (t1 - t0) * 1e3, (t3 - t2) * 1e3 end
    y = nil
  end
  local Ho = math.floor((H + 2 * padding - K) / stride) + 1
  local Wo = math.floor((W + 2 * padding - K) / stride) + 1
  local gflop = 2 * N * O * Ho * Wo * C * K * K / 1e9      -- the forward's multiply-adds x 2
  print(string.format('{"impl": "attnlab", "shape": "%s", "threads": %d, "forward_ms": %.3f, "forward_backward_ms": %.3f, "forward_gflop": %.4f, "blas_kernel": "%s"}',
    spec, lab.num_threads(), median(fwd), median(both), gflop, (lab.blas_kernel())))
end
