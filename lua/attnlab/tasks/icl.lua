-- attnlab.tasks.icl: in-context linear regression as in He, Pan, Chen, Yang 2025 (arXiv 2503.12734),
-- the data, the one-layer multi-head attention model, the closed-form baselines and the
-- measurements of the learned circuits.  docs/icl_regression.md has the setup and the sources.
--
-- Data: x_i ~ N(0, I_d), beta ~ N(0, I_d / d), y_i = beta^T x_i + eps, eps ~ N(0, sigma2), i = 1..L
-- and a query (x_q, y_q) drawn the same way.  Tokens z_i = [x_i; y_i] (B, L, d+1), query [x_q; 0].
-- Model: one layer of H heads, each with full (d+1)x(d+1) Q, K, V (no bias), the query attending to
-- the L examples only (not to itself), an output map to one number: y_hat = sum_h O_h V_h Z p_h.
local lab = require "attnlab"
local nn = require "attnlab.nn"

local icl = {}

-- One batch of B tasks with L examples: Z (B, L, d+1), zq (B, 1, d+1), yq (B), and the raw
-- x (B, L+1, d), y (B, L+1) for the baselines.
-- Every token is drawn at once as one (B, L+1, d+1) normal tensor: the first d columns are x, and
-- the last column, before y overwrites it, is the noise eps (scaled by sqrt(sigma2)).  Z and zq are
-- then cut from that one tensor, with the query's y zeroed in place: no concatenation, which cost
-- half of the study's data time (a copy in rows of 5 floats).
function icl.batch(B, L, d, sigma2)
  local tokens = lab.randn{ B, L + 1, d + 1 }
  local x = tokens:narrow(3, 1, d)                                                     -- (B, L+1, d)
  local beta = lab.randn{ B, d, 1 } * (1 / math.sqrt(d))
  local y = x:matmul(beta) + tokens:narrow(3, d + 1, 1) * math.sqrt(sigma2)          -- (B, L+1, 1)
  local yq = y:narrow(2, L + 1, 1):reshape{ B }
  tokens:narrow(3, d + 1, 1):copy_(y)
  tokens:narrow(2, L + 1, 1):narrow(3, d + 1, 1):fill_(0)                              -- the query's y
  -- Z a view: the model's attention reads the context in place, at any stride (nn.MultiHeadAttention
  -- computes its keys and values in the context's space here; see folds_context)
  return { Z = tokens:narrow(2, 1, L), zq = tokens:narrow(2, L + 1, 1), yq = yq, x = x, y = y:reshape{ B, L + 1 },
           B = B, L = L, d = d }
end

-- attention = "softmax" or "linear" (linear self-attention: the softmax replaced by 1/L_train, so
-- the normalisation stays fixed when the context length changes).
function icl.model(cfg)
  local D = cfg.d + 1
  local variant = cfg.attention == "linear" and "lsa" or cfg.attention
  if variant ~= "softmax" and variant ~= "lsa" then
    lab.raise("icl.model: attention must be 'softmax' or 'linear' (got " .. tostring(cfg.attention) .. ")")
  end
  return nn.MultiHeadAttention{ dim = D, heads = cfg.heads, head_dim = D, out_dim = 1, bias = false,
                                variant = variant, norm = variant == "lsa" and cfg.L or nil }
end

function icl.predict(model, batch)
  return model(batch.zq, batch.Z):reshape{ batch.B }
end

---------------------------------------------------------------------------------------------------
-- The learned circuits.  Per head h (weights as Linear stores them, (out, in)):
--   KQ_h = Wq_h^T Wk_h (D x D): the logit of key z for the query zq is zq^T KQ_h z / sqrt(D);
--   OV_h = Wo_h Wv_h (1 x D): what a key's value contributes to the prediction.
-- The paper's patterns: the x-block of KQ_h is omega_h I_d (diagonal, homogeneous), OV_h puts all
-- its weight mu_h on the y entry, and sum_h mu_h = 0.
---------------------------------------------------------------------------------------------------
function icl.circuits(model, d)
  local D, H = d + 1, model.heads
  local Wq = model.q.weight:detach():reshape{ H, D, D }
  local Wk = model.k.weight:detach():reshape{ H, D, D }
  local Wv = model.v.weight:detach():reshape{ H, D, D }
  local Wo = model.o.weight:detach():reshape{ 1, H, D }:permute(2, 1, 3)      -- (H, 1, D)
  local KQ = Wq:transpose(2, 3):matmul(Wk)                                    -- (H, D, D)
  local OV = Wo:matmul(Wv)                                                    -- (H, 1, D)
  local kq, ov = KQ:totable(), OV:totable()
  local out = { kq = kq, ov = ov, kq_omega = {}, kq_offdiag_ratio = {}, ov_mu = {}, ov_x_ratio = {},
                omega_effective = {} }
  local mu_sum, mu_abs = 0, 0
  for h = 1, H do
    local diag, off, noff = 0, 0, 0
    for i = 1, d do
      for j = 1, d do
        if i == j then diag = diag + kq[h][i][j] else off = off + math.abs(kq[h][i][j]); noff = noff + 1 end
      end
    end
    local absdiag = 0
    for i = 1, d do absdiag = absdiag + math.abs(kq[h][i][i]) end
    out.kq_omega[h] = diag / d
    out.omega_effective[h] = diag / d / math.sqrt(D)
    out.kq_offdiag_ratio[h] = (off / math.max(noff, 1)) / math.max(absdiag / d, 1e-30)
    local mu, xs = ov[h][1][D], 0
    for i = 1, d do xs = xs + math.abs(ov[h][1][i]) end
    out.ov_mu[h] = mu
    out.ov_x_ratio[h] = (xs / d) / math.max(math.abs(mu), 1e-30)
    mu_sum, mu_abs = mu_sum + mu, mu_abs + math.abs(mu)
  end
  out.ov_sum_ratio = math.abs(mu_sum) / math.max(mu_abs, 1e-30)
  -- heads "carrying weight": |mu_h| at least 10% of the largest
  local maxmu = 0
  for h = 1, H do maxmu = math.max(maxmu, math.abs(out.ov_mu[h])) end
  out.active_heads = {}
  for h = 1, H do if math.abs(out.ov_mu[h]) >= 0.1 * maxmu then out.active_heads[#out.active_heads + 1] = h end end
  return out
end

---------------------------------------------------------------------------------------------------
-- Baseline predictors (docs/icl_regression.md), each a function of a batch returning predictions (B).
---------------------------------------------------------------------------------------------------
local baselines = {}
icl.baselines = baselines

-- Bayes-optimal ridge: beta_hat = (X^T X + sigma2 d I)^-1 X^T y, y_hat = x_q^T beta_hat.
function baselines.ridge(b, sigma2)
  local X = b.x:narrow(2, 1, b.L)                                   -- (B, L, d)
  local Y = b.y:narrow(2, 1, b.L):unsqueeze(3)                      -- (B, L, 1)
  local Xt = X:transpose(2, 3)
  local A = Xt:matmul(X) + lab.eye(b.d) * (sigma2 * b.d)
  local beta = lab.solve(A, Xt:matmul(Y))                           -- (B, d, 1)
  return b.x:narrow(2, b.L + 1, 1):matmul(beta):reshape{ b.B }
end

-- sum_i y_i (x_i - xbar)^T x_q / L (debiased) or sum_i y_i x_i^T x_q / L (plain), before the
-- coefficient: the two predictors are c times these.
local function gd_direction(b, debiased)
  local X = b.x:narrow(2, 1, b.L)
  if debiased then X = X - X:mean(2, true) end
  local Y = b.y:narrow(2, 1, b.L):unsqueeze(2)                      -- (B, 1, L)
  local xq = b.x:narrow(2, b.L + 1, 1):transpose(2, 3)              -- (B, d, 1)
  return Y:matmul(X):matmul(xq):reshape{ b.B } * (1 / b.L)
end
function baselines.gd(b, c) return gd_direction(b, false) * c end
function baselines.debiased_gd(b, c) return gd_direction(b, true) * c end

-- The reduced multi-head model: y_hat = sum_h mu_h sum_i softmax_i(omega_h x_i^T x_q) y_i.
function baselines.reduced(b, omegas, mus)
  local X = b.x:narrow(2, 1, b.L)
  local xq = b.x:narrow(2, b.L + 1, 1):transpose(2, 3)
  local s = X:matmul(xq):reshape{ b.B, b.L }                        -- x_i^T x_q
  local Y = b.y:narrow(2, 1, b.L)
  local pred = lab.zeros{ b.B }
  for h = 1, #omegas do
    pred = pred + ((s * omegas[h]):softmax(2) * Y):sum(2) * mus[h]
  end
  return pred
end

-- The single-head solution of the paper: omega = 1/sqrt(d), mu = sqrt(d) / (1 + (1+sigma2) d e / L).
function baselines.single_head(b, sigma2)
  local omega = 1 / math.sqrt(b.d)
  local mu = math.sqrt(b.d) / (1 + (1 + sigma2) * b.d * math.exp(1) / b.L)
  return baselines.reduced(b, { omega }, { mu })
end

-- The coefficient c minimising the MSE of c * direction on a batch (the best member of a family).
function icl.best_coefficient(direction, yq)
  return (direction * yq):sum():item() / (direction * direction):sum():item()
end

function icl.mse(pred, yq) return lab.mse(pred, yq):item() end

-- Everything the study reports, on fresh tasks with gradients off: test MSE at cfg.L beside the
-- baselines (the GD-type ones with the coefficient the trained heads imply, sum_h omega_h mu_h, and
-- with the best coefficient for reference), the circuit measurements and, for each L in
-- cfg.eval_lengths ("10,20,40"), the model's MSE beside ridge's.
function icl.evaluate(model, cfg)
  return lab.no_grad(function()
    local c = icl.circuits(model, cfg.d)
    local s = {
      attention = cfg.attention,
      normalisation = cfg.attention == "linear" and string.format("fixed 1/%d (the training L)", cfg.L) or "softmax",
      kq_omega = c.kq_omega, omega_effective = c.omega_effective, kq_offdiag_ratio = c.kq_offdiag_ratio,
      ov_mu = c.ov_mu, ov_x_ratio = c.ov_x_ratio, ov_sum_ratio = c.ov_sum_ratio, active_heads = c.active_heads,
      kq_matrices = c.kq, ov_vectors = c.ov,
    }
    local coef = 0
    for h = 1, cfg.heads do coef = coef + c.omega_effective[h] * c.ov_mu[h] end
    s.gd_coefficient = coef

    local function at_length(L)
      local b = icl.batch(cfg.test_tasks, L, cfg.d, cfg.sigma2)
      local dgd, gd = baselines.debiased_gd(b, 1), baselines.gd(b, 1)
      return {
        L = L,
        model = icl.mse(icl.predict(model, b), b.yq),
        ridge = icl.mse(baselines.ridge(b, cfg.sigma2), b.yq),
        debiased_gd = icl.mse(dgd * coef, b.yq),
        gd = icl.mse(gd * coef, b.yq),
        debiased_gd_best = icl.mse(dgd * icl.best_coefficient(dgd, b.yq), b.yq),
        gd_best = icl.mse(gd * icl.best_coefficient(gd, b.yq), b.yq),
        single_head = icl.mse(baselines.single_head(b, cfg.sigma2), b.yq),
        reduced_model = icl.mse(baselines.reduced(b, c.omega_effective, c.ov_mu), b.yq),
        zero = icl.mse(b.yq * 0, b.yq),
      }
    end

    local r = at_length(cfg.L)
    s.test_mse = r.model
    for _, k in ipairs{ "ridge", "debiased_gd", "gd", "debiased_gd_best", "gd_best", "single_head", "reduced_model", "zero" } do
      s[k] = r[k]
    end
    s.length_generalisation = {}
    for L in tostring(cfg.eval_lengths):gmatch("%d+") do
      local e = at_length(tonumber(L))
      s.length_generalisation[#s.length_generalisation + 1] = { L = e.L, model = e.model, ridge = e.ridge,
        debiased_gd = e.debiased_gd, single_head = e.single_head }
    end
    return s
  end)
end

---------------------------------------------------------------------------------------------------
-- What the viewer shows (lab.viz; nothing happens without a run): the KQ and OV circuits of every
-- head, the query's attention over the context, and the baselines' test MSE as reference lines on
-- the loss curve.  Rate limited by lab.viz (default 4 snapshots a second), so it costs the
-- training a clock read and a stat() per step.
---------------------------------------------------------------------------------------------------

-- Baseline MSEs on fresh tasks, drawn with the generator's state saved and put back, so that the
-- training sees the same batches as without the viewer.
function icl.publish_references(cfg, tasks)
  local viz = lab.viz
  if not viz.enabled() then return end
  local rng = lab.rng_state()
  lab.no_grad(function()
    local b = icl.batch(tasks or 2000, cfg.L, cfg.d, cfg.sigma2)
    local dgd = baselines.debiased_gd(b, 1)
    viz.reference("loss", "ridge", icl.mse(baselines.ridge(b, cfg.sigma2), b.yq))
    viz.reference("loss", "debiased GD", icl.mse(dgd * icl.best_coefficient(dgd, b.yq), b.yq))
    viz.reference("loss", "single head", icl.mse(baselines.single_head(b, cfg.sigma2), b.yq))
    viz.reference("loss", "zero", icl.mse(b.yq * 0, b.yq))
  end)
  lab.set_rng_state(rng)
end

-- KQ_h (D x D) and OV_h (D) of every head, as icl.circuits defines them.
function icl.publish_circuits(model, d)
  local viz = lab.viz
  if not viz.due("icl circuits") then return end
  lab.no_grad(function()
    local D, H = d + 1, model.heads
    local Wq = model.q.weight:detach():reshape{ H, D, D }
    local Wk = model.k.weight:detach():reshape{ H, D, D }
    local Wv = model.v.weight:detach():reshape{ H, D, D }
    local Wo = model.o.weight:detach():reshape{ 1, H, D }:permute(2, 1, 3)
    local KQ = Wq:transpose(2, 3):matmul(Wk)
    local OV = Wo:matmul(Wv)
    for h = 1, H do
      viz.matrix("KQ", KQ:narrow(1, h, 1):reshape{ D, D }, { head = h, force = true })
      viz.matrix("OV", OV:narrow(1, h, 1):reshape{ D }, { head = h, force = true })
    end
  end)
end

local function context_tokens(L)
  local keys = {}
  for i = 1, L do keys[i] = "z" .. i end
  return { queries = { "query" }, keys = keys }
end

-- The study's training loop, shared by the sweep: steps of Adam on fresh batches; calls
-- on_log(step, mean loss since the last call) every log_every steps.  With a run open, publishes
-- the views above (cfg.viz = false turns that off).
-- This rank's share of a batch (data-parallel runs under mpirun: every rank draws the whole batch,
-- so the data match one process's, and keeps its share; see lua/attnlab/dist.lua).
function icl.shard(b)
  local dist = lab.dist
  local Z, zq, yq, x, y = dist.shard(b.Z, 1), dist.shard(b.zq, 1), dist.shard(b.yq, 1), dist.shard(b.x, 1), dist.shard(b.y, 1)
  return { Z = Z, zq = zq, yq = yq, x = x, y = y, B = Z:size(1), L = b.L, d = b.d }
end

function icl.train(model, opt, cfg, steps, on_log)
  local window, n = 0, 0
  local viz = lab.viz
  local dist = lab.dist
  local parallel = dist.active()
  local params = model:parameters()
  if parallel then
    if cfg.batch % dist.world_size() ~= 0 then
      lab.raise(string.format("icl.train: batch %d does not divide by the %d ranks", cfg.batch, dist.world_size()))
    end
    dist.broadcast_parameters(params)
  end
  local publish = cfg.viz ~= false and viz.enabled()
  if publish then icl.publish_references(cfg) end
  local tokens = context_tokens(cfg.L)
  for step in steps do
    local b = icl.batch(cfg.batch, cfg.L, cfg.d, cfg.sigma2)
    if parallel then b = icl.shard(b) end
    -- the attention map is kept only on the steps that publish it
    local show = publish and viz.due("query attention")
    model.record = show
    local loss = lab.mse(icl.predict(model, b), b.yq)
    if show then
      -- with the query's and the examples' projections, for the neuron view: (B, H, 1 or L, D)
      local H, D = model.heads, cfg.d + 1
      local q, k = lab.no_grad(function()
        return model.q(b.zq):reshape{ b.B, 1, H, D }:permute(1, 3, 2, 4), model.k(b.Z):reshape{ b.B, b.L, H, D }:permute(1, 3, 2, 4)
      end)
      viz.attention("query attention", model.weights, { layer = 1, tokens = tokens, force = true, q = q, k = k })
      model.weights, model.record = nil, false
    end
    if publish then icl.publish_circuits(model, cfg.d) end
    opt:zero_grad()
    loss:backward()
    if parallel then dist.average_gradients(params) end
    opt:step()
    window, n = window + (parallel and dist.mean(loss:item()) or loss:item()), n + 1
    if step % (cfg.log_every or 100) == 0 then
      on_log(step, window / n)
      window, n = 0, 0
    end
  end
end

return icl
