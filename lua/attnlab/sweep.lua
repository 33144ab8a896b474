-- attnlab.sweep (lab.sweep): one experiment over a grid of config values, each point an ordinary
-- run directory made by `attnlab run`, all under one sweep directory with a manifest, sweep.json.
--
--   attnlab sweep experiments/icl_regression.lua heads=1,2,4 seed=1..8 --local 2
--   attnlab sweep --resume DIR        what is missing, failed, interrupted or killed, again
--   attnlab sweep --collect DIR       the points' summary.json as one table, mean +- sd over seeds
--
-- The pieces: sweep_grid (axes and their expansion), sweep_process (child processes),
-- sweep_slurm (the job array), sweep_collect (the table), sweep_cli (the command line); this file
-- holds the manifest and runs the points.  docs/sweeps.md is the user's guide.
--
-- Every point is checked against the script's config before anything runs: the script is loaded
-- and run up to its lab.run.start, which is intercepted (so nothing trains and no directory is
-- made), and each point's overrides go through lab.run.resolve_config, the same check `attnlab
-- run` makes.  A point then runs as a child process, `attnlab run SCRIPT key=value ... --out
-- DIR/<point>`, so a crash in one point cannot take the others down, and its output goes to
-- DIR/<point>.log.
--
-- What happened to a point is read from its run directory, not remembered: the run's own
-- status.json, and point.json, which whoever ran the point (this process, or `attnlab sweep
-- --run-point` in a Slurm task) writes when it starts it (host, pid, attempt, command) and when it
-- ends (exit code, times).  sweep.json is refreshed from them by every command that reads it, and
-- is written only by the command the user typed, never by the points, so a job array of a
-- thousand tasks does not fight over one file.  Status of a point:
--   pending      never started (or its directory was removed)
--   queued       submitted to Slurm, not started
--   running      started and its process is alive (here, or a task Slurm still runs)
--   finished     exited 0
--   failed       exited non-zero (the run's error is in status.json, and in sweep.json)
--   interrupted  stopped by Ctrl-C, with a checkpoint
--   killed       started, never recorded an end, and no longer alive (kill -9, scancel, a lost node)
-- --resume runs pending, failed, interrupted and killed points again; a point whose directory has
-- checkpoint.safetensors continues from it (resume=), one that left run files but no checkpoint
-- starts afresh there (--force).
local lab = require "attnlab"
local core = require "attnlab.core"
local args = require "attnlab.args"
local json = require "attnlab.json"
local grid = require "attnlab.sweep_grid"
local process = require "attnlab.sweep_process"
local slurm = require "attnlab.sweep_slurm"
local collector = require "attnlab.sweep_collect"

local M = {}

M.FORMAT = "attnlab-sweep-1"
local MANIFEST = "sweep.json"
M.axis = grid.axis
M.expand = grid.expand

local function fail(msg) core.raise("sweep: " .. msg) end

local function utc() return os.date("!%Y-%m-%dT%H:%M:%SZ") end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

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

local function save(dir, manifest)
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
  if not opts.dry_run then save(dir, manifest) end
  return manifest, dir
end

---------------------------------------------------------------------------------------------------
-- what became of each point
---------------------------------------------------------------------------------------------------

local RERUN = { pending = true, failed = true, interrupted = true, killed = true }
M._RERUN = RERUN -- for sweep_cli

-- The status of point p (see the top of the file) from its directory; active: the Slurm tasks
-- still held ({[index] = state}), or nil when unknown.
local function point_status(dir, p, active, here)
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
  for _, p in ipairs(manifest.points) do p.status = point_status(dir, p, active, here) end
  save(dir, manifest)
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
M._counts = counts -- for sweep_cli

---------------------------------------------------------------------------------------------------
-- running points
---------------------------------------------------------------------------------------------------

local RUN_FILES = { "config.json", "metrics.jsonl", "records.bin", "summary.json", "status.json", "final.safetensors" }

-- The command of point p: attnlab run SCRIPT key=value ... --out DIR/<point> [--threads T], with
-- resume= its checkpoint when it has one, or --force when an earlier attempt left run files but no
-- checkpoint (start afresh there).  Returns argv and the checkpoint resumed from.
local function point_command(manifest, dir, p, threads)
  local pdir = dir .. "/" .. p.dir
  local argv = { manifest.program, "run", manifest.script }
  for _, a in ipairs(p.args) do argv[#argv + 1] = a end
  argv[#argv + 1] = "--out"
  argv[#argv + 1] = pdir
  if threads then argv[#argv + 1] = "--threads"; argv[#argv + 1] = tostring(threads) end
  local checkpoint = pdir .. "/checkpoint.safetensors"
  if exists(checkpoint) then
    argv[#argv + 1] = "resume=" .. checkpoint
    return argv, checkpoint
  end
  for _, f in ipairs(RUN_FILES) do
    if exists(pdir .. "/" .. f) then argv[#argv + 1] = "--force"; break end
  end
  return argv, nil
end

local function write_record(pdir, rec)
  lab.write_file_atomic(pdir .. "/point.json", json.encode(rec, 2) .. "\n")
end

-- Starts point p as a child process; returns the job {p, pid, rec, pdir, t0} or nil and why.
-- The child runs in the directory the sweep was made in (relative paths among its values mean what
-- they meant there), so every path handed to it is absolute.
local function start_point(manifest, dir, p, threads)
  dir = absolute(dir)
  local pdir = dir .. "/" .. p.dir
  mkdir_p(pdir)
  local argv, checkpoint = point_command(manifest, dir, p, threads)
  local previous = read_json(pdir .. "/point.json")
  local rec = {
    index = p.index, attempt = (previous and tonumber(previous.attempt) or 0) + 1, command = argv,
    host = process.hostname(), started = utc(), threads = threads, resumed_from = checkpoint,
    slurm_job = os.getenv("SLURM_ARRAY_JOB_ID"), slurm_task = os.getenv("SLURM_ARRAY_TASK_ID"),
  }
  local log = dir .. "/" .. p.dir .. ".log"
  local f = io.open(log, "ab")
  if f then
    f:write(string.format("== attempt %d on %s at %s%s\n", rec.attempt, rec.host, rec.started,
      checkpoint and (", resuming from " .. checkpoint) or ""))
    f:close()
  end
  local pid, why = process.spawn(argv, { cwd = manifest.cwd, stdout = log, append = true })
  if not pid then return nil, why end
  rec.pid = pid
  write_record(pdir, rec)
  return { p = p, pid = pid, rec = rec, pdir = pdir, t0 = lab.time() }
end

local function end_point(job, code, signal)
  local rec = job.rec
  rec.exit_code, rec.signal, rec.finished = code, signal, utc()
  rec.seconds = math.floor((lab.time() - job.t0) * 1000 + 0.5) / 1000
  write_record(job.pdir, rec)
end

local function duration(s)
  if not s or s ~= s or s == math.huge then return "?" end
  s = math.floor(s + 0.5)
  if s >= 3600 then return string.format("%dh%02dm", math.floor(s / 3600), math.floor(s / 60) % 60) end
  if s >= 60 then return string.format("%dm%02ds", math.floor(s / 60), s % 60) end
  return s .. "s"
end

local function stderr_tty()
  local cli = rawget(_G, "ATTNLAB_CLI")
  if cli and cli.stderr_tty ~= nil then return cli.stderr_tty end
  pcall(ffi.cdef, "int isatty(int fd);")
  return ffi.C.isatty(2) == 1
end

-- The sweep's one progress line: redrawn in place on a terminal; elsewhere (a log) a line each
-- time a point ends.
local Progress = {}
Progress.__index = Progress

local function new_progress(total)
  return setmetatable({ total = total, done = 0, failed = 0, running = 0, t0 = lab.time(), seconds = 0,
                        tty = stderr_tty(), last = -1, drawn = false }, Progress)
end

function Progress:text(waiting, parallel) -- "3/8 done (1 failed), 2 running, 3 waiting | 1m05s, about 2m left"
  local elapsed = lab.time() - self.t0
  local left = "?"
  if self.done > 0 then
    local per = self.seconds / self.done
    left = duration(per * (waiting + self.running * 0.5) / math.max(1, math.min(parallel, waiting + self.running)))
  end
  return string.format("%d/%d done%s, %d running, %d waiting | %s, about %s left", self.done, self.total,
    self.failed > 0 and string.format(" (%d failed)", self.failed) or "", self.running, waiting, duration(elapsed), left)
end

function Progress:draw(waiting, parallel, force)
  if not self.tty then return end
  local t = lab.time()
  if not force and t - self.last < 0.25 then return end
  self.last = t
  io.stderr:write("\r\27[K", "sweep: ", self:text(waiting, parallel))
  io.stderr:flush()
  self.drawn = true
end

-- a line that stays (a point that failed; every end, off a terminal)
function Progress:say(line)
  if self.drawn then io.stderr:write("\r\27[K") self.drawn = false end
  io.stderr:write(line, "\n")
  io.stderr:flush()
end

function Progress:close()
  if self.drawn then io.stderr:write("\r\27[K") self.drawn = false end
end

local RUN_OPTIONS = { parallel = true, threads = true, points = true }

-- Runs the points of the sweep in dir that are pending, failed, interrupted or killed (or those of
-- opts.points, a list of indices) on this machine, opts.parallel at a time (default 1), each with
-- opts.threads threads (default: the cores divided among them).  A point that fails is recorded
-- and the rest go on; Ctrl-C stops the sweep (the running points checkpoint and stop).  Returns
-- the refreshed manifest and whether it was interrupted.
function M.run(dir, opts)
  opts = opts or {}
  if type(opts) ~= "table" then fail("run expects (dir, {parallel =, threads =})") end
  for k in pairs(opts) do
    if not RUN_OPTIONS[k] then fail(string.format("run: unknown option '%s' (valid: parallel, points, threads)", tostring(k))) end
  end
  local parallel = opts.parallel or 1
  if type(parallel) ~= "number" or parallel < 1 or parallel ~= math.floor(parallel) then
    fail("--local needs how many points run at a time, a whole number >= 1, not " .. tostring(parallel))
  end
  local threads = opts.threads or math.max(1, math.floor(process.cores() / parallel))
  if type(threads) ~= "number" or threads < 1 or threads ~= math.floor(threads) then
    fail("--threads must be a whole number >= 1, not " .. tostring(threads))
  end
  local manifest, why = M.status(dir)
  if manifest.slurm and manifest.slurm.jobs and #manifest.slurm.jobs > 0 and why then
    fail(string.format("cannot ask Slurm which points of %s still run (%s): run where squeue answers", dir, why))
  end
  local queue = {}
  if opts.points then
    for _, i in ipairs(opts.points) do
      if not manifest.points[i] then fail(string.format("%s has no point %s (it has %d)", dir, tostring(i), #manifest.points)) end
      queue[#queue + 1] = manifest.points[i]
    end
  else
    for _, p in ipairs(manifest.points) do if RERUN[p.status] then queue[#queue + 1] = p end end
  end
  manifest.runner = { kind = "local", parallel = parallel, threads = threads }
  save(dir, manifest)
  if #queue == 0 then return manifest, false end

  local progress = new_progress(#queue)
  local function say(line) progress:say(line) end
  local running = {}
  lab.catch_interrupts(true)
  while (#queue > 0 and not lab.interrupted()) or #running > 0 do
    while #running < parallel and #queue > 0 and not lab.interrupted() do
      local p = table.remove(queue, 1)
      local job, err = start_point(manifest, dir, p, threads)
      if job then
        running[#running + 1] = job
        p.status = "running"
        progress.running = progress.running + 1
      else
        p.status, p.error = "failed", err
        progress.done, progress.failed = progress.done + 1, progress.failed + 1
        say(string.format("sweep: %s could not start: %s", p.dir, err))
      end
    end
    for i = #running, 1, -1 do
      local job = running[i]
      local code, signal = process.ended(job.pid)
      if code then
        end_point(job, code, signal)
        table.remove(running, i)
        local p = job.p
        p.status = point_status(dir, p, nil, job.rec.host)
        progress.running, progress.done = progress.running - 1, progress.done + 1
        progress.seconds = progress.seconds + job.rec.seconds
        if p.status ~= "finished" then
          progress.failed = progress.failed + 1
          say(string.format("sweep: %s %s (exit %d%s)%s; log %s/%s", p.dir, p.status, code,
            signal and (", signal " .. signal) or "", p.error and (": " .. p.error) or "", dir, p.log))
        elseif not progress.tty then
          say(string.format("sweep: %s finished in %s (%s)", p.dir, duration(job.rec.seconds), progress:text(#queue, parallel)))
        end
        save(dir, manifest)
      end
    end
    progress:draw(#queue, parallel)
    if #running > 0 then process.sleep(100) end
  end
  local interrupted = lab.interrupted()
  lab.catch_interrupts(false)
  progress:close()
  manifest = M.status(dir)
  return manifest, interrupted
end

-- Runs point `index` of the sweep in dir here, to its end, and records it in the point's
-- point.json only (what a Slurm array task does: `attnlab sweep --run-point DIR INDEX`).
-- threads: opts.threads, else $SLURM_CPUS_PER_TASK, else the manifest's.  Returns the exit code.
-- a number of threads given as an option: a whole number >= 1 (nil: the default)
local function check_threads(fn, threads)
  if threads ~= nil and (type(threads) ~= "number" or threads < 1 or threads ~= math.floor(threads) or threads >= 2 ^ 31) then
    fail(fn .. ": threads must be a whole number >= 1, not " .. args.show(threads))
  end
end

function M.run_point(dir, index, opts)
  opts = opts or {}
  if type(opts) ~= "table" then fail("run_point expects (dir, index [, {threads =}])") end
  args.check_options(opts, "sweep.run_point", { "threads" })
  check_threads("run_point", opts.threads)
  local manifest = M.load(dir)
  local p = manifest.points[index]
  if not p then fail(string.format("%s has no point %s (it has %d)", dir, tostring(index), #manifest.points)) end
  local threads = opts.threads or tonumber(os.getenv("SLURM_CPUS_PER_TASK") or "")
    or (manifest.runner and manifest.runner.threads)
  local job, err = start_point(manifest, dir, p, threads)
  if not job then fail(string.format("point %d could not start: %s", index, err)) end
  lab.catch_interrupts(true) -- Ctrl-C reaches the run too, which checkpoints: wait for it, then record
  local code, signal = process.wait(job.pid)
  lab.catch_interrupts(false)
  end_point(job, code, signal)
  io.stdout:write(string.format("sweep: point %d (%s) %s with exit code %d after %s; log %s/%s.log\n", index,
    table.concat(p.args, " "), code == 0 and "finished" or "ended", code, duration(job.rec.seconds), dir, p.dir))
  return code
end

---------------------------------------------------------------------------------------------------
-- Slurm
---------------------------------------------------------------------------------------------------

local SUBMIT_OPTIONS = { options = true, threads = true }

-- Sends the points of dir that are pending, failed, interrupted or killed (and that Slurm does not
-- already hold) to Slurm as one job array; opts.options: sbatch's options (a list of strings),
-- opts.threads: --cpus-per-task (default 1).  Returns the manifest and the job record ({id =,
-- array =}), or nil and sbatch's answer under --test-only.
function M.submit(dir, opts)
  opts = opts or {}
  if type(opts) ~= "table" then fail("submit expects (dir [, {options =, threads =}])") end
  check_threads("submit", opts.threads)
  for k in pairs(opts) do
    if not SUBMIT_OPTIONS[k] then fail(string.format("submit: unknown option '%s' (valid: options, threads)", tostring(k))) end
  end
  local options = opts.options or {}
  slurm.check_options(options)
  slurm.sbatch()
  local manifest, why = M.status(dir)
  if why then fail(string.format("cannot ask Slurm which points of %s still run (%s)", dir, why)) end
  local indices = {}
  for _, p in ipairs(manifest.points) do if RERUN[p.status] then indices[#indices + 1] = p.index end end
  if #indices == 0 then return manifest, nil end
  local threads = opts.threads or (manifest.runner and manifest.runner.kind == "slurm" and manifest.runner.threads) or 1
  local abs = absolute(dir)
  slurm.write_script(manifest, abs, threads)
  -- a point sent again starts with no record of the attempt before (which would read as killed)
  local job = slurm.submit(manifest, abs, indices, options)
  if job.test_only then return manifest, nil, job.message end
  manifest.runner = { kind = "slurm", options = #options > 0 and options or json.empty_array, threads = threads }
  manifest.slurm = manifest.slurm or { script = slurm.SCRIPT, jobs = {} }
  manifest.slurm.jobs[#manifest.slurm.jobs + 1] = job
  for _, i in ipairs(indices) do manifest.points[i].status = "queued" end
  save(dir, manifest)
  return manifest, job
end

---------------------------------------------------------------------------------------------------
-- the table
---------------------------------------------------------------------------------------------------

local COLLECT_OPTIONS = { over = true, metrics = true }

-- Merges the summary.json of the finished points of dir into one table, mean +- sample sd over the
-- seeds (opts.over) per setting, the metrics flattened with dotted names (opts.metrics: the names
-- or prefixes to keep); writes results.md and results.csv into dir.  Returns the table
-- ({columns, settings = {{values, n, stats = {metric = {mean, sd, n}}}}, metrics, markdown, csv}).
function M.collect(dir, opts)
  opts = opts or {}
  for k in pairs(opts) do
    if not COLLECT_OPTIONS[k] then fail(string.format("collect: unknown option '%s' (valid: metrics, over)", tostring(k))) end
  end
  if opts.metrics ~= nil and type(opts.metrics) ~= "table" then fail("collect: metrics must be a list of names") end
  local manifest = M.status(dir)
  local result = collector.collect(manifest, dir, opts)
  lab.write_file_atomic(dir .. "/results.md", result.markdown)
  lab.write_file_atomic(dir .. "/results.csv", result.csv)
  return result
end

function M.main(args) return require("attnlab.sweep_cli").main(args) end

return M
