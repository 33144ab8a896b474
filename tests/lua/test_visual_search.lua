-- test_visual_search.lua -- the eccNET-style search study: the measures on hand-worked numbers
-- (RT, slope, asymmetry index, cv2's Gaussian kernels, one DoG step), the diet's classes and biases,
-- the CNN's shapes, the search loop on hand-made displays whose answer is known (a target among
-- blank cells is fixated first), object-level inhibition of return (no item fixated twice, each
-- fixation inside its item's cell), the chance searcher, and a quick run of
-- experiments/visual_search.lua through the program: summary.json with every field, the figures,
-- report.md and the viewer's records.
--   ./attnlab tests/lua/test_visual_search.lua
local lab = require "attnlab"
local json = require "attnlab.json"
local check = dofile("tests/lua/check.lua")("visual_search")
local search = require "attnlab.tasks.visual_search"
local diet = require "attnlab.tasks.visual_search_diet"
local stimuli = require "attnlab.tasks.visual_search_stimuli"
local raster = require "attnlab.raster"

lab.set_num_threads(1)

---------------------------------------------------------------------------------------------------
-- measures
---------------------------------------------------------------------------------------------------
check.near(search.rt(1), 628.63, 1e-9, "rt(1) = 252.359 + 376.271 ms")
check.near(search.rt(0), 376.271, 1e-9, "rt(0) is the intercept")
local rts = search.rt{ 2, 4.5 }
check.near(rts[1], 252.359 * 2 + 376.271, 1e-9, "rt of a list, first")
check.near(rts[2], 252.359 * 4.5 + 376.271, 1e-9, "rt of a list, second")
check.near(search.slope({ 3, 6, 9 }, { 541 + 96 * 3, 541 + 96 * 6, 541 + 96 * 9 }), 96, 1e-9, "slope of a straight line")
-- least squares by hand: xs 1, 2, 4; ys 1, 3, 4: mean x 7/3, mean y 8/3, sxy = 13/3... slope = sxy / sxx
-- sxx = (16 + 1 + 25) / 9 = 42/9, sxy = ((-4)(-5) + (-1)(1) + (5)(4)) / 9 = 39/9 -> 39/42
check.near(search.slope({ 1, 2, 4 }, { 1, 3, 4 }), 39 / 42, 1e-12, "least-squares slope worked by hand")
check.near(search.asymmetry_index(100, 20), 80 / 120, 1e-12, "AI of slopes 100 and 20")
check.near(search.asymmetry_index(20, 100), -80 / 120, 1e-12, "AI with the polarity reversed")
check.near(search.asymmetry_index(-5, 10), -1, 1e-12, "a negative harder slope is clipped to 0: AI -1")
check.near(search.asymmetry_index(30, -3), 1, 1e-12, "a negative easier slope is clipped to 0: AI 1")
check.near(search.asymmetry_index(0, 0), 0, 0, "both slopes 0: AI 0")
check.near(search.asymmetry_index(-1, -2), 0, 0, "both slopes negative: AI 0")
-- the human figures of the table (C.2's human RT lines give slopes 33 vs 14 for T/L)
check.near(search.asymmetry_index(33, 14), 19 / 47, 1e-12, "T/L from the human RT lines: (33 - 14) / 47")
check.fails(function() search.slope({ 1, 1 }, { 2, 3 }) end, "xs are all equal", "slope of equal xs is refused")
check.fails(function() search.asymmetry_index("a", 1) end, "asymmetry_index: slopes must be two numbers", "AI of a string")

-- cv2.getGaussianKernel
local g3 = search.gaussian_kernel(3, 0)
check.value(g3[1] == 0.25 and g3[2] == 0.5 and g3[3] == 0.25, "ksize 3, sigma 0: cv2's fixed kernel")
local g5 = search.gaussian_kernel(5, 1)
local e1, e2 = math.exp(-0.5), math.exp(-2)
local z = 1 + 2 * e1 + 2 * e2
check.near(g5[3], 1 / z, 1e-12, "ksize 5, sigma 1: the centre")
check.near(g5[1], e2 / z, 1e-12, "ksize 5, sigma 1: the edge")
local g9 = search.gaussian_kernel(9, 0)       -- sigma from ksize: 0.3 (4 - 1) + 0.8 = 1.7
check.near(g9[5] / g9[4], math.exp(1 / (2 * 1.7 ^ 2)), 1e-12, "ksize 9, sigma 0: sigma = 0.3 ((k-1)/2 - 1) + 0.8")
check.fails(function() search.gaussian_kernel(4, 1) end, "ksize must be an odd positive integer", "an even kernel size is refused")

-- one DoG step with G(1) = identity and G(3, 0) = [.25 .5 .25]: map + map - blur(map)
local delta = lab.zeros{ 5, 5 }
delta:set(3, 3, 1)
local d1 = search.dog(delta, { 1, 0, 3, 0 }, 1)
check.near(d1:get(3, 3), 1.75, 1e-6, "DoG of a delta: the centre 1 + 1 - 1/4")
check.near(d1:get(3, 4), -0.125, 1e-6, "DoG of a delta: a side neighbour -1/8")
check.near(d1:get(2, 2), -0.0625, 1e-6, "DoG of a delta: a diagonal neighbour -1/16")
check.near(d1:get(1, 1), 0, 1e-9, "DoG of a delta: far away, 0")
-- BORDER_REFLECT_101 on a 1 x 3 row [1, 0, 0]: the blur is [0.5, 0.25, 0]
local row = search.dog(lab.tensor{ { 1, 0, 0 } }, { 1, 0, 3, 0 }, 1)
check.near(row:get(1, 1), 1.5, 1e-6, "DoG at the border reflects (101): 1 + 1 - 0.5")
check.near(row:get(1, 2), -0.25, 1e-6, "DoG at the border reflects (101): 0 + 0 - 0.25")
local flat = search.dog(lab.full({ 4, 6 }, 0.3), search.dog_params.default)
check.near((flat - 0.3):abs():max():item(), 0, 1e-6, "DoG leaves a constant map as it is")

-- eccNET's pooling parameters at the study's scale
local lv = search.ecc_levels(2)
check.value(lv[1].deg2px == 15 and lv[2].deg2px == 8 and lv[3].deg2px == 4, "deg2px at downscale 2: 15, 8 (7.5 half to even), 4",
  string.format("%d %d %d", lv[1].deg2px, lv[2].deg2px, lv[3].deg2px))
check.value(lv[1].slope == 0 and lv[2].slope == 0.07 and lv[3].slope == 0.16 and lv[1].rf_min == 2 and lv[1].fovea == 4,
  "downscale 2: the levels take the slopes of eccNET's pool2..4 (inputs at strides 2, 4, 8), rf_min 2, fovea 4")
check.ok(search.ecc_levels(2, false)[3].slope == 0, "ecc = false: slope 0")
local l4 = search.ecc_levels(4)
check.value(l4[1].slope == 0.07 and l4[3].slope == 0.32 and l4[3].deg2px == 2, "downscale 4: pool3..5, eccNET's searched levels")
check.near(search.ecc_levels(3)[1].slope, 0.07 * (math.log(3) / math.log(2) - 1), 1e-12,
  "downscale 3: a stride between pools takes the slope interpolated in log2 of the stride")

---------------------------------------------------------------------------------------------------
-- the diet
---------------------------------------------------------------------------------------------------
local function u_with(over)
  local u = {}
  for i = 1, 16 do u[i] = 0.5 end
  for k, v in pairs(over) do u[k] = v end
  return u
end
-- u[7] picks the kind (strokes < 0.4 <= junctions < 0.75 <= discs), u[8] the sub-kind, u[9] the bias draw
local _, cls, info = diet.draw(u_with{ [7] = 0.1, [8] = 0.9, [9] = 0.1, [10] = 0.5 }, { vertical = 1 })
check.ok(info.category == "line" and cls == (2 - 2) * 8 + 1 and math.abs(info.pose) < 1e-9, "a biased line is vertical, class 1",
  info.category .. " " .. cls .. " " .. info.pose)
_, cls, info = diet.draw(u_with{ [7] = 0.1, [8] = 0.9, [9] = 0.1, [10] = 0.5 }, { vertical = 1, reversed = true })
check.ok(info.category == "line" and info.pose == 270 and cls == 1 + 4, "reversed: the line turns a quarter (horizontal), bin 4",
  info.category .. " " .. cls .. " " .. info.pose)
_, cls, info = diet.draw(u_with{ [7] = 0.9, [8] = 0.1, [9] = 0.5 }, { toplit = 1 })
check.ok(info.category == "disc" and cls == 5 * 8 + 1, "a biased disc is lit from above, class 41", info.category .. " " .. cls)
_, cls, info = diet.draw(u_with{ [7] = 0.9, [8] = 0.1, [9] = 0.5 }, { toplit = 1, reversed = true })
check.ok(info.category == "disc" and info.pose == 270 and cls == 5 * 8 + 7, "reversed: lit from the left, bin 6", info.category .. " " .. cls)
_, _, info = diet.draw(u_with{ [7] = 0.1, [8] = 0.5 }, { curved = 1 })
check.ok(info.category == "arc", "curved = 1: strokes are arcs")
_, _, info = diet.draw(u_with{ [7] = 0.1, [8] = 0.5 }, { curved = 1, reversed = true })
check.ok(info.category == "line", "curved = 1 reversed: strokes are lines")
_, _, info = diet.draw(u_with{ [7] = 0.5, [8] = 0.5 }, { crosses = 0.6 })
check.ok(info.category == "cross", "crosses = 0.6: u = 0.5 draws a cross")
_, _, info = diet.draw(u_with{ [7] = 0.5, [8] = 0.5 }, { crosses = 0.6, reversed = true })
check.ok(info.category == "T", "crosses reversed to 0.4: u = 0.5 draws a T")
-- a disc is brighter toward its light
local c = diet.draw(u_with{ [7] = 0.9, [8] = 0.1, [9] = 0.5, [1] = 0.05, [2] = 0.1 }, { toplit = 1 })
check.ok(c:get(16, 9) > c:get(16, 22), "a disc lit from above is brighter at the top", string.format("%.2f %.2f", c:get(16, 9), c:get(16, 22)))
local d = diet.describe_class(5 * 8 + 3)
check.ok(d.category == "disc" and d.pose == 90, "describe_class: disc, 90 degrees")

lab.seed(5)
local x, y = diet.batch(64, { toplit = 1, vertical = 1 })
check.ok(x:size(1) == 64 and x:size(2) == 1 and x:size(3) == 32 and x:size(4) == 32 and y:dtype() == "int64", "batch: (64, 1, 32, 32), int64 classes")
local all_top, lines_vertical, counts = true, true, {}
for _, k in ipairs(y:totable()) do
  local info2 = diet.describe_class(k)
  counts[info2.category] = (counts[info2.category] or 0) + 1
  if info2.category == "disc" and info2.pose ~= 0 then all_top = false end
  if info2.category == "line" and info2.pose ~= 0 then lines_vertical = false end
end
check.ok(all_top and lines_vertical, "toplit = 1, vertical = 1: every disc lit from above, every line vertical")
check.ok((counts.disc or 0) > 5 and (counts.line or 0) + (counts.arc or 0) > 10, "a batch mixes the kinds")
lab.seed(5)
local x2 = diet.batch(64, { toplit = 1, vertical = 1 })
check.ok((x - x2):abs():max():item() == 0, "a batch is a function of lab's seed")
check.fails(function() diet.batch(4, { tilt = 1 }) end, "unknown option", "the diet refuses an unknown bias")
check.fails(function() diet.batch(4, { toplit = 2 }) end, "toplit must be a fraction in [0, 1]", "a fraction above 1")

---------------------------------------------------------------------------------------------------
-- the CNN
---------------------------------------------------------------------------------------------------
lab.seed(3)
local net = search.Net{ channels = { 4, 8, 8 } }
check.ok(net(x):size(2) == 48 and net(x):size(1) == 64, "SearchNet: (64, 48) logits")
local img = lab.full({ 1, 1, 40, 24 }, 0.8)
img:narrow(3, 5, 3):fill_(0.1)
check.near(search.background_level(img):item(), 0.8, 1 / 255, "background_level: the most frequent grey")
local f = net:features(img)
check.ok(f[1]:size(3) == 20 and f[2]:size(3) == 10 and f[3]:size(3) == 5 and f[3]:size(4) == 3 and f[3]:size(2) == 8,
  "features: three levels at strides 2, 4, 8 (sizes rounded up)")
local blank = net:features(lab.full({ 1, 1, 32, 32 }, 0.7), { fixation = { 16, 16 }, levels = search.ecc_levels(2) })
check.near(blank[3]:abs():max():item(), 0, 0, "an empty field excites no feature (no biases, background removed)")
check.fails(function() search.Net{ channel = 3 } end, "unknown option", "SearchNet refuses an unknown option")
-- four blocks: a fourth level at stride 16, at eccNET's pool5 (slope 0.32, 2 px per degree at downscale 2)
local net4 = search.Net{ channels = { 4, 8, 8, 16 } }
check.ok(net4(x):size(2) == 48 and net4.depth == 4, "SearchNet with four blocks: (64, 48) logits")
local f4 = net4:features(img, { fixation = { 12, 20 }, levels = search.ecc_levels(2, true, 4) })
check.ok(#f4 == 4 and f4[4]:size(3) == 3 and f4[4]:size(4) == 2 and f4[4]:size(2) == 16, "features of four blocks: a level at stride 16")
local lv4 = search.ecc_levels(2, true, 4)
check.value(#lv4 == 4 and lv4[4].slope == 0.32 and lv4[4].deg2px == 2 and lv4[3].slope == 0.16, "ecc_levels depth 4: pool5's slope and scale",
  string.format("%d levels, %s, %s", #lv4, lv4[4].slope, lv4[4].deg2px))
check.fails(function() search.Net{ channels = { 4, 8 } } end, "channels must be a list of 3 or 4 positive integers", "SearchNet: two blocks")
check.fails(function() search.Net{ channels = { 4, 8, 8, 8 }, size = 24 } end, "size must be a positive multiple of 16 for 4 blocks",
  "SearchNet: a diet size four poolings cannot halve")
check.fails(function() net4:features(img, { fixation = { 1, 1 }, levels = search.ecc_levels(2) }) end,
  "levels must be 4 lab.ecc_pool2d option tables", "features: three levels for a four-block CNN")
check.fails(function() search.ecc_levels(2, true, 5) end, "depth must be 3 or 4", "ecc_levels: depth 5")
check.fails(function() search.target_kernels(net4, lab.zeros{ 40, 40 }, { map_stride = 8 }) end,
  "map_stride 8 is not a multiple of the 4-block CNN's deepest stride, 16", "target_kernels: a map cell finer than the fourth level")
check.fails(function() net(lab.zeros{ 2, 1, 16, 16 }) end, "SearchNet: forward takes (N, 1, 32, 32)", "SearchNet: a diet image of the wrong size")

---------------------------------------------------------------------------------------------------
-- the search on hand-made displays: the target among blank cells is fixated first
---------------------------------------------------------------------------------------------------
local function display_of(name, cond, n, i, blank_others)
  local e = stimuli.experiment(name)
  local s = stimuli.generate(name, cond, n, i)
  if blank_others then
    local canvas = raster.from_tensor(s.image)
    for j, item in ipairs(s.meta.items) do
      if j ~= s.meta.target then
        local b = item.box
        canvas:fill_rect(b[1], b[2], b[1] + b[3], b[2] + b[4], e.background)
      end
    end
    s.image = canvas.tensor
  end
  return { image = s.image, template = s.template, meta = s.meta, background = e.background, experiment = name }
end

local firsts = 0
local cases = { { "orientation_homo", "tilted_in_vertical", 12 }, { "curvature", "curve_in_lines", 16 }, { "q_o", "q_in_os", 12 },
                { "lighting", "top_down", 12 } }
for _, cs in ipairs(cases) do
  for i = 1, 2 do
    local dsp = display_of(cs[1], cs[2], cs[3], i, true)
    local r = search.search(net, dsp)
    if r.count == 1 and r.found and r.items[1] == dsp.meta.target then firsts = firsts + 1
    else print(string.format("  %s %s display %d: first fixation on item %s, target %d, count %d", cs[1], cs[2], i,
      tostring(r.items[1]), dsp.meta.target, r.count)) end
  end
end
check.ok(firsts == 2 * #cases, "a target among blank cells is fixated first (" .. firsts .. " of " .. 2 * #cases .. ")")

-- object-level inhibition of return: never the same item twice, every fixation inside its item's
-- cell, at most set size fixations; with the target unreachable (moved to an empty meta entry the
-- oracle never meets) the search visits every item once and stops
local revisits, outside, total_fix = 0, 0, 0
for _, cs in ipairs{ { "curvature", "line_in_curves", 16 }, { "orientation_hetero", "tilted_in_mixed", 12 }, { "tl", "l_in_ts", 9 } } do
  for i = 1, 2 do
    local dsp = display_of(cs[1], cs[2], cs[3], i, false)
    local r = search.search(net, dsp, { maps = true })
    local seen = {}
    for k, it in ipairs(r.items) do
      if seen[it] or it == 0 then revisits = revisits + 1 end
      seen[it] = true
      local fx = r.fixations[k + 1]
      if stimuli.item_at(dsp.meta, fx[1], fx[2], { window = 0.001 }) ~= it then outside = outside + 1 end
      total_fix = total_fix + 1
    end
    check.ok(r.found and r.count == #r.items and r.count <= cs[3] and #r.maps == #r.items,
      string.format("%s display %d: found within the set size, one map per fixation", cs[1], i))
    -- the same display with the target made unreachable
    local meta = { items = dsp.meta.items, target = 1 }
    local far = { cell_box = { -1000, -1000, 1, 1 } }
    meta.items = {}
    for j, it in ipairs(dsp.meta.items) do meta.items[j] = it end
    meta.items[#meta.items + 1] = far
    meta.target = #meta.items
    local none = search.search(net, { image = dsp.image, template = dsp.template, meta = meta, background = dsp.background,
                                      experiment = cs[1] })
    local set = {}
    for _, it in ipairs(none.items) do set[it] = (set[it] or 0) + 1 end
    local once = true
    for j = 1, cs[3] do if set[j] ~= 1 then once = false end end
    check.ok(not none.found and #none.items == cs[3] and once and none.count == cs[3] + 1,
      string.format("%s display %d: an unreachable target: every item fixated once, then the search stops (count = set size)", cs[1], i),
      string.format("%d fixations, count %d", #none.items, none.count))
  end
end
check.ok(revisits == 0, "inhibition of return: no item fixated twice", revisits .. " revisits")
check.ok(outside == 0 and total_fix > 0, "each fixation lies in the cell of the item it is counted on", outside .. " of " .. total_fix)

-- the chance searcher: u = 0 always takes the first item left, so the target's index is the count
local dsp = display_of("tl", "t_in_ls", 9, 3, false)
local u0 = {}
for k = 1, 10 do u0[k] = 0 end
local ch = search.chance_search(dsp.meta, u0)
check.ok(ch.found and ch.count == dsp.meta.target, "chance_search with u = 0 visits the items in order", ch.count .. " vs " .. dsp.meta.target)
lab.seed(9)
local ok_all = true
for _ = 1, 20 do
  local r = search.chance_search(dsp.meta, lab.rand{ 10 }:to("float64"):totable())
  local seen = {}
  for _, it in ipairs(r.items) do if seen[it] then ok_all = false end seen[it] = true end
  if not r.found or r.count < 1 or r.count > 9 then ok_all = false end
end
check.ok(ok_all, "chance_search: no revisits, the target found within the set size")
check.fails(function() search.search(net, dsp, { strid = 2 }) end, "test_visual_search.lua:", "an error points at the caller's line")
check.fails(function() search.search(net, dsp, { strid = 2 }) end, "visual_search.search: unknown option 'strid' (valid: downscale,",
  "search refuses an unknown option, listing the valid ones")
check.fails(function() search.search({}, dsp) end, "visual_search.search: net must be a visual_search.Net", "search: not a net")
check.fails(function() search.attention_map(net, lab.zeros{ 1, 1, 32, 32 }, { 1, 2, 3 }, { 1, 1 }) end,
  "attention_map: kernels must be the 3 levels'", "attention_map: kernels that are not tensors")
check.fails(function() net:features(lab.zeros{ 1, 1, 32, 32 }, { levels = search.ecc_levels(2) }) end,
  "SearchNet:features: levels need a fixation", "features: eccentric pooling without a fixation")
check.fails(function() search.chance_search(dsp.meta, { 0.5, "x", 1, 1, 1, 1, 1, 1, 1 }) end, "chance_search: u[2] must be a number",
  "chance_search: a uniform that is not a number")
check.fails(function() diet.draw({ 1, 2, 3 }) end, "visual_search_diet.draw: u must be a list of 16", "diet.draw: too few uniforms")
check.fails(function() search.search(net, { image = dsp.image }) end, "visual_search.search: display must be", "search: a display without meta")

---------------------------------------------------------------------------------------------------
-- the study, quick
---------------------------------------------------------------------------------------------------
local tmp = check.tmpdir("visual_search")
local study = check.study("experiments/visual_search.lua", tmp)
study.refuses("quick=true experiments=curvature,bogus", { "visual_search:", "bogus" }, "an unknown experiment is refused, naming it")

local out = tmp .. "/run"
study.run(out, "quick=true", "the quick study runs and exits 0")
local s = study.summary(out, { "experiments", "per_size", "downscale", "map_cell_px", "rt_formula", "training", "results", "human_sign_matches",
                               "human_sign_of", "reversed_human_sign_matches", "chance_human_sign_matches", "reversal", "figures",
                               "train_time_s", "search_time_s", "wall_time_s" })
check.ok(s.per_size == 2 and s.human_sign_of == 6, "quick: 2 displays per set size, the six eccNET experiments scored")
local tr = s.training or {}
check.ok(tr.normal and tr.reversed and type(tr.normal.accuracy) == "number" and tr.normal.final_loss < tr.normal.first_loss,
  "both CNNs trained, the loss falls")
local complete, rt_right = true, true
local missing = {}
for _, which in ipairs{ "normal", "reversed", "chance" } do
  local res = (s.results or {})[which] or {}
  for _, e in ipairs(stimuli.experiments) do
    local r = res[e.name]
    if not (r and type(r.asymmetry_index) == "number" and r.conditions) then complete = false missing[#missing + 1] = which .. "." .. e.name
    else
      if e.name ~= "q_o" and not (r.human_index == search.human[e.name].ai and r.eccnet_index == search.human[e.name].eccnet_ai
                                  and type(r.human_sign) == "boolean") then
        complete = false missing[#missing + 1] = which .. "." .. e.name .. ".human_index"
      end
      for _, cond in ipairs(e.conditions) do
        local cr = r.conditions[cond.name]
        if not (cr and #cr.set_sizes == #e.set_sizes and #cr.mean_fixations == #e.set_sizes and #cr.rt_ms == #e.set_sizes
                and type(cr.rt_slope_ms_per_item) == "number" and cr.found_rate == 1 and cr.harder == cond.harder) then
          complete = false missing[#missing + 1] = which .. "." .. e.name .. "." .. cond.name
        else
          for k2 = 1, #cr.rt_ms do
            if math.abs(cr.rt_ms[k2] - search.rt(cr.mean_fixations[k2])) > 1e-6 then rt_right = false end
            if cr.mean_fixations[k2] < 1 or cr.mean_fixations[k2] > cr.set_sizes[k2] then rt_right = false end
          end
          local slope = search.slope(cr.set_sizes, cr.rt_ms)
          if math.abs(slope - cr.rt_slope_ms_per_item) > 1e-6 then rt_right = false end
        end
      end
      local hs = r.conditions[e.conditions[1].name].rt_slope_ms_per_item
      local es = r.conditions[e.conditions[2].name].rt_slope_ms_per_item
      if math.abs(search.asymmetry_index(hs, es) - r.asymmetry_index) > 1e-9 then rt_right = false end
    end
  end
end
check.ok(complete, "every searcher, experiment and condition has its fields", table.concat(missing, ", "))
check.value(rt_right, "RT = 252.359 f + 376.271, the slopes and the indices follow from the mean fixations")
local rev = s.reversal or {}
check.ok(type(rev.flipped_or_removed) == "number" and rev.of == 6 and rev.experiments and rev.experiments.lighting
  and type(rev.experiments.lighting.flipped) == "boolean", "the reversal is tallied per experiment")
local pngs = 0
for _, fname in ipairs(s.figures or {}) do
  local okimg, im = pcall(lab.image.load, out .. "/" .. fname)
  if okimg and im:size(1) > 50 and im:size(2) > 50 then pngs = pngs + 1 end
end
check.ok(pngs == #(s.figures or {}) and pngs >= 2 * 7 + 2, "the figures are PNGs (" .. pngs .. ")")
local report = check.read_file(out .. "/report.md") or ""
check.ok(report:find("| 4 | tl | +0.40 | +0.79 |", 1, true) and report:find("asymmetry_scatter.png", 1, true),
  "report.md has the table beside the human and eccNET indices, and the figures")
local okr, recs = pcall(lab.viz.read, out)
local images = 0
if okr and type(recs) == "table" then
  for _, r in ipairs(recs) do if r.name == "search tl" and r.kind == lab.viz.KIND.heat then images = images + 1 end end
end
check.ok(images >= 1, "records.bin holds an attention map per fixation of the example search", images .. " heat records")

check.cleanup()
os.exit(check.report())
