-- test_scanpath.lua -- the scanpath study (issue 11, OAT): lab.scanpath's measures against
-- hand-worked examples (and the sequence score against a brute-force longest common subsequence),
-- the synthetic shelves (the held-out split, one target per shelf, reproducible draws), the
-- reference searcher and the baselines, the OAT-style model (its position code, a causal decoder,
-- its end-of-search class, generation), and a quick run of experiments/scanpath_oat.lua through the
-- program: the loss falls, summary.json holds the study's fields, the figures and report exist.
--   ./build/attnlab tests/lua/test_scanpath.lua
local check = dofile("tests/lua/check.lua")("scanpath")
local lab = lab or require "attnlab"
local json = lab.json
local sp = lab.scanpath
local shelves = require "attnlab.tasks.shelves"
local search = require "attnlab.tasks.shelf_search"
local oat = require "attnlab.tasks.oat"

---------------------------------------------------------------------------------------------------
-- sequence score: Needleman-Wunsch, 0/1 similarity, gap 0, / max length
---------------------------------------------------------------------------------------------------
check.value(sp.sequence_score({ 1, 2, 3 }, { 1, 2, 3 }) == 1, "SS of identical scanpaths is 1")
check.near(sp.sequence_score({ 1, 2, 3, 4 }, { 2, 4 }), 2 / 4, 1e-15, "SS [1 2 3 4] vs [2 4]: 2 aligned of 4")
check.near(sp.sequence_score({ 1, 2, 3 }, { 3, 2, 1 }), 1 / 3, 1e-15, "SS [1 2 3] vs [3 2 1]: one aligned of 3")
-- 5 1 5 2 against 1 5 2 5 5: 1 5 2 aligns (5 5 2 and 1 5 5 do not occur in both), 3 of 5
check.near(sp.sequence_score({ 5, 1, 5, 2 }, { 1, 5, 2, 5, 5 }), 3 / 5, 1e-15, "SS [5 1 5 2] vs [1 5 2 5 5]: 3 of 5")
check.value(sp.sequence_score({ 7 }, { 8 }) == 0, "SS of disjoint scanpaths is 0")
check.value(sp.sequence_score({}, {}) == 1 and sp.sequence_score({ 1 }, {}) == 0, "SS: two empty scanpaths 1, one empty 0")

-- against the longest common subsequence found by enumerating every subsequence of a
local function brute_lcs(a, b)
  local best = 0
  for mask = 0, 2 ^ #a - 1 do
    local sub, m = {}, mask
    for i = 1, #a do
      if m % 2 == 1 then sub[#sub + 1] = a[i] end
      m = math.floor(m / 2)
    end
    if #sub > best then
      local j = 1
      for i = 1, #b do if j <= #sub and b[i] == sub[j] then j = j + 1 end end
      if j > #sub then best = #sub end
    end
  end
  return best
end
local rng = shelves.stream(7, 1)
local worst = 0
for _ = 1, 200 do
  local a, b = {}, {}
  for i = 1, rng.int(8) do a[i] = 1 + rng.int(4) end
  for i = 1, rng.int(8) do b[i] = 1 + rng.int(4) end
  local want = (#a == 0 and #b == 0) and 1 or brute_lcs(a, b) / math.max(#a, #b)
  worst = math.max(worst, math.abs(sp.sequence_score(a, b) - want), math.abs(sp.sequence_score(b, a) - want))
end
check.value(worst < 1e-15, "SS equals the brute-force LCS / max length on 200 random pairs, both ways", tostring(worst))

---------------------------------------------------------------------------------------------------
-- edit distance
---------------------------------------------------------------------------------------------------
local function chars(s) local t = {} for i = 1, #s do t[i] = s:sub(i, i) end return t end
check.value(sp.edit_distance(chars("kitten"), chars("sitting")) == 3, "edit distance kitten -> sitting is 3")
check.value(sp.edit_distance({ 1, 2, 3 }, {}) == 3 and sp.edit_distance({}, { 4 }) == 1, "edit distance to an empty scanpath is its length")
check.value(sp.edit_distance({ 1, 2, 3 }, { 1, 3 }) == 1, "edit distance [1 2 3] -> [1 3] is 1 (a deletion)")
check.value(sp.edit_distance({ 1, 2 }, { 2, 1 }) == 2, "edit distance [1 2] -> [2 1] is 2")
check.value(sp.edit_distance({ 4, 4, 9 }, { 4, 4, 9 }) == 0, "edit distance of equal scanpaths is 0")

---------------------------------------------------------------------------------------------------
-- MultiMatch.  a: (0,0) (2,0) (2,2): saccades u1 = (2,0), u2 = (0,2).  b: (0,0) (1,0) (1,2) (3,2):
-- v1 = (1,0), v2 = (0,2), v3 = (2,0).  M = |u_i - v_j| = [1, 2 sqrt2, 0; sqrt5, 0, 2 sqrt2]; the
-- cheapest path (1,1) (2,2) (2,3) (cost 1 + 0 + 2 sqrt2, no tie).  Along it: vector {1, 0, 2 sqrt2}
-- (median 1), angle {0, 0, pi/2} (0), length difference {1, 0, 0} (0), start points {(0,0)-(0,0),
-- (2,0)-(1,0), (2,0)-(1,2)} = {0, 1, sqrt5} (1).  Display 4 x 3, diagonal 5: vector 1 - 1/10,
-- direction 1, length 1, position 1 - 1/5.
---------------------------------------------------------------------------------------------------
local mm = sp.multimatch({ { 0, 0 }, { 2, 0 }, { 2, 2 } }, { { 0, 0 }, { 1, 0 }, { 1, 2 }, { 3, 2 } }, { 4, 3 })
check.ok(mm ~= nil, "multimatch of two scanpaths with saccades")
mm = mm or {}
check.near(mm.vector, 0.9, 1e-12, "multimatch vector: 1 - median |u - v| / (2 diag)")
check.near(mm.direction, 1, 1e-12, "multimatch direction: 1 - median angle / pi")
check.near(mm.length, 1, 1e-12, "multimatch length: 1 - median ||u| - |v|| / diag")
check.near(mm.position, 0.8, 1e-12, "multimatch position: 1 - median start distance / diag")
check.near(mm.mean, (0.9 + 1 + 1 + 0.8) / 4, 1e-12, "multimatch mean of the four")
check.value(mm.pairs == 3, "multimatch aligned 3 saccade pairs", tostring(mm.pairs))
-- opposite saccades: angle pi, vector difference 2, same length and start
local opp = sp.multimatch({ { 0, 0 }, { 1, 0 } }, { { 0, 0 }, { -1, 0 } }, { 4, 3 }) or {}
check.near(opp.direction, 0, 1e-12, "multimatch direction of opposite saccades is 0")
check.near(opp.vector, 1 - 2 / 10, 1e-12, "multimatch vector of opposite unit saccades: 1 - 2 / 10")
check.near(opp.length, 1, 1e-12, "multimatch length of equal-length saccades is 1")
local same = sp.multimatch({ { 0, 0 }, { 3, 1 }, { 1, 2 } }, { { 0, 0 }, { 3, 1 }, { 1, 2 } }, { 9, 3 }) or {}
check.value(same.mean == 1, "multimatch of a scanpath with itself is 1 on every measure")
check.ok(sp.multimatch({ { 0, 0 } }, { { 0, 0 }, { 1, 1 } }, { 4, 3 }) == nil, "multimatch: a scanpath without a saccade gives nil")

---------------------------------------------------------------------------------------------------
-- behaviour: [1 2 2 3 1] with target 1: runs 1 | 2 2 | 3 | 1 -> new 3, refixation 1, revisit 1 of 5,
-- found; [4 5]: search 1, not found; [] counts as length 0, not found, and is left out of the ratios
---------------------------------------------------------------------------------------------------
local b = sp.behaviour({ { 1, 2, 2, 3, 1 } }, 1)
check.near(b.search, 3 / 5, 1e-15, "behaviour: search ratio 3/5")
check.near(b.refix, 1 / 5, 1e-15, "behaviour: refixation ratio 1/5")
check.near(b.revisit, 1 / 5, 1e-15, "behaviour: revisit ratio 1/5")
check.value(b.found == 1 and b.length == 5, "behaviour: found, length 5")
b = sp.behaviour({ { 1, 2, 2, 3, 1 }, { 4, 5 }, {} }, { 1, 1, 1 })
check.near(b.found, 1 / 3, 1e-15, "behaviour over three scanpaths: found 1/3")
check.near(b.length, 7 / 3, 1e-15, "behaviour: mean length 7/3 (the empty one counts 0)")
check.near(b.search, (0.6 + 1) / 2, 1e-15, "behaviour: search ratio over the non-empty ones")
check.near(b.refix, 0.1, 1e-15, "behaviour: refixation ratio over the non-empty ones")
check.value(b.count == 3 and b.empty == 1, "behaviour counts the scanpaths and the empty ones")
local model_b = { found = 0.5, length = 4, search = 0.9, refix = 0.1, revisit = 0 }
local ref_b = { found = 1, length = 5, search = 0.8, refix = 0.2, revisit = 0.1 }
local delta, terms = sp.behaviour_delta(model_b, ref_b)
check.near(delta, (0.5 + 0.2 + 0.125 + 0.5 + 1) / 5, 1e-12, "behavioural delta: mean of |m - r| / r")
check.near(terms.search, 0.125, 1e-12, "behavioural delta's search term")
ref_b.revisit = 0
delta, terms = sp.behaviour_delta(model_b, ref_b)
check.near(delta, (0.5 + 0.2 + 0.125 + 0.5) / 4, 1e-12, "behavioural delta leaves out a measure whose reference is 0")
check.ok(terms.revisit == nil, "... and has no term for it")

-- errors name the function
check.fails(function() sp.sequence_score(3, { 1 }) end, "scanpath.sequence_score: a must be a list", "SS of a number")
check.fails(function() sp.edit_distance({ 1 }, "ab") end, "scanpath.edit_distance: b must be a list", "edit distance of a string")
check.fails(function() sp.multimatch({ { 0, 0 }, { 1, 1 } }, { { 0, 0 }, { 1, 1 } }, { 0, 3 }) end, "scanpath.multimatch: size must be",
  "multimatch with a zero-width display")
check.fails(function() sp.multimatch({ { 0, 0 }, { 1 } }, { { 0, 0 }, { 1, 1 } }, { 4, 3 }) end, "scanpath.multimatch: a[2] must be a point",
  "multimatch with a one-number point")
check.fails(function() sp.behaviour({ { 1 }, { 2 } }, { 1 }) end, "scanpath.behaviour: 1 targets for 2 scanpaths", "behaviour with too few targets")
check.fails(function() sp.behaviour({}, 1) end, "scanpath.behaviour: paths is empty", "behaviour of nothing")
check.fails(function() sp.behaviour_delta({ found = 1 }, ref_b) end, "scanpath.behaviour_delta: both tables need a number", "delta of a partial table")

---------------------------------------------------------------------------------------------------
-- shelves
---------------------------------------------------------------------------------------------------
local cfg = shelves.config{}
check.ok(cfg.n == 27 and cfg.kinds == 72, "the default shelf: 3 x 9 objects of 72 kinds")
check.ok(#cfg.test_kinds > 0 and #cfg.train_kinds > 0 and #cfg.test_kinds + #cfg.train_kinds == cfg.kinds,
  "the kinds split into training and held-out targets", #cfg.test_kinds .. " held out")
local ok_shelves, target_once, split_ok, rows_ok = true, true, true, true
local shared = 0
for split, kinds in pairs{ train = cfg.train_kinds, test = cfg.test_kinds } do
  local allowed = {}
  for _, k in ipairs(kinds) do allowed[k] = true end
  for i = 1, 100 do
    local L = shelves.layout(cfg, 3, split, i)
    if not allowed[L.target_kind] or cfg.heldout[L.target_kind] ~= (split == "test") then split_ok = false end
    local copies = 0
    for j = 1, L.n do
      if L.kind[j] == L.target_kind then copies = copies + 1 end
      if L.row[j] ~= math.floor((j - 1) / 9) + 1 or L.col[j] ~= (j - 1) % 9 + 1 then rows_ok = false end
      if j ~= L.target and L.colour[j] == L.colour[L.target] then shared = shared + 1 end
      local c, s, t = shelves.attributes(cfg, L.kind[j])
      if c ~= L.colour[j] or s ~= L.shape[j] or t ~= L.texture[j] or shelves.kind(cfg, c, s, t) ~= L.kind[j] then ok_shelves = false end
    end
    if copies ~= 1 or L.kind[L.target] ~= L.target_kind then target_once = false end
  end
end
check.ok(split_ok, "training shelves have training targets, test shelves held-out ones")
check.ok(target_once, "the target's kind occurs exactly once on every shelf, at the target")
check.ok(rows_ok and ok_shelves, "objects are row-major and their attributes match their kind")
check.value(math.abs(shared / (200 * 26) - 0.4) < 0.05, "distractors share the target's colour at about share_colour = 0.4",
  string.format("%.3f", shared / (200 * 26)))
local L1, L2 = shelves.layout(cfg, 3, "test", 5), shelves.layout(cfg, 3, "test", 5)
local L3 = shelves.layout(cfg, 3, "train", 5)
local same_layout, differs = true, false
for j = 1, cfg.n do
  if L1.kind[j] ~= L2.kind[j] then same_layout = false end
  if L1.kind[j] ~= L3.kind[j] then differs = true end
end
check.ok(same_layout and L1.target == L2.target, "a layout is reproducible from (seed, split, index)")
check.ok(differs, "the test stream differs from the training stream")
local bank = shelves.patch_bank(cfg)
check.ok(bank:shape_string() == "{72,3,16,16}", "patch_bank: one 3 x 16 x 16 patch per kind", bank:shape_string())
local px = shelves.render(cfg, { L1, L3 }, bank)
check.ok(px:shape_string() == "{2,28,3,16,16}", "render: (B, n + 1, 3, P, P)", px:shape_string())
check.ok(px:min():item() >= 0 and px:max():item() <= 1, "render: pixels in [0, 1]")
local img = shelves.image(cfg, L1, px:select(1, 1), 2)
check.ok(img:shape_string() == "{120,360,3}", "image: the shelf's picture, scaled", img:shape_string())
check.fails(function() shelves.config{ rows = 0 } end, "shelves.config: rows must be an integer", "a shelf of no rows")
check.fails(function() shelves.config{ colour = 3 } end, "shelves.config: unknown option 'colour'", "a misspelt option")
check.fails(function() shelves.layout(cfg, 1, "val", 1) end, "shelves.layout: split must be 'train' or 'test'", "an unknown split")
check.fails(function() shelves.render(cfg, { L1 }, lab.zeros{ 3, 3, 16, 16 }) end, "shelves.render: bank must be the (72, 3, 16, 16) tensor",
  "render with a wrong bank")
check.fails(function() shelves.image(cfg, L1, px) end, "shelves.image: patches must be one shelf of shelves.render, (28, 3, 16, 16)",
  "image of a whole batch")
check.fails(function() shelves.attributes(cfg, 73) end, "shelves.attributes: kind must be an integer in 1 .. 72", "a kind off the list")

---------------------------------------------------------------------------------------------------
-- the reference searcher and the baselines
---------------------------------------------------------------------------------------------------
local p = search.params()
local valid, found, total_len, same_draw = true, 0, 0, true
for i = 1, 200 do
  local L = shelves.layout(cfg, 3, "train", i)
  local path = search.reference(L, p, shelves.stream(3, 9, i))
  local again = search.reference(L, p, shelves.stream(3, 9, i))
  if #path ~= #again then same_draw = false end
  for k = 1, #path do
    if path[k] ~= again[k] then same_draw = false end
    if path[k] < 1 or path[k] > L.n or path[k] ~= math.floor(path[k]) then valid = false end
  end
  if #path < 1 or #path > p.max_len then valid = false end
  if path[#path] == L.target then found = found + 1 end
  total_len = total_len + #path
end
check.ok(valid, "reference scanpaths are 1 .. max_len object ids")
check.ok(same_draw, "the same stream gives the same reference scanpath")
check.value(found / 200 > 0.7 and found / 200 < 1, "the reference finds the target mostly, not always (misses, early stops)",
  string.format("found %.3f", found / 200))
check.value(total_len / 200 > 2 and total_len / 200 < 10, "reference scanpaths have several fixations", string.format("mean %.2f", total_len / 200))
-- with no noise, no refixations, misses or stops, it goes to the most similar near object: on a
-- shelf where only the target shares the target's colour, a noise-free searcher with a strong
-- similarity weight fixates the target first
do
  local L = shelves.layout(cfg, 3, "train", 1)
  for j = 1, L.n do if j ~= L.target then L.colour[j] = L.colour[L.target] % cfg.colours + 1 end end
  local q = search.params{ noise = 0, p_refix = 0, p_miss = 0, p_quit = 0, beta_sim = 100 }
  local path = search.reference(L, q, shelves.stream(1, 1))
  check.ok(#path == 1 and path[1] == L.target, "a noise-free searcher with a strong similarity weight fixates the unique target first")
end
-- the exact likelihood against the frequencies of 20,000 draws on a 1 x 3 shelf (the three
-- commonest scanpaths, within 4 standard errors)
do
  local tiny = shelves.config{ rows = 1, cols = 3 }
  local Lt = shelves.layout(tiny, 1, "train", 1)
  local counts, n = {}, 20000
  for k = 1, n do
    local key = table.concat(search.reference(Lt, p, shelves.stream(2, k)), " ")
    counts[key] = (counts[key] or 0) + 1
  end
  local keys = {}
  for key in pairs(counts) do keys[#keys + 1] = key end
  table.sort(keys, function(a, b) return counts[a] > counts[b] end)
  for r = 1, 3 do
    local path = {}
    for w in keys[r]:gmatch("%d+") do path[#path + 1] = tonumber(w) end
    local lp, events = search.log_likelihood(Lt, p, path)
    local prob, freq = math.exp(lp), counts[keys[r]] / n
    check.value(math.abs(prob - freq) < 4 * math.sqrt(prob * (1 - prob) / n) + 1e-9 and events == #path + 1,
      "log_likelihood of [" .. keys[r] .. "] matches its frequency in 20,000 draws", string.format("%.4f vs %.4f", prob, freq))
  end
end
check.fails(function() search.params{ p_miss = 2 } end, "shelf_search.params", "a probability above 1")
check.fails(function() search.params{ noise_scale = 1 } end, "unknown parameter 'noise_scale'", "an unknown parameter")
check.fails(function() search.reference(shelves.layout(cfg, 3, "train", 1), { noise = 1 }, shelves.stream(1)) end,
  "shelf_search.reference: p must be the parameters from shelf_search.params", "reference with a raw table of parameters")
check.fails(function() search.log_likelihood(shelves.layout(cfg, 3, "train", 1), p, { 3, 40 }) end,
  "shelf_search.log_likelihood: path[2] must be an object id in 1 .. 27", "log_likelihood of an id off the shelf")
check.fails(function() search.baselines.nearest(shelves.layout(cfg, 3, "train", 1), 0) end,
  "shelf_search.baselines.nearest: max_len must be an integer >= 1", "a baseline with max_len 0")

local L = shelves.layout(cfg, 3, "test", 2)
for _, name in ipairs(search.baseline_names) do
  local path = search.baselines[name](L, 50, shelves.stream(1, 2))
  local seen, distinct = {}, true
  for _, j in ipairs(path) do
    if seen[j] then distinct = false end
    seen[j] = true
  end
  check.ok(distinct and path[#path] == L.target, "baseline " .. name .. ": distinct objects, ending on the target")
end
check.ok(search.baselines.centre(L, 50)[1] == 14 and search.baselines.nearest(L, 50)[1] == 14,
  "centre-first and nearest-neighbour start on the central object (14 of 3 x 9)")
do
  local sim = search.baselines.similarity(L, 50)
  local k = 1
  while sim[k] ~= L.target do
    check.ok(L.colour[sim[k]] == L.colour[L.target], "target-colour greedy visits objects of the target's colour first") k = k + 1
  end
end

---------------------------------------------------------------------------------------------------
-- the model
---------------------------------------------------------------------------------------------------
lab.seed(5)
local code = oat.gaussian_code(6, 8, { sigma = 2 })
local ct = code:matmul(code:t()):totable()
local worst_cos, worst_norm = 0, 0
for i = 1, 6 do
  worst_norm = math.max(worst_norm, math.abs(ct[i][i] - 1))
  for j = 1, 6 do worst_cos = math.max(worst_cos, math.abs(ct[i][j] - math.exp(-(i - j) ^ 2 / 8))) end
end
check.value(worst_norm < 1e-5 and worst_cos < 0.02, "gaussian_code: unit norms, cosines within 0.02 of exp(-(i-j)^2 / 2 sigma^2)",
  string.format("norm %.2g, cosine %.3f", worst_norm, worst_cos))

local small = shelves.config{ rows = 2, cols = 3, patch = 12 }
local m = oat.Model{ rows = 2, cols = 3, patch = 12, d_app = 16, d_pos = 16, layers = 1, dec_layers = 1, heads = 2, ffn = 32, max_len = 6 }
local Ls = { shelves.layout(small, 1, "train", 1), shelves.layout(small, 1, "train", 2) }
local patches = shelves.render(small, Ls, shelves.patch_bank(small))
local inputs = lab.tensor({ { 7, 2, 5, 1 }, { 7, 3, 3, 7 } }, "int64")
local logits = m(patches, inputs)
check.ok(logits:shape_string() == "{2,4,7}", "the model's logits: (B, T, n + 1)", logits:shape_string())
-- causal: changing a later input leaves the earlier steps' logits as they were
local changed = m(patches, lab.tensor({ { 7, 2, 6, 4 }, { 7, 3, 3, 7 } }, "int64"))
check.value((changed:narrow(2, 1, 2) - logits:narrow(2, 1, 2)):abs():max():item() < 1e-6,
  "the decoder is causal: inputs after step t do not change step t's logits")
check.value((changed:narrow(2, 3, 2) - logits:narrow(2, 3, 2)):abs():max():item() > 1e-4, "... and do change the later steps")
-- the loss falls on a fixed batch (the whole model trains, CNN to readout)
local tg = lab.tensor({ { 2, 5, 1, 7 }, { 3, 3, 7, 0 } }, "int64")
local opt = lab.optim.Adam(m, { lr = 3e-3 })
local first_l, last_l
for _ = 1, 40 do
  local l = lab.cross_entropy(m(patches, inputs):reshape{ 8, 7 }, tg:reshape{ 8 }, { ignore = 0 })
  opt:zero_grad(); l:backward(); opt:step()
  first_l = first_l or l:item(); last_l = l:item()
end
check.value(last_l < 0.5 * first_l, "the model fits a fixed batch", string.format("%.3f -> %.3f", first_l, last_l))
local paths = m:generate(patches, { greedy = true })
check.ok(#paths == 2, "generate: one greedy scanpath per shelf")
check.ok(#paths[1] >= 1 and paths[1][1] == 2, "greedy decoding follows the fitted batch", json.encode(paths[1]))
local sampled = m:generate(patches, { greedy = false, samples = 3 })
local ids_ok = #sampled == 6
for _, q in ipairs(sampled) do
  if #q > 6 then ids_ok = false end
  for _, j in ipairs(q) do if j < 1 or j > 6 then ids_ok = false end end
end
check.ok(ids_ok, "sampling: 3 scanpaths per shelf of object ids, at most max_len long")
check.fails(function() m:encode(lab.zeros{ 2, 6, 3, 12, 12 }) end, "oat.Model:encode: patches must be (B, 7, 3, 12, 12)", "patches without the target")
check.fails(function() oat.Model{ rows = 2, cols = 3, patch = 8 } end, "too small for the CNN", "a patch too small")
check.fails(function() m(patches, lab.tensor({ { 7, 9 }, { 7, 1 } }, "int64")) end, "oat.Model:decode: inputs must be object ids 1 .. 6 or 7",
  "decoder inputs off the shelf")
check.fails(function() m(patches, lab.tensor({ { 7, 1, 2 } }, "int64")) end, "oat.Model: inputs must be an int64 (B K, T) tensor",
  "fewer decoder rows than shelves")
check.fails(function() oat.Model{ rows = 2, cols = 3, layer = 2 } end, "unknown option 'layer'", "a misspelt model option")

---------------------------------------------------------------------------------------------------
-- the study through the program, quick
---------------------------------------------------------------------------------------------------
local tmp = check.tmpdir("scanpath")
local study = check.study("experiments/scanpath_oat.lua", tmp)
study.refuses("quick=true refs=0", { "scanpath_oat:", "refs" }, "refs=0 is refused, naming the study and the key")

local out = tmp .. "/run"
study.run(out, "quick=true", "the quick study runs and exits 0")
local s = study.summary(out, { "methods", "order", "reference_behaviour", "best_baseline", "best_baseline_sequence_score", "lowest_baseline_delta",
                               "target", "first_loss", "final_loss", "final_eval_loss", "curve", "examples", "figures", "wall_time_s" })
check.value(type(s.first_loss) == "number" and type(s.final_loss) == "number" and s.final_loss < 0.85 * s.first_loss,
  "the training loss falls", string.format("%s -> %s", tostring(s.first_loss), tostring(s.final_loss)))
local methods = s.methods or {}
for _, k in ipairs{ "model_greedy", "model_sampled", "reference_redraw", "random", "centre", "nearest", "similarity" } do
  local r = methods[k] or {}
  local mmr = r.multimatch or {}
  local good = type(r.sequence_score) == "number" and r.sequence_score >= 0 and r.sequence_score <= 1
    and type(r.edit_distance) == "number" and type(r.behavioural_delta) == "number" and type(mmr.vector) == "number"
    and type(mmr.direction) == "number" and type(mmr.length) == "number" and type(mmr.position) == "number"
    and type(r.behaviour) == "table" and type(r.behaviour.found) == "number"
  check.ok(good, "summary.json scores method " .. k .. " (SS, MultiMatch, edit distance, behaviour, delta)")
end
local tg_ = (s.target or {}).model_greedy or {}
check.ok(type(tg_.ss_ratio_to_best_baseline) == "number" and type(tg_.met) == "boolean", "summary.json says whether the target was met")
-- the baselines' figures follow from their definitions: they end on the target, so they find it
-- unless max_len cuts them short, and never refixate
local sim_r = methods.similarity or {}
check.ok(sim_r.behaviour and sim_r.behaviour.refix == 0 and sim_r.behaviour.found > 0.9, "the colour greedy never refixates and finds the target")
for _, f in ipairs{ "report.md", "training.png", "shelf_1.png", "records.bin" } do
  local data = check.read_file(out .. "/" .. f)
  check.ok(data and #data > 100, f .. " written")
end
local report = check.read_file(out .. "/report.md") or ""
check.ok(report:find("| target-colour greedy |", 1, true) and report:find("![shelf 1](shelf_1.png)", 1, true), "report.md has the table and the figures")

check.cleanup()
os.exit(check.report())
