-- test_attention_landmark.lua -- "landmark" (landmark attention's grouped softmax) against its
-- definition written out in Lua loops, its identity case (landmark logit = its block's log-sum-exp
-- gives causal softmax over the regular keys), gradients, errors; and the two primitives it and
-- hyper rest on: lab.attention.grouped_softmax and lab.attention.merge (the log-sum-exp merge).
--   ./attnlab tests/lua/test_attention_landmark.lua
local check = dofile("tests/lua/check.lua")("attention_landmark")
local ref = dofile("tests/lua/attention_reference.lua")
local lab = lab or require "attnlab"

lab.seed(31)
local function rnd(shape, dt) return lab.randn(shape, dt or "float64") end

-- the definition, per query: joint softmax over the current block's regular keys and earlier
-- landmarks, within-block softmax for earlier blocks, product; landmark rows of lm (1/0 per key)
local function landmark_weights(S, lm, causal, N, M)
  return ref.per_query(#S, #S[1], N, function(b, h, i)
    local is_lm = type(lm[1]) == "table" and lm[b] or lm
    local block, seen = {}, 0
    for j = 1, M do block[j] = seen; if is_lm[j] == 1 then seen = seen + 1 end end
    local t = i + (causal == "bottom_right" and M - N or 0)
    local cur = block[t]
    local s, w = S[b][h][i], {}
    for j = 1, M do w[j] = 0 end
    local joint, mx = {}, -math.huge
    for j = 1, t do
      if (is_lm[j] == 0 and block[j] == cur) or (is_lm[j] == 1 and block[j] < cur) then
        joint[#joint + 1] = j; mx = math.max(mx, s[j])
      end
    end
    local z = 0
    for _, j in ipairs(joint) do z = z + math.exp(s[j] - mx) end
    local p = {}
    for _, j in ipairs(joint) do p[j] = math.exp(s[j] - mx) / z end
    for j = 1, t do
      if is_lm[j] == 0 and block[j] == cur then w[j] = p[j] end
    end
    for g = 0, cur - 1 do
      local members, landmark, gm = {}, nil, -math.huge
      for j = 1, M do
        if block[j] == g then
          if is_lm[j] == 1 then landmark = j else members[#members + 1] = j; gm = math.max(gm, s[j]) end
        end
      end
      local gz = 0
      for _, j in ipairs(members) do gz = gz + math.exp(s[j] - gm) end
      for _, j in ipairs(members) do w[j] = p[landmark] * math.exp(s[j] - gm) / gz end
    end
    return w
  end)
end

for _, c in ipairs{
  { name = "every third key", B = 1, H = 2, Hkv = 2, N = 10, lm = { 0, 0, 1, 0, 0, 1, 0, 0, 1, 0 } },
  { name = "per batch, grouped heads", B = 2, H = 4, Hkv = 2, N = 8,
    lm = { { 0, 1, 0, 0, 1, 0, 0, 0 }, { 0, 0, 0, 1, 0, 0, 1, 0 } } },
  { name = "cross bottom_right", B = 1, H = 2, Hkv = 2, N = 4, M = 9, causal = "bottom_right",
    lm = { 0, 0, 1, 0, 1, 0, 0, 1, 0 } },
} do
  local M = c.M or c.N
  local q, k, v = rnd{ c.B, c.H, c.N, 3 }, rnd{ c.B, c.Hkv, M, 3 }, rnd{ c.B, c.Hkv, M, 2 }
  local S = (q:matmul(ref.repeat_heads(k, c.H):transpose(3, 4)) / math.sqrt(3)):totable()
  local rw = landmark_weights(S, c.lm, c.causal, c.N, M)
  local w = ref.check_variant(check, "landmark " .. c.name .. " (the definition)", q, k, v,
    { variant = "landmark", landmarks = lab.tensor(c.lm, "float64"), causal = c.causal or true }, rw:matmul(ref.repeat_heads(v, c.H)), rw)
  check.ok((w:sum(4) - 1):abs():max():item() < 1e-12, "landmark " .. c.name .. ": rows sum to 1")
end

-- identity: each landmark's logit set (by a bias) to the log-sum-exp of its block's logits makes
-- the weights exactly causal softmax over the regular keys; no landmarks is causal softmax
do
  local N, lm = 10, { 0, 0, 1, 0, 0, 0, 1, 0, 1, 0 }
  local q, k, v = rnd{ 1, 2, N, 3 }, rnd{ 1, 2, N, 3 }, rnd{ 1, 2, N, 2 }
  local S = (q:matmul(k:transpose(3, 4)) / math.sqrt(3)):totable()
  local bias = {}
  for h = 1, 2 do
    bias[h] = {}
    for i = 1, N do
      local row, start = {}, 1
      for j = 1, N do
        row[j] = 0
        if lm[j] == 1 then
          local mx, z = -math.huge, 0
          for jj = start, j - 1 do mx = math.max(mx, S[1][h][i][jj]) end
          for jj = start, j - 1 do z = z + math.exp(S[1][h][i][jj] - mx) end
          row[j] = mx + math.log(z) - S[1][h][i][j]
          start = j + 1
        end
      end
      bias[h][i] = row
    end
  end
  local out = lab.attention(q, k, v, { variant = "landmark", landmarks = lab.tensor(lm, "float64"), causal = true,
                                       bias = lab.tensor(bias, "float64") })
  local r = ref.attention(q, k, v, { mask = ref.mask(1, 2, N, N, function(_, _, i, j) return j <= i and lm[j] == 0 end) })
  check.ok(ref.max_abs_diff(out, r) < 1e-12, "landmark with log-sum-exp landmark logits is causal softmax over regular keys",
    tostring(ref.max_abs_diff(out, r)))
  local none = lab.attention(q, k, v, { variant = "landmark", landmarks = lab.zeros({ N }, "float64"), causal = true })
  check.ok(ref.max_abs_diff(none, lab.attention(q, k, v, { causal = true })) < 1e-12, "landmark without landmarks is causal softmax")
end

do
  local q, k, v = rnd{ 1, 2, 6, 3 }:requires_grad(true), rnd{ 1, 1, 6, 3 }:requires_grad(true),
                  rnd{ 1, 1, 6, 2 }:requires_grad(true)
  local bias = rnd{ 6, 6 }:requires_grad(true)
  local lm = lab.tensor({ 0, 1, 0, 0, 1, 0 }, "int64")
  check.gradients(function()
    return (lab.attention(q, k, v, { variant = "landmark", landmarks = lm, causal = true, bias = bias }) ^ 2):sum()
  end, { q = q, k = k, v = v, bias = bias }, "landmark")
  check.fails(function() return lab.attention(q, k, v, { variant = "landmark", causal = true }) end,
    "variant 'landmark' needs landmarks of shape (M) or (B, M) = (1, 6)", "landmark without landmarks")
  check.fails(function() return lab.attention(q, k, v, { variant = "landmark", landmarks = lm }) end,
    "variant 'landmark' is causal", "landmark without causal")
  check.fails(function() return lab.attention(q, k, v, { variant = "landmark", landmarks = lab.zeros{ 5 }, causal = true }) end,
    "(got {5})", "landmark with landmarks of the wrong length")
end

---------------------------------------------------------------------------------------------------
-- grouped_softmax
---------------------------------------------------------------------------------------------------
do
  local x = rnd{ 3, 7 }
  x:set(2, 4, -math.huge)
  local groups = lab.tensor({ { 1, 1, 2, 2, 2, 3, 1 }, { 0, 5, 5, 5, 0, 9, 9 }, { 4, 4, 4, 4, 4, 4, 4 } }, "int64")
  x:set(2, 1, -math.huge); x:set(2, 5, -math.huge)   -- group 0 of row 2: all -inf, so all 0
  local y, xt, gt, worst = lab.attention.grouped_softmax(x, groups, 2):totable(), x:totable(), groups:totable(), 0
  for r = 1, 3 do
    for j = 1, 7 do
      local mx, z = -math.huge, 0
      for jj = 1, 7 do if gt[r][jj] == gt[r][j] then mx = math.max(mx, xt[r][jj]) end end
      if mx == -math.huge then mx = 0 end
      for jj = 1, 7 do if gt[r][jj] == gt[r][j] then z = z + math.exp(xt[r][jj] - mx) end end
      local expect = z > 0 and math.exp(xt[r][j] - mx) / z or 0
      worst = math.max(worst, math.abs(y[r][j] - expect))
    end
  end
  check.ok(worst < 1e-15, "grouped_softmax is a softmax within each group (-inf entries 0, an all -inf group 0)")
  local one = lab.attention.grouped_softmax(x:narrow(1, 3, 1), groups:narrow(1, 3, 1), -1)
  check.ok(ref.max_abs_diff(one, x:narrow(1, 3, 1):softmax(2)) < 1e-15, "grouped_softmax with one group is softmax")
  local xg = rnd{ 4, 3, 2 }:requires_grad(true)
  local g1 = lab.tensor({ 1, 2, 1, 2 }, "int64"):reshape{ 4, 1, 1 }
  local wts = rnd{ 4, 3, 2 }
  check.gradients(function() return (lab.attention.grouped_softmax(xg, g1, 1) * wts):sum() end, { x = xg },
    "grouped_softmax along dim 1, groups broadcast")
  check.fails(function() return lab.attention.grouped_softmax(x, groups:to("float64"), 2) end,
    "grouped_softmax: needs a float tensor x and int64 group labels", "grouped_softmax with float labels")
  check.fails(function() return lab.attention.grouped_softmax(x, lab.zeros({ 2, 7 }, "int64"), 2) end,
    "do not broadcast", "grouped_softmax with labels of another shape")
end

---------------------------------------------------------------------------------------------------
-- merge: two partial attentions over disjoint key sets make the whole
---------------------------------------------------------------------------------------------------
do
  local N, M = 5, 8
  local q, k, v = rnd{ 1, 2, N, 3 }, rnd{ 1, 2, M, 3 }, rnd{ 1, 2, M, 2 }
  local first = ref.mask(1, 2, N, M, function(_, _, i, j) return (i + j) % 3 == 0 end)
  local S = q:matmul(k:transpose(3, 4)) / math.sqrt(3)
  local S1, S2 = lab.where(first, S, -math.huge), lab.where(first, -math.huge, S)
  local o, lse = lab.attention.merge(S1:softmax(4):matmul(v), S1:logsumexp(4), S2:softmax(4):matmul(v), S2:logsumexp(4))
  check.ok(ref.max_abs_diff(o, lab.attention(q, k, v)) < 1e-12, "merge of two disjoint partial attentions is the whole")
  check.ok(ref.max_abs_diff(lse, S:logsumexp(4)) < 1e-12, "merge's log-sum-exp is that of all the keys")
  local empty = lab.full({ 1, 2, N }, -math.huge, "float64")
  local oe, le = lab.attention.merge(o, lse, lab.zeros({ 1, 2, N, 2 }, "float64"), empty)
  check.ok(ref.max_abs_diff(oe, o) == 0 and ref.max_abs_diff(le, lse) == 0, "merge with an empty part returns the other")
  local o1, l1, o2, l2 = rnd{ 3, 2 }:requires_grad(true), rnd{ 3 }:requires_grad(true), rnd{ 3, 2 }:requires_grad(true),
                         rnd{ 3 }:requires_grad(true)
  local wo, wl = rnd{ 3, 2 }, rnd{ 3 }
  check.gradients(function()
    local mo, ml = lab.attention.merge(o1, l1, o2, l2)
    return (mo * wo):sum() + (ml * wl):sum()
  end, { o1 = o1, lse1 = l1, o2 = o2, lse2 = l2 }, "merge")
  check.fails(function() return lab.attention.merge(o1, l1, o2, rnd{ 2 }) end,
    "attention.merge: needs o1, o2 of one shape (..., dv) and lse1, lse2 of shape (...)", "merge with mismatched lse")
end

os.exit(check.report(), true)   -- true: close the Lua state, so every tensor is freed (quiet leak checks)
