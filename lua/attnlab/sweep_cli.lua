-- attnlab.sweep_cli: the command line of `attnlab sweep` (lua/main.c hands it every argument after
-- the word sweep).  Parses, says what is wrong with a bad line before anything runs (exit status
-- 2, one line naming the flag or the axis), then calls lab.sweep.  Exit status: 0 when every point
-- finished, 1 when some did not (or an error while running), 2 bad input, 130 Ctrl-C.
local sweep = require "attnlab.sweep"
local sweep_manifest = require "attnlab.sweep_manifest"
local slurm = require "attnlab.sweep_slurm"

local M = {}

M.USAGE = [==[
usage:
  attnlab sweep SCRIPT.lua KEY=VALUES... [--set KEY=VALUE]... [--zip] [--out DIR] [--threads T]
                [--dry-run] [--local N | --slurm [SBATCH OPTIONS...]]
  attnlab sweep --resume DIR [--threads T] [--local N | --slurm [SBATCH OPTIONS...]]
  attnlab sweep --collect DIR [--metrics NAME,...] [--over KEY]
  attnlab sweep --status DIR
  attnlab sweep --run-point DIR INDEX [--threads T]     (what each Slurm array task runs)

KEY=a,b,c takes the listed values, KEY=1..8 the integers 1 to 8 (KEY=1..3,10 mixes them); the
points are every combination, the first axis varying slowest, or with --zip the i-th values of
the axes together.  --set KEY=VALUE gives every point the same value, taken literally (commas
and all: --set eval_lengths=20,40).  Every point is checked against the script's config before
anything runs, as `attnlab run` checks one.
--local N runs N points at a time on this machine (default 1), the cores divided among them
unless --threads T says; --slurm writes a job array script and submits it with sbatch, the rest
of the line being sbatch's options (--slurm --partition=cpu --time=1:00:00; --test-only checks
the script against the controller), with --threads T as its --cpus-per-task (default 1).
--dry-run lists the points and runs nothing.
The sweep directory (--out DIR, else runs/<experiment>/sweep-<time>) holds sweep.json (the points,
their overrides and status), one run directory per point and its log beside it.
--resume DIR runs what is pending, failed, interrupted or killed, again the way the sweep ran
(or as --local N / --slurm say); a point with a checkpoint continues from it.
--collect DIR merges the points' summary.json into results.md and results.csv: mean and sample
sd over the seeds (--over KEY: another axis) per setting, numeric leaves as dotted names
(--metrics test_mse,ov_mu keeps those and what is under them).
Exit status: 0 every point finished, 1 some did not, 2 bad input, 130 interrupted.  docs/sweeps.md
]==]

local function usage(msg) error({ usage = msg }, 0) end

local VALUE_FLAGS = { ["--out"] = true, ["--threads"] = true, ["--local"] = true, ["--set"] = true,
                      ["--resume"] = true, ["--collect"] = true, ["--status"] = true, ["--metrics"] = true,
                      ["--over"] = true, ["--run-point"] = true }
local PLAIN_FLAGS = { ["--zip"] = true, ["--dry-run"] = true, ["--help"] = true, ["-h"] = true }

-- the flags each kind of command takes (besides the one that names it)
local ALLOWED = {
  new = { ["--set"] = true, ["--zip"] = true, ["--out"] = true, ["--threads"] = true, ["--dry-run"] = true,
          ["--local"] = true, ["--slurm"] = true },
  resume = { ["--threads"] = true, ["--local"] = true, ["--slurm"] = true },
  collect = { ["--metrics"] = true, ["--over"] = true },
  status = {},
  run_point = { ["--threads"] = true },
}
local NAMES = { new = "a new sweep (attnlab sweep SCRIPT.lua ...)", resume = "--resume", collect = "--collect",
                status = "--status", run_point = "--run-point" }

local function whole(text, min)
  local n = tonumber(text)
  if not n or n ~= math.floor(n) or n < min or not tostring(text):match("^%s*%d+%s*$") then
    return nil
  end
  return n
end

-- args -> {mode =, script =, axes = {...}, set = {...}, flags = {name = value}, slurm = {options}}
function M.parse(args)
  local o = { axes = {}, set = {}, flags = {}, positional = {} }
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--slurm" then
      o.flags["--slurm"] = true
      o.slurm = {}
      for j = i + 1, #args do o.slurm[#o.slurm + 1] = args[j] end
      break
    elseif a:sub(1, 1) == "-" and #a > 1 then
      local name, value = a:match("^(%-%-[%w-]+)=(.*)$")
      name = name or a
      if VALUE_FLAGS[name] then
        if value == nil then
          i = i + 1
          value = args[i]
          if value == nil then usage(name .. " needs a value") end
        end
      elseif PLAIN_FLAGS[name] then
        if value ~= nil then usage(name .. " takes no value") end
        value = true
      elseif name == "--slurm" then
        usage("--slurm takes no value: sbatch's options follow it as separate words (--slurm --partition=cpu)")
      else
        usage(string.format("unknown flag '%s'", a))
      end
      if name == "--set" then
        o.set[#o.set + 1] = value
      elseif o.flags[name] ~= nil then
        usage(name .. " is given twice")
      end
      o.flags[name] = value
    else
      o.positional[#o.positional + 1] = a
    end
    i = i + 1
  end
  if o.flags["--help"] or o.flags["-h"] then o.mode = "help" return o end

  local named = {}
  for _, m in ipairs{ "--resume", "--collect", "--status", "--run-point" } do
    if o.flags[m] then named[#named + 1] = m end
  end
  if #named > 1 then usage(named[1] .. " and " .. named[2] .. ": give one") end
  if #named == 1 then
    o.mode = named[1]:sub(3):gsub("-", "_")
    o.dir = o.flags[named[1]]
    if o.dir == "" then usage(named[1] .. " needs a sweep directory") end
    if o.mode == "run_point" then
      if #o.positional ~= 1 then usage("--run-point DIR INDEX: which point? (1 to the number of points)") end
      o.index = whole(o.positional[1], 1)
      if not o.index then usage(string.format("--run-point: the point is a number from 1, not '%s'", o.positional[1])) end
    elseif #o.positional > 0 then
      usage(string.format("unexpected argument '%s' (%s DIR takes no script or key=values)", o.positional[1], named[1]))
    end
  else
    o.mode = "new"
    o.script = o.positional[1]
    if not o.script then usage("which script? (attnlab sweep SCRIPT.lua key=a,b seed=1..8)") end
    if o.script:find("=", 1, true) and not o.script:match("%.lua$") then
      usage(string.format("'%s' comes where the script should (attnlab sweep SCRIPT.lua %s ...)", o.script, o.script))
    end
    for j = 2, #o.positional do
      local ax = o.positional[j]
      if not ax:find("=", 1, true) then usage(string.format("unexpected argument '%s' (the axes are key=values)", ax)) end
      o.axes[#o.axes + 1] = ax
    end
  end
  for name in pairs(o.flags) do
    if not ALLOWED[o.mode][name] and name ~= "--" .. o.mode:gsub("_", "-") then
      usage(string.format("%s does not apply to %s", name, NAMES[o.mode]))
    end
  end
  if o.flags["--local"] and o.flags["--slurm"] then usage("--local and --slurm: give one (where the points run)") end
  if o.flags["--local"] then
    o.parallel = whole(o.flags["--local"], 1)
    if not o.parallel then
      usage(string.format("--local needs how many points run at a time, a whole number >= 1, not '%s'", o.flags["--local"]))
    end
  end
  if o.flags["--threads"] then
    o.threads = whole(o.flags["--threads"], 1)
    if not o.threads then usage(string.format("--threads must be a whole number >= 1, not '%s'", o.flags["--threads"])) end
  end
  if o.flags["--metrics"] then
    o.metrics = {}
    for m in o.flags["--metrics"]:gmatch("[^,]+") do o.metrics[#o.metrics + 1] = m end
    if #o.metrics == 0 then usage("--metrics needs names, e.g. --metrics test_mse,ov_mu") end
  end
  return o
end

local function say(line) io.stderr:write(line, "\n") io.stderr:flush() end

-- the closing report of a sweep that ran here; returns the exit status
local function report(dir, manifest, interrupted)
  local c, text = sweep_manifest.counts(manifest)
  say(string.format("sweep: %s: %s", dir, text))
  for _, p in ipairs(manifest.points) do
    if p.status == "failed" or p.status == "killed" or p.status == "interrupted" then
      say(string.format("  %s %s%s%s; log %s/%s", p.dir, p.status, p.exit_code and (" (exit " .. p.exit_code .. ")") or "",
        p.error and (": " .. p.error) or "", dir, p.log))
    end
  end
  if interrupted then
    say("sweep: interrupted; attnlab sweep --resume " .. dir .. " continues it")
    return 130
  end
  if (c.finished or 0) < #manifest.points then
    if (c.running or 0) + (c.queued or 0) < #manifest.points - (c.finished or 0) then
      say("sweep: attnlab sweep --resume " .. dir .. " runs the rest again")
    end
    return 1
  end
  say("sweep: attnlab sweep --collect " .. dir .. " makes the table")
  return 0
end

local function run_local(dir, parallel, threads)
  local manifest, interrupted = sweep.run(dir, { parallel = parallel, threads = threads })
  return report(dir, manifest, interrupted)
end

local function run_slurm(dir, options, threads)
  local manifest, job, test_only = sweep.submit(dir, { options = options, threads = threads })
  if test_only then
    say("sweep: sbatch --test-only: " .. test_only)
    say("sweep: nothing was submitted; " .. dir .. "/" .. slurm.SCRIPT .. " is the job script")
    return 0
  end
  if not job then
    local _, text = sweep_manifest.counts(manifest)
    say(string.format("sweep: %s: nothing to submit (%s)", dir, text))
    return 0
  end
  say(string.format("sweep: %s: points %s submitted to Slurm as job %s (%s/%s); attnlab sweep --status %s follows them",
    dir, job.array, job.id, dir, slurm.SCRIPT, dir))
  return 0
end

local function print_status(dir)
  local manifest, why = sweep.status(dir)
  local _, text = sweep_manifest.counts(manifest)
  io.stdout:write(string.format("sweep %s: %s, %d points: %s\n", dir, manifest.script_name or manifest.script, #manifest.points, text))
  if why then io.stdout:write("  (Slurm could not be asked which points it still holds: " .. why .. ")\n") end
  for _, p in ipairs(manifest.points) do
    local extra = {}
    if p.exit_code then extra[#extra + 1] = "exit " .. p.exit_code end
    if p.seconds then extra[#extra + 1] = string.format("%.1fs", p.seconds) end
    if p.attempts and p.attempts > 1 then extra[#extra + 1] = "attempt " .. p.attempts end
    if p.error then extra[#extra + 1] = p.error end
    io.stdout:write(string.format("  %-40s %-11s %s\n", p.dir, p.status, table.concat(extra, ", ")))
  end
  return 0
end

local function dispatch(o)
  if o.mode == "help" then io.stdout:write(M.USAGE) return 0 end
  if o.mode == "status" then return print_status(o.dir) end
  if o.mode == "collect" then
    local result = sweep.collect(o.dir, { metrics = o.metrics, over = o.flags["--over"] })
    io.stdout:write(result.markdown)
    say(string.format("sweep: written to %s/results.md and %s/results.csv", o.dir, o.dir))
    return 0
  end
  if o.mode == "run_point" then return sweep.run_point(o.dir, o.index, { threads = o.threads }) end
  if o.mode == "resume" then
    local manifest, why = sweep.status(o.dir)
    local runner = manifest.runner or { kind = "local", parallel = 1 }
    local to_run, busy = {}, {}
    for _, p in ipairs(manifest.points) do
      if sweep_manifest.RERUN[p.status] then to_run[#to_run + 1] = p.index end
      if p.status == "running" or p.status == "queued" then busy[#busy + 1] = p.index end
    end
    if why and manifest.slurm then
      error({ usage = string.format("--resume: cannot ask Slurm which points of %s still run (%s)", o.dir, why) }, 0)
    end
    if #busy > 0 then say(string.format("sweep: points %s are still running or queued: left alone", table.concat(busy, ","))) end
    if #to_run == 0 then
      local _, text = sweep_manifest.counts(manifest)
      say(string.format("sweep: %s: nothing to resume (%s)", o.dir, text))
      return 0
    end
    say(string.format("sweep: %s: running points %s again", o.dir, slurm.array_spec(to_run)))
    local use_slurm = o.flags["--slurm"] or (not o.flags["--local"] and runner.kind == "slurm")
    if use_slurm then
      -- sbatch's options: those after --slurm, else the last submission's
      local options = (o.slurm and #o.slurm > 0) and o.slurm or runner.options or {}
      return run_slurm(o.dir, options, o.threads or runner.threads)
    end
    return run_local(o.dir, o.parallel or runner.parallel or 1, o.threads or (not o.parallel and runner.threads) or nil)
  end
  return nil
end

-- The part of a new sweep that may still be bad input: everything up to the manifest.
local function prepare_new(o)
  if o.slurm then
    slurm.check_options(o.slurm)
    slurm.sbatch()
  end
  return sweep.create{ script = o.script, axes = o.axes, set = o.set, zip = o.flags["--zip"] == true,
                       out = o.flags["--out"], dry_run = o.flags["--dry-run"] == true }
end

local function message(err)
  if type(err) == "table" and err.usage then return "sweep: " .. err.usage end
  return tostring(err)
end

function M.main(args)
  local ok, o = pcall(M.parse, args)
  if not ok then
    io.stderr:write("attnlab: ", message(o), " (see attnlab sweep --help)\n")
    return 2
  end
  if o.mode ~= "new" then
    local ok2, status = pcall(dispatch, o)
    if ok2 then return status end
    io.stderr:write("attnlab: ", message(status), "\n")
    -- a directory that is not a sweep, a bad --resume: the input was wrong
    return (type(status) == "table" or tostring(status):find("is not a sweep", 1, true)) and 2 or 1
  end
  local okp, manifest, dir = pcall(prepare_new, o)
  if not okp then
    io.stderr:write("attnlab: ", message(manifest), type(manifest) == "table" and " (see attnlab sweep --help)\n" or "\n")
    return 2
  end
  if o.flags["--dry-run"] then
    io.stdout:write(string.format("%d points of %s:\n", #manifest.points, o.script))
    for _, p in ipairs(manifest.points) do io.stdout:write(string.format("  %s  %s\n", p.dir, table.concat(p.args, " "))) end
    return 0
  end
  local okr, status = pcall(function()
    if o.slurm then return run_slurm(dir, o.slurm, o.threads) end
    local parallel = o.parallel or 1
    local threads = o.threads or math.max(1, math.floor(require("attnlab.sweep_process").cores() / parallel))
    say(string.format("sweep: %d points of %s in %s, %d at a time, %d thread%s each", #manifest.points, o.script, dir,
      parallel, threads, threads == 1 and "" or "s"))
    return run_local(dir, parallel, threads)
  end)
  if okr then return status end
  io.stderr:write("attnlab: ", message(status), "; the sweep is in ", dir, " (attnlab sweep --resume ", dir,
    o.slurm and " --slurm ..." or "", " runs it)\n")
  return 1
end

return M
