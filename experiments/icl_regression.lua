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
--
-- Setup (toy-tasks.md A.2-A.4): x ~ N(0, I_d), beta ~ N(0, I_d/d), noise variance 0.1, a fresh
-- batch of 256 tasks every step, Adam lr 1e-3, PyTorch-default initialisation, seed 1029.
-- summary.json reports test MSE at the trained L (10,000 fresh tasks) beside the baselines, the
-- circuit measurements, and the length-generalisation table.
local lab = require "attnlab"
local icl = require "attnlab.tasks.icl"

local run = lab.run.start{
  name = "icl_regression",
  config = {
    d = 5, L = 40, heads = 4, steps = 40000, batch = 256, lr = 1e-3, seed = 1029,
    attention = "softmax",       -- or "linear": softmax replaced by a fixed 1/L_train normalisation
    sigma2 = 0.1,                -- noise variance
    test_tasks = 10000,          -- fresh tasks for each test MSE
    eval_lengths = "10,20,40,60,80,100",
    log_every = 100,
  },
}
local cfg = run.config

local model = icl.model(cfg)
local opt = lab.optim.Adam(model:parameters(), { lr = cfg.lr })
run:track{ model = model, optim = opt }

local window, window_n = 0, 0
for step in run:steps(cfg.steps) do
  local b = icl.batch(cfg.batch, cfg.L, cfg.d, cfg.sigma2)
  local loss = lab.mse(icl.predict(model, b), b.yq)
  opt:zero_grad()
  loss:backward()
  opt:step()
  window, window_n = window + loss:item(), window_n + 1
  if run:should_log(step) then
    run:log(step, { loss = window / window_n })
    window, window_n = 0, 0
  end
end

-- Evaluation: everything on fresh tasks, with gradients off.
local summary = lab.no_grad(function()
  local c = icl.circuits(model, cfg.d)
  local s = {
    attention = cfg.attention,
    normalisation = cfg.attention == "linear" and string.format("fixed 1/%d (the training L)", cfg.L) or "softmax",
    kq_omega = c.kq_omega, omega_effective = c.omega_effective, kq_offdiag_ratio = c.kq_offdiag_ratio,
    ov_mu = c.ov_mu, ov_x_ratio = c.ov_x_ratio, ov_sum_ratio = c.ov_sum_ratio, active_heads = c.active_heads,
    kq_matrices = c.kq, ov_vectors = c.ov,
  }
  -- the reduced model's coefficient for (debiased) GD: sum_h omega_h mu_h (2 omega mu for two heads)
  local coef = 0
  for h = 1, cfg.heads do coef = coef + c.omega_effective[h] * c.ov_mu[h] end
  s.gd_coefficient = coef

  local function evaluate(L)
    local b = icl.batch(cfg.test_tasks, L, cfg.d, cfg.sigma2)
    local dgd_dir, gd_dir = icl.baselines.debiased_gd(b, 1), icl.baselines.gd(b, 1)
    return {
      L = L,
      model = icl.mse(icl.predict(model, b), b.yq),
      ridge = icl.mse(icl.baselines.ridge(b, cfg.sigma2), b.yq),
      debiased_gd = icl.mse(dgd_dir * coef, b.yq),
      gd = icl.mse(gd_dir * coef, b.yq),
      debiased_gd_best = icl.mse(dgd_dir * icl.best_coefficient(dgd_dir, b.yq), b.yq),
      gd_best = icl.mse(gd_dir * icl.best_coefficient(gd_dir, b.yq), b.yq),
      single_head = icl.mse(icl.baselines.single_head(b, cfg.sigma2), b.yq),
      reduced_model = icl.mse(icl.baselines.reduced(b, c.omega_effective, c.ov_mu), b.yq),
      zero = icl.mse(b.yq * 0, b.yq),
    }
  end

  local at_L = evaluate(cfg.L)
  s.test_mse = at_L.model
  for _, k in ipairs{ "ridge", "debiased_gd", "gd", "debiased_gd_best", "gd_best", "single_head", "reduced_model", "zero" } do
    s[k] = at_L[k]
  end
  s.length_generalisation = {}
  for L in cfg.eval_lengths:gmatch("%d+") do
    local r = evaluate(tonumber(L))
    s.length_generalisation[#s.length_generalisation + 1] = { L = r.L, model = r.model, ridge = r.ridge,
      debiased_gd = r.debiased_gd, single_head = r.single_head }
  end
  return s
end)

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
