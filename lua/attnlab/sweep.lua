-- attnlab.sweep (lab.sweep): one experiment over a grid of config values, each point an ordinary
-- run directory made by `attnlab run`, all under one sweep directory with a manifest, sweep.json.
--
--   attnlab sweep experiments/icl_regression.lua heads=1,2,4 seed=1..8 --local 2
--   attnlab sweep --resume DIR        what is missing, failed, interrupted or killed, again
--   attnlab sweep --collect DIR       the points' summary.json as one table, mean +- sd over seeds
--
-- The pieces: sweep_grid (axes and their expansion), sweep_manifest (sweep.json and each point's
-- status), sweep_local (the points run here), sweep_process (child processes), sweep_slurm (the job
-- array), sweep_collect (the table), sweep_cli (the command line); this file is lab.sweep over them,
-- with sending a sweep to Slurm and collecting its table.  docs/sweeps.md is the user's guide.
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
--   interrupted  stopped by Ctrl-C or SIGTERM (scancel, a time limit), with a checkpoint
--   killed       started, never recorded an end, and no longer alive (kill -9, a lost node, SIGKILL
--                after a step outlasted Slurm's KillWait)
-- --resume runs pending, failed, interrupted and killed points again; a point whose directory has
-- checkpoint.safetensors continues from it (resume=), one that left run files but no checkpoint
local lab = require "attnlab"
local core = require "attnlab.core"
local json = require "attnlab.json"
local grid, sweep_manifest = require "attnlab.sweep_grid", require "attnlab.sweep_manifest"
local sweep_local, slurm = require "attnlab.sweep_local", require "attnlab.sweep_slurm"
local collector = require "attnlab.sweep_collect"

local M = {}

M.FORMAT = sweep_manifest.FORMAT
M.axis = grid.axis
M.expand = grid.expand
M.script_config, M.create, M.load, M.status = sweep_manifest.script_config, sweep_manifest.create, sweep_manifest.load,
  sweep_manifest.status
M.run, M.run_point = sweep_local.run, sweep_local.run_point

local function fail(msg) core.raise("sweep: " .. msg) end

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
  sweep_local.check_threads("submit", opts.threads)
  for k in pairs(opts) do
    if not SUBMIT_OPTIONS[k] then fail(string.format("submit: unknown option '%s' (valid: options, threads)", tostring(k))) end
  end
  local options = opts.options or {}
  slurm.check_options(options)
  slurm.sbatch()
  local manifest, why = sweep_manifest.status(dir)
  if why then fail(string.format("cannot ask Slurm which points of %s still run (%s)", dir, why)) end
  local indices = {}
  for _, p in ipairs(manifest.points) do if sweep_manifest.RERUN[p.status] then indices[#indices + 1] = p.index end end
  if #indices == 0 then return manifest, nil end
  local threads = opts.threads or (manifest.runner and manifest.runner.kind == "slurm" and manifest.runner.threads) or 1
  local abs = sweep_manifest.absolute(dir)
  slurm.write_script(manifest, abs, threads)
  -- a point sent again starts with no record of the attempt before (which would read as killed)
  local job = slurm.submit(manifest, abs, indices, options)
  if job.test_only then return manifest, nil, job.message end
  manifest.runner = { kind = "slurm", options = #options > 0 and options or json.empty_array, threads = threads }
  manifest.slurm = manifest.slurm or { script = slurm.SCRIPT, jobs = {} }
  manifest.slurm.jobs[#manifest.slurm.jobs + 1] = job
  for _, i in ipairs(indices) do manifest.points[i].status = "queued" end
  sweep_manifest.save(dir, manifest)
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
  local manifest = sweep_manifest.status(dir)
  local result = collector.collect(manifest, dir, opts)
  lab.write_file_atomic(dir .. "/results.md", result.markdown)
  lab.write_file_atomic(dir .. "/results.csv", result.csv)
  return result
end

function M.main(args) return require("attnlab.sweep_cli").main(args) end

return M
