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
-- Why emulate OpenCV at all: the stimuli's items were rotated with cv2.warpAffine (bilinear,
-- fixed-point weights in 1/32 px, black border), which softens the edges of a rotated bar in a
-- particular way; Canvas:rotate reproduces that arithmetic step for step, so a bar tilted by -20
-- degrees is the same grey ramp the model saw in the paper.  Strokes (segments, arcs, rings) are
-- drawn from their distance to the pixel centre: aliased, a pixel is painted when it lies within
-- half the width (cv2's LINE_8 strokes to within a pixel); anti-aliased, its coverage falls off
-- linearly over one pixel at the edge (what cv2's LINE_AA looks like).
local lab = require "attnlab"
local ffi = require "ffi"

local floor, sqrt, atan2, min, max = math.floor, math.sqrt, math.atan2, math.min, math.max
local pi = math.pi

local raster = {}
local Canvas = {}
Canvas.__index = Canvas
raster.Canvas = Canvas

local function raise(fn, msg)
  local level = 2
  while true do
    local info = debug.getinfo(level, "Sl")
    if not info then break end
    if info.currentline > 0 and not info.short_src:find("attnlab/.+%.lua$") then
      error(info.short_src .. ":" .. info.currentline .. ": raster." .. fn .. ": " .. msg, 0)
    end
    level = level + 1
  end
  error("raster." .. fn .. ": " .. msg, 0)
end

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
  local t = lab.full({ h, w }, value)
  return setmetatable({ h = h, w = w, tensor = t, p = ffi.cast("float *", lab.C.al_data(t)) }, Canvas)
end

-- raster.from_tensor(t): a canvas holding a copy of a grey (H, W) or (H, W, 1) image.
function raster.from_tensor(t)
  if not lab.is_tensor(t) then raise("from_tensor", "expected a tensor (got " .. type(t) .. ")") end
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
