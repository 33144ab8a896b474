-- test_stimuli.lua -- the visual-search displays (lua/attnlab/tasks/visual_search_stimuli.lua) and
-- the rasterisers under them (lua/attnlab/raster.lua): the pixel sizes the originals' notebooks
-- compute, the glyphs' strokes where the notebooks put them, the lighting ramp, bar orientations
-- from image moments, the arc's radius, OpenCV's fixed-point rotation on a hand-worked case; every
-- display's geometry (set size, one target, items inside their cells, pixels outside the items
-- are background, each patch drawn where its box says); determinism by seed; the PNG round trip
-- through index.json; the oracle's item_at; errors.
--   ./attnlab tests/lua/test_stimuli.lua
local lab = require "attnlab"
local ffi = require "ffi"
local json = require "attnlab.json"
local vs = require "attnlab.tasks.visual_search_stimuli"
local raster = require "attnlab.raster"
local check = dofile("tests/lua/check.lua")("stimuli")

local function pixels(t)
  t = t:contiguous()
  return ffi.cast("float *", lab.C.al_data(t)), t        -- keep t alive with the pointer
end
local function max_diff(a, b)
  if a:numel() ~= b:numel() then return math.huge end
  return (a:double() - b:double()):abs():max():item()
end

---------------------------------------------------------------------------------------------------
-- the parameters: pixel sizes as the notebooks' int(deg * 30) expressions give them (computed with
-- Python from extras/experiment_stimuli_generators/gen_*.ipynb), set sizes and counts of C.2's table
---------------------------------------------------------------------------------------------------
local want = {
  curvature = { canvas = 339, cell = 56, item = 48, jitter = 8, grid = 6, sizes = { 8, 16, 32 }, per = 30, bg = 0 },
  lighting = { canvas = 198, cell = 49, item = 31, jitter = 18, grid = 4, sizes = { 1, 6, 12 }, per = 30, bg = 27 / 255 },
  cross = { canvas = 615, cell = 205, item = 177, jitter = 27, grid = 3, sizes = { 3, 6, 9 }, per = 36, bg = 1 },
  tl = { canvas = 615, cell = 205, item = 177, jitter = 27, grid = 3, sizes = { 3, 6, 9 }, per = 36, bg = 1 },
  orientation_homo = { canvas = 339, cell = 84, item = 69, jitter = 15, grid = 4, sizes = { 1, 4, 8, 12 }, per = 30, bg = 1 },
  orientation_hetero = { canvas = 339, cell = 84, item = 69, jitter = 15, grid = 4, sizes = { 1, 4, 8, 12 }, per = 30, bg = 1 },
  q_o = { canvas = 339, cell = 84, item = 69, jitter = 15, grid = 4, sizes = { 1, 6, 12 }, per = 30, bg = 1 },
}
check.ok(#vs.experiments == 7, "seven experiments")
for n, e in ipairs(vs.experiments) do
  local w = want[e.name]
  check.ok(w ~= nil and e.number == n, "experiment " .. n .. " is " .. tostring(e.name))
  if w then
    check.value(e.canvas == w.canvas and e.cell == w.cell and e.item == w.item and e.jitter == w.jitter,
      e.name .. ": canvas, cell, item and jitter in px", string.format("%d %d %d %d", e.canvas, e.cell, e.item, e.jitter))
    check.ok(e.grid[1] == w.grid and e.grid[2] == w.grid, e.name .. ": grid " .. w.grid .. " x " .. w.grid)
    check.ok(table.concat(e.set_sizes, ",") == table.concat(w.sizes, ",") and e.per_size == w.per, e.name .. ": set sizes and displays per size")
    check.ok(e.background == w.bg, e.name .. ": background")
    check.ok(#e.conditions == 2 and e.conditions[1].harder and not e.conditions[2].harder, e.name .. ": two conditions, the harder first")
    -- a patch at the largest jitter still ends inside its cell
    check.ok(e.jitter - 1 + e.item <= e.cell, e.name .. ": the jittered patch fits its cell")
  end
end

---------------------------------------------------------------------------------------------------
-- the glyphs (gen_intersection): strokes where the notebook's slices put them; the patch is the
-- 165 px glyph padded by 6 px, so glyph row r is patch row r + 6
---------------------------------------------------------------------------------------------------
local glyphs = vs._patches("tl")
local crosses = vs._patches("cross")
local function all_equal(c, x0, y0, x1, y1, v)
  for y = y0, y1 - 1 do for x = x0, x1 - 1 do if c:get(x, y) ~= v then return false, string.format("(%d, %d) = %g", x, y, c:get(x, y)) end end end
  return true
end
local function region_ok(c, x0, y0, x1, y1, v, what) local ok, why = all_equal(c, x0, y0, x1, y1, v) check.ok(ok, what, why) end
local T, L = glyphs.T_1, glyphs.L_1
check.ok(T.w == 177 and T.h == 177, "a glyph patch is 177 px")
region_ok(T, 6, 6, 171, 22, 0, "T: its bar is black on glyph rows 0..15, the glyph's whole width")
region_ok(T, 6 + 74, 6, 6 + 90, 171, 0, "T: its stem is black on glyph columns 74..89, all rows")
region_ok(T, 6, 30, 6 + 74, 171, 1, "T: white left of the stem, below the bar")
region_ok(T, 6 + 90, 30, 171, 171, 1, "T: white right of the stem, below the bar")
region_ok(T, 0, 0, 177, 6, 1, "T: the 6 px border is white")
region_ok(L, 6, 6, 6 + 16, 171, 0, "L: its stem is black on glyph columns 0..15")
region_ok(L, 6, 6 + 148, 171, 171, 0, "L: its foot is black on glyph rows 148..164")
region_ok(L, 6 + 16, 6, 171, 6 + 148, 1, "L: white above the foot, right of the stem")
region_ok(crosses.cross_1, 6, 6 + 49, 171, 6 + 66, 0, "cross: the bar crosses the whole glyph on rows 49..65")
region_ok(crosses.noncross_1, 6, 6 + 49, 6 + 82, 6 + 66, 0, "non-cross: the left arm on rows 49..65")
region_ok(crosses.noncross_1, 6 + 90, 6 + 49, 171, 6 + 66, 1, "non-cross: no right arm on rows 49..65")
region_ok(crosses.noncross_1, 6 + 82, 6 + 99, 171, 6 + 115, 0, "non-cross: the right arm on rows 99..114")
-- the views: as drawn, flipped top-bottom, transposed, transposed and flipped left-right
local function same(a, b) return max_diff(a.tensor, b.tensor) == 0 end
check.ok(same(glyphs.T_2, T:flip(0)) and same(glyphs.T_3, T:transpose()) and same(glyphs.T_4, T:transpose():flip(1)), "T: the four views")
region_ok(glyphs.T_2, 6, 155, 171, 171, 0, "T view 2 is upside down (its bar at the bottom)")
region_ok(glyphs.T_3, 6, 6, 22, 171, 0, "T view 3 is transposed (its bar on the left)")
region_ok(glyphs.L_2, 6, 6, 171, 6 + 16, 0, "L view 2: the corner at the top left")
region_ok(glyphs.L_4, 6, 6, 171, 6 + 16, 0, "L view 4: also the top-left corner (the notebook's list)")

---------------------------------------------------------------------------------------------------
-- the lighting discs (gen_lighting_dir): 15 grey levels 0, 17, ..., 238 inside the disc, the
-- bright side where the light comes from
---------------------------------------------------------------------------------------------------
local discs = vs._patches("lighting")
local function half_means(c, horizontal)
  local a, na, b, nb = 0, 0, 0, 0
  for y = 0, c.h - 1 do
    for x = 0, c.w - 1 do
      if (x - 15) ^ 2 + (y - 15) ^ 2 < 225 then
        local u = horizontal and x or y
        if u < 15 then a, na = a + c:get(x, y), na + 1 elseif u > 15 then b, nb = b + c:get(x, y), nb + 1 end
      end
    end
  end
  return a / na, b / nb
end
local top, bottom = half_means(discs.lit_top)
check.value(top > bottom + 0.4, "lit from above: the top half brighter", string.format("%.3f vs %.3f", top, bottom))
top, bottom = half_means(discs.lit_bottom)
check.value(bottom > top + 0.4, "lit from below: the bottom half brighter", string.format("%.3f vs %.3f", top, bottom))
local left, right = half_means(discs.lit_left, true)
check.value(left > right + 0.4, "lit from the left: the left half brighter", string.format("%.3f vs %.3f", left, right))
left, right = half_means(discs.lit_right, true)
check.value(right > left + 0.4, "lit from the right: the right half brighter", string.format("%.3f vs %.3f", left, right))
local levels, outside_ok = {}, true
for y = 0, 30 do
  for x = 0, 30 do
    local v = discs.lit_bottom:get(x, y)
    if (x - 15) ^ 2 + (y - 15) ^ 2 < 225 then levels[math.floor(v * 255 + 0.5)] = true
    elseif v ~= ffi.new("float[1]", 27 / 255)[0] then outside_ok = false end
  end
end
local list = {}
for l in pairs(levels) do list[#list + 1] = l end
table.sort(list)
local ramp = true
for k, l in ipairs(list) do ramp = ramp and l == 17 * (k - 1) end
check.value(#list == 15 and ramp, "the disc shows the 15-step ramp 0, 17, ..., 238", table.concat(list, " "))
check.ok(outside_ok, "outside the disc the patch is the background grey 27")

---------------------------------------------------------------------------------------------------
-- orientation from image moments: the bars (gen_categorization) and the curvature lines
---------------------------------------------------------------------------------------------------
-- the angle (degrees, y down) of the principal axis of weight(v) over the canvas
local function axis_angle(c, weight)
  local s, sx, sy = 0, 0, 0
  for y = 0, c.h - 1 do for x = 0, c.w - 1 do
    local m = weight(c:get(x, y)); s, sx, sy = s + m, sx + m * x, sy + m * y
  end end
  local mx, my = sx / s, sy / s
  local m20, m02, m11 = 0, 0, 0
  for y = 0, c.h - 1 do for x = 0, c.w - 1 do
    local m = weight(c:get(x, y))
    m20, m02, m11 = m20 + m * (x - mx) ^ 2, m02 + m * (y - my) ^ 2, m11 + m * (x - mx) * (y - my)
  end end
  return math.deg(0.5 * math.atan2(2 * m11, m20 - m02))
end
local function axis_error(got, want_deg)
  local d = (got - want_deg) % 180
  return math.min(d, 180 - d)
end
local bars = vs._patches("orientation_homo")
for _, a in ipairs{ 0, -20, -80, -60, -40, 20, 40, 60, 80 } do
  -- cv2's positive angle turns counter-clockwise on the screen: a vertical bar's direction (0, 1)
  -- (y down) becomes (sin a, cos a), so -20 leans the top to the right
  local want_deg = math.deg(math.atan2(math.cos(math.rad(a)), math.sin(math.rad(a))))
  local got = axis_angle(vs._patches("orientation_hetero")["bar_" .. a], function(v) return 1 - v end)
  check.value(axis_error(got, want_deg) < 1.5, "bar at " .. a .. " degrees: the moments' axis", string.format("%.2f vs %.2f", got, want_deg))
end
check.ok(bars["bar_-20"]:get(40, 10) < 0.5 and bars["bar_-20"]:get(28, 10) > 0.5, "the bar at -20 leans its top to the right (clockwise)")
local curv = vs._patches("curvature")
for _, a in ipairs{ -45, -90, -135, 180 } do
  local want_deg = math.deg(math.atan2(-math.sin(math.rad(a)), math.cos(math.rad(a))))
  local got = axis_angle(curv["line_" .. a], function(v) return v end)
  check.value(axis_error(got, want_deg) < 1.5, "curvature line rotated by " .. a .. ": the moments' axis", string.format("%.2f vs %.2f", got, want_deg))
end
-- the arc: radius 1 deg (30 px) about (24, -2), turned 180 degrees about (24, 24): centre (24, 50)
local n_ink, far = 0, 0
local sum_r = 0
for y = 0, 47 do for x = 0, 47 do
  if curv.curve_180:get(x, y) > 0.5 then
    local r = math.sqrt((x - 24) ^ 2 + (y - 50) ^ 2)
    n_ink, sum_r = n_ink + 1, sum_r + r
    if math.abs(r - 30) > 3.6 then far = far + 1 end
  end
end end
check.near(sum_r / n_ink, 30, 0.5, "the curve's pixels lie at 1 deg (30 px) from its centre on average")
check.ok(far == 0 and n_ink > 250, "every pixel of the curve is within its 7 px stroke of the arc", far .. " far of " .. n_ink)
-- the line is 36 x 6 px: rotated by 180 (an exact pixel move) it keeps its area
local line_area = 0
for y = 0, 47 do for x = 0, 47 do line_area = line_area + curv.line_180:get(x, y) end end
check.near(line_area, 36 * 6, 1e-4, "the curvature line covers 1.2 x 0.2 deg (36 x 6 px)")

-- Q and O: both the ring of radius 18 px; only the Q reaches past it at the bottom right
local qo = vs._patches("q_o")
local function dark_beyond(c)
  local k = 0
  for y = 0, c.h - 1 do for x = 0, c.w - 1 do
    if c:get(x, y) < 0.5 and math.sqrt((x - 34) ^ 2 + (y - 34) ^ 2) > 22 then k = k + 1 end
  end end
  return k
end
check.ok(qo.O:get(34 + 18, 34) < 0.2 and qo.O:get(34, 34 - 18) < 0.2 and qo.Q:get(34 - 18, 34) < 0.2, "Q and O: the ring at 18 px")
check.ok(dark_beyond(qo.O) == 0 and dark_beyond(qo.Q) > 20, "only the Q has a tail outside the ring", dark_beyond(qo.O) .. " / " .. dark_beyond(qo.Q))
local aa_levels = 0
for y = 0, 68 do for x = 0, 68 do local v = qo.O:get(x, y) if v > 0.02 and v < 0.98 then aa_levels = aa_levels + 1 end end end
check.ok(aa_levels > 50, "the Q and O strokes are anti-aliased (grey edge pixels)", aa_levels .. " grey pixels")

---------------------------------------------------------------------------------------------------
-- the authors' own patches (tests/fixtures/eccnet_patches.json: the notebooks' figures of their
-- items, one colour code per pixel): each grey level drawn here shows as one code there, and
-- brighter levels as brighter codes, so the two pictures are the same up to the colour map
---------------------------------------------------------------------------------------------------
local fixture = json.decode(assert(check.read_file("tests/fixtures/eccnet_patches.json"), "tests/fixtures/eccnet_patches.json is missing"))
local names = {}
for key in pairs(fixture.patches) do names[#names + 1] = key end
table.sort(names)
check.ok(#names == 10, "the fixture holds 10 of the authors' patches")
for _, key in ipairs(names) do
  local f = fixture.patches[key]
  local exp, pkey = key:match("^(.-)/(.+)$")
  local patch = vs._patches(exp)[pkey]
  local code_of, why = {}, nil
  if patch.w ~= f.n or patch.h ~= f.n then why = "size " .. patch.w .. " vs " .. f.n end
  for y = 0, f.n - 1 do
    for x = 0, f.n - 1 do
      local k = y * f.n + x
      local code = tonumber(f.codes:sub(2 * k + 1, 2 * k + 2), 16)
      local level = math.floor(patch:get(x, y) * 255 + 0.5)
      if code_of[level] and code_of[level] ~= code and not why then
        why = string.format("level %d shows as codes %d and %d (pixel %d, %d)", level, code_of[level], code, x, y)
      end
      code_of[level] = code
    end
  end
  local levels = {}
  for l in pairs(code_of) do levels[#levels + 1] = l end
  table.sort(levels)
  for i = 2, #levels do
    if code_of[levels[i]] < code_of[levels[i - 1]] and not why then why = "level " .. levels[i] .. " is darker there than level " .. levels[i - 1] end
  end
  check.value(why == nil and #levels >= 2, key .. ": every pixel as the authors drew it (" .. #levels .. " grey levels)", why)
end

---------------------------------------------------------------------------------------------------
-- raster: OpenCV's drawing and rotation on hand-worked cases
---------------------------------------------------------------------------------------------------
-- cv2.line of thickness 5: the quadrilateral's half width is 2.5 + 0.5 (odd thickness) = 3 px and
-- both its edges are painted, so a horizontal line covers 7 rows; the end caps are the midpoint
-- circle of radius 3, whose outermost column holds a single pixel
local cl = raster.canvas(21, 31):cv_line(5, 10, 25, 10, 1, 5)
local col_rows, cap = 0, 0
for y = 0, 20 do
  if cl:get(15, y) == 1 then col_rows = col_rows + 1 end
  if cl:get(2, y) == 1 then cap = cap + 1 end
end
check.ok(col_rows == 7 and cl:get(15, 7) == 1 and cl:get(15, 13) == 1 and cl:get(15, 6) == 0, "cv_line: thickness 5 paints rows 7..13")
check.ok(cap == 1 and cl:get(2, 10) == 1 and cl:get(1, 10) == 0, "cv_line: the round cap reaches 3 px past the end, one pixel wide there")
-- 1 x 2 image [0, 255] turned 180 degrees about (0.25, 0): destination x samples source 0.5 - x;
-- x = 0 falls halfway between the two pixels: (255 * 16 * 32 * 32 + 2^14) >> 15 = 128
local c = raster.canvas(1, 2)
c:set(1, 0, 1)
local r = c:rotate(180, 0.25, 0)
check.value(r:get(0, 0) == ffi.new("float[1]", 128 / 255)[0] and r:get(1, 0) == 0, "rotate: the halfway sample rounds 127.5 up to 128", r:get(0, 0) * 255 .. ", " .. r:get(1, 0) * 255)
-- a quarter turn about the centre of a 5 x 5 image moves a pixel right of the centre to above it
c = raster.canvas(5, 5)
c:set(3, 2, 1)
r = c:rotate(90, 2, 2)
local moved = r:get(2, 1) == 1
for y = 0, 4 do for x = 0, 4 do if not (x == 2 and y == 1) and r:get(x, y) ~= 0 then moved = false end end end
check.ok(moved, "rotate(90): counter-clockwise on the screen, pixels moved exactly")
-- strokes: an aliased horizontal segment of width 5 covers 5 rows; anti-aliased, grey edges
c = raster.canvas(11, 21):segment(3, 5, 17, 5, { width = 5 })
local rows = 0
for y = 0, 10 do if c:get(10, y) == 1 then rows = rows + 1 end end
check.ok(rows == 5 and c:get(10, 3) == 1 and c:get(10, 7) == 1 and c:get(10, 2) == 0, "segment: width 5 paints rows 3..7")
c = raster.canvas(11, 21):segment(3, 5, 17, 5, { width = 4, aa = true })
-- width 4 about row 5: row 4 (1 px off) fully inside, row 3's centre on the edge half covered, row 2 none
check.near(c:get(10, 4), 1, 1e-6, "anti-aliased segment: full coverage inside")
check.near(c:get(10, 3), 0.5, 1e-6, "anti-aliased segment: half coverage for a pixel centred on the edge")
check.near(c:get(10, 2), 0, 1e-6, "anti-aliased segment: none a pixel beyond")
-- an arc from 0 to 90 degrees (cv2's angles: clockwise on the screen, from +x toward +y)
c = raster.canvas(41, 41):arc(20, 20, 15, 0, 90, { width = 3 })
check.ok(c:get(35, 20) == 1 and c:get(20, 35) == 1 and c:get(31, 31) == 1 and c:get(20, 5) == 0 and c:get(5, 20) == 0 and c:get(20, 20) == 0,
  "arc: drawn from +x to +y only, at its radius")

---------------------------------------------------------------------------------------------------
-- every display's geometry, for every experiment, condition and set size (displays 1 and 2)
---------------------------------------------------------------------------------------------------
local function identity(item) return item.shape == "bar" and "bar" .. item.angle or item.shape end
local function inside(b, outer) return b[1] >= outer[1] and b[2] >= outer[2] and b[1] + b[3] <= outer[1] + outer[3] and b[2] + b[4] <= outer[2] + outer[4] end
for _, e in ipairs(vs.experiments) do
  local problems = {}
  local function bad(msg) if #problems < 5 then problems[#problems + 1] = msg end end
  local min_off, max_off, displays, quantised = math.huge, -1, 0, true
  local bg = ffi.new("float[1]", e.background)[0]
  local patches = vs._patches(e.name)
  for _, cond in ipairs(e.conditions) do
    for _, n in ipairs(e.set_sizes) do
      for i = 1, 2 do
        displays = displays + 1
        local s = vs.generate(e.name, cond.name, n, i)
        local m, where = s.meta, string.format("%s/%s %d_%d", e.name, cond.name, n, i)
        local p = pixels(s.image)
        if s.image:size(1) ~= e.canvas or s.image:size(2) ~= e.canvas then bad(where .. ": canvas size") end
        if #m.items ~= n then bad(where .. ": " .. #m.items .. " items") end
        if not m.items[m.target] then bad(where .. ": no target") end
        -- the target's identity occurs exactly once
        local tid, count = m.items[m.target] and identity(m.items[m.target]), 0
        for _, item in ipairs(m.items) do if identity(item) == tid then count = count + 1 end end
        if count ~= 1 then bad(where .. ": the target's shape occurs " .. count .. " times") end
        local cells, covered = {}, {}
        for _, item in ipairs(m.items) do
          local key = (item.cell[1] - 1) * e.grid[2] + item.cell[2]
          if cells[key] then bad(where .. ": two items in one cell") end
          cells[key] = true
          local cb = item.cell_box
          if cb[1] ~= (item.cell[2] - 1) * e.cell or cb[2] ~= (item.cell[1] - 1) * e.cell or cb[3] ~= e.cell then bad(where .. ": cell_box") end
          if not inside(item.box, cb) then bad(where .. ": an item leaves its cell") end
          if not inside(item.ink, item.box) then bad(where .. ": ink outside the box") end
          local ox, oy = item.box[1] - cb[1], item.box[2] - cb[2]
          if ox < 0 or oy < 0 or ox >= e.jitter or oy >= e.jitter then bad(where .. ": offset outside 0 .. jitter-1") end
          min_off, max_off = math.min(min_off, ox, oy), math.max(max_off, ox, oy)
          -- the patch is drawn where the box says, pixel for pixel
          local key_name = item.shape .. (item.angle and "_" .. item.angle or item.view and "_" .. item.view or "")
          local patch = patches[key_name]
          local b = item.box
          for y = 0, b[4] - 1 do
            for x = 0, b[3] - 1 do
              local v = p[(b[2] + y) * e.canvas + b[1] + x]
              if v ~= patch.p[y * patch.w + x] then bad(where .. ": pixel (" .. b[1] + x .. ", " .. b[2] + y .. ") differs from the " .. key_name .. " patch"); break end
              covered[(b[2] + y) * e.canvas + b[1] + x] = true
            end
          end
          -- the ink box is tight: ink on each of its edges, none outside it within the box
          local ib = item.ink
          local function ink_at(x, y) return p[y * e.canvas + x] ~= bg end
          local edge = { false, false, false, false }
          for y = b[2], b[2] + b[4] - 1 do
            for x = b[1], b[1] + b[3] - 1 do
              if ink_at(x, y) then
                if x < ib[1] or y < ib[2] or x >= ib[1] + ib[3] or y >= ib[2] + ib[4] then bad(where .. ": ink outside the ink box") end
                edge[1] = edge[1] or x == ib[1]; edge[2] = edge[2] or x == ib[1] + ib[3] - 1
                edge[3] = edge[3] or y == ib[2]; edge[4] = edge[4] or y == ib[2] + ib[4] - 1
              end
            end
          end
          if not (edge[1] and edge[2] and edge[3] and edge[4]) then bad(where .. ": the ink box is not tight") end
        end
        -- nothing drawn outside the items
        for k = 0, e.canvas * e.canvas - 1 do
          if not covered[k] and p[k] ~= bg then bad(where .. ": pixel " .. k .. " outside every item is not background"); break end
          if math.abs(p[k] * 255 - math.floor(p[k] * 255 + 0.5)) > 1e-3 then quantised = false end
        end
        -- the template is the target's patch
        local tb = m.items[m.target].box
        if s.template:size(1) ~= tb[4] or s.template:size(2) ~= tb[3]
          or max_diff(s.template, s.image:narrow(1, tb[2] + 1, tb[4]):narrow(2, tb[1] + 1, tb[3])) ~= 0 then
          bad(where .. ": the template is not the image inside the target's box")
        end
      end
    end
  end
  check.ok(#problems == 0, e.name .. ": " .. displays .. " displays: set size, one target, items inside their cells, patches where their boxes say, background elsewhere",
    table.concat(problems, "; "))
  check.ok(min_off == 0 and max_off == e.jitter - 1, e.name .. ": the jitter spans 0 .. " .. e.jitter - 1 .. " px", min_off .. " .. " .. max_off)
  check.ok(quantised, e.name .. ": every pixel is an 8-bit level k / 255")
end

-- the rules that pick the items' variants
local function angles_of(m, skip_target)
  local out = {}
  for j, item in ipairs(m.items) do if not (skip_target and j == m.target) then out[#out + 1] = item.angle end end
  return out
end
local curv_counts = {}
for _, a in ipairs(angles_of(vs.generate("curvature", "curve_in_lines", 8, 3).meta)) do curv_counts[a] = (curv_counts[a] or 0) + 1 end
check.ok(curv_counts[-45] == 2 and curv_counts[-90] == 2 and curv_counts[-135] == 2 and curv_counts[180] == 2,
  "curvature: the four rotations in turn, twice each among 8 items")
local homo = vs.generate("orientation_homo", "vertical_in_tilted", 12, 1).meta
local homo_ok = true
for j, a in ipairs(angles_of(homo)) do homo_ok = homo_ok and (j == homo.target and a == 0 or j ~= homo.target and a == -20) end
check.ok(homo_ok, "homogeneous: a vertical target among bars at -20")
for _, n in ipairs{ 4, 8, 12 } do
  for _, cond in ipairs{ { "tilted_in_mixed", -20 }, { "vertical_in_mixed", 0 } } do
    local m = vs.generate("orientation_hetero", cond[1], n, 2).meta
    local seen, most, target_angle = {}, 0, m.items[m.target].angle
    for _, a in ipairs(angles_of(m, true)) do seen[a] = (seen[a] or 0) + 1; most = math.max(most, seen[a]) end
    local kinds = 0
    for _ in pairs(seen) do kinds = kinds + 1 end
    local ok = target_angle == cond[2] and not seen[cond[2]] and (n - 1 <= 8 and most == 1 or n - 1 > 8 and kinds == 8 and most == 2)
    check.ok(ok, string.format("heterogeneous %s, %d items: distractor angles distinct (all 8, some twice, past 8), never the target's", cond[1], n))
  end
end

---------------------------------------------------------------------------------------------------
-- determinism: the same seed gives the same display; another seed or index another one
---------------------------------------------------------------------------------------------------
local a1 = vs.generate("tl", "l_in_ts", 9, 5, 7)
local a2 = vs.generate("tl", "l_in_ts", 9, 5, 7)
check.ok(max_diff(a1.image, a2.image) == 0 and json.encode(a1.meta) == json.encode(a2.meta), "same seed, same display and metadata")
vs.generate("tl", "t_in_ls", 6, 1, 7)                       -- drawing others in between changes nothing
check.ok(max_diff(vs.generate("tl", "l_in_ts", 9, 5, 7).image, a1.image) == 0, "a display does not depend on what was drawn before it")
check.ok(max_diff(vs.generate("tl", "l_in_ts", 9, 5, 8).image, a1.image) > 0, "another seed, another display")
check.ok(max_diff(vs.generate("tl", "l_in_ts", 9, 6, 7).image, a1.image) > 0, "another index, another display")
check.ok(json.encode(vs.generate("curvature", "line_in_curves", 32, 1).meta) ~= json.encode(vs.generate("curvature", "curve_in_lines", 32, 1).meta),
  "the two conditions draw different layouts")

---------------------------------------------------------------------------------------------------
-- item_at: the oracle's window against the boxes
---------------------------------------------------------------------------------------------------
local m = vs.generate("orientation_homo", "tilted_in_vertical", 4, 1).meta
local tb = m.items[m.target].ink
check.ok(vs.item_at(m, tb[1] + tb[3] / 2, tb[2] + tb[4] / 2) == m.target, "item_at: the target's centre finds the target")
local cb = m.items[m.target].cell_box
check.ok(vs.item_at(m, cb[1] + 1, cb[2] + 1) == m.target, "item_at: the cell box (eccNET's ground truth) by default")
check.ok(vs.item_at(m, cb[1] + 1, cb[2] + 1, { box = "ink", window = 2 }) == nil, "item_at with box = ink: the corner of the cell is empty")
local one = vs.generate("lighting", "top_down", 1, 1).meta
local other_row, other_col = one.items[1].cell[1] % 4, one.items[1].cell[2] % 4      -- 0-based: the next cell over
check.ok(vs.item_at(one, other_col * 49 + 24.5, other_row * 49 + 24.5) == nil, "item_at: nothing in a cell without an item")

---------------------------------------------------------------------------------------------------
-- files: write, read back through stb_image, index.json; a user's own set; regeneration
---------------------------------------------------------------------------------------------------
local root = check.tmpdir("stimuli")
vs.write{ root = root, experiments = { "lighting", "tl" }, per_size = 2, quiet = true }
local index = vs.read("tl", { root = root, per_size = 2, quiet = true })
check.ok(index.dir == root .. "/tl" and index.generator.seed == 1 and index.per_size == 2, "read: the index written, with its directory")
local n_displays, worst, templates_ok = 0, 0, true
for _, cond in ipairs(index.conditions) do
  for _, meta in ipairs(cond.stimuli) do
    n_displays = n_displays + 1
    local img, tmpl = vs.load(index, meta)
    local fresh = vs.generate("tl", cond.name, meta.set_size, meta.i)
    worst = math.max(worst, max_diff(img, fresh.image))
    templates_ok = templates_ok and max_diff(tmpl, fresh.template) <= 0.5 / 255
    templates_ok = templates_ok and json.encode(meta.items) == json.encode(fresh.meta.items) and meta.target == fresh.meta.target
  end
end
check.ok(n_displays == 2 * 3 * 2, "index.json lists 2 conditions x 3 set sizes x 2 displays", tostring(n_displays))
check.value(worst <= 0.5 / 255, "PNG round trip: the loaded image equals the generated one to half a level", string.format("max diff %.3g", worst))
check.ok(templates_ok, "the targets' PNGs and the metadata read back as generated")
check.ok(check.read_file(root .. "/tl/l_in_ts/9_2.png") ~= nil and index.conditions[1].stimuli[1].target_image:match("^l_in_ts/target_L_%d%.png$"),
  "files at <experiment>/<condition>/<setsize>_<i>.png and <condition>/target_<key>.png")
-- another seed: the set is written again
local again = vs.read("lighting", { root = root, seed = 3, per_size = 2, quiet = true })
check.ok(again.generator.seed == 3, "read: a set written with another seed is regenerated")
check.fails(function() vs.read("cross", { root = root, generate = false }) end, "make_stimuli.lua", "read without generate: a missing set is an error naming the script")
-- a user's own display: any directory with an index.json (no generator) and PNGs (colour is fine)
local own = root .. "/own"
os.execute("mkdir -p '" .. own .. "'")
local rgb = lab.zeros{ 20, 30, 3 }
rgb:narrow(1, 5, 6):narrow(2, 11, 6):fill_(1)
lab.image.save(own .. "/shelf.png", rgb)
lab.image.save(own .. "/item.png", lab.ones{ 6, 6 })
check.write_file(own .. "/index.json", json.encode{ name = "own", canvas = 30, conditions = { { name = "mine", stimuli = {
  { file = "shelf.png", target_image = "item.png", target = 1, set_size = 1, i = 1,
    items = { { box = { 10, 4, 6, 6 }, ink = { 10, 4, 6, 6 }, cell = { 1, 1 }, cell_box = { 0, 0, 30, 20 }, shape = "square" } } } } } } })
local own_index = vs.read(own)
local own_img, own_tmpl = vs.load(own_index, own_index.conditions[1].stimuli[1])
check.ok(own_img:dim() == 2 and own_img:size(1) == 20 and own_img:size(2) == 30 and own_tmpl:size(1) == 6, "read/load: a user's own colour PNG comes back grey (H, W)")
check.near(own_img:get(7, 12), 1, 1e-6, "load_image: the mean of R, G, B")
check.ok(vs.item_at(own_index.conditions[1].stimuli[1], 13, 7, { box = "box" }) == 1, "item_at on a user's own metadata")

-- the script: one experiment, one display per set size, and its contact sheet
local ATTNLAB = os.getenv("ATTNLAB") or "./attnlab"
local script_root = check.tmpdir("make_stimuli")
local ok = os.execute(string.format("'%s' run experiments/make_stimuli.lua experiments=q_o per_size=1 root='%s' sheets='%s/sheets' > /dev/null",
  ATTNLAB, script_root, script_root))
local script_index = json.decode(check.read_file(script_root .. "/q_o/index.json") or "{}")
check.ok((ok == 0 or ok == true) and script_index.per_size == 1 and #script_index.conditions == 2 and #script_index.conditions[1].stimuli == 3
  and check.read_file(script_root .. "/q_o/q_in_os/12_1.png") and check.read_file(script_root .. "/sheets/q_o.png"),
  "make_stimuli.lua writes the displays, index.json and the contact sheet")
local bad_rc = os.execute(string.format("'%s' run experiments/make_stimuli.lua colour=1 > /dev/null 2>&1", ATTNLAB))
check.ok(bad_rc ~= 0 and bad_rc ~= true, "make_stimuli.lua: an unknown option is an error")

-- the contact sheet: RGB, the target's box in red
local sheet = vs.contact_sheet("q_o")
check.ok(sheet:dim() == 3 and sheet:size(3) == 3, "contact_sheet: an (H, W, 3) image")
local red = 0
local sp = pixels(sheet)
for k = 0, sheet:size(1) * sheet:size(2) - 1 do if sp[3 * k] == 1 and sp[3 * k + 1] == 0 and sp[3 * k + 2] == 0 then red = red + 1 end end
check.ok(red > 100, "contact_sheet: the targets outlined in red", red .. " red pixels")

---------------------------------------------------------------------------------------------------
-- errors name the function, the argument and what was expected
---------------------------------------------------------------------------------------------------
check.fails(function() vs.generate("colour", "x", 1, 1) end, "unknown experiment \"colour\" (curvature, lighting", "an unknown experiment lists the valid ones")
check.fails(function() vs.generate("tl", "x_in_ys", 3, 1) end, "experiment tl has no condition \"x_in_ys\" (l_in_ts, t_in_ls)", "an unknown condition")
check.fails(function() vs.generate("tl", "l_in_ts", 10, 1) end, "set_size must be an integer from 1 to 9", "a set size larger than the grid")
check.fails(function() vs.generate("tl", "l_in_ts", 3, 0) end, "i must be a positive integer", "display index 0")
check.fails(function() vs.generate("tl", "l_in_ts", 3, 1, -1) end, "seed must be a non-negative integer", "a negative seed")
check.fails(function() vs.write{ root = root, colour = true } end, "unknown option \"colour\"", "write: an unknown option")
check.fails(function() vs.write{ root = root, per_size = 0.5 } end, "per_size must be a positive integer", "write: a fractional per_size")
check.fails(function() vs.item_at(m, 1, 1, { box = "circle" }) end, "box must be \"cell\", \"box\" or \"ink\"", "item_at: an unknown box")
check.fails(function() vs.read(root .. "/nowhere") end, "no index.json in", "read: a directory without an index")
check.fails(function() vs.contact_sheet("tl", { shrink = 0 }) end, "shrink must be a positive integer", "contact_sheet: shrink 0")
check.fails(function() raster.canvas(0, 5) end, "raster.canvas: size must be two positive integers", "raster: an empty canvas")
check.fails(function() raster.canvas(5, 5):segment(0, 0, 1, 1, { width = 2, colour = 1 }) end, "unknown option 'colour' (width, value, aa)", "raster: a stroke's unknown option")
check.fails(function() raster.canvas(5, 5):fill_rect(0, 0, 1, 1, 2) end, "value must be a number in [0, 1]", "raster: a value out of range")

check.cleanup()
os.exit(check.report())
