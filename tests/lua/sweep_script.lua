-- sweep_script.lua -- a small experiment for the sweep tests (test_sweep.lua, test_sweep_slurm.sh),
-- not a test itself: a linear model learns y = 2x for `steps` steps, and summary.json holds numbers
-- that follow from the config (score = 10 seed + width), a nested table, an array and a string, so
-- that a test can check the table of `attnlab sweep --collect` against the points' summaries.
--
-- fail_file and hold_file make a point misbehave on purpose, deterministically: "" is off, else a
-- path in which {key} stands for the value of config key `key` (so one point of a grid can be
-- picked, e.g. /tmp/fail-{width}-{seed}).  While that file exists, at step `at` the run writes a
-- checkpoint and then fails (fail_file) or waits until the file is removed (hold_file: a point
-- to kill in the middle).  Resumed from that checkpoint, the run goes on from step at + 1.
local lab = require "attnlab"
local ffi = require "ffi"
pcall(ffi.cdef, "int poll(void *fds, unsigned long nfds, int timeout);")

local run = lab.run.start{
  name = "sweep_script",
  config = { steps = 20, lr = 0.1, seed = 1, width = 2, at = 10, fail_file = "", hold_file = "", checkpoint_every = 0,
              log_every = 1 },
  kinds = { width = "integer", at = "integer" },
}
local cfg = run.config

local model = lab.nn.Linear(1, 1)
local opt = lab.optim.SGD(model, { lr = cfg.lr })
run:track{ model = model, optim = opt }

-- the path the pattern names for this point, when that file exists
local function armed(pattern)
  if pattern == "" then return nil end
  local path = pattern:gsub("{([%w_]+)}", function(k) return tostring(cfg[k]) end)
  local f = io.open(path, "rb")
  if f then f:close() return path end
  return nil
end

local loss
for step in run:steps(cfg.steps) do
  local x = lab.randn{ 16, 1 }
  local l = lab.mse(model(x), x * 2)
  opt:zero_grad(); l:backward(); opt:step()
  loss = l:item()
  if run:should_log(step) then run:log(step, { loss = loss }) end
  if step == cfg.at then
    if armed(cfg.fail_file) then
      run:checkpoint()
      error("forced failure at step " .. step)
    end
    if armed(cfg.hold_file) then
      run:checkpoint()
      io.stderr:write("holding at step " .. step .. "\n")
      io.stderr:flush()
      -- (a SIGTERM, as scancel sends, ends the hold: the run then stops at the step boundary)
      while armed(cfg.hold_file) and not lab.interrupted() do ffi.C.poll(nil, 0, 50) end
    end
  end
end

run:summary{
  score = 10 * cfg.seed + cfg.width, final_loss = loss, note = "strings are not metrics",
  nested = { half = cfg.seed / 2, list = { cfg.seed, cfg.width * 3 }, flag = true },
}
run:finish()
