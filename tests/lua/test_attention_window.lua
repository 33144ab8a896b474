-- test_attention_window.lua -- the variants that are softmax over a range of keys per query,
-- "sliding_window", "neighborhood" and "strided_neighborhood", against dense softmax attention
-- with the same keys given as an explicit mask (float64), in both kernel paths (few queries per kv head: rows walked in place;
-- many: transposed), causal both ways, and their gradients against central differences.  A window
-- as wide as the sequence must equal plain softmax attention.  The neighborhood variants also with
-- dilation (1-D; the key-list kernel), against NATTEN's dilated rules.
--   ./build/attnlab tests/lua/test_attention_window.lua
local check = dofile("tests/lua/check.lua")("attention_window")
local lab = lab or require "attnlab"

lab.seed(11)
local function rnd(shape) return lab.randn(shape, "float64") end
local function max_abs_diff(a, b) return (a - b):abs():max():item() end

-- The variant given by opts against softmax attention with the same keys as an explicit mask:
-- output and map equal to 1e-12 and, with grads, its gradients against central differences.
-- Returns the variant's map.
local nref = dofile("tests/lua/neighborhood_reference.lua")
local function check_as_mask(...) return nref.check_as_mask(check, ...) end

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
  check_as_mask(case.name, { variant = "sliding_window", window = case.w, causal = case.causal }, q, k, v,
    band(case.N, case.M, case.w, case.causal), true)
end

-- a window as wide as the sequence (opts, without causal) is plain softmax attention, and with
-- causal = true causal softmax attention
local function check_whole_window(what, opts, q, k, v)
  check.ok(max_abs_diff(lab.attention(q, k, v, opts), lab.attention(q, k, v)) < 1e-12, what .. " equals dense softmax")
  opts.causal = true
  check.ok(max_abs_diff(lab.attention(q, k, v, opts), lab.attention(q, k, v, { causal = true })) < 1e-12,
    "causal " .. what .. " equals causal softmax")
end

local q, k, v = rnd{ 2, 2, 10, 4 }, rnd{ 2, 2, 10, 4 }, rnd{ 2, 2, 10, 4 }
check_whole_window("window >= N", { variant = "sliding_window", window = 10 }, q, k, v)

---------------------------------------------------------------------------------------------------
-- neighborhood (NATTEN, 1-D): the window rule written out independently (neighborhood_reference.lua)
---------------------------------------------------------------------------------------------------
local function natten_mask(L, ks, causal) return nref.grid_mask({ L }, ks, 1, 1, causal) end

for _, case in ipairs{
  { name = "neighborhood k=3", B = 2, H = 2, L = 9, ks = 3, causal = false },
  { name = "neighborhood k=5, transposed path", B = 1, H = 2, L = 11, ks = 5, causal = false },
  { name = "neighborhood causal k=4", B = 1, H = 3, L = 8, ks = 4, causal = true },
} do
  local nq, nk, nv = rnd{ case.B, case.H, case.L, 4 }, rnd{ case.B, case.H, case.L, 4 }, rnd{ case.B, case.H, case.L, 2 }
  local w = check_as_mask(case.name, { variant = "neighborhood", kernel_size = case.ks, causal = case.causal },
    nq, nk, nv, natten_mask(case.L, case.ks, case.causal), true)
  local keys = w:gt(0):sum(4)
  if not case.causal then
    check.ok(keys:min():item() == case.ks and keys:max():item() == case.ks, case.name .. ": every query sees exactly k keys")
  end
end
local q9, k9, v9 = rnd{ 1, 2, 9, 4 }, rnd{ 1, 2, 9, 4 }, rnd{ 1, 2, 9, 4 }
check_whole_window("neighborhood with k = L", { variant = "neighborhood", kernel_size = 9 }, q9, k9, v9)
check.fails(function() lab.attention(q9, k9, v9, { variant = "neighborhood", kernel_size = 4 }) end, "odd unless causal")
check.fails(function() lab.attention(q9, k9, v9, { variant = "neighborhood", kernel_size = 11 }) end, "N = M >= kernel_size")
check.fails(function() lab.attention(q9, k9, v9, { kernel_size = 3 }) end, "kernel_size is an option of the variant(s) neighborhood strided_neighborhood, not of 'softmax'")

---------------------------------------------------------------------------------------------------
-- strided neighborhood (GNA): the rule of NATTEN's flex backend (neighborhood_reference.lua)
---------------------------------------------------------------------------------------------------
local function gna_mask(L, ks, stride, causal) return nref.grid_mask({ L }, ks, stride, 1, causal) end
for _, case in ipairs{ { L = 12, ks = 4, s = 2, causal = false }, { L = 11, ks = 5, s = 3, causal = false },
                       { L = 12, ks = 4, s = 3, causal = true }, { L = 9, ks = 3, s = 1, causal = false } } do
  local gq, gk, gv = rnd{ 1, 2, case.L, 4 }, rnd{ 1, 2, case.L, 4 }, rnd{ 1, 2, case.L, 3 }
  local name = string.format("GNA L=%d k=%d s=%d%s", case.L, case.ks, case.s, case.causal and " causal" or "")
  check_as_mask(name, { variant = "strided_neighborhood", kernel_size = case.ks, stride = case.s, causal = case.causal },
    gq, gk, gv, gna_mask(case.L, case.ks, case.s, case.causal))
end
-- stride 1 is the plain neighborhood; stride = k (odd) is blocked attention
check.ok(max_abs_diff(lab.attention(q9, k9, v9, { variant = "strided_neighborhood", kernel_size = 3, stride = 1 }),
  lab.attention(q9, k9, v9, { variant = "neighborhood", kernel_size = 3 })) < 1e-12, "GNA with stride 1 is the neighborhood")
local blocks = {}
for i = 1, 9 do blocks[i] = {} for j = 1, 9 do blocks[i][j] = math.floor((i - 1) / 3) == math.floor((j - 1) / 3) and 1 or 0 end end
check.ok(max_abs_diff(lab.attention(q9, k9, v9, { variant = "strided_neighborhood", kernel_size = 3, stride = 3 }),
  lab.attention(q9, k9, v9, { mask = lab.tensor(blocks, "float64") })) < 1e-12, "GNA with stride = k is blocked attention")
check_as_mask("GNA L=7 k=4 s=2", { variant = "strided_neighborhood", kernel_size = 4, stride = 2 },
  rnd{ 1, 1, 7, 3 }, rnd{ 1, 1, 7, 3 }, rnd{ 1, 1, 7, 2 }, gna_mask(7, 4, 2, false), true)
check.fails(function() lab.attention(q9, k9, v9, { variant = "strided_neighborhood", kernel_size = 3 }) end, "needs stride >= 1")
check.fails(function() lab.attention(q9, k9, v9, { variant = "neighborhood", kernel_size = 3, stride = 2 }) end, "takes no stride")

---------------------------------------------------------------------------------------------------
-- dilated neighborhood and GNA (1-D): NATTEN's rules for dilation (neighborhood_reference.lua)
---------------------------------------------------------------------------------------------------
for _, case in ipairs{
  { L = 12, ks = 3, dil = 2, grads = true }, { L = 11, ks = 3, dil = 3 }, { L = 10, ks = 5, dil = 2 },
  { L = 11, ks = 3, dil = 3, causal = true }, { L = 9, ks = 4, dil = 2, causal = true, grads = true },
  { L = 13, ks = 4, dil = 3, s = 2 }, { L = 12, ks = 3, dil = 2, s = 2, causal = true },
} do
  local dq, dk, dv = rnd{ 1, 2, case.L, 4 }, rnd{ 1, 2, case.L, 4 }, rnd{ 1, 2, case.L, 3 }
  local name = string.format("dilated %s L=%d k=%d dilation=%d%s%s", case.s and "GNA" or "neighborhood", case.L, case.ks,
    case.dil, case.s and (" s=" .. case.s) or "", case.causal and " causal" or "")
  local w = check_as_mask(name, { variant = case.s and "strided_neighborhood" or "neighborhood", kernel_size = case.ks,
    stride = case.s, dilation = case.dil, causal = case.causal }, dq, dk, dv,
    nref.grid_mask({ case.L }, case.ks, case.s, case.dil, case.causal), case.grads)
  if not case.causal then
    local keys = w:gt(0):sum(4)
    check.ok(keys:min():item() == case.ks and keys:max():item() == case.ks, name .. ": every query sees exactly k keys")
  end
end
-- with L a multiple of the dilation, each dilation group is an undilated neighborhood on its own
do
  local L, dil, ks = 12, 3, 3
  local dq, dk, dv = rnd{ 1, 2, L, 4 }, rnd{ 1, 2, L, 4 }, rnd{ 1, 2, L, 3 }
  local out = lab.attention(dq, dk, dv, { variant = "neighborhood", kernel_size = ks, dilation = dil })
  local worst = 0
  for g = 1, dil do
    local function group(t)
      local rows = {}
      for i = g, L, dil do rows[#rows + 1] = t:narrow(3, i, 1) end
      return lab.cat(rows, 3)
    end
    local sub = lab.attention(group(dq), group(dk), group(dv), { variant = "neighborhood", kernel_size = ks })
    worst = math.max(worst, max_abs_diff(group(out), sub))
  end
  check.ok(worst < 1e-12, "dilation 3 on L = 12: each group equals the undilated neighborhood on it", tostring(worst))
  check.ok(max_abs_diff(lab.attention(dq, dk, dv, { variant = "neighborhood", kernel_size = ks, dilation = 1 }),
    lab.attention(dq, dk, dv, { variant = "neighborhood", kernel_size = ks })) < 1e-12, "dilation 1 is the undilated neighborhood")
end
check.fails(function() lab.attention(q9, k9, v9, { variant = "neighborhood", kernel_size = 5, dilation = 2 }) end,
  "needs N = M >= kernel_size * dilation")
check.fails(function() lab.attention(q9, k9, v9, { variant = "neighborhood", kernel_size = 3, dilation = 1.5 }) end,
  "opts.dilation must be an integer >= 1")

-- refusals
check.fails(function() lab.attention(q, k, v, { variant = "sliding_window" }) end, "variant 'sliding_window' needs opts.window: an integer >= 1")
check.fails(function() lab.attention(q, k, v, { window = 3 }) end, "window is an option of the variant(s) sliding_window, not of 'softmax'")
check.fails(function() lab.attention(q, k, v, { variant = "sliding_window", window = 1.5 }) end, "opts.window must be an integer")

os.exit(check.report(), true)
