-- The visual-search asymmetry study of eccNET (Gupta, Zhang, Wu, Wolfe, Kreiman, NeurIPS 2021,
-- "Visual Search Asymmetry: Deep Nets and Humans Share Similar Inherent Biases"), on the
-- workbench's redrawn stimuli, with a small CNN trained here on a synthetic developmental diet in
-- place of ImageNet's VGG16.
-- (One script, over 500 lines, on purpose: a study is one run a reader follows top to bottom:
-- training, the searches, the measures, figures, viewer records, summary and report; the model,
-- the stimuli and the diet are modules of their own, as in experiments/scanpath_oat.lua.)
--
--   attnlab run experiments/visual_search.lua                  the study (about 4 minutes, one thread)
--   attnlab run experiments/visual_search.lua quick=true       a test-sized run (15-30 s)
--   attnlab run experiments/visual_search.lua per_size=10 seed=2         10 displays per set size, another seed
--
-- What it does:
--   1. trains the CNN (lua/attnlab/tasks/visual_search.lua, SearchNet) to classify the diet's
--      pictures (lua/attnlab/tasks/visual_search_diet.lua: lines, arcs, T, L and + junctions,
--      shaded discs; class = category x pose bin) under the diet's biases (diet_* keys);
--   2. trains a second CNN on the reversed diet (every picture a quarter turn counter-clockwise,
--      the fractions of curves and crosses swapped), when reversed = true;
--   3. runs eccNET's search loop (visual_search.search) with each CNN on the displays of each
--      experiment (lua/attnlab/tasks/visual_search_stimuli.lua, read back from their PNGs), and a
--      chance searcher (random fixations, the same inhibition of return);
--   4. writes summary.json (fixations per set size, RT = 252.359 x fixations + 376.271 ms, RT
--      slopes, the asymmetry index beside the human and eccNET ones, the reversal), report.md and
--      its figures (PNG, lab.plot), and the viewer's records: per fixation, the display with the
--      scanpath so far and the attention map that chose the fixation (lab.viz.image).
-- docs/visual_search.md has the model, the recipe and the measured results.
local lab = require "attnlab"
local stimuli = require "attnlab.tasks.visual_search_stimuli"
local search = require "attnlab.tasks.visual_search"
local diet = require "attnlab.tasks.visual_search_diet"
local plot = lab.plot
local json = lab.json

local run = lab.run.start{
  name = "visual_search",
  config = {
    quick = false,            -- test-sized: per_size 2, steps 80 (unless given)
    experiments = "curvature,lighting,cross,tl,orientation_homo,orientation_hetero,q_o",
    per_size = 0,             -- displays per condition and set size (the first ones of each set);
                              -- 0: all of them, the paper's 30 or 36
    stimuli = "",             -- the stimuli's root directory ("": assets/stimuli in the tree)
    stimuli_seed = 1,
    downscale = 2,            -- displays and targets shrunk by this factor (block means) for the CNN
    map_stride = 16,          -- the attention map's cell, in model pixels (16 x 2 = eccNET's 32 px)
    ecc = true,               -- eccentricity-dependent pooling (false: plain pooling, eccNET's IVSN-like)
    channels = 8,             -- the CNN's widths: channels, 2 channels, 4 channels (, 8 channels)
    depth = 3,                -- the CNN's blocks: 3, or 4 (a fourth level at eccNET's pool5)
    diet_size = 32,           -- the diet's pictures, in pixels
    diet_toplit = 0.6, diet_vertical = 0.5, diet_curved = 0.25, diet_crosses = 0.2,
    reversed = true,          -- also train and evaluate a CNN on the reversed diet
    chance = true,            -- the chance searcher
    steps = 1000,             -- training steps per CNN
    batch = 64,
    lr = 3e-3,
    figures = true,           -- report.md's PNGs
    log_every = 50,
    seed = 1,
    viz = true,
  },
  kinds = { per_size = "integer", stimuli_seed = "integer", downscale = "integer", map_stride = "integer",
            channels = "integer", depth = "integer", diet_size = "integer" },
}
local cfg = run.config
local t_start = lab.time()
local function config_error(msg) error("visual_search: " .. msg, 0) end

-- quick=true: small values for the keys not given on the command line
local given = (rawget(_G, "ATTNLAB_CLI") or {}).overrides or {}
if cfg.quick then
  for k, v in pairs{ per_size = 2, steps = 80 } do
    if given[k] == nil then cfg[k] = v end
  end
end

if cfg.per_size < 0 then config_error("per_size must be >= 0 (0: every display of the set)") end
if cfg.steps < 1 then config_error("steps must be at least 1") end
if cfg.batch < 1 then config_error("batch must be at least 1") end
if cfg.downscale < 1 then config_error("downscale must be at least 1") end
if cfg.map_stride < 8 or cfg.map_stride % 8 ~= 0 then config_error("map_stride must be a positive multiple of 8 (model pixels)") end
if cfg.channels < 1 then config_error("channels must be at least 1") end
if cfg.depth ~= 3 and cfg.depth ~= 4 then config_error("depth must be 3 or 4 (the CNN's blocks)") end
local cell = 2 ^ cfg.depth
if cfg.diet_size < 2 * cell or cfg.diet_size % cell ~= 0 then
  config_error(string.format("diet_size must be a multiple of %d, at least %d (for depth %d)", cell, 2 * cell, cfg.depth))
end
if cfg.map_stride % cell ~= 0 then config_error(string.format("map_stride must be a multiple of %d for depth %d", cell, cfg.depth)) end
local experiments = {}
for name in cfg.experiments:gmatch("[^,%s]+") do
  local ok, err = pcall(stimuli.experiment, name)
  if not ok then config_error("experiments: " .. tostring(err):gsub("^.-visual_search_stimuli%.experiment: ", "")) end
  experiments[#experiments + 1] = name
end
if #experiments == 0 then config_error("experiments names none") end

local diet_opts = { size = cfg.diet_size, toplit = cfg.diet_toplit, vertical = cfg.diet_vertical, curved = cfg.diet_curved,
                    crosses = cfg.diet_crosses }
local ok_diet, diet_err = pcall(diet.options, diet_opts)
if not ok_diet then config_error(tostring(diet_err):gsub("^.-visual_search_diet%.options: ", "")) end
local rev_opts = {}
for k, v in pairs(diet_opts) do rev_opts[k] = v end
rev_opts.reversed = true

local search_opts = { downscale = cfg.downscale, map_stride = cfg.map_stride, ecc = cfg.ecc }
local root = cfg.stimuli ~= "" and cfg.stimuli or nil

---------------------------------------------------------------------------------------------------
-- 1, 2: the CNNs, trained on their diets (steps 1 .. steps: the diet; then the reversed diet)
---------------------------------------------------------------------------------------------------
local widths = { cfg.channels, 2 * cfg.channels, 4 * cfg.channels }
if cfg.depth == 4 then widths[4] = 8 * cfg.channels end
local nets = { normal = search.Net{ channels = widths, size = cfg.diet_size, classes = diet.classes } }
local optims = { normal = lab.optim.Adam(nets.normal, { lr = cfg.lr }) }
if cfg.reversed then
  nets.reversed = search.Net{ channels = widths, size = cfg.diet_size, classes = diet.classes }
  optims.reversed = lab.optim.Adam(nets.reversed, { lr = cfg.lr })
end
run:track{ model = nets.normal, optim = optims.normal, reversed_model = nets.reversed, reversed_optim = optims.reversed }

-- a held-out diet batch per CNN, from its own seed, for the accuracy
local held_out = (function()
  local state = lab.rng_state()
  lab.seed(cfg.seed + 1000003)
  local out = { normal = { diet.batch(512, diet_opts) } }
  if cfg.reversed then out.reversed = { diet.batch(512, rev_opts) } end
  lab.set_rng_state(state)
  return out
end)()
local function accuracy(which)
  return lab.no_grad(function()
    local x, y = held_out[which][1], held_out[which][2]
    return nets[which](x):argmax(-1):eq(y):float():mean():item()
  end)
end

local training = { normal = {}, reversed = cfg.reversed and {} or nil }
local total = cfg.steps * (cfg.reversed and 2 or 1)
local window, wn = 0, 0
local t_train = lab.time()
for step in run:steps(total) do
  local which = step > cfg.steps and "reversed" or "normal"
  local x, y = diet.batch(cfg.batch, which == "reversed" and rev_opts or diet_opts)
  local loss = lab.cross_entropy(nets[which](x), y)
  optims[which]:zero_grad()
  loss:backward()
  optims[which]:step()
  local lv = loss:item()
  local tr = training[which]
  tr.first_loss = tr.first_loss or lv
  tr.final_loss = lv
  window, wn = window + lv, wn + 1
  local last = step == cfg.steps or step == total
  if run:should_log(step) or last then
    local curve = which == "normal" and "loss" or "reversed_loss"
    local rec = { [curve] = window / wn }
    window, wn = 0, 0
    if last then rec[which == "normal" and "accuracy" or "reversed_accuracy"] = accuracy(which) end
    lab.viz.scalar(curve, rec[curve])
    run:log(step, rec)
  end
end
local train_time = lab.time() - t_train
for which, tr in pairs(training) do
  tr.accuracy = accuracy(which)
  tr.steps = cfg.steps
end
io.stderr:write(string.format("visual_search: trained in %.0f s; held-out diet accuracy %.3f%s\n", train_time,
  training.normal.accuracy, training.reversed and string.format(" (reversed diet: %.3f)", training.reversed.accuracy) or ""))

---------------------------------------------------------------------------------------------------
-- 3: the searches
---------------------------------------------------------------------------------------------------
-- the displays of one experiment: per condition, per set size, the first per_size of the set
local function displays_of(name)
  local index = stimuli.read(name, { root = root, seed = cfg.stimuli_seed, quiet = true })
  local out = {}
  for _, cond in ipairs(index.conditions) do
    local by_size, count = {}, {}
    for _, meta in ipairs(cond.stimuli) do
      local n = meta.set_size
      count[n] = (count[n] or 0) + 1
      if cfg.per_size == 0 or count[n] <= cfg.per_size then
        by_size[n] = by_size[n] or {}
        by_size[n][#by_size[n] + 1] = meta
      end
    end
    out[#out + 1] = { name = cond.name, harder = cond.harder, target = cond.target, distractors = cond.distractors, by_size = by_size }
  end
  return index, out
end

-- a generator of uniforms for the chance searcher, from its own seed (lab's generator is put back)
local function chance_uniforms(n)
  return lab.rand{ n }:to("float64"):totable()
end

local function mean(list)
  local s = 0
  for _, v in ipairs(list) do s = s + v end
  return #list > 0 and s / #list or 0 / 0
end

-- The spread of an asymmetry index over the displays: the 5th and 95th percentiles of the index
-- recomputed on BOOTSTRAP resamplings (with replacement) of each condition's displays at each set
-- size, from a seed of its own (lab's generator is put back).
local BOOTSTRAP = 1000
local function bootstrap(res)
  local state = lab.rng_state()
  lab.seed(cfg.seed + 424242)
  local harder, easier
  for _, c in pairs(res.conditions) do if c.harder then harder = c else easier = c end end
  local draws = 0
  for _, c in ipairs{ harder, easier } do for _, counts in ipairs(c.fixations) do draws = draws + #counts end end
  local u = lab.rand{ BOOTSTRAP, draws }:to("float64"):totable()
  local ais = {}
  for b = 1, BOOTSTRAP do
    local k, ub, sl = 0, u[b], {}
    for ci, c in ipairs{ harder, easier } do
      local rt = {}
      for si, counts in ipairs(c.fixations) do
        local s = 0
        for _ = 1, #counts do
          k = k + 1
          s = s + counts[math.min(#counts, 1 + math.floor(ub[k] * #counts))]
        end
        rt[si] = search.rt(s / #counts)
      end
      sl[ci] = search.slope(c.set_sizes, rt)
    end
    ais[b] = search.asymmetry_index(sl[1], sl[2])
  end
  lab.set_rng_state(state)
  table.sort(ais)
  return { ais[math.floor(0.05 * BOOTSTRAP) + 1], ais[math.ceil(0.95 * BOOTSTRAP)] }
end

-- One searcher over one experiment: per condition, the mean fixations and RT at each set size, the
-- slope of RT against set size, the found rate; the asymmetry index.  searcher(display) -> result.
local function evaluate(name, index, conds, searcher, keep)
  local e = {}
  for k, v in pairs(index) do if k ~= "conditions" then e[k] = v end end
  local res = { conditions = {}, order = {} }
  local slopes = {}
  for _, cond in ipairs(conds) do
    local sizes, fix, rts, found, per_display, n_found, n_all = {}, {}, {}, {}, {}, 0, 0
    for _, n in ipairs(index.set_sizes) do
      local counts = {}
      for _, meta in ipairs(cond.by_size[n] or {}) do
        local r = searcher(index, meta)
        counts[#counts + 1] = r.count
        n_all = n_all + 1
        if r.found then n_found = n_found + 1 end
        if keep then keep(cond, meta, r) end
      end
      if #counts > 0 then
        sizes[#sizes + 1] = n
        per_display[#per_display + 1] = counts
        fix[#fix + 1] = mean(counts)
        rts[#rts + 1] = search.rt(fix[#fix])
        found[#found + 1] = #counts
      end
    end
    local slope = #sizes >= 2 and search.slope(sizes, rts) or 0 / 0
    res.conditions[cond.name] = { harder = cond.harder, target = cond.target, distractors = cond.distractors, set_sizes = sizes,
                                  mean_fixations = fix, rt_ms = rts, displays = found, rt_slope_ms_per_item = slope,
                                  fixations = per_display,
                                  found_rate = n_all > 0 and n_found / n_all or 0 }
    res.order[#res.order + 1] = cond.name
    slopes[cond.harder and "harder" or "easier"] = slope
  end
  if slopes.harder == slopes.harder and slopes.easier == slopes.easier then
    res.asymmetry_index = search.asymmetry_index(slopes.harder, slopes.easier)
    res.asymmetry_index_interval = bootstrap(res)
  end
  local h = search.human[name]
  if h then
    res.human_index, res.eccnet_index = h.ai, h.eccnet_ai
    if res.asymmetry_index then res.human_sign = res.asymmetry_index > 0 end
  end
  return res
end

local target_cache = {}
local function cnn_searcher(which, name)
  local net = nets[which]
  return function(index, meta)
    local img, template = stimuli.load(index, meta)
    local key = which .. "|" .. index.dir .. "|" .. meta.target_image
    target_cache[key] = target_cache[key] or search.target_kernels(net, template, search_opts)
    local o = { kernels = target_cache[key], maps = true }
    for k, v in pairs(search_opts) do o[k] = v end
    return search.search(net, { image = img, template = template, meta = meta, background = index.background, experiment = name }, o)
  end
end

local function chance_searcher()
  return function(_, meta) return search.chance_search(meta, chance_uniforms(#meta.items + 1)) end
end

local results = { normal = {}, reversed = cfg.reversed and {} or nil, chance = cfg.chance and {} or nil }
local examples = {}            -- per experiment: the first display of the harder condition at the largest set size
local t_search = lab.time()
local n_searches = 0
for _, name in ipairs(experiments) do
  local t0 = lab.time()
  local index, conds = displays_of(name)
  local largest = index.set_sizes[#index.set_sizes]
  local function keep(cond, meta, r)
    n_searches = n_searches + 1
    if cond.harder and meta.set_size == largest and not examples[name] then
      examples[name] = { index = index, meta = meta, result = r }
    end
  end
  results.normal[name] = evaluate(name, index, conds, cnn_searcher("normal", name), keep)
  if cfg.reversed then
    results.reversed[name] = evaluate(name, index, conds, cnn_searcher("reversed", name), function() n_searches = n_searches + 1 end)
  end
  if cfg.chance then
    local state = lab.rng_state()
    lab.seed(cfg.seed + 7919 * stimuli.experiment(name).number)
    results.chance[name] = evaluate(name, index, conds, chance_searcher())
    lab.set_rng_state(state)
  end
  local r = results.normal[name]
  io.stderr:write(string.format("visual_search: %-18s AI %+.2f (human %+.2f)%s%s  %.1f s\n", name, r.asymmetry_index or 0 / 0,
    r.human_index or 0 / 0,
    cfg.reversed and string.format(", reversed diet %+.2f", results.reversed[name].asymmetry_index or 0 / 0) or "",
    cfg.chance and string.format(", chance %+.2f", results.chance[name].asymmetry_index or 0 / 0) or "", lab.time() - t0))
end
local search_time = lab.time() - t_search

---------------------------------------------------------------------------------------------------
-- 4: summary
---------------------------------------------------------------------------------------------------
local ECCNET = { "curvature", "lighting", "cross", "tl", "orientation_homo", "orientation_hetero" }
-- how many of the six indices have the human sign (all human indices are positive), and how many
-- of them have their whole bootstrap interval above 0
local function tally(res)
  local matches, counted, reliable = 0, 0, 0
  for _, name in ipairs(ECCNET) do
    local r = res[name]
    if r and r.asymmetry_index then
      counted = counted + 1
      if r.asymmetry_index > 0 then matches = matches + 1 end
      if r.asymmetry_index_interval and r.asymmetry_index_interval[1] > 0 then reliable = reliable + 1 end
    end
  end
  return matches, counted, reliable
end
-- the reversal: the polarity flips (the sign changes) or is removed (|AI| <= 0.1), per experiment
local REMOVED = 0.1
local reversal
if cfg.reversed then
  reversal = { experiments = {}, threshold_removed = REMOVED }
  local count, counted = 0, 0
  for _, name in ipairs(ECCNET) do
    local a, b = results.normal[name], results.reversed[name]
    if a and b and a.asymmetry_index and b.asymmetry_index then
      local flipped = (a.asymmetry_index > 0) ~= (b.asymmetry_index > 0) and b.asymmetry_index ~= 0
      local removed = math.abs(b.asymmetry_index) <= REMOVED
      reversal.experiments[name] = { normal = a.asymmetry_index, reversed = b.asymmetry_index, flipped = flipped, removed = removed }
      counted = counted + 1
      if flipped or removed then count = count + 1 end
    end
  end
  reversal.flipped_or_removed, reversal.of = count, counted
end

local summary = {
  note = "asymmetry index = (s_H - s_L) / (s_H + s_L) of the RT slopes, H the condition harder for humans; "
         .. "human_sign: the model's index is positive, as every human index is",
  experiments = experiments,
  per_size = cfg.per_size,
  downscale = cfg.downscale,
  map_cell_px = cfg.map_stride * cfg.downscale,
  rt_formula = { slope_ms = search.RT_SLOPE, intercept_ms = search.RT_INTERCEPT },
  training = training,
  results = results,
  searches = n_searches,
  train_time_s = train_time,
  search_time_s = search_time,
}
summary.human_sign_matches, summary.human_sign_of, summary.human_sign_interval_above_0 = tally(results.normal)
if cfg.reversed then summary.reversed_human_sign_matches = tally(results.reversed) end
if cfg.chance then summary.chance_human_sign_matches = tally(results.chance) end
summary.reversal = reversal

---------------------------------------------------------------------------------------------------
-- the viewer: per fixation of each example search, the scanpath so far and the map behind it
---------------------------------------------------------------------------------------------------
local viz = lab.viz
if cfg.viz and viz.enabled() then
  for _, name in ipairs(experiments) do
    local ex = examples[name]
    if ex then
      local img = stimuli.load(ex.index, ex.meta)
      local fx = ex.result.fixations
      for k = 2, #fx do
        local pts = {}
        for j = 1, k do pts[j] = { fx[j][1], fx[j][2] } end
        viz.set_step(total + k - 1)
        viz.image("search " .. name, img, { points = lab.tensor(pts), heat = ex.result.maps[k - 1], force = true })
      end
    end
  end
end

---------------------------------------------------------------------------------------------------
-- figures and report.md
---------------------------------------------------------------------------------------------------
local RED, BLUE, GREEN = { 0.84, 0.15, 0.16 }, { 0.12, 0.47, 0.71 }, { 0.17, 0.63, 0.17 }
local LIGHT_RED, LIGHT_BLUE = { 0.98, 0.6, 0.6 }, { 0.6, 0.78, 0.95 }

-- the display (grey, (H, W)) on an RGB canvas, at `scale` pixels per display pixel (block means)
local function display_canvas(img, scale)
  local H, W = img:size(1), img:size(2)
  local h, w = math.floor(H * scale), math.floor(W * scale)
  local small = scale == 1 and img
    or lab.interpolate(img:reshape{ 1, 1, H, W }, { size = { h, w }, mode = scale < 1 and "bilinear" or "nearest" }):reshape{ h, w }
  local rows = small:to("float64"):totable()
  local c = plot.canvas(w, h)
  for y = 1, h do
    local row = rows[y]
    for x = 1, w do
      local v = math.min(1, math.max(0, row[x]))
      local i = ((y - 1) * w + (x - 1)) * 3
      c.px[i], c.px[i + 1], c.px[i + 2] = v, v, v
    end
  end
  return c
end

-- the intersection displays (615 px) at half size, the lighting ones (198 px) at double
local function figure_scale(img)
  local n = img:size(1)
  return n > 400 and 0.5 or n < 250 and 2 or 1
end

local function box_outline(c, b, s, rgb)
  c:rect(b[1] * s, b[2] * s, b[3] * s, 2, rgb); c:rect(b[1] * s, (b[2] + b[4]) * s - 2, b[3] * s, 2, rgb)
  c:rect(b[1] * s, b[2] * s, 2, b[4] * s, rgb); c:rect((b[1] + b[3]) * s - 2, b[2] * s, 2, b[4] * s, rgb)
end

-- the scanpath: numbered dots joined by lines over the display, the target's cell in green
local function scanpath_figure(path, ex)
  local img = stimuli.load(ex.index, ex.meta)
  local s = figure_scale(img)
  local c = display_canvas(img, s)
  box_outline(c, ex.meta.items[ex.meta.target].cell_box, s, GREEN)
  local fx = ex.result.fixations
  for k = 2, #fx do c:line(fx[k - 1][1] * s, fx[k - 1][2] * s, fx[k][1] * s, fx[k][2] * s, RED, 2) end
  for k = 1, #fx do
    local x, y = fx[k][1] * s, fx[k][2] * s
    c:rect(x - 3, y - 3, 7, 7, k == 1 and BLUE or RED)
    local label = tostring(k - 1)
    c:rect(x + 4, y - 13, 8 * #label + 2, 12, { 1, 1, 1 })       -- a white tag, readable on any background
    c:text(x + 5, y - 12, label, { 0, 0, 0 }, 2)
  end
  c:save(path)
end

-- the first fixation's attention map beside the display: the map (after DoG) in viridis, stretched
-- to the display's size
local function attention_figure(path, ex)
  local img = stimuli.load(ex.index, ex.meta)
  local s = figure_scale(img)
  local left = display_canvas(img, s)
  local map = ex.result.maps[1]
  local lo, hi = map:min():item(), map:max():item()
  local rows = map:to("float64"):totable()
  local hm, wm = map:size(1), map:size(2)
  local cell = cfg.map_stride * cfg.downscale * s            -- one map cell, in figure pixels
  local c = plot.canvas(left.w * 2 + 10, left.h)
  for i = 0, left.w * left.h * 3 - 1 do
    local p = math.floor(i / 3)
    local y, x = math.floor(p / left.w), p % left.w
    c.px[(y * c.w + x) * 3 + i % 3] = left.px[i]
  end
  for y = 0, left.h - 1 do
    for x = 0, left.w - 1 do
      local my, mx = math.min(hm, math.floor(y / cell) + 1), math.min(wm, math.floor(x / cell) + 1)
      local u = hi > lo and (rows[my][mx] - lo) / (hi - lo) or 0
      local rgb = plot.viridis(u)
      local i = (y * c.w + left.w + 10 + x) * 3
      c.px[i], c.px[i + 1], c.px[i + 2] = rgb[1], rgb[2], rgb[3]
    end
  end
  local fx = ex.result.fixations
  for _, off in ipairs{ 0, left.w + 10 } do
    c:rect(off + fx[1][1] * s - 3, fx[1][2] * s - 3, 7, 7, BLUE)
    if fx[2] then c:rect(off + fx[2][1] * s - 3, fx[2][2] * s - 3, 7, 7, RED) end
  end
  c:save(path)
end

local function short(name) return (name:gsub("_", " ")) end

local function rt_figure(path, name)
  local series = {}
  local function add(res, cond, colour, label)
    local r = res and res[name] and res[name].conditions[cond]
    if r and #r.set_sizes > 0 then series[#series + 1] = { xs = r.set_sizes, ys = r.rt_ms, colour = colour, label = label } end
  end
  local e = stimuli.experiment(name)
  local hard, easy = e.conditions[1].name, e.conditions[2].name
  add(results.normal, hard, RED, short(hard))
  add(results.normal, easy, BLUE, short(easy))
  add(results.reversed, hard, LIGHT_RED, "rev")
  add(results.reversed, easy, LIGHT_BLUE, "rev")
  local h = search.human[name]
  if h and h.rt then
    series[#series + 1] = { xs = e.set_sizes, ys = h.rt[hard], colour = { 0.45, 0.1, 0.1 }, label = "human", thick = 1 }
    series[#series + 1] = { xs = e.set_sizes, ys = h.rt[easy], colour = { 0.1, 0.2, 0.45 }, label = "human", thick = 1 }
  end
  -- a y range whose quarter ticks print as round numbers (the chart writes 1500 as "2k")
  local top = 0
  for _, sr in ipairs(series) do for _, v in ipairs(sr.ys) do top = math.max(top, v) end end
  local ymax = 1000
  for _, v in ipairs{ 4000, 8000, 12000, 16000 } do if top > ymax then ymax = v end end
  plot.lines(path, { series = series, title = "rt (ms) vs set size: " .. short(name), width = 820, height = 420, ymin = 0, ymax = ymax })
end

-- human index (x) against the model's (y), one numbered point per experiment: the diet (red), the
-- reversed diet (blue), eccNET (grey)
local function scatter_figure(path)
  local W, H, L, B, T = 460, 460, 50, 50, 40
  local c = plot.canvas(W, H)
  local function px(v) return L + (W - L - 20) * (v + 1) / 2 end
  local function py(v) return H - B - (H - B - T) * (v + 1) / 2 end
  c:text(L, 10, "asymmetry index: human (x) vs model (y)", { 0, 0, 0 }, 2)
  for _, v in ipairs{ -1, -0.5, 0, 0.5, 1 } do
    c:line(px(v), py(-1), px(v), py(1), { 0.85, 0.85, 0.85 })
    c:line(px(-1), py(v), px(1), py(v), { 0.85, 0.85, 0.85 })
    c:text(px(v) - 8, H - B + 8, tostring(v), { 0, 0, 0 }, 2)
    c:text(4, py(v) - 5, tostring(v), { 0, 0, 0 }, 2)
  end
  c:line(px(-1), py(-1), px(1), py(1), { 0.5, 0.5, 0.5 })
  c:line(px(-1), py(0), px(1), py(0), { 0, 0, 0 })
  c:line(px(0), py(-1), px(0), py(1), { 0, 0, 0 })
  local function dot(x, y, rgb, label)
    y = math.max(-1, math.min(1, y))
    c:rect(px(x) - 3, py(y) - 3, 7, 7, rgb)
    c:text(px(x) + 6, py(y) - 5, label, rgb, 2)
  end
  for i, name in ipairs(ECCNET) do
    local h = search.human[name]
    dot(h.ai, h.eccnet_ai, { 0.55, 0.55, 0.55 }, tostring(i))
    if results.reversed and results.reversed[name] and results.reversed[name].asymmetry_index then
      dot(h.ai, results.reversed[name].asymmetry_index, BLUE, tostring(i))
    end
    if results.normal[name] and results.normal[name].asymmetry_index then dot(h.ai, results.normal[name].asymmetry_index, RED, tostring(i)) end
  end
  local lx = L
  for _, k in ipairs{ { "diet", RED }, { "reversed", BLUE }, { "eccnet", { 0.55, 0.55, 0.55 } } } do
    c:rect(lx, H - 18, 10, 8, k[2])
    lx = lx + 14 + c:text(lx + 14, H - 19, k[1], { 0, 0, 0 }, 2) + 12
  end
  c:save(path)
end

local function fmt(v, f)
  if type(v) ~= "number" or v ~= v then return "-" end
  return string.format(f or "%+.2f", v)
end

local figures = {}
if cfg.figures then
  local dir = run.dir
  for _, name in ipairs(experiments) do
    rt_figure(dir .. "/rt_" .. name .. ".png", name)
    figures[#figures + 1] = "rt_" .. name .. ".png"
    if examples[name] then
      scanpath_figure(dir .. "/scanpath_" .. name .. ".png", examples[name])
      attention_figure(dir .. "/attention_" .. name .. ".png", examples[name])
      figures[#figures + 1] = "scanpath_" .. name .. ".png"
      figures[#figures + 1] = "attention_" .. name .. ".png"
    end
  end
  scatter_figure(dir .. "/asymmetry_scatter.png")
  figures[#figures + 1] = "asymmetry_scatter.png"
  lab.image.save(dir .. "/diet.png", (function()
    local state = lab.rng_state()
    lab.seed(cfg.seed + 99)
    local sheet = diet.sheet(diet_opts, { rows = 4, cols = 16 })
    lab.set_rng_state(state)
    return sheet
  end)())
  figures[#figures + 1] = "diet.png"
end
summary.figures = figures

local lines = {}
local function add(s) lines[#lines + 1] = s end
add("# Visual search asymmetry: a small CNN on a synthetic diet, searched in eccNET's loop")
add("")
add(string.format("Run %s.  %d displays per condition and set size (%s), displays shrunk %dx, attention-map cells of %d display px, "
  .. "CNN widths %d/%d/%d trained %d steps (batch %d) on %dpx diet pictures; held-out diet accuracy %.3f%s.",
  run.dir, cfg.per_size, cfg.per_size == 0 and "all" or "the first ones of each set", cfg.downscale, cfg.map_stride * cfg.downscale,
  widths[1], widths[2], widths[3], cfg.steps, cfg.batch, cfg.diet_size, training.normal.accuracy,
  training.reversed and string.format(" (reversed diet %.3f)", training.reversed.accuracy) or ""))
add("")
add("## Asymmetry index (RT-slope based; positive = the human polarity)")
add("")
add("| # | experiment | human | eccNET | this model (diet) | reversed diet | chance |")
add("|---|---|---|---|---|---|---|")
-- an index with its bootstrap interval over the displays
local function with_interval(r)
  if not r or not r.asymmetry_index then return "-" end
  local iv = r.asymmetry_index_interval
  return fmt(r.asymmetry_index) .. (iv and string.format(" [%+.2f, %+.2f]", iv[1], iv[2]) or "")
end
for _, name in ipairs(experiments) do
  local e = stimuli.experiment(name)
  local h = search.human[name] or {}
  add(string.format("| %d | %s | %s | %s | %s | %s | %s |", e.number, name, fmt(h.ai), fmt(h.eccnet_ai),
    with_interval(results.normal[name]), results.reversed and with_interval(results.reversed[name]) or "-",
    results.chance and with_interval(results.chance[name]) or "-"))
end
add("")
add("In brackets: the 5th and 95th percentiles of the index over " .. BOOTSTRAP .. " bootstrap resamplings of the displays.")
add("")
add(string.format("Human polarity in %d of %d eccNET experiments (eccNET: 5 of 6); in %d of them the whole interval is above 0.",
  summary.human_sign_matches, summary.human_sign_of, summary.human_sign_interval_above_0))
if reversal then
  add(string.format("The reversed diet flips or removes (|AI| <= %.1f) the polarity in %d of %d.", REMOVED, reversal.flipped_or_removed, reversal.of))
end
add("")
add("## RT slopes (ms per item) and mean fixations per set size")
add("")
add("| experiment | condition | set sizes | fixations (diet) | slope (diet) | slope (reversed) | slope (chance) |")
add("|---|---|---|---|---|---|---|")
for _, name in ipairs(experiments) do
  for _, cname in ipairs(results.normal[name].order) do
    local r = results.normal[name].conditions[cname]
    local fx = {}
    for i, v in ipairs(r.mean_fixations) do fx[i] = string.format("%.2f", v) end
    local function sl(res) return res and fmt(res[name].conditions[cname].rt_slope_ms_per_item, "%.1f") or "-" end
    add(string.format("| %s | %s%s | %s | %s | %s | %s | %s |", name, cname, r.harder and " (harder)" or "",
      table.concat(r.set_sizes, ", "), table.concat(fx, ", "), sl(results.normal), sl(results.reversed), sl(results.chance)))
  end
end
add("")
if cfg.figures then
  add("## Figures")
  add("")
  add("![asymmetry](asymmetry_scatter.png)")
  add("")
  add("![diet](diet.png)")
  add("")
  for _, name in ipairs(experiments) do
    add("### " .. name)
    add("")
    add("![rt](rt_" .. name .. ".png)")
    if examples[name] then
      add("")
      add("Scanpath (diet CNN; blue: the start at the centre, numbers: the fixations in order, green: the target's cell) and the first "
        .. "fixation's attention map:")
      add("")
      add("![scanpath](scanpath_" .. name .. ".png) ![attention](attention_" .. name .. ".png)")
    end
    add("")
  end
end
summary.wall_time_s = lab.time() - t_start
add(string.format("Wall time %.0f s (training %.0f s, %d searches %.0f s).", summary.wall_time_s, train_time, n_searches, search_time))
lab.write_file_atomic(run.dir .. "/report.md", table.concat(lines, "\n") .. "\n")
run:summary(summary)
io.stderr:write(string.format("visual_search: human polarity in %d of %d%s; wall %.0f s\n", summary.human_sign_matches, summary.human_sign_of,
  reversal and string.format("; reversed diet flips or removes it in %d of %d", reversal.flipped_or_removed, reversal.of) or "",
  summary.wall_time_s))
run:finish()
