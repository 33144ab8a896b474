-- attnlab.sweep_local: the points of a sweep run on this machine -- `attnlab sweep --local N` (N at
-- a time as child processes, with one progress line) and `attnlab sweep --run-point DIR INDEX` (one
-- point to its end, what a Slurm array task does).  Each point is an ordinary `attnlab run` with
-- --out its directory; what became of it is recorded in its point.json (sweep_manifest.lua reads it).
local lab = require "attnlab"
local core, args = require "attnlab.core", require "attnlab.args"
local json = require "attnlab.json"
local process, sweep_manifest = require "attnlab.sweep_process", require "attnlab.sweep_manifest"
local ffi = require "ffi"

local M = {}

local function fail(msg) core.raise("sweep: " .. msg) end
local utc, exists, read_json, mkdir_p, absolute =
  sweep_manifest.utc, sweep_manifest.exists, sweep_manifest.read_json, sweep_manifest.mkdir_p, sweep_manifest.absolute
local save, point_status, RERUN = sweep_manifest.save, sweep_manifest.point_status, sweep_manifest.RERUN

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
  local manifest, why = sweep_manifest.status(dir)
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
  manifest = sweep_manifest.status(dir)
  return manifest, interrupted
end

-- a number of threads given as an option: a whole number >= 1 (nil: the default); sweep.submit too
function M.check_threads(fn, threads)
  if threads ~= nil and (type(threads) ~= "number" or threads < 1 or threads ~= math.floor(threads) or threads >= 2 ^ 31) then
    fail(fn .. ": threads must be a whole number >= 1, not " .. args.show(threads))
  end
end

-- Runs point `index` of the sweep in dir here, to its end, and records it in the point's
-- point.json only (what a Slurm array task does: `attnlab sweep --run-point DIR INDEX`).
-- threads: opts.threads, else $SLURM_CPUS_PER_TASK, else the manifest's.  Returns the exit code.
function M.run_point(dir, index, opts)
  opts = opts or {}
  if type(opts) ~= "table" then fail("run_point expects (dir, index [, {threads =}])") end
  args.check_options(opts, "sweep.run_point", { "threads" })
  M.check_threads("run_point", opts.threads)
  local manifest = sweep_manifest.load(dir)
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

return M
