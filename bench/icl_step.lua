-- bench/icl_step.lua -- ms per training step of the in-context regression study, timed exactly as
-- bench/torch_ref/icl_step.py times PyTorch: a fresh batch is drawn outside the
-- timed region; forward, loss, zero_grad, backward and the Adam step are inside; the figure is
-- the median of the per-step times after the first 50 steps.
--   attnlab bench/icl_step.lua [steps=N] [heads=H] [attention=softmax|linear]
local lab = require "attnlab"
local icl = require "attnlab.tasks.icl"

local cfg = { d = 5, L = 40, heads = 4, batch = 256, steps = 1000, lr = 1e-3, seed = 1029, attention = "softmax" }
dofile("bench/stats.lua").args("icl_step", cfg)
lab.seed(cfg.seed)
local model = icl.model(cfg)
local opt = lab.optim.Adam(model:parameters(), { lr = cfg.lr })
local times = {}
for step = 1, cfg.steps do
  local b = icl.batch(cfg.batch, cfg.L, cfg.d, 0.1)
  local t0 = lab.time()
  local loss = lab.mse(icl.predict(model, b), b.yq)
  opt:zero_grad()
  loss:backward()
  opt:step()
  times[step] = (lab.time() - t0) * 1e3
  local _ = loss:item()
end
local tail = {}
for i = math.min(51, #times), #times do tail[#tail + 1] = times[i] end
table.sort(tail)
local median = tail[math.floor((#tail + 1) / 2)]
print(string.format('{"workload": "icl_paper", "impl": "attnlab", "d": %d, "L": %d, "heads": %d, "batch": %d, "steps": %d, "threads": %d, "ms_per_step_median": %.4f}',
  cfg.d, cfg.L, cfg.heads, cfg.batch, cfg.steps, lab.num_threads(), median))
