-- attnlab.tasks.visual_search: a search model in the mould of eccNET (Gupta, Zhang, Wu, Wolfe,
-- Kreiman, NeurIPS 2021; kreimanlab/VisualSearchAsymmetry, vs_model/__init__.py), with a small CNN
-- trained here in place of ImageNet's VGG16, and the measures of its asymmetry study.
-- (One file, over 500 lines, on purpose: it is eccNET's one search model -- its constants, the CNN,
-- the DoG sharpening and the loop, each used only by the loop -- with the few measures (about 40
-- lines) the study scores it by; the stimuli and the training diet are modules of their own.)
--
-- The loop (vs.search), per display:
--   1. fixation at the image centre;
--   2. the target's features: the target image alone through the CNN, each of the three levels
--      average-pooled down to the attention map's grid: one kernel per level;
--   3. the display's features at the current fixation: the CNN with eccentricity-dependent average
--      pooling (lab.ecc_pool2d) after each conv block, pooled down to the same grid;
--   4. top-down modulation: each level's features correlated with its target kernel (lab.conv2d,
--      "same" padding): one map per level;
--   5. each map min-max normalised and weighted by its largest raw response (weights summing to 1),
--      then summed;
--   6. DoG sharpening, three times: map += G(k_l, s_l) - G(k_u, s_u) (cv2.GaussianBlur's kernels,
--      per-experiment parameters);
--   7. the map stretched to the image, restricted to the cells of the items not yet visited
--      (object-level inhibition of return), argmax: the next fixation;
--   8. the visited item's grid cell is painted with the background (eccNET's mask * stimulus), so
--      the next features no longer see it;
--   9. oracle recognition: found when a 10 px window at the fixation overlaps the target's cell;
--  10. at most set size + 1 fixations; not found counts as set size.
-- docs/visual_search.md says where this differs from eccNET and why.
local lab = require "attnlab"
local core = require "attnlab.core"
local nn = require "attnlab.nn"
local args = require "attnlab.args"
local ffi = require "ffi"
local stimuli = require "attnlab.tasks.visual_search_stimuli"

local floor, ceil, max, min, exp = math.floor, math.ceil, math.max, math.min, math.exp

local vs = {}

-- Errors name the function the user called and point at the user's line (lab.raise skips every
-- frame under lua/attnlab/).
local function raise(fn, msg) lab.raise("visual_search." .. fn .. ": " .. msg) end
-- an options table whose keys are all in the list valid (the shared checker, named "visual_search.<fn>")
local function check_keys(fn, opts, valid) args.check_options(opts, "visual_search." .. fn, valid) end
local show, typename = args.show, args.typename
local function is_int(v) return type(v) == "number" and v == floor(v) and v > -2 ^ 53 and v < 2 ^ 53 end

---------------------------------------------------------------------------------------------------
-- eccNET's constants
---------------------------------------------------------------------------------------------------
-- eccParamDefault of vs_model/ecc_net.py: VGG16's five pools are average pools of stride 2,
-- smallest window 2, fovea 4 degrees, rings 1 degree wide, with these slopes for pool1 .. pool5;
-- pool p's input is at stride 2^(p-1) of the 30 px-per-degree display.
vs.eccnet = { slopes = { 0, 0, 0.07, 0.16, 0.32 }, rf_min = 2, stride = 2, fovea = 4, ring = 1, deg2px = 30 }

-- RT = RT_SLOPE x fixations + RT_INTERCEPT ms: eccNET's linear map from fixations to reaction time
-- (vs_exp/rt_plot.py), fitted there to human data.
vs.RT_SLOPE, vs.RT_INTERCEPT = 252.359, 376.271

-- the DoG of step 6, {k_l, sigma_l, k_u, sigma_u} (cv2 kernel sizes and sigmas, in cells of the
-- attention map), per experiment as eccNET's exp_info sets it; others take `default`
vs.dog_params = {
  default = { 3, 1, 5, 3 },
  cross = { 5, 3, 7, 5 },
  tl = { 5, 3, 7, 5 },
  lighting = { 3, 0, 5, 1 },
}

-- The human and eccNET figures the study is compared with (docs/visual_search.md): the asymmetry
-- index of humans and of eccNET per experiment, recomputed with the repository's formula from its
-- stored outputs (vs_exp/eccNET/out, vs_exp/human_rt_data.py); and the human RT lines where the
-- repository states them (ms at each set size of the experiment, per condition).
vs.human = {
  curvature = { ai = 0.81, eccnet_ai = 1.00, ivsn_ai = 0.83, chance_ai = 0.41,
                rt = { line_in_curves = { 565, 640, 750 }, curve_in_lines = { 510, 516.4, 529.2 } } },
  lighting = { ai = 0.70, eccnet_ai = 1.00, ivsn_ai = 0.99, chance_ai = -0.26 },
  cross = { ai = 0.36, eccnet_ai = 0.50, ivsn_ai = -0.63, chance_ai = 0.40,
            rt = { cross_in_noncrosses = { 541 + 96 * 3, 541 + 96 * 6, 541 + 96 * 9 },
                   noncross_in_crosses = { 510 + 45 * 3, 510 + 45 * 6, 510 + 45 * 9 } } },
  tl = { ai = 0.40, eccnet_ai = 0.79, ivsn_ai = 0.29, chance_ai = 0.13,
         rt = { l_in_ts = { 474 + 33 * 3, 474 + 33 * 6, 474 + 33 * 9 }, t_in_ls = { 499 + 14 * 3, 499 + 14 * 6, 499 + 14 * 9 } } },
  orientation_homo = { ai = 0.61, eccnet_ai = -1.00, ivsn_ai = -0.58, chance_ai = -0.29 },
  orientation_hetero = { ai = 0.50, eccnet_ai = 0.79, ivsn_ai = 1.00, chance_ai = -0.41 },
}

---------------------------------------------------------------------------------------------------
-- measures
---------------------------------------------------------------------------------------------------
-- vs.rt(fixations): eccNET's reaction time in ms for a number of fixations (or a list of them).
function vs.rt(f)
  if type(f) == "table" then
    local out = {}
    for i, v in ipairs(f) do out[i] = vs.rt(v) end
    return out
  end
  if type(f) ~= "number" or f ~= f then raise("rt", "fixations must be a number or a list of numbers (got " .. show(f) .. ")") end
  return vs.RT_SLOPE * f + vs.RT_INTERCEPT
end

-- vs.slope(xs, ys): the least-squares slope of ys against xs (two lists of one length, at least two
-- distinct xs).
function vs.slope(xs, ys)
  if type(xs) ~= "table" or type(ys) ~= "table" or #xs ~= #ys or #xs < 2 then
    raise("slope", "xs and ys must be lists of one length, at least 2")
  end
  local n, mx, my = #xs, 0, 0
  for i = 1, n do
    if type(xs[i]) ~= "number" or type(ys[i]) ~= "number" then raise("slope", "point " .. i .. " is not two numbers") end
    mx, my = mx + xs[i] / n, my + ys[i] / n
  end
  local sxy, sxx = 0, 0
  for i = 1, n do sxy, sxx = sxy + (xs[i] - mx) * (ys[i] - my), sxx + (xs[i] - mx) ^ 2 end
  if sxx == 0 then raise("slope", "the xs are all equal") end
  return sxy / sxx
end

-- vs.asymmetry_index(s_harder, s_easier): (s_H - s_L) / (s_H + s_L) with both slopes clipped at 0
-- first, 0 when both are 0 (eval_asym_metric.py).  s_harder: the slope of the condition humans
-- find harder (the higher human slope).
function vs.asymmetry_index(sh, sl)
  if type(sh) ~= "number" or type(sl) ~= "number" or sh ~= sh or sl ~= sl then
    raise("asymmetry_index", "slopes must be two numbers (got " .. show(sh) .. ", " .. show(sl) .. ")")
  end
  sh, sl = max(sh, 0), max(sl, 0)
  if sh + sl == 0 then return 0 end
  return (sh - sl) / (sh + sl)
end

---------------------------------------------------------------------------------------------------
-- the CNN
---------------------------------------------------------------------------------------------------
-- vs.background_level(x): per image of x (N, 1, H, W), its most frequent grey level (the mean of the
-- pixels in the fullest of 256 bins over [0, 1]), as an (N, 1, 1, 1) tensor: the background a
-- display or a diet picture is drawn on.
function vs.background_level(x)
  if not lab.is_tensor(x) or x:dim() ~= 4 or x:size(2) ~= 1 then
    raise("background_level", "x must be grey images (N, 1, H, W) (got " .. (lab.is_tensor(x) and "shape " .. x:shape_string() or typename(x)) .. ")")
  end
  local t = x:to("cpu"):to("float32"):contiguous()   -- read from Lua: on the CPU
  local p = ffi.cast("float *", core.host_data(t, "background_level"))
  local N, HW = t:size(1), t:size(3) * t:size(4)
  local out = {}
  local counts = ffi.new("int[256]")
  for i = 0, N - 1 do
    ffi.fill(counts, 256 * 4)
    local base = i * HW
    for j = 0, HW - 1 do
      local b = floor(p[base + j] * 255 + 0.5)
      if b < 0 then b = 0 elseif b > 255 then b = 255 end
      counts[b] = counts[b] + 1
    end
    local best = 0
    for b = 1, 255 do if counts[b] > counts[best] then best = b end end
    -- the mean of the pixels in that bin: exactly the background when it is one value
    local sum = 0
    for j = 0, HW - 1 do
      local v = p[base + j]
      local b = floor(v * 255 + 0.5)
      if b == best or (best == 0 and b < 0) or (best == 255 and b > 255) then sum = sum + v end
    end
    out[i + 1] = sum / counts[best]
  end
  return lab.tensor(out):reshape{ N, 1, 1, 1 }
end

-- SearchNet{channels = {8, 16, 32}, size = 32, classes = 48}: three conv blocks (3 x 3 conv without
-- bias, ReLU, 2 x 2 average pooling), or four with four channel counts, on a grey image minus its
-- background level (vs.background_level: a crude luminance adaptation).  Without biases an empty field excites no
-- feature at any level, so the top-down correlation sees the items and not the blank paper around
-- them.  forward(x): x (N, 1, size, size) in [0, 1] -> logits (N, classes), the diet's training
-- head (a Linear on the last block's pooled features).  features(x, opts): the levels' (one per
-- block) pooled outputs for search.
local Net = nn.class("SearchNet")
vs.Net = Net
local NET_KEYS = { "channels", "size", "classes" }

function Net:init(opts)
  opts = opts or {}
  if type(opts) ~= "table" or lab.is_tensor(opts) then raise("Net", "expects a table of options (got " .. typename(opts) .. ")") end
  nn.check_options(opts, "SearchNet", NET_KEYS)
  local ch = opts.channels or { 8, 16, 32 }
  if type(ch) ~= "table" or (#ch ~= 3 and #ch ~= 4) then
    raise("Net", "channels must be a list of 3 or 4 positive integers, one per block (got " .. show(ch) .. ")")
  end
  local depth = #ch
  for i = 1, depth do nn.check_positive_int(ch[i], "SearchNet", "channels[" .. i .. "]") end
  local size, cell = opts.size or 32, 2 ^ depth
  if not is_int(size) or size < cell or size % cell ~= 0 then
    raise("Net", string.format("size must be a positive multiple of %d for %d blocks (got %s)", cell, depth, show(size)))
  end
  local classes = nn.check_positive_int(opts.classes or 48, "SearchNet", "classes")
  self.channels, self.size, self.classes, self.depth = {}, size, classes, depth
  self.convs = {}
  for l = 1, depth do
    self.channels[l] = ch[l]
    self.convs[l] = self:add_child("conv" .. l, nn.Conv2d(l == 1 and 1 or ch[l - 1], ch[l], 3, { padding = 1, bias = false }))
  end
  self.head = self:add_child("head", nn.Linear(ch[depth] * (size / cell) ^ 2, classes))
end

function Net:describe()
  return string.format("SearchNet(channels={%s}, size=%d, classes=%d)", table.concat(self.channels, ", "), self.size, self.classes)
end

local function check_image(fn, x, label)
  if not lab.is_tensor(x) or x:dim() ~= 4 or x:size(2) ~= 1 then
    raise(fn, (label or "x") .. " must be grey images (N, 1, H, W) (got " .. (lab.is_tensor(x) and "shape " .. x:shape_string() or typename(x)) .. ")")
  end
end

function Net:forward(x)
  check_image("SearchNet", x)
  if x:size(3) ~= self.size or x:size(4) ~= self.size then
    raise("SearchNet", string.format("forward takes (N, 1, %d, %d) diet images (got shape %s)", self.size, self.size, x:shape_string()))
  end
  local h = x - vs.background_level(x)
  for l = 1, self.depth do h = lab.avg_pool2d(self.convs[l](h):relu(), 2) end
  return self.head(h:reshape{ x:size(1), -1 })
end

-- net:features(x [, {fixation =, levels =}]): the outputs of the blocks after their pooling,
-- {level 1 (N, c1, H/2, W/2), level 2 (N, c2, H/4, W/4), level 3 (N, c3, H/8, W/8)[, level 4 (N, c4,
-- H/16, W/16)]} (sizes rounded up).  levels: one lab.ecc_pool2d option table per block
-- (vs.ecc_levels) for eccentricity-dependent pooling around fixation = {x, y} in pixels of x;
-- without levels, the 2 x 2 pooling of training.
function Net:features(x, opts)
  check_image("SearchNet:features", x)
  opts = opts or {}
  if type(opts) ~= "table" or lab.is_tensor(opts) then raise("SearchNet:features", "options must be a table (got " .. typename(opts) .. ")") end
  check_keys("SearchNet:features", opts, { "fixation", "levels" })
  local depth = self.depth
  if opts.levels ~= nil then
    local ok = type(opts.levels) == "table" and #opts.levels == depth
    for l = 1, depth do ok = ok and type(opts.levels[l]) == "table" end
    if not ok then
      raise("SearchNet:features", string.format("levels must be %d lab.ecc_pool2d option tables, one per block (visual_search.ecc_levels)", depth))
    end
    if type(opts.fixation) ~= "table" or type(opts.fixation[1]) ~= "number" or type(opts.fixation[2]) ~= "number" then
      raise("SearchNet:features", "levels need a fixation {x, y} (got " .. show(opts.fixation) .. ")")
    end
  end
  local out, h = {}, x - vs.background_level(x)
  for l = 1, depth do
    h = self.convs[l](h):relu()
    local lv = opts.levels and opts.levels[l]
    if lv then
      local scale = 2 ^ (l - 1)            -- level l's input is at stride 2^(l-1) of x
      local o = { fixation = { opts.fixation[1] / scale, opts.fixation[2] / scale } }
      for k, v in pairs(lv) do o[k] = v end
      h = lab.ecc_pool2d(h, o)
    else
      h = lab.avg_pool2d(h, 2, { ceil_mode = true })
    end
    out[l] = h
  end
  return out
end

local function round_half_even(v)
  local f = floor(v)
  local d = v - f
  if d > 0.5 or (d == 0.5 and f % 2 == 1) then return f + 1 end
  return f
end
-- vs.ecc_levels(downscale [, ecc = true [, depth = 3]]): the lab.ecc_pool2d options of the levels
-- of a CNN of `depth` blocks (3 or 4) for displays shrunk by `downscale`.  Level l pools an input
-- at stride s = downscale 2^(l-1) of the display, so it takes the slope of the eccNET pool whose
-- input has that stride (pool 1 + log2 s; interpolated between pools for other strides, pool5's
-- beyond it) and that input's pixels per degree, round(30 / s) (half to even, as eccNET's round):
-- the window grows by the same degrees with eccentricity as eccNET's at that scale.  At downscale 2 the levels are eccNET's pool2,
-- pool3 and pool4: slopes 0, 0.07, 0.16, deg2px 15, 8, 4 (a fourth level: pool5, 0.32 and 2).
-- ecc = false: slope 0 everywhere (plain 2 x 2 pooling; eccNET's IVSN ablation without its max
-- pooling).
function vs.ecc_levels(downscale, ecc, depth)
  if type(downscale) ~= "number" or downscale <= 0 then raise("ecc_levels", "downscale must be a positive number (got " .. show(downscale) .. ")") end
  depth = depth == nil and 3 or depth
  if depth ~= 3 and depth ~= 4 then raise("ecc_levels", "depth must be 3 or 4 (got " .. show(depth) .. ")") end
  local e = vs.eccnet
  local out = {}
  for l = 1, depth do
    local stride = downscale * 2 ^ (l - 1)
    local p = min(#e.slopes, max(1, 1 + math.log(stride) / math.log(2)))
    local lo = floor(p)
    local slope = e.slopes[lo] + (p - lo) * ((e.slopes[lo + 1] or e.slopes[lo]) - e.slopes[lo])
    out[l] = { slope = ecc == false and 0 or slope, deg2px = max(1, round_half_even(e.deg2px / stride)),
               rf_min = e.rf_min, stride = e.stride, fovea = e.fovea, ring = e.ring }
  end
  return out
end

---------------------------------------------------------------------------------------------------
-- DoG sharpening (cv2.GaussianBlur, BORDER_REFLECT_101), on small maps as Lua tables
---------------------------------------------------------------------------------------------------
-- cv2.getGaussianKernel's fixed kernels for sigma <= 0 and sizes up to 7
local SMALL_GAUSSIAN = {
  [1] = { 1 },
  [3] = { 0.25, 0.5, 0.25 },
  [5] = { 0.0625, 0.25, 0.375, 0.25, 0.0625 },
  [7] = { 0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125 },
}

-- vs.gaussian_kernel(ksize, sigma): cv2.getGaussianKernel(ksize, sigma) as a list: the fixed
-- binomial-like kernels for sigma <= 0 and ksize <= 7, else exp(-(i - (ksize-1)/2)^2 / (2 sigma^2))
-- normalised (sigma <= 0: 0.3 ((ksize - 1) / 2 - 1) + 0.8).
function vs.gaussian_kernel(ksize, sigma)
  if not is_int(ksize) or ksize < 1 or ksize % 2 == 0 then raise("gaussian_kernel", "ksize must be an odd positive integer (got " .. show(ksize) .. ")") end
  if type(sigma) ~= "number" or sigma ~= sigma then raise("gaussian_kernel", "sigma must be a number (got " .. show(sigma) .. ")") end
  if sigma <= 0 and SMALL_GAUSSIAN[ksize] then
    local k = {}
    for i, v in ipairs(SMALL_GAUSSIAN[ksize]) do k[i] = v end
    return k
  end
  if sigma <= 0 then sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8 end
  local k, s, c = {}, 0, (ksize - 1) / 2
  for i = 1, ksize do
    k[i] = exp(-((i - 1 - c) ^ 2) / (2 * sigma * sigma))
    s = s + k[i]
  end
  for i = 1, ksize do k[i] = k[i] / s end
  return k
end

-- index i (0-based) reflected into 0 .. n-1 as BORDER_REFLECT_101 (gfedcb|abcdefgh|gfedcba)
local function reflect101(i, n)
  if n == 1 then return 0 end
  while i < 0 or i >= n do
    if i < 0 then i = -i end
    if i >= n then i = 2 * (n - 1) - i end
  end
  return i
end

local function blur(m, h, w, k)
  local r = (#k - 1) / 2
  local tmp, out = {}, {}
  for y = 0, h - 1 do
    for x = 0, w - 1 do
      local s = 0
      for i = -r, r do s = s + k[i + r + 1] * m[y * w + reflect101(x + i, w) + 1] end
      tmp[y * w + x + 1] = s
    end
  end
  for y = 0, h - 1 do
    for x = 0, w - 1 do
      local s = 0
      for i = -r, r do s = s + k[i + r + 1] * tmp[reflect101(y + i, h) * w + x + 1] end
      out[y * w + x + 1] = s
    end
  end
  return out
end

-- vs.dog(map, params [, times = 3]): map (h, w) tensor; params {k_l, sigma_l, k_u, sigma_u}:
-- `times` rounds of map = map + G(k_l, sigma_l) map - G(k_u, sigma_u) map.  Returns a new float32
-- (h, w) tensor.
function vs.dog(map, params, times)
  if not lab.is_tensor(map) or map:dim() ~= 2 then raise("dog", "map must be a 2-d tensor (got " .. (lab.is_tensor(map) and map:shape_string() or typename(map)) .. ")") end
  if type(params) ~= "table" or #params ~= 4 then raise("dog", "params must be {k_l, sigma_l, k_u, sigma_u} (got " .. show(params) .. ")") end
  times = times or 3
  if not is_int(times) or times < 0 then raise("dog", "times must be an integer >= 0 (got " .. show(times) .. ")") end
  local kl, ku = vs.gaussian_kernel(params[1], params[2]), vs.gaussian_kernel(params[3], params[4])
  local h, w = map:size(1), map:size(2)
  local rows = map:to("float64"):totable()
  local m = {}
  for y = 1, h do for x = 1, w do m[(y - 1) * w + x] = rows[y][x] end end
  for _ = 1, times do
    local g1, g2 = blur(m, h, w, kl), blur(m, h, w, ku)
    for i = 1, h * w do m[i] = m[i] + g1[i] - g2[i] end
  end
  local out = {}
  for y = 1, h do
    out[y] = {}
    for x = 1, w do out[y][x] = m[(y - 1) * w + x] end
  end
  return lab.tensor(out)
end

---------------------------------------------------------------------------------------------------
-- the search
---------------------------------------------------------------------------------------------------
local SEARCH_KEYS = { "downscale", "map_stride", "dog", "ecc", "max_fixations", "maps", "kernels", "background" }

local function check_net(fn, net)
  if type(net) ~= "table" or type(net.features) ~= "function" then
    raise(fn, "net must be a visual_search.Net (got " .. typename(net) .. ")")
  end
end

local function search_options(fn, opts)
  if opts ~= nil and (type(opts) ~= "table" or lab.is_tensor(opts)) then raise(fn, "options must be a table (got " .. typename(opts) .. ")") end
  opts = opts or {}
  check_keys(fn, opts, SEARCH_KEYS)
  local o = { downscale = opts.downscale or 2, map_stride = opts.map_stride or 16, dog = opts.dog, ecc = opts.ecc ~= false,
              max_fixations = opts.max_fixations, maps = opts.maps or false, kernels = opts.kernels,
              background = opts.background or 0 }
  if type(o.background) ~= "number" or o.background ~= o.background then
    raise(fn, "background must be a number (got " .. show(o.background) .. ")")
  end
  if not is_int(o.downscale) or o.downscale < 1 then raise(fn, "downscale must be a positive integer (got " .. show(o.downscale) .. ")") end
  if not is_int(o.map_stride) or o.map_stride < 8 or o.map_stride % 8 ~= 0 then
    raise(fn, "map_stride must be a positive multiple of 8 model pixels (got " .. show(o.map_stride) .. ")")
  end
  if o.dog ~= nil and o.dog ~= false and (type(o.dog) ~= "table" or #o.dog ~= 4) then
    raise(fn, "dog must be {k_l, sigma_l, k_u, sigma_u} or false (got " .. show(o.dog) .. ")")
  end
  if o.max_fixations ~= nil and (not is_int(o.max_fixations) or o.max_fixations < 1) then
    raise(fn, "max_fixations must be a positive integer (got " .. show(o.max_fixations) .. ")")
  end
  return o
end

-- an image (H, W) or (1, 1, H, W) as (1, 1, floor(H / k), floor(W / k)) block means
local function shrink(x, k)
  if x:dim() == 2 then x = x:reshape{ 1, 1, x:size(1), x:size(2) } end
  x = x:to("float32")
  if k == 1 then return x:contiguous() end
  return lab.avg_pool2d(x, k)
end

-- the map's cells must hold whole cells of the deepest level (stride 2^depth model pixels)
local function check_grid(fn, net, map_stride)
  if map_stride % 2 ^ net.depth ~= 0 then
    raise(fn, string.format("map_stride %s is not a multiple of the %d-block CNN's deepest stride, %d model pixels",
      show(map_stride), net.depth, 2 ^ net.depth))
  end
end

-- the levels pooled down to the attention map's grid (cells of map_stride model pixels)
local function to_grid(levels, map_stride)
  local out = {}
  for l = 1, #levels do
    local r = map_stride / 2 ^ l                       -- level l is at stride 2^l
    out[l] = r > 1 and lab.avg_pool2d(levels[l], r, { ceil_mode = true }) or levels[l]
  end
  return out
end

-- vs.target_kernels(net, template [, opts]): the top-down kernels: the target image (h, w) through
-- the CNN (fixated at its centre: all of it in the fovea), each level pooled to the map's grid, as
-- (1, C_l, kh, kw) conv2d weights.  opts as vs.search's (downscale, map_stride, ecc).
function vs.target_kernels(net, template, opts)
  check_net("target_kernels", net)
  local o = search_options("target_kernels", opts)
  check_grid("target_kernels", net, o.map_stride)
  if not lab.is_tensor(template) or (template:dim() ~= 2 and template:dim() ~= 4) then
    raise("target_kernels", "template must be a grey image (h, w) (got " .. (lab.is_tensor(template) and template:shape_string() or typename(template)) .. ")")
  end
  return lab.no_grad(function()
    local t = shrink(template, o.downscale)
    local levels = net:features(t, { fixation = { t:size(4) / 2, t:size(3) / 2 }, levels = vs.ecc_levels(o.downscale, o.ecc, net.depth) })
    return to_grid(levels, o.map_stride)
  end)
end

-- vs.attention_map(net, image, kernels, fixation [, opts]): steps 3 to 6 on a model-resolution
-- image (1, 1, H, W) fixated at {x, y} (its pixels).  As eccNET embeds the display in a larger
-- canvas of its background before the CNN, the image is padded with opts.background (default 0)
-- by enough whole map cells that the kernels never reach past the padding; the map is cropped back
-- to the display's cells after the DoG.  Returns the combined, sharpened map (ceil(H / map_stride),
-- ceil(W / map_stride)) and {weights = the levels' largest raw responses}.
function vs.attention_map(net, image, kernels, fixation, opts)
  local o = search_options("attention_map", opts)
  check_image("attention_map", image, "image")
  check_net("attention_map", net)
  check_grid("attention_map", net, o.map_stride)
  local depth = net.depth
  local ok = type(kernels) == "table" and #kernels == depth
  for l = 1, depth do ok = ok and lab.is_tensor(kernels[l]) and kernels[l]:dim() == 4 end
  if not ok then
    raise("attention_map", string.format("kernels must be the %d levels' (1, C, kh, kw) kernels (visual_search.target_kernels)", depth))
  end
  if type(fixation) ~= "table" or type(fixation[1]) ~= "number" or type(fixation[2]) ~= "number" then
    raise("attention_map", "fixation must be {x, y} (got " .. show(fixation) .. ")")
  end
  return lab.no_grad(function()
    local s = o.map_stride
    local reach = 1
    for l = 1, depth do reach = max(reach, ceil(kernels[l]:size(3) / 2), ceil(kernels[l]:size(4) / 2)) end
    local pad = reach * s
    local padded = lab.pad(image, { pad, pad, pad, pad }, o.background)
    local levels = to_grid(net:features(padded, { fixation = { fixation[1] + pad, fixation[2] + pad },
                                                  levels = vs.ecc_levels(o.downscale, o.ecc, depth) }), s)
    local maps, weights, total = {}, {}, 0
    for l = 1, depth do
      local a = lab.conv2d(levels[l], kernels[l], nil, { padding = "same" })
      local hi, lo = a:max():item(), a:min():item()
      weights[l] = hi
      total = total + hi
      maps[l] = hi > lo and (a - lo) / (hi - lo) or a * 0
    end
    local combined
    for l = 1, depth do
      local w = total > 0 and weights[l] / total or 1 / depth
      combined = combined and combined + maps[l] * w or maps[l] * w
    end
    combined = combined:reshape{ combined:size(3), combined:size(4) }
    if o.dog ~= false then combined = vs.dog(combined, o.dog or vs.dog_params.default) end
    local hm, wm = ceil(image:size(3) / s), ceil(image:size(4) / s)
    return combined:narrow(1, reach + 1, hm):narrow(2, reach + 1, wm):contiguous(), { weights = weights }
  end)
end

-- the model pixels (0-based, half-open) of a box {x, y, w, h} in display pixels: the pixels whose
-- centre (j + 1/2) k lies inside it
local function model_rect(b, k, W, H)
  local x0 = max(0, ceil(b[1] / k - 0.5))
  local x1 = min(W, ceil((b[1] + b[3]) / k - 0.5))
  local y0 = max(0, ceil(b[2] / k - 0.5))
  local y1 = min(H, ceil((b[2] + b[4]) / k - 0.5))
  return x0, y0, x1, y1
end

local function check_display(fn, d)
  if type(d) ~= "table" or not lab.is_tensor(d.image) or not lab.is_tensor(d.template) or type(d.meta) ~= "table"
     or type(d.meta.items) ~= "table" or not is_int(d.meta.target) then
    raise(fn, "display must be {image = (H, W), template = (h, w), meta = (with items and target), background =}")
  end
  if d.image:dim() ~= 2 then raise(fn, "display.image must be (H, W) (got shape " .. d.image:shape_string() .. ")") end
  if type(d.background) ~= "number" then raise(fn, "display.background must be a number in [0, 1] (got " .. show(d.background) .. ")") end
end

-- oracle recognition: a 10 px window at (x, y) overlaps the target's grid cell
local function found_at(meta, x, y)
  return stimuli.item_at({ items = { meta.items[meta.target] } }, x, y) == 1
end

-- vs.search(net, display [, opts]): one search, as eccNET's loop (the steps at the top of this
-- file).  display: {image = (H, W) in [0, 1], template = (h, w), meta = the display's metadata
-- (visual_search_stimuli), background = the display's background value, experiment = name (for
-- its DoG)}.  opts: downscale (2: the display and the target are shrunk by this integer factor,
-- block means), map_stride (16 model pixels), dog ({k_l, sigma_l, k_u, sigma_u}, default the
-- experiment's; false: none), ecc (true; false: plain pooling), max_fixations (set size + 1), maps
-- (false; true keeps each fixation's map), kernels (the target's, from vs.target_kernels).
-- Returns {count = fixations to find the target (set size when not found), found, fixations =
-- {{x, y}, ...} in display pixels, the centre first, items = the item fixated at each (indices into
-- meta.items), maps = {(hm, wm), ...} when asked}.
function vs.search(net, display, opts)
  check_net("search", net)
  check_display("search", display)
  local o = search_options("search", opts)
  if o.dog == nil then o.dog = vs.dog_params[display.experiment] or vs.dog_params.default end
  o.background = display.background
  local meta, k = display.meta, o.downscale
  local n = #meta.items
  local cap = o.max_fixations or n + 1
  return lab.no_grad(function()
    local img = shrink(display.image, k)
    local H, W = img:size(3), img:size(4)
    if H < o.map_stride or W < o.map_stride then
      raise("search", string.format("the display shrunk by %d is %d x %d pixels, smaller than a map cell (%d)", k, H, W, o.map_stride))
    end
    local kernels = o.kernels or vs.target_kernels(net, display.template, { downscale = k, map_stride = o.map_stride, ecc = o.ecc })
    -- where each item's cell lies at model resolution, and the mask of cells still allowed
    local rects = {}
    local allowed = lab.zeros{ H, W }
    for j, item in ipairs(meta.items) do
      local x0, y0, x1, y1 = model_rect(item.cell_box, k, W, H)
      rects[j] = { x0, y0, x1, y1 }
      if x1 > x0 and y1 > y0 then allowed:narrow(1, y0 + 1, y1 - y0):narrow(2, x0 + 1, x1 - x0):fill_(1) end
    end
    local cur = img:clone()
    local fx, fy = W / 2, H / 2                        -- model pixels; the display's centre
    local result = { fixations = { { fx * k, fy * k } }, items = {}, found = false, maps = o.maps and {} or nil }
    local Hm, Wm = ceil(H / o.map_stride), ceil(W / o.map_stride)
    for _ = 1, cap do
      if allowed:max():item() <= 0 then break end      -- every item visited
      local map = vs.attention_map(net, cur, kernels, { fx, fy }, o)
      if result.maps then result.maps[#result.maps + 1] = map end
      local up = lab.interpolate(map:reshape{ 1, 1, Hm, Wm }, { size = { Hm * o.map_stride, Wm * o.map_stride } })
      up = up:reshape{ Hm * o.map_stride, Wm * o.map_stride }:narrow(1, 1, H):narrow(2, 1, W)
      up = up - up:min()
      local masked = up * allowed + (allowed - 1)       -- -1 where not allowed, >= 0 elsewhere
      local idx = masked:argmax():item() - 1           -- flattened, 0-based
      local py, px = floor(idx / W), idx % W
      fx, fy = px + 0.5, py + 0.5
      local item
      for j, r in ipairs(rects) do
        if px >= r[1] and px < r[3] and py >= r[2] and py < r[4] then item = j break end
      end
      local x, y = fx * k, fy * k
      result.fixations[#result.fixations + 1] = { x, y }
      result.items[#result.items + 1] = item or 0
      -- inhibition of return: the item's cell leaves the mask and the picture
      if item then
        local r = rects[item]
        allowed:narrow(1, r[2] + 1, r[4] - r[2]):narrow(2, r[1] + 1, r[3] - r[1]):fill_(0)
        cur:narrow(3, r[2] + 1, r[4] - r[2]):narrow(4, r[1] + 1, r[3] - r[1]):fill_(display.background)
      end
      if found_at(meta, x, y) then result.found = true break end
    end
    result.count = result.found and #result.items or n
    return result
  end)
end

-- vs.chance_search(meta, u): the chance baseline: fixations on the items in a random order (each
-- step uniform among those not yet visited, the same object-level inhibition of return), at each
-- item's cell centre, with the same oracle.  u: a list of at least #meta.items uniforms in [0, 1).
-- Returns {count =, found =, items =}.
function vs.chance_search(meta, u)
  if type(meta) ~= "table" or type(meta.items) ~= "table" or not is_int(meta.target) then
    raise("chance_search", "meta must be a display's metadata (with items and target)")
  end
  local n = #meta.items
  if type(u) ~= "table" or #u < n then raise("chance_search", "u must be a list of at least " .. n .. " uniforms") end
  for i = 1, n do
    if type(u[i]) ~= "number" or not (u[i] >= 0 and u[i] <= 1) then
      raise("chance_search", string.format("u[%d] must be a number in [0, 1) (got %s)", i, show(u[i])))
    end
  end
  local left = {}
  for j = 1, n do left[j] = j end
  local res = { items = {}, found = false }
  for step = 1, n + 1 do
    if #left == 0 then break end
    local pick = min(#left, 1 + floor(u[step] * #left))
    local j = table.remove(left, pick)
    res.items[#res.items + 1] = j
    local b = meta.items[j].cell_box
    if found_at(meta, b[1] + b[3] / 2, b[2] + b[4] / 2) then res.found = true break end
  end
  res.count = res.found and #res.items or n
  return res
end

return vs
