-- attnlab.tasks.visual_search_diet: the "developmental diet" the visual-search study trains its CNN
-- on, in place of the ImageNet that eccNET's VGG16 saw (no pretrained weights exist here).
--
-- A diet image is a small grey patch (32 x 32 by default) holding one thing, drawn with
-- attnlab.raster on a random background at a random contrast polarity:
--   strokes   a straight line, or a circular arc (curvature);
--   junctions a T, an L or a + (intersections), made of strokes;
--   discs     a disc shaded by a linear ramp, brighter toward the light (lighting direction).
-- Each comes with a class: its category (line, arc, T, L, cross, disc) times one of 8 bins of its
-- pose (a line's orientation, a junction's or an arc's rotation, a disc's light direction), 48
-- classes in all.  The study trains the CNN to tell these classes apart (docs/visual_search.md says
-- why that objective): what the features become then depends on how often each class and pose
-- occurs, which the biases below set.
--
-- The biases (each a fraction in [0, 1]):
--   toplit    of the discs, lit from above (within 15 degrees); the others from anywhere;
--   vertical  of the lines, vertical; of the junctions, in a cardinal pose (0, 90, 180, 270, within
--             5 degrees); the others at any angle;
--   curved    of the strokes, arcs (the rest straight lines);
--   crosses   of the junctions, crosses (the rest T and L, half each).
-- reversed = true turns each bias the other way: every picture is drawn a quarter turn
-- counter-clockwise (so horizontal edges and discs lit from the left are the frequent ones), and
-- the fractions curved and crosses become 1 - curved and 1 - crosses.
--
-- Angles are in degrees clockwise on the screen from "up" (y grows downward): a pose of 0 is a
-- vertical line, an upright T (bar on top), an L as the letter, an arc bulging upward, a disc lit
-- from above.  Randomness comes from lab's generator only (lab.rand), so a resumed run draws the
-- same images.
local lab = require "attnlab"
local core = require "attnlab.core"
local raster = require "attnlab.raster"
local args = require "attnlab.args"
local ffi = require "ffi"

local floor, sin, cos, rad, min, max = math.floor, math.sin, math.cos, math.rad, math.min, math.max

local diet = {}

diet.categories = { "line", "arc", "T", "L", "cross", "disc" }
diet.bins = 8
diet.classes = #diet.categories * diet.bins
diet.defaults = { size = 32, toplit = 0.6, vertical = 0.5, curved = 0.25, crosses = 0.2, reversed = false }
-- the share of each kind of picture (not a bias the study varies)
diet.mix = { strokes = 0.4, junctions = 0.35, discs = 0.25 }
local DRAWS = 16            -- uniforms each image consumes (a fixed count: image i uses row i)

local CATEGORY = {}
for i, c in ipairs(diet.categories) do CATEGORY[c] = i end

-- Errors name the function the user called and point at the user's line (lab.raise skips every
-- frame under lua/attnlab/).
local function raise(fn, msg) lab.raise("visual_search_diet." .. fn .. ": " .. msg) end
-- an options table whose keys are all in the list valid (the shared checker, named "visual_search_diet.<fn>")
local function check_keys(fn, opts, valid) args.check_options(opts, "visual_search_diet." .. fn, valid) end

local function check_fraction(fn, k, v)
  if type(v) ~= "number" or v ~= v or v < 0 or v > 1 then
    raise(fn, string.format("%s must be a fraction in [0, 1] (got %s)", k, args.show(v)))
  end
end

-- the options of every function here: a table of keys of diet.defaults, the missing ones filled in
function diet.options(opts, fn)
  fn = fn or "options"
  if opts ~= nil and (type(opts) ~= "table" or lab.is_tensor(opts)) then
    raise(fn, "options must be a table (got " .. args.typename(opts) .. ")")
  end
  opts = opts or {}
  if opts._checked then return opts end
  local keys = {}
  for k in pairs(diet.defaults) do keys[#keys + 1] = k end
  table.sort(keys)
  check_keys(fn, opts, keys)
  local o = {}
  for k, v in pairs(diet.defaults) do
    if opts[k] == nil then o[k] = v else o[k] = opts[k] end
  end
  for _, k in ipairs{ "toplit", "vertical", "curved", "crosses" } do check_fraction(fn, k, o[k]) end
  if type(o.reversed) ~= "boolean" then raise(fn, "reversed must be true or false (got " .. args.show(o.reversed) .. ")") end
  if type(o.size) ~= "number" or o.size ~= floor(o.size) or o.size < 16 or o.size > 256 then
    raise(fn, "size must be an integer number of pixels from 16 to 256 (got " .. args.show(o.size) .. ")")
  end
  o._checked = true
  return o
end

-- direction of a pose angle (degrees clockwise from up) on the screen
local function dir(theta)
  local t = rad(theta)
  return sin(t), -cos(t)
end

-- the bin (0 .. 7) of a pose angle, for a shape that repeats every `period` degrees; bin 0 is
-- centred on 0 degrees
local function bin_of(theta, period)
  local w = period / diet.bins
  return floor(((theta + w / 2) % period) / w) % diet.bins
end

-- One image from 16 uniforms u[1..16] (a list); returns the canvas, its class (1 .. 48) and a
-- description {category =, pose =}.  diet.draw is what diet.batch calls per image.
function diet.draw(u, opts)
  if not (type(opts) == "table" and opts._checked) then opts = diet.options(opts, "draw") end
  if type(u) ~= "table" or #u < DRAWS then raise("draw", "u must be a list of " .. DRAWS .. " uniforms in [0, 1)") end
  for i = 1, DRAWS do
    if type(u[i]) ~= "number" or not (u[i] >= 0 and u[i] <= 1) then
      raise("draw", string.format("u[%d] must be a number in [0, 1) (got %s)", i, args.show(u[i])))
    end
  end
  local P = opts.size
  local S = P / 32                                   -- lengths below are for a 32 px patch
  local curved, crosses = opts.curved, opts.crosses
  local turn = 0
  if opts.reversed then curved, crosses, turn = 1 - curved, 1 - crosses, -90 end

  -- background and ink: a random grey, and a value at least 0.3 away on a random side
  local bg = u[1]
  local contrast = 0.35 + 0.5 * u[2]
  local ink = u[3] < 0.5 and bg + contrast or bg - contrast
  if ink > 1 or ink < 0 then ink = u[3] < 0.5 and bg - contrast or bg + contrast end
  ink = min(1, max(0, ink))
  if math.abs(ink - bg) < 0.3 then ink = bg < 0.5 and 1 or 0 end
  local c = raster.canvas(P, P, bg)
  local cx = (P - 1) / 2 + (u[4] - 0.5) * 6 * S
  local cy = (P - 1) / 2 + (u[5] - 0.5) * 6 * S
  local width = (1.5 + 5 * u[6]) * S
  local stroke = { width = width, value = ink, aa = true }
  local function seg(x0, y0, x1, y1) c:segment(x0, y0, x1, y1, stroke) end

  local category, pose
  local kind = u[7]
  if kind < diet.mix.strokes then
    if u[8] < curved then
      category = "arc"
      pose = 360 * u[9]
      local r = (6 + 8 * u[10]) * S
      local span = 60 + 140 * u[11]
      local dx, dy = dir(pose + turn)
      -- centred so that the middle between the apex and the chord sits at (cx, cy)
      local back = r * (1 + cos(rad(span / 2))) / 2
      local a = pose + turn - 90                     -- the cv2 angle of the bulge's direction
      c:arc(cx - dx * back, cy - dy * back, r, a - span / 2, a + span / 2, stroke)
    else
      category = "line"
      if u[9] < opts.vertical then pose = (u[10] - 0.5) * 10 else pose = 180 * u[10] end
      local h = (6 + 7 * u[11]) * S
      local dx, dy = dir(pose + turn)
      seg(cx - dx * h, cy - dy * h, cx + dx * h, cy + dy * h)
    end
  elseif kind < diet.mix.strokes + diet.mix.junctions then
    local j = u[8]
    if j < crosses then category = "cross"
    elseif j < crosses + (1 - crosses) / 2 then category = "T"
    else category = "L" end
    if u[9] < opts.vertical then pose = 90 * floor(4 * u[10]) + (u[11] - 0.5) * 10 else pose = 360 * u[10] end
    local a = (4.5 + 6 * u[12]) * S                  -- half an arm's length
    local ux, uy = dir(pose + turn)                  -- "up" of the glyph
    local rx, ry = dir(pose + turn + 90)             -- its "right"
    if category == "cross" then
      seg(cx - ux * a, cy - uy * a, cx + ux * a, cy + uy * a)
      seg(cx - rx * a, cy - ry * a, cx + rx * a, cy + ry * a)
    elseif category == "T" then
      local jx, jy = cx + ux * a, cy + uy * a        -- the junction, at the top
      seg(jx - rx * a, jy - ry * a, jx + rx * a, jy + ry * a)
      seg(jx, jy, jx - 2 * ux * a, jy - 2 * uy * a)
    else
      local kx, ky = cx - (ux + rx) * a, cy - (uy + ry) * a   -- the corner, bottom left
      seg(kx, ky, kx + 2 * ux * a, ky + 2 * uy * a)
      seg(kx, ky, kx + 2 * rx * a, ky + 2 * ry * a)
    end
  else
    category = "disc"
    if u[8] < opts.toplit then pose = (u[9] - 0.5) * 30 else pose = 360 * u[9] end
    local r = (5 + 7 * u[10]) * S
    local mean = 0.3 + 0.4 * u[11]
    local amp = 0.25 + 0.25 * u[12]
    local lx, ly = dir(pose + turn)
    c:fill_disc(cx, cy, r, function(x, y)
      return min(1, max(0, mean + amp * ((x - cx) * lx + (y - cy) * ly) / r))
    end)
  end
  -- the class describes the picture as drawn: the turn is part of its pose
  local drawn = (pose + turn) % 360
  local period = ({ line = 180, cross = 90 })[category] or 360
  local class = (CATEGORY[category] - 1) * diet.bins + bin_of(drawn, period) + 1
  return c, class, { category = category, pose = drawn }
end

-- diet.batch(n [, opts]): n images (n, 1, size, size) float32 in [0, 1] and their classes (n)
-- int64 in 1 .. diet.classes, drawn with lab's generator.
function diet.batch(n, opts)
  if type(n) ~= "number" or n ~= floor(n) or n < 1 then raise("batch", "n must be a positive integer (got " .. args.show(n) .. ")") end
  opts = diet.options(opts, "batch")
  local P = opts.size
  local u = lab.rand{ n, DRAWS }:to("float64"):totable()
  local x = core.host_full({ n, 1, P, P }, 0, "batch")   -- drawn from Lua: on the CPU
  local px = ffi.cast("float *", core.host_data(x, "batch"))
  local labels = {}
  for i = 1, n do
    local c, class = diet.draw(u[i], opts)
    ffi.copy(px + (i - 1) * P * P, c.p, P * P * 4)
    labels[i] = class
  end
  return x, lab.tensor(labels, "int64")
end

-- diet.describe_class(class): the category and the pose bin's centre in degrees of a class.
function diet.describe_class(class)
  if type(class) ~= "number" or class ~= floor(class) or class < 1 or class > diet.classes then
    raise("describe_class", "class must be an integer from 1 to " .. diet.classes .. " (got " .. args.show(class) .. ")")
  end
  local cat = diet.categories[floor((class - 1) / diet.bins) + 1]
  local b = (class - 1) % diet.bins
  local period = ({ line = 180, cross = 90 })[cat] or 360
  return { category = cat, pose = b * period / diet.bins }
end

-- diet.sheet(opts [, {rows = 6, cols = 12}]): a (rows size + gaps, cols size + gaps) grey image of
-- diet images drawn with lab's generator, for the docs.
function diet.sheet(opts, layout)
  opts = diet.options(opts, "sheet")
  layout = layout or {}
  if type(layout) ~= "table" or lab.is_tensor(layout) then raise("sheet", "layout must be a table {rows =, cols =} (got " .. args.typename(layout) .. ")") end
  check_keys("sheet", layout, { "rows", "cols" })
  local rows, cols = layout.rows or 6, layout.cols or 12
  for _, v in ipairs{ { rows, "rows" }, { cols, "cols" } } do
    if type(v[1]) ~= "number" or v[1] ~= floor(v[1]) or v[1] < 1 or v[1] > 64 then
      raise("sheet", v[2] .. " must be an integer from 1 to 64 (got " .. args.show(v[1]) .. ")")
    end
  end
  local P, gap = opts.size, 2
  local x = diet.batch(rows * cols, opts)
  local out = raster.canvas(rows * (P + gap) + gap, cols * (P + gap) + gap, 0.5)
  for r = 0, rows - 1 do
    for k = 0, cols - 1 do
      local img = raster.from_tensor(x:select(1, r * cols + k + 1):select(1, 1))
      out:blit(img, gap + k * (P + gap), gap + r * (P + gap))
    end
  end
  return out.tensor
end

return diet
