-- test_attention_delta.lua -- the "delta" variant (gated delta rule / Miras L2 memory): forward
-- against a per-step float64 loop written here on plain Lua numbers, its map, the orthonormal-key
-- recall identity, gradients of q, k, v, beta and gate (across several checkpoint chunks) against
-- central differences, float32, and its refusals.
local check = dofile("tests/lua/check.lua")("attention_delta")
local lab = lab or require "attnlab"

lab.seed(11)
local function rnd(shape) return lab.randn(shape, "float64") end
local function max_abs_diff(a, b) return (a - b):abs():max():item() end
-- keys scaled to unit length, as the rule's stability (beta |k|^2 <= 2) wants
local function unit_rows(t) return t / (t * t):sum(4, true):sqrt() end

-- S_t = alpha_t S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T, y = scale S q, one step at a time
local function reference(q, k, v, beta, gate, scale, causal)
  local B, H, N, d = q:size(1), q:size(2), q:size(3), q:size(4)
  local Hkv, M, dv = k:size(2), k:size(3), v:size(4)
  local Q, K, V = q:totable(), k:totable(), v:totable()
  local Be, Ga = beta:expand{ B, H, M }:totable(), gate:expand{ B, H, M }:totable()
  local out = {}
  for b = 1, B do
    out[b] = {}
    for h = 1, H do
      local hk = math.floor((h - 1) * Hkv / H) + 1
      local S = {}
      for a = 1, dv do S[a] = {} for c = 1, d do S[a][c] = 0 end end
      local function read(qi)
        local y = {}
        for a = 1, dv do
          local s = 0
          for c = 1, d do s = s + S[a][c] * qi[c] end
          y[a] = scale * s
        end
        return y
      end
      local rows = {}
      for t = 1, M do
        local kt, vt, be, al = K[b][hk][t], V[b][hk][t], Be[b][h][t], Ga[b][h][t]
        local w = {}
        for a = 1, dv do
          local u = 0
          for c = 1, d do u = u + S[a][c] * kt[c] end
          w[a] = be * (vt[a] - al * u)
        end
        for a = 1, dv do for c = 1, d do S[a][c] = al * S[a][c] + w[a] * kt[c] end end
        if causal then rows[t] = read(Q[b][h][t]) end
      end
      if not causal then for i = 1, N do rows[i] = read(Q[b][h][i]) end end
      out[b][h] = rows
    end
  end
  return lab.tensor(out, "float64")
end

for _, case in ipairs{
  { name = "causal", q = { 2, 2, 7, 4 }, k = { 2, 2, 7, 4 }, dv = 3, causal = true },
  { name = "not causal (final memory)", q = { 1, 2, 6, 3 }, k = { 1, 2, 6, 3 }, dv = 4, causal = false },
  { name = "cross", q = { 2, 1, 4, 3 }, k = { 2, 1, 9, 3 }, dv = 2, causal = false },
  { name = "grouped heads", q = { 1, 4, 10, 3 }, k = { 1, 2, 10, 3 }, dv = 2, causal = true },
} do
  local q, k = rnd(case.q), unit_rows(rnd(case.k))
  local v = rnd{ case.k[1], case.k[2], case.k[3], case.dv }
  local beta = rnd{ case.q[1], case.q[2], case.k[3] }:sigmoid()
  local gate = (rnd{ 1, case.q[2], 1 } * 0.3 + 1.5):sigmoid()   -- broadcast over batch and keys
  local opts = { variant = "delta", causal = case.causal, beta = beta, gate = gate, scale = 0.7, weights = true }
  local out, w = lab.attention(q, k, v, opts)
  local ref = reference(q, k, v, beta, gate, 0.7, case.causal)
  check.ok(max_abs_diff(out, ref) < 1e-12, case.name .. ": output equals the per-step loop", tostring(max_abs_diff(out, ref)))
  -- the map: y is linear in v, y = A v (with grouped heads, v repeated per query head)
  local vr = v
  if case.k[2] ~= case.q[2] then
    local g = case.q[2] / case.k[2]
    vr = v:unsqueeze(3):expand{ case.k[1], case.k[2], g, case.k[3], case.dv }:reshape{ case.k[1], case.q[2], case.k[3], case.dv }
  end
  check.ok(max_abs_diff(w:matmul(vr), out) < 1e-12, case.name .. ": map times v gives the output")
  if case.causal then
    check.ok(w:narrow(3, 1, 1):narrow(4, 2, case.k[3] - 1):abs():max():item() == 0, case.name .. ": map is zero above the diagonal")
  end

  local R = rnd(out:shape())
  local beta_leaf, gate_leaf = beta:clone():requires_grad(true), gate:clone():requires_grad(true)
  for _, x in ipairs{ q, k, v } do x:requires_grad(true) end
  check.gradients(function()
    return (lab.attention(q, k, v, { variant = "delta", causal = case.causal, beta = beta_leaf, gate = gate_leaf,
      scale = 0.7 }) * R):sum()
  end, { q = q, k = k, v = v, beta = beta_leaf, gate = gate_leaf }, case.name)
end

-- defaults: beta = gate = 1 is the plain delta rule; with orthonormal keys and q_t = k_t, each step
-- recalls exactly the value just written (the identity of attention-variants.md section 18)
do
  local d = 6
  local basis = lab.eye(d, "float64"):narrow(1, 1, 5):reshape{ 1, 1, 5, d }
  local v = rnd{ 1, 1, 5, 3 }
  local out = lab.attention(basis, basis, v, { variant = "delta", causal = true, scale = 1 })
  check.ok(max_abs_diff(out, v) < 1e-14, "beta = 1, orthonormal keys: querying k_t returns v_t")
  -- written twice to the same key: the memory holds the latest value, not the sum (unlike linear)
  local k2 = lab.cat({ basis:narrow(3, 1, 1), basis:narrow(3, 1, 1) }, 3)
  local v2 = rnd{ 1, 1, 2, 3 }
  local o2 = lab.attention(k2, k2, v2, { variant = "delta", causal = true, scale = 1 })
  check.ok(max_abs_diff(o2:narrow(3, 2, 1), v2:narrow(3, 2, 1)) < 1e-14, "a rewritten key recalls its latest value")
  -- gate = 0 forgets everything before the current step: y_t = beta_t v_t (k_t . q_t) scale
  local q, k = rnd{ 1, 2, 5, 4 }, unit_rows(rnd{ 1, 2, 5, 4 })
  local vv = rnd{ 1, 2, 5, 3 }
  local o3 = lab.attention(q, k, vv, { variant = "delta", causal = true, gate = lab.zeros({ 1 }, "float64"), scale = 1 })
  local expect = vv * (q * k):sum(4, true)
  check.ok(max_abs_diff(o3, expect) < 1e-14, "gate = 0: only the current key is remembered")
end

-- longer sequence: several checkpoint chunks, float32 against float64
do
  local q, k = rnd{ 2, 2, 40, 8 }, unit_rows(rnd{ 2, 2, 40, 8 })
  local v, beta = rnd{ 2, 2, 40, 8 }, rnd{ 2, 2, 40 }:sigmoid()
  local o64 = lab.attention(q, k, v, { variant = "delta", causal = true, beta = beta })
  check.ok(max_abs_diff(o64, reference(q, k, v, beta, lab.ones({ 1 }, "float64"), 1 / math.sqrt(8), true)) < 1e-12,
    "N = 40: output equals the per-step loop")
  local o32 = lab.attention(q:float(), k:float(), v:float(), { variant = "delta", causal = true, beta = beta:float() })
  check.ok(o32:dtype() == "float32" and max_abs_diff(o32:double(), o64) < 1e-5, "float32 matches float64 within 1e-5")
end

-- refusals, with the reason
do
  local q, k, v = rnd{ 1, 2, 5, 3 }, rnd{ 1, 2, 5, 3 }, rnd{ 1, 2, 5, 3 }
  check.fails(function() lab.attention(q, k, v, { variant = "delta", beta = rnd{ 1, 3, 5 } }) end,
    "variant 'delta' needs beta as a float tensor broadcastable to (B, H, M) = {1,2,5}", "beta of the wrong shape")
  check.fails(function() lab.attention(q, k, v, { variant = "delta", gate = lab.ones({ 5 }, "int64") }) end,
    "needs gate as a float tensor", "an int64 gate")
  check.fails(function() lab.attention(q, k:narrow(3, 1, 4), v:narrow(3, 1, 4), { variant = "delta", causal = true }) end,
    "variant 'delta' is causal only for N == M (got q {1,2,5,3}, k {1,2,4,3})")
  check.fails(function() lab.attention(q, k, v, { variant = "delta", mask = lab.ones{ 5, 5 } }) end,
    "variant 'delta' takes no bias or mask")
  check.fails(function() lab.attention(q, k, v, { variant = "delta", beta = 2 }) end, "opts.beta")
end

os.exit(check.report(), true)
