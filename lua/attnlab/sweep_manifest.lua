-- attnlab.sweep_manifest: a sweep's manifest, sweep.json, and its directory -- making a sweep (every
-- point checked against the script's config first), reading the manifest back, and refreshing each
-- point's status from its directory (sweep.lua's top says what each status means).  The other
-- sweep files (sweep.lua, sweep_local.lua, sweep_cli.lua) read and write the directory through it.
local lab = require "attnlab"
local core = require "attnlab.core"
local json = require "attnlab.json"
local grid, process, slurm = require "attnlab.sweep_grid", require "attnlab.sweep_process", require "attnlab.sweep_slurm"

local M = {}

M.FORMAT = "attnlab-sweep-1"
local MANIFEST = "sweep.json"

local function fail(msg) core.raise("sweep: " .. msg) end

local function utc() return os.date("!%Y-%m-%dT%H:%M:%SZ") end

local read, exists = core.read_file, core.file_exists

local function read_json(path)
  local text = read(path)
  if not text then return nil end
  local ok, v = pcall(json.decode, text)
  return ok and type(v) == "table" and v or nil
end

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function mkdir_p(dir)
  local r = os.execute("mkdir -p " .. quote(dir) .. " 2>/dev/null")
  if r ~= 0 and r ~= true and not exists(dir .. "/.") then
    fail("cannot create directory '" .. dir .. "'")
  end
end

local ffi = require "ffi"
pcall(ffi.cdef, "char *realpath(const char *path, char *resolved_path);")
pcall(ffi.cdef, "char *getcwd(char *buf, size_t size);")

local function absolute(path)
  local buf = ffi.new("char[?]", 4097)
  if ffi.C.realpath(path, buf) ~= nil then return ffi.string(buf) end
  if path:sub(1, 1) == "/" then return path end
  local cwd = ffi.C.getcwd(buf, 4096)
  return (cwd ~= nil and ffi.string(buf) or ".") .. "/" .. path
end

local function cwd()
  local buf = ffi.new("char[?]", 4097)
  return ffi.C.getcwd(buf, 4096) ~= nil and ffi.string(buf) or "."
end

M.utc, M.exists, M.read_json, M.mkdir_p, M.absolute = utc, exists, read_json, mkdir_p, absolute

---------------------------------------------------------------------------------------------------
-- the script's config, and the points checked against it
---------------------------------------------------------------------------------------------------

-- Loads the script and runs it up to its lab.run.start, which is intercepted: returns {config =
-- the defaults, kinds =, name = the experiment}.  Nothing trains, nothing is written.
function M.script_config(script)
  if type(script) ~= "string" then fail("script_config expects the path of a script") end
  if not exists(script) then fail("cannot open script '" .. script .. "'") end
  local chunk, err = loadfile(script)
  if not chunk then fail(tostring(err)) end
  local run_module = require "attnlab.run"
  local start = run_module.start
  local captured
  local STOP = {}
  run_module.start = function(opts) captured = type(opts) == "table" and opts or {}; error(STOP, 0) end
  local saved_cli, saved_arg = rawget(_G, "ATTNLAB_CLI"), rawget(_G, "arg")
  local cli = {}
  for k, v in pairs(saved_cli or {}) do cli[k] = v end
  cli.script, cli.overrides, cli.raw_overrides, cli.out, cli.view = script, {}, {}, nil, false
  rawset(_G, "ATTNLAB_CLI", cli)
  rawset(_G, "arg", { [0] = script })
  local ok, e = pcall(chunk)
  run_module.start = start
  rawset(_G, "ATTNLAB_CLI", saved_cli)
  rawset(_G, "arg", saved_arg)
  if captured then
    local config = captured.config or {}
    if type(config) ~= "table" then fail(script .. ": lab.run.start's config is not a table") end
    return { config = config, kinds = captured.kinds,
             name = captured.name or script:match("([^/]+)%.lua$") or "run" }
  end
  if not ok then fail(script .. " raised an error before lab.run.start: " .. tostring(e)) end
  fail(script .. " never calls lab.run.start, so it has no config to sweep")
end

-- The text of a command-line value as attnlab run reads it (lua/main.c, push_override_value).
local function typed(text)
  if text == "true" then return true end
  if text == "false" then return false end
  local n = tonumber(text)
  if n and text:match("%S") then return n end
  return text
end

-- Each point's overrides through lab.run.resolve_config; the first bad one is an error naming the
-- axis (key=values, as typed) that brought it.
local function check_points(script, info, axes, points)
  local axis_text = {}
  for _, ax in ipairs(axes) do axis_text[ax.key] = ax.text or (ax.key .. "=" .. table.concat(ax.values, ",")) end
  local run_module = require "attnlab.run"
  for _, p in ipairs(points) do
    local overrides, raw = {}, {}
    for _, kv in ipairs(p) do overrides[kv[1]] = typed(kv[2]); raw[kv[1]] = kv[2] end
    local ok, err = pcall(run_module.resolve_config, { config = info.config, kinds = info.kinds, overrides = overrides, raw = raw })
    if not ok then
      local msg = tostring(err):gsub("^[^ ]-%.lua:%d+: ", ""):gsub("^run: ", "")
      local key = msg:match("config key '([^']+)'")
      fail(string.format("%s: %s (the config of %s)", axis_text[key] or "a point", msg, script))
    end
  end
end

---------------------------------------------------------------------------------------------------
-- the manifest
---------------------------------------------------------------------------------------------------

function M.save(dir, manifest)
  lab.write_file_atomic(dir .. "/" .. MANIFEST, json.encode(manifest, 2) .. "\n")
end

-- The manifest of the sweep in dir, as stored (M.status refreshes it first).
function M.load(dir)
  if type(dir) ~= "string" then fail("expected a sweep directory") end
  local path = dir .. "/" .. MANIFEST
  local text = read(path)
  if not text then fail(string.format("'%s' is not a sweep directory (no %s)", dir, MANIFEST)) end
  local ok, m = pcall(json.decode, text)
  if not ok or type(m) ~= "table" or m.format ~= M.FORMAT then
    fail(string.format("'%s' is not a sweep manifest (format %s)", path, M.FORMAT))
  end
  return m
end

-- the directory name of point i: its index and the values of the axes that vary
local function point_dir(i, n, p, varies)
  local parts = { string.format("%0" .. math.max(3, #tostring(n)) .. "d", i) }
  for _, kv in ipairs(p) do
    if varies[kv[1]] then parts[#parts + 1] = kv[1] .. "-" .. kv[2] end
  end
  local name = table.concat(parts, "_"):gsub("[^%w._=+-]", "_")
  return name:sub(1, 96)
end

local CREATE_OPTIONS = { script = true, axes = true, set = true, zip = true, out = true, dry_run = true }

-- Makes a sweep: opts.script (the experiment), opts.axes (a list of "key=values" strings or
-- {key =, values = {...}}), opts.set ({key = value} or a list of "key=value": the same for every
-- point, taken literally), opts.zip, opts.out (the sweep directory; default
-- runs/<experiment>/sweep-<time>).  Every point is checked first; then the directory is made and
-- sweep.json written (not under opts.dry_run).  Returns the manifest and the directory.
function M.create(opts)
  if type(opts) ~= "table" then fail("create expects a table {script =, axes =, set =, zip =, out =}") end
  for k in pairs(opts) do
    if not CREATE_OPTIONS[k] then fail(string.format("create: unknown option '%s' (valid: axes, dry_run, out, script, set, zip)", tostring(k))) end
  end
  local script = opts.script
  if type(script) ~= "string" then fail("create: script must be the path of an experiment script") end
  local axes = {}
  for i, a in ipairs(opts.axes or {}) do
    if type(a) == "string" then axes[i] = grid.axis(a)
    elseif type(a) == "table" then
      local values = {}
      for j, v in ipairs(a.values or {}) do values[j] = tostring(v) end
      axes[i] = { key = a.key, values = values, text = a.text or (tostring(a.key) .. "=" .. table.concat(values, ",")) }
    else fail("create: axis " .. i .. " must be 'key=values' or {key =, values = {...}}") end
  end
  if #axes == 0 then fail("no axes: a sweep needs at least one key=values (e.g. seed=1..8)") end
  local set = opts.set or {}
  if type(set) ~= "table" then fail("create: set must be a table") end
  local fixed = {}
  if #set > 0 then
    for _, text in ipairs(set) do fixed[#fixed + 1] = grid.axis(text, true) end
  else
    local keys = {}
    for k in pairs(set) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do fixed[#fixed + 1] = grid.axis(k .. "=" .. tostring(set[k]), true) end
  end
  for _, ax in ipairs(fixed) do ax.text, ax.fixed = "--set " .. ax.text, true; axes[#axes + 1] = ax end
  for _, ax in ipairs(axes) do
    if ax.key == "resume" then
      fail("resume= cannot be swept: the sweep resumes its own points (attnlab sweep --resume DIR)")
    end
  end
  local points = grid.expand(axes, opts.zip)

  local program = (rawget(_G, "ATTNLAB_CLI") or {}).program
  if not program then
    program = lab.root .. "/build/attnlab"
    if not exists(program) then fail("the points run with the attnlab program: start the sweep from it (attnlab sweep)") end
  end
  local info = M.script_config(script)
  check_points(script, info, axes, points)

  local dir = opts.out
  if dir ~= nil and (type(dir) ~= "string" or dir == "") then fail("--out needs a directory") end
  if not dir then
    local base = "runs/" .. info.name .. "/sweep-" .. os.date("%Y%m%d-%H%M%S")
    dir = base
    local k = 2
    while exists(dir .. "/" .. MANIFEST) do dir = base .. "-" .. k; k = k + 1 end
  end
  dir = dir:gsub("/+$", "")
  if exists(dir .. "/" .. MANIFEST) then
    fail(string.format("'%s' already holds a sweep: attnlab sweep --resume %s runs what is left of it; or give another --out", dir, dir))
  end
  if not opts.dry_run then mkdir_p(dir) end

  local varies = {}
  for _, ax in ipairs(axes) do if #ax.values > 1 then varies[ax.key] = true end end
  local manifest = {
    format = M.FORMAT, experiment = info.name, script = absolute(script), script_name = script,
    program = program, cwd = cwd(), created = utc(), mode = opts.zip and "zip" or "cartesian",
    axes = {}, points = {},
  }
  for i, ax in ipairs(axes) do
    manifest.axes[i] = { key = ax.key, values = ax.values, text = ax.text, fixed = ax.fixed }
  end
  for i, p in ipairs(points) do
    local args, overrides = {}, {}
    for j, kv in ipairs(p) do args[j] = kv[1] .. "=" .. kv[2]; overrides[kv[1]] = kv[2] end
    manifest.points[i] = { index = i, dir = point_dir(i, #points, p, varies), args = args, overrides = overrides,
                           status = "pending" }
  end
  if not opts.dry_run then M.save(dir, manifest) end
  return manifest, dir
end

---------------------------------------------------------------------------------------------------
-- what became of each point
---------------------------------------------------------------------------------------------------

-- the statuses that --resume (and a sweep run or sent again) starts again
local RERUN = { pending = true, failed = true, interrupted = true, killed = true }
M.RERUN = RERUN

-- The status of point p (see the top of sweep.lua) from its directory; active: the Slurm tasks
-- still held ({[index] = state}), or nil when unknown.
function M.point_status(dir, p, active, here)
  local pdir = dir .. "/" .. p.dir
  local run = read_json(pdir .. "/status.json")
  local rec = read_json(pdir .. "/point.json")
  p.exit_code, p.signal, p.started, p.finished, p.seconds, p.attempts, p.host =
    rec and rec.exit_code, rec and rec.signal, rec and rec.started, rec and rec.finished, rec and rec.seconds,
    rec and rec.attempt, rec and rec.host
  p.error = run and run.status == "failed" and run.error or nil
  p.step = run and run.step
  p.log = p.dir .. ".log"
  if rec and rec.exit_code ~= nil then
    if rec.exit_code == 0 then return "finished" end
    if run and run.status == "interrupted" then return "interrupted" end
    return "failed"
  end
  if active and active[p.index] then return active[p.index] == "PENDING" and "queued" or "running" end
  if rec then
    if rec.host == here and process.alive(rec.pid) then return "running" end
    if rec.slurm_job and not active then return "running" end -- Slurm could not be asked: assume the worst
    return "killed"
  end
  if run and run.status == "finished" then return "finished" end
  if run then return run.status == "interrupted" and "interrupted" or "failed" end
  return "pending"
end

-- The manifest of dir with every point's status read afresh from its directory (and from squeue
-- for a sweep sent to Slurm), saved back.  Returns the manifest and, when Slurm could not be asked,
-- why.
function M.status(dir)
  local manifest = M.load(dir)
  local active, why
  if manifest.slurm and manifest.slurm.jobs and #manifest.slurm.jobs > 0 then
    active, why = slurm.active_tasks(manifest)
  end
  local here = process.hostname()
  for _, p in ipairs(manifest.points) do p.status = M.point_status(dir, p, active, here) end
  M.save(dir, manifest)
  return manifest, why
end

-- {finished = n, failed = n, ...} and a one-line description
local function counts(manifest)
  local c = {}
  for _, p in ipairs(manifest.points) do c[p.status] = (c[p.status] or 0) + 1 end
  local order = { "finished", "failed", "interrupted", "killed", "running", "queued", "pending" }
  local parts = {}
  for _, s in ipairs(order) do if c[s] then parts[#parts + 1] = c[s] .. " " .. s end end
  return c, table.concat(parts, ", ")
end
M.counts = counts

return M
