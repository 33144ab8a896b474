-- attnlab.sweep_slurm: a sweep as a Slurm job array.
--
-- The sweep directory gets one job script, sweep.sbatch: array task I runs `attnlab sweep
-- --run-point DIR I`, which runs point I of sweep.json into its own run directory (output in
-- <point>.log beside it) and records the outcome in that directory's point.json -- never in
-- sweep.json, which the array's tasks would otherwise all write at once.  Slurm's own output for a
-- task (what the wrapper prints, Slurm's errors) goes to slurm/<job>_<task>.out.
--
-- The script is submitted with `sbatch --parsable --array=LIST`, the user's options after ours
-- (sbatch takes the command line over the script's #SBATCH lines, so --cpus-per-task=8 there
-- replaces the default), and the job id goes into sweep.json.  Whether a point is still queued or
-- running is Slurm's to say: squeue, asked for the array tasks of the sweep's jobs.
local process = require "attnlab.sweep_process"
local json = require "attnlab.json"

local M = {}

M.SCRIPT = "sweep.sbatch"

local function fail(msg) require("attnlab.core").raise("sweep: --slurm: " .. msg) end

-- The path of sbatch, or an error naming --slurm.
function M.sbatch()
  local path = process.which("sbatch")
  if not path then
    fail("sbatch is not on PATH: this machine has no Slurm client (Debian: apt-get install slurm-client), "
      .. "or run the sweep here with --local N")
  end
  return path
end

-- The sweep chooses the array itself (one task per point, and on --resume only the points to run
-- again); a script of the user's would not run the points at all.
function M.check_options(options)
  for _, o in ipairs(options) do
    if o:match("^%-%-array") or o:match("^%-a") then
      fail(string.format("'%s': the sweep sets --array itself, one task per point; leave it out", o))
    end
    if o:match("^%-%-wrap") then fail(string.format("'%s': the sweep submits its own job script", o)) end
  end
end

-- "1-3,5,7-8" from a sorted list of indices
function M.array_spec(indices)
  local parts, i = {}, 1
  while i <= #indices do
    local j = i
    while j < #indices and indices[j + 1] == indices[j] + 1 do j = j + 1 end
    parts[#parts + 1] = j > i and (indices[i] .. "-" .. indices[j]) or tostring(indices[i])
    i = j + 1
  end
  return table.concat(parts, ",")
end

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Writes DIR/sweep.sbatch (dir absolute) and returns its path.
function M.write_script(manifest, dir, threads)
  os.execute("mkdir -p " .. quote(dir .. "/slurm"))
  local lines = {
    "#!/bin/sh",
    "# The attnlab sweep in " .. dir .. " as a Slurm job array, written by `attnlab sweep --slurm`:",
    "# array task I runs point I of sweep.json into its own run directory, its output in <point>.log",
    "# beside it.  Again by hand: sbatch --array=3,5 " .. dir .. "/" .. M.SCRIPT .. ", or attnlab sweep --resume DIR --slurm.",
    "#SBATCH --job-name=attnlab-sweep-" .. (manifest.experiment or "run"):gsub("[^%w_.-]", "_"),
    "#SBATCH --array=1-" .. #manifest.points,
    '#SBATCH --output="' .. dir .. '/slurm/%A_%a.out"',
    "#SBATCH --cpus-per-task=" .. (threads or 1),
    "exec " .. quote(manifest.program) .. " sweep --run-point " .. quote(dir) .. ' "$SLURM_ARRAY_TASK_ID"',
    "",
  }
  local path = dir .. "/" .. M.SCRIPT
  local lab = require "attnlab"
  lab.write_file_atomic(path, table.concat(lines, "\n"))
  os.execute("chmod +x " .. quote(path))
  return path
end

-- Submits the array tasks `indices` of the script.  Returns the job record {id =, array =,
-- options =, submitted =}, or, under --test-only, {test_only = true, message = sbatch's answer}.
function M.submit(manifest, dir, indices, options)
  local sbatch = M.sbatch()
  local argv = { sbatch, "--parsable", "--array=" .. M.array_spec(indices) }
  local test_only = false
  for _, o in ipairs(options) do
    argv[#argv + 1] = o
    if o == "--test-only" then test_only = true end
  end
  argv[#argv + 1] = dir .. "/" .. M.SCRIPT
  local code, out, err = process.run(argv, { cwd = manifest.cwd })
  if code ~= 0 then
    fail(string.format("sbatch failed (exit %d): %s", code, ((err ~= "" and err or out):gsub("%s+$", ""):gsub("\n", "; "))))
  end
  if test_only then
    return { test_only = true, message = (err .. out):gsub("%s+$", "") }
  end
  local id = out:match("^%s*(%d+)")
  if not id then fail("sbatch said '" .. out:gsub("%s+$", "") .. "', not a job id") end
  return { id = id, array = M.array_spec(indices), options = #options > 0 and options or json.empty_array, submitted = os.date("!%Y-%m-%dT%H:%M:%SZ") }
end

-- The states squeue shows for jobs that are done: anything else is queued or running.
local DONE = { COMPLETED = true, CANCELLED = true, FAILED = true, TIMEOUT = true, NODE_FAIL = true,
               PREEMPTED = true, BOOT_FAIL = true, DEADLINE = true, OUT_OF_MEMORY = true }

-- {[point index] = "RUNNING" | "PENDING" | ...} for the array tasks of the sweep's jobs that
-- Slurm still holds; nil and why when squeue cannot answer.
function M.active_tasks(manifest)
  local jobs = {}
  for _, j in ipairs(manifest.slurm and manifest.slurm.jobs or {}) do jobs[tostring(j.id)] = true end
  if next(jobs) == nil then return {} end
  local squeue = process.which("squeue")
  if not squeue then return nil, "squeue is not on PATH" end
  local code, out, err = process.run({ squeue, "--me", "-h", "-r", "-o", "%F|%K|%T" })
  if code ~= 0 then return nil, "squeue failed: " .. (err ~= "" and err or out):gsub("%s+$", "") end
  local active = {}
  for line in out:gmatch("[^\n]+") do
    local job, task, state = line:match("^%s*(%d+)|(%d+)|(%S+)")
    if job and jobs[job] and not DONE[state] then active[tonumber(task)] = state end
  end
  return active
end

return M
