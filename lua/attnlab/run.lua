-- attnlab.run: the run object of an experiment script -- config and overrides, the run directory,
-- metrics, checkpoints, progress, Ctrl-C and resume.
--
--   local run = lab.run.start{ name = "icl_regression", config = { d = 5, steps = 20000, seed = 1 } }
--   run:track{ model = model, optim = opt }
--   for step in run:steps(run.config.steps) do ... run:log(step, { loss = l }) end
--   run:summary{ ... }; run:finish()
--
-- The viewer: start opens the run's record stream (lab.viz) and, under `attnlab run --view`, starts
-- the viewer window on the run directory.  Each step of run:steps sets the records' step and polls
-- the viewer's commands (one stat() when there are none): pause / resume / step hold or release the
-- loop; ablate / scale / restore set a head's output scale on the attention layers (tracked modules
-- with set_head_scale, in the order found, or the list given to run:attention_layers); every
-- command is logged in metrics.jsonl as an event, e.g. {"step": N, "event": "ablate", "layer": 1,
-- "head": 2, "scale": 0, "text": "ablate layer 1 head 2"}: fields for the viewer, text for people.
--
-- The run directory: config.json, metrics.jsonl, summary.json, records.bin, checkpoint.safetensors
-- and final.safetensors, status.json, commands; docs/run-directory.md states each file's grammar,
-- who writes it and who reads it.  A directory that already holds a run
-- is never written into by accident: start refuses it (naming the ways out) unless the run resumes
-- from a checkpoint in that same directory (it continues in place), or --force (opts.force) says to
-- start afresh, which first deletes the old run's files (only those: anything else stays), so no
-- second run's lines are ever appended to the first one's metrics.jsonl or records.bin.
--
-- status.json says what became of the run, always written atomically: {"status": "running", ...}
-- from start (it stays so if the process is killed outright: kill -9, power loss), "finished" from
-- finish, "interrupted" on Ctrl-C (with the checkpoint), "failed" with the error and the step when
-- the script raises an error after start (the attnlab program calls M.script_failed).
--
-- Checkpoints: on Ctrl-C, and every checkpoint_every minutes (a config key every run accepts,
-- default 10, 0 = never) to the same checkpoint.safetensors, so that kill -9 loses at most that much
-- and resume= continues bit-identically from the last one.  The loop reads the monotonic clock once
-- per step anyway (progress); the periodic checkpoint reuses that reading, so it costs nothing
-- between checkpoints.
--
-- Resume is bit-identical to an uninterrupted run: a checkpoint holds every tracked tensor exactly
-- (float32 stays float32), the numbers of the tracked state (optimiser step counters, ...) and the
-- RNG's {seed, counter}; all are put back before the loop yields its first step.  The script must
-- draw its random numbers from lab's generator only (not math.random) for this to hold.
--
-- The config's resolution is run_config.lua's, the checkpoint's layout run_checkpoint.lua's, the
-- directory's claiming run_dir.lua's, the viewer's commands run_commands.lua's; this file is the
-- run object over them.
local lab = require "attnlab"
local core, args = require "attnlab.core", require "attnlab.args"
local json = require "attnlab.json"
local run_config, run_checkpoint = require "attnlab.run_config", require "attnlab.run_checkpoint"
local run_dir, run_commands = require "attnlab.run_dir", require "attnlab.run_commands"
local ffi = require "ffi"

local M = {}
local Run = {}
Run.__index = Run

local DEFAULT_CHECKPOINT_EVERY = 10 -- minutes
-- the runs started and not yet finished: a script error marks them failed (M.script_failed)
local open_runs = {}

local function fail(msg) core.raise("run: " .. msg) end
local is_tensor, now, write_atomic = core.is_tensor, lab.time, lab.write_file_atomic

pcall(ffi.cdef, "int getpid(void);")

---------------------------------------------------------------------------------------------------
-- start
---------------------------------------------------------------------------------------------------

-- What start would make of these overrides, without starting anything: `attnlab sweep` checks
-- every point of a grid with it before the first one runs.  opts: config (the defaults), kinds,
-- overrides ({key = value}), raw ({key = text as typed}, for string keys).
function M.resolve_config(opts)
  if type(opts) ~= "table" then fail("resolve_config expects a table {config=, kinds=, overrides=, raw=}") end
  for k in pairs(opts) do
    if k ~= "config" and k ~= "kinds" and k ~= "overrides" and k ~= "raw" then
      fail(string.format("resolve_config: unknown option '%s' (valid: config, kinds, overrides, raw)", tostring(k)))
    end
  end
  if type(opts.config or {}) ~= "table" then fail("resolve_config: config must be a table") end
  return run_config.resolve(opts.config or {}, opts.kinds, opts.overrides or {}, opts.raw or {})
end

-- opts: name, config (the defaults), and for use outside the program, overrides/out/force (else
-- ATTNLAB_CLI's).
function M.start(opts)
  opts = opts or {}
  if type(opts) ~= "table" then fail("start expects a table {name=, config=}") end
  local START_OPTIONS = { name = true, config = true, kinds = true, overrides = true, out = true, force = true, viz = true }
  for k in pairs(opts) do
    if not START_OPTIONS[k] then
      fail(string.format("start: unknown option '%s' (valid: config, force, kinds, name, out, overrides, viz)", tostring(k)))
    end
  end
  local cli = rawget(_G, "ATTNLAB_CLI") or {}
  local defaults = opts.config or {}
  if type(defaults) ~= "table" then fail("start: config must be a table") end
  local overrides = opts.overrides or cli.overrides or {}
  local raw = opts.overrides and {} or cli.raw_overrides or {}
  local script = cli.script or (rawget(_G, "arg") and arg[0]) or nil
  local name = opts.name or (script and script:match("([^/]+)%.lua$")) or "run"

  local self = setmetatable({ name = name, tracked = {}, tracked_names = {}, step = 0,
                              device = cli.device or "cpu", view = cli.view or false,
                              script = script }, Run)

  local resume = overrides.resume
  if resume ~= nil then
    resume = raw.resume or tostring(resume)
    self.ckpt = run_checkpoint.read(resume)
    self.resumed_from = resume
    self.step = self.ckpt.step
  end
  local config = run_config.resolve(defaults, opts.kinds, overrides, raw, self.ckpt and self.ckpt.config)
  self.config = config
  self.seed = type(config.seed) == "number" and config.seed or 0
  self.log_every = type(config.log_every) == "number" and config.log_every or 100
  local every = config.checkpoint_every
  if every == nil then every = DEFAULT_CHECKPOINT_EVERY end
  if type(every) ~= "number" or every ~= every or every < 0 then
    fail("config key 'checkpoint_every' is in minutes and must be >= 0 (0: no periodic checkpoints), got " .. run_config.describe(every))
  end
  self.checkpoint_every = every
  lab.seed(self.seed)

  -- the directory: --out, else the checkpoint's own when resuming, else a fresh one
  local dir = opts.out or cli.out
  if not dir and resume then dir = resume:match("^(.*)/[^/]*$") or "." end
  if not dir then dir = run_dir.fresh(name) end
  dir = dir:gsub("/+$", "")
  if dir == "" then dir = "/" end
  local force = opts.force
  if force == nil then force = cli.force end
  -- data-parallel (mpirun, attnlab.dist): rank 0 writes the run directory; the other ranks run the
  -- same script with a scratch folder of their own, removed when they finish
  local dist = require "attnlab.dist"
  if dist.is_main() then
    run_dir.claim_dir(dir, force, resume and (resume:match("^(.*)/[^/]*$") or "."))
  else
    local unique = os.tmpname()
    os.remove(unique)
    dir = unique .. "-attnlab-rank" .. dist.rank()
    self.scratch = true
  end
  run_dir.mkdir_p(dir)
  self.dir = dir
  M.last_dir = dir   -- where `attnlab run --profile` leaves its table
  self.metrics_path = dir .. "/metrics.jsonl"
  if self.ckpt then run_dir.truncate_metrics(self.metrics_path, self.ckpt.step) end

  local threads = cli.threads or lab.num_threads()
  local blas_kernel, _, linear_kernel = lab.blas_kernel()
  write_atomic(dir .. "/config.json", json.encode({
    name = name, config = config, seed = self.seed, attnlab_version = lab.version,
    device = self.device, threads = threads, blas_kernel = blas_kernel, linear_kernel = linear_kernel,
    script = script, checkpoint_every = self.checkpoint_every,
    started = os.date("!%Y-%m-%dT%H:%M:%SZ"), resumed_from = self.resumed_from,
  }, 2) .. "\n")
  self:_status("running", { pid = ffi.C.getpid(), resumed_from = self.resumed_from })
  open_runs[#open_runs + 1] = self
  if opts.viz ~= false and not self.scratch then
    lab.viz.open(dir)
    lab.viz.set_step(self.step)
  end
  if self.view and not self.scratch then
    if type(cli.open_viewer) ~= "function" then
      io.stderr:write("attnlab: --view: the viewer can only be started by the attnlab program\n")
    else
      local ok, err = cli.open_viewer(dir)
      if not ok then io.stderr:write("attnlab: --view: " .. tostring(err) .. "; training without a window\n") end
    end
  end
  return self
end


---------------------------------------------------------------------------------------------------
-- the run object
---------------------------------------------------------------------------------------------------

-- Writes status.json (atomically): {"status": status, "step": the last completed step, "time":
-- UTC, "checkpoint_step": the step of the last checkpoint written, when there was one} plus extra.
function Run:_status(status, extra)
  local rec = { status = status, step = self.step, time = os.date("!%Y-%m-%dT%H:%M:%SZ"),
                checkpoint_step = self.checkpoint_step }
  for k, v in pairs(extra or {}) do rec[k] = v end
  write_atomic(self.dir .. "/status.json", json.encode(rec, 2) .. "\n")
end

local function close_run(run)
  for i = #open_runs, 1, -1 do
    if open_runs[i] == run then table.remove(open_runs, i) end
  end
end

-- Called by the attnlab program when the script raised an error: every run started and not finished
-- records {"status": "failed", "error": message, "step": N} in its status.json (and flushes its
-- metrics).  Never raises: the error being reported matters more than this one.
function M.script_failed(message)
  for _, run in ipairs(open_runs) do
    pcall(function()
      if run.metrics then run.metrics:close() run.metrics = nil end
      run:_status("failed", { error = tostring(message) })
    end)
  end
  open_runs = {}
end

-- objects = {name = obj}: obj has :state_dict() and :load_state_dict(t), or is a tensor.
function Run:track(objects)
  if type(objects) ~= "table" then fail("track expects a table {name = object}") end
  for k, obj in pairs(objects) do
    if type(k) ~= "string" then fail("track: names must be strings") end
    if not is_tensor(obj) and not (type(obj) == "table" and obj.state_dict and obj.load_state_dict) then
      fail("track: '" .. k .. "' has no :state_dict() and :load_state_dict()")
    end
    if not self.tracked[k] then self.tracked_names[#self.tracked_names + 1] = k end
    self.tracked[k] = obj
  end
  table.sort(self.tracked_names)
  return self
end

-- The modules the viewer's ablate/scale commands address as layers 1, 2, ...: by default every
-- module with set_head_scale among the tracked objects (depth-first, tracked names sorted).
function Run:attention_layers(list)
  if type(list) ~= "table" then fail("attention_layers expects a list of modules with set_head_scale") end
  for i, m in ipairs(list) do
    if type(m) ~= "table" or type(m.set_head_scale) ~= "function" then
      fail("attention_layers: entry " .. i .. " has no set_head_scale")
    end
  end
  self.layers = list
  return self
end

pcall(ffi.cdef, "int poll(void *fds, unsigned long nfds, int timeout);")

-- Called before each step: applies the viewer's commands, and while paused waits for the next
-- (polling every 50 ms, Ctrl-C still honoured).  A single step runs one step and pauses again.
function Run:_commands()
  local viz = lab.viz
  if self.single then self.single = false; self.paused = true end
  repeat
    for _, cmd in ipairs(viz.poll()) do
      local e = run_commands.apply(self, cmd)
      self:log(self.step, e)
      self:_flush()
      self:_clear_progress()
      io.stderr:write(string.format("attnlab: step %d: %s\n", self.step, e.text))
    end
    if self.paused and not self.single then
      if lab.interrupted() then self:_interrupted() end
      ffi.C.poll(nil, 0, 50)
    end
  until not self.paused or self.single
end

function Run:_restore()
  local ck = self.ckpt
  self.ckpt = nil
  run_checkpoint.restore(ck, self)
end

-- Writes <dir>/<name>.safetensors (default "checkpoint") with everything tracked, the step and
-- the RNG state, as of now: call it after a step's update.  Returns the path.  The metrics logged so
-- far are flushed first, so that after kill -9 metrics.jsonl holds every line up to the checkpoint
-- (a resume drops the ones after it, and the result equals the uninterrupted run's).
function Run:checkpoint(name)
  if name ~= nil and (type(name) ~= "string" or not name:match("^[%w_.-]+$")) then
    fail("checkpoint: name must be a file name of letters, digits, '_', '.' and '-' (got " .. args.show(name) .. ")")
  end
  name = (name or "checkpoint"):gsub("%.safetensors$", "")
  if self.metrics then self:_flush() end
  local path = self.dir .. "/" .. name .. ".safetensors"
  run_checkpoint.write(path, self)
  if name == "checkpoint" then self.checkpoint_step = self.step end
  return path
end


---------------------------------------------------------------------------------------------------
-- metrics and summary
---------------------------------------------------------------------------------------------------

-- Scalars only; a one-element tensor is read with :item().
local function plain(v, key)
  if is_tensor(v) then
    if v:numel() ~= 1 then fail("log: '" .. key .. "' is a tensor of " .. v:numel() .. " elements, not a scalar") end
    return v:item()
  end
  if type(v) == "table" then
    local out = {}
    for k, x in pairs(v) do out[k] = plain(x, key .. "." .. tostring(k)) end
    return out
  end
  return v
end

function Run:_flush()
  if self.metrics then self.metrics:flush() end
  self.last_flush = now()
end

-- run:log(step, {loss = ...}) or run:log{...} (the current step): one JSON line, "step" first.
function Run:log(step, values)
  if type(step) == "table" then step, values = self.step, step end
  if type(step) ~= "number" or step ~= math.floor(step) or step < 0 or step >= 2^53 then
    fail("log expects (step, {name = value}) with step an integer >= 0 (got " .. args.show(step) .. ")")
  end
  if values ~= nil and (type(values) ~= "table" or is_tensor(values)) then
    fail("log expects (step, {name = value}) (got " .. args.typename(values) .. " for the values)")
  end
  values = plain(values or {}, "log")
  values.step = nil
  local ok, body = pcall(json.encode, values)
  if not ok then fail("log: " .. tostring(body):gsub("^json%.encode: ", "")) end
  if body:sub(1, 1) ~= "{" then fail("log expects a table of values") end
  if not self.metrics then
    self.metrics = assert(io.open(self.metrics_path, "ab"))
    self.metrics:setvbuf("full")
    self.last_flush = now()
  end
  self.metrics:write(string.format('{"step":%d', step), body == "{}" and "}" or "," .. body:sub(2), "\n")
  if type(values.loss) == "number" then self.last_loss = values.loss end
  if now() - self.last_flush >= 1 then self:_flush() end
end

-- true on steps where a script that logs every log_every steps (and at the end) should log
function Run:should_log(step)
  step = step or self.step
  return step % self.log_every == 0 or step == self.total
end

function Run:summary(tbl)
  if tbl ~= nil and (type(tbl) ~= "table" or is_tensor(tbl)) then fail("summary expects a table (got " .. args.typename(tbl) .. ")") end
  local ok, text = pcall(json.encode, plain(tbl or {}, "summary"), 2)
  if not ok then fail("summary: " .. tostring(text):gsub("^json%.encode: ", "")) end
  write_atomic(self.dir .. "/summary.json", text .. "\n")
end

---------------------------------------------------------------------------------------------------
-- the step loop: progress, Ctrl-C
---------------------------------------------------------------------------------------------------

local function duration(s)
  if s ~= s or s == math.huge then return "?" end
  s = math.floor(s + 0.5)
  if s >= 3600 then return string.format("%dh%02dm", math.floor(s / 3600), math.floor(s / 60) % 60) end
  if s >= 60 then return string.format("%dm%02ds", math.floor(s / 60), s % 60) end
  return s .. "s"
end

local stderr_is_tty
local function stderr_tty()
  if stderr_is_tty == nil then
    local cli = rawget(_G, "ATTNLAB_CLI")
    if cli and cli.stderr_tty ~= nil then stderr_is_tty = cli.stderr_tty
    else
      pcall(ffi.cdef, "int isatty(int fd);")
      local ok, r = pcall(function() return ffi.C.isatty(2) end)
      stderr_is_tty = ok and r == 1
    end
  end
  return stderr_is_tty
end

function Run:_progress(final, t)
  if self.scratch then return end   -- one progress line: rank 0's
  t = t or now()
  local tty = stderr_tty()
  if not final and t - self.last_draw < (tty and 0.25 or 10) then return end
  self.last_draw = t
  local done = self.step - self.loop_first + 1
  local elapsed = t - self.loop_start
  local rate = elapsed > 0 and done / elapsed or 0
  local parts = { string.format("step %d/%d", self.step, self.total), string.format("%.1f steps/s", rate) }
  if self.last_loss then parts[#parts + 1] = string.format("loss %.5g", self.last_loss) end
  if final then parts[#parts + 1] = "took " .. duration(elapsed)
  else parts[#parts + 1] = "left " .. duration(rate > 0 and (self.total - self.step) / rate or math.huge) end
  local line = table.concat(parts, "  ")
  if tty then
    io.stderr:write("\r\27[K", line, final and "\n" or "")
    self.drawn = not final
  else
    io.stderr:write(line, "\n")
  end
  io.stderr:flush()
end

function Run:_clear_progress()
  if self.drawn then io.stderr:write("\r\27[K") self.drawn = false end
end

function Run:_interrupted()
  self:_clear_progress()
  local path = self:checkpoint("checkpoint")
  if self.metrics then self.metrics:close() self.metrics = nil end
  self:_status("interrupted", { checkpoint = path })
  close_run(self)
  local sig = lab.interrupt_signal() or 2
  io.stderr:write(string.format("\nattnlab: %s after step %d; state saved in %s\n", sig == 15 and "terminated (SIGTERM)" or "interrupted",
    self.step, path))
  io.stderr:write(string.format("attnlab: resume with: attnlab run %s resume=%s\n", self.script or "SCRIPT.lua", path))
  io.stderr:flush()
  io.stdout:flush()
  os.exit(128 + sig, true) -- 130 for Ctrl-C, 143 for SIGTERM; true: close the Lua state first (quiet sanitizers)
end

-- Writes the periodic checkpoint and notes it in status.json (the clock was read by the caller).
function Run:_periodic_checkpoint()
  self:checkpoint("checkpoint")
  self:_status("running", { pid = ffi.C.getpid(), resumed_from = self.resumed_from })
  self.next_checkpoint = now() + self.checkpoint_every * 60
end

-- for step in run:steps(n): steps first..n, first = 1 or the checkpoint's step + 1.  Each call of
-- the iterator means the previous step is complete, so that is where Ctrl-C is honoured and where
-- the periodic checkpoint is written (once checkpoint_every minutes have passed since the loop
-- started or since the last one; never after the last step: finish writes final.safetensors).
function Run:steps(n)
  if type(n) ~= "number" or n ~= math.floor(n) or n < 0 or n >= 2^53 then
    fail("steps expects the number of steps, an integer >= 0 (got " .. args.show(n) .. ")")
  end
  if self.ckpt then self:_restore() end
  self.total = n
  self.loop_first = self.step + 1
  self.loop_start = now()
  self.last_draw = self.loop_start
  self.next_checkpoint = self.checkpoint_every > 0 and self.loop_start + self.checkpoint_every * 60 or math.huge
  lab.catch_interrupts(true)
  return function()
    if lab.interrupted() then self:_interrupted() end
    local t = now() -- one clock read per step (a vDSO call), shared by the progress and the checkpoint
    if self.step >= n then
      lab.catch_interrupts(false)
      if self.step >= self.loop_first and (stderr_tty() or t - self.loop_start >= 10) then self:_progress(true, t) end
      return nil
    end
    if self.step >= self.loop_first then
      if t >= self.next_checkpoint then self:_periodic_checkpoint() end
      self:_progress(false, t)
    end
    if lab.viz.enabled() then self:_commands() end
    self.step = self.step + 1
    lab.viz.set_step(self.step)
    return self.step
  end
end

-- flush, write final.safetensors, say where the run is.  Returns the run directory.
function Run:finish()
  if self.finished then return self.dir end
  self.finished = true
  lab.catch_interrupts(false)
  self:_clear_progress()
  if self.metrics then self.metrics:close() self.metrics = nil end
  self:checkpoint("final")
  lab.viz.close()
  self:_status("finished")
  close_run(self)
  if self.scratch then os.execute("rm -rf '" .. self.dir .. "'") return self.dir end
  io.stderr:write("attnlab: run saved in " .. self.dir .. "\n")
  io.stderr:flush()
  return self.dir
end

M.Run = Run
M.CHECKPOINT_FORMAT = run_checkpoint.FORMAT
return M
