-- The in-context regression study over heads and attention type, in one table: a sweep.
--
-- Trains H = 1, 2, 4, 8 heads with softmax attention and with linear attention (the softmax
-- replaced by a fixed 1/L_train normalisation), each from the same seed for the same number of
-- steps, as a lab.sweep of experiments/icl_regression.lua: every (attention, heads) pair is an
-- ordinary run directory under RUN_DIR/points/ (open one with attnlab view), `parallel` of them at
-- a time.  It is the same as
--   attnlab sweep experiments/icl_regression.lua attention=softmax,linear heads=1,2,4,8 \
--     steps=40000 --set eval_lengths=10,20,40,60,80,100 ...
-- followed by attnlab sweep --collect, plus this study's own table.  It writes to its run
-- directory summary.json (every result), table.md (test MSE beside the baselines, the circuit
-- measurements, length generalisation), and points/results.md and .csv (lab.sweep.collect).
--   attnlab run experiments/icl_sweep.lua                 8 runs of 40,000 steps (~15 min on 2 cores)
--   attnlab run experiments/icl_sweep.lua steps=5000 heads=1,2 parallel=2
local lab = require "attnlab"
local json = require "attnlab.json"

local run = lab.run.start{
  name = "icl_sweep",
  config = {
    d = 5, L = 40, steps = 40000, batch = 256, lr = 1e-3, seed = 1029, sigma2 = 0.1,
    heads = "1,2,4,8", attentions = "softmax,linear", test_tasks = 10000,
    eval_lengths = "10,20,40,60,80,100", log_every = 500,
    parallel = 1,   -- points at a time; the cores are divided among them (or --threads N each)
  },
  kinds = { parallel = "integer" },
}
local base = run.config
local function list(s) local t = {} for x in tostring(s):gmatch("[^,]+") do t[#t + 1] = x end return t end

-- every point shares the study's settings; only attention and heads vary
local shared = {}
for _, k in ipairs{ "d", "L", "steps", "batch", "lr", "seed", "sigma2", "test_tasks", "eval_lengths", "log_every" } do
  shared[k] = base[k]
end
local points = run.dir .. "/points"
lab.sweep.create{
  script = lab.root .. "/experiments/icl_regression.lua",
  axes = { { key = "attention", values = list(base.attentions) }, { key = "heads", values = list(base.heads) } },
  set = shared, out = points,
}
local cli = rawget(_G, "ATTNLAB_CLI") or {}
local manifest = lab.sweep.run(points, { parallel = base.parallel, threads = cli.threads })

local results, lines = {}, {}
for _, p in ipairs(manifest.points) do
  if p.status ~= "finished" then
    error(string.format("icl_sweep: %s %s%s; see %s/%s", p.dir, p.status, p.error and (": " .. p.error) or "", points, p.log))
  end
  local f = assert(io.open(points .. "/" .. p.dir .. "/summary.json", "rb"))
  local r = json.decode(f:read("*a"))
  f:close()
  local attention, heads = p.overrides.attention, tonumber(p.overrides.heads)
  r.heads, r.seconds = heads, p.seconds
  r.kq_matrices, r.ov_vectors = nil, nil
  results[string.format("%s_h%d", attention, heads)] = r
  local lg = {}
  for i, e in ipairs(r.length_generalisation) do lg[i] = string.format("%.3f", e.model) end
  local active = {}
  for _, h in ipairs(r.active_heads) do
    active[#active + 1] = string.format("h%d %.2f/%.2f", h, r.kq_offdiag_ratio[h], r.ov_x_ratio[h])
  end
  lines[#lines + 1] = string.format("| %s | %d | %.4f | %.4f | %.4f | %.4f | %.4f | %.3f | %s | %s |", attention, heads,
    r.test_mse, r.debiased_gd, r.single_head, r.ridge, r.zero, r.ov_sum_ratio, table.concat(active, ", "),
    table.concat(lg, " "))
end

local header = {
  string.format("In-context regression, d = %d, L = %d, %d steps, batch %d, Adam %g, seed %d; MSE on %d fresh tasks.",
    base.d, base.L, base.steps, base.batch, base.lr, base.seed, base.test_tasks),
  "Debiased GD uses the coefficient implied by the trained heads (sum of omega_h mu_h); offdiag/ov_x are",
  "kq_offdiag_ratio and ov_x_ratio of the heads carrying weight (|mu_h| >= 10% of the largest).",
  "",
  "| attention | heads | test MSE | debiased GD | single head | ridge | zero | ov_sum_ratio | active heads offdiag/ov_x | MSE at L = " ..
    table.concat(list(base.eval_lengths), ", ") .. " |",
  "|---|---|---|---|---|---|---|---|---|---|",
}
local md = table.concat(header, "\n") .. "\n" .. table.concat(lines, "\n") .. "\n"
lab.write_file_atomic(run.dir .. "/table.md", md)
lab.sweep.collect(points, { metrics = { "test_mse", "debiased_gd", "single_head", "ridge", "zero", "ov_sum_ratio" } })
run:summary(results)
io.stderr:write(md)
run:finish()
