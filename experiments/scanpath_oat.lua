-- Scanpath prediction on synthetic shelves with an OAT-style predictor (Fang et al., ECCV 2024:
-- "Object-level Attention Transformer"; issue 11; docs/scanpath_oat.md).
-- (One script, over 500 lines, on purpose: a study is one run a reader follows top to bottom: data,
-- model, training, the scoring of every method, figures, viewer records, summary and report; the
-- shelves, the searchers, the model and the measures are modules of their own.)
--
-- No human eye-tracking data exists here, so the scanpaths to predict come from a stochastic
-- reference searcher (tasks/shelf_search.lua: noisy target-similarity priority with a proximity
-- bias, finite inhibition of return, refixations, misses and early stops) on synthetic shelves
-- (tasks/shelves.lua: a rows x cols grid of coloured, shaped, striped objects, one of them the
-- target, which is also shown alone).  The predictor (tasks/oat.lua) reads the objects' patches
-- and the target's, encodes them as object tokens, and decodes the scanpath one object at a time
-- with pointer-style attention over the objects and an end-of-search class.  It trains on fresh
-- shelves with training targets and is scored on held-out shelves whose targets are kinds it never
-- searched for, against baselines (random order, centre-first, nearest-neighbour, target-colour
-- greedy) and against a second draw of the reference searcher (how alike two draws are).
--
--   attnlab run experiments/scanpath_oat.lua --threads 1              the study (about 12 min)
--   attnlab run experiments/scanpath_oat.lua quick=true --threads 1   a smoke run (under 2 min)
--
-- Metrics (lab.scanpath, OAT's evaluation): sequence score (Needleman-Wunsch over object ids / max
-- length), MultiMatch (vector, direction, length, position over the fixations' grid coordinates,
-- from the shelf's centre), Levenshtein edit distance, each averaged over every pair of (predicted,
-- reference) scanpath of a held-out shelf; and the behavioural measures (target found, length,
-- search, refixation and revisit ratios) over all of a method's scanpaths, with the behavioural
-- delta against the reference's.  The model is scored with greedy decoding and with `samples`
-- sampled scanpaths per shelf (OAT: greedy, and 100 samples).
--
-- Writes summary.json, report.md, training.png (the curves), shelf_K.png (example shelves with the
-- reference's and the model's scanpaths), and to the viewer the example shelves with the model's
-- fixations step by step and its next-fixation distribution as heat (attnlab view RUN_DIR).
local lab = require "attnlab"
local shelves = require "attnlab.tasks.shelves"
local search = require "attnlab.tasks.shelf_search"
local oat = require "attnlab.tasks.oat"
local sp = lab.scanpath
local json = lab.json

local defaults = {
  quick = false,            -- a smoke run: the keys left at their defaults take the quick values below
  rows = 3, cols = 9, patch = 16,
  steps = 7000, batch = 16,     -- shelves per step
  paths_per_shelf = 4,      -- reference scanpaths trained on per shelf (the CNN and encoder run once per shelf)
  lr = 2e-3, warmup = 100,  -- then a cosine decay to lr / 10
  weight_decay = 0.01, grad_clip = 1.0,
  conv1 = 8, conv2 = 16,    -- the CNN's channels
  d_app = 32, d_pos = 32, layers = 3, dec_layers = 3, heads = 4, ffn = 128, pointer_heads = 2,
  pe = "gaussian",
  eos = "learned",          -- the end-of-search key: "learned", or "zero" (OAT's constant 0 score)
  decoder_input = "memory", -- the fixated objects' encoder outputs, or "token" (OAT: their input tokens)
  eval_size = 200,          -- held-out shelves
  refs = 5,                 -- reference scanpaths per held-out shelf (the "subjects")
  samples = 10,             -- sampled scanpaths per shelf for the model and the random baseline
  eval_every = 250,         -- held-out loss every this many steps
  examples = 3,             -- example shelves drawn (PNG and viewer)
  log_every = 50,
  seed = 1,
  viz = true, report = true,
}
local quick = { steps = 200, eval_size = 30, refs = 3, samples = 3, eval_every = 100, examples = 2 }

local run = lab.run.start{
  name = "scanpath_oat",
  config = defaults,
  kinds = { rows = "integer", cols = "integer", patch = "integer", conv1 = "integer", conv2 = "integer", d_app = "integer", d_pos = "integer",
            layers = "integer", dec_layers = "integer", heads = "integer", ffn = "integer", pointer_heads = "integer",
            eval_size = "integer", refs = "integer", paths_per_shelf = "integer", samples = "integer", examples = "integer", warmup = "integer",
            pe = { "gaussian", "trained" }, eos = { "zero", "learned" }, decoder_input = { "token", "memory" } },
}
local cfg = run.config
if cfg.quick then
  for k, v in pairs(quick) do if cfg[k] == defaults[k] then cfg[k] = v end end
end
local function config_error(msg) error("scanpath_oat: " .. msg, 0) end
for _, k in ipairs{ "batch", "eval_size", "refs", "samples", "paths_per_shelf" } do
  if cfg[k] < 1 then config_error(k .. " must be at least 1 (got " .. cfg[k] .. ")") end
end
if cfg.examples < 0 or cfg.examples > cfg.eval_size then config_error("examples must be in 0 .. eval_size") end
if cfg.eval_every < 1 then config_error("eval_every must be at least 1") end

local t_start = lab.time()
local shelf = shelves.config{ rows = cfg.rows, cols = cfg.cols, patch = cfg.patch }
local params = search.params()
local N, MAXLEN = shelf.n, params.max_len
local bank = shelves.patch_bank(shelf)

---------------------------------------------------------------------------------------------------
-- data.  Streams of the counter-based hash: layouts (seed, split, index); the reference's draws
-- (seed, 3 + the use, index, k), so that every scanpath is reproducible from its numbers alone.
---------------------------------------------------------------------------------------------------
local TRAIN_REF, TEST_REF, TEST_REF2, RANDOM = 3, 4, 5, 6

-- the decoder's inputs and targets for B scanpaths: inputs (B, T) start (N + 1) then the
-- fixations; targets (B, T) the fixations then end (N + 1), 0 (ignored) after
local function teacher(paths)
  local T = 1
  for _, p in ipairs(paths) do T = math.max(T, #p + 1) end
  local inputs, targets = {}, {}
  for b, p in ipairs(paths) do
    local x, y = { N + 1 }, {}
    for t = 1, #p do x[t + 1], y[t] = p[t], p[t] end
    y[#p + 1] = N + 1
    for t = #p + 2, T do x[t], y[t] = N + 1, 0 end
    inputs[b], targets[b] = x, y
  end
  return lab.tensor(inputs, "int64"), lab.tensor(targets, "int64")
end

local function train_batch(step)
  local layouts, paths = {}, {}
  for b = 1, cfg.batch do
    local index = (step - 1) * cfg.batch + b
    layouts[b] = shelves.layout(shelf, cfg.seed, "train", index)
    for k = 1, cfg.paths_per_shelf do
      paths[#paths + 1] = search.reference(layouts[b], params, shelves.stream(cfg.seed, TRAIN_REF, index, k))
    end
  end
  local inputs, targets = teacher(paths)
  return { patches = shelves.render(shelf, layouts, bank), inputs = inputs, targets = targets }
end

-- the held-out set: test layouts (held-out targets), their pixels drawn once from their own seed,
-- refs reference scanpaths each
local eval = (function()
  local state = lab.rng_state()
  lab.seed(cfg.seed + 1000003)
  local e = { layouts = {}, refs = {} }
  for i = 1, cfg.eval_size do
    local L = shelves.layout(shelf, cfg.seed, "test", i)
    e.layouts[i] = L
    local r = {}
    for k = 1, cfg.refs do r[k] = search.reference(L, params, shelves.stream(cfg.seed, TEST_REF, i, k)) end
    e.refs[i] = r
  end
  e.patches = shelves.render(shelf, e.layouts, bank)
  local first = {}
  local nll, events = 0, 0
  for i = 1, cfg.eval_size do
    first[i] = e.refs[i][1]
    local lp, count = search.log_likelihood(e.layouts[i], params, first[i])
    nll, events = nll - lp, events + count
  end
  e.floor = nll / events      -- the reference's own cross-entropy per event on these scanpaths
  e.inputs, e.targets = teacher(first)
  lab.set_rng_state(state)
  return e
end)()

---------------------------------------------------------------------------------------------------
-- the model
---------------------------------------------------------------------------------------------------
local model = oat.Model{ rows = cfg.rows, cols = cfg.cols, patch = cfg.patch, channels = { cfg.conv1, cfg.conv2 }, d_app = cfg.d_app, d_pos = cfg.d_pos,
  layers = cfg.layers, dec_layers = cfg.dec_layers, heads = cfg.heads, ffn = cfg.ffn, pointer_heads = cfg.pointer_heads,
  max_len = MAXLEN, pe = cfg.pe, eos = cfg.eos, decoder_input = cfg.decoder_input }
local opt = lab.optim.AdamW(model, { lr = cfg.lr, weight_decay = cfg.weight_decay })
run:track{ model = model, optim = opt }

local function loss_of(logits, targets)
  local B, T = logits:size(1), logits:size(2)
  return lab.cross_entropy(logits:reshape{ B * T, N + 1 }, targets:reshape{ B * T }, { ignore = 0 })
end

local function eval_loss()
  model:eval()
  local v = lab.no_grad(function()
    local chunk, total, count = 50, 0, 0
    for i = 1, cfg.eval_size, chunk do
      local m = math.min(chunk, cfg.eval_size - i + 1)
      local tg = eval.targets:narrow(1, i, m)
      local n = tg:gt(0):sum():item()
      total = total + loss_of(model(eval.patches:narrow(1, i, m), eval.inputs:narrow(1, i, m)), tg):item() * n
      count = count + n
    end
    return total / count
  end)
  model:train()
  return v
end

---------------------------------------------------------------------------------------------------
-- training: a fresh batch of training shelves every step
---------------------------------------------------------------------------------------------------
local viz = lab.viz
local curve = { steps = {}, loss = {}, eval_steps = {}, eval_loss = {} }
local first_loss, last_loss
local window, wn = 0, 0
local t_loop = lab.time()
for step in run:steps(cfg.steps) do
  local progress = (step - 1) / math.max(1, cfg.steps - 1)
  opt.hyper.lr = cfg.lr * (cfg.warmup > 0 and math.min(1, step / cfg.warmup) or 1) * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))
  local b = train_batch(step)
  local loss = loss_of(model(b.patches, b.inputs), b.targets)
  opt:zero_grad()
  loss:backward()
  if cfg.grad_clip > 0 then lab.optim.clip_grad_norm(model, cfg.grad_clip) end
  opt:step()
  local lv = loss:item()
  first_loss = first_loss or lv
  last_loss = lv
  window, wn = window + lv, wn + 1
  if run:should_log(step) or step == cfg.steps then
    local rec = { loss = window / wn }
    curve.steps[#curve.steps + 1], curve.loss[#curve.loss + 1] = step, rec.loss
    window, wn = 0, 0
    if step % cfg.eval_every == 0 or step == cfg.steps then
      rec.eval_loss = eval_loss()
      curve.eval_steps[#curve.eval_steps + 1], curve.eval_loss[#curve.eval_loss + 1] = step, rec.eval_loss
      viz.scalar("held-out loss", rec.eval_loss)
    end
    viz.scalar("loss", rec.loss)
    run:log(step, rec)
  end
end
local train_time = lab.time() - t_loop
model:eval()

---------------------------------------------------------------------------------------------------
-- evaluation on the held-out shelves
---------------------------------------------------------------------------------------------------
local t_eval = lab.time()
-- the model's scanpaths, in chunks of shelves: a list per shelf
local function model_paths(greedy, K)
  local out = {}
  local state = lab.rng_state()
  lab.seed(cfg.seed + 2000003)
  local chunk = greedy and 100 or math.max(1, math.floor(400 / K))
  for i = 1, cfg.eval_size, chunk do
    local m = math.min(chunk, cfg.eval_size - i + 1)
    local paths = model:generate(eval.patches:narrow(1, i, m), { greedy = greedy, samples = K })
    for s = 1, m do
      local list = {}
      for k = 1, K do list[k] = paths[(s - 1) * K + k] end
      out[i + s - 1] = list
    end
  end
  lab.set_rng_state(state)
  return out
end

local methods = {
  { key = "model_greedy", label = "OAT-style model, greedy", paths = model_paths(true, 1) },
  { key = "model_sampled", label = string.format("OAT-style model, %d samples", cfg.samples), paths = model_paths(false, cfg.samples) },
}
local function per_shelf(fn)
  local out = {}
  for i, L in ipairs(eval.layouts) do out[i] = fn(i, L) end
  return out
end
methods[#methods + 1] = { key = "reference_redraw", label = "reference searcher, another draw",
  paths = per_shelf(function(i, L)
    local list = {}
    for k = 1, cfg.samples do list[k] = search.reference(L, params, shelves.stream(cfg.seed, TEST_REF2, i, k)) end
    return list
  end) }
methods[#methods + 1] = { key = "random", label = "random order (IoR)", baseline = true,
  paths = per_shelf(function(i, L)
    local list = {}
    for k = 1, cfg.samples do list[k] = search.baselines.random(L, MAXLEN, shelves.stream(cfg.seed, RANDOM, i, k)) end
    return list
  end) }
for _, b in ipairs{ { "centre", "centre-first" }, { "nearest", "nearest-neighbour" }, { "similarity", "target-colour greedy" } } do
  methods[#methods + 1] = { key = b[1], label = b[2], baseline = true,
    paths = per_shelf(function(_, L) return { search.baselines[b[1]](L, MAXLEN) } end) }
end

-- a fixation's point for MultiMatch: (column, row) of its cell, in cells; every scanpath starts
-- at the shelf's centre, where the search began
local SIZE = { cfg.cols, cfg.rows }
local function points(L, path)
  local r0, c0 = search.start(L)
  local pts = { { c0 - 1, r0 - 1 } }
  for k, j in ipairs(path) do pts[k + 1] = { L.col[j] - 1, L.row[j] - 1 } end
  return pts
end

local all_refs, ref_targets = {}, {}
for i, L in ipairs(eval.layouts) do
  for _, p in ipairs(eval.refs[i]) do all_refs[#all_refs + 1], ref_targets[#ref_targets + 1] = p, L.target end
end
local ref_behaviour = sp.behaviour(all_refs, ref_targets)

local MM = { "vector", "direction", "length", "position" }
local function score(m)
  local ss, ed, count, mm, mm_pairs = 0, 0, 0, { vector = 0, direction = 0, length = 0, position = 0, mean = 0 }, 0
  local all, targets = {}, {}
  for i, L in ipairs(eval.layouts) do
    local ref_pts = {}
    for k, r in ipairs(eval.refs[i]) do ref_pts[k] = points(L, r) end
    for _, p in ipairs(m.paths[i]) do
      all[#all + 1], targets[#targets + 1] = p, L.target
      local pts = points(L, p)
      for k, r in ipairs(eval.refs[i]) do
        ss = ss + sp.sequence_score(p, r)
        ed = ed + sp.edit_distance(p, r)
        count = count + 1
        local v = sp.multimatch(pts, ref_pts[k], SIZE)
        if v then
          for _, key in ipairs(MM) do mm[key] = mm[key] + v[key] end
          mm.mean = mm.mean + v.mean
          mm_pairs = mm_pairs + 1
        end
      end
    end
  end
  for key, v in pairs(mm) do mm[key] = mm_pairs > 0 and v / mm_pairs or 0 end
  local b = sp.behaviour(all, targets)
  local delta, terms = sp.behaviour_delta(b, ref_behaviour)
  return { label = m.label, sequence_score = ss / count, edit_distance = ed / count, multimatch = mm,
           multimatch_pairs = mm_pairs, pairs = count, behaviour = b, behavioural_delta = delta, delta_terms = terms,
           scanpaths = #all }
end

local results, order = {}, {}
for _, m in ipairs(methods) do
  results[m.key] = score(m)
  order[#order + 1] = m.key
end
local best_baseline, best_ss = nil, -1
local lowest_baseline_delta = math.huge
for _, m in ipairs(methods) do
  if m.baseline then
    local r = results[m.key]
    if r.sequence_score > best_ss then best_baseline, best_ss = m.key, r.sequence_score end
    lowest_baseline_delta = math.min(lowest_baseline_delta, r.behavioural_delta)
  end
end
local target = {}
for _, key in ipairs{ "model_greedy", "model_sampled" } do
  local r = results[key]
  target[key] = {
    ss_ratio_to_best_baseline = r.sequence_score / best_ss,
    ss_at_least_10_percent_better = r.sequence_score >= 1.1 * best_ss,
    delta_below_every_baseline = r.behavioural_delta < lowest_baseline_delta,
  }
  target[key].met = target[key].ss_at_least_10_percent_better and target[key].delta_below_every_baseline
end
local eval_time = lab.time() - t_eval

---------------------------------------------------------------------------------------------------
-- figures: the curves, example shelves with the reference's and the model's scanpaths
---------------------------------------------------------------------------------------------------
local plot = lab.plot
local SCALE = 4
local RED, BLUE, BLACK, WHITE = { 0.85, 0.1, 0.1 }, { 0.1, 0.35, 0.9 }, { 0, 0, 0 }, { 1, 1, 1 }

-- one panel: the shelf at (x0, y0) with a scanpath drawn as numbered points joined by lines
local function draw_shelf(c, x0, y0, img, L, path, colour, title)
  local H, W = img:size(1), img:size(2)
  local px = img:totable()
  for y = 1, H do
    for x = 1, W do c:set(x0 + x - 1, y0 + y - 1, px[y][x]) end
  end
  c:text(x0, y0 - 14, title, BLACK)
  local r0, c0 = search.start(L)
  local cell = W / cfg.cols
  local lx, ly = x0 + (c0 - 0.5) * cell, y0 + (r0 - 0.5) * cell
  c:rect(math.floor(lx) - 2, math.floor(ly) - 2, 5, 5, colour)
  for k, j in ipairs(path) do
    local cx, cy = shelves.cell_centre(shelf, L, j, SCALE)
    cx, cy = x0 + cx, y0 + cy
    c:line(math.floor(lx), math.floor(ly), math.floor(cx), math.floor(cy), colour, 2)
    lx, ly = cx, cy
  end
  -- the numbers over the lines; a refixated or revisited object gets its numbers side by side,
  -- in rows of the cell's width
  local used = {}
  for k, j in ipairs(path) do
    local cx, cy = shelves.cell_centre(shelf, L, j, SCALE)
    local label = tostring(k)
    local w = #label * 8 + 3
    local u = used[j] or { x = 0, row = 0 }
    if u.x > 0 and u.x + w > cell - 8 then u.x, u.row = 0, u.row + 1 end
    local tx, ty = math.floor(x0 + cx - cell / 2 + 4 + u.x), math.floor(y0 + cy - 6 + u.row * 13)
    u.x = u.x + w
    used[j] = u
    c:rect(tx - 1, ty - 1, #label * 8 + 1, 12, WHITE)
    c:text(tx, ty, label, colour)
  end
  -- the target's cell outlined
  local tx, ty = shelves.cell_centre(shelf, L, L.target, SCALE)
  local half = cell / 2 - 1
  local x1, y1, x2, y2 = math.floor(x0 + tx - half), math.floor(y0 + ty - half), math.floor(x0 + tx + half), math.floor(y0 + ty + half)
  c:line(x1, y1, x2, y1, BLACK, 2); c:line(x1, y2, x2, y2, BLACK, 2); c:line(x1, y1, x1, y2, BLACK, 2); c:line(x2, y1, x2, y2, BLACK, 2)
end

local figures = {}
local examples = {}
-- the examples: the first held-out shelves whose first reference scanpath has 4 fixations or more
-- (a search, not a target found at the first glance), then the first others
local chosen, taken = {}, {}
for pass = 1, 2 do
  for i = 1, cfg.eval_size do
    if #chosen < cfg.examples and not taken[i] and (pass == 2 or #eval.refs[i][1] >= 4) then chosen[#chosen + 1], taken[i] = i, true end
  end
end
for k, i in ipairs(chosen) do
  local e = i
  local L = eval.layouts[e]
  local img = shelves.image(shelf, L, eval.patches:select(1, e), SCALE)
  local H, W = img:size(1), img:size(2)
  local target_img = lab.interpolate(eval.patches:select(1, e):narrow(1, N + 1, 1), { scale_factor = SCALE * 2, mode = "nearest" })
    :squeeze(1):permute(2, 3, 1):contiguous()
  local TW = target_img:size(2)
  local panels = {
    { eval.refs[e][1], RED, "REFERENCE SEARCHER (ONE DRAW)" },
    { methods[1].paths[e][1], BLUE, "MODEL, GREEDY" },
    { methods[2].paths[e][1], BLUE, "MODEL, ONE SAMPLE" },
  }
  local pad = 24
  local c = plot.canvas(W + TW + 3 * 12, #panels * (H + pad) + 12)
  local tp = target_img:totable()
  c:text(8, 8, "TARGET", BLACK)
  for y = 1, target_img:size(1) do
    for x = 1, TW do c:set(8 + x - 1, 24 + y - 1, tp[y][x]) end
  end
  for k, pnl in ipairs(panels) do
    draw_shelf(c, TW + 24, (k - 1) * (H + pad) + pad, img, L, pnl[1], pnl[2], pnl[3])
  end
  local name = string.format("shelf_%d.png", k)
  c:save(run.dir .. "/" .. name)
  figures[#figures + 1] = name
  examples[k] = { shelf = e, index = L.index, target = L.target, target_kind = shelves.describe_kind(shelf, L.target_kind),
                  reference = eval.refs[e], model_greedy = methods[1].paths[e][1], model_sample = methods[2].paths[e][1],
                  figure = name, image = img }
end
plot.lines(run.dir .. "/training.png", {
  series = { { xs = curve.steps, ys = curve.loss, label = "training loss", colour = BLUE },
             { xs = curve.eval_steps, ys = curve.eval_loss, label = "held-out loss", colour = RED, thick = 2 } },
  hlines = { { y = eval.floor, colour = BLACK } },
  xmin = 0, xmax = math.max(1, cfg.steps), title = "cross-entropy over N + 1 classes per step" })

---------------------------------------------------------------------------------------------------
-- the viewer: each example shelf with the model's greedy fixations step by step, and its
-- next-fixation distribution over the objects as heat
---------------------------------------------------------------------------------------------------
if cfg.viz and viz.enabled() then
  for x, ex in ipairs(examples) do
    local e = ex.shelf
    local L = eval.layouts[e]
    local path = ex.model_greedy
    local inputs = { N + 1 }
    for k = 1, #path do inputs[k + 1] = path[k] end
    local probs = lab.no_grad(function()
      local logits = model(eval.patches:narrow(1, e, 1), lab.tensor({ inputs }, "int64"))
      return logits:softmax(3)
    end)
    -- record k (step steps + k + 1): the first k fixations (numbered 1 .. k by the viewer) and
    -- the distribution of fixation k + 1
    local pts = {}
    for k = 0, #path do
      if k > 0 then
        local px, py = shelves.cell_centre(shelf, L, path[k], SCALE)
        pts[#pts + 1] = { px, py }
      end
      viz.set_step(cfg.steps + k + 1)
      local heat = probs:narrow(2, k + 1, 1):reshape{ N + 1 }:narrow(1, 1, N):reshape{ cfg.rows, cfg.cols }
      viz.image("shelf " .. x .. " (model)", ex.image, { points = k > 0 and lab.tensor(pts) or nil, heat = heat, force = true })
    end
  end
end

---------------------------------------------------------------------------------------------------
-- summary.json and report.md
---------------------------------------------------------------------------------------------------
local summary = {
  task = string.format("%d x %d shelves of %d kinds (%d colours x %d shapes x %d textures); held-out shelves have held-out target kinds (%d of %d)",
    cfg.rows, cfg.cols, shelf.kinds, shelf.colours, shelf.shapes, shelf.textures, #shelf.test_kinds, shelf.kinds),
  reference_params = params,
  reference_behaviour = ref_behaviour,
  methods = results, order = order,
  best_baseline = best_baseline, best_baseline_sequence_score = best_ss, lowest_baseline_delta = lowest_baseline_delta,
  target = target,
  first_loss = first_loss, final_loss = last_loss, final_eval_loss = curve.eval_loss[#curve.eval_loss],
  reference_cross_entropy = eval.floor,
  curve = curve,
  examples = {},
  figures = figures,
  steps = cfg.steps, eval_size = cfg.eval_size, refs = cfg.refs, samples = cfg.samples,
  parameters = model:num_parameters(),
  train_time_s = train_time, eval_time_s = eval_time,
}
for e, ex in ipairs(examples) do
  summary.examples[e] = { index = ex.index, target = ex.target, target_kind = ex.target_kind, reference = ex.reference,
                          model_greedy = ex.model_greedy, model_sample = ex.model_sample, figure = ex.figure }
end
summary.wall_time_s = lab.time() - t_start
run:summary(summary)

if cfg.report then
  local R = {}
  local function add(s) R[#R + 1] = s end
  add("# Scanpath prediction on synthetic shelves (OAT-style)")
  add("")
  add(string.format("%s.  %d training steps of batch %d (fresh training shelves each step), a model of %d parameters (%s).",
    summary.task, cfg.steps, cfg.batch, summary.parameters, model:describe()))
  add(string.format("Scored on %d held-out shelves, %d reference scanpaths each; the model greedy and with %d samples per shelf.  Wall time %.0f s (training %.0f s, evaluation %.0f s).",
    cfg.eval_size, cfg.refs, cfg.samples, summary.wall_time_s, train_time, eval_time))
  add("")
  add("| method | SS | MultiMatch (vec / dir / len / pos) | MM mean | edit distance | found | length | search | refix | revisit | behavioural delta |")
  add("|---|---|---|---|---|---|---|---|---|---|---|")
  local rb = ref_behaviour
  add(string.format("| reference searcher (the targets) | | | | | %.3f | %.2f | %.3f | %.3f | %.3f | |", rb.found, rb.length, rb.search, rb.refix, rb.revisit))
  for _, key in ipairs(order) do
    local r = results[key]
    local m, b = r.multimatch, r.behaviour
    add(string.format("| %s | %.3f | %.3f / %.3f / %.3f / %.3f | %.3f | %.2f | %.3f | %.2f | %.3f | %.3f | %.3f | %.3f |", r.label,
      r.sequence_score, m.vector, m.direction, m.length, m.position, m.mean, r.edit_distance, b.found, b.length, b.search,
      b.refix, b.revisit, r.behavioural_delta))
  end
  add("")
  add(string.format("Best baseline by sequence score: %s (%.3f); lowest baseline behavioural delta %.3f.", results[best_baseline].label,
    best_ss, lowest_baseline_delta))
  for _, key in ipairs{ "model_greedy", "model_sampled" } do
    local t = target[key]
    add(string.format("- %s: SS %.2f x the best baseline's (target >= 1.10: %s); behavioural delta %.3f (below every baseline's: %s).  **Target %s.**",
      results[key].label, t.ss_ratio_to_best_baseline, t.ss_at_least_10_percent_better and "met" or "not met",
      results[key].behavioural_delta, t.delta_below_every_baseline and "yes" or "no", t.met and "met" or "not met"))
  end
  add("")
  add("SS: sequence score (Needleman-Wunsch over object ids, 0/1 similarity, gap 0, / max length).  MultiMatch over the fixations' grid coordinates, each scanpath starting at the shelf's centre; pairs with no saccade are left out.  Scores are means over every (method scanpath, reference scanpath) pair of a shelf.  The behavioural delta is the mean over the five measures of |method - reference| / reference.  The redrawn reference is not a baseline: it shows how alike two draws of the same stochastic searcher are.")
  add("")
  add("## Training")
  add("")
  add("![training curves](training.png)")
  add("")
  add(string.format("Blue: the training loss (mean per log window); red: the loss on the held-out shelves' first reference scanpaths; dashed black: the floor, the reference searcher's own cross-entropy on those scanpaths (%.3f per event; search.log_likelihood).  First %.3f, last %.3f, held-out %.3f.",
    eval.floor, first_loss, last_loss, summary.final_eval_loss or 0 / 0))
  add("")
  add("## Example held-out shelves")
  add("")
  for e, ex in ipairs(examples) do
    add(string.format("![shelf %d](%s)", e, ex.figure))
    add("")
    local function ids(p) local s = {} for k, j in ipairs(p) do s[k] = tostring(j) end return "[" .. table.concat(s, " ") .. "]" end
    add(string.format("Example %d, held-out shelf %d: target object %d (%s, outlined).  Reference %s; model greedy %s; one sample %s (object ids count row by row from the top left; every search starts at the centre, object %d).",
      e, ex.index, ex.target, ex.target_kind, ids(ex.reference[1]), ids(ex.model_greedy), ids(ex.model_sample),
      (math.ceil(cfg.rows / 2) - 1) * cfg.cols + math.ceil(cfg.cols / 2)))
    add("")
  end
  add("The viewer (`attnlab view " .. run.dir .. "`) shows the example shelves with the model's greedy fixations one step at a time and its next-fixation distribution over the objects as heat.")
  lab.write_file_atomic(run.dir .. "/report.md", table.concat(R, "\n") .. "\n")
end

local g, s = results.model_greedy, results.model_sampled
io.stderr:write(string.format("SS: model greedy %.3f, sampled %.3f, best baseline (%s) %.3f, reference redraw %.3f | delta: greedy %.3f, sampled %.3f, lowest baseline %.3f | wall %.0f s\n",
  g.sequence_score, s.sequence_score, best_baseline, best_ss, results.reference_redraw.sequence_score, g.behavioural_delta,
  s.behavioural_delta, lowest_baseline_delta, summary.wall_time_s))
run:finish()
