-- hello.lua -- the README's first script: a small MLP learns y = x1 * x2.
--   attnlab run experiments/hello.lua steps=500
local lab = require "attnlab"

local run = lab.run.start{ name = "hello", config = { steps = 2000, lr = 1e-2, seed = 1 } }
local cfg = run.config

local model = lab.nn.Sequential(lab.nn.Linear(2, 32), lab.nn.GELU(), lab.nn.Linear(32, 1))
local opt = lab.optim.Adam(model, { lr = cfg.lr })
run:track{ model = model, optim = opt }            -- what a checkpoint holds

local last
for step in run:steps(cfg.steps) do               -- progress, Ctrl-C, resume
  local x = lab.randn{ 128, 2 }
  local y = x:narrow(2, 1, 1) * x:narrow(2, 2, 1)  -- the target: the product of the inputs
  local loss = lab.mse(model(x), y)
  opt:zero_grad(); loss:backward(); opt:step()
  last = loss:item()
  if run:should_log(step) then run:log(step, { loss = last }) end
end
run:summary{ final_loss = last }
run:finish()
