-- In-context linear regression with multi-head softmax attention.
--
-- Reproduces He, Pan, Chen, Yang, "In-Context Linear Regression Demystified" (ICML 2025,
-- arXiv 2503.12734): a single layer of H-head softmax attention, trained from random
-- initialisation on fresh regression tasks, learns
--   - KQ circuits whose x-block is omega_h * I (diagonal and homogeneous),
--   - OV circuits that read only the y entry (mu_h), with heads of opposite sign (sum mu_h ~ 0),
-- so that with H >= 2 it implements debiased gradient descent (about 2x the Bayes risk), while a
-- single head does worse (the single-head solution), and it generalises to longer contexts
-- because the softmax normalises by L by itself.
--
--   attnlab run experiments/icl_regression.lua                    H = 4, softmax, d = 5, L = 40
--   attnlab run experiments/icl_regression.lua heads=1 steps=30000
--   attnlab run experiments/icl_regression.lua attention=linear   the same model without softmax
--   attnlab run experiments/icl_regression.lua --view             watch the circuits form (attnlab view RUN_DIR later)
--
-- Setup (the paper's, docs/icl_regression.md): x ~ N(0, I_d), beta ~ N(0, I_d/d), noise variance 0.1, a fresh
-- batch of 256 tasks every step, Adam lr 1e-3, PyTorch-default initialisation, seed 1029.
-- summary.json reports test MSE at the trained L (10,000 fresh tasks) beside the baselines, the
-- circuit measurements, and the length-generalisation table.
local lab = require "attnlab"
local icl = require "attnlab.tasks.icl"

local run = lab.run.start{
  name = "icl_regression",
  config = {
    d = 5, L = 40, heads = 4, steps = 100000, batch = 256, lr = 1e-3, seed = 1029,
    attention = "softmax",       -- or "linear": softmax replaced by a fixed 1/L_train normalisation
    sigma2 = 0.1,                -- noise variance
    test_tasks = 10000,          -- fresh tasks for each test MSE
    eval_lengths = "10,20,40,60,80,100",
    log_every = 100,
    viz = true,                  -- publish the circuits, the query's attention and the baselines (attnlab view)
  },
}
local cfg = run.config

local model = icl.model(cfg)
local opt = lab.optim.Adam(model:parameters(), { lr = cfg.lr })
run:track{ model = model, optim = opt }

icl.train(model, opt, cfg, run:steps(cfg.steps), function(step, loss) run:log(step, { loss = loss }) end)

-- Evaluation on fresh tasks: test MSE beside the baselines, the circuits, length generalisation.
local summary = icl.evaluate(model, cfg)
run:summary(summary)
io.stderr:write(string.format(
  "test MSE %.4f (L=%d) | ridge %.4f  debiased GD %.4f (best %.4f)  single head %.4f  zero %.4f\n",
  summary.test_mse, cfg.L, summary.ridge, summary.debiased_gd, summary.debiased_gd_best, summary.single_head, summary.zero))
local heads = {}
for h = 1, cfg.heads do
  heads[h] = string.format("h%d: omega %.3f mu %+.3f offdiag %.3f ov_x %.3f", h, summary.kq_omega[h], summary.ov_mu[h],
    summary.kq_offdiag_ratio[h], summary.ov_x_ratio[h])
end
io.stderr:write(table.concat(heads, "\n") .. string.format("\nsum ratio |sum mu| / sum |mu| = %.3f\n", summary.ov_sum_ratio))
local lg = {}
for _, r in ipairs(summary.length_generalisation) do lg[#lg + 1] = string.format("L=%d %.4f (ridge %.4f)", r.L, r.model, r.ridge) end
io.stderr:write("length generalisation: " .. table.concat(lg, ", ") .. "\n")
run:finish()
