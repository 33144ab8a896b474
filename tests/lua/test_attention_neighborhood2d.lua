-- test_attention_neighborhood2d.lua -- the neighborhood variants on a grid (opts.grid, 2-D and
-- 3-D) with dilation, causal per axis and GNA strides, against dense softmax attention with the
-- same keys as an explicit mask built from NATTEN's definitions (neighborhood_reference.lua;
-- attention-variants.md section 5): get_window_start of NATTEN's CPU kernels (with its closed form for dilation) for the
-- plain neighborhood, and the mask predicate of NATTEN's flex backend (single_dim_tiling_mask,
-- dilation groups with its shape correction) for causal axes and strides; the two agree where
-- both apply (checked).  Output and map to 1e-12 in float64 and 1e-5 in float32; gradients against
-- central differences; corner windows shifted, not shrunk; equivalences with the 1-D kernels and
-- dense softmax; nn.MultiHeadAttention / TransformerBlock taking the options by name; refusals.
--   ./attnlab tests/lua/test_attention_neighborhood2d.lua
local check = dofile("tests/lua/check.lua")("attention_neighborhood2d")
local lab = lab or require "attnlab"
local nn = lab.nn or require "attnlab.nn"

lab.seed(23)
local function rnd(shape, dtype) return lab.randn(shape, dtype or "float64") end
local function max_abs_diff(a, b) return (a - b):abs():max():item() end
local nref = dofile("tests/lua/neighborhood_reference.lua")
local cpu_allowed, flex_allowed, per_axis, grid_mask, cells = nref.cpu_allowed, nref.flex_allowed, nref.per_axis,
  nref.grid_mask, nref.cells
local function check_as_mask(...) return nref.check_as_mask(check, ...) end

-- the two definitions agree on the plain dilated neighborhood
do
  local agree = true
  for _, c in ipairs{ { 9, 3, 1 }, { 10, 3, 3 }, { 11, 5, 2 }, { 7, 3, 2 }, { 13, 3, 4 }, { 8, 1, 5 } } do
    local L, k, dil = c[1], c[2], c[3]
    for x = 0, L - 1 do for y = 0, L - 1 do
      agree = agree and cpu_allowed(x, y, L, k, dil) == flex_allowed(x, y, L, k, 1, dil, false)
    end end
  end
  check.ok(agree, "NATTEN's get_window_start (dilated closed form) and its flex mask agree at stride 1")
end

local cases = {
  { name = "2-D 5x6 k=3", grid = { 5, 6 }, ks = 3, grads = true },
  { name = "2-D 6x7 k={3,5} dilation={2,1}", grid = { 6, 7 }, ks = { 3, 5 }, dil = { 2, 1 } },
  { name = "2-D 7x10 k=3 dilation={2,3} (uneven groups)", grid = { 7, 10 }, ks = 3, dil = { 2, 3 } },
  { name = "2-D 5x6 causal={true,false} k={2,3}", grid = { 5, 6 }, ks = { 2, 3 }, causal = { true, false } },
  { name = "2-D 5x5 causal k=3 dilation={1,2}", grid = { 5, 5 }, ks = { 3, 2 }, dil = { 1, 2 }, causal = true },
  { name = "2-D GNA 6x8 k={4,3} stride={2,3}", grid = { 6, 8 }, ks = { 4, 3 }, stride = { 2, 3 } },
  { name = "2-D GNA 6x9 causal={false,true} k={3,4} stride={3,2} dilation={1,2}", grid = { 6, 9 }, ks = { 3, 4 },
    stride = { 3, 2 }, dil = { 1, 2 }, causal = { false, true }, grads = true },
  { name = "3-D 3x4x6 k=3 dilation={1,1,2}", grid = { 3, 4, 6 }, ks = 3, dil = { 1, 1, 2 }, heads = { 4, 2 } },
  { name = "3-D 2x3x4 k={1,3,3}, grouped kv heads", grid = { 2, 3, 4 }, ks = { 1, 3, 3 }, heads = { 2, 1 }, grads = true },
  { name = "3-D GNA 4x4x4 k={2,3,3} stride={2,1,3}", grid = { 4, 4, 4 }, ks = { 2, 3, 3 }, stride = { 2, 1, 3 } },
}
for _, case in ipairs(cases) do
  local N, H, Hkv = cells(case.grid), (case.heads or { 2 })[1], (case.heads or { 2, 2 })[2]
  local q, k, v = rnd{ 1, H, N, 3 }, rnd{ 1, Hkv, N, 3 }, rnd{ 1, Hkv, N, 2 }
  local opts = { variant = case.stride and "strided_neighborhood" or "neighborhood", grid = case.grid,
                 kernel_size = case.ks, stride = case.stride, dilation = case.dil, causal = case.causal }
  local w = check_as_mask(case.name, opts, q, k, v, grid_mask(case.grid, case.ks, case.stride, case.dil, case.causal),
    case.grads)
  if not case.causal then
    local want = 1
    for _, kk in ipairs(per_axis(case.ks, #case.grid)) do want = want * kk end
    local keys = w:gt(0):sum(4)
    check.ok(keys:min():item() == want and keys:max():item() == want, case.name .. ": every query sees exactly prod(k) keys")
  end
end

-- corner windows shift instead of shrinking: query (0, 0) of a 6 x 7 grid, k = {3, 5}, sees exactly
-- the 3 x 5 block in the corner, and the opposite corner the block in its corner
do
  local grid, kh, kw = { 6, 7 }, 3, 5
  local q, k, v = rnd{ 1, 1, 42, 3 }, rnd{ 1, 1, 42, 3 }, rnd{ 1, 1, 42, 3 }
  local _, w = lab.attention(q, k, v, { variant = "neighborhood", grid = grid, kernel_size = { kh, kw }, weights = true })
  local first, last = w:select(3, 1):reshape{ 6, 7 }:gt(0):totable(), w:select(3, 42):reshape{ 6, 7 }:gt(0):totable()
  local corner_ok, count = true, 0
  for r = 1, 6 do for c = 1, 7 do
    corner_ok = corner_ok and (first[r][c] == 1) == (r <= kh and c <= kw) and (last[r][c] == 1) == (r > 6 - kh and c > 7 - kw)
    count = count + first[r][c]
  end end
  check.ok(corner_ok and count == kh * kw, "corner queries see the kh x kw block in their corner (" .. count .. " keys)")
end

-- equivalences with the 1-D range kernels and with dense softmax
do
  local q, k, v = rnd{ 2, 2, 12, 4 }, rnd{ 2, 2, 12, 4 }, rnd{ 2, 2, 12, 4 }
  local one_d = lab.attention(q, k, v, { variant = "neighborhood", kernel_size = 5 })
  check.ok(max_abs_diff(lab.attention(q, k, v, { variant = "neighborhood", kernel_size = { 1, 5 }, grid = { 1, 12 } }), one_d) < 1e-12,
    "grid {1, N} with k {1, 5} (key lists) equals the 1-D neighborhood (range kernel)")
  check.ok(max_abs_diff(lab.attention(q, k, v, { variant = "neighborhood", kernel_size = 5, grid = { 12 } }), one_d) < 1e-12,
    "grid {N} equals the sequence")
  check.ok(max_abs_diff(lab.attention(q, k, v, { variant = "neighborhood", kernel_size = 5, dilation = 1 }), one_d) < 1e-12,
    "dilation 1 is the undilated neighborhood")
  local gna = lab.attention(q, k, v, { variant = "strided_neighborhood", kernel_size = 4, stride = 3, causal = true })
  check.ok(max_abs_diff(lab.attention(q, k, v, { variant = "strided_neighborhood", kernel_size = { 1, 4 }, stride = { 1, 3 },
    grid = { 1, 12 }, causal = { false, true } }), gna) < 1e-12, "causal GNA on grid {1, N} equals the 1-D causal GNA")
  local q35, k35, v35 = rnd{ 1, 2, 35, 4 }, rnd{ 1, 2, 35, 4 }, rnd{ 1, 2, 35, 4 }
  check.ok(max_abs_diff(lab.attention(q35, k35, v35, { variant = "neighborhood", grid = { 5, 7 }, kernel_size = { 5, 7 } }),
    lab.attention(q35, k35, v35)) < 1e-12, "kernel_size = the whole grid equals dense softmax")
end

-- float32, a bias and a trainable bias's gradient on the key-list path
do
  local grid, opts = { 6, 7 }, { variant = "neighborhood", grid = { 6, 7 }, kernel_size = { 3, 5 }, dilation = { 2, 1 } }
  local mask = grid_mask(grid, { 3, 5 }, 1, { 2, 1 }, false)
  local q, k, v = rnd({ 2, 2, 42, 8 }, "float32"), rnd({ 2, 2, 42, 8 }, "float32"), rnd({ 2, 2, 42, 8 }, "float32")
  check.ok(max_abs_diff(lab.attention(q, k, v, opts), lab.attention(q, k, v, { mask = mask })) < 1e-5,
    "float32: equals softmax with the mask within 1e-5")
  local q64, k64, v64, bias = rnd{ 1, 2, 42, 3 }, rnd{ 1, 2, 42, 3 }, rnd{ 1, 2, 42, 3 }, rnd{ 1, 2, 42, 42 }
  local with_bias = { bias = bias }
  for key, val in pairs(opts) do with_bias[key] = val end
  check.ok(max_abs_diff(lab.attention(q64, k64, v64, with_bias), lab.attention(q64, k64, v64, { mask = mask, bias = bias })) < 1e-12,
    "with a bias: equals softmax with the bias and the mask")
  local small_bias = rnd{ 1, 1, 20, 20 }
  small_bias:requires_grad(true)
  local sq, sk, sv = rnd{ 1, 1, 20, 3 }, rnd{ 1, 1, 20, 3 }, rnd{ 1, 1, 20, 2 }
  local R = rnd{ 1, 1, 20, 2 }
  check.gradients(function()
    return (lab.attention(sq, sk, sv, { variant = "neighborhood", grid = { 4, 5 }, kernel_size = 3, bias = small_bias }) * R):sum()
  end, { bias = small_bias }, "trainable bias on a 4 x 5 grid")
end

-- nn.MultiHeadAttention and TransformerBlock take grid, kernel_size, dilation by name
do
  lab.seed(5)
  local grid = { 4, 6 }
  local m = nn.MultiHeadAttention{ dim = 8, heads = 2, variant = "neighborhood", grid = grid, kernel_size = { 3, 3 }, dilation = { 1, 2 } }
  local plain = nn.MultiHeadAttention{ dim = 8, heads = 2, attention = { mask = grid_mask(grid, 3, 1, { 1, 2 }, false):float() } }
  local sd = m:state_dict()
  lab.no_grad(function() for name, p in pairs(plain:state_dict()) do p:copy_(sd[name]) end end)
  local x = lab.randn{ 2, 24, 8 }
  check.ok(max_abs_diff(m(x), plain(x)) < 1e-5, "MultiHeadAttention with grid, kernel_size, dilation equals MHA with the mask")
  local block = nn.TransformerBlock{ dim = 8, heads = 2, variant = "neighborhood", grid = grid, kernel_size = 3 }
  check.ok(block(x):size(2) == 24, "TransformerBlock with a grid runs")
  check.fails(function() block(lab.randn{ 2, 25, 8 }) end, "whose product is N = M", "TransformerBlock: grid product != N")
end

-- refusals
local q, k, v = rnd{ 1, 1, 12, 4 }, rnd{ 1, 1, 12, 4 }, rnd{ 1, 1, 12, 4 }
local function nb(extra)
  local opts = { variant = "neighborhood", kernel_size = 3, grid = { 3, 4 } }
  for key, val in pairs(extra) do opts[key] = val end
  return function() lab.attention(q, k, v, opts) end
end
check.fails(nb{ grid = { 3, 5 } }, "{3,5} has 15 cells, q has N = 12")
check.fails(nb{ grid = 12 }, "opts.grid must be a table of 1 to 3 axis lengths")
check.fails(nb{ grid = { 1, 2, 2, 3 } }, "opts.grid must be a table of 1 to 3 axis lengths")
check.fails(nb{ grid = { 3, 0 } }, "opts.grid[2] must be an integer >= 1")
check.fails(nb{ kernel_size = { 3, 3, 3 } }, "opts.kernel_size as a table needs opts.grid with as many axes")
check.fails(function() lab.attention(q, k, v, { variant = "neighborhood", kernel_size = { 3, 3 } }) end,
  "opts.kernel_size as a table needs opts.grid with as many axes (got 2 entries, grid not given)")
check.fails(nb{ kernel_size = 5 }, "each grid axis's length >= kernel_size * dilation")
check.fails(nb{ dilation = { 1, 3 } }, "on grid axis 2 of length 4 in grid {3,4}")
check.fails(nb{ kernel_size = { 3, 2 } }, "odd unless causal")
check.fails(nb{ dilation = 0 }, "opts.dilation must be an integer >= 1")
check.fails(nb{ stride = 2 }, "takes no stride")
check.fails(nb{ variant = "strided_neighborhood" }, "needs stride >= 1")
check.fails(nb{ causal = { true } }, "opts.causal as a table (one boolean per axis) needs opts.grid with as many axes")
check.fails(nb{ causal = { true, 1 } }, "opts.causal[2] must be true or false")
check.fails(nb{ kernel = "tiled" }, "opts.kernel ('dense' or 'tiled') chooses between the range kernels")
check.fails(function() lab.attention(q, k, v, { dilation = 2 }) end,
  "dilation is an option of the variant(s) neighborhood strided_neighborhood, not of 'softmax'")
check.fails(function() lab.attention(q, k, v, { grid = { 3, 4 } }) end, "grid is an option of the variant(s)")
check.fails(function() lab.attention(q, rnd{ 1, 1, 10, 4 }, rnd{ 1, 1, 10, 4 }, { variant = "neighborhood", kernel_size = 3 }) end,
  "needs N = M")

os.exit(check.report(), true)
