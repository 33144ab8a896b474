-- test_attention_tensor.lua -- the "tensor" variant (triple-wise Kronecker attention, Alman & Song
-- 2023): forward against an explicit O(N M^2) float64 loop written here on plain Lua numbers, the
-- identity K2 = V2 = 1 => softmax attention on (Q, K1, V1), gradients of q, k, v, k2, v2, float32,
-- refusals.
local check = dofile("tests/lua/check.lua")("attention_tensor")
local ref = dofile("tests/lua/attention_reference.lua")
local lab = lab or require "attnlab"

lab.seed(3)
local function rnd(shape) return lab.randn(shape, "float64") end
local function max_abs_diff(a, b) return (a - b):abs():max():item() end

local function reference(q, k, v, k2, v2, scale, causal)
  local Q, K1, V1, K2, V2 = q:totable(), k:totable(), v:totable(), k2:totable(), v2:totable()
  local H, Hkv, N, M, d, dv = q:size(2), k:size(2), q:size(3), k:size(3), q:size(4), v:size(4)
  return ref.per_query(#Q, H, N, function(b, h, i)
    local hk = math.floor((h - 1) * Hkv / H) + 1
    local last = causal and i + M - N or M   -- bottom_right alignment (= top-left when N = M)
    local logits, top = {}, -math.huge
    for j1 = 1, last do
      logits[j1] = {}
      for j2 = 1, last do
        local s = 0
        for t = 1, d do s = s + Q[b][h][i][t] * K1[b][hk][j1][t] * K2[b][hk][j2][t] end
        logits[j1][j2] = scale * s
        top = math.max(top, scale * s)
      end
    end
    local row, z = {}, 0
    for e = 1, dv do row[e] = 0 end
    for j1 = 1, last do
      for j2 = 1, last do
        local p = math.exp(logits[j1][j2] - top)
        z = z + p
        for e = 1, dv do row[e] = row[e] + p * V1[b][hk][j1][e] * V2[b][hk][j2][e] end
      end
    end
    for e = 1, dv do row[e] = row[e] / z end
    return row
  end)
end

for _, case in ipairs{
  { name = "self", q = { 2, 2, 5, 3 }, k = { 2, 2, 5, 3 }, dv = 2, causal = false },
  { name = "cross", q = { 1, 1, 3, 2 }, k = { 1, 1, 6, 2 }, dv = 3, causal = false },
  { name = "causal", q = { 1, 2, 5, 3 }, k = { 1, 2, 5, 3 }, dv = 2, causal = true },
  { name = "causal bottom_right, grouped heads", q = { 1, 2, 3, 2 }, k = { 1, 1, 5, 2 }, dv = 2, causal = "bottom_right" },
} do
  local q, k, k2 = rnd(case.q), rnd(case.k), rnd(case.k)
  local v, v2 = rnd{ case.k[1], case.k[2], case.k[3], case.dv }, rnd{ case.k[1], case.k[2], case.k[3], case.dv }
  local out, w = lab.attention(q, k, v, { variant = "tensor", k2 = k2, v2 = v2, causal = case.causal, weights = true })
  local expected = reference(q, k, v, k2, v2, 1 / math.sqrt(case.q[4]), case.causal)
  check.ok(max_abs_diff(out, expected) < 1e-12, case.name .. ": output equals the explicit loop",
    tostring(max_abs_diff(out, expected)))
  check.ok(w == nil, case.name .. ": no (B, H, N, M) map")
  local R = rnd(out:shape())
  for _, x in ipairs{ q, k, v, k2, v2 } do x:requires_grad(true) end
  check.gradients(function()
    return (lab.attention(q, k, v, { variant = "tensor", k2 = k2, v2 = v2, causal = case.causal }) * R):sum()
  end, { q = q, k = k, v = v, k2 = k2, v2 = v2 }, case.name)
end

-- identity (attention-variants.md section 15): K2 = 1 and V2 = 1 give softmax attention on (Q, K1, V1)
for _, causal in ipairs{ false, true } do
  local q, k, v = rnd{ 2, 2, 6, 4 }, rnd{ 2, 2, 6, 4 }, rnd{ 2, 2, 6, 3 }
  local out = lab.attention(q, k, v, { variant = "tensor", k2 = lab.ones({ 2, 2, 6, 4 }, "float64"),
    v2 = lab.ones({ 2, 2, 6, 3 }, "float64"), causal = causal, scale = 0.4 })
  local soft = lab.attention(q, k, v, { causal = causal, scale = 0.4 })
  check.ok(max_abs_diff(out, soft) < 1e-12, "K2 = V2 = 1 equals softmax attention" .. (causal and " (causal)" or ""))
end

-- float32 against float64
do
  local q, k, v, k2, v2 = rnd{ 1, 2, 8, 4 }, rnd{ 1, 2, 8, 4 }, rnd{ 1, 2, 8, 4 }, rnd{ 1, 2, 8, 4 }, rnd{ 1, 2, 8, 4 }
  local o64 = lab.attention(q, k, v, { variant = "tensor", k2 = k2, v2 = v2, causal = true })
  local o32 = lab.attention(q:float(), k:float(), v:float(), { variant = "tensor", k2 = k2:float(), v2 = v2:float(), causal = true })
  check.ok(o32:dtype() == "float32" and max_abs_diff(o32:double(), o64) < 1e-5, "float32 matches float64 within 1e-5")
end

-- refusals, with the reason
do
  local q, k, v = rnd{ 1, 2, 5, 3 }, rnd{ 1, 2, 4, 3 }, rnd{ 1, 2, 4, 2 }
  check.fails(function() lab.attention(q, k, v, { variant = "tensor", v2 = v }) end,
    "variant 'tensor' needs opts.k2, a second key set of shape {1,2,4,3}")
  check.fails(function() lab.attention(q, k, v, { variant = "tensor", k2 = k }) end, "needs opts.v2")
  check.fails(function() lab.attention(q, k, v, { variant = "tensor", k2 = k:narrow(3, 1, 3), v2 = v }) end,
    "needs k2 of the shape and dtype of k float64 {1,2,4,3} (got float64 {1,2,3,3})")
  check.fails(function() lab.attention(q, k, v, { variant = "tensor", k2 = k, v2 = v:float() }) end, "(got float32 {1,2,4,2})")
  check.fails(function() lab.attention(q, k, v, { variant = "tensor", k2 = k, v2 = v, causal = true }) end,
    "variant 'tensor' causal needs M >= N")
  check.fails(function() lab.attention(q, k, v, { variant = "tensor", k2 = k, v2 = v, mask = lab.ones{ 5, 4 } }) end,
    "variant 'tensor' takes no bias or mask")
end

os.exit(check.report(), true)
