-- attnlab.tasks.shelf_search: scanpaths over a synthetic shelf (tasks/shelves.lua): the stochastic
-- reference searcher the OAT-style predictor imitates, and the baselines it is compared with
-- (experiments/scanpath_oat.lua, docs/scanpath_oat.md).
--
-- A scanpath is a list of object indices (1 .. n, row-major) in the order they are fixated.  Every
-- search starts with the gaze at the shelf's centre (not an object, and not in the scanpath).
-- Distances are in grid cells between cell centres.
--
-- The reference searcher (no human data exists here, so this stands in for the people OAT learned
-- from): a noisy priority search in the mould of guided search.
--   similarity(j) = w_colour [colour_j = colour_t] + w_shape [shape_j = shape_t]
--                 + w_texture [texture_j = texture_t]       (attributes of object j and target t)
--   priority(j)   = beta_sim similarity(j) - beta_dist distance(gaze, j) - ior [j fixated before]
--                 + noise Gumbel_j
-- At each step the searcher moves to the object of highest priority other than the one it is on
-- (fresh Gumbel draws every step: a sample from softmax(priority / noise) of the noise-free
-- priorities), except that with chance p_refix it fixates the current object again (a
-- refixation).  Inhibition of return is a finite penalty, so a similar object fixated before is
-- sometimes revisited.  When the fixated object is
-- the target, the searcher recognises it and stops with chance 1 - p_miss (else it searches on,
-- the target now inhibited too); after every other fixation it gives up with chance p_quit; it stops
-- after max_len fixations.  So the scanpaths have structure (similar objects first, short saccades,
-- few returns) and randomness (no two draws alike; the refixations, revisits, misses and early stops
-- that OAT's behavioural measures count).
local lab = require "attnlab"
local shelves = require "attnlab.tasks.shelves"
local args = require "attnlab.args"

local floor, sqrt, huge = math.floor, math.sqrt, math.huge
local function raise(fn, msg) lab.raise("shelf_search." .. fn .. ": " .. msg) end

local search = {}

search.defaults = {
  w_colour = 0.4, w_shape = 0.35, w_texture = 0.25,   -- the appearance similarity's weights
  beta_sim = 6.0,       -- priority per unit of similarity
  beta_dist = 1.5,      -- priority lost per grid cell of distance from the gaze
  noise = 0.7,          -- scale of the Gumbel noise on the priorities
  ior = 2.0,            -- inhibition of return: priority lost by an object fixated before
  p_refix = 0.08,       -- chance of fixating the current object again
  p_miss = 0.1,         -- chance of not recognising the target when fixating it
  p_quit = 0.02,        -- chance of giving up after a fixation on a distractor
  max_len = 20,         -- longest scanpath
}

-- search.params([opts]) -> the reference searcher's parameters: search.defaults with opts over them
function search.params(opts)
  if opts ~= nil and type(opts) ~= "table" then raise("params", "options must be a table (got " .. type(opts) .. ")") end
  local p = args.over_defaults(search.defaults, opts or {}, "shelf_search.params", "parameter")
  for k in pairs(search.defaults) do
    if type(p[k]) ~= "number" or p[k] ~= p[k] or p[k] < 0 or p[k] == huge then
      raise("params", k .. " must be a finite number >= 0 (got " .. tostring(p[k]) .. ")")
    end
  end
  for _, k in ipairs{ "p_refix", "p_miss", "p_quit" } do
    if p[k] > 1 then raise("params", k .. " is a probability, in [0, 1] (got " .. p[k] .. ")") end
  end
  if p.max_len < 1 or p.max_len ~= floor(p.max_len) then raise("params", "max_len must be an integer >= 1 (got " .. p.max_len .. ")") end
  return p
end

-- the arguments every searcher takes: a layout, and where given the parameters and the stream
local function check_args(fn, L, p, rng)
  if type(L) ~= "table" or type(L.n) ~= "number" or type(L.target) ~= "number" or type(L.row) ~= "table" then
    raise(fn, "L must be a layout from shelves.layout (got " .. type(L) .. ")")
  end
  if p ~= nil and (type(p) ~= "table" or type(p.beta_sim) ~= "number" or type(p.max_len) ~= "number") then
    raise(fn, "p must be the parameters from shelf_search.params (got " .. type(p) .. ")")
  end
  if rng ~= nil and (type(rng) ~= "table" or type(rng.uniform) ~= "function") then
    raise(fn, "rng must be a stream from shelves.stream (got " .. type(rng) .. ")")
  end
end

-- the gaze's starting point (row, col): the shelf's centre
function search.start(L) return (L.rows + 1) / 2, (L.cols + 1) / 2 end

local function distance(r0, c0, r1, c1)
  local dr, dc = r1 - r0, c1 - c0
  return sqrt(dr * dr + dc * dc)
end
search.distance = distance

-- search.similarity(L [, params]) -> list of n similarities of the objects to the target (the
-- target's own is w_colour + w_shape + w_texture)
function search.similarity(L, p)
  check_args("similarity", L, p)
  p = p or search.defaults
  local t = L.target
  local sim = {}
  for j = 1, L.n do
    sim[j] = (L.colour[j] == L.colour[t] and p.w_colour or 0) + (L.shape[j] == L.shape[t] and p.w_shape or 0)
           + (L.texture[j] == L.texture[t] and p.w_texture or 0)
  end
  return sim
end

-- search.reference(L, params, rng) -> a scanpath of the stochastic reference searcher; rng is a
-- shelves.stream (its draws make the scanpath, so the same stream gives the same scanpath)
function search.reference(L, p, rng)
  check_args("reference", L, p, rng)
  if rng == nil or p == nil then raise("reference", "needs the layout, the parameters and a stream: reference(L, p, rng)") end
  local sim = search.similarity(L, p)
  local r, c = search.start(L)
  local visited, path = {}, {}
  while #path < p.max_len do
    local j
    local current = path[#path]
    if current and rng.uniform() < p.p_refix then
      j = current
    else
      local best, bj = -huge, 1
      for k = 1, L.n do
        if k ~= current then                            -- a saccade leaves the current object
          local v = p.beta_sim * sim[k] - p.beta_dist * distance(r, c, L.row[k], L.col[k]) - (visited[k] and p.ior or 0)
            + p.noise * rng.gumbel()
          if v > best then best, bj = v, k end
        end
      end
      j = bj
    end
    path[#path + 1] = j
    visited[j] = true
    r, c = L.row[j], L.col[j]
    if j == L.target then
      if rng.uniform() >= p.p_miss then break end
    elseif rng.uniform() < p.p_quit then
      break
    end
  end
  return path
end

-- search.log_likelihood(L, params, path) -> log P(path, then the end | L) under the reference
-- searcher, and the number of predicted events (#path + 1: each fixation and the end, as a model
-- trained on these scanpaths predicts them).  Exact: the Gumbel-max choice is a softmax of the
-- priorities / noise (noise > 0).  -sum / count over a set of scanpaths is the cross-entropy per
-- event that a model matching the searcher exactly would reach: the floor of the training loss.
function search.log_likelihood(L, p, path)
  check_args("log_likelihood", L, p)
  if p == nil then raise("log_likelihood", "needs the parameters: log_likelihood(L, p, path)") end
  if type(path) ~= "table" then raise("log_likelihood", "path must be a list of object ids (got " .. type(path) .. ")") end
  for t = 1, #path do
    local j = path[t]
    if type(j) ~= "number" or j < 1 or j > L.n or j ~= floor(j) then
      raise("log_likelihood", string.format("path[%d] must be an object id in 1 .. %d (got %s)", t, L.n, tostring(j)))
    end
  end
  if #path > p.max_len then raise("log_likelihood", string.format("path has %d fixations, more than max_len = %d", #path, p.max_len)) end
  if p.noise <= 0 then raise("log_likelihood", "needs noise > 0 (a noise-free searcher has no likelihood)") end
  local sim = search.similarity(L, p)
  local r, c = search.start(L)
  local visited = {}
  local logp, log = 0, math.log
  for t = 1, #path do
    local current, j = path[t - 1], path[t]
    -- the choice among the other objects: softmax of priority / noise (log-sum-exp, shifted)
    local prio, top = {}, -huge
    for k = 1, L.n do
      if k ~= current then
        prio[k] = (p.beta_sim * sim[k] - p.beta_dist * distance(r, c, L.row[k], L.col[k]) - (visited[k] and p.ior or 0)) / p.noise
        if prio[k] > top then top = prio[k] end
      end
    end
    local z = 0
    for k = 1, L.n do if k ~= current then z = z + math.exp(prio[k] - top) end end
    local move = j ~= current and math.exp(prio[j] - top) / z or 0
    local prob = current and (j == current and p.p_refix or (1 - p.p_refix) * move) or move
    -- and the searcher went on after the previous fixation (it did not stop there)
    if current then prob = prob * (current == L.target and p.p_miss or 1 - p.p_quit) end
    logp = logp + log(prob)
    visited[j] = true
    r, c = L.row[j], L.col[j]
  end
  -- the end: certain at max_len, else the stop after the last fixation
  local last = path[#path]
  if #path < p.max_len then
    logp = logp + log(last == L.target and 1 - p.p_miss or p.p_quit)
  end
  return logp, #path + 1
end

---------------------------------------------------------------------------------------------------
-- Baselines.  Each fixates distinct objects (inhibition of return, no refixation) and stops on the
-- target (so its target-found rate is 1 unless max_len cuts it short).
---------------------------------------------------------------------------------------------------
search.baselines = {}

local function check_baseline(fn, L, max_len, rng)
  check_args("baselines." .. fn, L, nil, rng)
  if type(max_len) ~= "number" or max_len < 1 or max_len ~= floor(max_len) then
    raise("baselines." .. fn, "max_len must be an integer >= 1 (got " .. tostring(max_len) .. ")")
  end
end

-- the objects in the given order, up to and including the target
local function until_target(L, order, max_len)
  local path = {}
  for _, j in ipairs(order) do
    if #path >= max_len then break end
    path[#path + 1] = j
    if j == L.target then break end
  end
  return path
end

-- random: a uniformly random order of the objects (rng: a shelves.stream)
function search.baselines.random(L, max_len, rng)
  check_baseline("random", L, max_len, rng)
  if rng == nil then raise("baselines.random", "needs a stream: random(L, max_len, rng)") end
  local order = {}
  for j = 1, L.n do order[j] = j end
  for i = L.n, 2, -1 do
    local k = 1 + rng.int(i)
    order[i], order[k] = order[k], order[i]
  end
  return until_target(L, order, max_len)
end

-- centre-first: the objects by distance from the shelf's centre (ties: row-major order)
function search.baselines.centre(L, max_len)
  check_baseline("centre", L, max_len)
  local r, c = search.start(L)
  local order, d = {}, {}
  for j = 1, L.n do order[j], d[j] = j, distance(r, c, L.row[j], L.col[j]) end
  table.sort(order, function(a, b) if d[a] ~= d[b] then return d[a] < d[b] end return a < b end)
  return until_target(L, order, max_len)
end

-- a greedy walk: from the shelf's centre, always the unvisited object of the highest score(j, r, c)
-- at gaze (r, c); ties go to the lowest index
local function greedy_walk(L, max_len, score)
  local r, c = search.start(L)
  local visited, path = {}, {}
  while #path < max_len do
    local best, bj = -huge, nil
    for j = 1, L.n do
      if not visited[j] then
        local v = score(j, r, c)
        if v > best then best, bj = v, j end
      end
    end
    if not bj then break end
    path[#path + 1] = bj
    visited[bj] = true
    r, c = L.row[bj], L.col[bj]
    if bj == L.target then break end
  end
  return path
end

-- nearest-neighbour: from the centre, always the nearest unvisited object
function search.baselines.nearest(L, max_len)
  check_baseline("nearest", L, max_len)
  return greedy_walk(L, max_len, function(j, r, c) return -distance(r, c, L.row[j], L.col[j]) end)
end

-- target-similarity greedy: the unvisited objects of the target's colour first (colour is the
-- attribute that guides search most, and the one a peripheral glance gets right), nearest first
-- among them, then the rest nearest first.  It ranks by colour alone on purpose: ranking by the
-- full appearance would put the target itself first every time (it is always the most similar
-- object to itself), a one-fixation search no reference scanpath resembles.
function search.baselines.similarity(L, max_len)
  check_baseline("similarity", L, max_len)
  local tc = L.colour[L.target]
  return greedy_walk(L, max_len, function(j, r, c)
    return (L.colour[j] == tc and 1000 or 0) - distance(r, c, L.row[j], L.col[j])
  end)
end

search.baseline_names = { "random", "centre", "nearest", "similarity" }

return search
