-- attnlab.raster: a few rasterisers over a grey image, enough to redraw the visual-search stimuli of
-- eccNET (Gupta et al. 2021), which were drawn with numpy slices, OpenCV and scikit-image, and the
-- shapes of a synthetic training diet.  docs/visual_search.md describes them.
--
-- A canvas is a float32 (H, W) tensor (lab.image.save's grey format, values in [0, 1]) with a
-- pointer to its pixels; every method draws into that memory, so `c.tensor` is always the picture.
--
-- Coordinates are OpenCV's: x is the column and y the row, both counted from 0, and a pixel's
-- centre sits at integer (x, y).  Rectangles are half-open ranges as numpy slices are:
-- fill_rect(x0, y0, x1, y1) paints columns x0 .. x1-1 of rows y0 .. y1-1.
--
-- Why emulate OpenCV at all: the stimuli's items were drawn with cv2.ellipse and rotated with
-- cv2.warpAffine (bilinear, fixed-point weights in 1/32 px, black border), which gives a curve its
-- width (thickness 5 paints 7 px) and softens the edges of a rotated bar in a particular way.
-- Canvas:cv_ellipse, Canvas:cv_line and Canvas:rotate follow OpenCV's arithmetic step for step, so
-- a bar tilted by -20 degrees is the same grey ramp the model saw in the paper
-- (tests/lua/test_stimuli.lua compares them with the authors' own figures).  The other strokes
-- (segment, arc, ring), for shapes of our own, are drawn from their distance to the pixel centre:
-- aliased, a pixel is painted when it lies within half the width; anti-aliased (aa), its coverage
-- falls off linearly over one pixel at the edge.
local lab = require "attnlab"
local core = require "attnlab.core"
local ffi = require "ffi"
local bit = require "bit"

local floor, sqrt, atan2, min, max = math.floor, math.sqrt, math.atan2, math.min, math.max
local pi = math.pi

local raster = {}
local Canvas = {}
Canvas.__index = Canvas
raster.Canvas = Canvas

local function raise(fn, msg) lab.raise("raster." .. fn .. ": " .. msg) end

local function is_int(x) return type(x) == "number" and x == floor(x) end
local function check_value(fn, v)
  if type(v) ~= "number" or v ~= v or v < 0 or v > 1 then raise(fn, "value must be a number in [0, 1] (got " .. tostring(v) .. ")") end
  return v
end

-- raster.canvas(h, w [, value]): an h x w canvas filled with value (default 0, black).
function raster.canvas(h, w, value)
  if not is_int(h) or not is_int(w) or h < 1 or w < 1 then
    raise("canvas", string.format("size must be two positive integers h, w (got %s, %s)", tostring(h), tostring(w)))
  end
  value = check_value("canvas", value or 0)
  local t = core.host_full({ h, w }, value, "canvas")   -- drawn into from Lua: on the CPU
  return setmetatable({ h = h, w = w, tensor = t, p = ffi.cast("float *", core.host_data(t, "canvas")) }, Canvas)
end

-- raster.from_tensor(t): a canvas holding a copy of a grey (H, W) or (H, W, 1) image.
function raster.from_tensor(t)
  if not core.is_tensor(t) then raise("from_tensor", "expected a tensor (got " .. type(t) .. ")") end
  if t:dim() == 3 and t:size(3) == 1 then t = t:select(3, 1) end
  if t:dim() ~= 2 then raise("from_tensor", "expected a grey image (H, W) or (H, W, 1) (got shape " .. t:shape_string() .. ")") end
  local c = raster.canvas(t:size(1), t:size(2))
  c.tensor:copy_(t)
  return c
end

function Canvas:clone()
  local c = raster.canvas(self.h, self.w)
  ffi.copy(c.p, self.p, self.h * self.w * 4)
  return c
end

-- the value at pixel (x, y), or `outside` (default nil) off the canvas
function Canvas:get(x, y, outside)
  if x < 0 or y < 0 or x >= self.w or y >= self.h then return outside end
  return self.p[y * self.w + x]
end

function Canvas:set(x, y, v)
  if x >= 0 and y >= 0 and x < self.w and y < self.h then self.p[y * self.w + x] = v end
end

-- Paints columns x0 .. x1-1 of rows y0 .. y1-1 (clipped to the canvas), as img[y0:y1, x0:x1] = v.
function Canvas:fill_rect(x0, y0, x1, y1, v)
  check_value("fill_rect", v)
  x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, self.w), min(y1, self.h)
  local p, w = self.p, self.w
  for y = y0, y1 - 1 do
    for x = x0, x1 - 1 do p[y * w + x] = v end
  end
  return self
end

-- Fills the pixels whose centre lies strictly inside the circle (x - cx)^2 + (y - cy)^2 < r^2, as
-- skimage.draw.circle does; value is a number or a function(x, y) giving the pixel's value.
function Canvas:fill_disc(cx, cy, r, value)
  local fixed = type(value) == "number" and check_value("fill_disc", value)
  if not fixed and type(value) ~= "function" then raise("fill_disc", "value must be a number in [0, 1] or a function(x, y)") end
  local p, w = self.p, self.w
  for y = max(0, floor(cy - r)), min(self.h - 1, floor(cy + r) + 1) do
    for x = max(0, floor(cx - r)), min(self.w - 1, floor(cx + r) + 1) do
      if (x - cx) ^ 2 + (y - cy) ^ 2 < r * r then p[y * w + x] = fixed or value(x, y) end
    end
  end
  return self
end

-- A stroke: every pixel within `reach` of the shape gets `dist(x, y)`, its distance to the shape's
-- centre line; aliased, painted when dist <= width / 2; anti-aliased (aa), blended with coverage
-- clamp(width/2 + 1/2 - dist, 0, 1).  x0..x1, y0..y1: the box the shape can touch.
local function stroke(self, fn, dist, x0, y0, x1, y1, opts)
  if type(opts) ~= "table" then raise(fn, "expected an options table {width =, value =, aa =}") end
  for k in pairs(opts) do
    if k ~= "width" and k ~= "value" and k ~= "aa" then raise(fn, "unknown option '" .. tostring(k) .. "' (width, value, aa)") end
  end
  local width, v = opts.width, check_value(fn, opts.value or 1)
  if type(width) ~= "number" or width <= 0 then raise(fn, "width must be a positive number (got " .. tostring(width) .. ")") end
  local hw, aa = width / 2, opts.aa and true or false
  local p, w = self.p, self.w
  for y = max(0, floor(y0 - hw - 1)), min(self.h - 1, floor(y1 + hw + 1)) do
    for x = max(0, floor(x0 - hw - 1)), min(self.w - 1, floor(x1 + hw + 1)) do
      local d = dist(x, y)
      if aa then
        local a = hw + 0.5 - d
        if a > 0 then
          if a > 1 then a = 1 end
          local i = y * w + x
          p[i] = p[i] * (1 - a) + v * a
        end
      elseif d <= hw then
        p[y * w + x] = v
      end
    end
  end
  return self
end

local function segment_distance(px, py, ax, ay, bx, by)
  local dx, dy = bx - ax, by - ay
  local len2 = dx * dx + dy * dy
  local t = len2 > 0 and ((px - ax) * dx + (py - ay) * dy) / len2 or 0
  if t < 0 then t = 0 elseif t > 1 then t = 1 end
  local ex, ey = px - (ax + t * dx), py - (ay + t * dy)
  return sqrt(ex * ex + ey * ey)
end

-- Canvas:segment(x0, y0, x1, y1, {width =, value = 1, aa = false}): a straight stroke with round caps.
function Canvas:segment(ax, ay, bx, by, opts)
  return stroke(self, "segment", function(x, y) return segment_distance(x, y, ax, ay, bx, by) end,
    min(ax, bx), min(ay, by), max(ax, bx), max(ay, by), opts)
end

-- Canvas:arc(cx, cy, r, a0, a1, {width =, value = 1, aa = false}): the arc of the circle of centre
-- (cx, cy) and radius r from angle a0 to a1 degrees (a0 < a1, at most 360 apart), round caps.  Angles
-- as cv2.ellipse's: 0 points along +x and 90 along +y (down on the screen).
function Canvas:arc(cx, cy, r, a0, a1, opts)
  if type(a0) ~= "number" or type(a1) ~= "number" or a1 < a0 or a1 - a0 > 360 then
    raise("arc", string.format("needs angles a0 <= a1 <= a0 + 360 (got %s, %s)", tostring(a0), tostring(a1)))
  end
  local t0, t1 = a0 * pi / 180, a1 * pi / 180
  local ex0, ey0 = cx + r * math.cos(t0), cy + r * math.sin(t0)
  local ex1, ey1 = cx + r * math.cos(t1), cy + r * math.sin(t1)
  local span = t1 - t0
  local function dist(x, y)
    local dx, dy = x - cx, y - cy
    local phi = (atan2(dy, dx) - t0) % (2 * pi)          -- angle from the arc's start, in [0, 2 pi)
    if phi <= span then return math.abs(sqrt(dx * dx + dy * dy) - r) end
    return min(sqrt((x - ex0) ^ 2 + (y - ey0) ^ 2), sqrt((x - ex1) ^ 2 + (y - ey1) ^ 2))
  end
  return stroke(self, "arc", dist, cx - r, cy - r, cx + r, cy + r, opts)
end

-- Canvas:ring(cx, cy, r, {width =, value = 1, aa = false}): the whole circle, stroked.
function Canvas:ring(cx, cy, r, opts)
  local function dist(x, y) return math.abs(sqrt((x - cx) ^ 2 + (y - cy) ^ 2) - r) end
  return stroke(self, "ring", dist, cx - r, cy - r, cx + r, cy + r, opts)
end

-- lrint: round half to even, as OpenCV's cvRound / saturate_cast<int>(double) do on x86-64
local function cvround(v)
  local r = floor(v + 0.5)
  if r - v == 0.5 and r % 2 ~= 0 then r = r - 1 end
  return r
end

---------------------------------------------------------------------------------------------------
-- OpenCV's own thick lines and elliptic arcs (modules/imgproc/src/drawing.cpp, LINE_8, as in the
-- 4.1 release eccNET's generators ran on): points in 16-bit fixed point (XY_SHIFT), a thick
-- segment filled as a convex quadrilateral of half-width thickness/2 (+ 1/2 px when the thickness
-- is odd) with its edges drawn by Line2, filled discs of radius (thickness + 1) / 2 at the joints
-- (the midpoint circle), an arc as a polyline through points every 5 degrees of a sine table
-- rounded to 7 decimals.  cv2 strokes come out wider than their thickness: thickness 5 paints
-- 7 px across, which is what the curvature stimuli show.  Arithmetic shifts on the fixed-point
-- values are floor divisions by 2^16 here; C's integer division truncates toward zero (idiv).
---------------------------------------------------------------------------------------------------
local XY_SHIFT, XY_ONE = 16, 65536
local HALF = XY_ONE / 2
local function shr(v) return floor(v / XY_ONE) end
local function idiv(a, b) local q = a / b return q >= 0 and floor(q) or -floor(-q) end

local SIN_TABLE = {}                       -- SinTable[0 .. 450], float literals of 7 decimals
do
  local f = ffi.new("float[1]")
  for k = 0, 450 do
    f[0] = tonumber(string.format("%.7f", math.sin(k * pi / 180)))
    SIN_TABLE[k] = f[0]
  end
end

local function put(self, x, y, v)
  if x >= 0 and y >= 0 and x < self.w and y < self.h then self.p[y * self.w + x] = v end
end
local function hline(self, y, x1, x2, v)
  if y < 0 or y >= self.h then return end
  for x = max(x1, 0), min(x2, self.w - 1) do self.p[y * self.w + x] = v end
end

-- Line2: a 1-px line between fixed-point points, one pixel per step of the major axis
local function line2(self, x1, y1, x2, y2, v)
  local dx, dy = x2 - x1, y2 - y1
  local ax, ay = math.abs(dx), math.abs(dy)
  local xstep, ystep, ecount
  if ax > ay then
    if dx < 0 then x1, x2, y1, y2 = x2, x1, y2, y1 end
    xstep, ystep = XY_ONE, idiv((y2 - y1) * XY_ONE, bit.bor(ax, 1))
    ecount = shr(x2 - x1)
  else
    if dy < 0 then x1, x2, y1, y2 = x2, x1, y2, y1 end
    xstep, ystep = idiv((x2 - x1) * XY_ONE, bit.bor(ay, 1)), XY_ONE
    ecount = shr(y2 - y1)
  end
  x1, y1 = x1 + HALF, y1 + HALF
  put(self, shr(x2 + HALF), shr(y2 + HALF), v)
  if ax > ay then
    x1 = shr(x1)
    while ecount >= 0 do put(self, x1, shr(y1), v); x1 = x1 + 1; y1 = y1 + ystep; ecount = ecount - 1 end
  else
    y1 = shr(y1)
    while ecount >= 0 do put(self, shr(x1), y1, v); x1 = x1 + xstep; y1 = y1 + 1; ecount = ecount - 1 end
  end
end

-- FillConvexPoly with shift XY_SHIFT: the outline by line2, then scanlines between two edges
-- walked from the top vertex, x rounded to the nearest pixel at both ends
local function fill_convex(self, vx, vy, v)
  local n = #vx
  local imin, xmin, xmax, ymin, ymax = 1, vx[1], vx[1], vy[1], vy[1]
  local px, py = vx[n], vy[n]
  for i = 1, n do
    if vy[i] < ymin then ymin, imin = vy[i], i end
    ymax, xmax, xmin = max(ymax, vy[i]), max(xmax, vx[i]), min(xmin, vx[i])
    line2(self, px, py, vx[i], vy[i], v)
    px, py = vx[i], vy[i]
  end
  xmin, xmax, ymin, ymax = shr(xmin + HALF), shr(xmax + HALF), shr(ymin + HALF), shr(ymax + HALF)
  if n < 3 or xmax < 0 or ymax < 0 or xmin >= self.w or ymin >= self.h then return end
  ymax = min(ymax, self.h - 1)
  local edge = { { idx = imin, di = 1, x = -XY_ONE, dx = 0, ye = ymin }, { idx = imin, di = n - 1, x = -XY_ONE, dx = 0, ye = ymin } }
  local edges, y = n, ymin
  repeat
    for i = 1, 2 do
      local e = edge[i]
      if y >= e.ye then
        local idx0 = e.idx
        local idx = idx0 + e.di
        if idx > n then idx = idx - n end
        while true do
          local more = edges > 0
          edges = edges - 1
          if not more then break end
          local ty = shr(vy[idx] + HALF)
          if ty > y then
            local xs, xe = vx[idx0], vx[idx]
            e.ye, e.dx, e.x, e.idx = ty, idiv((xe - xs) * 2 + (ty - y), 2 * (ty - y)), xs, idx
            break
          end
          idx0 = idx
          idx = idx + e.di
          if idx > n then idx = idx - n end
        end
      end
    end
    if edges < 0 then break end
    if y >= 0 then
      local l, r = edge[1], edge[2]
      if l.x > r.x then l, r = r, l end
      local xx1, xx2 = shr(l.x + HALF), shr(r.x + HALF)
      if xx2 >= 0 and xx1 < self.w then hline(self, y, xx1, xx2, v) end
    end
    edge[1].x, edge[2].x = edge[1].x + edge[1].dx, edge[2].x + edge[2].dx
    y = y + 1
  until y > ymax
end

-- Circle(..., fill = 1): the midpoint circle, filled by horizontal runs
local function fill_circle(self, cx, cy, radius, v)
  local err, dx, dy, plus, minus = 0, radius, 0, 1, radius * 2 - 1
  while dx >= dy do
    hline(self, cy - dy, cx - dx, cx + dx, v); hline(self, cy + dy, cx - dx, cx + dx, v)
    hline(self, cy - dx, cx - dy, cx + dy, v); hline(self, cy + dx, cx - dy, cx + dy, v)
    dy = dy + 1
    err = err + plus
    plus = plus + 2
    local mask = err <= 0 and 0 or -1
    if mask ~= 0 then err = err - minus; dx = dx - 1; minus = minus - 2 end
  end
end

-- ThickLine (LINE_8) between fixed-point points; flags: 1 = a disc at the start, 2 = at the end
local function thick_line(self, x0, y0, x1, y1, thickness, flags, v)
  if thickness <= 1 then return line2(self, x0, y0, x1, y1, v) end
  local dx, dy = (x0 - x1) / XY_ONE, (y1 - y0) / XY_ONE
  local r = dx * dx + dy * dy
  local odd = thickness % 2
  local t = thickness * XY_ONE / 2
  if r > 2.220446049250313e-16 then
    r = (t + odd * XY_ONE * 0.5) / sqrt(r)
    local dpx, dpy = cvround(dy * r), cvround(dx * r)
    fill_convex(self, { x0 + dpx, x0 - dpx, x1 - dpx, x1 + dpx }, { y0 + dpy, y0 - dpy, y1 - dpy, y1 + dpy }, v)
  end
  for i = 0, 1 do
    if bit.band(flags, i + 1) ~= 0 then
      fill_circle(self, shr(x0 + HALF), shr(y0 + HALF), shr(t + HALF), v)
    end
    x0, y0 = x1, y1
  end
end

local function check_cv(fn, thickness, v)
  if not is_int(thickness) or thickness < 1 then raise(fn, "thickness must be a positive integer (got " .. tostring(thickness) .. ")") end
  check_value(fn, v)
end

-- Canvas:cv_line(x0, y0, x1, y1, value, thickness): cv2.line(img, (x0, y0), (x1, y1), value,
-- thickness) with integer end points, LINE_8.
function Canvas:cv_line(x0, y0, x1, y1, v, thickness)
  check_cv("cv_line", thickness, v)
  thick_line(self, x0 * XY_ONE, y0 * XY_ONE, x1 * XY_ONE, y1 * XY_ONE, thickness, 3, v)
  return self
end

-- Canvas:cv_ellipse(cx, cy, ax, ay, angle, a0, a1, value, thickness): cv2.ellipse(img, (cx, cy),
-- (ax, ay), angle, a0, a1, value, thickness), integer centre and axes, angles rounded to whole
-- degrees as OpenCV does, LINE_8.
function Canvas:cv_ellipse(cx, cy, ax, ay, angle, a0, a1, v, thickness)
  check_cv("cv_ellipse", thickness, v)
  angle, a0, a1 = cvround(angle), cvround(a0), cvround(a1)
  ax, ay = math.abs(ax) * XY_ONE, math.abs(ay) * XY_ONE
  cx, cy = cx * XY_ONE, cy * XY_ONE
  local delta = shr(max(ax, ay) + HALF)
  delta = delta < 3 and 90 or delta < 10 and 30 or delta < 15 and 18 or 5
  -- ellipse2Poly
  while angle < 0 do angle = angle + 360 end
  while angle > 360 do angle = angle - 360 end
  if a0 > a1 then a0, a1 = a1, a0 end
  while a0 < 0 do a0, a1 = a0 + 360, a1 + 360 end
  while a1 > 360 do a0, a1 = a0 - 360, a1 - 360 end
  if a1 - a0 > 360 then a0, a1 = 0, 360 end
  local beta = SIN_TABLE[angle + (angle < 0 and 360 or 0)]
  local alpha = SIN_TABLE[450 - angle - (angle < 0 and 360 or 0)]
  local xs, ys = {}, {}
  local px, py
  for i = a0, a1 + delta - 1, delta do
    local a = min(i, a1)
    if a < 0 then a = a + 360 end
    local x, y = ax * SIN_TABLE[450 - a], ay * SIN_TABLE[a]
    local fx, fy = cx + x * alpha - y * beta, cy + x * beta + y * alpha
    -- EllipseEx: to fixed point, the whole pixels rounded first, then the fraction
    local qx, qy = cvround(fx / XY_ONE) * XY_ONE, cvround(fy / XY_ONE) * XY_ONE
    qx, qy = qx + cvround(fx - qx), qy + cvround(fy - qy)
    if qx ~= px or qy ~= py then xs[#xs + 1], ys[#ys + 1] = qx, qy; px, py = qx, qy end
  end
  if #xs == 1 then xs[2], ys[2] = cx, cy; xs[1], ys[1] = cx, cy end
  -- PolyLine, open: a disc at both ends of the first segment, at the end of every other
  local flags = 3
  for i = 2, #xs do
    thick_line(self, xs[i - 1], ys[i - 1], xs[i], ys[i], thickness, flags, v)
    flags = 2
  end
  return self
end

-- Canvas:rotate(angle, cx, cy): a new canvas, this one rotated by `angle` degrees about (cx, cy)
-- (positive: counter-clockwise on the screen), exactly as
--   cv2.warpAffine(img, cv2.getRotationMatrix2D((cx, cy), angle, 1), (w, h))
-- computes it on 8-bit images: the matrix is inverted, each destination pixel's source position
-- is rounded to 1/32 px in OpenCV's fixed point (AB_BITS = 10, INTER_BITS = 5), the four
-- neighbours are weighted by (32 - fx)(32 - fy) ... in units of 1/1024 and the sum rounded to
-- 8 bits; pixels outside the source count as 0 (BORDER_CONSTANT).  Values are read as 8-bit levels
-- round(v * 255) and written back as levels / 255.
function Canvas:rotate(angle, cx, cy)
  if type(angle) ~= "number" or type(cx) ~= "number" or type(cy) ~= "number" then
    raise("rotate", "expects (angle, cx, cy) numbers")
  end
  local a = angle * pi / 180
  local alpha, beta = math.cos(a), math.sin(a)
  -- getRotationMatrix2D
  local m0, m1, m2 = alpha, beta, (1 - alpha) * cx - beta * cy
  local m3, m4, m5 = -beta, alpha, beta * cx + (1 - alpha) * cy
  -- warpAffine's inversion (as invertAffineTransform)
  local D = m0 * m4 - m1 * m3
  D = D ~= 0 and 1 / D or 0
  local A11, A22, A12, A21 = m4 * D, m0 * D, -m1 * D, -m3 * D
  local B1, B2 = -A11 * m2 - A12 * m5, -A21 * m2 - A22 * m5
  local h, w = self.h, self.w
  local src, out = self.p, raster.canvas(h, w)
  local dst = out.p
  local level = ffi.new("int[?]", h * w)
  for i = 0, h * w - 1 do level[i] = floor(src[i] * 255 + 0.5) end
  local function at(x, y)
    if x < 0 or y < 0 or x >= w or y >= h then return 0 end
    return level[y * w + x]
  end
  local adelta, bdelta = {}, {}
  for x = 0, w - 1 do adelta[x] = cvround(A11 * x * 1024); bdelta[x] = cvround(A21 * x * 1024) end
  for y = 0, h - 1 do
    local X0 = cvround((A12 * y + B1) * 1024) + 16
    local Y0 = cvround((A22 * y + B2) * 1024) + 16
    for x = 0, w - 1 do
      local X, Y = floor((X0 + adelta[x]) / 32), floor((Y0 + bdelta[x]) / 32)
      local sx, sy, fx, fy = floor(X / 32), floor(Y / 32), X % 32, Y % 32
      local s = at(sx, sy) * (32 - fx) * (32 - fy) + at(sx + 1, sy) * fx * (32 - fy)
              + at(sx, sy + 1) * (32 - fx) * fy + at(sx + 1, sy + 1) * fx * fy
      -- OpenCV's weights are these products times 32 (a sum of 2^15); FixedPtCast rounds up halves
      dst[y * w + x] = floor((s * 32 + 16384) / 32768) / 255
    end
  end
  return out
end

-- Canvas:flip(code): a new canvas, as cv2.flip: code 0 flips top to bottom, 1 left to right.
function Canvas:flip(code)
  if code ~= 0 and code ~= 1 then raise("flip", "code must be 0 (top-bottom) or 1 (left-right) (got " .. tostring(code) .. ")") end
  local h, w = self.h, self.w
  local out = raster.canvas(h, w)
  for y = 0, h - 1 do
    for x = 0, w - 1 do
      local sx, sy = code == 1 and w - 1 - x or x, code == 0 and h - 1 - y or y
      out.p[y * w + x] = self.p[sy * w + sx]
    end
  end
  return out
end

-- Canvas:transpose(): a new canvas with rows and columns swapped (numpy's img.T).
function Canvas:transpose()
  local h, w = self.h, self.w
  local out = raster.canvas(w, h)
  for y = 0, h - 1 do
    for x = 0, w - 1 do out.p[x * h + y] = self.p[y * w + x] end
  end
  return out
end

-- Canvas:invert(): v -> 1 - v in place (255 - img).
function Canvas:invert()
  for i = 0, self.h * self.w - 1 do self.p[i] = 1 - self.p[i] end
  return self
end

-- Canvas:quantise(): rounds every value to the nearest 8-bit level k / 255 in place, so that an
-- image equals its PNG once written and read back.
function Canvas:quantise()
  for i = 0, self.h * self.w - 1 do self.p[i] = floor(self.p[i] * 255 + 0.5) / 255 end
  return self
end

-- Canvas:blit(src, x, y): copies the canvas src with its top-left pixel at (x, y), clipped,
-- overwriting what is there (img[y:y+h, x:x+w] = src).
function Canvas:blit(src, x, y)
  if getmetatable(src) ~= Canvas then raise("blit", "src must be a canvas") end
  if not is_int(x) or not is_int(y) then raise("blit", "x, y must be integers") end
  local x0, x1 = max(0, x), min(self.w, x + src.w)
  if x1 <= x0 then return self end
  for sy = max(0, -y), min(src.h, self.h - y) - 1 do
    ffi.copy(self.p + (y + sy) * self.w + x0, src.p + sy * src.w + (x0 - x), (x1 - x0) * 4)
  end
  return self
end

-- Canvas:ink_box(background): the smallest box {x, y, w, h} holding every pixel whose value
-- differs from background, or nil when there is none.
function Canvas:ink_box(background)
  local x0, y0, x1, y1 = math.huge, math.huge, -1, -1
  local p, w = self.p, self.w
  local bg = ffi.new("float[1]", background)[0]       -- compared as float32, as the pixels are
  for y = 0, self.h - 1 do
    for x = 0, w - 1 do
      if p[y * w + x] ~= bg then
        if x < x0 then x0 = x end
        if x > x1 then x1 = x end
        if y < y0 then y0 = y end
        if y > y1 then y1 = y end
      end
    end
  end
  if x1 < 0 then return nil end
  return { x0, y0, x1 - x0 + 1, y1 - y0 + 1 }
end

return raster
