-- The attention catalogue side by side: the same small causal transformer trained with each variant
-- on two tasks, one table.
--
--   in-context regression (tasks.icl's data): the sequence z_1 .. z_L, z_q of tokens [x_i; y_i] and
--     [x_q; 0] (d = 5), read in by a linear map; the model predicts y_q at the last position (MSE).
--     Trained at L = icl_L, evaluated on 2,000 fresh tasks at L = icl_eval (length generalisation),
--     beside the Bayes-optimal ridge predictor at each L.
--   multi-query associative recall (tasks.mqar): P key-value pairs then the P keys again; accuracy
--     of the answers.  Trained with mqar_pairs pairs, evaluated at mqar_eval pairs (longer
--     sequences than trained on: length generalisation).
-- Model: layers x TransformerBlock{dim, heads, variant, causal}, AdamW; every variant from the same
-- seed, the same data stream and steps.  Per variant and task: final training loss, test figures,
-- ms per training step, peak tensor memory (the allocator's peak over training, cache emptied before).
-- Writes summary.json and table.md in the run directory.
--   attnlab run experiments/variants.lua                       every variant (a few minutes)
--   attnlab run experiments/variants.lua variants=softmax,linear steps=300
local lab = require "attnlab"
local icl = require "attnlab.tasks.icl"
local mqar = require "attnlab.tasks.mqar"

local run = lab.run.start{
  name = "variants",
  config = {
    variants = "all", tasks = "icl,mqar", steps = 800, batch = 64, lr = 3e-3, seed = 7, dim = 32, heads = 4, layers = 2,
    d = 5, icl_L = 20, icl_eval = "10,20,40", sigma2 = 0.1, test_tasks = 2000,
    mqar_pairs = 8, mqar_vocab = 64, mqar_eval = "4,8,16", mqar_test = 1000, log_every = 100,
  },
}
local cfg = run.config
local function list(s) local t = {} for x in tostring(s):gmatch("[^,]+") do t[#t + 1] = tonumber(x) or x end return t end

-- How each variant runs in this model: its MultiHeadAttention options (opts), a causal override for
-- variants without a causal form, and the tasks it cannot take part in honestly (skip, with why).
-- A variant of the catalogue not listed runs with no options.
local setups = {
  sliding_window = { opts = { window = 8 } },
  neighborhood = { opts = { kernel_size = 9 } },
  strided_neighborhood = { opts = { kernel_size = 8, stride = 4 } },
  dynamic_mask = { opts = { top_k = 8 } },
  routing = { opts = { clusters = 4 } },
  hyper = { opts = { block_size = 8, samples = 8 } },
  relative = { opts = { max_relative = 8 } },
  moh = { opts = { shared_heads = 1, active_heads = 2 } },
  lowrank = { opts = { rank = 16 } },
  agent = { opts = { agent_count = 4 }, causal = false,
            skip = { mqar = "no causal form: the answers would be visible to the queries" } },
  landmark = { skip = { icl = "needs landmark tokens in the data", mqar = "needs landmark tokens in the data" } },
  flashbias = { skip = { icl = "its bias factors come from the caller, not from the model", mqar = "its bias factors come from the caller, not from the model" } },
  pointer = { skip = { icl = "its output is a distribution over the inputs, not a mix of values (a pointer network's head)",
                       mqar = "its output is a distribution over the inputs, not a mix of values (a pointer network's head)" } },
}

local variants = list(cfg.variants)
if cfg.variants == "all" then
  variants = lab.attention.variants()
  for name, m in pairs(lab.nn.attention_variant_modules) do if m.module_only then variants[#variants + 1] = name end end
end

-- the regression model: tokens in, one number out at the last position
local Regressor = lab.nn.class("ICLRegressor")
function Regressor:init(opts)
  self.inp = self:add_child("inp", lab.nn.Linear(opts.d + 1, opts.dim))
  self.blocks = {}
  for i = 1, opts.layers do
    self.blocks[i] = self:add_child("block" .. i, lab.nn.TransformerBlock{ dim = opts.dim, heads = opts.heads,
      variant = opts.variant, causal = opts.causal ~= false, attention = opts.attention })
  end
  self.ln = self:add_child("ln", lab.nn.LayerNorm(opts.dim))
  self.out = self:add_child("out", lab.nn.Linear(opts.dim, 1))
end
function Regressor:forward(tokens)
  local x = self.inp(tokens)
  for _, block in ipairs(self.blocks) do x = block(x) end
  local last = x:narrow(2, x:size(2), 1)
  return self.out(self.ln(last)):reshape{ tokens:size(1) }
end
local function icl_tokens(b) return lab.cat({ b.Z, b.zq }, 2) end

-- train(model, batch_fn, loss_fn, tag): returns the final loss (mean of the last 10%), ms/step, peak MiB
local function train(model, batch_fn, loss_fn, tag)
  local opt = lab.optim.AdamW(model:parameters(), { lr = cfg.lr, weight_decay = 0.01 })
  collectgarbage()
  lab.reset_memory_peak()
  local base = lab.memory().in_use
  local tail, tail_n = 0, 0
  local t0 = lab.time()
  for step = 1, cfg.steps do
    local loss = loss_fn(model, batch_fn())
    opt:zero_grad()
    loss:backward()
    lab.optim.clip_grad_norm(model:parameters(), 1.0)
    opt:step()
    local l = loss:item()
    if step > cfg.steps * 0.9 then tail, tail_n = tail + l, tail_n + 1 end
    if step % cfg.log_every == 0 or step == cfg.steps then run:log(step, { run = tag, loss = l }) end
  end
  local ms = (lab.time() - t0) * 1e3 / cfg.steps
  return tail / math.max(tail_n, 1), ms, (lab.memory().peak - base) / 1048576
end

local results, rows = {}, {}
local tasks = {}
for _, t in ipairs(list(cfg.tasks)) do tasks[t] = true end
for _, variant in ipairs(variants) do
  local setup = setups[variant] or {}
  local r = { variant = variant, options = setup.opts or {}, causal = setup.causal ~= false, skipped = setup.skip }
  io.stderr:write(string.format("== %s\n", variant))
  local ok, err = pcall(function()
    if tasks.icl and not (setup.skip and setup.skip.icl) then
      lab.seed(cfg.seed)
      local model = Regressor{ d = cfg.d, dim = cfg.dim, heads = cfg.heads, layers = cfg.layers, variant = variant,
                               attention = setup.opts, causal = setup.causal }
      local loss, ms, peak = train(model, function() return icl.batch(cfg.batch, cfg.icl_L, cfg.d, cfg.sigma2) end,
        function(m, b) return lab.mse(m(icl_tokens(b)), b.yq) end, variant .. "/icl")
      r.icl = { train_loss = loss, ms_per_step = ms, peak_MiB = peak, mse = {}, ridge = {} }
      lab.no_grad(function()
        for _, L in ipairs(list(cfg.icl_eval)) do
          lab.seed(cfg.seed + 1000 + L)
          local b = icl.batch(cfg.test_tasks, L, cfg.d, cfg.sigma2)
          r.icl.mse[#r.icl.mse + 1] = { L = L, model = icl.mse(model(icl_tokens(b)), b.yq), ridge = icl.mse(icl.baselines.ridge(b, cfg.sigma2), b.yq) }
        end
      end)
    end
    if tasks.mqar and not (setup.skip and setup.skip.mqar) then
      lab.seed(cfg.seed)
      math.randomseed(cfg.seed)
      local model = mqar.Model{ vocab = cfg.mqar_vocab, dim = cfg.dim, heads = cfg.heads, layers = cfg.layers, variant = variant,
                                attention = setup.opts }
      local loss, ms, peak = train(model, function() return { mqar.batch(cfg.batch, cfg.mqar_pairs, cfg.mqar_vocab) } end,
        function(m, b) return lab.cross_entropy(m(b[1]), b[2], { ignore = mqar.ignore }) end, variant .. "/mqar")
      r.mqar = { train_loss = loss, ms_per_step = ms, peak_MiB = peak, accuracy = {} }
      lab.no_grad(function()
        for _, P in ipairs(list(cfg.mqar_eval)) do
          math.randomseed(cfg.seed + 1000 + P)
          local ids, targets = mqar.batch(cfg.mqar_test, P, math.max(cfg.mqar_vocab, 4 * P))
          if 4 * P > cfg.mqar_vocab then
            r.mqar.accuracy[#r.mqar.accuracy + 1] = { pairs = P, accuracy = "vocabulary too small" }
          else
            r.mqar.accuracy[#r.mqar.accuracy + 1] = { pairs = P, accuracy = mqar.accuracy(model(ids), targets) }
          end
        end
      end)
    end
  end)
  if not ok then r.error = tostring(err) io.stderr:write("   failed: " .. r.error .. "\n") end
  results[#results + 1] = r
end

-- the table
local eval_L, eval_P = list(cfg.icl_eval), list(cfg.mqar_eval)
local head = { "| variant | options |" }
local rule = { "|---|---|" }
if tasks.icl then
  head[#head + 1] = " ICL MSE at L = " .. table.concat(eval_L, " / ") .. " (ridge) | ICL ms/step | ICL peak MiB |"
  rule[#rule + 1] = "---|---|---|"
end
if tasks.mqar then
  head[#head + 1] = " MQAR accuracy at " .. table.concat(eval_P, " / ") .. " pairs | MQAR ms/step | MQAR peak MiB |"
  rule[#rule + 1] = "---|---|---|"
end
local function opts_string(o)
  local parts = {}
  for key, val in pairs(o) do parts[#parts + 1] = key .. "=" .. tostring(val) end
  table.sort(parts)
  return #parts > 0 and table.concat(parts, ", ") or "-"
end
-- each task's score cell, one entry per evaluation: ICL's MSE (ridge's in brackets), MQAR's accuracy
local task_scores = {
  icl = function(t)
    local m = {}
    for i, e in ipairs(t.mse) do m[i] = string.format("%.3f (%.3f)", e.model, e.ridge) end
    return m
  end,
  mqar = function(t)
    local a = {}
    for i, e in ipairs(t.accuracy) do a[i] = type(e.accuracy) == "number" and string.format("%.3f", e.accuracy) or "-" end
    return a
  end,
}
for _, r in ipairs(results) do
  local cells = { string.format("| %s | %s%s |", r.variant, opts_string(r.options), r.causal and "" or " (not causal)") }
  if r.error then
    cells[#cells + 1] = " failed: " .. r.error:gsub("|", "/"):gsub("\n", " ") .. " |"
  else
    for _, task in ipairs{ "icl", "mqar" } do
      local t = r[task]
      if tasks[task] and not t then cells[#cells + 1] = " not run: " .. r.skipped[task] .. " | | |" end
      if t then
        cells[#cells + 1] = string.format(" %s | %.2f | %.1f |", table.concat(task_scores[task](t), " / "), t.ms_per_step, t.peak_MiB)
      end
    end
  end
  rows[#rows + 1] = table.concat(cells)
end
local md = table.concat({
  string.format("Attention variants on two tasks: %d-layer causal transformer, dim %d, %d heads, %d steps of batch %d, AdamW %g, seed %d.",
    cfg.layers, cfg.dim, cfg.heads, cfg.steps, cfg.batch, cfg.lr, cfg.seed),
  string.format("ICL: d = %d, trained at L = %d, MSE on %d fresh tasks (ridge = Bayes-optimal). MQAR: vocabulary %d, trained with %d pairs, accuracy on %d sequences.",
    cfg.d, cfg.icl_L, cfg.test_tasks, cfg.mqar_vocab, cfg.mqar_pairs, cfg.mqar_test),
  "", table.concat(head), table.concat(rule),
}, "\n") .. "\n" .. table.concat(rows, "\n") .. "\n"
lab.write_file_atomic(run.dir .. "/table.md", md)
run:summary({ results = results, table = md })
io.stderr:write(md)
run:finish()
