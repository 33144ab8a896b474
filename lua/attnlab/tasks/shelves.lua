-- attnlab.tasks.shelves: synthetic shelves for the scanpath-prediction study (OAT, Fang et al. 2024;
-- experiments/scanpath_oat.lua, docs/scanpath_oat.md).
--
-- A shelf is a rows x cols grid of objects (3 x 9 by default, the size of OAT's yogurt shelf).  Each
-- object is a small square patch with three attributes: a colour from a fixed palette, a shape
-- (square, disc, triangle, diamond) and a texture (plain, horizontal or vertical stripes, drawn in a
-- darker shade of the colour).  One object is the target; the searcher is shown it separately (the
-- target image: the same kind of object, drawn with its own noise).  The other objects share each of
-- the target's attributes with a set probability (share_colour, share_shape, share_texture), so a
-- shelf holds distractors of graded similarity, never a second copy of the target's kind.
--
-- Held-out evaluation, split two ways (attnlab.counter_rng, the hash of the other tasks' data):
--   - targets: a fixed part of the kind space (hash(kind) mod 100 < heldout_percent) is never a
--     training target; those kinds still appear on training shelves as distractors, and only they
--     are targets of test shelves.  The split depends on the attribute counts alone, not on the
--     seed, so a model trained with any seed never searched for a test target.
--   - layouts: training and test shelves are drawn from different streams of the hash, keyed by
--     (seed, split, index), so a test layout is a fresh draw, and any shelf is reproducible from its
--     index alone.
-- Pixels come from the canonical patch of each kind (shelves.patch_bank) plus per-object noise drawn
-- from lab's generator at render time (a brightness factor and pixel noise), so that appearance has
-- to be read by the model's CNN rather than matched by identity.
local lab = require "attnlab"
local core = require "attnlab.core"
local counter_rng = require "attnlab.counter_rng"
local args = require "attnlab.args"
local ffi = require "ffi"
local bit = require "bit"

local floor, max, min, abs, sqrt = math.floor, math.max, math.min, math.abs, math.sqrt

local shelves = {}

shelves.COLOURS = {
  { name = "red", rgb = { 0.86, 0.16, 0.14 } },
  { name = "green", rgb = { 0.16, 0.64, 0.22 } },
  { name = "blue", rgb = { 0.15, 0.32, 0.86 } },
  { name = "yellow", rgb = { 0.95, 0.82, 0.10 } },
  { name = "purple", rgb = { 0.58, 0.22, 0.74 } },
  { name = "orange", rgb = { 0.96, 0.52, 0.10 } },
  { name = "cyan", rgb = { 0.10, 0.74, 0.80 } },
  { name = "pink", rgb = { 0.96, 0.45, 0.68 } },
}
shelves.SHAPES = { "square", "disc", "triangle", "diamond" }
shelves.TEXTURES = { "plain", "horizontal", "vertical" }
shelves.BACKGROUND = 0.88       -- a patch's grey around its object

shelves.defaults = {
  rows = 3, cols = 9,           -- the grid (OAT's yogurt shelf: 3 x 9)
  patch = 16,                   -- a patch's side in pixels
  colours = 6, shapes = 4, textures = 3,   -- how many of each palette are used
  share_colour = 0.4,           -- chance that a distractor has the target's colour
  share_shape = 0.4,            -- ... its shape
  share_texture = 0.4,          -- ... its texture
  heldout_percent = 20,         -- the part of the kind space kept for test targets
}

---------------------------------------------------------------------------------------------------
-- Errors name the function the user called, at the user's line (lab.raise skips the module's
-- frames, lua/attnlab/tasks/ among them).
---------------------------------------------------------------------------------------------------
local function raise(fn, msg) lab.raise("shelves." .. fn .. ": " .. msg) end

local function is_int(x) return type(x) == "number" and x == floor(x) and x > -2 ^ 53 and x < 2 ^ 53 end

---------------------------------------------------------------------------------------------------
-- The counter-based generator (attnlab.counter_rng, as the other tasks' data).  shelves.stream(seed,
-- ...) -> s with s.uniform() in [0, 1), s.int(n) in 0 .. n-1, s.gumbel(); draw k of the stream is a
-- hash of (key, k), so a stream depends on its key alone.
---------------------------------------------------------------------------------------------------
function shelves.stream(seed, ...)
  if not is_int(seed) then raise("stream", "seed must be an integer (got " .. tostring(seed) .. ")") end
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if not is_int(v) or v < 0 then raise("stream", "key " .. i .. " must be an integer >= 0 (got " .. tostring(v) .. ")") end
  end
  local s = { uniform = counter_rng.stream(seed, ...) }
  function s.int(n) return min(n - 1, floor(s.uniform() * n)) end
  -- a standard Gumbel draw (-log(-log u)); u is kept off 0 so that it is finite
  function s.gumbel() return -math.log(-math.log(max(s.uniform(), 1e-300))) end
  return s
end

---------------------------------------------------------------------------------------------------
-- Configuration and kinds
---------------------------------------------------------------------------------------------------
-- shelves.config([opts]) -> the shelf settings: shelves.defaults with opts over them, checked
function shelves.config(opts)
  if opts ~= nil and (type(opts) ~= "table" or lab.is_tensor(opts)) then
    raise("config", "options must be a table (got " .. type(opts) .. ")")
  end
  local cfg = args.over_defaults(shelves.defaults, opts or {}, "shelves.config", "option")
  local function int_in(k, lo, hi)
    local v = cfg[k]
    if not is_int(v) or v < lo or v > hi then
      raise("config", string.format("%s must be an integer in %d .. %d (got %s)", k, lo, hi, tostring(v)))
    end
  end
  int_in("rows", 1, 32); int_in("cols", 1, 32); int_in("patch", 8, 64)
  int_in("colours", 1, #shelves.COLOURS); int_in("shapes", 1, #shelves.SHAPES); int_in("textures", 1, #shelves.TEXTURES)
  int_in("heldout_percent", 1, 99)
  if cfg.rows * cfg.cols < 2 then raise("config", "a shelf needs at least 2 objects (rows x cols)") end
  for _, k in ipairs{ "share_colour", "share_shape", "share_texture" } do
    local v = cfg[k]
    if type(v) ~= "number" or not (v >= 0 and v <= 1) then raise("config", k .. " must be a number in [0, 1] (got " .. tostring(v) .. ")") end
  end
  cfg.n = cfg.rows * cfg.cols
  cfg.kinds = cfg.colours * cfg.shapes * cfg.textures
  -- the held-out target kinds (fixed by the attribute counts, not the seed)
  cfg.heldout, cfg.train_kinds, cfg.test_kinds = {}, {}, {}
  for kind = 1, cfg.kinds do
    local h = tonumber(bit.rshift(counter_rng.hash(20240713, cfg.colours, cfg.shapes, cfg.textures, kind), 11)) % 100
    cfg.heldout[kind] = h < cfg.heldout_percent
    local list = cfg.heldout[kind] and cfg.test_kinds or cfg.train_kinds
    list[#list + 1] = kind
  end
  if #cfg.test_kinds == 0 or #cfg.train_kinds == 0 then
    raise("config", string.format("the %d kinds (colours x shapes x textures) leave no %s target at heldout_percent %d",
      cfg.kinds, #cfg.test_kinds == 0 and "test" or "training", cfg.heldout_percent))
  end
  if cfg.kinds < 2 then raise("config", "needs at least 2 kinds of object (a distractor differs from the target)") end
  return cfg
end

local function check_cfg(fn, cfg)
  if type(cfg) ~= "table" or type(cfg.kinds) ~= "number" then
    raise(fn, "the first argument must be a config from shelves.config (got " .. (lab.is_tensor(cfg) and "a tensor" or type(cfg)) .. ")")
  end
end
local function check_kind(fn, cfg, kind)
  if not is_int(kind) or kind < 1 or kind > cfg.kinds then
    raise(fn, string.format("kind must be an integer in 1 .. %d (got %s)", cfg.kinds, tostring(kind)))
  end
end

-- kind id (1 .. colours x shapes x textures) of attributes c, s, t, and back
function shelves.kind(cfg, c, s, t)
  check_cfg("kind", cfg)
  for _, a in ipairs{ { c, cfg.colours, "c" }, { s, cfg.shapes, "s" }, { t, cfg.textures, "t" } } do
    if not is_int(a[1]) or a[1] < 1 or a[1] > a[2] then
      raise("kind", string.format("%s must be an integer in 1 .. %d (got %s)", a[3], a[2], tostring(a[1])))
    end
  end
  return ((c - 1) * cfg.shapes + (s - 1)) * cfg.textures + t
end
function shelves.attributes(cfg, kind)
  check_cfg("attributes", cfg)
  check_kind("attributes", cfg, kind)
  local k = kind - 1
  local t = k % cfg.textures
  k = (k - t) / cfg.textures
  local s = k % cfg.shapes
  return (k - s) / cfg.shapes + 1, s + 1, t + 1
end
-- "red disc, vertical stripes"
function shelves.describe_kind(cfg, kind)
  check_cfg("describe_kind", cfg)
  check_kind("describe_kind", cfg, kind)
  local c, s, t = shelves.attributes(cfg, kind)
  return shelves.COLOURS[c].name .. " " .. shelves.SHAPES[s] .. ", " .. shelves.TEXTURES[t]
end

---------------------------------------------------------------------------------------------------
-- Layouts
---------------------------------------------------------------------------------------------------
local SPLITS = { train = 1, test = 2 }

-- shelves.layout(cfg, seed, split, index) -> {split, index, n, rows, cols, target, target_kind,
-- kind[i], colour[i], shape[i], texture[i], row[i], col[i]} for objects i = 1 .. n in row-major
-- order (row 1 at the top).  split is "train" or "test".
function shelves.layout(cfg, seed, split, index)
  check_cfg("layout", cfg)
  if not SPLITS[split] then raise("layout", "split must be 'train' or 'test' (got " .. tostring(split) .. ")") end
  if not is_int(index) or index < 1 then raise("layout", "index must be an integer >= 1 (got " .. tostring(index) .. ")") end
  if not is_int(seed) then raise("layout", "seed must be an integer (got " .. tostring(seed) .. ")") end
  local s = shelves.stream(seed, SPLITS[split], index)
  local kinds = split == "train" and cfg.train_kinds or cfg.test_kinds
  local tkind = kinds[1 + s.int(#kinds)]
  local tc, ts, tt = shelves.attributes(cfg, tkind)
  local L = { split = split, index = index, n = cfg.n, rows = cfg.rows, cols = cfg.cols, target_kind = tkind,
              kind = {}, colour = {}, shape = {}, texture = {}, row = {}, col = {} }
  L.target = 1 + s.int(cfg.n)
  -- one attribute of a distractor: the target's with probability p, else one of the others
  local function attribute(target_value, count, p)
    if count == 1 or s.uniform() < p then return target_value end
    local v = 1 + s.int(count - 1)
    return v >= target_value and v + 1 or v
  end
  for i = 1, cfg.n do
    L.row[i], L.col[i] = floor((i - 1) / cfg.cols) + 1, (i - 1) % cfg.cols + 1
    local kind
    if i == L.target then
      kind = tkind
    else
      repeat                                            -- never a second copy of the target's kind
        kind = shelves.kind(cfg, attribute(tc, cfg.colours, cfg.share_colour), attribute(ts, cfg.shapes, cfg.share_shape),
          attribute(tt, cfg.textures, cfg.share_texture))
      until kind ~= tkind
    end
    L.kind[i] = kind
    L.colour[i], L.shape[i], L.texture[i] = shelves.attributes(cfg, kind)
  end
  return L
end

---------------------------------------------------------------------------------------------------
-- Pixels
---------------------------------------------------------------------------------------------------
-- whether the pixel centre (x, y), relative to the patch centre in units of the object's half-size,
-- lies inside the shape
local inside = {
  square = function(x, y) return abs(x) <= 0.8 and abs(y) <= 0.8 end,
  disc = function(x, y) return x * x + y * y <= 0.9 * 0.9 end,
  triangle = function(x, y) return y <= 0.8 and y >= -0.9 and abs(x) <= (y + 0.9) * 0.55 end,   -- pointing up
  diamond = function(x, y) return abs(x) + abs(y) <= 1.0 end,
}
-- whether the stripe pattern darkens pixel (px, py) (integer pixel coordinates in the patch)
local striped = {
  plain = function() return false end,
  horizontal = function(_, py, period) return floor(py / period) % 2 == 1 end,
  vertical = function(px, _, period) return floor(px / period) % 2 == 1 end,
}

-- shelves.patch_bank(cfg) -> (kinds, 3, P, P) float32: the canonical picture of every kind
function shelves.patch_bank(cfg)
  check_cfg("patch_bank", cfg)
  local P = cfg.patch
  local bank = core.host_full({ cfg.kinds, 3, P, P }, shelves.BACKGROUND, "patch_bank")   -- drawn from Lua: on the CPU
  local p = ffi.cast("float *", core.host_data(bank, "patch_bank"))
  local half = (P - 1) / 2
  local size = P * 0.42                           -- the object's half-size in pixels
  local period = max(2, floor(P / 8 + 0.5))       -- stripe width
  for kind = 1, cfg.kinds do
    local c, s, t = shelves.attributes(cfg, kind)
    local rgb = shelves.COLOURS[c].rgb
    local shape, stripe = inside[shelves.SHAPES[s]], striped[shelves.TEXTURES[t]]
    for py = 0, P - 1 do
      for px = 0, P - 1 do
        if shape((px - half) / size, (py - half) / size) then
          local dark = stripe(px, py, period) and 0.45 or 1
          for ch = 0, 2 do p[(((kind - 1) * 3 + ch) * P + py) * P + px] = rgb[ch + 1] * dark end
        end
      end
    end
  end
  return bank
end

-- shelves.render(cfg, layouts, bank [, {noise =, brightness =}]) -> (B, n + 1, 3, P, P) float32:
-- each layout's objects in order, then its target image.  Every object gets a brightness factor
-- 1 + brightness * N(0, 1) and pixel noise noise * N(0, 1) (from lab's generator), clamped to [0, 1].
function shelves.render(cfg, layouts, bank, opts)
  check_cfg("render", cfg)
  local P0 = cfg.patch
  if not lab.is_tensor(bank) or bank:shape_string() ~= string.format("{%d,3,%d,%d}", cfg.kinds, P0, P0) then
    raise("render", string.format("bank must be the (%d, 3, %d, %d) tensor of shelves.patch_bank (got %s)", cfg.kinds, P0, P0,
      lab.is_tensor(bank) and bank:shape_string() or type(bank)))
  end
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "noise" and k ~= "brightness" then raise("render", "unknown option '" .. tostring(k) .. "' (valid: brightness, noise)") end
  end
  if type(layouts) ~= "table" or #layouts == 0 then raise("render", "layouts must be a non-empty list of shelves.layout tables") end
  local B, N, P = #layouts, cfg.n, cfg.patch
  local ids = {}
  for b, L in ipairs(layouts) do
    if L.n ~= N then raise("render", string.format("layout %d has %d objects, the config %d", b, tostring(L.n), N)) end
    local row = {}
    for i = 1, N do row[i] = L.kind[i] end
    row[N + 1] = L.target_kind
    ids[b] = row
  end
  local flat = bank:reshape{ cfg.kinds, 3 * P * P }
  local x = lab.embedding(flat, lab.tensor(ids, "int64"))            -- (B, N + 1, 3 P P)
  local brightness, noise = opts.brightness or 0.08, opts.noise or 0.03
  if brightness > 0 then x = x * (lab.randn{ B, N + 1, 1 } * brightness + 1) end
  if noise > 0 then x = x + lab.randn{ B, N + 1, 3 * P * P } * noise end
  return x:clamp(0, 1):reshape{ B, N + 1, 3, P, P }
end

-- The shelf as a picture: cells of P + 2 gap pixels on a wooden-brown shelf, scaled up by `scale`
-- (nearest).  shelves.cell_centre gives the pixel centre of object i in that picture.
local SHELF = { 0.55, 0.42, 0.30 }
local function geometry(cfg, scale)
  local gap = max(1, floor(cfg.patch / 8))
  return cfg.patch + 2 * gap, gap, scale or 1
end
local function check_layout(fn, cfg, L)
  if type(L) ~= "table" or L.n ~= cfg.n or type(L.row) ~= "table" then
    raise(fn, "L must be a layout of this config (shelves.layout) (got " .. type(L) .. ")")
  end
end
function shelves.cell_centre(cfg, L, i, scale)
  check_cfg("cell_centre", cfg)
  check_layout("cell_centre", cfg, L)
  if not is_int(i) or i < 1 or i > cfg.n then raise("cell_centre", string.format("i must be an object in 1 .. %d (got %s)", cfg.n, tostring(i))) end
  local cell, _, sc = geometry(cfg, scale)
  return ((L.col[i] - 1) * cell + cell / 2) * sc, ((L.row[i] - 1) * cell + cell / 2) * sc
end
-- shelves.image(cfg, L, patches [, scale]) -> (H, W, 3) float32: the objects of one rendered shelf,
-- patches (n + 1, 3, P, P) (one row of shelves.render; the last, the target, is not drawn)
function shelves.image(cfg, L, patches, scale)
  check_cfg("image", cfg)
  check_layout("image", cfg, L)
  if not lab.is_tensor(patches) or patches:shape_string() ~= string.format("{%d,3,%d,%d}", cfg.n + 1, cfg.patch, cfg.patch) then
    raise("image", string.format("patches must be one shelf of shelves.render, (%d, 3, %d, %d) (got %s)", cfg.n + 1, cfg.patch, cfg.patch,
      lab.is_tensor(patches) and patches:shape_string() or type(patches)))
  end
  scale = scale or 1
  if not is_int(scale) or scale < 1 then raise("image", "scale must be an integer >= 1 (got " .. tostring(scale) .. ")") end
  local cell, gap = geometry(cfg, 1)
  local P = cfg.patch
  local H, W = cfg.rows * cell, cfg.cols * cell
  local img = lab.zeros{ 3, H, W }
  for ch = 1, 3 do img:select(1, ch):fill_(SHELF[ch]) end
  local src = patches:contiguous():totable()
  local t = img:totable()
  for i = 1, cfg.n do
    local x0, y0 = (L.col[i] - 1) * cell + gap, (L.row[i] - 1) * cell + gap
    for ch = 1, 3 do
      for py = 1, P do
        local dst, row = t[ch][y0 + py], src[i][ch][py]
        for px = 1, P do dst[x0 + px] = row[px] end
      end
    end
  end
  img = lab.tensor(t):permute(2, 3, 1):contiguous()
  if scale > 1 then
    img = lab.interpolate(img:permute(3, 1, 2):unsqueeze(1), { size = { H * scale, W * scale }, mode = "nearest" })
      :squeeze(1):permute(2, 3, 1):contiguous()
  end
  return img
end

return shelves
