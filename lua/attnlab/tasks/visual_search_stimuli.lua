-- attnlab.tasks.visual_search_stimuli: the search displays of the visual-search asymmetry study.
-- (One file, over 500 lines, on purpose: seven experiments' generators that share one layout,
-- metadata and seeding scheme, and one writer/reader of the sets; splitting them per experiment
-- would repeat the shared part seven times.)
--
-- The six experiments of eccNET (Gupta, Zhang, Wu, Wolfe, Kreiman, NeurIPS 2021, "Visual Search
-- Asymmetry: Deep Nets and Humans Share Similar Inherent Biases"), redrawn as the authors'
-- generators draw them (kreimanlab/VisualSearchAsymmetry, extras/experiment_stimuli_generators/
-- gen_*.ipynb): the same canvas, grid, item patch and jitter in pixels at 30 px per degree, the same
-- item geometry, the same rotations and flips, the same set sizes and counts.  A seventh, Q among Os
-- and O among Qs (Treisman & Souther 1985), is this module's own design in the same format.
--
-- Each experiment has two conditions, the harder one for humans first.  A display puts set_size
-- items into distinct cells of a grid, each patch at a random offset 0 .. jitter-1 px inside its
-- cell (the originals' randint(pos_err)); exactly one item is the target.  Every display comes with
-- its metadata (the items' boxes, cells and shapes, the target's index) and the target's image
-- alone, the template a search model correlates with.  docs/visual_search.md has the parameters,
-- the metadata format and how to generate the PNGs.
--
-- Randomness is a counter-based hash of (seed, experiment, condition, set size, index, draw), so a
-- display depends on nothing but those numbers: the same seed gives the same set, in any order.
local lab = require "attnlab"
local raster = require "attnlab.raster"
local json = require "attnlab.json"
local ffi = require "ffi"
local bit = require "bit"

local floor, max = math.floor, math.max

local vs = {}
vs.deg2px = 30           -- the originals' 30 px per degree of visual angle
vs.version = 1           -- of the drawing: an index written by another version is regenerated

---------------------------------------------------------------------------------------------------
-- Errors name the function the user called and point at the user's line (lab.raise skips the
-- frames of every file under lua/attnlab/, this one included).
---------------------------------------------------------------------------------------------------
local function raise(fn, msg) lab.raise("visual_search_stimuli." .. fn .. ": " .. msg) end

local function is_int(x) return type(x) == "number" and x == floor(x) and x > -2 ^ 53 and x < 2 ^ 53 end
local function show(x) return type(x) == "string" and string.format("%q", x) or tostring(x) end
local function check_options(fn, opts, valid)
  if opts == nil then return {} end
  if type(opts) ~= "table" then raise(fn, "options must be a table (got " .. type(opts) .. ")") end
  local names = {}
  for k in pairs(valid) do names[#names + 1] = k end
  table.sort(names)
  for k in pairs(opts) do
    if not valid[k] then raise(fn, "unknown option " .. show(k) .. " (" .. table.concat(names, ", ") .. ")") end
  end
  return opts
end

---------------------------------------------------------------------------------------------------
-- The counter-based generator (the hash of lua/attnlab/tasks/multiplication.lua: splitmix64's
-- finaliser, chained over the key).
---------------------------------------------------------------------------------------------------
local rng = require "attnlab.counter_rng"

-- the draws of one display: draw k is extend(key, k), the key the hash of (seed, experiment,
-- condition, set size, index); int(n) is uniform on 0 .. n-1 (numpy's randint(n))
local function stream(seed, ...)
  local s = { uniform = rng.stream(seed, ...) }
  function s.int(n) return floor(s.uniform() * n) end
  -- the first m of a uniform random order of 0 .. n-1 (numpy's choice(n, m, replace=False))
  function s.choice(n, m)
    local pool = {}
    for i = 1, n do pool[i] = i - 1 end
    for i = 1, m do
      local j = i + s.int(n - i + 1)
      pool[i], pool[j] = pool[j], pool[i]
    end
    local out = {}
    for i = 1, m do out[i] = pool[i] end
    return out
  end
  return s
end

---------------------------------------------------------------------------------------------------
-- Geometry.  The pixel sizes come from the originals' expressions in degrees, truncated as
-- Python's int() truncates (toward zero), so that each is the integer the notebooks used.
---------------------------------------------------------------------------------------------------
local D = vs.deg2px
local function int(v) return v >= 0 and floor(v) or -floor(-v) end

-- the layout every generator shares: view_area degrees square, a grid x grid of cells of
-- int(view_area / grid * D) px, item patches of `obj` degrees, jitter int((cell - obj) * D)
local function layout(view_area, grid, obj)
  local feature = view_area / grid
  return { canvas = int(view_area * D), grid = { grid, grid }, cell = int(feature * D), item = int(obj * D),
           jitter = int((feature - obj) * D) }
end

local WHITE, BLACK = 1, 0

-- Exp 1 (gen_curvature.ipynb): white strokes on black.  The curve is cv2.ellipse's arc of a circle
-- of radius 1 deg over 1.3 rad, centred so that the arc's chord-to-apex span sits in the middle of
-- the 1.6 deg patch, thickness 1/6 deg (5 px, which cv2 paints 7 px wide); the line a
-- 1.2 x 0.2 deg rectangle.  Both are rotated
-- by -45, -90, -135 and 180 degrees (cv2 angles: negative is clockwise) about the patch centre.
local CURVE_ANGLES = { -45, -90, -135, 180 }
local function curvature_patches()
  local n = int(1.6 * D)
  local radius, seg, weight = 1, 1.3, 1 / 6
  local curve = raster.canvas(n, n, BLACK)
  curve:cv_ellipse(int(1.6 * D / 2), int((1.6 - (radius * math.cos(seg / 2) + radius)) * D / 2), int(radius * D), int(radius * D),
    0, int((1 / 4 - seg / (4 * math.pi)) * 360), int((1 / 4 + seg / (4 * math.pi)) * 360), WHITE, int(weight * D))
  local line = raster.canvas(n, n, BLACK)
  local lh, lw = 1 / 6 + 1 / 30, 1.2
  line:fill_rect(int((1.6 - lw) * D / 2), int((1.6 - lh) * D / 2), int((1.6 + lw) * D / 2), int((1.6 + lh) * D / 2), WHITE)
  local out = {}
  for _, a in ipairs(CURVE_ANGLES) do
    out["curve_" .. a] = curve:rotate(a, n / 2, n / 2)
    out["line_" .. a] = line:rotate(a, n / 2, n / 2)
  end
  return out
end

-- Exp 2 (gen_lighting_dir.ipynb): a disc of 1.04 deg (31 px) on grey 27, shaded by a ramp of 16
-- levels 0, 17, ..., 255 in bands of 2 rows, dark at the top (skimage.draw.circle: centres strictly
-- inside radius 15).  That disc is lit from below; flipped, from above; transposed, from the right;
-- transposed and flipped left-right, from the left.
local LIGHT_BG = 27 / 255
local function lighting_patches()
  local size = 1.04 * D                         -- 31.2: the notebook takes int() of each use
  local n, step = int(size), int(size / 15)
  local base = raster.canvas(n, n, LIGHT_BG)
  local c = int(size / 2)
  base:fill_disc(c, c, c, function(_, y) return 17 * floor(y / step) / 255 end)
  local right = base:transpose()
  return { lit_bottom = base, lit_top = base:flip(0), lit_right = right, lit_left = right:flip(1) }
end

-- Exps 3 and 4 (gen_intersection.ipynb): black glyphs of 5.5 deg (165 px), stroke 0.55 deg, on
-- white, padded by 0.2 deg (6 px) on each side into a 177 px patch.  Four views of each: as drawn,
-- flipped top to bottom, transposed, transposed and flipped left to right (the notebooks' list).
-- For the T and the cross these are four rotations; the non-cross, unchanged by a half turn, shows
-- two orientations of itself and two of its mirror image; for the L, views 2 and 4 are the same
-- corner (top-left) with strokes one pixel apart in width, so an L shows three orientations, never
-- the bottom-right corner.
local function intersection_patches()
  local lh, w, border = 5.5, 0.55, 0.4
  local g = int(lh * D)
  local function glyph(bars)
    local t = raster.canvas(g, g, WHITE)
    for _, b in ipairs(bars) do t:fill_rect(b[1], b[2], b[3], b[4], BLACK) end
    local n = int((lh + border) * D)
    local padded = raster.canvas(n, n, WHITE)
    padded:blit(t, int(border / 2 * D), int(border / 2 * D))
    local tr = padded:transpose()
    return { padded, padded:flip(0), tr, tr:flip(1) }
  end
  local v0, v1 = int((lh - w) * D / 2), int((lh + w) * D / 2)        -- the centred vertical bar
  local half = int(lh * D / 2)
  local shapes = {
    cross = glyph{ { v0, 0, v1, g }, { 0, int(3 * w * D), g, int(4 * w * D) } },
    noncross = glyph{ { v0, 0, v1, g }, { 0, int(3 * w * D), half, int(4 * w * D) }, { half, int(6 * w * D), g, int(7 * w * D) } },
    L = glyph{ { 0, 0, int(w * D), g }, { 0, int((lh - w) * D), g, g } },
    T = glyph{ { v0, 0, v1, g }, { 0, 0, g, int(w * D) } },
  }
  local out = {}
  for name, views in pairs(shapes) do
    for v = 1, 4 do out[name .. "_" .. v] = views[v] end
  end
  return out
end

-- Exps 5 and 6 (gen_categorization.ipynb): a bar of 2 x 0.3 deg in a 2.3 deg patch (69 px), drawn
-- white on black, rotated (cv2: negative is clockwise) about (34.5, 34.5) and inverted, so a black
-- bar on white.
local BAR_ANGLES = { 0, -20, -80, -60, -40, 20, 40, 60, 80 }
local function orientation_patches()
  local lh, lw = 2, 0.3
  local n = int((lh + lw) * D)
  local bar = raster.canvas(n, n, BLACK)
  bar:fill_rect(int(lh * D / 2), int(lw * D / 2), int((lh + 2 * lw) * D / 2), int((2 * lh + lw) * D / 2), WHITE)
  local out = {}
  for _, a in ipairs(BAR_ANGLES) do out["bar_" .. a] = bar:rotate(a, n / 2, n / 2):invert() end
  return out
end

-- Q and O (this module's design; Treisman & Souther 1985's feature-present asymmetry): an O is a
-- ring of radius 0.6 deg (18 px) and stroke 1/6 deg (5 px), black on white, anti-aliased, in the
-- 69 px patch of the orientation experiments; a Q is the same ring crossed by a tail at 45 degrees
-- toward the bottom right, from 0.4 to 0.93 deg (12 to 28 px) from the centre.
local function qo_patches()
  local n = int(2.3 * D)
  local c, r, width = floor(n / 2), 18, 5
  local o = raster.canvas(n, n, WHITE):ring(c, c, r, { width = width, value = BLACK, aa = true })
  local q = o:clone()
  local s = math.sqrt(0.5)
  q:segment(c + 12 * s, c + 12 * s, c + 28 * s, c + 28 * s, { width = width, value = BLACK, aa = true })
  return { O = o:quantise(), Q = q:quantise() }
end

---------------------------------------------------------------------------------------------------
-- The experiments.  Plain data (it is copied into each index.json); how each condition picks its
-- items is in `plans` below.
---------------------------------------------------------------------------------------------------
local function experiment(t)
  for k, v in pairs(layout(t.view_area, t.grid_n, t.item_deg)) do t[k] = v end
  t.grid_n = nil
  return t
end

vs.experiments = {
  experiment{ name = "curvature", number = 1, title = "Curvature", view_area = 11.3, grid_n = 6, item_deg = 1.6,
    background = BLACK, set_sizes = { 8, 16, 32 }, per_size = 30,
    conditions = {
      { name = "line_in_curves", harder = true, target = "straight line", distractors = "curves", eccnet = "curvature_line_in_curves" },
      { name = "curve_in_lines", harder = false, target = "curve", distractors = "straight lines", eccnet = "curvature_curve_in_lines" },
    } },
  experiment{ name = "lighting", number = 2, title = "Lighting direction", view_area = 6.6, grid_n = 4, item_deg = 1.04,
    background = LIGHT_BG, set_sizes = { 1, 6, 12 }, per_size = 30,
    conditions = {
      { name = "left_right", harder = true, target = "disc lit from the left", distractors = "discs lit from the right", eccnet = "lightning_dir_left_right" },
      { name = "top_down", harder = false, target = "disc lit from above", distractors = "discs lit from below", eccnet = "lightning_dir_top_down" },
    } },
  experiment{ name = "cross", number = 3, title = "Intersection: cross vs non-cross", view_area = 20.5, grid_n = 3, item_deg = 5.9,
    background = WHITE, set_sizes = { 3, 6, 9 }, per_size = 36,
    conditions = {
      { name = "cross_in_noncrosses", harder = true, target = "cross", distractors = "non-crosses", eccnet = "intersection_cross" },
      { name = "noncross_in_crosses", harder = false, target = "non-cross", distractors = "crosses", eccnet = "intersection_non_cross" },
    } },
  experiment{ name = "tl", number = 4, title = "Intersection: T vs L", view_area = 20.5, grid_n = 3, item_deg = 5.9,
    background = WHITE, set_sizes = { 3, 6, 9 }, per_size = 36,
    conditions = {
      { name = "l_in_ts", harder = true, target = "L", distractors = "Ts", eccnet = "intersection_Ls" },
      { name = "t_in_ls", harder = false, target = "T", distractors = "Ls", eccnet = "intersection_Ts" },
    } },
  experiment{ name = "orientation_homo", number = 5, title = "Orientation, homogeneous distractors", view_area = 11.3, grid_n = 4,
    item_deg = 2.3, background = WHITE, set_sizes = { 1, 4, 8, 12 }, per_size = 30,
    conditions = {
      { name = "vertical_in_tilted", harder = true, target = "vertical bar (0)", distractors = "bars at -20", eccnet = "categorization_homo_t0" },
      { name = "tilted_in_vertical", harder = false, target = "bar at -20", distractors = "vertical bars (0)", eccnet = "categorization_homo_t20" },
    } },
  experiment{ name = "orientation_hetero", number = 6, title = "Orientation, heterogeneous distractors", view_area = 11.3, grid_n = 4,
    item_deg = 2.3, background = WHITE, set_sizes = { 1, 4, 8, 12 }, per_size = 30,
    conditions = {
      { name = "tilted_in_mixed", harder = true, target = "bar at -20", distractors = "bars at -80, -60, -40, 0, 20, 40, 60, 80", eccnet = "categorization_hetero_t20" },
      { name = "vertical_in_mixed", harder = false, target = "vertical bar (0)", distractors = "bars at -80, -60, -40, -20, 20, 40, 60, 80", eccnet = "categorization_hetero_t0" },
    } },
  experiment{ name = "q_o", number = 7, title = "Q among Os, O among Qs (not in eccNET)", view_area = 11.3, grid_n = 4, item_deg = 2.3,
    background = WHITE, set_sizes = { 1, 6, 12 }, per_size = 30,
    conditions = {
      { name = "o_in_qs", harder = true, target = "O", distractors = "Qs" },
      { name = "q_in_os", harder = false, target = "Q", distractors = "Os" },
    } },
}
local by_name = {}
for _, e in ipairs(vs.experiments) do by_name[e.name] = e end

local builders = { curvature = curvature_patches, lighting = lighting_patches, cross = intersection_patches,
                   tl = intersection_patches, orientation_homo = orientation_patches,
                   orientation_hetero = orientation_patches, q_o = qo_patches }

-- How a condition assigns shapes to its items, k = 1 .. n in drawing order (tpos: the target's k):
--   cycle   item k gets view ((k - 1) mod 4) + 1 of its shape (gen_curvature: dis_stim[si % 4])
--   random  every item draws its own view (gen_intersection: randint(len(stim)))
--   fixed   one patch for the target, one for every distractor
--   sample  the distractors' angles drawn from a list of 8 as gen_categorization does: all
--           distinct while n - 1 <= 8, otherwise each angle once and n - 9 of them twice, shuffled
local DISTRACT_T0 = { -80, -60, -40, 20, 40, 60, 80, -20 }     -- distractors + [targets[1]]
local DISTRACT_T20 = { -80, -60, -40, 20, 40, 60, 80, 0 }      -- distractors + [targets[0]]
local plans = {
  curvature = {
    line_in_curves = { rule = "cycle", target = "line", distractor = "curve", views = CURVE_ANGLES },
    curve_in_lines = { rule = "cycle", target = "curve", distractor = "line", views = CURVE_ANGLES },
  },
  lighting = {
    left_right = { rule = "fixed", target = "lit_left", distractor = "lit_right" },
    top_down = { rule = "fixed", target = "lit_top", distractor = "lit_bottom" },
  },
  cross = {
    cross_in_noncrosses = { rule = "random", target = "cross", distractor = "noncross", views = { 1, 2, 3, 4 } },
    noncross_in_crosses = { rule = "random", target = "noncross", distractor = "cross", views = { 1, 2, 3, 4 } },
  },
  tl = {
    l_in_ts = { rule = "random", target = "L", distractor = "T", views = { 1, 2, 3, 4 } },
    t_in_ls = { rule = "random", target = "T", distractor = "L", views = { 1, 2, 3, 4 } },
  },
  orientation_homo = {
    vertical_in_tilted = { rule = "fixed", target = "bar_0", distractor = "bar_-20", angles = { 0, -20 } },
    tilted_in_vertical = { rule = "fixed", target = "bar_-20", distractor = "bar_0", angles = { -20, 0 } },
  },
  orientation_hetero = {
    tilted_in_mixed = { rule = "sample", target = "bar_-20", target_angle = -20, angles = DISTRACT_T20 },
    vertical_in_mixed = { rule = "sample", target = "bar_0", target_angle = 0, angles = DISTRACT_T0 },
  },
  q_o = {
    o_in_qs = { rule = "fixed", target = "O", distractor = "Q" },
    q_in_os = { rule = "fixed", target = "Q", distractor = "O" },
  },
}

-- per item: the patch key, shape, and angle or view
local function describe(key)
  local shape, variant = key:match("^(.-)_(%-?%d+)$")
  if not shape then return { shape = key } end
  variant = tonumber(variant)
  if shape == "curve" or shape == "line" or shape == "bar" then return { shape = shape, angle = variant } end
  return { shape = shape, view = variant }
end

-- the patch keys of items 1 .. n (drawing order), drawing from rng where the rule says so
local function assign(plan, n, tpos, rng)
  local keys = {}
  if plan.rule == "sample" then
    local pool = plan.angles
    local ids
    if n - 1 > #pool then
      ids = rng.choice(#pool, #pool)
      for _, j in ipairs(rng.choice(#pool, n - 1 - #pool)) do ids[#ids + 1] = j end
    else
      ids = rng.choice(#pool, n)           -- n of them, one more than used, as the notebook draws
    end
    for i = #ids, 2, -1 do local j = 1 + rng.int(i); ids[i], ids[j] = ids[j], ids[i] end
    local used = 0
    for k = 1, n do
      if k == tpos then keys[k] = plan.target
      else used = used + 1; keys[k] = "bar_" .. pool[ids[used] + 1] end
    end
  elseif plan.rule == "fixed" then
    for k = 1, n do keys[k] = k == tpos and plan.target or plan.distractor end
  else
    for k = 1, n do
      local shape = k == tpos and plan.target or plan.distractor
      local view = plan.rule == "cycle" and plan.views[(k - 1) % #plan.views + 1] or nil
      keys[k] = shape .. "_" .. (view or "?")            -- "random" draws the view with the jitter
    end
  end
  return keys
end

local patch_cache = {}
local function patches_of(name)
  if not patch_cache[name] then
    local p = builders[name]()
    local e = by_name[name]
    for _, c in pairs(p) do c.ink = c:ink_box(e.background) end
    patch_cache[name] = p
  end
  return patch_cache[name]
end

-- the item patches of an experiment by key ("line_-45", "T_2", "lit_top", "bar_-20", "Q", ...), as
-- raster canvases: for the tests, which check their pixels
vs._patches = patches_of

-- vs.experiment(name): the spec of one experiment (a table of vs.experiments).
function vs.experiment(name)
  local e = by_name[name]
  if not e then
    local names = {}
    for _, x in ipairs(vs.experiments) do names[#names + 1] = x.name end
    raise("experiment", "unknown experiment " .. show(name) .. " (" .. table.concat(names, ", ") .. ")")
  end
  return e
end

local function find_condition(fn, e, condition)
  for ci, c in ipairs(e.conditions) do if c.name == condition then return c, ci end end
  local names = {}
  for _, c in ipairs(e.conditions) do names[#names + 1] = c.name end
  raise(fn, "experiment " .. e.name .. " has no condition " .. show(condition) .. " (" .. table.concat(names, ", ") .. ")")
end

local function check_seed(fn, seed)
  if not is_int(seed) or seed < 0 then raise(fn, "seed must be a non-negative integer (got " .. show(seed) .. ")") end
  return seed
end

local function box_of(x, y, w, h) return { x, y, w, h } end

-- vs.generate(experiment, condition, set_size, i [, seed = 1]): display i (1, 2, ...) of that
-- set size.  Returns {image = (H, W) float32, template = (h, w) float32 (the target alone), meta =
-- the display's metadata (as in index.json, less the file names)}.
function vs.generate(name, condition, set_size, i, seed)
  local fn = "generate"
  local e = vs.experiment(name)
  local c, ci = find_condition(fn, e, condition)
  local cells = e.grid[1] * e.grid[2]
  if not is_int(set_size) or set_size < 1 or set_size > cells then
    raise(fn, string.format("set_size must be an integer from 1 to %d, the cells of the %d x %d grid (got %s)", cells, e.grid[1], e.grid[2], show(set_size)))
  end
  if not is_int(i) or i < 1 then raise(fn, "i must be a positive integer (got " .. show(i) .. ")") end
  seed = check_seed(fn, seed or 1)
  local plan, patches = plans[e.name][c.name], patches_of(e.name)
  local rng = stream(seed, e.number, ci, set_size, i)
  local order = rng.choice(cells, set_size)          -- the cells, in drawing order
  local tpos = 1 + rng.int(set_size)
  local keys = assign(plan, set_size, tpos, rng)
  local canvas = raster.canvas(e.canvas, e.canvas, e.background)
  local items, target_key = {}, nil
  for k = 1, set_size do
    local cell = order[k]
    local row, col = floor(cell / e.grid[2]), cell % e.grid[2]
    local y = row * e.cell + rng.int(e.jitter)
    local x = col * e.cell + rng.int(e.jitter)
    local key = keys[k]
    if key:sub(-2) == "_?" then key = key:sub(1, -2) .. plan.views[1 + rng.int(#plan.views)] end
    local patch = patches[key]
    canvas:blit(patch, x, y)
    local item = describe(key)
    item.cell = { row + 1, col + 1 }
    item.cell_box = box_of(col * e.cell, row * e.cell, e.cell, e.cell)
    item.box = box_of(x, y, patch.w, patch.h)
    item.ink = box_of(x + patch.ink[1], y + patch.ink[2], patch.ink[3], patch.ink[4])
    item.order = k                                     -- sorted below; this keeps the drawing order
    if k == tpos then item.is_target = true; target_key = key end
    items[#items + 1] = item
  end
  -- listed by cell, row by row, so that index.json reads like the display
  table.sort(items, function(a, b) return a.cell[1] * 1000 + a.cell[2] < b.cell[1] * 1000 + b.cell[2] end)
  local target
  for j, item in ipairs(items) do
    if item.is_target then target = j end
    item.is_target, item.order = nil, nil
  end
  local meta = { condition = c.name, set_size = set_size, i = i, target = target, target_key = target_key, items = items }
  return { image = canvas.tensor, template = patches[target_key]:clone().tensor, meta = meta }
end

-- vs.item_at(meta, x, y [, {window = 10, box = "cell"}]): the index of the item whose box overlaps
-- the window x window square centred on the point (x, y) (pixel coordinates from the top-left
-- corner, as lab.viz.image's points), or nil.  box: "cell" (the item's grid cell: eccNET's
-- ground-truth mask and inhibition of return), "box" (its patch) or "ink" (its drawn pixels).
-- The oracle recogniser: vs.item_at(meta, x, y) == meta.target.
function vs.item_at(meta, x, y, opts)
  local fn = "item_at"
  opts = check_options(fn, opts, { window = true, box = true })
  if type(meta) ~= "table" or type(meta.items) ~= "table" then raise(fn, "meta must be a display's metadata (with items)") end
  if type(x) ~= "number" or type(y) ~= "number" then raise(fn, "x, y must be numbers (got " .. show(x) .. ", " .. show(y) .. ")") end
  local window = opts.window or 10
  if type(window) ~= "number" or window < 0 then raise(fn, "window must be a number >= 0 (got " .. show(window) .. ")") end
  local field = ({ cell = "cell_box", box = "box", ink = "ink" })[opts.box or "cell"]
  if not field then raise(fn, "box must be \"cell\", \"box\" or \"ink\" (got " .. show(opts.box) .. ")") end
  local x0, y0, x1, y1 = x - window / 2, y - window / 2, x + window / 2, y + window / 2
  for j, item in ipairs(meta.items) do
    local b = item[field]
    if x0 < b[1] + b[3] and x1 > b[1] and y0 < b[2] + b[4] and y1 > b[2] then return j end
  end
  return nil
end

---------------------------------------------------------------------------------------------------
-- Files: assets/stimuli/<experiment>/index.json, <condition>/<set_size>_<i>.png and the targets'
-- images <condition>/target_<key>.png.
---------------------------------------------------------------------------------------------------
pcall(ffi.cdef, "int mkdir(const char *path, unsigned int mode);")
local function mkdir_p(fn, dir)
  local prefix = dir:sub(1, 1) == "/" and "/" or ""
  for part in dir:gmatch("[^/]+") do
    prefix = prefix .. part
    if ffi.C.mkdir(prefix, 493) ~= 0 and ffi.errno() ~= 17 then -- 0755; 17 = EEXIST
      raise(fn, "cannot create directory '" .. prefix .. "' (errno " .. ffi.errno() .. ")")
    end
    prefix = prefix .. "/"
  end
end

local function default_root() return lab.root .. "/assets/stimuli" end

local function experiment_list(fn, list)
  if list == nil then
    local all = {}
    for _, e in ipairs(vs.experiments) do all[#all + 1] = e.name end
    return all
  end
  if type(list) == "string" then list = { list } end
  if type(list) ~= "table" then raise(fn, "experiments must be a name or a list of names") end
  for _, name in ipairs(list) do
    if not by_name[name] then vs.experiment(name) end
  end
  return list
end

local function check_per_size(fn, n)
  if n ~= nil and (not is_int(n) or n < 1) then raise(fn, "per_size must be a positive integer (got " .. show(n) .. ")") end
  return n
end

-- one experiment's PNGs and index.json; returns the index
local function write_experiment(fn, e, root, seed, per_size, quiet)
  local dir = root .. "/" .. e.name
  local index = {}
  for k, v in pairs(e) do if k ~= "conditions" then index[k] = v end end
  index.deg2px = D
  index.per_size = per_size or e.per_size
  index.generator = { module = "attnlab.tasks.visual_search_stimuli", version = vs.version, seed = seed,
                      per_size = per_size or e.per_size }
  index.conditions = {}
  local t0, count = os.clock(), 0
  for _, c in ipairs(e.conditions) do
    mkdir_p(fn, dir .. "/" .. c.name)
    local cond = {}
    for k, v in pairs(c) do cond[k] = v end
    cond.stimuli = {}
    local templates = {}
    for _, n in ipairs(e.set_sizes) do
      for i = 1, per_size or e.per_size do
        local s = vs.generate(e.name, c.name, n, i, seed)
        local m = s.meta
        m.file = string.format("%s/%d_%d.png", c.name, n, i)
        m.target_image = c.name .. "/target_" .. m.target_key .. ".png"
        m.target_key = nil
        lab.image.save(dir .. "/" .. m.file, s.image)
        if not templates[m.target_image] then
          lab.image.save(dir .. "/" .. m.target_image, s.template)
          templates[m.target_image] = true
        end
        cond.stimuli[#cond.stimuli + 1] = m
        count = count + 1
      end
    end
    index.conditions[#index.conditions + 1] = cond
  end
  -- written last: an index.json present means a complete set
  lab.write_file_atomic(dir .. "/index.json", json.encode(index) .. "\n")
  if not quiet then
    io.write(string.format("stimuli: %s: %d displays in %s (%.1f s)\n", e.name, count, dir, os.clock() - t0))
  end
  index.dir = dir
  return index
end

-- vs.write{root =, seed = 1, experiments = (all), per_size = (each experiment's), quiet = false}:
-- writes the PNGs and index.json of each experiment under root (default assets/stimuli in the
-- tree).  Returns the indexes, by experiment name.
function vs.write(opts)
  local fn = "write"
  opts = check_options(fn, opts, { root = true, seed = true, experiments = true, per_size = true, quiet = true })
  local root = opts.root or default_root()
  if type(root) ~= "string" or root == "" then raise(fn, "root must be a directory path") end
  local seed = check_seed(fn, opts.seed or 1)
  local per_size = check_per_size(fn, opts.per_size)
  local out = {}
  for _, name in ipairs(experiment_list(fn, opts.experiments)) do
    out[name] = write_experiment(fn, by_name[name], root, seed, per_size, opts.quiet)
  end
  return out
end

local function read_index(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  local ok, index = pcall(json.decode, s)
  if not ok then return nil, index end
  return index
end

-- vs.read(experiment [, {root =, seed =, per_size =, generate = true, quiet = false}]): the index of
-- one experiment, as index.json holds it, with index.dir its directory.  With generate (the
-- default) the set is written first when index.json is missing or was written by this module with
-- another version, seed or per_size; an index.json without a `generator` (a user's own images)
-- is read as it is.  experiment: a name of vs.experiments, or any directory holding an index.json.
function vs.read(name, opts)
  local fn = "read"
  opts = check_options(fn, opts, { root = true, seed = true, per_size = true, generate = true, quiet = true })
  if type(name) ~= "string" then raise(fn, "experiment must be a name or a directory (got " .. type(name) .. ")") end
  local dir = by_name[name] and ((opts.root or default_root()) .. "/" .. name) or name
  local index, err = read_index(dir .. "/index.json")
  if err then raise(fn, dir .. "/index.json: " .. tostring(err)) end
  local e = by_name[name]
  if e and opts.generate ~= false then
    local seed = check_seed(fn, opts.seed or 1)
    local per_size = check_per_size(fn, opts.per_size) or e.per_size
    local g = index and index.generator
    local stale = not index or (g and (g.version ~= vs.version or g.seed ~= seed or g.per_size ~= per_size))
    if stale then
      return write_experiment(fn, e, opts.root or default_root(), seed, per_size, opts.quiet)
    end
  end
  if not index then
    raise(fn, "no index.json in " .. dir .. (e and " (write it with visual_search_stimuli.write, or attnlab run experiments/make_stimuli.lua)" or ""))
  end
  index.dir = dir
  return index
end

-- vs.load_image(path): a grey (H, W) float32 image in [0, 1] through lab.image.load (stb_image):
-- a grey file as it is, a colour one as the mean of its R, G, B (alpha ignored).
function vs.load_image(path)
  if type(path) ~= "string" then raise("load_image", "path must be a string (got " .. type(path) .. ")") end
  local img = lab.image.load(path)
  local c = img:size(3)
  if c <= 2 then return img:select(3, 1):contiguous() end
  return img:narrow(3, 1, 3):mean(3)
end

-- vs.load(index, meta): the display's image and its target's image, (H, W) and (h, w), read from
-- index.dir through lab.image.load.
function vs.load(index, meta)
  if type(index) ~= "table" or type(index.dir) ~= "string" then raise("load", "index must be what visual_search_stimuli.read returned") end
  if type(meta) ~= "table" or type(meta.file) ~= "string" or type(meta.target_image) ~= "string" then
    raise("load", "meta must be a display of the index (with file and target_image)")
  end
  return vs.load_image(index.dir .. "/" .. meta.file), vs.load_image(index.dir .. "/" .. meta.target_image)
end

---------------------------------------------------------------------------------------------------
-- Contact sheets: the docs' pictures of each experiment.
---------------------------------------------------------------------------------------------------
-- vs.contact_sheet(experiment [, {seed = 1, i = 1, shrink = 1}]): an RGB (H, W, 3) image: one row
-- per condition (the harder first), the target's image on the left, then display i of each set
-- size; the target's patch outlined in red.  shrink: an integer factor the displays are shrunk by
-- (the mean of shrink x shrink blocks).
function vs.contact_sheet(name, opts)
  local fn = "contact_sheet"
  opts = check_options(fn, opts, { seed = true, i = true, shrink = true })
  local e = vs.experiment(name)
  local seed, i, shrink = check_seed(fn, opts.seed or 1), opts.i or 1, opts.shrink or 1
  if not is_int(i) or i < 1 then raise(fn, "i must be a positive integer (got " .. show(i) .. ")") end
  if not is_int(shrink) or shrink < 1 then raise(fn, "shrink must be a positive integer (got " .. show(shrink) .. ")") end
  local gap = 8
  local size = floor(e.canvas / shrink)
  local left = floor(e.item / shrink) + 2 * gap                -- the column of the targets' images
  local W = left + #e.set_sizes * (size + gap) + gap
  local H = #e.conditions * size + (#e.conditions + 1) * gap
  local rgb = { raster.canvas(H, W, 0.5), raster.canvas(H, W, 0.5), raster.canvas(H, W, 0.5) }
  local function small(t)
    local src = raster.from_tensor(t)
    if shrink == 1 then return src end
    local out = raster.canvas(floor(src.h / shrink), floor(src.w / shrink))
    for y = 0, out.h - 1 do
      for x = 0, out.w - 1 do
        local s = 0
        for dy = 0, shrink - 1 do for dx = 0, shrink - 1 do s = s + src.p[(y * shrink + dy) * src.w + x * shrink + dx] end end
        out.p[y * out.w + x] = s / (shrink * shrink)
      end
    end
    return out
  end
  local function put(c, x, y) for k = 1, 3 do rgb[k]:blit(c, x, y) end end
  local function outline(b, x, y)
    local x0, y0 = x + floor(b[1] / shrink), y + floor(b[2] / shrink)
    local x1, y1 = x + floor((b[1] + b[3]) / shrink) - 1, y + floor((b[2] + b[4]) / shrink) - 1
    for k, v in ipairs{ 1, 0, 0 } do
      local c = rgb[k]
      c:fill_rect(x0, y0, x1 + 1, y0 + 2, v); c:fill_rect(x0, y1 - 1, x1 + 1, y1 + 1, v)
      c:fill_rect(x0, y0, x0 + 2, y1 + 1, v); c:fill_rect(x1 - 1, y0, x1 + 1, y1 + 1, v)
    end
  end
  for r, c in ipairs(e.conditions) do
    local y = gap + (r - 1) * (size + gap)
    for j, n in ipairs(e.set_sizes) do
      local s = vs.generate(e.name, c.name, n, i, seed)
      local x = left + (j - 1) * (size + gap)
      put(small(s.image), x, y)
      outline(s.meta.items[s.meta.target].box, x, y)
      if j == 1 then
        local t = small(s.template)
        put(t, floor((left - t.w) / 2), y + floor((size - t.h) / 2))
      end
    end
  end
  return lab.stack({ rgb[1].tensor, rgb[2].tensor, rgb[3].tensor }, 3)
end

return vs
