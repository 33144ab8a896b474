-- test_attention_flow.lua -- the "flow" variant (Flow-Attention, Flowformer): forward against a
-- float64 reference written here on plain Lua numbers (non-causal: the explicit dense product
-- diag(a) diag(I) (Q K^T) diag(c) V; causal: a naive loop that recomputes every prefix quantity for
-- each position), its map, gradients against central differences, float32, refusals.
local check = dofile("tests/lua/check.lua")("attention_flow")
local lab = lab or require "attnlab"

lab.seed(5)
local eps = 1e-6
local function rnd(shape) return lab.randn(shape, "float64") end
local function max_abs_diff(a, b) return (a - b):abs():max():item() end
local function sigmoid(x) return 1 / (1 + math.exp(-x)) end
local function dot_eps(x, y) local s = 0 for c = 1, #x do s = s + (x[c] + eps) * y[c] end return s end
local function clamp(x) return math.max(-1, math.min(1, x)) end

-- one head: Q (N rows), K, V (M rows) of sigmoid features / values; returns output rows and the map
local function flow_head(Q, K, V, causal)
  local N, M, d, dv = #Q, #K, #Q[1], #V[1]
  -- sum of f(j) over j in [1, upto], elementwise over the feature dim
  local function vsum(rows, upto, weight)
    local s = {}
    for c = 1, d do s[c] = 0 end
    for j = 1, upto do for c = 1, d do s[c] = s[c] + rows[j][c] * (weight and weight[j] or 1) end end
    for c = 1, d do s[c] = s[c] + eps end
    return s
  end
  local I, O, Ihat, Ohat, a, c = {}, {}, {}, {}, {}, {}
  if not causal then
    for i = 1, N do I[i] = 1 / dot_eps(Q[i], vsum(K, M)) end
    for j = 1, M do O[j] = 1 / dot_eps(K[j], vsum(Q, N)) end
    for i = 1, N do Ihat[i] = dot_eps(Q[i], vsum(K, M, O)); a[i] = sigmoid(Ihat[i] * N / M) end
    local z = 0
    for j = 1, M do Ohat[j] = clamp(dot_eps(K[j], vsum(Q, N, I))); z = z + math.exp(Ohat[j]) end
    for j = 1, M do c[j] = M * math.exp(Ohat[j]) / z end
  else
    for i = 1, N do I[i] = i / dot_eps(Q[i], vsum(K, i)) end
    for j = 1, M do O[j] = j / dot_eps(K[j], vsum(Q, j)) end
    for i = 1, N do Ihat[i] = dot_eps(Q[i], vsum(K, i, O)) / i; a[i] = sigmoid(Ihat[i]) end
    for j = 1, M do Ohat[j] = clamp(dot_eps(K[j], vsum(Q, j, I)) / j) end
    for j = 1, M do
      local z = 0
      for jj = 1, j do z = z + math.exp(Ohat[jj]) end
      c[j] = j * math.exp(Ohat[j]) / z
    end
  end
  local out, map = {}, {}
  for i = 1, N do
    out[i], map[i] = {}, {}
    for e = 1, dv do out[i][e] = 0 end
    for j = 1, M do
      local w = 0
      if not causal or j <= i then
        local qk = 0
        for t = 1, d do qk = qk + Q[i][t] * K[j][t] end
        w = a[i] * I[i] * qk * c[j] / (causal and i or 1)
      end
      map[i][j] = w
      for e = 1, dv do out[i][e] = out[i][e] + w * V[j][e] end
    end
  end
  return out, map
end

local function reference(q, k, v, causal)
  local Q, K, V = q:sigmoid():totable(), k:sigmoid():totable(), v:totable()
  local H, Hkv = q:size(2), k:size(2)
  local out, map = {}, {}
  for b = 1, #Q do
    out[b], map[b] = {}, {}
    for h = 1, H do
      local hk = math.floor((h - 1) * Hkv / H) + 1
      out[b][h], map[b][h] = flow_head(Q[b][h], K[b][hk], V[b][hk], causal)
    end
  end
  return lab.tensor(out, "float64"), lab.tensor(map, "float64")
end

for _, case in ipairs{
  { name = "self", q = { 2, 2, 6, 3 }, k = { 2, 2, 6, 3 }, dv = 4, causal = false },
  { name = "cross", q = { 1, 2, 4, 3 }, k = { 1, 2, 7, 3 }, dv = 2, causal = false },
  { name = "causal", q = { 2, 1, 7, 4 }, k = { 2, 1, 7, 4 }, dv = 3, causal = true },
  { name = "grouped heads causal", q = { 1, 4, 5, 3 }, k = { 1, 2, 5, 3 }, dv = 2, causal = true },
} do
  local q, k = rnd(case.q), rnd(case.k)
  local v = rnd{ case.k[1], case.k[2], case.k[3], case.dv }
  local out, w = lab.attention(q, k, v, { variant = "flow", causal = case.causal, weights = true })
  local ref, ref_w = reference(q, k, v, case.causal)
  check.ok(max_abs_diff(out, ref) < 1e-12, case.name .. ": output equals the reference", tostring(max_abs_diff(out, ref)))
  check.ok(max_abs_diff(w, ref_w) < 1e-12, case.name .. ": map equals the reference map")
  local R = rnd(out:shape())
  for _, x in ipairs{ q, k, v } do x:requires_grad(true) end
  check.gradients(function()
    return (lab.attention(q, k, v, { variant = "flow", causal = case.causal }) * R):sum()
  end, { q = q, k = k, v = v }, case.name)
end

-- competition: non-causal c sums to M, so with all-equal values every output row is a_i I_i Q_i.(sum_j K_j c_j) v
do
  local q, k = rnd{ 1, 1, 5, 3 }, rnd{ 1, 1, 6, 3 }
  local v = lab.ones({ 1, 1, 6, 2 }, "float64")
  local _, w = lab.attention(q, k, v, { variant = "flow", weights = true })
  local out = lab.attention(q, k, v, { variant = "flow" })
  check.ok(max_abs_diff(out:narrow(4, 1, 1), w:sum(4, true)) < 1e-12, "constant values: output is the map's row sum")
end

-- float32 against float64, causal and not
for _, causal in ipairs{ false, true } do
  local q, k, v = rnd{ 2, 2, 24, 8 }, rnd{ 2, 2, 24, 8 }, rnd{ 2, 2, 24, 8 }
  local o64 = lab.attention(q, k, v, { variant = "flow", causal = causal })
  local o32 = lab.attention(q:float(), k:float(), v:float(), { variant = "flow", causal = causal })
  check.ok(o32:dtype() == "float32" and max_abs_diff(o32:double(), o64) < 1e-5,
    "float32 matches float64 within 1e-5" .. (causal and " (causal)" or ""))
end

-- refusals, with the reason
do
  local q, k, v = rnd{ 1, 2, 5, 3 }, rnd{ 1, 2, 4, 3 }, rnd{ 1, 2, 4, 3 }
  check.fails(function() lab.attention(q, k, v, { variant = "flow", causal = true }) end,
    "variant 'flow' is causal only for N == M (got q {1,2,5,3}, k {1,2,4,3})")
  check.fails(function() lab.attention(q, k, v, { variant = "flow", bias = lab.zeros({ 5, 4 }, "float64") }) end,
    "variant 'flow' takes no bias or mask")
end

os.exit(check.report(), true)
