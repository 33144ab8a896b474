-- neighborhood_reference.lua -- NATTEN's neighborhood rules written out for the neighborhood tests
-- (attention-variants.md section 5), independently of the C code: get_window_start of NATTEN's CPU
-- kernels (its closed form for dilation), the mask predicate of its flex backend
-- (single_dim_tiling_mask: dilation groups with its shape correction, causal axes, GNA strides),
-- and the (N, N) keep-mask of a neighborhood on a grid as the product of the axes' rules.  Not a
-- test itself (run_all.sh runs test_*.lua only).
--   local nref = dofile("tests/lua/neighborhood_reference.lua")
local lab = lab or require "attnlab"
local nref = {}
local floor = math.floor

-- NATTEN get_window_start (odd k; the closed form it uses for dilation > 1)
function nref.natten_window_start(i, L, k, dil)
  local r = floor(k / 2)
  if dil <= 1 then return math.max(i - r, 0) + ((i + r >= L) and (L - i - r - 1) or 0) end
  if i - r * dil < 0 then return i % dil end
  if i + r * dil >= L then
    local imodd, a = i % dil, floor(L / dil) * dil
    local b = L - a
    if imodd < b then return L - b + imodd - 2 * r * dil end
    return a + imodd - k * dil
  end
  return i - r * dil
end
function nref.cpu_allowed(x, y, L, k, dil)
  local start = nref.natten_window_start(x, L, k, dil)
  return y % dil == x % dil and y >= start and y <= start + (k - 1) * dil
end

-- NATTEN flex single_dim_tiling_mask on one axis
function nref.flex_allowed(x, y, L, k, s, dil, causal)
  if x % dil ~= y % dil then return false end
  local group = x % dil
  local group_length = floor(L / dil) + 1 - floor((group + (dil - L % dil)) / dil)
  local xi, yi = floor(x / dil), floor(y / dil)
  if causal then
    local leader = math.min(floor(xi / s) * s + s - 1, group_length - 1)
    return xi - yi >= 0 and leader - yi < k
  end
  local leader = math.min(floor(xi / s) * s + floor(s / 2), group_length - 1)
  local left, right = floor(k / 2), floor(k / 2) + k % 2 - 1
  local c = math.max(left, math.min(leader, group_length - 1 - right))
  return yi >= c - left and yi <= c + right
end

function nref.axis_allowed(x, y, L, k, s, dil, causal)
  if s == 1 and not causal and k % 2 == 1 then return nref.cpu_allowed(x, y, L, k, dil) end
  return nref.flex_allowed(x, y, L, k, s, dil, causal)
end

function nref.per_axis(x, n)
  if type(x) == "table" then return x end
  local t = {}
  for a = 1, n do t[a] = x end
  return t
end

-- the token count of a grid {H, W, ...}
function nref.cells(grid)
  local N = 1
  for _, g in ipairs(grid) do N = N * g end
  return N
end

-- the (N, N) keep-mask of a neighborhood on grid: the product of the axes' rules, row-major tokens
function nref.grid_mask(grid, ks, stride, dil, causal)
  local n = #grid
  ks, stride, dil = nref.per_axis(ks, n), nref.per_axis(stride or 1, n), nref.per_axis(dil or 1, n)
  causal = nref.per_axis(causal or false, n)
  local N = nref.cells(grid)
  local function coords(t)
    local c = {}
    for a = n, 1, -1 do c[a] = t % grid[a]; t = floor(t / grid[a]) end
    return c
  end
  local m = {}
  for i = 0, N - 1 do
    local ci, row = coords(i), {}
    for j = 0, N - 1 do
      local cj, ok = coords(j), true
      for a = 1, n do ok = ok and nref.axis_allowed(ci[a], cj[a], grid[a], ks[a], stride[a], dil[a], causal[a]) end
      row[j + 1] = ok and 1 or 0
    end
    m[i + 1] = row
  end
  return lab.tensor(m, "float64")
end

-- The variant given by opts against softmax attention with the same keys as an explicit mask:
-- output and map equal to 1e-12 (float64) and, with grads, its gradients against central
-- differences.  Returns the variant's map.
function nref.check_as_mask(check, label, opts, q, k, v, mask, grads)
  local function max_abs_diff(a, b) return (a - b):abs():max():item() end
  local with_map = { weights = true }
  for key, val in pairs(opts) do with_map[key] = val end
  local out, w = lab.attention(q, k, v, with_map)
  local ref, ref_w = lab.attention(q, k, v, { mask = mask, weights = true })
  check.ok(max_abs_diff(out, ref) < 1e-12, label .. ": equals softmax with the same keys as a mask",
    tostring(max_abs_diff(out, ref)))
  check.ok(max_abs_diff(w, ref_w) < 1e-12, label .. ": the same map")
  if grads then
    local R = lab.randn(out:shape(), "float64")
    for _, x in ipairs{ q, k, v } do x:requires_grad(true) end
    check.gradients(function() return (lab.attention(q, k, v, opts) * R):sum() end, { q = q, k = k, v = v }, label)
  end
  return w
end

return nref
