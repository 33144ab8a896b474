-- test_attention_sparse.lua -- the variants on the sparse key-list kernel: "power" (PowerAttention)
-- and "dynamic_mask" (DMA).  Each against the float64 dense reference with an explicit mask built
-- here (attention_reference.lua), in float64 (1e-12) and float32 (1e-5); maps; gradients against
-- central differences; the identity cases; the errors.
--   ./attnlab tests/lua/test_attention_sparse.lua
local check = dofile("tests/lua/check.lua")("attention_sparse")
local ref = dofile("tests/lua/attention_reference.lua")
local lab = lab or require "attnlab"

lab.seed(11)
local function rnd(shape, dt) return lab.randn(shape, dt or "float64") end

-- compares the variant's output and map with the reference, in float64 and float32
local function compare(label, q, k, v, opts, mask, bias)
  opts.weights = true
  local out, w = lab.attention(q, k, v, opts)
  local r, rw = ref.attention(q, k, v, { mask = mask, bias = bias })
  check.ok(ref.max_abs_diff(out, r) < 1e-12, label .. ": output equals masked dense softmax (float64)",
    tostring(ref.max_abs_diff(out, r)))
  check.ok(ref.max_abs_diff(w, rw) < 1e-12, label .. ": map equals the reference map")
  local o32 = {}
  for key, val in pairs(opts) do o32[key] = lab.is_tensor(val) and val:to("float32") or val end
  local out32 = lab.attention(q:to("float32"), k:to("float32"), v:to("float32"), o32)
  check.ok(ref.max_abs_diff(out32:to("float64"), r) < 1e-5, label .. ": float32 within 1e-5",
    tostring(ref.max_abs_diff(out32:to("float64"), r)))
  return w
end

---------------------------------------------------------------------------------------------------
-- power: allowed iff j <= t and (I - J < local_blocks or I - J a power of two), blocks of b tokens
---------------------------------------------------------------------------------------------------
local function is_power_of_two(x)
  if x < 1 then return false end
  while x % 2 == 0 do x = x / 2 end
  return x == 1
end
local function power_allowed(N, M, b, w, mode)
  local shift = mode == "bottom_right" and M - N or 0
  return function(_, _, i, j)
    local t = i - 1 + shift
    local I, J = math.floor(t / b), math.floor((j - 1) / b)
    return j - 1 <= t and (I - J < w or is_power_of_two(I - J))
  end
end

for _, c in ipairs{
  { name = "token level", B = 1, H = 2, Hkv = 2, N = 13, M = 13, b = 1, w = 1, causal = true },
  { name = "blocks of 2, window 2", B = 2, H = 2, Hkv = 1, N = 17, M = 17, b = 2, w = 2, causal = true },
  { name = "blocks of 3", B = 1, H = 3, Hkv = 3, N = 20, M = 20, b = 3, w = 1, causal = true },
  { name = "cross bottom_right", B = 1, H = 2, Hkv = 2, N = 5, M = 12, b = 2, w = 1, causal = "bottom_right" },
  { name = "cross top_left", B = 1, H = 2, Hkv = 2, N = 9, M = 6, b = 1, w = 1, causal = "top_left" },
} do
  local q, k, v = rnd{ c.B, c.H, c.N, 4 }, rnd{ c.B, c.Hkv, c.M, 4 }, rnd{ c.B, c.Hkv, c.M, 3 }
  local mask = ref.mask(c.B, c.H, c.N, c.M, power_allowed(c.N, c.M, c.b, c.w, c.causal))
  local w = compare("power " .. c.name, q, k, v,
    { variant = "power", causal = c.causal, block_size = c.b, local_blocks = c.w }, mask)
  -- keys per row: the local window plus one block per power of two, never more
  local most = w:gt(0):sum(4):max():item()
  local bound = (c.w + math.floor(math.log(math.max(c.M / c.b, 1)) / math.log(2)) + 1) * c.b
  check.ok(most <= bound, "power " .. c.name .. ": at most (w + log2(M/b) + 1) b keys per query",
    most .. " > " .. bound)
end

-- gradients of q, k, v (grouped heads, blocks of 2)
do
  local q, k, v = rnd{ 1, 2, 7, 3 }:requires_grad(true), rnd{ 1, 1, 7, 3 }:requires_grad(true),
                  rnd{ 1, 1, 7, 2 }:requires_grad(true)
  check.gradients(function()
    return (lab.attention(q, k, v, { variant = "power", causal = true, block_size = 2 }) ^ 2):sum()
  end, { q = q, k = k, v = v }, "power")
end

-- completeness (the paper's claim): at block level, (I + G)^L is full lower-triangular for
-- L = ceil(log2(N)) + 1; a sliding window of the same width is not
do
  local N = 33
  local q, k, v = rnd{ 1, 1, N, 2 }, rnd{ 1, 1, N, 2 }, rnd{ 1, 1, N, 2 }
  local function reach(opts, hops)
    local _, w = lab.attention(q, k, v, opts)
    local G = w:reshape{ N, N }:gt(0):to("float64") + lab.eye(N, "float64")
    local R = G
    for _ = 2, hops do R = R:matmul(G):gt(0):to("float64") end
    return R:sum():item()
  end
  local hops = math.ceil(math.log(N) / math.log(2)) + 1
  check.near(reach({ variant = "power", causal = true, weights = true }, hops), N * (N + 1) / 2, 0,
    "power: every earlier token is reached within ceil(log2 N) + 1 layers")
  check.ok(reach({ variant = "sliding_window", window = 1, causal = true, weights = true }, hops) < N * (N + 1) / 2,
    "a window of 1 does not reach that far in as many layers")
end

-- identity: a local window covering everything is causal softmax
do
  local q, k, v = rnd{ 2, 2, 9, 3 }, rnd{ 2, 2, 9, 3 }, rnd{ 2, 2, 9, 3 }
  local out = lab.attention(q, k, v, { variant = "power", causal = true, local_blocks = 9 })
  check.ok(ref.max_abs_diff(out, lab.attention(q, k, v, { causal = true })) < 1e-12,
    "power: local_blocks >= N is causal softmax attention")
end

do
  local q = rnd{ 1, 1, 4, 2 }
  check.fails(function() return lab.attention(q, q, q, { variant = "power" }) end,
    "variant 'power' is causal by definition", "power without causal")
  check.fails(function() return lab.attention(q, q, q, { variant = "power", causal = true, local_blocks = 0 }) end,
    "opts.local_blocks must be an integer >= 1", "power local_blocks 0")
  check.fails(function() return lab.attention(q, q, q, { variant = "power", causal = true, block_size = 1.5 }) end,
    "opts.block_size", "power fractional block_size")
end

---------------------------------------------------------------------------------------------------
-- dynamic_mask: z = exp(A softplus(vcat W_dt)) per (b, kv head, key), top_k keys by z, bias z
---------------------------------------------------------------------------------------------------
-- z (B, Hkv, M) from plain ops (softplus = log(1 + exp(x)), fine for these small x)
local function dma_scores(v, W, A)
  local B, Hkv, M, dv = v:size(1), v:size(2), v:size(3), v:size(4)
  local x = v:permute(1, 3, 2, 4):reshape{ B, M, Hkv * dv }:matmul(W)
  return ((x:exp() + 1):log() * A):exp():permute(1, 3, 2)
end
-- the kept keys of (b, h, i): the top_k allowed keys by z, ties to the lower index
local function dma_allowed(z, H, top_k, visible)
  local Hkv = z:size(2)
  local zt = z:totable()
  local cache = {}
  return function(b, h, i, j)
    local hk = math.floor((h - 1) * Hkv / H) + 1
    local key = b .. "," .. h .. "," .. i
    if not cache[key] then
      local cand = {}
      for jj = 1, #zt[b][hk] do if visible(b, h, i, jj) then cand[#cand + 1] = jj end end
      table.sort(cand, function(x, y)
        local zx, zy = zt[b][hk][x], zt[b][hk][y]
        if zx ~= zy then return zx > zy end
        return x < y
      end)
      local set = {}
      for n = 1, math.min(top_k, #cand) do set[cand[n]] = true end
      cache[key] = set
    end
    return cache[key][j] or false
  end
end

for _, c in ipairs{
  { name = "non-causal", B = 2, H = 2, Hkv = 2, N = 5, M = 8, top_k = 3 },
  { name = "causal", B = 1, H = 2, Hkv = 2, N = 9, M = 9, top_k = 4, causal = true },
  { name = "grouped heads, bottom_right", B = 2, H = 4, Hkv = 2, N = 4, M = 10, top_k = 3, causal = "bottom_right" },
  { name = "top_k >= M (dense with bias z)", B = 1, H = 2, Hkv = 1, N = 6, M = 6, top_k = 6, causal = true },
} do
  local q, k, v = rnd{ c.B, c.H, c.N, 3 }, rnd{ c.B, c.Hkv, c.M, 3 }, rnd{ c.B, c.Hkv, c.M, 2 }
  local W, A = rnd{ c.Hkv * 2, c.Hkv }, rnd{ c.Hkv }
  local z = dma_scores(v, W, A)
  local visible = c.causal and ref.causal(c.N, c.M, c.causal) or function() return true end
  local mask = ref.mask(c.B, c.H, c.N, c.M, dma_allowed(z, c.H, c.top_k, visible))
  local bias = ref.repeat_heads(z:unsqueeze(3), c.H)
  compare("dynamic_mask " .. c.name, q, k, v,
    { variant = "dynamic_mask", causal = c.causal, top_k = c.top_k, dt_proj = W, dt_a = A }, mask, bias)
end

-- gradients of q, k, v, W_dt and A (the selection is a constant)
do
  local q, k, v = rnd{ 1, 2, 5, 3 }:requires_grad(true), rnd{ 1, 1, 6, 3 }:requires_grad(true),
                  rnd{ 1, 1, 6, 2 }:requires_grad(true)
  local W, A = rnd{ 2, 1 }:requires_grad(true), rnd{ 1 }:requires_grad(true)
  check.gradients(function()
    return (lab.attention(q, k, v, { variant = "dynamic_mask", top_k = 3, dt_proj = W, dt_a = A,
                                     causal = "bottom_right" }) ^ 2):sum()
  end, { q = q, k = k, v = v, dt_proj = W, dt_a = A }, "dynamic_mask")
end

do
  local q, W, A = rnd{ 1, 2, 4, 2 }, rnd{ 4, 2 }, rnd{ 2 }
  check.fails(function() return lab.attention(q, q, q, { variant = "dynamic_mask", top_k = 2 }) end,
    "variant 'dynamic_mask' needs dt_proj", "dynamic_mask without its parameters")
  check.fails(function() return lab.attention(q, q, q, { variant = "dynamic_mask", top_k = 2, dt_proj = rnd{ 3, 2 }, dt_a = A }) end,
    "dt_proj {4,2}", "dynamic_mask with a dt_proj of the wrong shape")
  check.fails(function() return lab.attention(q, q, q, { variant = "dynamic_mask", dt_proj = W, dt_a = A }) end,
    "top_k >= 1", "dynamic_mask without top_k")
  check.fails(function() return lab.attention(q, q, q, { variant = "softmax", top_k = 2 }) end,
    "top_k is an option of", "top_k given to softmax")
end

os.exit(check.report())
