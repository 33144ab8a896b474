-- attnlab.scanpath (lab.scanpath): the scanpath measures of OAT (Fang et al., ECCV 2024; their
-- src/evaluation/evaluation_full.py, saliency_metric.py and multimatch.py), over plain Lua lists.
--
-- A scanpath is a list of fixations: object ids (any values compared with ==) for the string
-- measures and the behaviour, points {x, y} for MultiMatch.
--   sequence_score   Needleman-Wunsch alignment of the id strings, similarity 1 for equal ids and 0
--                    otherwise, gap 0 (so the score is the longest common subsequence), divided by
--                    the longer length
--   edit_distance    Levenshtein distance of the id strings (insert, delete, substitute: cost 1)
--   multimatch       vector, direction, length and position similarity of the saccades after
--                    aligning them (see the function for how it differs from the full MultiMatch)
--   behaviour        target-found rate, mean length, search, refixation and revisit ratios
--   behaviour_delta  mean over the behavioural measures of |model - reference| / reference
local lab = require "attnlab"
local raise = lab.raise

local abs, sqrt, atan2, pi, min, huge = math.abs, math.sqrt, math.atan2, math.pi, math.min, math.huge

local scanpath = {}

local function check_list(x, fn, what)
  if type(x) ~= "table" or lab.is_tensor(x) then
    raise(string.format("%s: %s must be a list of fixations (got %s)", fn, what, lab.is_tensor(x) and "a tensor" or type(x)))
  end
  return x
end

-- scanpath.sequence_score(a, b) -> in [0, 1]; two empty scanpaths score 1 (they agree), one empty 0
function scanpath.sequence_score(a, b)
  check_list(a, "scanpath.sequence_score", "a"); check_list(b, "scanpath.sequence_score", "b")
  local na, nb = #a, #b
  if na == 0 and nb == 0 then return 1 end
  if na == 0 or nb == 0 then return 0 end
  local prev, cur = {}, {}
  for j = 0, nb do prev[j] = 0 end
  for i = 1, na do
    cur[0] = 0
    local ai = a[i]
    for j = 1, nb do
      local best = prev[j - 1] + (ai == b[j] and 1 or 0)       -- match or mismatch
      if prev[j] > best then best = prev[j] end                 -- gap in b (score 0)
      if cur[j - 1] > best then best = cur[j - 1] end           -- gap in a
      cur[j] = best
    end
    prev, cur = cur, prev
  end
  return prev[nb] / (na > nb and na or nb)
end

-- scanpath.edit_distance(a, b) -> the Levenshtein distance (an integer >= 0)
function scanpath.edit_distance(a, b)
  check_list(a, "scanpath.edit_distance", "a"); check_list(b, "scanpath.edit_distance", "b")
  local na, nb = #a, #b
  local prev, cur = {}, {}
  for j = 0, nb do prev[j] = j end
  for i = 1, na do
    cur[0] = i
    local ai = a[i]
    for j = 1, nb do
      cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ai == b[j] and 0 or 1))
    end
    prev, cur = cur, prev
  end
  return prev[nb]
end

---------------------------------------------------------------------------------------------------
-- MultiMatch (Jarodzka, Holmqvist, Nystrom 2010; Dewhurst et al. 2012; multimatch-gaze, which OAT
-- copies), simplified:
--   - the saccades are the vectors between consecutive fixations (a scanpath of n points has n - 1);
--   - M[i][j] = |u_i - v_j|, the length of the difference of saccade i of a and saccade j of b;
--   - the alignment is the path from (1, 1) to (na, nb) through M, moving right, down or diagonally,
--     of the least total M (multimatch-gaze runs Dijkstra on that graph; this is the same shortest
--     path by dynamic programming; where two paths tie it may pick another of them);
--   - along the path, each measure takes the median over the aligned pairs, normalised as
--     multimatch-gaze does: vector 1 - median |u - v| / (2 diag), direction 1 - median angle / pi
--     (the angle between the saccades, in [0, pi]), length 1 - median ||u| - |v|| / diag,
--     position 1 - median |start of u - start of v| / diag, with diag the diagonal of the display
--     (size = {width, height}).
-- How it differs from the full MultiMatch: no simplification of the scanpaths (the grouping of short
-- saccades and of saccades in one direction; OAT runs it with grouping = False too) and no duration
-- dimension (the fixations here have no durations).  OAT's copy needs at least 3 fixations in each
-- scanpath and returns NaN otherwise; this one needs 2 (one saccade) and returns nil otherwise.
---------------------------------------------------------------------------------------------------
local function median(list)
  table.sort(list)
  local n = #list
  if n % 2 == 1 then return list[(n + 1) / 2] end
  return (list[n / 2] + list[n / 2 + 1]) / 2
end

local function saccades(p, fn, what)
  local s = {}
  for i = 1, #p do
    local q = p[i]
    if type(q) ~= "table" or type(q[1]) ~= "number" or type(q[2]) ~= "number" or q[1] ~= q[1] or q[2] ~= q[2] then
      raise(string.format("%s: %s[%d] must be a point {x, y} of two numbers", fn, what, i))
    end
  end
  for i = 1, #p - 1 do
    local dx, dy = p[i + 1][1] - p[i][1], p[i + 1][2] - p[i][2]
    local theta = atan2(dy, dx)
    if theta < 0 then theta = theta + 2 * pi end               -- [0, 2 pi), as multimatch-gaze
    s[i] = { x = p[i][1], y = p[i][2], dx = dx, dy = dy, len = sqrt(dx * dx + dy * dy), theta = theta }
  end
  return s
end

-- scanpath.multimatch(a, b, size) -> {vector =, direction =, length =, position =, mean =, pairs =}
-- (each similarity in [0, 1], 1 for identical saccades; pairs: the aligned saccade pairs), or nil
-- when a or b has fewer than 2 fixations.  a, b: lists of points {x, y}; size {width, height}.
function scanpath.multimatch(a, b, size)
  local fn = "scanpath.multimatch"
  check_list(a, fn, "a"); check_list(b, fn, "b")
  if type(size) ~= "table" or type(size[1]) ~= "number" or type(size[2]) ~= "number" or not (size[1] > 0 and size[2] > 0)
     or size[1] == huge or size[2] == huge then
    raise(fn .. ": size must be {width, height}, two finite numbers > 0 (got " .. tostring(size) .. ")")
  end
  local sa, sb = saccades(a, fn, "a"), saccades(b, fn, "b")
  local na, nb = #sa, #sb
  if na == 0 or nb == 0 then return nil end
  local M, D = {}, {}
  for i = 1, na do
    M[i], D[i] = {}, {}
    for j = 1, nb do
      local ex, ey = sa[i].dx - sb[j].dx, sa[i].dy - sb[j].dy
      M[i][j] = sqrt(ex * ex + ey * ey)
    end
  end
  -- D[i][j]: the least sum of M over a path from (1, 1) to (i, j)
  for i = 1, na do
    for j = 1, nb do
      local best
      if i == 1 and j == 1 then best = 0
      else
        best = huge
        if i > 1 and j > 1 and D[i - 1][j - 1] < best then best = D[i - 1][j - 1] end
        if i > 1 and D[i - 1][j] < best then best = D[i - 1][j] end
        if j > 1 and D[i][j - 1] < best then best = D[i][j - 1] end
      end
      D[i][j] = best + M[i][j]
    end
  end
  -- back from (na, nb): the predecessor of least D, the diagonal first where they tie
  local path = {}
  local i, j = na, nb
  while true do
    path[#path + 1] = { i, j }
    if i == 1 and j == 1 then break end
    local bi, bj, best = nil, nil, huge
    if i > 1 and j > 1 then bi, bj, best = i - 1, j - 1, D[i - 1][j - 1] end
    if i > 1 and D[i - 1][j] < best then bi, bj, best = i - 1, j, D[i - 1][j] end
    if j > 1 and D[i][j - 1] < best then bi, bj, best = i, j - 1, D[i][j - 1] end
    i, j = bi, bj
  end
  local vec, dir, len, pos = {}, {}, {}, {}
  for k, ij in ipairs(path) do
    local u, v = sa[ij[1]], sb[ij[2]]
    vec[k] = M[ij[1]][ij[2]]
    local d = abs(u.theta - v.theta)
    if d > pi then d = 2 * pi - d end
    dir[k] = d
    len[k] = abs(u.len - v.len)
    local px, py = u.x - v.x, u.y - v.y
    pos[k] = sqrt(px * px + py * py)
  end
  local diag = sqrt(size[1] * size[1] + size[2] * size[2])
  local r = {
    vector = 1 - median(vec) / (2 * diag),
    direction = 1 - median(dir) / pi,
    length = 1 - median(len) / diag,
    position = 1 - median(pos) / diag,
    pairs = #path,
  }
  r.mean = (r.vector + r.direction + r.length + r.position) / 4
  return r
end

---------------------------------------------------------------------------------------------------
-- Behaviour (OAT's evaluation_full.py behavior()): per scanpath, with its fixations grouped into
-- runs of one object,
--   found    1 if the last fixation is on the target
--   length   the number of fixations
--   search   runs on an object not fixated before / length
--   refix    fixations that repeat the one before (run length - 1, summed) / length
--   revisit  runs on an object fixated before / length
-- (search + refix + revisit = 1.)  Means over the scanpaths; an empty scanpath counts as length 0
-- and not found, and is left out of the three ratios (OAT skips it altogether).
---------------------------------------------------------------------------------------------------
scanpath.BEHAVIOUR = { "found", "length", "search", "refix", "revisit" }

-- scanpath.behaviour(paths, targets) -> {found =, length =, search =, refix =, revisit =, count =,
-- empty =}: paths a list of scanpaths, targets one target per scanpath (a list) or one for all
function scanpath.behaviour(paths, targets)
  local fn = "scanpath.behaviour"
  check_list(paths, fn, "paths")
  if #paths == 0 then raise(fn .. ": paths is empty (no scanpath to measure)") end
  if type(targets) == "table" and #targets ~= #paths then
    raise(string.format("%s: %d targets for %d scanpaths (give one per scanpath, or one value for all)", fn, #targets, #paths))
  end
  local sum = { found = 0, length = 0, search = 0, refix = 0, revisit = 0 }
  local nonempty, empty = 0, 0
  for k, p in ipairs(paths) do
    check_list(p, fn, "paths[" .. k .. "]")
    local target = type(targets) == "table" and targets[k] or targets
    local n = #p
    sum.length = sum.length + n
    if n == 0 then
      empty = empty + 1
    else
      nonempty = nonempty + 1
      if p[n] == target then sum.found = sum.found + 1 end
      local seen, new, refix, revisit = {}, 0, 0, 0
      local i = 1
      while i <= n do
        local j = i
        while j < n and p[j + 1] == p[i] do j = j + 1 end
        if seen[p[i]] then revisit = revisit + 1 else new = new + 1 end
        seen[p[i]] = true
        refix = refix + (j - i)
        i = j + 1
      end
      sum.search, sum.refix, sum.revisit = sum.search + new / n, sum.refix + refix / n, sum.revisit + revisit / n
    end
  end
  local r = { found = sum.found / #paths, length = sum.length / #paths, count = #paths, empty = empty }
  for _, k in ipairs{ "search", "refix", "revisit" } do r[k] = nonempty > 0 and sum[k] / nonempty or 0 end
  return r
end

-- scanpath.behaviour_delta(model, reference) -> delta, terms: the mean over the behavioural measures
-- of |model - reference| / reference (two tables as scanpath.behaviour returns).  A measure whose
-- reference value is 0 has no relative error and is left out of the mean (OAT's nansum keeps it
-- in the divisor); terms maps each measure used to its |model - reference| / reference.
function scanpath.behaviour_delta(model, reference)
  local fn = "scanpath.behaviour_delta"
  if type(model) ~= "table" or type(reference) ~= "table" then raise(fn .. ": expects two tables from scanpath.behaviour") end
  local terms, sum, n = {}, 0, 0
  for _, k in ipairs(scanpath.BEHAVIOUR) do
    local m, r = model[k], reference[k]
    if type(m) ~= "number" or type(r) ~= "number" then raise(fn .. ": both tables need a number for '" .. k .. "'") end
    if r ~= 0 then
      terms[k] = abs(m - r) / abs(r)
      sum, n = sum + terms[k], n + 1
    end
  end
  if n == 0 then raise(fn .. ": every reference measure is 0 (no relative error is defined)") end
  return sum / n, terms
end

return scanpath
