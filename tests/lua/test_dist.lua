-- test_dist.lua -- data-parallel training over MPI (lua/attnlab/dist.lua).  On one process every
-- helper is the identity; under `mpirun -np 2` (Debian's openmpi-bin; `make test` installs it) the
-- collectives give the right numbers, a failing rank ends the others, and the regression study gives
-- the same loss curve on two ranks with half the batch each as on one process with the whole batch.
local check = dofile("tests/lua/check.lua")("dist")
local lab = lab or require "attnlab"
local dist = lab.dist

-- one process
check.ok(dist.rank() == 0 and dist.world_size() == 1 and dist.is_main() and not dist.active(), "one process: rank 0 of 1")
local x = lab.randn{ 4, 3 }
local before = x:clone()
check.ok(dist.shard(x, 1):size(1) == 4, "one process: shard keeps the whole tensor")
check.value((dist.all_reduce(x) - before):abs():max():item() == 0, "one process: all_reduce is the identity")
check.ok(dist.mean(2.5) == 2.5 and dist.seed(7) == 7, "one process: mean and seed")
check.fails(function() dist.shard(x, 3) end, "dist.shard: dim must be a dimension of t, 1 to 2 (got 3 for shape {4,3})")
check.fails(function() dist.all_reduce(x:t()) end, "dist.all_reduce: t of shape {3,4} must be contiguous")
check.fails(function() dist.all_reduce(lab.tensor({ 1 }, "int64")) end, "dist.all_reduce: t must be float32 or float64 (got int64 of shape {1})")
check.fails(function() dist.all_reduce(x, "max") end, "dist.all_reduce: op must be 'sum' or 'mean' (got max)")
check.fails(function() dist.seed(1.5) end, "dist.seed: base must be an integer (got 1.5)")

local function sh(cmd)
  local status = os.execute(cmd)
  return status == 0 or status == true
end
local MPIRUN = "mpirun --allow-run-as-root --oversubscribe -np 2"
local ATTNLAB = os.getenv("ATTNLAB") or "./build/attnlab"
if not sh("command -v mpirun > /dev/null 2>&1") then
  check.skip(8, "the two-rank checks: mpirun is not installed (apt-get install openmpi-bin; `make test` installs it)")
else
  local dir = check.tmpdir("dist")
  -- the collectives on two ranks
  sh(string.format("timeout 120 %s '%s' tests/lua/dist/worker.lua > '%s/worker.out' 2>&1", MPIRUN, ATTNLAB, dir))
  local out = check.read_file(dir .. "/worker.out") or ""
  for r = 0, 1 do
    local p, f = out:match("rank " .. r .. ": (%d+) passed, (%d+) failed")
    check.ok(p and tonumber(p) == 9 and tonumber(f) == 0, "rank " .. r .. ": the collectives (9 checks)", out)
  end
  -- a rank that fails ends the other one, which waits in an all-reduce
  local t0 = lab.time()
  local ended = sh(string.format("timeout 60 %s '%s' tests/lua/dist/fail_on_rank1.lua > '%s/fail.out' 2>&1", MPIRUN, ATTNLAB, dir))
  local fail_out = check.read_file(dir .. "/fail.out") or ""
  check.ok(not ended and lab.time() - t0 < 50 and fail_out:find("rank 1 fails on purpose", 1, true)
           and not fail_out:find("rank 0 passed", 1, true), "a failing rank ends every rank, with its error", fail_out)
  -- the regression study: 2 ranks x 128 against 1 process x 256, the same loss curve
  local args = "experiments/icl_regression.lua steps=200 log_every=25 test_tasks=200 --threads 1"
  local one = sh(string.format("'%s' run %s --out '%s/one' > '%s/one.out' 2>&1", ATTNLAB, args, dir, dir))
  local function scratch_count() return tonumber(io.popen("ls -d /tmp/*-attnlab-rank1 2>/dev/null | wc -l"):read("*l")) end
  local scratch_before = scratch_count()
  local two = sh(string.format("timeout 300 %s '%s' run %s --out '%s/two' > '%s/two.out' 2>&1", MPIRUN, ATTNLAB, args, dir, dir))
  check.ok(one and two, "the study runs on one process and on two ranks", check.read_file(dir .. "/two.out"))
  local function losses(path)
    local out = {}
    for line in (check.read_file(path) or ""):gmatch("[^\n]+") do
      local l = line:match('"loss":([%d.eE+-]+)')
      if l then out[#out + 1] = tonumber(l) end
    end
    return out
  end
  local a, b = losses(dir .. "/one/metrics.jsonl"), losses(dir .. "/two/metrics.jsonl")
  local worst = 0
  for i = 1, math.max(#a, #b) do worst = math.max(worst, math.abs((a[i] or 0) - (b[i] or math.huge)) / math.max(a[i] or 1, 1e-12)) end
  check.ok(#a == 8 and #b == 8, "eight logged losses each", #a .. " and " .. #b)
  check.value(worst < 1e-5, "two ranks with half the batch each give one process's loss curve", string.format("worst relative difference %.3g", worst))
  check.ok(check.read_file(dir .. "/two/summary.json") ~= nil and check.read_file(dir .. "/two/final.safetensors") ~= nil,
    "rank 0 wrote the run directory")
  check.ok(scratch_count() == scratch_before, "rank 1's scratch folder is removed when it finishes")
  local progress = select(2, (check.read_file(dir .. "/two.out") or ""):gsub("run saved in", ""))
  check.ok(progress == 1, "one 'run saved' line: rank 0's", tostring(progress))
end
check.cleanup()
os.exit(check.report())
