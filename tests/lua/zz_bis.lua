-- test_gradcheck.lua -- every differentiable op's backward against float64 central finite differences.
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
      check.ok(rel < tol, what, string.format("rel err %.3g at element %d: analytic %.10g numeric %.10g",
        rel, at + 1, a[at], num[li][at]))
    end
  end
  return num, W
end

---------------------------------------------------------------------------------------------------
-- elementwise binary: tensor-tensor with broadcasting, and with numbers on both sides
---------------------------------------------------------------------------------------------------
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
    check.ok(err == 0, "to(float64) from float32: grad is W", "max err " .. err)
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

os.exit(check.report())
