-- test_attention_linear.lua -- the "linear" attention variant (elu + 1 features, Katharopoulos et
-- al. 2020) against a dense float64 reference built here from plain ops, its gradients against
-- central differences, its map, and its refusals.
--   ./build/attnlab tests/lua/test_attention_linear.lua
local check = dofile("tests/lua/check.lua")("attention_linear")
local lab = lab or require "attnlab"

lab.seed(7)
local function rnd(shape) return lab.randn(shape, "float64") end

-- phi(x) = elu(x) + 1, elementwise, from a Lua table walk (independent of the core's where/exp)
local function phi(t)
  local shape, vals = t:shape(), t:totable()
  local function walk(v)
    if type(v) == "number" then return v > 0 and v + 1 or math.exp(v) end
    local o = {}
    for i = 1, #v do o[i] = walk(v[i]) end
    return o
  end
  return lab.tensor(walk(vals), "float64"):reshape(shape)
end

-- the dense reference: A = phi(q) phi(k)^T (masked when causal), O = A v / rowsum(A)
local function reference(q, k, v, causal)
  local H, Hkv = q:size(2), k:size(2)
  if Hkv ~= H then   -- repeat kv heads for grouped heads
    local ks, vs = {}, {}
    for h = 1, H do
      local src = math.floor((h - 1) * Hkv / H) + 1
      ks[h] = k:narrow(2, src, 1); vs[h] = v:narrow(2, src, 1)
    end
    k, v = lab.cat(ks, 2), lab.cat(vs, 2)
  end
  local A = phi(q):matmul(phi(k):transpose(3, 4))
  if causal then
    local N, M = A:size(3), A:size(4)
    local mask = {}
    for i = 1, N do mask[i] = {} for j = 1, M do mask[i][j] = j <= i and 1 or 0 end end
    A = A * lab.tensor(mask, "float64")
  end
  local den = A:sum(4, true) + 1e-6
  return A:matmul(v) / den, A / den
end

local function max_abs_diff(a, b) return (a - b):abs():max():item() end

for _, case in ipairs{
  { name = "self", q = { 2, 3, 7, 4 }, k = { 2, 3, 7, 4 }, dv = 5, causal = false },
  { name = "cross", q = { 2, 2, 4, 3 }, k = { 2, 2, 9, 3 }, dv = 2, causal = false },
  { name = "causal", q = { 1, 2, 9, 4 }, k = { 1, 2, 9, 4 }, dv = 3, causal = true },
  { name = "grouped heads", q = { 2, 4, 5, 3 }, k = { 2, 2, 5, 3 }, dv = 4, causal = true },
} do
  local q, k = rnd(case.q), rnd(case.k)
  local v = rnd{ case.k[1], case.k[2], case.k[3], case.dv }
  local out, w = lab.attention(q, k, v, { variant = "linear", causal = case.causal, weights = true })
  local ref, ref_w = reference(q, k, v, case.causal)
  check.ok(max_abs_diff(out, ref) < 1e-10, case.name .. ": output equals the dense reference",
    tostring(max_abs_diff(out, ref)))
  check.ok(max_abs_diff(w, ref_w) < 1e-10, case.name .. ": map equals the reference map")
  local rows = w:sum(4)
  check.ok((rows - 1):abs():max():item() < 1e-5, case.name .. ": map rows sum to 1")

  -- gradients: analytic vs central differences on loss = sum(out * R)
  local R = rnd(out:shape())
  for _, x in ipairs{ q, k, v } do x:requires_grad(true) end
  check.gradients(function()
    return (lab.attention(q, k, v, { variant = "linear", causal = case.causal }) * R):sum()
  end, { q = q, k = k, v = v }, case.name)
end

-- float32 against float64
local q, k, v = rnd{ 2, 2, 16, 8 }, rnd{ 2, 2, 16, 8 }, rnd{ 2, 2, 16, 8 }
local o64 = lab.attention(q, k, v, { variant = "linear", causal = true })
local o32 = lab.attention(q:float(), k:float(), v:float(), { variant = "linear", causal = true })
check.ok(max_abs_diff(o32:double(), o64) < 1e-5, "float32 matches float64 within 1e-5")

-- refusals, with the reason
check.fails(function() lab.attention(q, k, v, { variant = "linear", bias = lab.zeros({ 16, 16 }, "float64") }) end,
  "variant 'linear' takes no bias or mask")
check.fails(function() lab.attention(q, k:narrow(3, 1, 8), v:narrow(3, 1, 8), { variant = "linear", causal = true }) end,
  "causal only for N == M")
check.ok(#lab.attention.variants() >= 3, "the catalogue lists linear")

-- long causal sequences never form the N x M map: N = 4096 needs O(N d dv), not 64 MiB per head
local before = lab.memory().in_use
local lq, lk, lv = lab.randn{ 1, 1, 4096, 8 }, lab.randn{ 1, 1, 4096, 8 }, lab.randn{ 1, 1, 4096, 8 }
local lo = lab.attention(lq, lk, lv, { variant = "linear", causal = true })
check.ok(lo:size(3) == 4096 and lab.memory().peak - before < 16 * 1024 * 1024 + 4 * 1024 * 1024 * 8,
  "causal N = 4096 runs without an N x N map")

os.exit(check.report(), true)
