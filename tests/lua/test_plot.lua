-- test_plot.lua -- lab.plot: the PNG figures studies write, read back with lab.image.load and
-- checked on their pixels (where the curves, the dashed line, the heatmap's extremes fall).
local check = dofile("tests/lua/check.lua")("plot")
local lab = lab or require "attnlab"
local plot = lab.plot
local dir = check.tmpdir("plot")

local function pixel(img, x, y)   -- img (h, w, 3) float in [0, 1] -> r, g, b in 0..255
  local r, g, b = img:get(y + 1, x + 1, 1), img:get(y + 1, x + 1, 2), img:get(y + 1, x + 1, 3)
  return math.floor(r * 255 + 0.5), math.floor(g * 255 + 0.5), math.floor(b * 255 + 0.5)
end
local function is(img, x, y, rgb, tol)
  local r, g, b = pixel(img, x, y)
  tol = tol or 3
  return math.abs(r - rgb[1] * 255) <= tol and math.abs(g - rgb[2] * 255) <= tol and math.abs(b - rgb[3] * 255) <= tol
end

-- a line chart: y = x from (0, 0) to (10, 10) in red, with a dashed line at y = 5 in blue
local RED, BLUE = { 1, 0, 0 }, { 0, 0, 1 }
plot.lines(dir .. "/lines.png", { series = { { xs = { 0, 10 }, ys = { 0, 10 }, colour = RED } }, xmin = 0, xmax = 10,
  ymin = 0, ymax = 10, hlines = { { y = 5, colour = BLUE } } })
local img = lab.image.load(dir .. "/lines.png")
check.ok(img:size(1) == 420 and img:size(2) == 720 and img:size(3) == 3, "720 x 420 RGB", img:shape_string())
-- the plot area: x 60 .. 700, y 20 .. 380 (bottom); the point (5, 5) is at (380, 200)
check.ok(is(img, 380, 200, RED) or is(img, 380, 201, RED) or is(img, 379, 200, RED), "the red line passes through (5, 5)")
check.ok(is(img, 61, 379, RED) or is(img, 60, 380, RED) or is(img, 61, 380, RED), "and starts at the origin")
local dashes, gaps = 0, 0
for x = 64, 690 do if is(img, x, 200, BLUE) then dashes = dashes + 1 else gaps = gaps + 1 end end
check.ok(dashes > 200 and gaps > 100, "the hline at y = 5 is dashed across the plot", dashes .. " blue, " .. gaps .. " not")
check.ok(is(img, 700, 100, { 1, 1, 1 }) and is(img, 5, 5, { 1, 1, 1 }), "the background is white")

-- a heatmap: the largest entry is bright (viridis' yellow end), zero is dark (its purple end)
plot.heatmap(dir .. "/heat.png", { { 0, 1 }, { 2, 4 } }, { "a", "b" }, { "x", "y" }, { cell = 20 })
local h = lab.image.load(dir .. "/heat.png")
-- cells start at x = 50, y = 40: (row 1, col 1) = 0 at (55, 45); (row 2, col 2) = 4 at (75, 65)
check.ok(is(h, 55, 45, plot.viridis(0), 4), "the zero cell is viridis(0)")
check.ok(is(h, 75, 65, plot.viridis(1), 4), "the largest cell is viridis(1)")
check.ok(is(h, 55, 65, plot.viridis(0.5), 4), "the cell of 2 (half the largest) is viridis(0.5)")

-- text: the glyph of "1" is drawn where asked (scale 1: a 3 x 5 block at (2, 2))
local c = plot.canvas(10, 10)
c:text(2, 2, "1", { 0, 0, 0 }, 1)
local on = 0
for y = 2, 6 do for x = 2, 4 do if c:get(x, y)[1] == 0 then on = on + 1 end end end
check.ok(on == 8, "the glyph '1' sets its 8 pixels", on)
check.ok(c:tensor():shape_string() == "{10,10,3}", "a canvas is an (h, w, 3) tensor")

-- bad input names the function and the option
check.fails(function() plot.lines(dir .. "/x.png", { series = {}, colour = 1 }) end, "plot.lines: unknown option 'colour' (valid:")
check.fails(function() plot.lines(dir .. "/x.png", { series = { { xs = { 1, 2 }, ys = { 1 } } } }) end,
  "plot.lines: series[1] needs xs and ys lists of one length")
check.fails(function() plot.heatmap(dir .. "/x.png", lab.zeros{ 2, 2, 2 }) end, "plot.heatmap: M must be 2-D (got shape {2,2,2})")
check.fails(function() plot.canvas(0, 5) end, "plot.canvas: width and height must be positive integers")
check.cleanup()
os.exit(check.report())
