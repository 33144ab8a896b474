-- test_attention_bias.lua -- the variants that add a position bias to the logits: "relative" (Shaw
-- et al. relative positions, against an explicit O(N^2) one-hot gather; the Music Transformer skew
-- against the explicit gather and as the unclipped Shaw logits) and "flashbias" (low-rank bias,
-- against the materialised bias; ALiBi exactly).  Forward in float64 (1e-12) and float32 (1e-5),
-- gradients against central differences, the primitives, the errors.
--   ./attnlab tests/lua/test_attention_bias.lua
local check = dofile("tests/lua/check.lua")("attention_bias")
local ref = dofile("tests/lua/attention_reference.lua")
local lab = lab or require "attnlab"

lab.seed(23)
local function rnd(shape, dt) return lab.randn(shape, dt or "float64") end
---------------------------------------------------------------------------------------------------
-- relative
---------------------------------------------------------------------------------------------------
-- D (N, M, 2k+1): D[i][j][r] = 1 where r = clip(j - i - shift, -k, k) + k (1-based r), the explicit gather
local function onehot_distances(N, M, k, shift)
  local t = {}
  for i = 1, N do
    t[i] = {}
    for j = 1, M do
      local row = {}
      for r = 1, 2 * k + 1 do row[r] = 0 end
      row[math.max(-k, math.min(k, j - i - shift)) + k + 1] = 1
      t[i][j] = row
    end
  end
  return lab.tensor(t, "float64")
end

-- Shaw by the explicit gather: bias_ij = scale q_i . aK[c(j - i)], out += sum_j P_ij aV[c(j - i)]
local function relative_reference(q, k, v, aK, aV, causal)
  local N, M, d = q:size(3), k:size(3), q:size(4)
  local W = aK:size(aK:dim() - 1)
  local shift = causal == "bottom_right" and M - N or 0
  local D = onehot_distances(N, M, (W - 1) / 2, shift)
  local R = q:matmul(aK:transpose(-2, -1))                                   -- (B, H, N, W)
  local bias = R:unsqueeze(4):matmul(D:transpose(2, 3)):squeeze(4) / math.sqrt(d)
  local mask = causal and ref.mask(q:size(1), q:size(2), N, M, ref.causal(N, M, causal)) or nil
  local out, P = ref.attention(q, k, v, { bias = bias, mask = mask })
  if aV then out = out + P:unsqueeze(4):matmul(D):squeeze(4):matmul(aV) end
  return out, P
end

for _, c in ipairs{
  { name = "self, k = 2", B = 2, H = 2, Hkv = 2, N = 7, M = 7, k = 2 },
  { name = "causal, k = 1, per-head tables", B = 1, H = 2, Hkv = 2, N = 6, M = 6, k = 1, causal = true, per_head = true },
  { name = "cross bottom_right, grouped heads", B = 1, H = 4, Hkv = 2, N = 4, M = 7, k = 3, causal = "bottom_right" },
  { name = "no rel_value, k = 0", B = 1, H = 2, Hkv = 1, N = 5, M = 5, k = 0, no_value = true },
} do
  local q, kk, v = rnd{ c.B, c.H, c.N, 3 }, rnd{ c.B, c.Hkv, c.M, 3 }, rnd{ c.B, c.Hkv, c.M, 2 }
  local W = 2 * c.k + 1
  local aK = c.per_head and rnd{ c.H, W, 3 } or rnd{ W, 3 }
  local aV = not c.no_value and (c.per_head and rnd{ c.H, W, 2 } or rnd{ W, 2 }) or nil
  local r, rw = relative_reference(q, kk, v, aK, aV, c.causal)
  ref.check_variant(check, "relative " .. c.name .. " (explicit gather reference)", q, kk, v,
    { variant = "relative", rel_key = aK, rel_value = aV, causal = c.causal }, r, rw)
end

do
  local q, k, v = rnd{ 1, 2, 5, 3 }:requires_grad(true), rnd{ 1, 2, 5, 3 }:requires_grad(true),
                  rnd{ 1, 2, 5, 2 }:requires_grad(true)
  local aK, aV = rnd{ 5, 3 }:requires_grad(true), rnd{ 5, 2 }:requires_grad(true)
  check.gradients(function()
    return (lab.attention(q, k, v, { variant = "relative", rel_key = aK, rel_value = aV, causal = true }) ^ 2):sum()
  end, { q = q, k = k, v = v, rel_key = aK, rel_value = aV }, "relative")
end

-- skew against the explicit gather: skew(X)[i][j] = X[i][j - i + L] (1-based) for j <= i
do
  local L = 6
  local X = rnd{ 2, L, L }
  local S, xt = lab.attention.skew(X), X:totable()
  local st, worst = S:totable(), 0
  for b = 1, 2 do
    for i = 1, L do
      for j = 1, i do worst = math.max(worst, math.abs(st[b][i][j] - xt[b][i][j - i + L])) end
    end
  end
  check.ok(worst == 0, "skew equals the explicit gather on the lower triangle")
  local U, ut = lab.attention.unskew(S), nil
  ut, worst = U:totable(), 0
  for b = 1, 2 do
    for i = 1, L do
      for r = L - i + 1, L do worst = math.max(worst, math.abs(ut[b][i][r] - xt[b][i][r])) end
    end
  end
  check.ok(worst == 0, "unskew(skew(X)) is X wherever X is read (r >= L - i)")
  local tril = ref.mask(1, 1, L, L, function(_, _, i, j) return j <= i end):reshape{ L, L }
  local Wt = rnd{ 2, L, L }
  local Xg = X:clone():requires_grad(true)
  check.gradients(function() return (lab.attention.skew(Xg) * tril * Wt):sum() end, { x = Xg }, "skew")
  check.gradients(function() return (lab.attention.unskew(Xg) * Wt):sum() end, { x = Xg }, "unskew")
  check.fails(function() return lab.attention.skew(rnd{ 3, 4 }) end, "skew: needs a float tensor (..., L, L) (got {3,4}",
    "skew of a non-square tensor")
end

-- Music Transformer: with rel_value absent and k >= N - 1, Shaw's causal logits are the skewed
-- relative logits s (q k^T + skew(q E_r^T)), E_r the rows of a^K for distances -(N-1) .. 0
do
  local N, d = 6, 3
  local q, k, v = rnd{ 1, 2, N, d }, rnd{ 1, 2, N, d }, rnd{ 1, 2, N, 2 }
  local aK = rnd{ 2 * N - 1, d }
  local Er = aK:narrow(1, 1, N)
  local Srel = lab.attention.skew(q:matmul(Er:t()))
  local mask = ref.mask(1, 2, N, N, ref.causal(N, N))
  local music = ref.attention(q, k, v, { bias = lab.where(mask, Srel, 0) / math.sqrt(d), mask = mask })
  local shaw = lab.attention(q, k, v, { variant = "relative", rel_key = aK, causal = true })
  check.ok(ref.max_abs_diff(shaw, music) < 1e-12, "relative with k >= N - 1 equals Music Transformer's skewed logits")
end

-- relative_gather and relative_scatter are adjoint: <gather(R), G> = <R, scatter(G)>
do
  local R, G = rnd{ 2, 5, 7 }, rnd{ 2, 5, 9 }
  local lhs = (lab.attention.relative_gather(R, 9, 1) * G):sum():item()
  local rhs = (R * lab.attention.relative_scatter(G, 7, 1)):sum():item()
  check.near(lhs, rhs, 1e-12, "relative_gather and relative_scatter are adjoint")
  local Rg = R:clone():requires_grad(true)
  check.gradients(function() return (lab.attention.relative_gather(Rg, 9, 1) ^ 2):sum() end, { r = Rg }, "relative_gather")
  check.fails(function() return lab.attention.relative_gather(rnd{ 5, 4 }, 9) end, "odd width", "relative_gather even width")
end

do
  local q = rnd{ 1, 2, 4, 3 }
  check.fails(function() return lab.attention(q, q, q, { variant = "relative" }) end,
    "variant 'relative' needs rel_key", "relative without rel_key")
  check.fails(function() return lab.attention(q, q, q, { variant = "relative", rel_key = rnd{ 4, 3 } }) end,
    "rel_key of shape (2k+1, 3)", "relative with an even table")
  check.fails(function() return lab.attention(q, q, q, { variant = "relative", rel_key = rnd{ 5, 3 }, rel_value = rnd{ 3, 3 } }) end,
    "of one clip distance", "relative with tables of two distances")
  check.fails(function() return lab.attention(q, q, q, { variant = "softmax", rel_key = rnd{ 5, 3 } }) end,
    "rel_key is an option of the variant(s) relative", "rel_key given to softmax")
end

---------------------------------------------------------------------------------------------------
-- flashbias
---------------------------------------------------------------------------------------------------
for _, c in ipairs{
  { name = "self", B = 2, H = 2, Hkv = 2, N = 6, M = 6, r = 2 },
  { name = "causal, grouped heads", B = 1, H = 4, Hkv = 2, N = 7, M = 7, r = 3, causal = true },
  { name = "cross, broadcast factors", B = 2, H = 2, Hkv = 2, N = 4, M = 9, r = 1, shared = true },
} do
  local q, k, v = rnd{ c.B, c.H, c.N, 3 }, rnd{ c.B, c.Hkv, c.M, 3 }, rnd{ c.B, c.Hkv, c.M, 2 }
  local fq = c.shared and rnd{ c.N, c.r } or rnd{ c.B, c.H, c.N, c.r }
  local fk = c.shared and rnd{ c.M, c.r } or rnd{ c.B, c.Hkv, c.M, c.r }
  local bias = fq:matmul(ref.repeat_heads(c.shared and fk:reshape{ 1, 1, c.M, c.r } or fk, c.shared and 1 or c.H):transpose(-2, -1))
  local mask = c.causal and ref.mask(c.B, c.H, c.N, c.M, ref.causal(c.N, c.M, c.causal)) or nil
  local r, rw = ref.attention(q, k, v, { bias = bias, mask = mask })
  ref.check_variant(check, "flashbias " .. c.name .. " (materialised bias)", q, k, v,
    { variant = "flashbias", bias_q = fq, bias_k = fk, causal = c.causal }, r, rw)
end

-- ALiBi, -m_h (i - j), is rank 2: phi_q(i) = m_h [1, -i], phi_k(j) = [j, 1]; exact
do
  local H, N = 4, 8
  local q, k, v = rnd{ 1, H, N, 3 }, rnd{ 1, H, N, 3 }, rnd{ 1, H, N, 2 }
  local fq, fk, alibi = {}, {}, {}
  for h = 1, H do
    local m = 2 ^ (-8 * h / H)
    fq[h], alibi[h] = {}, {}
    for i = 1, N do
      fq[h][i] = { m, -m * i }
      alibi[h][i] = {}
      for j = 1, N do alibi[h][i][j] = -m * (i - j) end
    end
  end
  for j = 1, N do fk[j] = { j, 1 } end
  local out = lab.attention(q, k, v, { variant = "flashbias", bias_q = lab.tensor(fq, "float64"):unsqueeze(1),
                                       bias_k = lab.tensor(fk, "float64"), causal = true })
  local r = lab.attention(q, k, v, { bias = lab.tensor(alibi, "float64"):unsqueeze(1), causal = true })
  check.ok(ref.max_abs_diff(out, r) < 1e-12, "flashbias with the rank-2 ALiBi factors is ALiBi exactly",
    tostring(ref.max_abs_diff(out, r)))
end

do
  local q, k, v = rnd{ 1, 2, 4, 3 }:requires_grad(true), rnd{ 1, 2, 5, 3 }:requires_grad(true),
                  rnd{ 1, 2, 5, 2 }:requires_grad(true)
  local fq, fk = rnd{ 1, 2, 4, 2 }:requires_grad(true), rnd{ 1, 2, 5, 2 }:requires_grad(true)
  check.gradients(function()
    return (lab.attention(q, k, v, { variant = "flashbias", bias_q = fq, bias_k = fk, causal = "bottom_right" }) ^ 2):sum()
  end, { q = q, k = k, v = v, bias_q = fq, bias_k = fk }, "flashbias")
  check.fails(function() return lab.attention(q, k, v, { variant = "flashbias", bias_q = fq }) end,
    "variant 'flashbias' needs the bias factors", "flashbias without bias_k")
  check.fails(function() return lab.attention(q, k, v, { variant = "flashbias", bias_q = fq, bias_k = rnd{ 1, 2, 5, 3 } }) end,
    "of one rank r", "flashbias factors of two ranks")
  check.fails(function() return lab.attention(q, k, v, { variant = "flashbias", bias_q = rnd{ 1, 2, 3, 2 }, bias_k = fk }) end,
    "does not broadcast", "flashbias bias_q of the wrong length")
end

os.exit(check.report(), true)   -- true: close the Lua state, so every tensor is freed (quiet leak checks)
