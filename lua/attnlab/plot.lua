-- attnlab.plot: the figures a study writes beside its report, as PNGs the workbench draws itself:
-- line charts (curves over training) and heatmaps (a matrix with its scale), on a small raster
-- canvas with a 3 x 5 pixel font.  No plotting library and no display: a study's report.md links
-- the files, and a test can read them back with lab.image.load.
--
--   lab.plot.lines("loss.png", { series = { { xs = steps, ys = losses, label = "loss" } }, ymin = 0 })
--   lab.plot.heatmap("attribution.png", matrix, row_labels, col_labels)
--   local c = lab.plot.canvas(200, 100); c:line(0, 0, 199, 99, { 1, 0, 0 }); c:save("x.png")
--
-- The viewer (viewer/) draws the live pictures with a real font; this module is for the files a
-- run leaves behind, so it stays plain Lua over one float buffer.
local lab = require "attnlab"
local core, args = require "attnlab.core", require "attnlab.args"
local ffi = require "ffi"

local plot = {}

local function raise(msg) core.raise("plot." .. msg) end
-- the argument checks every lab function shares (lua/attnlab/args.lua), named "plot.<fn>"
local function number(v, fn, what, range) return args.check_number(v, "plot." .. fn, what, range) end
local FINITE = { finite = true }
-- a colour: {r, g, b}, each a number in [0, 1]
local UNIT = { 0, 1 }
local function check_rgb(rgb, fn, what)
  if type(rgb) ~= "table" or core.is_tensor(rgb) or #rgb ~= 3 then
    raise(string.format("%s: %s must be a colour {r, g, b} of numbers in [0, 1] (got %s)", fn, what, args.show(rgb)))
  end
  for i = 1, 3 do number(rgb[i], fn, what .. "[" .. i .. "]", UNIT) end
  return rgb
end

-- 3 x 5 glyphs, rows top to bottom; capitals are drawn as the small letters
local FONT = {
  ["0"] = "111101101101111", ["1"] = "010110010010111", ["2"] = "111001111100111", ["3"] = "111001111001111",
  ["4"] = "101101111001001", ["5"] = "111100111001111", ["6"] = "111100111101111", ["7"] = "111001010010010",
  ["8"] = "111101111101111", ["9"] = "111101111001111",
  a = "000011101101011", b = "100100111101111", c = "000111100100111", d = "001001111101111",
  e = "111101111100111", f = "011100110100100", g = "111101111001111", h = "100100111101101",
  i = "010000010010010", j = "001000001101111", k = "100101110101101", l = "110010010010111",
  m = "000111111101101", n = "000110101101101", o = "000111101101111", p = "111101111100100",
  q = "111101111001001", r = "000111100100100", s = "011100010001110", t = "010111010010011",
  u = "000101101101111", v = "000101101101010", w = "000101101111111", x = "000101010101000",
  y = "101101111001111", z = "111001010100111",
  ["."] = "000000000000010", [","] = "000000000010100", ["-"] = "000000111000000", ["+"] = "000010111010000",
  ["="] = "000111000111000", ["%"] = "101001010100101", ["("] = "010100100100010", [")"] = "010001001001010",
  ["/"] = "001001010100100", [":"] = "000010000010000", ["_"] = "000000000000111", [" "] = "000000000000000",
}
plot.GLYPHS = FONT

-- Colours: RGB triples in [0, 1].  PALETTE: ten distinct ones (matplotlib's tab10), for series.
plot.PALETTE = { { 0.12, 0.47, 0.71 }, { 1.0, 0.5, 0.05 }, { 0.17, 0.63, 0.17 }, { 0.84, 0.15, 0.16 },
                 { 0.58, 0.4, 0.74 }, { 0.55, 0.34, 0.29 }, { 0.89, 0.47, 0.76 }, { 0.5, 0.5, 0.5 },
                 { 0.74, 0.74, 0.13 }, { 0.09, 0.75, 0.81 } }
local GREY, BLACK = { 0.75, 0.75, 0.75 }, { 0, 0, 0 }

---------------------------------------------------------------------------------------------------
-- the canvas: w x h RGB pixels, white to start with
---------------------------------------------------------------------------------------------------
local Canvas = {}
Canvas.__index = Canvas
plot.Canvas = Canvas

function plot.canvas(w, h)
  if type(w) ~= "number" or type(h) ~= "number" or w < 1 or h < 1 or w ~= math.floor(w) or h ~= math.floor(h)
     or w * h > 2 ^ 26 then
    raise(string.format("canvas: width and height must be positive integers, at most 2^26 pixels in all (got %s x %s)", tostring(w), tostring(h)))
  end
  local c = setmetatable({ w = w, h = h, px = ffi.new("float[?]", w * h * 3) }, Canvas)
  for i = 0, w * h * 3 - 1 do c.px[i] = 1 end
  return c
end

-- The drawing itself, on arguments already checked: the public methods below check theirs once
-- and the charts call these (a per-pixel check would cost more than the pixel).
local function put(c, x, y, rgb)
  x, y = math.floor(x + 0.5), math.floor(y + 0.5)
  if x < 0 or y < 0 or x >= c.w or y >= c.h then return end
  local i = (y * c.w + x) * 3
  c.px[i], c.px[i + 1], c.px[i + 2] = rgb[1], rgb[2], rgb[3]
end
local function fill(c, x, y, w, h, rgb)
  for yy = math.max(0, math.floor(y)), math.min(c.h, math.floor(y + h)) - 1 do
    for xx = math.max(0, math.floor(x)), math.min(c.w, math.floor(x + w)) - 1 do put(c, xx, yy, rgb) end
  end
end
-- The part of the segment inside the canvas (with a 2-pixel border), by Liang and Barsky's
-- clipping, or nil: a line to a far-away point is drawn in as many steps as it has pixels on the
-- canvas, not one per pixel of its whole length.
local function clip(c, x0, y0, x1, y1)
  local t0, t1, dx, dy = 0, 1, x1 - x0, y1 - y0
  local function edge(p, q)   -- the segment must satisfy p t <= q
    if p == 0 then return q >= 0 end
    local r = q / p
    if p < 0 then
      if r > t1 then return false end
      if r > t0 then t0 = r end
    else
      if r < t0 then return false end
      if r < t1 then t1 = r end
    end
    return true
  end
  if not (edge(-dx, x0 + 2) and edge(dx, c.w + 2 - x0) and edge(-dy, y0 + 2) and edge(dy, c.h + 2 - y0)) then return nil end
  return x0 + t0 * dx, y0 + t0 * dy, x0 + t1 * dx, y0 + t1 * dy
end
local function segment(c, x0, y0, x1, y1, rgb, thick)
  x0, y0, x1, y1 = clip(c, x0, y0, x1, y1)
  if not x0 then return end
  local n = math.max(1, math.ceil(math.max(math.abs(x1 - x0), math.abs(y1 - y0))))
  for i = 0, n do
    local x, y = x0 + (x1 - x0) * i / n, y0 + (y1 - y0) * i / n
    if thick and thick > 1 then fill(c, x - 1, y - 1, 2, 2, rgb) else put(c, x, y, rgb) end
  end
end
local function glyphs(c, x, y, s, rgb, scale)
  for ci = 1, #s do
    local g = FONT[s:sub(ci, ci):lower()] or FONT[" "]
    for r = 0, 4 do
      for col = 0, 2 do
        if g:sub(r * 3 + col + 1, r * 3 + col + 1) == "1" then
          fill(c, x + (ci - 1) * 4 * scale + col * scale, y + r * scale, scale, scale, rgb)
        end
      end
    end
  end
  return #s * 4 * scale
end

-- one pixel (x, y from the top left, rounded; outside the canvas: nothing).  Every method checks
-- its numbers and colours and names itself as plot.Canvas:<method>.
function Canvas:set(x, y, rgb)
  number(x, "Canvas:set", "x", FINITE); number(y, "Canvas:set", "y", FINITE)
  put(self, x, y, check_rgb(rgb, "Canvas:set", "rgb"))
end

-- the colour at (x, y), as {r, g, b} (tests read the picture back with it)
function Canvas:get(x, y)
  for _, p in ipairs{ { x, "x", self.w }, { y, "y", self.h } } do
    local v = p[1]
    if type(v) ~= "number" or v ~= math.floor(v) or v < 0 or v >= p[3] then
      raise(string.format("Canvas:get: %s must be an integer from 0 to %d (got %s)", p[2], p[3] - 1, args.show(v)))
    end
  end
  local i = (y * self.w + x) * 3
  return { self.px[i], self.px[i + 1], self.px[i + 2] }
end

function Canvas:rect(x, y, w, h, rgb)
  for _, p in ipairs{ { x, "x" }, { y, "y" }, { w, "w" }, { h, "h" } } do number(p[1], "Canvas:rect", p[2], FINITE) end
  fill(self, x, y, w, h, check_rgb(rgb, "Canvas:rect", "rgb"))
end

-- a straight line, one pixel wide, or two with thick > 1
function Canvas:line(x0, y0, x1, y1, rgb, thick)
  for _, p in ipairs{ { x0, "x0" }, { y0, "y0" }, { x1, "x1" }, { y1, "y1" } } do number(p[1], "Canvas:line", p[2], FINITE) end
  if thick ~= nil then number(thick, "Canvas:line", "thick", FINITE) end
  segment(self, x0, y0, x1, y1, check_rgb(rgb, "Canvas:line", "rgb"), thick)
end

-- text in the 3 x 5 font, each font pixel `scale` (2) pixels wide; characters the font lacks are
-- drawn as a blank.  Returns the width drawn.
function Canvas:text(x, y, s, rgb, scale)
  number(x, "Canvas:text", "x", FINITE); number(y, "Canvas:text", "y", FINITE)
  if type(s) ~= "string" and type(s) ~= "number" then raise("Canvas:text: s must be a string (got " .. args.typename(s) .. ")") end
  scale = args.opt_number(scale, 2, "plot.Canvas:text", "scale", { 1, 64 })
  return glyphs(self, x, y, tostring(s), check_rgb(rgb, "Canvas:text", "rgb"), scale)
end

-- the canvas as a (h, w, 3) float32 tensor in [0, 1], the layout lab.image.save takes
function Canvas:tensor()
  local t = core.host_full({ self.h, self.w, 3 }, 0, "Canvas:tensor")   -- an image: on the CPU
  ffi.copy(core.host_data(t, "Canvas:tensor"), self.px, self.w * self.h * 3 * 4)
  return t
end

function Canvas:save(path) lab.image.save(path, self:tensor()) end

---------------------------------------------------------------------------------------------------
-- charts
---------------------------------------------------------------------------------------------------
local function fmt_num(v)
  if math.abs(v) >= 1e12 then return string.format("%.2g", v) end   -- (beyond what %d takes)
  if math.abs(v) >= 1000 then return string.format("%dk", math.floor(v / 1000 + 0.5)) end
  if v == math.floor(v) then return string.format("%d", v) end
  return (string.format("%.2f", v):gsub("0+$", ""))
end

-- an options table of the chart fn: a table whose keys are all in valid (the shared checker)
local function check_options(fn, o, valid)
  if type(o) ~= "table" or core.is_tensor(o) then raise(fn .. ": options must be a table (got " .. args.typename(o) .. ")") end
  args.check_options(o, "plot." .. fn, valid)
end

local LINES_OPTIONS = { "height", "hlines", "series", "title", "width", "xmax", "xmin", "ymax", "ymin" }
local SERIES_KEYS = { "colour", "label", "thick", "xs", "ys" }

-- A line chart written to path (PNG).  o.series: a list of {xs =, ys =, colour =, label =, thick =}
-- (colour defaults to the palette in order; thick 2; a one-point series is a square); o.xmin /
-- o.xmax / o.ymin / o.ymax: the axes (defaults: the data's range, y from 0 when the data are all
-- >= 0); o.hlines: dashed horizontal lines {{y =, colour =}} (chance levels, baselines); o.title;
-- o.width, o.height (720 x 420).  Values outside the y range are drawn at its edge.
function plot.lines(path, o)
  if type(path) ~= "string" then raise("lines: path must be a string (got " .. type(path) .. ")") end
  check_options("lines", o, LINES_OPTIONS)
  if type(o.series) ~= "table" or core.is_tensor(o.series) then raise("lines: series must be a list of {xs =, ys =} tables") end
  local lo_x, hi_x, lo_y, hi_y = math.huge, -math.huge, math.huge, -math.huge
  for i, s in ipairs(o.series) do
    if type(s) ~= "table" or type(s.xs) ~= "table" or type(s.ys) ~= "table" or #s.xs ~= #s.ys then
      raise(string.format("lines: series[%d] needs xs and ys lists of one length", i))
    end
    args.check_options(s, string.format("plot.lines: series[%d]", i), SERIES_KEYS)
    if s.colour ~= nil then check_rgb(s.colour, "lines", string.format("series[%d].colour", i)) end
    if s.thick ~= nil then number(s.thick, "lines", string.format("series[%d].thick", i), { 0, 16 }) end
    if s.label ~= nil and type(s.label) ~= "string" then raise(string.format("lines: series[%d].label must be a string (got %s)", i, args.typename(s.label))) end
    for j = 1, #s.xs do
      local x, y = s.xs[j], s.ys[j]
      -- (x finite; y may be NaN, a point left out, and infinite, drawn at the axis's edge)
      if type(x) ~= "number" or type(y) ~= "number" or x ~= x or x == math.huge or x == -math.huge then
        raise(string.format("lines: series[%d] point %d is not two numbers, x finite (got %s, %s)", i, j, args.show(x), args.show(y)))
      end
      if y == y and y ~= math.huge and y ~= -math.huge then
        lo_x, hi_x, lo_y, hi_y = math.min(lo_x, x), math.max(hi_x, x), math.min(lo_y, y), math.max(hi_y, y)
      end
    end
  end
  for _, k in ipairs{ "xmin", "xmax", "ymin", "ymax" } do if o[k] ~= nil then number(o[k], "lines", k, FINITE) end end
  if o.title ~= nil and type(o.title) ~= "string" then raise("lines: title must be a string (got " .. args.typename(o.title) .. ")") end
  if o.hlines ~= nil and (type(o.hlines) ~= "table" or core.is_tensor(o.hlines)) then
    raise("lines: hlines must be a list of {y =, colour =} (got " .. args.typename(o.hlines) .. ")")
  end
  for i, hl in ipairs(o.hlines or {}) do
    if type(hl) ~= "table" or core.is_tensor(hl) then raise(string.format("lines: hlines[%d] must be a table {y =, colour =}", i)) end
    args.check_options(hl, string.format("plot.lines: hlines[%d]", i), { "colour", "y" })
    number(hl.y, "lines", string.format("hlines[%d].y", i), FINITE)
    if hl.colour ~= nil then check_rgb(hl.colour, "lines", string.format("hlines[%d].colour", i)) end
  end
  if lo_x == math.huge then lo_x, hi_x, lo_y, hi_y = 0, 1, 0, 1 end
  local xmin, xmax = o.xmin or math.min(lo_x, 0), o.xmax or hi_x
  local ymin, ymax = o.ymin or (lo_y >= 0 and 0 or lo_y), o.ymax or hi_y
  if xmax <= xmin then xmax = xmin + 1 end
  if ymax <= ymin then ymax = ymin + 1 end
  local W, H = o.width or 720, o.height or 420
  local L, R, T, B = 60, 20, o.title and 36 or 20, 40
  if type(W) ~= "number" or type(H) ~= "number" or W ~= math.floor(W) or H ~= math.floor(H) or W < L + R + 2 or H < T + B + 2
     or W * H > 2 ^ 26 then
    raise(string.format("lines: width and height must be integers of at least %d x %d pixels, at most 2^26 in all (got %s x %s)",
      L + R + 2, T + B + 2, args.show(W), args.show(H)))
  end
  local c = plot.canvas(W, H)
  local function line(...) segment(c, ...) end
  local function text(x, y, s, rgb) return glyphs(c, x, y, s, rgb, 2) end
  local function px(x) return L + (W - L - R) * (x - xmin) / (xmax - xmin) end
  local function py(y) return H - B - (H - T - B) * (math.min(math.max(y, ymin), ymax) - ymin) / (ymax - ymin) end
  if o.title then text(L, 8, o.title, BLACK) end
  for i = 0, 4 do
    local yv = ymin + (ymax - ymin) * i / 4
    line(L, py(yv), W - R, py(yv), GREY)
    text(4, py(yv) - 5, fmt_num(yv), BLACK)
    local xv = xmin + (xmax - xmin) * i / 4
    line(px(xv), H - B, px(xv), H - B + 5, BLACK)
    text(px(xv) - 10, H - B + 10, fmt_num(xv), BLACK)
  end
  line(L, H - B, W - R, H - B, BLACK)
  line(L, T, L, H - B, BLACK)
  for _, hl in ipairs(o.hlines or {}) do
    for x = L, W - R, 8 do line(x, py(hl.y), math.min(x + 4, W - R), py(hl.y), hl.colour or BLACK) end
  end
  for i, s in ipairs(o.series) do
    local colour = s.colour or plot.PALETTE[(i - 1) % #plot.PALETTE + 1]
    for j = 2, #s.xs do
      if s.ys[j - 1] == s.ys[j - 1] and s.ys[j] == s.ys[j] then
        line(px(s.xs[j - 1]), py(s.ys[j - 1]), px(s.xs[j]), py(s.ys[j]), colour, s.thick or 2)
      end
    end
    if #s.xs == 1 and s.ys[1] == s.ys[1] then fill(c, px(s.xs[1]) - 2, py(s.ys[1]) - 2, 5, 5, colour) end
  end
  local lx = L + 10
  for i, s in ipairs(o.series) do
    if s.label then
      fill(c, lx, T + 4, 14, 8, s.colour or plot.PALETTE[(i - 1) % #plot.PALETTE + 1])
      lx = lx + 18 + text(lx + 18, T + 3, s.label, BLACK) + 8
    end
  end
  c:save(path)
  return c
end

-- viridis, piecewise linear through five anchors: u in [0, 1] -> {r, g, b}
local VIRIDIS = { { 0.267, 0.005, 0.329 }, { 0.231, 0.322, 0.545 }, { 0.129, 0.569, 0.549 }, { 0.369, 0.788, 0.384 },
                  { 0.992, 0.906, 0.145 } }
function plot.viridis(u)
  number(u, "viridis", "u", { -math.huge, math.huge })
  u = math.min(math.max(u, 0), 1) * 4
  local i = math.min(3, math.floor(u))
  local f = u - i
  local a, b = VIRIDIS[i + 1], VIRIDIS[i + 2]
  return { a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f, a[3] + (b[3] - a[3]) * f }
end

local HEATMAP_OPTIONS = { "cell", "max", "title" }

-- A heatmap written to path (PNG): M a list of rows of numbers (or a 2-D tensor), rows / cols
-- their labels; viridis from 0 (dark) to the largest entry or o.max (bright), with a scale bar
-- labelled at both ends.  o.cell: the cell size in pixels (40); o.title.
function plot.heatmap(path, M, rows, cols, o)
  if type(path) ~= "string" then raise("heatmap: path must be a string (got " .. type(path) .. ")") end
  o = o or {}
  check_options("heatmap", o, HEATMAP_OPTIONS)
  if core.is_tensor(M) then
    if M:dim() ~= 2 then raise("heatmap: M must be 2-D (got shape " .. M:shape_string() .. ")") end
    M = M:to("float64"):totable()
  end
  if type(M) ~= "table" or type(M[1]) ~= "table" or #M[1] == 0 then raise("heatmap: M must be a non-empty list of rows (or a 2-D tensor)") end
  local nr, nc = #M, #M[1]
  for i = 1, nr do
    if type(M[i]) ~= "table" or #M[i] ~= nc then
      raise(string.format("heatmap: row %d has %s entries, row 1 has %d", i, type(M[i]) == "table" and #M[i] or args.typename(M[i]), nc))
    end
    for j = 1, nc do number(M[i][j], "heatmap", string.format("M[%d][%d]", i, j), FINITE) end
  end
  for _, labels in ipairs{ { rows, "rows" }, { cols, "cols" } } do
    if labels[1] ~= nil and (type(labels[1]) ~= "table" or core.is_tensor(labels[1])) then
      raise("heatmap: " .. labels[2] .. " must be a list of labels (got " .. args.typename(labels[1]) .. ")")
    end
  end
  rows, cols = rows or {}, cols or {}
  local cell = o.cell or 40
  if type(cell) ~= "number" or cell ~= math.floor(cell) or cell < 2 or cell > 512 then
    raise("heatmap: cell must be an integer number of pixels from 2 to 512 (got " .. args.show(cell) .. ")")
  end
  if o.max ~= nil then number(o.max, "heatmap", "max", { 0, math.huge, lo_open = true, hi_open = true }) end
  if o.title ~= nil and type(o.title) ~= "string" then raise("heatmap: title must be a string (got " .. args.typename(o.title) .. ")") end
  local L, T = 50, o.title and 56 or 40
  local c = plot.canvas(L + nc * cell + 70, T + nr * cell + 20)
  local mx = o.max or 1e-12
  if not o.max then
    for i = 1, nr do
      for j = 1, nc do mx = math.max(mx, M[i][j]) end
    end
  end
  local function text(x, y, s) return glyphs(c, x, y, tostring(s), BLACK, 2) end
  if o.title then text(L, 8, o.title) end
  for i = 1, nr do
    text(8, T + (i - 1) * cell + cell / 2 - 5, rows[i] or "")
    for j = 1, nc do fill(c, L + (j - 1) * cell, T + (i - 1) * cell, cell - 1, cell - 1, plot.viridis(M[i][j] / mx)) end
  end
  for j = 1, nc do text(L + (j - 1) * cell + 8, T - 26, cols[j] or "") end
  local bx = L + nc * cell + 15
  for y = 0, nr * cell - 1 do fill(c, bx, T + y, 14, 1, plot.viridis(1 - y / math.max(1, nr * cell - 1))) end
  text(bx - 4, T - 14, fmt_num(tonumber(string.format("%.1f", mx))))
  text(bx + 2, T + nr * cell + 4, "0")
  c:save(path)
  return c
end

return plot
