-- test_gradcheck.lua -- every differentiable op's backward against float64 central finite differences.
-- (One file, over 500 lines, on purpose: it is the one list of every differentiable op's gradient
-- check, all on the harness at its top (the finite differences, the float32-against-float64 module
-- check), so that a new op's case stands beside the others' and a missing one shows.)
--
-- For each case, the leaves (float64, requires_grad) feed a closure f() that builds the op under
-- test; the loss is sum(f() * W) with W a fixed random tensor (so the upstream gradient is not all
-- ones).  The analytic gradient (loss:backward()) of every leaf is compared element by element with
-- (L(x + h) - L(x - h)) / 2h, h = 1e-6, the leaves being perturbed in place in their storage
-- (strided leaves included).  Pass: max|analytic - numeric| / max(1, max|numeric|) < 1e-6.
-- Inputs avoid the kinks of relu/abs/clamp/max/maximum by construction.
--
-- nn modules create float32 parameters.  They are checked twice: (1) a float64 copy of the module
-- (every parameter replaced by a float64 leaf) gets the full float64 check above, (2) the float32
-- module's analytic gradients are compared with the float64 copy's finite differences, with
-- tolerance 1e-3 (float32 rounding through a few layers is ~1e-6 relative; 1e-3 leaves room while
-- still catching any real error, which shows up at O(1)).
--
-- The test also checks autograd mechanics (backward twice, no_grad, accumulation, zero_grad, no
-- graph leak) and, in a child process, `tensor +/- number` inside JIT-compiled code (see the end).
-- It exits with os.exit(code, true) so that the Lua state is closed and every tensor released
-- (no false leak reports under `make test SANITIZE=1`).
--
-- Run: ./build/attnlab tests/lua/test_gradcheck.lua
local lab = rawget(_G, "lab") or require "attnlab"
local ffi = require "ffi"
local C = lab.C
local check = dofile("tests/lua/check.lua")("gradcheck")

local H_STEP, TOL = 1e-6, 1e-6
local F64 = "float64"
lab.seed(20240601)

---------------------------------------------------------------------------------------------------
-- helpers
---------------------------------------------------------------------------------------------------
local function randn(shape, dtype) return lab.randn(shape, dtype or F64) end
local function leaf(t) return t:requires_grad(true) end
local function L(shape) return leaf(randn(shape)) end                     -- a float64 leaf
local function pos(shape) return leaf(lab.rand(shape, F64) + 0.5) end     -- values in [0.5, 1.5)
-- values whose magnitude is at least 0.1 (away from the kinks at 0)
local function away(shape)
  local t = randn(shape)
  local a = t:abs()
  return leaf(lab.where(a:lt(0.1), t + t:gt(0) * 0.2 - t:le(0) * 0.2, t):contiguous():detach())
end
-- values spaced at least 0.05 apart in one random order (no ties for max/min)
local function distinct(shape)
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  local vals = {}
  for i = 1, n do vals[i] = (i - (n + 1) / 2) * 0.1 end
  for i = n, 2, -1 do
    local j = math.floor(lab.rand({}, F64):item() * i) + 1
    vals[i], vals[j] = vals[j], vals[i]
  end
  return leaf(lab.tensor(vals, F64):reshape(shape))
end

-- Every element of t as a double array (row-major logical order).
local function doubles(t)
  local n = t:numel()
  local buf = ffi.new("double[?]", math.max(n, 1))
  assert(C.al_copy_to_doubles(t, buf, n) >= 0)
  return buf, n
end

-- Pointers to the storage of every logical element of a strided float64 leaf, row-major.
local function element_pointers(t)
  assert(t:dtype() == F64, "gradcheck leaves must be float64")
  local base = ffi.cast("double *", C.al_data(t))
  local shape, nd = t:shape(), t:dim()
  local strides = {}
  for d = 1, nd do strides[d] = t:stride(d) end
  local out = {}
  local idx = {}
  for d = 1, nd do idx[d] = 0 end
  for _ = 1, t:numel() do
    local off = 0
    for d = 1, nd do off = off + idx[d] * strides[d] end
    out[#out + 1] = off
    for d = nd, 1, -1 do
      idx[d] = idx[d] + 1
      if idx[d] < shape[d] then break end
      idx[d] = 0
    end
  end
  return base, out
end

local function shape_str(s) return "{" .. table.concat(s, ",") .. "}" end

-- The float64 finite-difference gradient of the scalar loss() wrt each leaf: a list of double arrays.
local function numeric_grads(loss, leaves)
  local out = {}
  lab.no_grad(function()
    for li, x in ipairs(leaves) do
      local base, offs = element_pointers(x)
      local g = ffi.new("double[?]", math.max(#offs, 1))
      for k, off in ipairs(offs) do
        local orig = base[off]
        base[off] = orig + H_STEP
        local fp = loss()
        base[off] = orig - H_STEP
        local fm = loss()
        base[off] = orig
        g[k - 1] = (fp - fm) / (2 * H_STEP)
      end
      out[li] = g
    end
  end)
  return out
end

local function first(a) return a end

-- Builds loss = sum(f() * W) with a fixed random W, checks every leaf.  Returns the numeric grads
-- and the weights W (for the float32 comparisons of the module checks).
local function gradcheck(name, f, leaves, opts)
  opts = opts or {}
  local tol = opts.tol or TOL
  local ok, out = pcall(function() return first(f()) end)
  if not check.ok(ok, name .. ": forward", not ok and tostring(out) or nil) then return end
  if not check.ok(lab.is_tensor(out) and out:dtype() == F64, name .. ": output is a float64 tensor") then return end
  local W = opts.W or randn(out:shape())
  for _, x in ipairs(leaves) do x:zero_grad() end
  local okb, err = pcall(function() (out * W):sum():backward() end)
  if not check.ok(okb, name .. ": backward", not okb and tostring(err) or nil) then return end
  out = nil
  local function loss() return (first(f()) * W):sum():item() end
  local num = numeric_grads(loss, leaves)
  for li, x in ipairs(leaves) do
    local g = x.grad
    local what = string.format("%s: d/d(input %d %s)", name, li, x:shape_string())
    if g == nil then
      -- no gradient reached the leaf: fine only when the numeric one is zero too
      local mx = 0
      for k = 0, x:numel() - 1 do mx = math.max(mx, math.abs(num[li][k])) end
      check.ok(mx < tol, what .. " has no .grad", string.format("max |numeric| = %.3g", mx))
    elseif check.ok(g:shape_string() == x:shape_string(), what .. ": grad shape", g:shape_string()) then
      local a, n = doubles(g)
      local maxerr, maxnum, at = 0, 0, 0
      for k = 0, n - 1 do
        local e = math.abs(a[k] - num[li][k])
        if e > maxerr then maxerr, at = e, k end
        maxnum = math.max(maxnum, math.abs(num[li][k]))
      end
      local rel = maxerr / math.max(1, maxnum)
      check.value(rel < tol, what, string.format("rel err %.3g at element %d: analytic %.10g numeric %.10g",
        rel, at + 1, a[at], num[li][at]))
    end
  end
  return num, W
end

---------------------------------------------------------------------------------------------------
-- elementwise binary: tensor-tensor with broadcasting, and with numbers on both sides
---------------------------------------------------------------------------------------------------
do
  local pairs_of_shapes = { { { 2, 3 }, { 2, 3 } }, { { 2, 3 }, { 3 } }, { { 2, 1, 4 }, { 3, 1 } }, { { 1 }, { 2, 3 } },
                            { {}, { 2, 3 } } }
  for _, sh in ipairs(pairs_of_shapes) do
    local tag = shape_str(sh[1]) .. "," .. shape_str(sh[2])
    local a, b = L(sh[1]), L(sh[2])
    gradcheck("add " .. tag, function() return a + b end, { a, b })
    gradcheck("sub " .. tag, function() return a - b end, { a, b })
    gradcheck("mul " .. tag, function() return a * b end, { a, b })
    local bp = pos(sh[2])
    gradcheck("div " .. tag, function() return a / bp end, { a, bp })
    local d1, d2 = distinct(sh[1]), distinct(sh[2])
    gradcheck("maximum " .. tag, function() return lab.maximum(d1, d2 + 0.025) end, { d1, d2 })
    gradcheck("minimum " .. tag, function() return lab.minimum(d1, d2 + 0.025) end, { d1, d2 })
  end
  local a, p = L{ 2, 3 }, pos{ 2, 3 }
  gradcheck("add scalar right", function() return a + 2.5 end, { a })
  gradcheck("add scalar left", function() return 2.5 + a end, { a })
  gradcheck("sub scalar right", function() return a - 2.5 end, { a })
  gradcheck("sub scalar left", function() return 2.5 - a end, { a })
  gradcheck("mul scalar right", function() return a * -1.7 end, { a })
  gradcheck("mul scalar left", function() return 1.7 * a end, { a })
  gradcheck("div scalar right", function() return a / 1.7 end, { a })
  gradcheck("div scalar left", function() return 1.7 / p end, { p })
  local d = distinct{ 2, 3 }
  gradcheck("maximum scalar right", function() return lab.maximum(d, 0.025) end, { d })
  gradcheck("maximum scalar left", function() return d:maximum(0.025) end, { d })
  gradcheck("maximum number first", function() return lab.Tensor.maximum(0.025, d) end, { d })
  gradcheck("minimum scalar", function() return lab.minimum(d, 0.025) end, { d })
  gradcheck("minimum number first", function() return lab.Tensor.minimum(0.025, d) end, { d })
  -- non-contiguous operands
  local t1, t2 = L{ 3, 2 }, L{ 2, 3 }
  gradcheck("add transposed", function() return t1:t() + t2 end, { t1, t2 })
  gradcheck("mul transposed", function() return t1:t() * t2:narrow(2, 2, 1) end, { t1, t2 })
  local e = L{ 3, 1 }
  gradcheck("mul expanded", function() return e:expand{ 2, 3, 4 } * lab.ones({ 2, 3, 4 }, F64) end, { e })
  -- the same leaf on both sides
  gradcheck("mul self", function() return a * a end, { a })
  gradcheck("sub self broadcast", function() return a - a:sum(1, true) end, { a })
end

---------------------------------------------------------------------------------------------------
-- unary math
---------------------------------------------------------------------------------------------------
do
  local x, p, aw = L{ 2, 3, 4 }, pos{ 2, 3, 4 }, away{ 2, 3, 4 }
  gradcheck("neg", function() return -x end, { x })
  gradcheck("neg method", function() return x:neg() end, { x })
  gradcheck("exp", function() return x:exp() end, { x })
  gradcheck("log", function() return p:log() end, { p })
  gradcheck("sqrt", function() return p:sqrt() end, { p })
  gradcheck("tanh", function() return x:tanh() end, { x })
  gradcheck("sigmoid", function() return x:sigmoid() end, { x })
  gradcheck("relu", function() return aw:relu() end, { aw })
  gradcheck("gelu", function() return x:gelu() end, { x })
  gradcheck("gelu wide", function() return (x * 4):gelu() end, { x })
  gradcheck("abs", function() return aw:abs() end, { aw })
  gradcheck("pow 2", function() return x:pow(2) end, { x })
  gradcheck("pow 3", function() return x:pow(3) end, { x })
  gradcheck("pow 0.5", function() return p:pow(0.5) end, { p })
  gradcheck("pow -1.5", function() return p:pow(-1.5) end, { p })
  gradcheck("pow operator", function() return p ^ 2.5 end, { p })
  -- clamp: bounds placed between distinct values, so no element sits on one
  local d = distinct{ 2, 3, 4 }
  gradcheck("clamp lo hi", function() return d:clamp(-0.525, 0.475) end, { d })
  gradcheck("clamp lo", function() return d:clamp(-0.525) end, { d })
  gradcheck("clamp hi", function() return d:clamp(nil, 0.475) end, { d })
  local xt = L{ 4, 3 }
  gradcheck("exp transposed", function() return xt:t():exp() end, { xt })
  gradcheck("tanh narrow", function() return xt:narrow(1, 2, 2):tanh() end, { xt })
  gradcheck("sigmoid expand", function() return xt:narrow(2, 1, 1):expand{ 4, 5 }:sigmoid() end, { xt })
  -- a chain of several ops on one leaf
  gradcheck("chain", function() return ((x:tanh() * x):exp() + x:sigmoid()):sqrt() end, { x })
end

---------------------------------------------------------------------------------------------------
-- reductions, softmax family
---------------------------------------------------------------------------------------------------
do
  local x = L{ 2, 3, 4 }
  gradcheck("sum all", function() return x:sum() end, { x })
  gradcheck("mean all", function() return x:mean() end, { x })
  for _, dkeep in ipairs{ { 1, false }, { 2, false }, { 3, false }, { -1, false }, { 2, true }, { -1, true }, { 1, true } } do
    local dd, kd = dkeep[1], dkeep[2]
    local tag = string.format("(%d%s)", dd, kd and ", keepdim" or "")
    gradcheck("sum " .. tag, function() return x:sum(dd, kd) end, { x })
    gradcheck("mean " .. tag, function() return x:mean(dd, kd) end, { x })
  end
  local xt = L{ 4, 3 }
  gradcheck("sum transposed", function() return xt:t():sum(2) end, { xt })
  gradcheck("mean expanded", function() return xt:unsqueeze(1):expand{ 2, 4, 3 }:mean(1) end, { xt })

  local d = distinct{ 2, 3, 4 }
  for _, dd in ipairs{ 1, 2, 3, -1 } do
    gradcheck("max values dim " .. dd, function() return (d:max(dd)) end, { d })
    gradcheck("min values dim " .. dd, function() return (d:min(dd)) end, { d })
  end
  gradcheck("max values keepdim", function() return (d:max(2, true)) end, { d })
  gradcheck("min values keepdim", function() return (d:min(-1, true)) end, { d })
  gradcheck("max transposed", function() return (d:transpose(1, 3):max(1)) end, { d })
  gradcheck("max all", function() return (d:max()) end, { d })

  for _, dd in ipairs{ 1, 2, 3, -1 } do
    gradcheck("softmax dim " .. dd, function() return x:softmax(dd) end, { x })
    gradcheck("log_softmax dim " .. dd, function() return x:log_softmax(dd) end, { x })
    gradcheck("logsumexp dim " .. dd, function() return x:logsumexp(dd) end, { x })
  end
  gradcheck("logsumexp keepdim", function() return x:logsumexp(2, true) end, { x })
  for _, dd in ipairs{ 1, 2, 3, -1 } do
    gradcheck("cumsum dim " .. dd, function() return x:cumsum(dd) end, { x })
  end
  gradcheck("cumsum transposed", function() return x:transpose(2, 3):cumsum(3) end, { x })
  -- and its values, against prefix sums written out
  local v = lab.tensor({ { 1, 2, 3 }, { 4, 5, 6 } }, F64)
  check.value(v:cumsum(2):totable()[1][3] == 6 and v:cumsum(2):totable()[2][2] == 9 and v:cumsum(1):totable()[2][3] == 9,
    "cumsum: prefix sums along each dimension", lab.json.encode(v:cumsum(2):totable()))
  gradcheck("softmax transposed", function() return x:transpose(2, 3):softmax(-1) end, { x })
  gradcheck("log_softmax narrow", function() return x:narrow(3, 2, 3):log_softmax(-1) end, { x })
  gradcheck("softmax large logits", function() return (x * 30):softmax(-1) end, { x })
  gradcheck("lab.softmax", function() return lab.softmax(x, 2) end, { x })
end

---------------------------------------------------------------------------------------------------
-- matmul, linear
---------------------------------------------------------------------------------------------------
do
  local cases = {
    { "2-D", { 3, 4 }, { 4, 5 } },
    { "batched", { 2, 3, 4 }, { 2, 4, 5 } },
    { "broadcast batch", { 2, 1, 3, 4 }, { 3, 4, 2 } },
    { "broadcast batch 2", { 1, 3, 4 }, { 2, 4, 5 } },
    { "vector @ matrix", { 4 }, { 4, 5 } },
    { "matrix @ vector", { 3, 4 }, { 4 } },
    { "vector @ vector", { 4 }, { 4 } },
    { "batch @ vector", { 2, 3, 4 }, { 4 } },
    { "vector @ batch", { 3 }, { 2, 3, 4 } },
    { "3-D @ 2-D weight (folded)", { 2, 3, 4 }, { 4, 5 } },
    { "4-D @ 2-D weight (folded)", { 2, 2, 3, 4 }, { 4, 5 } },
    { "2-D @ 3-D", { 3, 4 }, { 2, 4, 5 } },
  }
  for _, c in ipairs(cases) do
    local a, b = L(c[2]), L(c[3])
    gradcheck("matmul " .. c[1], function() return a:matmul(b) end, { a, b })
  end
  local at, bt = L{ 4, 3 }, L{ 5, 4 }
  gradcheck("matmul transposed operands", function() return at:t():matmul(bt:t()) end, { at, bt })
  local a3, w = L{ 2, 4, 3 }, L{ 5, 4 }
  gradcheck("matmul transposed batch @ transposed weight", function() return a3:transpose(2, 3):matmul(w:t()) end, { a3, w })
  local ae = L{ 3, 4 }
  gradcheck("matmul expanded batch", function() return ae:expand{ 2, 3, 4 }:matmul(w:t()) end, { ae, w })
  gradcheck("matmul same leaf", function() return ae:matmul(ae:t()) end, { ae })
  gradcheck("lab.matmul", function() return lab.matmul(a3, a3:transpose(2, 3)) end, { a3 })

  local x3, x2, x1, wt, b = L{ 2, 3, 4 }, L{ 3, 4 }, L{ 4 }, L{ 5, 4 }, L{ 5 }
  gradcheck("linear 3-D with bias", function() return lab.linear(x3, wt, b) end, { x3, wt, b })
  gradcheck("linear 3-D no bias", function() return lab.linear(x3, wt) end, { x3, wt })
  gradcheck("linear 2-D with bias", function() return lab.linear(x2, wt, b) end, { x2, wt, b })
  gradcheck("linear 1-D", function() return lab.linear(x1, wt, b) end, { x1, wt, b })
  gradcheck("linear transposed input", function() return lab.linear(x3:transpose(1, 2), wt, b) end, { x3, wt, b })
  local wT = L{ 4, 5 }
  gradcheck("linear transposed weight", function() return lab.linear(x2, wT:t(), b) end, { x2, wT, b })

  -- Maps of 64 and more a side take the direct BLAS path (rows split between threads, bias added by
  -- the product, db summed beside dW): too big for finite differences, so its output and gradients
  -- are compared with the same map composed of matmul and add, whose gradients are checked above.
  for _, case in ipairs{ { 3, 67, 64, 96, true }, { 2, 40, 128, 64, false }, { 1, 130, 64, 200, true } } do
    local B, N, nin, nout, with_bias = case[1], case[2], case[3], case[4], case[5]
    for _, dt in ipairs{ F64, "float32" } do
      local xb, wb = leaf(randn({ B, N, nin }, dt)), leaf(randn({ nout, nin }, dt))
      local bb = with_bias and leaf(randn({ nout }, dt)) or nil
      local gout = randn({ B, N, nout }, dt)
      local function grads(f)
        xb:zero_grad(); wb:zero_grad(); if bb then bb:zero_grad() end
        local y = f()
        y:backward(gout)
        return y:detach(), xb.grad, wb.grad, bb and bb.grad
      end
      local y1, gx1, gw1, gb1 = grads(function() return lab.linear(xb, wb, bb) end)
      local y2, gx2, gw2, gb2 = grads(function()
        local y = xb:matmul(wb:t())
        return bb and y + bb or y
      end)
      local tol = dt == F64 and 1e-12 or 1e-4
      local function close(what, a, b2)
        local err = (a - b2):abs():max():item() / math.max(1, b2:abs():max():item())
        check.value(err < tol, string.format("linear BLAS path %s %s (%d,%d,%d)->%d: rel err %.2e", dt, what, B, N, nin, nout, err))
      end
      close("output", y1, y2); close("dx", gx1, gx2); close("dW", gw1, gw2)
      if bb then close("db", gb1, gb2) end
    end
  end
end

---------------------------------------------------------------------------------------------------
-- views, copies, joins
---------------------------------------------------------------------------------------------------
do
  local x = L{ 2, 3, 4 }
  gradcheck("reshape", function() return x:reshape{ 6, 4 } end, { x })
  gradcheck("reshape -1", function() return x:reshape{ 4, -1 } end, { x })
  gradcheck("reshape of transposed (copies)", function() return x:transpose(1, 3):reshape{ 4, 6 } end, { x })
  gradcheck("view", function() return x:view{ 24 } end, { x })
  gradcheck("transpose", function() return x:transpose(1, 3) end, { x })
  gradcheck("transpose negative dims", function() return x:transpose(-1, -2) end, { x })
  gradcheck("t", function() return x:select(1, 2):t() end, { x })
  gradcheck("permute", function() return x:permute(3, 1, 2) end, { x })
  gradcheck("permute table", function() return x:permute{ 2, 3, 1 } end, { x })
  gradcheck("narrow", function() return x:narrow(3, 2, 2) end, { x })
  gradcheck("narrow twice", function() return x:narrow(2, 2, 2):narrow(3, 1, 3) end, { x })
  gradcheck("select", function() return x:select(2, 3) end, { x })
  gradcheck("select negative dim", function() return x:select(-1, 1) end, { x })
  local u = randn{ 2, 5, 3, 4 }
  gradcheck("unsqueeze", function() return x:unsqueeze(2) * u end, { x })
  gradcheck("unsqueeze last", function() return x:unsqueeze(-1) end, { x })
  local s = L{ 2, 1, 3, 1 }
  gradcheck("squeeze dim", function() return s:squeeze(2) end, { s })
  gradcheck("squeeze all", function() return s:squeeze() end, { s })
  local e = L{ 3, 1 }
  gradcheck("expand", function() return e:expand{ 2, 3, 4 } end, { e })
  gradcheck("expand -1", function() return e:expand{ -1, 5 } end, { e })
  gradcheck("expand_as", function() return e:expand_as(x:select(1, 1)) end, { e })
  local a, b, c = L{ 2, 3 }, L{ 2, 1 }, L{ 2, 2 }
  gradcheck("cat dim 2", function() return lab.cat({ a, b, c }, 2) end, { a, b, c })
  gradcheck("cat dim 1", function() return lab.cat({ a, a:narrow(1, 1, 1) * 2 }, 1) end, { a })
  gradcheck("cat non-contiguous", function() return lab.cat({ a:t(), c:t() }, 1) end, { a, c })
  local a2 = L{ 2, 3 }
  gradcheck("stack dim 1", function() return lab.stack({ a, a2 }, 1) end, { a, a2 })
  gradcheck("stack dim 3", function() return lab.stack({ a, a2, a }, 3) end, { a, a2 })
  gradcheck("stack transposed", function() return lab.stack({ a:t(), a2:t() }, 2) end, { a, a2 })
  gradcheck("contiguous", function() return x:transpose(1, 2):contiguous() end, { x })
  gradcheck("clone", function() return x:clone() * x end, { x })
  gradcheck("clone transposed", function() return x:transpose(2, 3):clone() end, { x })
  gradcheck("to float64", function() return x:to("float64") * 2 end, { x })
  gradcheck("double()", function() return x:double() end, { x })
  -- where: both branches, broadcasting, a number on one side
  local cond = randn{ 2, 3, 4 }:gt(0)
  local y, yb = L{ 2, 3, 4 }, L{ 3, 1 }
  gradcheck("where", function() return lab.where(cond, x, y) end, { x, y })
  gradcheck("where broadcast", function() return lab.where(cond, x, yb) end, { x, yb })
  gradcheck("where number a", function() return lab.where(cond, 0.5, y) end, { y })
  gradcheck("where number b", function() return lab.where(cond, x, -1) end, { x })
  -- strided leaves: a leaf that is itself a transposed / narrowed view
  local tl = leaf(randn{ 4, 3 }:t())
  check.ok(not tl:is_contiguous(), "strided leaf is non-contiguous")
  gradcheck("strided leaf (transposed)", function() return tl:exp() * tl end, { tl })
  local nl = leaf(randn{ 3, 5 }:narrow(2, 2, 3))
  gradcheck("strided leaf (narrowed) matmul", function() return nl:matmul(tl) end, { nl, tl })
end

-- to(): float32 <-> float64 conversions pass the gradient through unchanged
do
  local x32 = lab.randn{ 2, 3 }:requires_grad(true)
  local W = randn{ 2, 3 }
  ;(x32:to("float64") * W):sum():backward()
  local g = x32.grad
  check.ok(g ~= nil and g:dtype() == "float32", "to(float64) from float32: grad is float32")
  if g then
    local err = (g:to(F64) - W:to("float32"):to(F64)):abs():max():item()
    check.value(err == 0, "to(float64) from float32: grad is W", "max err " .. err)
  end
  local x64 = L{ 2, 3 }
  local W32 = lab.randn{ 2, 3 }
  ;(x64:to("float32") * W32):sum():backward()
  g = x64.grad
  check.ok(g ~= nil and g:dtype() == F64, "to(float32) from float64: grad is float64")
  if g then check.ok((g - W32:to(F64)):abs():max():item() == 0, "to(float32) from float64: grad is W") end
end

---------------------------------------------------------------------------------------------------
-- nn building blocks and losses
---------------------------------------------------------------------------------------------------
do
  local x, w, b = L{ 2, 3, 5 }, L{ 5 }, L{ 5 }
  gradcheck("layer_norm weight bias", function() return lab.layer_norm(x, w, b) end, { x, w, b })
  gradcheck("layer_norm no affine", function() return lab.layer_norm(x) end, { x })
  gradcheck("layer_norm weight only", function() return lab.layer_norm(x, w) end, { x, w })
  gradcheck("layer_norm eps 0.1", function() return lab.layer_norm(x, w, b, 0.1) end, { x, w, b })
  gradcheck("layer_norm transposed input", function() return lab.layer_norm(x:transpose(1, 2), w, b) end, { x, w, b })
  local x1 = L{ 5 }
  gradcheck("layer_norm 1-D", function() return lab.layer_norm(x1, w, b) end, { x1, w, b })

  local emb = L{ 5, 3 }
  local ids = lab.tensor({ { 1, 3, 3, 5 }, { 2, 1, 3, 1 } }, "int64")
  gradcheck("embedding (repeated ids)", function() return lab.embedding(emb, ids) end, { emb })
  local ids1 = lab.tensor({ 4, 4, 2 }, "int64")
  gradcheck("embedding 1-D ids", function() return lab.embedding(emb, ids1) end, { emb })

  local t = L{ 3, 4 }
  local gi = lab.tensor({ { 1, 1 }, { 4, 2 }, { 3, 3 } }, "int64")
  gradcheck("gather dim 2 (repeats)", function() return lab.gather(t, 2, gi) end, { t })
  local gi1 = lab.tensor({ { 1, 3, 2, 1 }, { 3, 3, 1, 2 } }, "int64")
  gradcheck("gather dim 1", function() return t:gather(1, gi1) end, { t })
  local t3 = L{ 2, 3, 4 }
  local gi3 = lab.tensor({ { { 2 }, { 4 }, { 1 } }, { { 3 }, { 3 }, { 4 } } }, "int64")
  gradcheck("gather dim 3 of 3-D", function() return lab.gather(t3, 3, gi3) end, { t3 })

  local pred, target = L{ 3, 4 }, L{ 3, 4 }
  gradcheck("mse", function() return lab.mse(pred, target) end, { pred, target })
  local tb = L{ 4 }
  gradcheck("mse broadcast target", function() return lab.mse(pred, tb:expand{ 3, 4 }) end, { pred, tb })

  local logits = L{ 2, 3, 5 }
  local cls = lab.tensor({ { 1, 5, 2 }, { 3, 3, 4 } }, "int64")
  gradcheck("cross_entropy", function() return lab.cross_entropy(logits, cls) end, { logits })
  gradcheck("cross_entropy ignore", function() return lab.cross_entropy(logits, cls, { ignore = 3 }) end, { logits })
  local l2 = L{ 4, 3 }
  gradcheck("cross_entropy 2-D", function() return lab.cross_entropy(l2, lab.tensor({ 1, 2, 3, 2 }, "int64")) end, { l2 })
  gradcheck("cross_entropy transposed logits", function()
    return lab.cross_entropy(logits:transpose(1, 2), cls:transpose(1, 2))
  end, { logits })
end

-- dropout: the same seed before every evaluation gives the same mask, so it is differentiable here
do
  local x = L{ 4, 5 }
  gradcheck("dropout p=0.3", function() lab.seed(99); return lab.dropout(x, 0.3) end, { x })
  gradcheck("dropout eval", function() return lab.dropout(x, 0.3, false) end, { x })
end

---------------------------------------------------------------------------------------------------
-- attention
---------------------------------------------------------------------------------------------------
-- The dense kernel has two code paths: fewer than 8 query rows per (batch, kv head) (N * H/Hkv < 8)
-- walk k and v as they are; from 8 on, k and v are first transposed.  Cases cover both.
local function att_case(c)
  local B, H, Hkv, N, M, d, dv = c.B or 2, c.H or 2, c.Hkv or c.H or 2, c.N, c.M or c.N, c.d or 4, c.dv or c.d or 4
  local q, k, v
  if c.noncontig then
    -- made as MultiHeadAttention makes them: (B, N, H, d) permuted
    q, k, v = L{ B, N, H, d }, L{ B, M, Hkv, d }, L{ B, M, Hkv, dv }
  else
    q, k, v = L{ B, H, N, d }, L{ B, Hkv, M, d }, L{ B, Hkv, M, dv }
  end
  local leaves = { q, k, v }
  local opts = { variant = c.variant, causal = c.causal, scale = c.scale, norm = c.norm }
  local bias
  if c.bias then
    bias = L(c.bias)
    if c.bias_const then bias:requires_grad(false) else leaves[#leaves + 1] = bias end
    opts.bias = bias
  end
  if c.mask then opts.mask = c.mask end
  local function f()
    local qq, kk, vv = q, k, v
    if c.noncontig then qq, kk, vv = q:permute(1, 3, 2, 4), k:permute(1, 3, 2, 4), v:permute(1, 3, 2, 4) end
    return lab.attention(qq, kk, vv, opts)
  end
  return f, leaves, { q = q, k = k, v = v, bias = bias, opts = opts }
end

-- a mask (N, M) with row 2 fully masked and a few holes elsewhere (every other row keeps a key)
local function make_mask(N, M, dtype)
  local rows = {}
  for i = 1, N do
    rows[i] = {}
    for j = 1, M do rows[i][j] = (i == 2) and 0 or (((i + 2 * j) % 3 == 0) and 0 or 1) end
    if i ~= 2 then rows[i][((i - 1) % M) + 1] = 1 end
  end
  return lab.tensor(rows, dtype or "float32")
end

local attention_cases = {}
local function add(name, c) attention_cases[#attention_cases + 1] = { name, c } end
for _, variant in ipairs{ "softmax", "lsa" } do
  local function A(name, c) c.variant = variant; add(variant .. " " .. name, c) end
  A("self N=3 (rows path)", { N = 3 })
  A("self N=8 (transposed path)", { N = 8 })
  A("N=1", { N = 1, M = 5 })
  A("N=1 M=1", { N = 1, M = 1, B = 1, H = 1 })
  A("cross N=3 M=5", { N = 3, M = 5 })
  A("cross N=9 M=5", { N = 9, M = 5 })
  A("cross N=10 M=4 dv=3", { N = 10, M = 4, dv = 3 })
  A("cross N=2 M=6 dv=5", { N = 2, M = 6, dv = 5 })
  for _, causal in ipairs{ true, "top_left", "bottom_right" } do
    local cn = tostring(causal)
    A("causal " .. cn .. " self N=4", { N = 4, causal = causal })
    A("causal " .. cn .. " self N=8", { N = 8, causal = causal })
    A("causal " .. cn .. " N=3 M=5", { N = 3, M = 5, causal = causal })
    A("causal " .. cn .. " N=5 M=3", { N = 5, M = 3, causal = causal })   -- bottom_right: masked rows
    A("causal " .. cn .. " N=8 M=11", { N = 8, M = 11, causal = causal })
    A("causal " .. cn .. " N=11 M=8", { N = 11, M = 8, causal = causal })
  end
  A("bias {1,H,N,M} N=3", { N = 3, M = 4, bias = { 1, 2, 3, 4 } })
  A("bias {1,H,N,M} N=8", { N = 8, M = 6, bias = { 1, 2, 8, 6 } })
  A("bias {N,M} N=3", { N = 3, M = 5, bias = { 3, 5 } })
  A("bias {N,M} N=9", { N = 9, M = 5, bias = { 9, 5 } })
  A("bias {B,H,N,M}", { N = 4, M = 4, bias = { 2, 2, 4, 4 } })
  A("bias {M} broadcast", { N = 8, M = 4, bias = { 4 } })
  A("bias {B,1,1,M}", { N = 3, M = 4, bias = { 2, 1, 1, 4 } })
  A("bias constant", { N = 3, M = 4, bias = { 3, 4 }, bias_const = true })
  A("mask (fully masked row) N=3", { N = 3, M = 5, mask = make_mask(3, 5) })
  A("mask (fully masked row) N=9", { N = 9, M = 5, mask = make_mask(9, 5) })
  A("mask float64 {1,1,N,M}", { N = 4, M = 4, mask = make_mask(4, 4, F64):reshape{ 1, 1, 4, 4 } })
  A("mask + bias + causal N=9", { N = 9, M = 9, mask = make_mask(9, 9), bias = { 1, 2, 9, 9 }, causal = true })
  A("mask + bias + causal N=3", { N = 3, M = 3, mask = make_mask(3, 3), bias = { 3, 3 }, causal = true })
  A("grouped kv H=4 Hkv=2 N=1", { N = 1, M = 5, H = 4, Hkv = 2 })
  A("grouped kv H=4 Hkv=2 N=3 (6 rows)", { N = 3, M = 5, H = 4, Hkv = 2 })
  A("grouped kv H=4 Hkv=2 N=4 (8 rows)", { N = 4, M = 5, H = 4, Hkv = 2 })
  A("grouped kv H=4 Hkv=1 N=2 (8 rows)", { N = 2, M = 3, H = 4, Hkv = 1 })
  A("grouped kv H=6 Hkv=2 causal bias", { N = 5, M = 5, H = 6, Hkv = 2, causal = true, bias = { 1, 6, 5, 5 } })
  A("grouped kv mask N=9", { N = 9, M = 5, H = 4, Hkv = 2, mask = make_mask(9, 5) })
  A("non-contiguous q k v N=3", { N = 3, M = 4, noncontig = true })
  A("non-contiguous q k v N=8 causal", { N = 8, M = 8, noncontig = true, causal = true })
  A("non-contiguous grouped N=5", { N = 5, M = 6, H = 4, Hkv = 2, noncontig = true })
  A("scale 0.7", { N = 4, M = 6, scale = 0.7 })
  A("scale 0.7 N=8", { N = 8, M = 6, scale = 0.7 })
  A("d=1", { N = 3, M = 4, d = 1, dv = 2 })
  -- head sizes: the kernels have unrolled copies for 2-8, 16, 21, 32, 64 and a generic one
  A("d=6 N=3", { N = 3, M = 5, d = 6 })
  A("d=6 N=9", { N = 9, M = 7, d = 6, causal = true })
  A("d=9 dv=7 N=3", { N = 3, M = 4, d = 9, dv = 7 })
  A("d=9 dv=11 N=8", { N = 8, M = 3, d = 9, dv = 11, B = 1 })
  A("d=16 N=8", { N = 8, M = 5, d = 16, B = 1, H = 1 })
  A("d=21 dv=8 N=2", { N = 2, M = 3, d = 21, dv = 8, B = 1 })
  A("d=32 dv=64 N=1", { N = 1, M = 3, d = 32, dv = 64, B = 1, H = 1 })
  A("d=64 dv=32 N=8", { N = 8, M = 4, d = 64, dv = 32, B = 1, H = 1 })
end
add("lsa norm 3", { variant = "lsa", N = 4, M = 6, norm = 3 })
add("lsa norm 3 N=8 causal", { variant = "lsa", N = 8, M = 6, norm = 3, causal = "bottom_right" })
add("default variant", { N = 3 })

for _, ac in ipairs(attention_cases) do
  local f, leaves = att_case(ac[2])
  gradcheck("attention " .. ac[1], f, leaves)
end

-- attention details beyond gradients: the fully masked row is zero, the weights output is a map
do
  local f, _, t = att_case{ N = 3, M = 5, mask = make_mask(3, 5) }
  local out = f()
  local row = out:select(3, 2)
  check.ok(row:abs():max():item() == 0, "attention: a fully masked row gives zeros")
  t.opts.weights = true
  local _, wts = lab.attention(t.q, t.k, t.v, t.opts)
  check.ok(wts and wts:shape_string() == "{2,2,3,5}", "attention: weights have shape (B,H,N,M)")
  if wts then
    local sums = wts:sum(-1)
    check.near(sums:select(3, 1):min():item(), 1, 1e-12, "attention: weights rows sum to 1")
    check.near(sums:select(3, 2):abs():max():item(), 0, 0, "attention: masked row weights are 0")
  end
end

-- float32 sanity: the float32 kernel agrees with the float64 one (forward and every gradient)
do
  local f32cases = {
    { "N=3", { N = 3 } }, { "N=8", { N = 8 } }, { "N=1", { N = 1, M = 6 } },
    { "cross causal bias mask N=9", { N = 9, M = 7, causal = "bottom_right", bias = { 1, 2, 9, 7 }, mask = make_mask(9, 7) } },
    { "grouped N=3", { N = 3, M = 4, H = 4, Hkv = 2, bias = { 3, 4 } } },
    { "grouped N=8", { N = 8, M = 8, H = 4, Hkv = 2, causal = true } },
    { "lsa N=3", { N = 3, variant = "lsa", bias = { 3, 3 } } },
    { "lsa N=9 mask", { N = 9, M = 5, variant = "lsa", mask = make_mask(9, 5) } },
    { "non-contiguous", { N = 5, noncontig = true } },
    { "d=6 N=9", { N = 9, M = 7, d = 6, causal = true } },
    { "d=6 N=3", { N = 3, M = 7, d = 6 } },
    { "d=16 dv=9 N=8", { N = 8, M = 6, d = 16, dv = 9 } },
    { "d=32 N=2", { N = 2, M = 6, d = 32 } },
  }
  for _, fc in ipairs(f32cases) do
    local f, leaves, t = att_case(fc[2])
    local out64 = f()
    local W = randn(out64:shape())
    ;(out64 * W):sum():backward()
    local l32 = {}
    for i, x in ipairs(leaves) do l32[i] = x:detach():to("float32"):requires_grad(true) end
    local o = t.opts
    local opts32 = { variant = o.variant, causal = o.causal, scale = o.scale, norm = o.norm, mask = o.mask,
                     bias = t.bias and (leaves[4] and l32[4] or t.bias:to("float32")) }
    local q, k, v = l32[1], l32[2], l32[3]
    if fc[2].noncontig then q, k, v = q:permute(1, 3, 2, 4), k:permute(1, 3, 2, 4), v:permute(1, 3, 2, 4) end
    local out32 = lab.attention(q, k, v, opts32)
    check.ok(out32:dtype() == "float32", "attention float32 " .. fc[1] .. ": dtype")
    ;(out32 * W:to("float32")):sum():backward()
    local function rel(a, b)
      local diff = (a:to(F64) - b):abs():max():item()
      return diff / math.max(1, b:abs():max():item())
    end
    local e = rel(out32, out64)
    check.ok(e < 1e-5, "attention float32 " .. fc[1] .. ": forward", string.format("rel err %.3g", e))
    for i = 1, #leaves do
      local g32, g64 = l32[i].grad, leaves[i].grad
      if check.ok(g32 ~= nil and g64 ~= nil, "attention float32 " .. fc[1] .. ": grad " .. i .. " present") then
        e = rel(g32, g64)
        check.ok(e < 1e-5, "attention float32 " .. fc[1] .. ": grad " .. i, string.format("rel err %.3g", e))
      end
    end
  end
end

---------------------------------------------------------------------------------------------------
-- nn modules end to end
---------------------------------------------------------------------------------------------------
-- A float64 copy of a module: every parameter replaced by a float64 leaf with the same values.
local function to_float64(m)
  for _, name in ipairs(m.param_order) do
    local old = m.params[name]
    local new = old:detach():to(F64):requires_grad(true)
    m.params[name] = new
    if rawget(m, name) == old then m[name] = new end
  end
  for _, name in ipairs(m.child_order) do to_float64(m.children[name]) end
  return m
end

-- Builds the module twice (same seed: same float32 initial values), turns the second into float64.
local function module_check(name, make, input_shape, opts)
  opts = opts or {}
  lab.seed(7)
  local m32 = make()
  lab.seed(7)
  local m64 = to_float64(make())
  -- perturb LayerNorm's ones/zeros so that its weight and bias matter generically
  lab.no_grad(function()
    local p32, p64 = m32:parameters(), m64:parameters()
    for i = 1, #p32 do
      local noise = lab.randn(p32[i]:shape()) * 0.1
      p32[i]:add_(noise)
      p64[i]:copy_(p32[i])
    end
  end)
  local x32 = lab.randn(input_shape)
  if opts.input then x32 = opts.input() end
  local x64 = x32:dtype() == "int64" and x32 or x32:to(F64):requires_grad(true)
  local ctx32, ctx64
  if opts.context then ctx32 = lab.randn(opts.context); ctx64 = ctx32:to(F64):requires_grad(true) end
  local leaves64 = {}
  if x64:requires_grad() then leaves64[1] = x64 end
  if ctx64 then leaves64[#leaves64 + 1] = ctx64 end
  for _, p in ipairs(m64:parameters()) do leaves64[#leaves64 + 1] = p end
  -- (1) float64 copy, full check
  local num, W = gradcheck("module " .. name .. " (float64)", function() return m64(x64, ctx64) end, leaves64)
  if not num then return end
  -- (2) float32 module vs float64 finite differences
  if x32:dtype() == "float32" then x32:requires_grad(true) end
  if ctx32 then ctx32:requires_grad(true) end
  local leaves32 = {}
  if x32:requires_grad() then leaves32[1] = x32 end
  if ctx32 then leaves32[#leaves32 + 1] = ctx32 end
  for _, p in ipairs(m32:parameters()) do leaves32[#leaves32 + 1] = p end
  local out32 = m32(x32, ctx32)
  check.ok(out32:dtype() == "float32", "module " .. name .. ": float32 output")
  ;(out32 * W:to("float32")):sum():backward()
  local names = {}
  for i, pair in ipairs(m32:named_parameters()) do names[i] = pair[1] end
  local offset = #leaves32 - #names
  for i, x in ipairs(leaves32) do
    local what = string.format("module %s (float32): grad of %s", name, i > offset and names[i - offset] or ("input " .. i))
    local g = x.grad
    if check.ok(g ~= nil, what .. " present") then
      local a, n = doubles(g)
      local maxerr, maxnum = 0, 0
      for k = 0, n - 1 do
        maxerr = math.max(maxerr, math.abs(a[k] - num[i][k]))
        maxnum = math.max(maxnum, math.abs(num[i][k]))
      end
      local rel = maxerr / math.max(1, maxnum)
      check.value(rel < 1e-3, what, string.format("rel err %.3g", rel))
    end
  end
end

do
  local nn = lab.nn
  module_check("Linear", function() return nn.Linear(4, 3) end, { 2, 5, 4 })
  module_check("Linear no bias", function() return nn.Linear(4, 3, { bias = false }) end, { 5, 4 })
  module_check("LayerNorm", function() return nn.LayerNorm(6) end, { 2, 3, 6 })
  module_check("MLP gelu", function() return nn.MLP{ dims = { 4, 8, 3 } } end, { 2, 3, 4 })
  module_check("MLP relu 3 layers", function() return nn.MLP{ dims = { 4, 6, 5, 2 }, activation = "tanh" } end, { 3, 4 })
  module_check("Sequential", function() return nn.Sequential(nn.Linear(4, 5), nn.GELU(), nn.LayerNorm(5), nn.Linear(5, 2)) end, { 3, 4 })
  module_check("Embedding", function() return nn.Embedding(6, 3) end, nil,
    { input = function() return lab.tensor({ { 1, 2, 6 }, { 6, 6, 3 } }, "int64") end })
  module_check("MultiHeadAttention", function() return nn.MultiHeadAttention{ dim = 8, heads = 2 } end, { 2, 3, 8 })
  module_check("MultiHeadAttention causal N=8", function() return nn.MultiHeadAttention{ dim = 4, heads = 2, causal = true } end, { 1, 8, 4 })
  module_check("MultiHeadAttention kv_heads lsa", function()
    return nn.MultiHeadAttention{ dim = 8, heads = 4, kv_heads = 2, variant = "lsa" }
  end, { 2, 3, 8 })
  module_check("MultiHeadAttention cross", function()
    return nn.MultiHeadAttention{ dim = 4, heads = 2, context_dim = 6 }
  end, { 2, 3, 4 }, { context = { 2, 5, 6 } })
  -- the linear-family and module-level variants (each owns its extra parameters)
  for _, c in ipairs{
    { "flow causal", { variant = "flow", causal = true } },
    { "local_linear", { variant = "local_linear", ridge = 0.5 } },
    { "delta gated causal", { variant = "delta", gated = true, causal = true } },
    { "delta cross", { variant = "delta", context_dim = 6 }, { context = { 2, 5, 6 } } },
    { "tensor", { variant = "tensor" } },
    { "agent", { variant = "agent", agent_count = 2 } },
    { "random_feature", { variant = "random_feature" } },
    { "moh shared 2 active 1", { variant = "moh", heads = 4, shared_heads = 2, active_heads = 1 } },
    { "moh shared 1", { variant = "moh", heads = 4, shared_heads = 1, active_heads = 2 } },
    { "moh routed only", { variant = "moh", heads = 4, active_heads = 3 } },
    { "lowrank causal", { variant = "lowrank", rank = 3, causal = true } },
    { "lowrank global query", { variant = "lowrank", rank = 2, global_query = true } },
  } do
    local o = c[2]
    o.dim, o.heads = 8, o.heads or 2
    module_check("MultiHeadAttention " .. c[1], function() return nn.MultiHeadAttention(o) end, { 2, 4, 8 }, c[3])
  end
  module_check("TransformerBlock", function()
    return nn.TransformerBlock{ dim = 8, heads = 2, mlp_ratio = 2, causal = true }
  end, { 2, 4, 8 })
end

---------------------------------------------------------------------------------------------------
-- autograd mechanics
---------------------------------------------------------------------------------------------------
do
  -- backward twice through the same graph is a clear error
  local x = L{ 2, 3 }
  local loss = (x:exp() * 2):sum()
  loss:backward()
  check.fails(function() loss:backward() end, "already freed", "backward twice: clear error")
  -- and an intermediate of that graph cannot start one either
  local y = x:tanh()
  local l2 = (y * y):sum()
  l2:backward()
  check.fails(function() (y * 3):sum():backward() end, "already freed", "backward through a freed intermediate")

  -- no_grad stops recording
  local nodes0 = lab.memory().nodes
  local z = lab.no_grad(function() return (x * x):exp():sum() end)
  check.ok(not z:requires_grad(), "no_grad: result does not require grad")
  check.ok(lab.memory().nodes == nodes0, "no_grad: no node recorded")
  check.fails(function() z:backward() end, "does not require grad", "no_grad: backward on its result fails")
  check.ok(lab.grad_enabled(), "no_grad: grad mode restored")
  pcall(lab.no_grad, function() error("boom") end)
  check.ok(lab.grad_enabled(), "no_grad: grad mode restored after an error")
  local w = (x * x):sum()
  check.ok(w:requires_grad(), "grad mode on again: results record")

  -- .grad accumulates across two backward calls; zero_grad clears it
  local a = L{ 2, 3 }
  a:zero_grad()
  check.ok(a.grad == nil, "zero_grad: no grad before backward")
  local Wt = randn{ 2, 3 }
  ;(a * Wt):sum():backward()
  local g1 = a.grad:clone()
  ;(a * Wt):sum():backward()
  local g2 = a.grad
  check.near((g2 - g1 * 2):abs():max():item(), 0, 1e-15, "grad accumulates across backward calls")
  check.near((g1 - Wt):abs():max():item(), 0, 1e-15, "first grad is W")
  ;(a:exp()):sum():backward()
  check.near((a.grad - (Wt * 2 + a:detach():exp())):abs():max():item(), 0, 1e-14, "accumulation of a different graph")
  a:zero_grad()
  check.ok(a.grad == nil, "zero_grad clears .grad")
  ;(a * Wt):sum():backward()
  check.near((a.grad - Wt):abs():max():item(), 0, 1e-15, "grad after zero_grad starts afresh")

  -- backward with an explicit gradient
  local b = L{ 2, 3 }
  local G = randn{ 2, 3 }
  b:tanh():backward(G)
  check.near((b.grad - G * (1 - b:detach():tanh():pow(2))):abs():max():item(), 0, 1e-14, "backward(grad)")

  -- no graph leak: after a backward and once the tensors are gone, the node count is back
  collectgarbage(); collectgarbage()
  local start = lab.memory().nodes
  do
    local p = L{ 3, 4 }
    local q = L{ 4, 2 }
    local out = lab.attention(p:reshape{ 1, 1, 3, 4 }, q:t():reshape{ 1, 1, 2, 4 }, q:t():reshape{ 1, 1, 2, 4 }, { causal = true })
    local l = (lab.layer_norm(p:matmul(q), nil, nil) + out:sum()):softmax(-1):sum()
    check.ok(lab.memory().nodes > start, "graph: nodes are recorded")
    l:backward()
    check.ok(p.grad ~= nil and q.grad ~= nil, "graph: grads reached the leaves")
  end
  collectgarbage(); collectgarbage()
  check.ok(lab.memory().nodes == start, "graph: node count back to its start after backward",
    string.format("%d nodes, started at %d", lab.memory().nodes, start))
  -- a graph dropped without backward is freed too
  do local _ = (L{ 2, 2 }:exp() * 3):sum() end
  collectgarbage(); collectgarbage()
  check.ok(lab.memory().nodes == start, "graph: an unused graph is freed with its tensors",
    string.format("%d nodes, started at %d", lab.memory().nodes, start))
end

---------------------------------------------------------------------------------------------------
-- tensor +/- number inside JIT-compiled code
---------------------------------------------------------------------------------------------------
-- A tensor is an `al_tensor *` whose struct is opaque.  For `ptr + number`, `number + ptr` and
-- `ptr - number`, LuaJIT's interpreter sees that the element size is unknown and calls the
-- metatype's __add/__sub (lj_carith.c, carith_ptr), but its trace recorder (lj_crecord.c,
-- crec_arith_ptr) has no such check and compiles pointer arithmetic instead: once such an
-- expression sits in a hot function, the result is a bogus pointer (a crash, or memory corruption
-- that shows up later as a hang or a crash inside LuaJIT).  Run in a child process so that a crash
-- is reported as a failed check rather than ending this test.
do
  local exe = os.getenv("ATTNLAB") or "./build/attnlab"
  local path = os.tmpname()
  local script = path .. ".lua"
  local f = io.open(script, "w")
  f:write [[
local t = lab.tensor({ 1, 2, 3 }, "float64")
local function plus(x) return x + 0.5 end
local function rminus(x) return 1 - x end
local function minus(x) return x - 2 end
for i = 1, 300 do
  assert(plus(t):get(1) == 1.5, "t + 0.5 wrong at iteration " .. i)
  assert(rminus(t):get(2) == -1, "1 - t wrong at iteration " .. i)
  assert(minus(t):get(3) == 1, "t - 2 wrong at iteration " .. i)
end
]]
  f:close()
  local status = os.execute(exe .. " " .. script .. " >/dev/null 2>&1")
  os.remove(script); os.remove(path)
  check.ok(status == 0 or status == true, "tensor + number, number - tensor, tensor - number inside JIT-compiled functions",
    "child exit status " .. tostring(status) .. "; LuaJIT crec_arith_ptr compiles pointer arithmetic for al_tensor *")
end

os.exit(check.report(), true)
