-- test_attention_tiled.lua -- the tiled online-softmax kernel (core/attention/tiled.c) against the
-- dense kernel, which the other attention tests check against an explicit softmax and central
-- differences: outputs and the gradients of q, k, v equal to 1e-12 in float64 on shapes that cut
-- into several ragged tiles (128 x 128), for every variant that can run on it, causal both ways,
-- grouped kv heads, masks (a fully masked row among them), a constant bias; float32 within 1e-5 of
-- float64; its own gradients against central differences; which kernel "auto" picks; the errors.
--   ./build/attnlab tests/lua/test_attention_tiled.lua
local check = dofile("tests/lua/check.lua")("attention_tiled")
local lab = lab or require "attnlab"

lab.seed(21)
local function max_abs_diff(a, b) return (a - b):abs():max():item() end

local function with(opts, extra)
  local o = {}
  for key, val in pairs(opts) do o[key] = val end
  for key, val in pairs(extra) do o[key] = val end
  return o
end

-- output and gradients of q, k, v under the given kernel, for a fixed upstream gradient R
local function run(kernel, opts, q, k, v, R)
  for _, x in ipairs{ q, k, v } do x:zero_grad() end
  local out = lab.attention(q, k, v, with(opts, { kernel = kernel }))
  ;(out * R):sum():backward()
  return { out, q.grad, k.grad, v.grad }
end

local function compare(label, shape, opts)
  local B, H, Hkv, N, M, d, dv = unpack(shape)
  local q = lab.randn({ B, H, N, d }, "float64"):requires_grad(true)
  local k = lab.randn({ B, Hkv, M, d }, "float64"):requires_grad(true)
  local v = lab.randn({ B, Hkv, M, dv }, "float64"):requires_grad(true)
  local R = lab.randn({ B, H, N, dv }, "float64")
  local dense, tiled = run("dense", opts, q, k, v, R), run("tiled", opts, q, k, v, R)
  local names = { "output", "dq", "dk", "dv" }
  for i = 1, 4 do
    local diff = max_abs_diff(dense[i], tiled[i])
    check.value(diff < 1e-12, label .. ": tiled " .. names[i] .. " equals dense", tostring(diff))
  end
  return q, k, v
end

compare("cross, ragged tiles", { 2, 3, 3, 300, 290, 16, 8 }, {})
compare("causal top-left, grouped kv heads", { 2, 4, 2, 300, 290, 16, 8 }, { causal = true })
compare("causal bottom-right, N < M", { 1, 2, 1, 200, 333, 16, 8 }, { causal = "bottom_right" })
compare("causal bottom-right, N > M (early rows see nothing)", { 1, 2, 2, 280, 150, 8, 8 }, { causal = "bottom_right" })
compare("sliding_window", { 1, 2, 2, 300, 300, 8, 8 }, { variant = "sliding_window", window = 40 })
compare("sliding_window causal", { 1, 2, 2, 300, 300, 8, 8 }, { variant = "sliding_window", window = 40, causal = true })
compare("neighborhood", { 1, 2, 2, 300, 300, 8, 8 }, { variant = "neighborhood", kernel_size = 31 })
compare("strided_neighborhood", { 1, 2, 2, 300, 300, 8, 8 }, { variant = "strided_neighborhood", kernel_size = 31, stride = 4 })
compare("constant bias, scale 0.3", { 1, 2, 2, 150, 140, 8, 8 }, { bias = lab.randn({ 1, 2, 150, 140 }, "float64"), scale = 0.3 })
do
  local mask = lab.rand{ 1, 1, 260, 250 }:gt(lab.full({ 1 }, 0.3))
  local rows = mask:totable()[1][1]
  for j = 1, 250 do rows[7][j] = false end                   -- a fully masked row
  compare("mask with a fully masked row", { 2, 2, 2, 260, 250, 8, 8 }, { mask = lab.tensor({ { rows } }, "float64") })
end

-- float32 against the float64 result
do
  local q64, k64, v64 = lab.randn({ 2, 2, 200, 32 }, "float64"), lab.randn({ 2, 2, 180, 32 }, "float64"), lab.randn({ 2, 2, 180, 16 }, "float64")
  local o64 = lab.attention(q64, k64, v64, { causal = true, kernel = "tiled" })
  local o32 = lab.attention(q64:to("float32"), k64:to("float32"), v64:to("float32"), { causal = true, kernel = "tiled" })
  local diff = max_abs_diff(o32:to("float64"), o64)
  check.value(diff < 1e-5, "float32 tiled output within 1e-5 of float64", tostring(diff))
end

-- float32 forward and backward against float64, at the shapes whose tile products run in registers
-- (small_gemm_avx512.h: at most 64 columns, k at most 128) and beside them (130 and 300 rows: full
-- 128-tiles through the BLAS, ragged ones in registers)
for _, case in ipairs{ { 2, 4, 40, 32, true }, { 2, 4, 40, 32, false }, { 1, 2, 130, 64, true }, { 1, 2, 70, 16, false },
                       { 3, 1, 5, 8, true }, { 1, 1, 300, 48, false }, { 1, 2, 33, 80, true } } do
  local B, H, N, d, causal = unpack(case)
  local leaves64 = {}
  for i = 1, 3 do leaves64[i] = lab.randn({ B, H, N, d }, "float64"):requires_grad(true) end
  local g = lab.randn({ B, H, N, d }, "float64")
  lab.attention(leaves64[1], leaves64[2], leaves64[3], { causal = causal, kernel = "tiled" }):backward(g)
  local leaves32 = {}
  for i = 1, 3 do leaves32[i] = leaves64[i]:detach():to("float32"):requires_grad(true) end
  local o32 = lab.attention(leaves32[1], leaves32[2], leaves32[3], { causal = causal, kernel = "tiled" })
  o32:backward(g:to("float32"))
  local o64 = lab.attention(leaves64[1]:detach(), leaves64[2]:detach(), leaves64[3]:detach(), { causal = causal, kernel = "tiled" })
  local worst = max_abs_diff(o32:to("float64"), o64)
  for i = 1, 3 do worst = math.max(worst, max_abs_diff(leaves32[i].grad:to("float64"), leaves64[i].grad)) end
  check.ok(worst < 2e-5, string.format("float32 tiled forward and backward within 2e-5 of float64 (N %d, d %d, causal %s)",
    N, d, tostring(causal)), tostring(worst))
end

-- its own gradients against central differences (a single tile, causal, grouped heads, a mask)
do
  local q = lab.randn({ 1, 2, 9, 4 }, "float64"):requires_grad(true)
  local k = lab.randn({ 1, 1, 11, 4 }, "float64"):requires_grad(true)
  local v = lab.randn({ 1, 1, 11, 3 }, "float64"):requires_grad(true)
  local R = lab.randn({ 1, 2, 9, 3 }, "float64")
  local mask = lab.rand{ 9, 11 }:gt(lab.full({ 1 }, 0.2))
  check.gradients(function()
    return (lab.attention(q, k, v, { kernel = "tiled", causal = "bottom_right", mask = mask }) * R):sum()
  end, { q = q, k = k, v = v }, "tiled, causal bottom-right, grouped, masked")
end

-- which kernel "auto" takes (seen in the name of the graph node): the dense one when the map is
-- wanted, the bias trains, or a kv head has fewer than 8 queries; else the tiled one
do
  local function kernel_of(N, Hkv, opts)
    local q, k, v = lab.randn{ 1, 4, N, 4 }:requires_grad(true), lab.randn{ 1, Hkv, 6, 4 }, lab.randn{ 1, Hkv, 6, 4 }
    return lab.attention(q, k, v, opts or {}):grad_fn()
  end
  check.ok(kernel_of(16, 4) == "attention_softmax_tiled", "auto: 16 queries per head -> tiled")
  check.ok(kernel_of(4, 4) == "attention_softmax", "auto: 4 queries per head -> dense (row path)")
  check.ok(kernel_of(4, 1) == "attention_softmax_tiled", "auto: 4 queries x 4 heads sharing one kv head -> tiled")
  check.ok(kernel_of(16, 4, { weights = true }) == "attention_softmax", "auto: weights wanted -> dense")
  check.ok(kernel_of(16, 4, { bias = lab.zeros{ 16, 6 }:requires_grad(true) }) == "attention_softmax", "auto: trainable bias -> dense")
  check.ok(kernel_of(16, 4, { bias = lab.zeros{ 16, 6 } }) == "attention_softmax_tiled", "auto: constant bias -> tiled")
  check.ok(kernel_of(16, 4, { kernel = "dense" }) == "attention_softmax", "kernel = 'dense' pins the dense kernel")
  check.ok(lab.randn{ 2 }:grad_fn() == nil, "a leaf has no grad_fn")
end

-- errors name the function and the argument
do
  local q, k, v = lab.randn{ 1, 1, 16, 4 }, lab.randn{ 1, 1, 16, 4 }, lab.randn{ 1, 1, 16, 4 }
  check.fails(function() lab.attention(q, k, v, { kernel = "tiled", weights = true }) end,
    "tiled kernel never forms the attention map", "weights from the tiled kernel")
  check.fails(function() lab.attention(q, k, v, { kernel = "tiled", bias = lab.zeros{ 16, 16 }:requires_grad(true) }) end,
    "trainable bias needs kernel = 'dense'", "trainable bias on the tiled kernel")
  check.fails(function() lab.attention(q, k, v, { kernel = "fast" }) end, "opts.kernel must be 'auto', 'dense' or 'tiled'")
  check.fails(function() lab.attention(q, k, v, { variant = "linear", kernel = "tiled" }) end,
    "kernel is an option of the variant(s) softmax sliding_window neighborhood strided_neighborhood moh flashbias, not of 'linear'")
  -- a trainable bias under "auto" goes to the dense kernel and gets its gradient
  local bias = lab.zeros{ 16, 16 }:requires_grad(true)
  lab.attention(q, k, v, { bias = bias }):sum():backward()
  check.ok(bias.grad ~= nil, "auto with a trainable bias trains the bias")
end

-- memory: N = 4096 causal, one head of width 32; the map would be 64 MiB; forward + backward need
-- the output, its gradient, dq, dk, dv (5 x 512 KiB) and a log-sum-exp per row, no more
do
  local N = 4096
  local q, k, v = lab.randn{ 1, 1, N, 32 }:requires_grad(true), lab.randn{ 1, 1, N, 32 }:requires_grad(true), lab.randn{ 1, 1, N, 32 }:requires_grad(true)
  collectgarbage()
  lab.reset_memory_peak()
  local before = lab.memory().in_use
  lab.attention(q, k, v, { causal = true, kernel = "tiled" }):sum():backward()
  local grew = lab.memory().peak - before
  check.ok(grew <= 5 * N * 32 * 4 + N * 4 + 65536, "tiled forward + backward allocate only outputs, gradients and the row log-sum-exp",
    string.format("%.2f MiB", grew / 1048576))
end

-- a backward that runs out of memory says so (naming the op), instead of leaving gradients missing
do
  local N = 2048
  local q = lab.randn{ 1, 2, N, 32 }:requires_grad(true)
  local k, v = lab.randn{ 1, 2, N, 32 }:requires_grad(true), lab.randn{ 1, 2, N, 32 }:requires_grad(true)
  local out = lab.attention(q, k, v, { causal = true, kernel = "tiled" })
  local dO = lab.randn{ 1, 2, N, 32 }
  collectgarbage()
  lab.reset_memory_peak()                        -- empties the cache: the limit counts live bytes
  local limit = lab.memory().limit
  lab.set_memory_limit(lab.memory().in_use + 256 * 1024)   -- less than one of dq, dk, dv (512 KiB)
  check.fails(function() out:backward(dO) end, "backward: the gradient of 'attention_softmax_tiled' failed",
    "a backward out of memory names the op")
  lab.set_memory_limit(limit)
  check.ok(q.grad == nil, "and leaves no partial gradient on q")
end

os.exit(check.report(), true)
