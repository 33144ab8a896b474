-- test_attention_window.lua -- the "sliding_window" variant against dense softmax attention with
-- the same band given as an explicit mask (float64), in both kernel paths (few queries per kv head:
-- rows walked in place; many: transposed), causal both ways, and its gradients against central
-- differences.  A window as wide as the sequence must equal plain softmax attention.
--   ./build/attnlab tests/lua/test_attention_window.lua
local check = dofile("tests/lua/check.lua")("attention_window")
local lab = lab or require "attnlab"

lab.seed(11)
local function rnd(shape) return lab.randn(shape, "float64") end
local function max_abs_diff(a, b) return (a - b):abs():max():item() end

-- the band as a (N, M) mask: |j - diag| <= w, with diag = i (+ M - N for bottom-right), j <= diag when causal
local function band(N, M, w, causal)
  local m = {}
  for i = 1, N do
    m[i] = {}
    local diag = (i - 1) + (causal == "bottom_right" and (M - N) or 0)
    for j = 1, M do
      local jj = j - 1
      local ok = jj >= diag - w and (causal and jj <= diag or (not causal and jj <= diag + w))
      m[i][j] = ok and 1 or 0
    end
  end
  return lab.tensor(m, "float64")
end

for _, case in ipairs{
  { name = "rows path", B = 2, H = 2, N = 1, M = 9, w = 3, causal = false },
  { name = "rows path, causal", B = 2, H = 3, N = 5, M = 5, w = 2, causal = true },
  { name = "transposed path", B = 1, H = 2, N = 12, M = 12, w = 3, causal = false },
  { name = "transposed path, causal", B = 1, H = 2, N = 12, M = 12, w = 4, causal = true },
  { name = "cross, bottom_right", B = 1, H = 1, N = 10, M = 14, w = 2, causal = "bottom_right" },
  { name = "cross, non-causal", B = 2, H = 1, N = 9, M = 6, w = 1, causal = false },
} do
  local q = rnd{ case.B, case.H, case.N, 4 }
  local k, v = rnd{ case.B, case.H, case.M, 4 }, rnd{ case.B, case.H, case.M, 3 }
  local opts = { variant = "sliding_window", window = case.w, causal = case.causal, weights = true }
  local out, w = lab.attention(q, k, v, opts)
  local mask = band(case.N, case.M, case.w, case.causal)
  local ref, ref_w = lab.attention(q, k, v, { mask = mask, weights = true })
  check.ok(max_abs_diff(out, ref) < 1e-12, case.name .. ": equals softmax with the band as a mask",
    tostring(max_abs_diff(out, ref)))
  check.ok(max_abs_diff(w, ref_w) < 1e-12, case.name .. ": the same map")

  local R = rnd(out:shape())
  for _, x in ipairs{ q, k, v } do x:requires_grad(true) end
  local function loss()
    return (lab.attention(q, k, v, { variant = "sliding_window", window = case.w, causal = case.causal }) * R):sum()
  end
  loss():backward()
  for name, x in pairs{ q = q, k = k, v = v } do
    local g, flat = x.grad:reshape{ -1 }:totable(), x:detach():reshape{ -1 }
    local worst, scale = 0, 1
    for idx = 1, flat:numel() do
      local orig = flat:get(idx)
      flat:set(idx, orig + 1e-6); local up = lab.no_grad(function() return loss():item() end)
      flat:set(idx, orig - 1e-6); local down = lab.no_grad(function() return loss():item() end)
      flat:set(idx, orig)
      local numeric = (up - down) / 2e-6
      worst, scale = math.max(worst, math.abs(numeric - g[idx])), math.max(scale, math.abs(numeric))
    end
    check.ok(worst / scale < 1e-6, string.format("%s: d loss / d %s matches central differences", case.name, name),
      string.format("relative error %.3g", worst / scale))
  end
end

-- a window as wide as the sequence is plain softmax attention
local q, k, v = rnd{ 2, 2, 10, 4 }, rnd{ 2, 2, 10, 4 }, rnd{ 2, 2, 10, 4 }
check.ok(max_abs_diff(lab.attention(q, k, v, { variant = "sliding_window", window = 10 }), lab.attention(q, k, v)) < 1e-12,
  "window >= N equals dense softmax")
check.ok(max_abs_diff(lab.attention(q, k, v, { variant = "sliding_window", window = 10, causal = true }),
  lab.attention(q, k, v, { causal = true })) < 1e-12, "causal window >= N equals causal softmax")

-- refusals
check.fails(function() lab.attention(q, k, v, { variant = "sliding_window" }) end, "needs window >= 1")
check.fails(function() lab.attention(q, k, v, { window = 3 }) end, "window is an option of the 'sliding_window' variant")
check.fails(function() lab.attention(q, k, v, { variant = "sliding_window", window = 1.5 }) end, "opts.window must be an integer")

os.exit(check.report(), true)
