-- make_stimuli.lua -- writes the visual-search displays (lua/attnlab/tasks/visual_search_stimuli.lua)
-- as PNGs with one index.json per experiment, and optionally the docs' contact sheets.
--
--   attnlab run experiments/make_stimuli.lua                          all seven sets into assets/stimuli
--   attnlab run experiments/make_stimuli.lua experiments=tl,cross per_size=4 root=/tmp/stim seed=2
--   attnlab run experiments/make_stimuli.lua sheets=docs/visual_search displays=false
--                                                                     the contact sheets only
--
-- Options (key=value): root (default assets/stimuli in the tree), seed (1), experiments (a comma
-- list, default all), per_size (default each experiment's: 30 or 36 displays per set size),
-- displays (true: write the sets), sheets (a directory: write <experiment>.png contact sheets there).
-- The study calls visual_search_stimuli.read, which writes a missing set itself, so running this
-- first is optional.  docs/visual_search.md describes the files.
local lab = require "attnlab"
local vs = require "attnlab.tasks.visual_search_stimuli"

local opts = { seed = 1, displays = true }
local VALID = { root = true, seed = true, experiments = true, per_size = true, displays = true, sheets = true }
for _, a in ipairs(arg or {}) do
  local k, v = a:match("^([%w_]+)=(.*)$")
  if not k then error("make_stimuli: arguments are key=value (got '" .. a .. "')", 0) end
  if not VALID[k] then error("make_stimuli: unknown option '" .. k .. "' (displays, experiments, per_size, root, seed, sheets)", 0) end
  if k == "seed" or k == "per_size" then
    opts[k] = tonumber(v)
    if not opts[k] then error("make_stimuli: " .. k .. " must be a number (got '" .. v .. "')", 0) end
  elseif k == "displays" then
    if v ~= "true" and v ~= "false" then error("make_stimuli: displays must be true or false (got '" .. v .. "')", 0) end
    opts[k] = v == "true"
  elseif k == "experiments" then
    opts[k] = {}
    for name in v:gmatch("[^,]+") do opts[k][#opts[k] + 1] = name end
  else
    opts[k] = v
  end
end

if opts.displays then
  vs.write{ root = opts.root, seed = opts.seed, experiments = opts.experiments, per_size = opts.per_size }
end
if opts.sheets then
  os.execute("mkdir -p '" .. opts.sheets .. "'")
  for _, name in ipairs(opts.experiments or {}) do vs.experiment(name) end
  for _, e in ipairs(vs.experiments) do
    local wanted = not opts.experiments
    for _, name in ipairs(opts.experiments or {}) do wanted = wanted or name == e.name end
    if wanted then
      -- the 615 px intersection displays at half size, so that a sheet fits a screen
      local path = opts.sheets .. "/" .. e.name .. ".png"
      lab.image.save(path, vs.contact_sheet(e.name, { seed = opts.seed, shrink = e.canvas > 400 and 2 or 1 }))
      print("contact sheet: " .. path)
    end
  end
end
