-- test_attention_recompute.lua -- attention maps too large to keep (lab.attention.set_map_limit) are
-- recomputed row by row in the backward from the saved row log-sum-exp: the gradients must equal
-- the ones computed from the kept map, for every softmax-family variant and both paths of the dense
-- kernel (pinned with kernel = "dense": "auto" takes the tiled kernel, which never keeps a map), and
-- a long causal sequence must train without its N x N map in memory, in either kernel.
local check = dofile("tests/lua/check.lua")("attention_recompute")
local lab = lab or require "attnlab"

lab.seed(5)
local function rnd(shape) return lab.randn(shape, "float64") end

-- fixed weights on the output, so that the upstream gradient is not all ones (one per shape)
local weights = {}
local function weights_for(out)
  local key = out:shape_string()
  weights[key] = weights[key] or lab.randn(out:shape(), "float64")
  return weights[key]
end

local function grads(opts, q, k, v, bias)
  local x = { q = q:clone():requires_grad(true), k = k:clone():requires_grad(true), v = v:clone():requires_grad(true) }
  local b = bias and bias:clone():requires_grad(true)
  local o = opts
  if b then o = {} for key, val in pairs(opts) do o[key] = val end o.bias = b end
  local out = lab.attention(x.q, x.k, x.v, o)
  local loss = (out * weights_for(out)):sum()
  loss:backward()
  return out, x.q.grad, x.k.grad, x.v.grad, b and b.grad
end

local function max_abs_diff(a, b) return (a - b):abs():max():item() end

for _, case in ipairs{
  { name = "softmax, rows path", shape = { 2, 2, 3, 5 }, M = 7, opts = { variant = "softmax" } },
  { name = "softmax causal, transposed path", shape = { 1, 2, 12, 4 }, M = 12, opts = { variant = "softmax", causal = true, kernel = "dense" } },
  { name = "softmax with mask and trainable bias", shape = { 1, 2, 9, 4 }, M = 9, opts = { variant = "softmax", kernel = "dense" }, bias = true, mask = true },
  { name = "lsa", shape = { 2, 1, 10, 3 }, M = 10, opts = { variant = "lsa", causal = true } },
  { name = "sliding_window", shape = { 1, 2, 11, 4 }, M = 11, opts = { variant = "sliding_window", window = 2, kernel = "dense" } },
  { name = "neighborhood", shape = { 1, 1, 9, 4 }, M = 9, opts = { variant = "neighborhood", kernel_size = 3, kernel = "dense" } },
  { name = "moh (gated heads)", shape = { 1, 2, 8, 4 }, M = 8, opts = { variant = "moh", causal = true, gates = rnd{ 1, 2, 8 } } },
} do
  local s = case.shape
  local q, k, v = rnd(s), rnd{ s[1], s[2], case.M, s[4] }, rnd{ s[1], s[2], case.M, 3 }
  local bias = case.bias and rnd{ 1, s[2], s[3], case.M } or nil
  if case.mask then
    local m = {}
    for i = 1, s[3] do m[i] = {} for j = 1, case.M do m[i][j] = (i + j) % 4 == 0 and 0 or 1 end end
    m[2] = {} for j = 1, case.M do m[2][j] = 0 end            -- a fully masked row
    case.opts.mask = lab.tensor(m, "float64")
  end
  lab.attention.set_map_limit(64 * 1024 * 1024)
  local o1, gq1, gk1, gv1, gb1 = grads(case.opts, q, k, v, bias)
  lab.attention.set_map_limit(0)
  local o2, gq2, gk2, gv2, gb2 = grads(case.opts, q, k, v, bias)
  lab.attention.set_map_limit(64 * 1024 * 1024)
  check.ok(max_abs_diff(o1, o2) == 0, case.name .. ": same output")
  local worst = math.max(max_abs_diff(gq1, gq2), max_abs_diff(gk1, gk2), max_abs_diff(gv1, gv2))
  if gb1 then worst = math.max(worst, max_abs_diff(gb1, gb2)) end
  check.ok(worst < 1e-12, case.name .. ": recomputed gradients equal the kept-map gradients", tostring(worst))
end

-- N = 6144, causal, one head of width 16, float32: the map would be 144 MiB; the dense kernel does
-- not keep it above the default limit (64 MiB), the tiled one never forms it, and forward +
-- backward stay far below that
local N = 6144
for _, kernel in ipairs{ "dense", "tiled" } do
  local q = lab.randn{ 1, 1, N, 16 }:requires_grad(true)
  local k = lab.randn{ 1, 1, N, 16 }:requires_grad(true)
  local v = lab.randn{ 1, 1, N, 16 }:requires_grad(true)
  collectgarbage()
  lab.reset_memory_peak()
  local before = lab.memory().in_use
  local out = lab.attention(q, k, v, { causal = true, kernel = kernel })
  out:sum():backward()
  local grew = lab.memory().peak - before
  check.ok(q.grad ~= nil and k.grad ~= nil and v.grad ~= nil, kernel .. ": long causal attention trains")
  check.ok(grew < 16 * 1024 * 1024, kernel .. ": and holds no N x N map", string.format("peak grew by %.1f MiB", grew / 1048576))
  print(string.format("attention_recompute: %s kernel, N = %d causal forward + backward: peak memory grew by %.1f MiB (the map: %d MiB)",
    kernel, N, grew / 1048576, N * N * 4 / 1048576))
end

os.exit(check.report(), true)
