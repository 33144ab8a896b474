-- test_sweep.lua -- `attnlab sweep` (lab.sweep): the grid (lists, ranges, cartesian, --zip), bad input
-- refused before anything runs (exit 2, one line naming the flag or the axis), a local sweep of six
-- points two at a time with one point failing on purpose, --resume completing that point from its
-- checkpoint, and --collect's table checked against the points' summary.json.  The experiment is
-- tests/lua/sweep_script.lua (20 steps of a linear model: each point takes a fraction of a second).
-- The Slurm side is tests/lua/test_sweep_slurm.sh.
--   ./build/attnlab tests/lua/test_sweep.lua        (ATTNLAB = the program, default ./build/attnlab)
local check = dofile("tests/lua/check.lua")("sweep")
local lab = lab or require "attnlab"
local json = lab.json
local sweep = lab.sweep

local ATTNLAB = os.getenv("ATTNLAB") or "./build/attnlab"
local SCRIPT = "tests/lua/sweep_script.lua"
local read = check.read_file

local function status_of(a, b, c) -- os.execute's answer as an exit status (Lua 5.1 or 5.2 style)
  if type(a) == "number" then return a >= 256 and math.floor(a / 256) or a end
  return c or (a and 0 or 1)
end
local T = check.tmpdir("sweep")
-- runs the program with args; returns the exit status, stdout, stderr
local function attnlab(args, env)
  local cmd = string.format("%s'%s' %s > '%s/out' 2> '%s/err'", env or "", ATTNLAB, args, T, T)
  local rc = status_of(os.execute(cmd))
  return rc, read(T .. "/out") or "", read(T .. "/err") or ""
end
local function lines(s) local n = 0 for _ in s:gmatch("[^\n]+") do n = n + 1 end return n end

---------------------------------------------------------------------------------------------------
-- the grid
---------------------------------------------------------------------------------------------------
local ax = sweep.axis("heads=1,2,4")
check.ok(ax.key == "heads" and #ax.values == 3 and ax.values[3] == "4", "key=a,b,c lists the values")
ax = sweep.axis("seed=1..8")
check.ok(#ax.values == 8 and ax.values[1] == "1" and ax.values[8] == "8", "key=1..8 is the integers 1 to 8")
ax = sweep.axis("seed=-1..1,10")
check.ok(table.concat(ax.values, " ") == "-1 0 1 10", "ranges and lists mix, negative numbers included")
ax = sweep.axis("attention=softmax")
check.ok(#ax.values == 1 and ax.values[1] == "softmax", "one value is an axis of one")
ax = sweep.axis("eval_lengths=20,40", true)
check.ok(#ax.values == 1 and ax.values[1] == "20,40", "a literal value (--set) is never split")
check.fails(function() sweep.axis("seed=5..1") end, "seed=5..1: 5..1 is an empty range", "a descending range is an empty range")
check.fails(function() sweep.axis("seed=") end, "seed= gives no values", "key= is refused")
check.fails(function() sweep.axis("heads=1,,2") end, "has an empty value", "an empty item is refused")
check.fails(function() sweep.axis("lr=0.1..0.5") end, "is not a range", "a range of fractions is refused")
check.fails(function() sweep.axis("novalue") end, "is not key=values", "an axis without = is refused")
check.fails(function() sweep.axis("1x=2") end, "is not a config key name", "a bad key name is refused")

local a, b, c = sweep.axis("a=1,2"), sweep.axis("b=x,y,z"), sweep.axis("c=k")
local pts = sweep.expand({ a, b, c })
check.ok(#pts == 6, "cartesian: 2 x 3 x 1 points", #pts)
local function show(p) local t = {} for i, kv in ipairs(p) do t[i] = kv[1] .. "=" .. kv[2] end return table.concat(t, " ") end
check.ok(show(pts[1]) == "a=1 b=x c=k" and show(pts[2]) == "a=1 b=y c=k" and show(pts[4]) == "a=2 b=x c=k"
  and show(pts[6]) == "a=2 b=z c=k", "cartesian: the first axis varies slowest", show(pts[2]))
local seen = {}
for _, p in ipairs(pts) do seen[show(p)] = true end
local distinct = 0
for _ in pairs(seen) do distinct = distinct + 1 end
check.ok(distinct == 6, "cartesian: every combination once")
local zipped = sweep.expand({ sweep.axis("a=1,2,3"), sweep.axis("b=x,y,z"), c }, true)
check.ok(#zipped == 3 and show(zipped[1]) == "a=1 b=x c=k" and show(zipped[3]) == "a=3 b=z c=k",
  "zip: the i-th values together, an axis of one shared", zipped[2] and show(zipped[2]))
check.fails(function() sweep.expand({ sweep.axis("a=1,2"), b }, true) end, "the axes need the same number of values",
  "zip: axes of different lengths are refused")
check.fails(function() sweep.expand({ a, sweep.axis("a=3") }) end, "'a' is given twice", "a key given twice is refused")

---------------------------------------------------------------------------------------------------
-- bad input: exit 2, one line, naming what is wrong; nothing is made
---------------------------------------------------------------------------------------------------
local rc, out, err = attnlab("--help")
check.ok(rc == 0 and out:find("attnlab sweep SCRIPT.lua", 1, true), "attnlab --help lists sweep")
rc, out = attnlab("sweep --help")
check.ok(rc == 0 and out:find("--resume DIR", 1, true) and out:find("--collect DIR", 1, true), "attnlab sweep --help")

local function refused(args, needle, what, env)
  local r, _, e = attnlab(args, env)
  check.ok(r == 2, what .. ": exit status 2", r .. " " .. e)
  check.ok(lines(e) == 1 and e:find(needle, 1, true), what .. ": one line naming it", e)
end
refused("sweep " .. SCRIPT .. " depth=1,2 --out '" .. T .. "/bad'", "depth=1,2: unknown config key 'depth' (valid keys: at, checkpoint_every, fail_file",
  "an unknown key")
refused("sweep " .. SCRIPT .. " width=1,1.5 --out '" .. T .. "/bad'", "width=1,1.5: config key 'width' expects an integer",
  "a value the script's kinds refuse")
refused("sweep " .. SCRIPT .. " steps=abc --out '" .. T .. "/bad'", "steps=abc: config key 'steps' expects a number",
  "a value of the wrong type")
refused("sweep " .. SCRIPT .. " seed=3..1 --out '" .. T .. "/bad'", "seed=3..1: 3..1 is an empty range", "an empty range")
refused("sweep " .. SCRIPT .. " seed=1..2 --local 0 --out '" .. T .. "/bad'", "--local needs how many points run at a time",
  "--local 0")
refused("sweep " .. SCRIPT .. " seed=1..2 --local two", "--local needs", "--local two")
refused("sweep " .. SCRIPT .. " seed=1..2 --threads 0", "--threads must be a whole number", "--threads 0")
refused("sweep " .. SCRIPT .. " seed=1..2 --slurm --out '" .. T .. "/bad'", "--slurm: sbatch is not on PATH",
  "--slurm with no sbatch", "PATH=/nonexistent ")
refused("sweep " .. SCRIPT .. " seed=1..2 --slurm --array=1-4", "--slurm: '--array=1-4': the sweep sets --array itself",
  "--slurm --array")
refused("sweep " .. SCRIPT .. " seed=1..2 --local 2 --slurm", "--local and --slurm: give one", "--local with --slurm")
refused("sweep " .. SCRIPT .. " seed=1..2 width=1,2,3 --zip", "--zip pairs the values by position", "--zip of unequal axes")
refused("sweep " .. SCRIPT .. " resume=x.safetensors", "resume= cannot be swept", "resume= as an axis")
refused("sweep " .. SCRIPT .. " seed=1..2 --bogus", "unknown flag '--bogus'", "an unknown flag")
refused("sweep " .. SCRIPT .. " seed=1..2 --metrics a", "--metrics does not apply to a new sweep", "a flag of another command")
refused("sweep " .. SCRIPT .. " seed", "unexpected argument 'seed' (the axes are key=values)", "an axis without =")
refused("sweep " .. SCRIPT, "no axes", "no axes")
refused("sweep", "which script?", "no script")
refused("sweep nothere.lua seed=1,2", "cannot open script 'nothere.lua'", "a missing script")
refused("sweep --collect '" .. T .. "'", "is not a sweep directory (no sweep.json)", "--collect of a directory without a sweep")
refused("sweep --resume '" .. T .. "' --zip", "--zip does not apply to --resume", "--resume --zip")
refused("--out x sweep " .. SCRIPT .. " seed=1", "the flags of `attnlab sweep` go after the word sweep", "flags before `sweep`")
check.ok(io.open(T .. "/bad/sweep.json") == nil, "refused sweeps make no directory")

rc, out = attnlab("sweep " .. SCRIPT .. " width=1,2 seed=1..3 --dry-run")
check.ok(rc == 0 and out:find("6 points", 1, true) and out:find("001_width-1_seed-1  width=1 seed=1", 1, true)
  and out:find("006_width-2_seed-3  width=2 seed=3", 1, true), "--dry-run lists the points", out)
rc, out = attnlab("sweep " .. SCRIPT .. " width=1,2,3 seed=4..6 --zip --dry-run")
check.ok(rc == 0 and out:find("3 points", 1, true) and out:find("width=2 seed=5", 1, true), "--zip --dry-run", out)

---------------------------------------------------------------------------------------------------
-- a local sweep with one point failing on purpose, then --resume
---------------------------------------------------------------------------------------------------
local S = T .. "/local"
check.write_file(T .. "/fail-2-3", "make the point width=2 seed=3 fail at step 10\n")
rc, out, err = attnlab(string.format("sweep %s width=1,2 seed=1..3 --set fail_file=%s/fail-{width}-{seed} --local 2 --out '%s'",
  SCRIPT, T, S))
check.ok(rc == 1, "a sweep with a failed point exits 1", rc .. " " .. err)
check.ok(err:find("006_width-2_seed-3 failed (exit 1): ", 1, true) and err:find("forced failure at step 10", 1, true),
  "the failed point is reported with its error", err)
check.ok(err:find("sweep: " .. S .. ": 5 finished, 1 failed", 1, true), "the closing line counts the points", err)
check.ok(err:find("attnlab sweep --resume " .. S, 1, true), "and says how to run the rest again", err)
check.ok(err:find("2 at a time, 1 thread each", 1, true) or err:find("2 at a time", 1, true), "the cores are split between the points", err)

local m = json.decode(read(S .. "/sweep.json") or "{}")
check.ok(m.format == "attnlab-sweep-1" and m.experiment == "sweep_script" and #m.points == 6, "sweep.json: the points")
check.ok(m.runner and m.runner.kind == "local" and m.runner.parallel == 2, "sweep.json: how they ran")
local failed_point
for _, p in ipairs(m.points) do
  local dir = S .. "/" .. p.dir
  if p.overrides.width == "2" and p.overrides.seed == "3" then
    failed_point = p
  else
    check.ok(p.status == "finished" and p.exit_code == 0 and read(dir .. "/summary.json"), p.dir .. " finished with its summary")
  end
  check.ok(type(p.started) == "string" and type(p.finished) == "string" and type(p.seconds) == "number",
    p.dir .. ": times recorded")
  check.ok(read(S .. "/" .. p.dir .. ".log") ~= nil, p.dir .. ": its log beside the run directory")
  local config = json.decode(read(dir .. "/config.json") or "{}")
  check.ok(config.config and config.config.seed == tonumber(p.overrides.seed) and config.config.width == tonumber(p.overrides.width)
    and config.config.fail_file == T .. "/fail-{width}-{seed}", p.dir .. ": an ordinary run directory with the point's overrides")
  check.ok(config.threads == 1, p.dir .. ": ran with its share of the cores (--threads 1 on 2 cores)", tostring(config.threads))
end
check.ok(failed_point and failed_point.status == "failed" and failed_point.exit_code == 1
  and tostring(failed_point.error):find("forced failure", 1, true), "sweep.json records the failed point, its exit code and error")
check.ok(failed_point and read(S .. "/" .. failed_point.dir .. "/checkpoint.safetensors"), "the failed point left its checkpoint")

rc, out = attnlab("sweep --status '" .. S .. "'")
check.ok(rc == 0 and out:find("5 finished, 1 failed", 1, true), "--status", out)

rc, out, err = attnlab("sweep --resume '" .. S .. "'")
check.ok(rc == 0, "--resume completes the sweep", rc .. " " .. err)
check.ok(err:find("running points 6 again", 1, true), "--resume runs only the failed point", err)
m = json.decode(read(S .. "/sweep.json") or "{}")
local all_finished = true
for _, p in ipairs(m.points) do all_finished = all_finished and p.status == "finished" end
check.ok(all_finished, "every point finished after --resume")
if failed_point then
  local dir = S .. "/" .. failed_point.dir
  local rec = json.decode(read(dir .. "/point.json") or "{}")
  check.ok(rec.attempt == 2 and rec.exit_code == 0 and rec.resumed_from == dir .. "/checkpoint.safetensors",
    "the point resumed from its checkpoint, second attempt", json.encode(rec))
  local config = json.decode(read(dir .. "/config.json") or "{}")
  check.ok(config.resumed_from == dir .. "/checkpoint.safetensors", "the run says it resumed")
  local steps = {}
  for line in (read(dir .. "/metrics.jsonl") or ""):gmatch("[^\n]+") do steps[#steps + 1] = json.decode(line).step end
  check.ok(#steps == 20 and steps[1] == 1 and steps[20] == 20, "its metrics run 1..20 once", #steps)
  check.ok((read(S .. "/" .. failed_point.dir .. ".log") or ""):find("== attempt 2", 1, true), "the log holds both attempts")
end
rc, _, err = attnlab("sweep --resume '" .. S .. "'")
check.ok(rc == 0 and err:find("nothing to resume (6 finished)", 1, true), "--resume of a finished sweep does nothing", err)

---------------------------------------------------------------------------------------------------
-- --collect: the table against the points' summaries
---------------------------------------------------------------------------------------------------
rc, out, err = attnlab("sweep --collect '" .. S .. "'")
check.ok(rc == 0, "--collect", err)
check.ok(out:find("| width | n | final_loss | nested.half | nested.list.1 | nested.list.2 | score |", 1, true),
  "--collect prints the Markdown table: the varying axes but the seed, n, the numeric leaves as dotted names", out)
check.ok(not out:find("note", 1, true) and not out:find("flag", 1, true), "strings and booleans are not metrics")
check.ok(read(S .. "/results.md") == out, "results.md holds the printed table")

-- the expected numbers, from the points' own summary.json
local by_width = {}
for _, p in ipairs(m.points) do
  local s = json.decode(read(S .. "/" .. p.dir .. "/summary.json"))
  local w = p.overrides.width
  by_width[w] = by_width[w] or {}
  for name, x in pairs{ score = s.score, final_loss = s.final_loss, ["nested.half"] = s.nested.half,
                        ["nested.list.2"] = s.nested.list[2] } do
    by_width[w][name] = by_width[w][name] or {}
    table.insert(by_width[w][name], x)
  end
end
local csv = read(S .. "/results.csv") or ""
local rows = {}
for line in csv:gmatch("[^\n]+") do
  local cells = {}
  for cell in (line .. ","):gmatch("([^,]*),") do cells[#cells + 1] = cell end
  rows[#rows + 1] = cells
end
local header = rows[1] or {}
local col = {}
for i, h in ipairs(header) do col[h] = i end
check.ok(#rows == 3 and col.width == 1 and col.n == 2 and col["score.mean"] and col["score.sd"], "results.csv: one row per width", csv)
for r = 2, #rows do
  local w = rows[r][col.width]
  check.ok(rows[r][col.n] == "3", "results.csv: n = 3 seeds for width " .. tostring(w))
  for name, xs in pairs(by_width[w] or {}) do
    local mean = 0
    for _, x in ipairs(xs) do mean = mean + x / #xs end
    local ss = 0
    for _, x in ipairs(xs) do ss = ss + (x - mean) ^ 2 end
    local sd = math.sqrt(ss / (#xs - 1))
    local tol = 1e-12 * math.max(1, math.abs(mean))
    check.near(tonumber(rows[r][col[name .. ".mean"]]), mean, tol, "results.csv: mean of " .. name .. " for width " .. w)
    check.near(tonumber(rows[r][col[name .. ".sd"]]), sd, 1e-12 * math.max(1, sd), "results.csv: sd of " .. name .. " for width " .. w)
  end
end
-- score = 10 seed + width over seeds 1..3: mean 20 + width, sd 10 (what the script promises)
check.ok(rows[2] and tonumber(rows[2][col["score.mean"]]) == 21 and tonumber(rows[2][col["score.sd"]]) == 10,
  "the score of width 1 is 21 +- 10")
check.ok(out:find("| 1 | 3 |", 1, true) and out:find("21 ± 10", 1, true), "the Markdown row of width 1", out)

rc, out = attnlab("sweep --collect '" .. S .. "' --metrics score")
check.ok(rc == 0 and out:find("| width | n | score |", 1, true), "--metrics keeps the named metrics", out)
local result = sweep.collect(S, { metrics = { "nested" }, over = "width" })
check.ok(#result.columns == 1 and result.columns[1] == "seed" and #result.settings == 3
  and result.settings[1].stats["nested.half"].mean == 0.5 and result.settings[1].stats["nested.half"].n == 2,
  "lab.sweep.collect: any axis can be the one averaged over; a prefix keeps what is under it")
check.fails(function() sweep.collect(S, { bogus = 1 }) end, "unknown option 'bogus'", "collect rejects an unknown option")
check.fails(function() sweep.run(S, { parallel = 0 }) end, "--local needs", "run rejects parallel = 0")

check.cleanup()
os.exit(check.report())
