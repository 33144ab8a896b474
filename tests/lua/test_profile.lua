-- test_profile.lua -- lab.profile and `attnlab run --profile`: the rows count every call, the
-- products' floating-point operations are exact, the self times add up to the whole, the timing
-- wrappers are gone afterwards (also when fn raises), and the command line leaves profile.txt.
--   ./build/attnlab tests/lua/test_profile.lua
local lab = rawget(_G, "lab") or require "attnlab"
local check = dofile("tests/lua/check.lua")("profile")
local C = lab.C

local function row(prof, name, phase)
  for _, r in ipairs(prof.rows) do
    if r.name == name and r.phase == phase then return r end
  end
end

-- a known workload: k products (n x p) @ (p x m) with both operands needing gradients, and backward
local n, p, m, k = 33, 17, 9, 5
local a = lab.randn{ n, p }:requires_grad(true)
local b = lab.randn{ p, m }:requires_grad(true)
local original_matmul = C.al_matmul
local prof = lab.profile(function()
  local total
  for _ = 1, k do
    local y = a:matmul(b)
    total = total and total + y:sum() or y:sum()
  end
  total:backward()
end)

local fwd, bwd = row(prof, "matmul", "forward"), row(prof, "matmul", "backward")
check.ok(fwd and fwd.calls == k, "matmul forward counted once per call", fwd and fwd.calls)
check.ok(fwd and fwd.flops == k * 2 * n * p * m, "matmul forward FLOPs are 2 n p m per call", fwd and fwd.flops)
check.ok(bwd and bwd.calls == k, "matmul backward counted once per node", bwd and bwd.calls)
-- the backward computes dA = g B^T and dB = A^T g: two products of the forward's size
check.ok(bwd and bwd.flops == k * 2 * 2 * n * p * m, "matmul backward FLOPs are twice the forward's", bwd and bwd.flops)
check.ok(row(prof, "sum", "forward") and row(prof, "sum", "forward").calls == k, "sum forward counted")
check.ok(row(prof, "backward (graph walk)", "backward") ~= nil, "the graph walk has its row")
check.ok(row(prof, "Lua and the rest", "") ~= nil, "the time outside every call has its row")

local self_sum = 0
for _, r in ipairs(prof.rows) do
  self_sum = self_sum + r.self
  check.ok(r.self >= -1e-6, "no row has a negative self time: " .. r.name, r.self)
end
check.near(self_sum, prof.seconds, 1e-9 + 1e-6 * prof.seconds, "the self times add up to the whole")
for i = 2, #prof.rows do
  if prof.rows[i].self > prof.rows[i - 1].self then check.ok(false, "rows are sorted by self time") break end
end
check.ok(rawget(C, "al_matmul") == original_matmul, "the wrapper is gone after profiling")

local text = prof:report(3)
check.ok(text:find("GFLOP/s", 1, true) ~= nil and text:find("self ms", 1, true) ~= nil, "report has its header", text)
local lines = 0
for _ in text:gmatch("[^\n]+") do lines = lines + 1 end
check.ok(lines == 3 + 4, "report(3) prints the header, its rule, 3 rows, a rule and the total", lines)

-- fn raising: the error comes through and the wrappers are gone
check.fails(function() lab.profile(function() error("boom in the step") end) end, "boom in the step",
  "an error inside fn comes through")
check.ok(rawget(C, "al_matmul") == original_matmul, "the wrapper is gone after an error")
check.fails(function() lab.profile(3) end, "profile: expects a function", "profile names itself on a bad argument")
check.fails(function() lab.profile(function() end, 0) end, "profile: calls must be a positive integer")

-- calls: fn runs that many times, the per-call figure divides by it
local runs = 0
local p3 = lab.profile(function() runs = runs + 1 end, 3)
check.ok(runs == 3 and p3.calls == 3, "fn runs `calls` times", runs)

-- off, the core counts nothing
C.al_profile_take_flops()
local _ = a:matmul(b)
check.ok(C.al_profile_take_flops() == 0, "no FLOPs are counted while the profiler is off")

-- attnlab run --profile: the table on stderr and in the run directory
local dir = check.tmpdir("profile")
local script = dir .. "-script.lua"
check.write_file(script, [[
local lab = require "attnlab"
local run = lab.run.start{ name = "profiled", config = { steps = 3 } }
local w = lab.randn{ 8, 8 }:requires_grad(true)
for step in run:steps(run.config.steps) do
  local loss = lab.randn{ 4, 8 }:matmul(w):pow(2):mean()
  loss:backward()
end
run:finish()
]])
local attnlab = os.getenv("ATTNLAB") or "build/attnlab"
local out = dir .. "-run"
local ok = os.execute(string.format("%s run %s --out %s --profile > %s.log 2>&1", attnlab, script, out, dir))
local log = check.read_file(dir .. ".log") or ""
check.ok(ok == 0 or ok == true, "attnlab run --profile succeeds", log)
local saved = check.read_file(out .. "/profile.txt") or ""
check.ok(saved:find("matmul", 1, true) and saved:find("backward", 1, true), "profile.txt holds the table", saved)
check.ok(log:find("self ms", 1, true) ~= nil, "the table is printed on stderr", log)
local bad = os.execute(string.format("%s -e 'print(1)' --profile > %s.log2 2>&1", attnlab, dir))
check.ok(bad ~= 0 and bad ~= true and (check.read_file(dir .. ".log2") or ""):find("--profile applies to `attnlab run` only", 1, true),
  "--profile outside run is an error")
check.cleanup()
os.exit(check.report(), true)
