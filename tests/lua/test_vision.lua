-- test_vision.lua -- the image ops (conv2d, max/avg pooling, eccentricity-dependent pooling,
-- interpolate, grid_sample, pad) and their nn modules: every backward against float64 central
-- differences (check.gradients), the errors for bad shapes and options (naming the function, the
-- argument and the shapes), identities between the ops, the window sizes of the eccentricity pooling
-- worked by hand, a convolution large enough to be cut into several column slices against a
-- reference composed of pad / narrow / matmul, and the same results on one and on two threads.
-- (PyTorch's values: test_vision_fixtures.lua.)
--
-- Run: ./build/attnlab tests/lua/test_vision.lua
local lab = rawget(_G, "lab") or require "attnlab"
local check = dofile("tests/lua/check.lua")("vision")
local nn = lab.nn
local F64 = "float64"
lab.seed(11)

local function leaf(t) return t:requires_grad(true) end
local function L(shape) return leaf(lab.randn(shape, F64)) end
-- distinct values 0.05 apart in a random order: no ties for the max ops, none within a finite step
local function distinct(shape)
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  local keys = lab.rand({ n }, F64):totable()
  local order = {}
  for i = 1, n do order[i] = i end
  table.sort(order, function(a, b) return keys[a] < keys[b] end)
  local vals = {}
  for rank, i in ipairs(order) do vals[i] = (rank - (n + 1) / 2) * 0.05 end
  return leaf(lab.tensor(vals, F64):reshape(shape))
end

-- loss = sum(f() * W), W fixed and random (the upstream gradient is not all ones)
local function gradcheck(label, f, inputs)
  local W = lab.randn(f():shape(), F64)
  check.gradients(function() return (f() * W):sum() end, inputs, label)
end

local function max_abs(t) return t:abs():max():item() end

---------------------------------------------------------------------------------------------------
-- gradient checks
---------------------------------------------------------------------------------------------------
do
  local conv_cases = {
    { "plain", { 2, 3, 6, 5 }, { 4, 3, 3, 3 }, {} },
    { "stride and padding", { 2, 2, 7, 8 }, { 3, 2, 3, 2 }, { stride = { 2, 3 }, padding = { 1, 2 } } },
    { "dilation", { 1, 2, 9, 8 }, { 2, 2, 3, 3 }, { dilation = { 2, 3 }, padding = 1 } },
    { "groups", { 2, 4, 6, 5 }, { 6, 2, 3, 3 }, { groups = 2, padding = 1, stride = 2 } },
    { "depthwise", { 1, 3, 6, 6 }, { 6, 1, 3, 3 }, { groups = 3, padding = "same" } },
    { "same, even kernel", { 1, 2, 5, 6 }, { 2, 2, 2, 4 }, { padding = "same", dilation = { 1, 3 } } },
    { "1x1, stride 2", { 2, 3, 5, 4 }, { 2, 3, 1, 1 }, { stride = 2 } },
    { "stride over kernel", { 1, 2, 8, 7 }, { 2, 2, 2, 2 }, { stride = 3, padding = 1 } },
  }
  for _, c in ipairs(conv_cases) do
    local x, w, b = L(c[2]), L(c[3]), L{ c[3][1] }
    gradcheck("conv2d " .. c[1], function() return lab.conv2d(x, w, b, c[4]) end, { x = x, w = w, b = b })
  end
  local x, w = L{ 1, 2, 5, 5 }, L{ 3, 2, 3, 3 }
  gradcheck("conv2d without bias", function() return lab.conv2d(x, w, { padding = 1 }) end, { x = x, w = w })
  -- a non-contiguous input (a transposed view)
  local xt = L{ 1, 2, 6, 5 }
  gradcheck("conv2d of a transposed view", function() return lab.conv2d(xt:transpose(3, 4), w) end, { x = xt, w = w })

  local pool_cases = {
    { "plain", 2, {} },
    { "stride and padding", 3, { stride = 2, padding = 1 } },
    { "rectangular", { 2, 3 }, { stride = { 1, 2 } } },
    { "ceil_mode", 3, { stride = 2, padding = 1, ceil_mode = true } },
  }
  for _, c in ipairs(pool_cases) do
    local d = distinct{ 2, 2, 7, 8 }
    gradcheck("max_pool2d " .. c[1], function() return lab.max_pool2d(d, c[2], c[3]) end, { x = d })
    local a = L{ 2, 2, 7, 8 }
    gradcheck("avg_pool2d " .. c[1], function() return lab.avg_pool2d(a, c[2], c[3]) end, { x = a })
    local o = {}
    for k, v in pairs(c[3]) do o[k] = v end
    o.count_include_pad = false
    gradcheck("avg_pool2d " .. c[1] .. ", count_include_pad = false", function() return lab.avg_pool2d(a, c[2], o) end, { x = a })
  end
  local d = distinct{ 1, 2, 9, 8 }
  gradcheck("max_pool2d dilation", function() return lab.max_pool2d(d, 3, { stride = 1, padding = 1, dilation = { 2, 3 } }) end, { x = d })

  local ecc = { slope = 0.5, deg2px = 2, fovea = 2 }
  local function with(extra)
    local o = {}
    for k, v in pairs(ecc) do o[k] = v end
    for k, v in pairs(extra) do o[k] = v end
    return o
  end
  local e = L{ 2, 2, 14, 13 }
  gradcheck("ecc_pool2d avg", function() return lab.ecc_pool2d(e, with{ fixation = { 4.2, 9.5 } }) end, { x = e })
  gradcheck("ecc_pool2d avg, a fixation per image",
    function() return lab.ecc_pool2d(e, with{ fixation = { { 1.5, 2.5 }, { 12.2, 13.4 } } }) end, { x = e })
  gradcheck("ecc_pool2d avg, stride 3", function() return lab.ecc_pool2d(e, with{ fixation = { 6, 7 }, stride = 3 }) end, { x = e })
  local ed = distinct{ 2, 2, 14, 13 }
  gradcheck("ecc_pool2d max", function() return lab.ecc_pool2d(ed, with{ fixation = { 4.2, 9.5 }, mode = "max" }) end, { x = ed })
  gradcheck("ecc_pool2d max, stride 1",
    function() return lab.ecc_pool2d(ed, with{ fixation = { 0, 0 }, mode = "max", stride = 1, rf_min = 1 }) end, { x = ed })

  local r = L{ 2, 2, 5, 6 }
  gradcheck("interpolate bilinear up", function() return lab.interpolate(r, { size = { 9, 8 } }) end, { x = r })
  gradcheck("interpolate bilinear down", function() return lab.interpolate(r, { size = { 3, 2 } }) end, { x = r })
  gradcheck("interpolate bilinear align_corners", function() return lab.interpolate(r, { size = { 7, 4 }, align_corners = true }) end, { x = r })
  gradcheck("interpolate bilinear scale_factor", function() return lab.interpolate(r, { scale_factor = { 1.5, 0.7 } }) end, { x = r })
  gradcheck("interpolate nearest", function() return lab.interpolate(r, { size = { 7, 13 }, mode = "nearest" }) end, { x = r })

  local gx = L{ 2, 2, 5, 6 }
  for _, o in ipairs{ {}, { align_corners = true }, { padding_mode = "border" }, { padding_mode = "border", align_corners = true } } do
    local grid = leaf(lab.rand({ 2, 3, 4, 2 }, F64) * 2.4 - 1.2)
    gradcheck(string.format("grid_sample (align_corners %s, %s)", tostring(o.align_corners or false), o.padding_mode or "zeros"),
      function() return lab.grid_sample(gx, grid, o) end, { x = gx, grid = grid })
  end

  local p = L{ 2, 3, 4, 5 }
  gradcheck("pad and crop", function() return lab.pad(p, { 1, -2, -1, 3 }, 0.5) end, { x = p })
  gradcheck("pad three dimensions", function() return lab.pad(p, { 0, 1, 2, -1, -1, 1 }) end, { x = p })
end

---------------------------------------------------------------------------------------------------
-- the modules (float32 parameters: their float64 copies are checked, then a training step runs)
---------------------------------------------------------------------------------------------------
do
  lab.seed(5)
  local m = nn.Conv2d(4, 6, { 3, 2 }, { groups = 2, stride = 2, padding = 1 })
  check.ok(m.weight:shape_string() == "{6,2,3,2}" and m.bias:shape_string() == "{6}", "Conv2d: weight (out, in/groups, kh, kw), bias (out)")
  local w64, b64 = leaf(m.weight:detach():to(F64)), leaf(m.bias:detach():to(F64))
  local x = L{ 2, 4, 5, 6 }
  gradcheck("nn.Conv2d (float64 copy)", function() return lab.conv2d(x, w64, b64, m.conv_opts) end, { x = x, w = w64, b = b64 })
  local y32 = m(x:detach():to("float32"))
  local y64 = lab.conv2d(x:detach(), w64:detach(), b64:detach(), m.conv_opts)
  check.value(max_abs(y32:to(F64) - y64) < 1e-5, "nn.Conv2d's float32 forward matches its float64 copy")

  -- PyTorch's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in/groups * kh * kw
  local big = nn.Conv2d(16, 64, 3)
  local bound = 1 / math.sqrt(16 * 9)
  local wmax, bmax = max_abs(big.weight), max_abs(big.bias)
  check.value(wmax <= bound and wmax > 0.95 * bound, "Conv2d: weights within 1/sqrt(fan_in) and filling it", string.format("%g vs %g", wmax, bound))
  check.value(bmax <= bound, "Conv2d: biases within 1/sqrt(fan_in)")
  local std = (big.weight:to(F64):pow(2):mean():item()) ^ 0.5
  check.near(std, bound / math.sqrt(3), 0.05 * bound, "Conv2d: weights uniform (std bound / sqrt(3))")
  check.ok(nn.Conv2d(3, 4, 3, { bias = false }).bias == nil, "Conv2d{bias = false} has no bias")

  -- a small CNN trains: the loss falls
  lab.seed(7)
  local net = nn.Sequential(nn.Conv2d(1, 8, 3, { padding = 1 }), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, { padding = "same" }),
    nn.ReLU(), nn.AvgPool2d(2))
  local head = nn.Linear(8 * 2 * 2, 2)
  local params = net:parameters()
  for _, q in ipairs(head:parameters()) do params[#params + 1] = q end
  local opt = lab.optim.Adam(params, { lr = 0.01 })
  -- two classes: a bright spot in the top-left or the bottom-right quarter
  local imgs, labels = lab.zeros{ 16, 1, 8, 8 }, {}
  for i = 1, 16 do
    local cls = i % 2 + 1
    local r0 = cls == 1 and 1 or 5
    imgs:narrow(1, i, 1):narrow(3, r0, 3):narrow(4, r0, 3):fill_(1)
    labels[i] = cls
  end
  imgs = imgs + lab.randn{ 16, 1, 8, 8 } * 0.1
  local target = lab.tensor(labels, "int64")
  local first, last
  for step = 1, 40 do
    opt:zero_grad()
    local logits = head(net(imgs):reshape{ 16, -1 })
    local loss = lab.cross_entropy(logits, target)
    loss:backward()
    opt:step()
    if step == 1 then first = loss:item() end
    last = loss:item()
  end
  check.value(last < 0.5 * first, "a small CNN (Conv2d, MaxPool2d, AvgPool2d) trains", string.format("loss %.3f -> %.3f", first, last))
  -- its state round-trips
  local net2 = nn.Sequential(nn.Conv2d(1, 8, 3, { padding = 1 }), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, { padding = "same" }),
    nn.ReLU(), nn.AvgPool2d(2))
  net2:load_state_dict(net:state_dict())
  check.value(max_abs(net2(imgs) - net(imgs)) == 0, "Conv2d's state dict loads into another network")
  check.ok(tostring(net):find("Conv2d(1, 8, 3, padding=1)", 1, true) and tostring(net):find("MaxPool2d(2)", 1, true),
    "describe() names the layers", tostring(net))

  local ep = nn.EccPool2d{ slope = 0.16, deg2px = 4 }
  local img = lab.randn{ 1, 2, 12, 12 }
  check.value(max_abs(ep(img, { 3, 4 }) - lab.ecc_pool2d(img, { fixation = { 3, 4 }, slope = 0.16, deg2px = 4 })) == 0,
    "EccPool2d(x, fixation) is lab.ecc_pool2d")
  ep.fixation = { 9, 2 }
  check.value(max_abs(ep(img) - lab.ecc_pool2d(img, { fixation = { 9, 2 }, slope = 0.16, deg2px = 4 })) == 0,
    "EccPool2d uses m.fixation when forward gets none")
end

---------------------------------------------------------------------------------------------------
-- identities between the ops
---------------------------------------------------------------------------------------------------
do
  lab.seed(3)
  local x = lab.randn({ 2, 3, 8, 10 }, F64)
  -- a centred one-hot kernel per channel (depthwise) returns its input
  local k = lab.zeros({ 3, 1, 3, 3 }, F64)
  for c = 1, 3 do k:set(c, 1, 2, 2, 1) end
  check.value(max_abs(lab.conv2d(x, k, { groups = 3, padding = 1 }) - x) == 0, "conv2d with an identity kernel is the identity")
  -- a box kernel of ones over each channel alone, divided by 4, is average pooling
  local box = lab.zeros({ 3, 1, 2, 2 }, F64) + 0.25
  check.value(max_abs(lab.conv2d(x, box, { groups = 3, stride = 2 }) - lab.avg_pool2d(x, 2)) < 1e-15,
    "conv2d with a 2x2 box kernel, stride 2, is avg_pool2d(2)")
  -- eccentricity pooling with no growth is plain pooling (even sizes: every window inside)
  local flat = { fixation = { 3, 3 }, slope = 0, deg2px = 2 }
  check.value(max_abs(lab.ecc_pool2d(x, flat) - lab.avg_pool2d(x, 2)) < 1e-14, "ecc_pool2d with slope 0 is avg_pool2d(2)")
  flat.mode = "max"
  check.value(max_abs(lab.ecc_pool2d(x, flat) - lab.max_pool2d(x, 2)) == 0, "ecc_pool2d{mode = 'max'} with slope 0 is max_pool2d(2)")
  check.value(max_abs(lab.ecc_pool2d(x, { fixation = { 0, 0 }, slope = 0, deg2px = 2, stride = 1, rf_min = 1 }) - x) < 1e-13,
    "ecc_pool2d with stride 1, rf_min 1 and slope 0 is the identity (up to the summed-area table's rounding)")
  -- halving by bilinear resampling (align_corners = false) averages each 2x2 block
  check.value(max_abs(lab.interpolate(x, { size = { 4, 5 } }) - lab.avg_pool2d(x, 2)) < 1e-15,
    "interpolate to half the size (bilinear) is avg_pool2d(2)")
  check.value(max_abs(lab.interpolate(x, { size = { 8, 10 } }) - x) == 0, "interpolate to the same size is the identity")
  -- sampling at the pixel centres returns the image; a shifted grid of whole pixels is a crop
  local H, W = 8, 10
  local gx = (lab.arange(W, F64) * 2 + 1) / W - 1
  local gy = (lab.arange(H, F64) * 2 + 1) / H - 1
  local grid = lab.stack({ gx:reshape{ 1, W }:expand{ H, W }, gy:reshape{ H, 1 }:expand{ H, W } }, 3):reshape{ 1, H, W, 2 }:expand{ 2, H, W, 2 }
  check.value(max_abs(lab.grid_sample(x, grid:contiguous()) - x) < 1e-14, "grid_sample at the pixel centres is the identity")
  local shifted = (grid + lab.tensor({ 2 * 3 / W, 2 * 2 / H }, F64)):contiguous()   -- 3 pixels right, 2 down
  local crop = lab.pad(x, { -3, 3, -2, 2 })   -- the same window, zeros where it leaves the image
  check.value(max_abs(lab.grid_sample(x, shifted) - crop) < 1e-14, "grid_sample on a grid shifted by whole pixels is a crop")
  check.value(max_abs(lab.pad(x, { -1, -2, -3, 0 }) - x:narrow(4, 2, 7):narrow(3, 4, 5)) == 0, "negative pads crop as narrow does")
  -- max_pool2d's indices point at the maxima (1-based, (iy - 1) W + ix within the plane)
  local y, idx = lab.max_pool2d(x, 3, { stride = 2, padding = 1, indices = true })
  check.value(idx:dtype() == "int64" and idx:min():item() >= 1 and idx:max():item() <= H * W, "max_pool2d indices are 1-based positions")
  local picked = lab.gather(x:reshape{ 2, 3, H * W }, 3, idx:reshape{ 2, 3, -1 }):reshape(y:shape())
  check.value(max_abs(picked - y) == 0, "x at max_pool2d's indices is its output")
  -- NaN wins the max, as in PyTorch
  local xn = lab.zeros{ 1, 1, 2, 2 }
  xn:set(1, 1, 2, 1, 0 / 0)
  local yn = lab.max_pool2d(xn, 2):item()
  check.value(yn ~= yn, "max_pool2d propagates NaN")
end

---------------------------------------------------------------------------------------------------
-- eccentricity: the window sizes worked by hand, symmetry and growth
---------------------------------------------------------------------------------------------------
do
  -- eccNET's pool3: deg2px 8, fovea 4 degrees -> the fovea's radius round(16) = 16 cells, rings of
  -- round(4) = 4 cells; ring i (16 + 4 (i - 1) <= e < 16 + 4 i) pools rf_min + round(0.07 (2 (16 + 4 i) - 32)),
  -- i.e. 2 + round(0.56 i): i = 1 -> 3 (0.56), 2 -> 3 (1.12), 3 -> 4 (1.68), 4 -> 4 (2.24), 5 -> 5 (2.8)
  local opts = { fixation = { 1, 1 }, slope = 0.07, deg2px = 8 }   -- in output cell (0.5, 0.5): cell (i, j) is at distance |(i-1, j-1)|
  local sizes = lab.ecc_pool2d_sizes(100, 100, opts)
  check.ok(sizes:shape_string() == "{50,50}", "ecc_pool2d_sizes: (ceil(H / stride), ceil(W / stride))")
  local function at(d) return sizes:get(1, d + 1) end   -- the cell d cells to the right of the fixation's
  local expect = { [0] = 2, [15] = 2, [16] = 3, [19] = 3, [20] = 3, [23] = 3, [24] = 4, [31] = 4, [32] = 5, [35] = 5, [36] = 5, [40] = 6 }
  for d, k in pairs(expect) do check.value(at(d) == k, string.format("pool3 window at eccentricity %d cells is %d", d, k), tostring(at(d))) end
  -- rounding is half to even, as Python's round: slope 0.125 on ring 1 of width 2 with r0 = 2 (fovea 2, deg2px 2):
  -- 2 + round(0.125 (2 * 3 - 4)) = 2 + round(0.25) = 2; slope 0.25 -> round(0.5) = 0 (even) -> 2; slope 0.75 -> round(1.5) = 2 -> 4
  for _, c in ipairs{ { 0.25, 2 }, { 0.75, 4 }, { 1.25, 4 } } do
    local s = lab.ecc_pool2d_sizes(20, 20, { fixation = { 1, 1 }, slope = c[1], deg2px = 2, fovea = 2, stride = 2 })
    check.value(s:get(1, 3) == c[2], string.format("slope %g: round half to even gives %d", c[1], c[2]), tostring(s:get(1, 3)))
  end
  -- a central fixation: symmetric, growing outward, rf_min inside the fovea
  local c = lab.ecc_pool2d_sizes(64, 64, { fixation = { 32, 32 }, slope = 0.32, deg2px = 2, fovea = 4 })
  local t = c:totable()
  local symmetric, growing = true, true
  for i = 1, 32 do
    for j = 1, 32 do
      if t[i][j] ~= t[33 - i][j] or t[i][j] ~= t[i][33 - j] or t[i][j] ~= t[j][i] then symmetric = false end
      if i < 16 and t[i][j] < t[i + 1][j] then growing = false end
    end
  end
  check.value(symmetric, "sizes around a central fixation are symmetric")
  check.value(growing, "sizes do not shrink towards the fixation")
  check.value(t[16][16] == 2 and t[1][1] > 2, "rf_min at the fixation, larger windows at the corners", t[1][1])
  -- pooling follows the fixation: moving it moves where the output is sharp
  lab.seed(4)
  local img = lab.randn({ 1, 1, 40, 40 }, F64)
  local plain = lab.avg_pool2d(img, 2)
  local near = lab.ecc_pool2d(img, { fixation = { 6, 6 }, slope = 0.5, deg2px = 2, fovea = 2 })
  -- (the fixation is output cell (3, 3)'s corner; the fovea's radius is 2 cells: cells 3..4, 1-based, lie inside)
  check.value(max_abs(near:narrow(3, 3, 2):narrow(4, 3, 2) - plain:narrow(3, 3, 2):narrow(4, 3, 2)) < 1e-14,
    "at the fixation the output is the 2x2 average")
  check.value(max_abs(near:narrow(3, 18, 3):narrow(4, 18, 3) - plain:narrow(3, 18, 3):narrow(4, 18, 3)) > 0.1,
    "far from it the windows are larger")
end

---------------------------------------------------------------------------------------------------
-- a convolution cut into several column slices (K = 1600 -> 655 columns per slice; 2 x 400 output
-- positions: a slice ends inside image 2, mid-row), against pad / narrow / matmul
---------------------------------------------------------------------------------------------------
do
  lab.seed(9)
  local x = leaf(lab.randn({ 2, 64, 20, 20 }, F64))
  local w = leaf(lab.randn({ 8, 64, 5, 5 }, F64) * 0.05)
  local b = leaf(lab.randn({ 8 }, F64))
  local y = lab.conv2d(x, w, b, { padding = 2 })
  local gy = lab.randn(y:shape(), F64)
  ;(y * gy):sum():backward()
  local dx, dw, db = x.grad, w.grad, b.grad
  x:zero_grad(); w:zero_grad(); b:zero_grad()
  -- the reference: y[n, o] = b[o] + sum over (ki, kj) of W[:, :, ki, kj] . xpad[n, :, ki .., kj ..]
  local xp = lab.pad(x, { 2, 2, 2, 2 })
  local ref = b:reshape{ 1, 8, 1 }
  for ki = 1, 5 do
    for kj = 1, 5 do
      local patch = xp:narrow(3, ki, 20):narrow(4, kj, 20):reshape{ 2, 64, 400 }
      ref = ref + w:narrow(3, ki, 1):narrow(4, kj, 1):reshape{ 8, 64 }:matmul(patch)
    end
  end
  ref = ref:reshape{ 2, 8, 20, 20 }
  check.value(max_abs(y - ref) < 1e-12, "conv2d across column slices equals the composed reference", max_abs(y - ref))
  ;(ref * gy):sum():backward()
  check.value(max_abs(dx - x.grad) < 1e-12, "its dx equals the reference's")
  check.value(max_abs(dw - w.grad) < 1e-10, "its dW equals the reference's", max_abs(dw - w.grad))
  check.value(max_abs(db - b.grad) < 1e-10, "its db equals the reference's")

  -- one thread and two: the same values (the threads split channels, columns and rows of col)
  local function run(threads)
    lab.set_num_threads(threads)
    local xs, ws = x:detach():to("float32"):requires_grad(true), w:detach():to("float32"):requires_grad(true)
    local ys = lab.conv2d(xs, ws, { padding = 2, stride = { 1, 2 } })
    ;(ys * gy:narrow(4, 1, 10):to("float32")):sum():backward()
    local e = lab.randn({ 2, 64, 20, 20 }) + 0
    local pooled = {
      lab.max_pool2d(e, 3, { stride = 1, padding = 1 }), lab.avg_pool2d(e, 3, { stride = 1, padding = 1 }),
      lab.ecc_pool2d(e, { fixation = { 5, 5 }, slope = 0.5, deg2px = 2 }), lab.interpolate(e, { size = { 33, 17 } }),
    }
    return ys:detach(), xs.grad, ws.grad, pooled
  end
  local before = lab.num_threads()
  lab.seed(1); local y1, dx1, dw1, p1 = run(1)
  lab.seed(1); local y2, dx2, dw2, p2 = run(2)
  lab.set_num_threads(before)
  check.value(max_abs(y1 - y2) <= 1e-5 * max_abs(y1), "conv2d: one thread and two agree (forward)")
  check.value(max_abs(dx1 - dx2) <= 1e-5 * max_abs(dx1), "conv2d: one thread and two agree (dx)")
  check.value(max_abs(dw1 - dw2) <= 1e-5 * max_abs(dw1), "conv2d: one thread and two agree (dW)")
  for i = 1, #p1 do check.value(max_abs(p1[i] - p2[i]) == 0, "pooling / resampling op " .. i .. ": one thread and two agree") end

  -- the direct float32 kernel (stride 1, one group: conv2d_direct_avx512.h) against the columns'
  -- float64 result: odd widths (masked lanes), channel counts off the 8-channel blocks, asymmetric
  -- padding, dilation, 5 x 5 and 1 x 1 kernels
  local direct_cases = {
    { { 2, 3, 9, 37 }, { 13, 3, 3, 3 }, { padding = 1 } },
    { { 1, 5, 11, 40 }, { 8, 5, 5, 5 }, { padding = 2 } },
    { { 2, 4, 10, 33 }, { 6, 4, 3, 2 }, { padding = "same", dilation = { 2, 3 } } },
    { { 1, 16, 6, 70 }, { 17, 16, 1, 1 }, {} },
    { { 3, 2, 7, 16 }, { 9, 2, 3, 3 }, { padding = "same" } },
    -- channel counts the direct weight gradient takes (3 x 3: pairs, 1 x 1: eights, 5 x 5: any)
    { { 2, 3, 9, 37 }, { 14, 3, 3, 3 }, { padding = 1 } },
    { { 2, 4, 10, 33 }, { 6, 4, 3, 3 }, { padding = 2, dilation = 2 } },
    { { 1, 16, 6, 70 }, { 16, 16, 1, 1 }, {} },
    { { 2, 2, 12, 20 }, { 3, 2, 5, 5 }, { padding = 1 } },
    -- the channels-last weight gradient (conv2d_wgrad_channels_last_avx512.h: 3 x 3 and 5 x 5, Cin a
    -- multiple of 16): output channels in uneven blocks and fewer than a block, padding on one side
    -- only, dilation, 5 x 5
    { { 2, 16, 9, 21 }, { 5, 16, 3, 3 }, { padding = 1 } },
    { { 1, 32, 8, 19 }, { 17, 32, 3, 3 }, { padding = { 0, 2 } } },
    { { 2, 16, 10, 18 }, { 24, 16, 3, 3 }, { padding = 2, dilation = 2 } },
    { { 1, 48, 7, 23 }, { 11, 48, 3, 3 }, { padding = "same" } },
    { { 2, 16, 12, 17 }, { 9, 16, 5, 5 }, { padding = 2 } },
    { { 1, 32, 11, 14 }, { 4, 32, 5, 5 }, { padding = 1 } },
  }
  for i, c in ipairs(direct_cases) do
    local x64, w64, b64 = lab.randn(c[1], "float64"), lab.randn(c[2], "float64"), lab.randn({ c[2][1] }, "float64")
    local function pass(dtype)
      local xs = x64:to(dtype):requires_grad(true)
      local ws, bs = w64:to(dtype):requires_grad(true), b64:to(dtype):requires_grad(true)
      local y = lab.conv2d(xs, ws, bs, c[3])
      local g = lab.randn(y:size(), "float64")
      lab.seed(100 + i)
      g = lab.randn(y:size(), "float64")
      ;(y * g:to(dtype)):sum():backward()
      return y:detach():to("float64"), xs.grad:to("float64"), ws.grad:to("float64"), bs.grad:to("float64")
    end
    local y1, dx1, dw1, db1 = pass("float32")
    local y2, dx2, dw2, db2 = pass("float64")
    local worst = math.max(max_abs(y1 - y2) / max_abs(y2), max_abs(dx1 - dx2) / max_abs(dx2), max_abs(dw1 - dw2) / max_abs(dw2),
                           max_abs(db1 - db2) / max_abs(db2))
    check.value(worst < 2e-5, string.format("conv2d float32, stride 1, case %d: y, dx, dW, db match float64", i), worst)
  end

  -- the direct kernels cut the rows into bands whose height depends on the thread count, and split
  -- the weight gradient's channels between the threads; every element is still summed in one order,
  -- so one thread and two give the same bits.  One image of 70 rows: several bands with a halo each.
  for _, c in ipairs{ { { 1, 16, 70, 45 }, { 24, 16, 3, 3 }, { padding = 1 } },
                      { { 3, 32, 70, 45 }, { 40, 32, 3, 3 }, { padding = 1 } },
                      { { 2, 3, 70, 40 }, { 5, 3, 5, 5 }, { padding = 2 } } } do
    local xi, wi = lab.randn(c[1]), lab.randn(c[2])
    local gi = lab.randn(lab.conv2d(xi, wi, c[3]):size())
    local function grads(threads)
      lab.set_num_threads(threads)
      local xs, ws = xi:detach():requires_grad(true), wi:detach():requires_grad(true)
      local ys = lab.conv2d(xs, ws, c[3])
      ;(ys * gi):sum():backward()
      return ys:detach(), xs.grad, ws.grad
    end
    local ya, dxa, dwa = grads(1)
    local yb, dxb, dwb = grads(2)
    lab.set_num_threads(before)
    check.value(max_abs(ya - yb) == 0 and max_abs(dxa - dxb) == 0 and max_abs(dwa - dwb) == 0,
      string.format("conv2d float32 direct, x %s, weight %s: one thread and two give the same bits (y, dx, dW)",
                    table.concat(c[1], "x"), table.concat(c[2], "x")))
  end

  -- the backward's two layouts on two threads: whole images per thread (3 images: two and one) and,
  -- with one image, the slices shared between the threads; each against one thread, in float64
  for _, N in ipairs{ 1, 3 } do
    local xi, wi = lab.randn({ N, 16, 40, 40 }, "float64"), lab.randn({ 32, 16, 3, 3 }, "float64")
    local bi, gi = lab.randn({ 32 }, "float64"), lab.randn({ N, 32, 40, 40 }, "float64")
    local function grads(threads)
      lab.set_num_threads(threads)
      local xs, ws, bs = xi:detach():requires_grad(true), wi:detach():requires_grad(true), bi:detach():requires_grad(true)
      local ys = lab.conv2d(xs, ws, bs, { padding = 1 })
      ;(ys * gi):sum():backward()
      return ys:detach(), xs.grad, ws.grad, bs.grad
    end
    local ya, dxa, dwa, dba = grads(1)
    local yb, dxb, dwb, dbb = grads(2)
    lab.set_num_threads(before)
    local worst = math.max(max_abs(ya - yb) / max_abs(ya), max_abs(dxa - dxb) / max_abs(dxa), max_abs(dwa - dwb) / max_abs(dwa),
                           max_abs(dba - dbb) / max_abs(dba))
    check.value(worst < 1e-12, string.format("conv2d with %d image(s): one thread and two agree (y, dx, dW, db)", N), worst)
  end

  -- no images: the kernels are skipped, and the gradients (left unset by the backward for kernels
  -- that write every element) come back zero, in both dtypes
  for _, dtype in ipairs{ "float32", "float64" } do
    local xe = lab.randn({ 0, 3, 6, 7 }, dtype):requires_grad(true)
    local we, be = lab.randn({ 4, 3, 3, 3 }, dtype):requires_grad(true), lab.randn({ 4 }, dtype):requires_grad(true)
    lab.conv2d(xe, we, be, { padding = 1 }):sum():backward()
    check.value(xe.grad:size()[1] == 0 and we.grad:abs():sum():item() == 0 and be.grad:abs():sum():item() == 0,
      "conv2d of no images (" .. dtype .. "): dx empty, dW and db zero")
  end
end

---------------------------------------------------------------------------------------------------
-- errors: the function, the argument and the shapes
---------------------------------------------------------------------------------------------------
do
  local x = lab.randn{ 2, 3, 6, 7 }
  local w = lab.randn{ 4, 3, 3, 3 }
  check.fails(function() lab.conv2d(lab.randn{ 3, 6, 7 }, w) end, "conv2d: x must be 4-d (N, C, H, W) (got {3,6,7}; one image: x:unsqueeze(1))")
  check.fails(function() lab.conv2d(x, lab.randn{ 4, 2, 3, 3 }) end,
    "conv2d: weight {4,2,3,3} does not fit x {2,3,6,7} with groups = 1 (need (Cout, 3, kh, kw)")
  check.fails(function() lab.conv2d(x, lab.randn{ 4, 1, 3, 3 }, { groups = 2 }) end,
    "conv2d: groups = 2 must divide the input channels (x {2,3,6,7}) and the output channels (weight {4,1,3,3})")
  check.fails(function() lab.conv2d(x, w, lab.randn{ 3 }) end, "conv2d: bias {3} does not fit weight {4,3,3,3} (need {4})")
  check.fails(function() lab.conv2d(x, lab.randn{ 4, 3, 7, 3 }) end,
    "conv2d: the kernel spans 7 x 3 (kernel 7 x 3, dilation {1,1}), more than the padded input 6 x 7 (x {2,3,6,7}")
  check.fails(function() lab.conv2d(x, w, { dilation = 3 }) end, "conv2d: the kernel spans 7 x 7")
  check.fails(function() lab.conv2d(x:to(F64), w) end, "conv2d: x, weight and bias must share one float dtype (got float64, float32, none)")
  check.fails(function() lab.conv2d(x, w, { stride = 0 }) end, "conv2d: stride must be an integer >= 1 or a table {h, w} of them (got 0)")
  check.fails(function() lab.conv2d(x, w, { padding = -1 }) end, "conv2d: padding must be an integer >= 0")
  check.fails(function() lab.conv2d(x, w, { padding = "full" }) end, "conv2d: padding must be an integer, {h, w}, \"same\" or \"valid\"")
  check.fails(function() lab.conv2d(x, w, { padding = "same", stride = 2 }) end, "conv2d: padding = \"same\" needs stride 1")
  check.fails(function() lab.conv2d(x, w, { strides = 2 }) end, "conv2d: unknown option 'strides' (valid: stride, padding, dilation, groups)")
  check.fails(function() lab.conv2d(x, "w") end, "conv2d: argument 'weight' must be a tensor (got string)")

  check.fails(function() lab.max_pool2d(x, 3, { padding = 2 }) end, "max_pool2d: padding {2,2} must be at most half the kernel {3,3}")
  check.fails(function() lab.max_pool2d(x, 8) end, "max_pool2d: the window (kernel {8,8}, dilation {1,1}) does not fit x {2,3,6,7}")
  check.fails(function() lab.max_pool2d(lab.randn{ 6, 7 }, 2) end, "max_pool2d: x must be a 4-d float tensor (N, C, H, W) (got {6,7}, float32")
  check.fails(function() lab.max_pool2d(x, { 2, 0 }) end, "max_pool2d: kernel must be an integer >= 1 or a table {h, w} of them")
  check.fails(function() lab.max_pool2d(x, 2, { ceil_mode = 1 }) end, "max_pool2d: ceil_mode must be true or false (got 1)")
  check.fails(function() lab.avg_pool2d(x, 2, { dilation = 2 }) end,
    "avg_pool2d: unknown option 'dilation' (valid: stride, padding, ceil_mode, count_include_pad)")
  check.fails(function() lab.avg_pool2d(lab.randn{ 2, 3, 6, 7 }:long(), 2) end, "avg_pool2d: x must be a 4-d float tensor (N, C, H, W) (got {2,3,6,7}, int64")

  local eo = { fixation = { 1, 2 }, slope = 0.1, deg2px = 2 }
  check.fails(function() lab.ecc_pool2d(x, { slope = 0.1, deg2px = 2 }) end,
    "ecc_pool2d: opts.fixation, the point {x, y} in pixels from the top-left corner, is required (got nil)")
  check.fails(function() lab.ecc_pool2d(x, { fixation = { 1, 2 } }) end, "ecc_pool2d: opts.slope and opts.deg2px are required")
  check.fails(function() lab.ecc_pool2d(x, { fixation = { { 1, 2 }, { 3, 4 }, { 5, 6 } }, slope = 0.1, deg2px = 2 }) end,
    "ecc_pool2d: 3 fixations given for 2 images (give one for all, or one per image)")
  check.fails(function() lab.ecc_pool2d(x, { fixation = lab.randn{ 2, 3 }, slope = 0.1, deg2px = 2 }) end,
    "ecc_pool2d: fixation must be {x, y} or an (N, 2) tensor (got a tensor of shape {2,3})")
  check.fails(function() lab.ecc_pool2d(x, { fixation = { 1, 2 }, slope = 0.1, deg2px = 0.5 }) end,
    "ecc_pool2d: rings of 1 degrees at 0.5 px per degree are 0 output cells wide (round(ring deg2px / 2) must be >= 1)")
  check.fails(function() lab.ecc_pool2d(x, { fixation = { 0 / 0, 2 }, slope = 0.1, deg2px = 2 }) end, "ecc_pool2d: fixation 1 is not finite")
  check.fails(function() lab.ecc_pool2d(x, { fixation = { 1, 2 }, slope = -1, deg2px = 2 }) end, "ecc_pool2d: slope must be a number >= 0 (got -1)")
  eo.mode = "min"
  check.fails(function() lab.ecc_pool2d(x, eo) end, "ecc_pool2d: mode must be \"avg\" or \"max\" (got min)")
  eo.mode, eo.size = nil, 3
  check.fails(function() lab.ecc_pool2d(x, eo) end, "ecc_pool2d: unknown option 'size' (valid: fixation, slope, deg2px, stride, rf_min, fovea, ring, mode)")
  check.fails(function() lab.ecc_pool2d(lab.randn{ 3, 6, 7 }, { fixation = { 1, 2 }, slope = 0.1, deg2px = 2 }) end,
    "ecc_pool2d: x must be a 4-d float tensor (N, C, H, W) (got {3,6,7}, float32")
  check.fails(function() lab.ecc_pool2d_sizes(10, 10, { fixation = { { 1, 2 } }, slope = 0.1, deg2px = 2 }) end,
    "ecc_pool2d_sizes: opts.fixation, the point {x, y} in pixels from the top-left corner, is required")
  check.fails(function() lab.ecc_pool2d_sizes(-1, 10, { fixation = { 1, 2 }, slope = 0.1, deg2px = 2 }) end,
    "ecc_pool2d_sizes: height and width must be integers >= 0 (got -1, 10)")

  check.fails(function() lab.interpolate(x, { size = 4, scale_factor = 2 }) end, "interpolate: give exactly one of opts.size")
  check.fails(function() lab.interpolate(x) end, "interpolate: give exactly one of opts.size")
  check.fails(function() lab.interpolate(x, { size = 4, mode = "nearest", align_corners = false }) end,
    "interpolate: align_corners applies to mode \"bilinear\" only")
  check.fails(function() lab.interpolate(x, { size = 4, mode = "bicubic" }) end, "interpolate: mode must be \"bilinear\" or \"nearest\" (got bicubic)")
  check.fails(function() lab.interpolate(lab.randn{ 3, 6, 7 }, { size = 4 }) end, "interpolate: x must be a 4-d float tensor (N, C, H, W) (got {3,6,7}")
  check.fails(function() lab.interpolate(x, { size = { 4, 0 } }) end, "interpolate: size must be an integer >= 1 or a table {h, w} of them")
  check.fails(function() lab.interpolate(x, { scale_factor = 0.1 }) end, "interpolate: the output size must be at least 1 x 1 (got 0 x 0 for x {2,3,6,7})")
  check.fails(function() lab.interpolate(x, { sizes = 4 }) end, "interpolate: unknown option 'sizes' (valid: size, scale_factor, mode, align_corners)")

  check.fails(function() lab.grid_sample(x, lab.randn{ 2, 4, 5, 3 }) end,
    "grid_sample: need x (N, C, H, W) and grid (N, Ho, Wo, 2) with the same N (got x {2,3,6,7}, grid {2,4,5,3})")
  check.fails(function() lab.grid_sample(x, lab.randn{ 1, 4, 5, 2 }) end, "grid_sample: need x (N, C, H, W) and grid (N, Ho, Wo, 2) with the same N")
  check.fails(function() lab.grid_sample(x, lab.randn({ 2, 4, 5, 2 }, F64)) end, "grid_sample: x and grid must share one float dtype (got float32, float64)")
  check.fails(function() lab.grid_sample(x, lab.randn{ 2, 4, 5, 2 }, { padding_mode = "reflection" }) end,
    "grid_sample: padding_mode must be \"zeros\" or \"border\" (got reflection)")

  check.fails(function() lab.pad(x, { 1, 2, 3 }) end, "pad: pads must be a table of (before, after) pairs")
  check.fails(function() lab.pad(x, { -4, -4 }) end, "pad: pads (-4, -4) crop more than dimension 4 of x {2,3,6,7} holds")
  check.fails(function() lab.pad(x, { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 }) end, "pad: 5 (before, after) pairs given for x {2,3,6,7} of 4 dimensions")
  check.fails(function() lab.pad(x, { 1, 1.5 }) end, "pad: pads[2] must be an integer (got 1.5)")

  check.fails(function() nn.Conv2d(3, 4, 3, { groups = 2 }) end, "Conv2d: groups = 2 must divide in_channels = 3 and out_channels = 4")
  check.fails(function() nn.Conv2d(3, 4, 0) end, "Conv2d: kernel_size must be a positive integer (got 0)")
  check.fails(function() nn.Conv2d(3, 4, 3, { padding = "same", stride = 2 }) end, "Conv2d: padding = \"same\" needs stride 1")
  check.fails(function() nn.Conv2d(4, 4, 3)(x) end, "Conv2d(4, 4, 3): input of shape {2,3,6,7} does not have 4 channels")
  check.fails(function() nn.Conv2d(3, 4, 3)(lab.randn{ 3, 6, 7 }) end, "Conv2d(3, 4, 3): input must be a 4-d tensor (N, C, H, W) (got {3,6,7})")
  check.fails(function() nn.MaxPool2d(3, { padding = 2 })(x) end, "max_pool2d: padding {2,2} must be at most half the kernel {3,3}")
  check.fails(function() nn.AvgPool2d(2, { stride = 0 }) end, "AvgPool2d: stride must be an integer >= 1")
  check.fails(function() nn.EccPool2d{ slope = 0.1, deg2px = 2 }(x) end, "EccPool2d: no fixation (give forward(x, {x, y}) or set m.fixation)")
  check.fails(function() nn.EccPool2d{ slope = 0.1 } end, "EccPool2d: opts.slope and opts.deg2px are required")
end

-- nothing left on the graph
collectgarbage(); collectgarbage()
check.ok(lab.memory().nodes == 0, "no autograd nodes left alive", lab.memory().nodes)

os.exit(check.report(), true)
