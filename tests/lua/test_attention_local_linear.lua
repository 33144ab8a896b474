-- test_attention_local_linear.lua -- the "local_linear" variant (Local Linear Attention, LLA):
-- forward against a per-query float64 loop written here on plain Lua numbers (weighted moments and
-- a Gaussian-elimination solve), its signed map, the identities (values affine in the keys are
-- reproduced exactly; a huge ridge gives softmax attention), gradients, float32, refusals.
local check = dofile("tests/lua/check.lua")("attention_local_linear")
local lab = lab or require "attnlab"

lab.seed(9)
local function rnd(shape) return lab.randn(shape, "float64") end
local function max_abs_diff(a, b) return (a - b):abs():max():item() end

-- x = A^-1 b by Gaussian elimination with partial pivoting (A is d x d, b a vector)
local function solve(A, b)
  local n, M, x = #b, {}, {}
  for r = 1, n do M[r] = {} for c = 1, n do M[r][c] = A[r][c] end M[r][n + 1] = b[r] end
  for col = 1, n do
    local piv = col
    for r = col + 1, n do if math.abs(M[r][col]) > math.abs(M[piv][col]) then piv = r end end
    M[col], M[piv] = M[piv], M[col]
    for r = col + 1, n do
      local f = M[r][col] / M[col][col]
      for c = col, n + 1 do M[r][c] = M[r][c] - f * M[col][c] end
    end
  end
  for r = n, 1, -1 do
    local s = M[r][n + 1]
    for c = r + 1, n do s = s - M[r][c] * x[c] end
    x[r] = s / M[r][r]
  end
  return x
end

local function reference(q, k, v, scale, ridge, causal)
  local Q, K, V = q:totable(), k:totable(), v:totable()
  local H, Hkv, N, M, d, dv = q:size(2), k:size(2), q:size(3), k:size(3), q:size(4), v:size(4)
  local out, map = {}, {}
  for b = 1, #Q do
    out[b], map[b] = {}, {}
    for h = 1, H do
      local hk = math.floor((h - 1) * Hkv / H) + 1
      local Kh, Vh = K[b][hk], V[b][hk]
      out[b][h], map[b][h] = {}, {}
      for i = 1, N do
        local qi, last = Q[b][h][i], causal and i + M - N or M
        local p, top, z = {}, -math.huge, 0
        for j = 1, last do
          local s = 0
          for t = 1, d do s = s + qi[t] * Kh[j][t] end
          p[j] = scale * s
          top = math.max(top, p[j])
        end
        for j = 1, last do p[j] = math.exp(p[j] - top); z = z + p[j] end
        local kbar, vbar = {}, {}
        for t = 1, d do kbar[t] = 0 end
        for e = 1, dv do vbar[e] = 0 end
        for j = 1, last do
          p[j] = p[j] / z
          for t = 1, d do kbar[t] = kbar[t] + p[j] * Kh[j][t] end
          for e = 1, dv do vbar[e] = vbar[e] + p[j] * Vh[j][e] end
        end
        local A, rhs = {}, {}
        for r = 1, d do
          A[r] = {}
          for c = 1, d do
            local s = 0
            for j = 1, last do s = s + p[j] * (Kh[j][r] - kbar[r]) * (Kh[j][c] - kbar[c]) end
            A[r][c] = s + (r == c and ridge or 0)
          end
          rhs[r] = qi[r] - kbar[r]
        end
        local x = solve(A, rhs)
        local row, wrow = {}, {}
        for e = 1, dv do row[e] = 0 end
        for j = 1, M do
          local w = 0
          if j <= last then
            local lever = 1
            for t = 1, d do lever = lever + (Kh[j][t] - kbar[t]) * x[t] end
            w = p[j] * lever
          end
          wrow[j] = w
          for e = 1, dv do row[e] = row[e] + w * Vh[j][e] end
        end
        out[b][h][i], map[b][h][i] = row, wrow
      end
    end
  end
  return lab.tensor(out, "float64"), lab.tensor(map, "float64")
end

for _, case in ipairs{
  { name = "self", q = { 2, 2, 6, 3 }, k = { 2, 2, 6, 3 }, dv = 2, causal = false, ridge = 0.1 },
  { name = "cross", q = { 1, 1, 4, 2 }, k = { 1, 1, 7, 2 }, dv = 3, causal = false },
  { name = "causal", q = { 1, 2, 6, 3 }, k = { 1, 2, 6, 3 }, dv = 2, causal = true, ridge = 0.5 },
  { name = "causal bottom_right, grouped heads", q = { 1, 2, 3, 2 }, k = { 1, 1, 5, 2 }, dv = 2, causal = "bottom_right", ridge = 0.2 },
} do
  local q, k = rnd(case.q), rnd(case.k)
  local v = rnd{ case.k[1], case.k[2], case.k[3], case.dv }
  local out, w = lab.attention(q, k, v, { variant = "local_linear", causal = case.causal, ridge = case.ridge, weights = true })
  local ref, ref_w = reference(q, k, v, 1 / math.sqrt(case.q[4]), case.ridge or 1e-2, case.causal)
  check.ok(max_abs_diff(out, ref) < 1e-12, case.name .. ": output equals the per-query loop", tostring(max_abs_diff(out, ref)))
  check.ok(max_abs_diff(w, ref_w) < 1e-12, case.name .. ": signed map equals the reference")
  check.ok((w:sum(4) - 1):abs():max():item() < 1e-12, case.name .. ": map rows sum to 1")
  local R = rnd(out:shape())
  for _, x in ipairs{ q, k, v } do x:requires_grad(true) end
  check.gradients(function()
    return (lab.attention(q, k, v, { variant = "local_linear", causal = case.causal, ridge = case.ridge }) * R):sum()
  end, { q = q, k = k, v = v }, case.name)
end

-- gradient through a bias, and a mask
do
  local q, k, v = rnd{ 1, 1, 4, 2 }, rnd{ 1, 1, 5, 2 }, rnd{ 1, 1, 5, 2 }
  local bias = rnd{ 4, 5 }:requires_grad(true)
  local mask = lab.tensor({ { 1, 1, 1, 0, 1 }, { 1, 1, 1, 1, 1 }, { 0, 1, 1, 1, 1 }, { 1, 1, 1, 1, 0 } }, "float64")
  local R = rnd{ 1, 1, 4, 2 }
  check.gradients(function()
    return (lab.attention(q, k, v, { variant = "local_linear", bias = bias, mask = mask, ridge = 0.3 }) * R):sum()
  end, { bias = bias }, "bias with a mask")
end

-- identities (attention-variants.md section 8)
do
  local q, k = rnd{ 1, 2, 5, 3 }, rnd{ 1, 2, 8, 3 }
  local W, b0 = rnd{ 3, 4 }, rnd{ 4 }
  local v = k:matmul(W) + b0   -- values exactly affine in the keys
  local out = lab.attention(q, k, v, { variant = "local_linear", ridge = 1e-10 })
  check.ok(max_abs_diff(out, q:matmul(W) + b0) < 1e-7, "values affine in the keys: LLA returns W q + b",
    tostring(max_abs_diff(out, q:matmul(W) + b0)))
  local soft = lab.attention(q, k, v, { causal = false })
  check.ok(max_abs_diff(out, soft) > 1e-3, "... which softmax attention does not")
  local big = lab.attention(q, k, v, { variant = "local_linear", ridge = 1e8 })
  check.ok(max_abs_diff(big, soft) < 1e-6, "ridge = 1e8 gives softmax attention")
end

-- float32 against float64
do
  local q, k, v = rnd{ 1, 2, 12, 4 }, rnd{ 1, 2, 12, 4 }, rnd{ 1, 2, 12, 4 }
  local o64 = lab.attention(q, k, v, { variant = "local_linear", causal = true, ridge = 0.5 })
  local o32 = lab.attention(q:float(), k:float(), v:float(), { variant = "local_linear", causal = true, ridge = 0.5 })
  check.ok(o32:dtype() == "float32" and max_abs_diff(o32:double(), o64) < 1e-5, "float32 matches float64 within 1e-5",
    tostring(max_abs_diff(o32:double(), o64)))
end

-- refusals, with the reason
do
  local q, k, v = rnd{ 1, 1, 5, 2 }, rnd{ 1, 1, 3, 2 }, rnd{ 1, 1, 3, 2 }
  check.fails(function() lab.attention(q, k, v, { variant = "local_linear", causal = "bottom_right" }) end,
    "variant 'local_linear' causal bottom_right needs M >= N")
  check.fails(function() lab.attention(q, k, v, { variant = "local_linear", ridge = 0 }) end,
    "opts.ridge must be a finite number > 0 (got 0)")
  check.fails(function() lab.attention(q, k, v, { variant = "local_linear", ridge = "big" }) end, "opts.ridge")
end

os.exit(check.report(), true)
