-- test_attention_pointer.lua -- "pointer" (pointer-network attention: the output is the
-- log-distribution over the input positions) against its scores written out here, its use with a
-- cross-entropy loss (d loss / d u = p - onehot), gradients, errors; and the top-k mask primitive.
--   ./attnlab tests/lua/test_attention_pointer.lua
local check = dofile("tests/lua/check.lua")("attention_pointer")
local ref = dofile("tests/lua/attention_reference.lua")
local lab = lab or require "attnlab"

lab.seed(41)
local function rnd(shape, dt) return lab.randn(shape, dt or "float64") end

-- u_ij = v . tanh(W1 e_j + W2 d_i), from Lua loops over the entries
local function additive_scores(q, k, W1, W2, v)
  local qt, kt = q:totable(), ref.repeat_heads(k, q:size(2)):totable()
  local w1, w2, vt = W1:totable(), W2:totable(), v:totable()
  local u = {}
  for b = 1, #qt do
    u[b] = {}
    for h = 1, #qt[b] do
      u[b][h] = {}
      for i = 1, #qt[b][h] do
        u[b][h][i] = {}
        for j = 1, #kt[b][h] do
          local s = 0
          for r = 1, #vt do
            local a = 0
            for c = 1, #qt[b][h][i] do a = a + w1[r][c] * kt[b][h][j][c] + w2[r][c] * qt[b][h][i][c] end
            s = s + vt[r] * math.tanh(a)
          end
          u[b][h][i][j] = s
        end
      end
    end
  end
  return lab.tensor(u, "float64")
end

for _, c in ipairs{
  { name = "additive", B = 2, H = 1, Hkv = 1, N = 3, M = 6, h = 5, additive = true },
  { name = "additive, causal, grouped heads", B = 1, H = 2, Hkv = 1, N = 5, M = 5, h = 4, additive = true, causal = true },
  { name = "dot-product", B = 1, H = 2, Hkv = 2, N = 4, M = 7 },
  { name = "dot-product, bottom_right", B = 1, H = 2, Hkv = 2, N = 3, M = 6, causal = "bottom_right" },
} do
  local q, k = rnd{ c.B, c.H, c.N, 3 }, rnd{ c.B, c.Hkv, c.M, 3 }
  local W1, W2, v = rnd{ c.h or 1, 3 }, rnd{ c.h or 1, 3 }, rnd{ c.h or 1 }
  local opts = { variant = "pointer", causal = c.causal, weights = true }
  if c.additive then opts.pointer_w1, opts.pointer_w2, opts.pointer_v = W1, W2, v end
  local out, w = lab.attention(q, k, k, opts)
  local u = c.additive and additive_scores(q, k, W1, W2, v) or q:matmul(ref.repeat_heads(k, c.H):transpose(3, 4)) / math.sqrt(3)
  if c.causal then u = lab.where(ref.mask(c.B, c.H, c.N, c.M, ref.causal(c.N, c.M, c.causal)), u, -math.huge) end
  local r = u:log_softmax(4)
  local finite = r:gt(-math.huge)
  check.ok(ref.max_abs_diff(lab.where(finite, out, 0), lab.where(finite, r, 0)) < 1e-12 and ref.max_abs_diff(out:gt(-math.huge), finite) == 0,
    "pointer " .. c.name .. ": the log-softmax of the scores", tostring(ref.max_abs_diff(lab.where(finite, out, 0), lab.where(finite, r, 0))))
  check.ok((w:sum(4) - 1):abs():max():item() < 1e-12, "pointer " .. c.name .. ": the distribution sums to 1 over the inputs")
  check.ok(ref.max_abs_diff(w, out:exp()) < 1e-15, "pointer " .. c.name .. ": the map is exp of the output")
  local o32 = {}
  for key, val in pairs(opts) do o32[key] = lab.is_tensor(val) and val:to("float32") or val end
  local out32 = lab.attention(q:to("float32"), k:to("float32"), k:to("float32"), o32)
  check.ok(ref.max_abs_diff(lab.where(finite, out32:to("float64"), 0), lab.where(finite, r, 0)) < 1e-5,
    "pointer " .. c.name .. ": float32 within 1e-5")
end

-- with a cross-entropy loss over the target positions: d loss / d u = p - onehot(target); and
-- lab.cross_entropy of the log-probabilities is the same loss (log_softmax of log-probabilities is itself)
do
  local N, M = 3, 5
  local q, k = rnd{ 1, 1, N, 3 }, rnd{ 1, 1, M, 3 }
  local W1, W2, v = rnd{ 4, 3 }, rnd{ 4, 3 }, rnd{ 4 }
  local u0 = lab.zeros({ 1, 1, N, M }, "float64"):requires_grad(true)   -- d loss / d u through an added bias
  local target = { 2, 5, 1 }
  local logp = lab.attention(q, k, k, { variant = "pointer", pointer_w1 = W1, pointer_w2 = W2, pointer_v = v, bias = u0 })
  local onehot = {}
  for i = 1, N do onehot[i] = {} for j = 1, M do onehot[i][j] = j == target[i] and 1 or 0 end end
  onehot = lab.tensor(onehot, "float64"):reshape{ 1, 1, N, M }
  local nll = -(logp * onehot):sum()
  nll:backward()
  check.ok(ref.max_abs_diff(u0.grad, logp:detach():exp() - onehot) < 1e-12, "pointer: d nll / d u = p - onehot(target)")
  local ce = lab.cross_entropy(logp:reshape{ N, M }, lab.tensor(target, "int64"))
  check.near(ce:item(), nll:item() / N, 1e-12, "pointer: lab.cross_entropy of the output is the mean nll")
end

do
  local q, k = rnd{ 1, 2, 3, 3 }:requires_grad(true), rnd{ 1, 2, 4, 3 }:requires_grad(true)
  local W1, W2, v = rnd{ 2, 3 }:requires_grad(true), rnd{ 2, 3 }:requires_grad(true), rnd{ 2 }:requires_grad(true)
  local wts = rnd{ 1, 2, 3, 4 }
  check.gradients(function()
    return (lab.attention(q, k, k, { variant = "pointer", pointer_w1 = W1, pointer_w2 = W2, pointer_v = v }) * wts):sum()
  end, { q = q, k = k, pointer_w1 = W1, pointer_w2 = W2, pointer_v = v }, "pointer additive")
  check.gradients(function()
    return (lab.attention(q, k, k, { variant = "pointer", causal = "bottom_right" }):exp() * wts):sum()
  end, { q = q, k = k }, "pointer dot-product")
  check.fails(function() return lab.attention(q, k, k, { variant = "pointer", pointer_w1 = W1 }) end,
    "variant 'pointer' needs all of pointer_w1, pointer_w2, pointer_v", "pointer with one parameter")
  check.fails(function() return lab.attention(q, k, k, { variant = "pointer", pointer_w1 = W1, pointer_w2 = rnd{ 2, 4 }, pointer_v = v }) end,
    "pointer_w2 of shape {2,3}", "pointer with a W2 of the wrong shape")
end

---------------------------------------------------------------------------------------------------
-- topk_mask
---------------------------------------------------------------------------------------------------
do
  local x = lab.tensor({ { 3, 1, 3, 2, 0 }, { -1, 5, 4, 4, 4 } }, "float64")
  local masked, keep = lab.attention.topk_mask(x, 2, 2)
  local expect_keep = lab.tensor({ { 1, 0, 1, 0, 0 }, { 0, 1, 1, 0, 0 } }, "float64")
  check.ok(ref.max_abs_diff(keep, expect_keep) == 0, "topk_mask keeps the k largest per line, ties to the lower index")
  check.ok(ref.max_abs_diff(lab.where(keep, masked, 0), lab.where(keep, x, 0)) == 0 and masked:eq(-math.huge):sum():item() == 6,
    "topk_mask leaves the kept scores and sets the rest to -inf")
  local _, keep1 = lab.attention.topk_mask(x, 1, 1)
  check.ok(ref.max_abs_diff(keep1, lab.tensor({ { 1, 0, 0, 0, 0 }, { 0, 1, 1, 1, 1 } }, "float64")) == 0, "topk_mask along dim 1")
  local xg = rnd{ 3, 6 }:requires_grad(true)
  local wts = rnd{ 3, 6 }
  check.gradients(function() return (lab.attention.topk_mask(xg, 3, 2):softmax(2) * wts):sum() end, { x = xg },
    "topk_mask then softmax (selection constant)")
  xg:zero_grad()
  local y = lab.attention.topk_mask(xg, 2, -1)
  y:exp():sum():backward()
  local _, kept = lab.attention.topk_mask(xg:detach(), 2, -1)
  check.ok(xg.grad:ne(0):to("float64"):eq(kept):sum():item() == 18, "topk_mask: the gradient reaches the kept scores only")
  check.fails(function() return lab.attention.topk_mask(x, 0) end, "topk_mask: needs float scores of at least 1 dim and k >= 1",
    "topk_mask k = 0")
end

os.exit(check.report(), true)   -- true: close the Lua state, so every tensor is freed (quiet leak checks)
