-- Multi-digit multiplication: why plain fine-tuning fails, and what fixes it.
-- (One script, over 500 lines, on purpose: a study is one training run a reader follows top to
-- bottom: config, model and its three regimes, evaluation, probe, attribution, report.)
--
-- Reproduces (scaled down) Bai et al. 2025, "Why Can't Transformers Learn Multiplication?
-- Reverse-Engineering Reveals Long-Range Dependency Pitfalls" (arXiv 2510.00184), on the data of
-- lua/attnlab/tasks/multiplication.lua (Deng et al.'s ICoT format, digits least significant first).
-- Three regimes, config key `mode`:
--   sft   answer only (`a * b || #### c0 .. c{2d-1} <end>`), cross-entropy on the tokens after `||`;
--   icot  stepwise internalisation (Deng et al. 2024): the full chain of thought at first, then
--         `icot_per_epoch` CoT tokens removed from the left every `icot_epoch_steps` steps (one more
--         every icot_epoch_steps / icot_per_epoch steps), removal smoothing lambda `icot_lambda`,
--         the optimiser reset whenever the removal count increases; with `icot_gate` > 0 one more
--         token only after an evaluation whose exact match reached it (and not sooner than the
--         schedule's pace);
--   aux   sft plus the running-sum auxiliary loss: for each of the first `aux_heads` heads of layer
--         `aux_layer` a Linear(head_dim, 1, bias = false) reads the head's output at the position
--         that predicts c_k and regresses c_hat_k / aux_scale; loss = LM + aux_weight * mean over
--         heads and answer positions of the squared error.
--
--   attnlab run experiments/multiplication.lua mode=sft digits=3
--   attnlab run experiments/multiplication.lua mode=aux digits=3 steps=30000
--   attnlab run experiments/multiplication.lua quick=true mode=icot        a minute or two
--   attnlab run experiments/multiplication.lua resume=runs/multiplication/<run>/checkpoint.safetensors
--
-- Writes metrics.jsonl (loss, aux_loss, loss_c0 .. per answer position every log_every steps;
-- exact_match, acc_c0 .. on the held-out set every eval_every steps), summary.json (exact match,
-- digit accuracy / loss per position, the c_hat probe's MAE, the logit-attribution matrix, times),
-- records.bin for the viewer (answer attention per layer and head, the attribution heatmap) and
-- report.md with PNG plots drawn here.  docs/multiplication.md has the study's usage.
local lab = require "attnlab"
local mult = require "attnlab.tasks.multiplication"
local json = lab.json

local run = lab.run.start{
  name = "multiplication",
  -- checked before the run directory is made: a mistyped mode is one clear line and no directory
  kinds = { mode = { "sft", "icot", "aux" }, init = { "gpt2", "default" }, loss_on = { "all", "answer" }, digits = "integer", layers = "integer", heads = "integer",
            width = "integer", aux_heads = "integer", aux_layer = "integer", test_size = "integer",
            icot_epoch_steps = "integer", icot_per_epoch = "integer", probe_size = "integer", lr_hold_at = "integer",
            attribution_size = "integer", train_size = "integer" },
  config = {
    mode = "aux",               -- sft | icot | aux
    digits = 4,                 -- operand digits (3 and 5 work too)
    steps = 30000,
    batch = 128,
    lr = 1e-3,
    warmup = 0,                 -- steps of linear lr warmup (0: none)
    decay_start = 0,            -- from this step the lr falls linearly to lr_final (0: constant lr) ...
    decay_end = 0,              -- ... reached at this step and kept after it (0: the last step)
    lr_final = 1e-4,            -- the lr the decay ends at
    lr_schedule = "",           -- instead of decay_*: piecewise-linear knots "step:lr,step:lr,...", lr before the
                                -- first knot and the last knot's lr after the last one
    lr_hold_at = 0,             -- with lr_hold_until: at this step the schedule's clock stops, the lr held at its
    lr_hold_until = 0,          -- value there, until an evaluation finds every answer digit's held-out accuracy at
                                -- lr_hold_until or more; then the schedule goes on from that step (a decay that
                                -- waits for the digits, not for a step)
    weight_decay = 0.01,        -- AdamW's decoupled decay
    grad_clip = 1.0,            -- global gradient-norm clip (0: none)
    aux_weight = 10,            -- lambda of the running-sum loss (mode=aux)
    aux_heads = 2,              -- heads 1..aux_heads of layer aux_layer carry a regression
    aux_layer = 2,
    aux_scale = 100,            -- target c_hat / aux_scale
    layers = 2, heads = 4, width = 128, mlp_ratio = 4,
    tied = true,                -- tied unembedding
    init = "gpt2",              -- gpt2: N(0, 0.02^2) weights; default: the modules' own (PyTorch's) initialisation
    loss_on = "all",            -- all: every token after ||; answer: only the 2d answer digits (mult_aux.py's loss)
    train_size = 0,             -- 0: a fresh problem every draw; N: a fixed set of N, in epochs
    seed = 1,
    test_size = 1000,           -- held-out problems (never drawn for training)
    eval_every = 1000,
    log_every = 100,
    icot_epoch_steps = 2000,    -- mode=icot: steps per "epoch" of the removal schedule
    icot_per_epoch = 8,         -- CoT tokens removed per epoch (B.4: 8)
    icot_lambda = 4,            -- removal smoothing: o extra tokens with P(o) ~ e^(-lambda o)
    icot_reset = true,          -- reset the optimiser when the removal count increases
    icot_gate = 0,              -- 0: remove on the schedule; g in (0, 1]: one more token only once the
                                -- held-out exact match (greedy) has reached g, and at most one every
                                -- icot_epoch_steps / icot_per_epoch steps
    probe_size = 2048,          -- training-side problems the c_hat probe is fitted on
    probe_ridge = 1e-3,         -- ridge of the probe's least squares (times the number of rows)
    attribution_size = 200,     -- test problems of the logit-attribution matrix
    quick = false,              -- a run of a minute or two (small model and sets; see QUICK)
    viz = true,                 -- publish to the viewer (lab.viz, rate limited)
    report = true,              -- write report.md with PNG plots
  },
}
local cfg = run.config

-- quick = true: a run of a minute or two.  Keys given on the command line keep their values.  The
-- resolved values are what config.json and the checkpoints hold, so a resumed run (whose config
-- comes from its checkpoint) does not apply them again.
local QUICK = { steps = 600, digits = 3, width = 64, batch = 64, test_size = 300, eval_every = 200, log_every = 20,
                probe_size = 512, attribution_size = 64, icot_epoch_steps = 96, lr = 2e-3 }
if cfg.quick and not run.resumed_from then
  local cli = rawget(_G, "ATTNLAB_CLI") or {}
  local given = cli.overrides or {}
  for k, v in pairs(QUICK) do if given[k] == nil then cfg[k] = v end end
  run.log_every = cfg.log_every          -- run:should_log reads it
  local path = run.dir .. "/config.json"
  local f = io.open(path, "rb")
  if f then
    local ok, c = pcall(json.decode, f:read("*a"))
    f:close()
    if ok and type(c) == "table" then c.config = cfg; lab.write_file_atomic(path, json.encode(c, 2) .. "\n") end
  end
end

local function config_error(msg) error("multiplication: " .. msg, 0) end
do
  if cfg.digits ~= math.floor(cfg.digits) or cfg.digits < 2 or cfg.digits > 9 then config_error("digits must be an integer from 2 to 9") end
  for _, k in ipairs{ "steps", "batch", "layers", "heads", "width", "test_size", "eval_every", "log_every",
                      "icot_epoch_steps", "icot_per_epoch", "probe_size", "attribution_size" } do
    if cfg[k] ~= math.floor(cfg[k]) or cfg[k] < 1 then config_error(k .. " must be a positive integer (got " .. tostring(cfg[k]) .. ")") end
  end
  if cfg.width % cfg.heads ~= 0 then config_error(string.format("width (%d) must be a multiple of heads (%d)", cfg.width, cfg.heads)) end
  if cfg.loss_on == "answer" and cfg.mode == "icot" then
    config_error("loss_on=answer drops the chain of thought's loss, which mode=icot trains on; use loss_on=all")
  end
  if cfg.mode == "aux" then
    if cfg.aux_heads < 1 or cfg.aux_heads > cfg.heads then config_error("aux_heads must be from 1 to heads") end
    if cfg.aux_layer < 1 or cfg.aux_layer > cfg.layers then config_error("aux_layer must be from 1 to layers") end
    if cfg.aux_scale <= 0 then config_error("aux_scale must be positive") end
  end
  if cfg.decay_start ~= math.floor(cfg.decay_start) or cfg.decay_start < 0 or (cfg.decay_start > 0 and cfg.decay_start >= cfg.steps) then
    config_error(string.format("decay_start must be 0 (no decay) or a step before the last (steps = %d; got %s)", cfg.steps, tostring(cfg.decay_start)))
  end
  if cfg.decay_end ~= 0 and (cfg.decay_end ~= math.floor(cfg.decay_end) or cfg.decay_end <= cfg.decay_start or cfg.decay_end > cfg.steps) then
    config_error(string.format("decay_end must be 0 (the last step) or a step after decay_start (%d) and at most steps (%d); got %s",
      cfg.decay_start, cfg.steps, tostring(cfg.decay_end)))
  end
  if cfg.decay_start > 0 and not (cfg.lr_final >= 0 and cfg.lr_final <= cfg.lr) then
    config_error(string.format("lr_final must be from 0 to lr (%g; got %s)", cfg.lr, tostring(cfg.lr_final)))
  end
  if cfg.lr_schedule ~= "" and cfg.decay_start > 0 then
    config_error("lr_schedule and decay_start both set the decay; give one of them (decay_start=0 with lr_schedule)")
  end
  if cfg.lr_hold_at < 0 then config_error("lr_hold_at must be a step, 0 for no hold (got " .. cfg.lr_hold_at .. ")") end
  if not (cfg.lr_hold_until >= 0 and cfg.lr_hold_until <= 1) then
    config_error("lr_hold_until must be a digit accuracy in (0, 1], 0 for no hold (got " .. tostring(cfg.lr_hold_until) .. ")")
  end
  if (cfg.lr_hold_at > 0) ~= (cfg.lr_hold_until > 0) then
    config_error(string.format("lr_hold_at (%d) and lr_hold_until (%g) go together: the step the lr is held at and the digit accuracy that releases it",
      cfg.lr_hold_at, cfg.lr_hold_until))
  end
  if cfg.lr_hold_at > 0 then
    if cfg.lr_hold_at > cfg.steps or cfg.lr_hold_at < cfg.warmup then
      config_error(string.format("lr_hold_at (%d) must lie between the end of the warmup (%d) and steps (%d)", cfg.lr_hold_at, cfg.warmup, cfg.steps))
    end
    if cfg.lr_schedule == "" and cfg.decay_start == 0 then
      config_error("lr_hold_at holds a schedule that is not there: the lr is constant without lr_schedule or decay_start")
    end
  end
  if not (cfg.icot_gate >= 0 and cfg.icot_gate <= 1) then
    config_error("icot_gate must be 0 (the fixed schedule) or an exact-match fraction in (0, 1] (got " .. tostring(cfg.icot_gate) .. ")")
  end
  if cfg.icot_gate > 0 and cfg.mode ~= "icot" then
    config_error("icot_gate gates the removal of CoT tokens: it takes mode=icot (got mode=" .. cfg.mode .. ")")
  end
  if cfg.icot_epoch_steps % cfg.icot_per_epoch ~= 0 and cfg.mode == "icot" then
    config_error("icot_epoch_steps must be a multiple of icot_per_epoch (one more token every icot_epoch_steps / icot_per_epoch steps)")
  end
end

local function parse_lr_schedule(text)
  local knots = {}
  for item in (text .. ","):gmatch("([^,]*),") do
    local s, v = item:match("^%s*(%d+)%s*:%s*([%d%.eE+-]+)%s*$")
    s, v = tonumber(s), tonumber(v)
    if not s or not v then
      config_error(string.format("lr_schedule: '%s' is not step:lr (the whole value: '%s')", item, text))
    end
    if #knots > 0 and s <= knots[#knots][1] then
      config_error(string.format("lr_schedule: the steps must increase (%d after %d)", s, knots[#knots][1]))
    end
    if v < 0 or s > cfg.steps then
      config_error(string.format("lr_schedule: knot %d:%g needs a step of at most steps (%d) and an lr of at least 0", s, v, cfg.steps))
    end
    knots[#knots + 1] = { s, v }
  end
  return knots
end
-- the knots of lr_schedule, checked here so that a mistyped schedule fails before the model is built
local lr_knots = cfg.lr_schedule ~= "" and parse_lr_schedule(cfg.lr_schedule) or nil


local D = cfg.digits
local D2 = 2 * D
local COT = mult.cot_length(D)
local V = mult.vocab_size
local CONTEXT = 4 * D + 4 + COT                      -- the longest sequence (full CoT), minus one
local PROBE_LAYER = math.min(2, cfg.layers)
local t_start = lab.time()

---------------------------------------------------------------------------------------------------
-- model, auxiliary regressions, optimiser, data
---------------------------------------------------------------------------------------------------
local model = lab.nn.GPT{ vocab = V, context = CONTEXT, layers = cfg.layers, heads = cfg.heads, width = cfg.width,
                          mlp_ratio = cfg.mlp_ratio, tied = cfg.tied, init = cfg.init }
local head_dim = cfg.width / cfg.heads

local Aux = lab.nn.class("AuxRegressions")
function Aux:init(n, dim)
  self.n = n
  for h = 1, n do self:add_child("head" .. h, lab.nn.Linear(dim, 1, { bias = false })) end
end
-- z (B, H, T, hd) with its gradient, batch: c_hat_k / scale regressed from each aux head's output
-- at the position that predicts c_k; the mean over heads and positions of the squared error
function Aux:forward(z, b, scale)
  local idx = b.answer_pos:reshape{ b.B, 1, D2, 1 }:expand{ b.B, 1, D2, head_dim }
  local target = (b.c_hat / scale):reshape{ b.B, D2, 1 }
  local total
  for h = 1, self.n do
    local zh = z:narrow(2, h, 1):gather(3, idx):reshape{ b.B, D2, head_dim }
    local l = lab.mse(self.children["head" .. h](zh), target)
    total = total and total + l or l
  end
  return total / self.n
end
local aux = cfg.mode == "aux" and Aux(cfg.aux_heads, head_dim) or nil

local params = model:parameters()
if aux then for _, p in ipairs(aux:parameters()) do params[#params + 1] = p end end
local opt = lab.optim.AdamW(params, { lr = cfg.lr, weight_decay = cfg.weight_decay })
local gen = mult.generator{ digits = D, seed = cfg.seed, train_size = cfg.train_size }

-- What a checkpoint needs beyond the model and the optimiser: the generator's draw counter and the
-- running means of the current log window (so a resumed run logs the same numbers).
local window = { n = 0, loss = 0, lm = 0, aux = 0, c = {} }
local function reset_window()
  window.n, window.loss, window.lm, window.aux = 0, 0, 0, 0
  for k = 1, D2 do window.c[k] = 0 end
end
reset_window()
-- icot_gate > 0: the tokens removed so far and the step of the last removal (checkpointed)
local gate = { removed = 0, since = 0 }
-- lr_hold_at > 0: the step of the evaluation that released the held lr (0: still held; checkpointed)
local hold = { released = 0 }
local study = {
  state_dict = function()
    local c = {}
    for k = 1, D2 do c["c" .. (k - 1)] = window.c[k] end
    return { generator = gen:state(), n = window.n, loss = window.loss, lm = window.lm, aux = window.aux, c = c,
             gate_removed = gate.removed, gate_since = gate.since, lr_released_at = hold.released }
  end,
  load_state_dict = function(_, s)
    gen:set_state(s.generator)
    window.n, window.loss, window.lm, window.aux = s.n, s.loss, s.lm, s.aux
    for k = 1, D2 do window.c[k] = s.c["c" .. (k - 1)] end
    gate.removed, gate.since = s.gate_removed or 0, s.gate_since or 0
    hold.released = s.lr_released_at or 0
  end,
}
local tracked = { model = model, optim = opt, study = study }
if aux then tracked.aux = aux end
run:track(tracked)
run:attention_layers(model:attention_modules())

-- ICoT: CoT tokens removed at a step (before smoothing): on the schedule, a function of the step;
-- gated, the count the last evaluations have earned (the same for every step until the next one)
local steps_per_token = cfg.icot_epoch_steps / cfg.icot_per_epoch
local function removal(step)
  if cfg.mode ~= "icot" then return COT end
  if cfg.icot_gate > 0 then return gate.removed end
  return math.min(COT, math.floor(math.max(step - 1, 0) / steps_per_token))
end
-- Deng et al.: the optimiser reset whenever the removal count grows (with icot_reset)
local function removal_grew()
  if cfg.icot_reset then opt.state, opt.t = {}, 0 end
end
-- after an evaluation at `step` with greedy exact match `exact`: one more token when the gate is open
local function open_gate(step, exact)
  if cfg.icot_gate <= 0 or gate.removed >= COT or exact < cfg.icot_gate or step - gate.since < steps_per_token then return end
  gate.removed, gate.since = gate.removed + 1, step
  removal_grew()
end

local function train_batch(step)
  if cfg.mode == "icot" then
    return gen:batch(cfg.batch, { mode = "icot", remove = removal(step), smoothing = cfg.icot_lambda })
  end
  return gen:batch(cfg.batch, { mode = "sft" })
end

-- the batch a trained model is scored on, teacher-forced: the answer-only layout, or for icot
-- before the CoT is gone the current removal without smoothing (the true remaining CoT given)
local function scored_batch(problems, step)
  local r = removal(step)
  if r >= COT then return mult.batch(problems, { mode = "sft" }) end
  return mult.batch(problems, { mode = "icot", remove = r })
end

-- per-answer-position cross-entropy (2d values) of logits (B, T, V) against the batch's answer
local function position_losses(logits, b)
  local la = mult.at_answers(logits, b):log_softmax(-1)
  return la:gather(3, b.answer:unsqueeze(3)):reshape{ b.B, D2 }:mean(1):neg()
end

---------------------------------------------------------------------------------------------------
-- evaluation on held-out problems
---------------------------------------------------------------------------------------------------
local test_problems = gen:test(cfg.test_size)
local CHUNK = 250

local function chunks(list, n)
  local out = {}
  for i = 1, #list, n do
    local c = {}
    for j = i, math.min(#list, i + n - 1) do c[#c + 1] = list[j] end
    out[#out + 1] = c
  end
  return out
end

-- Greedy decoding from `input ||` (icot with some CoT left): exact match and per-digit accuracy
-- of the 2d digits after the first `####` the model writes.
local function greedy(problems, step)
  local hits, correct, n = 0, {}, 0
  for k = 1, D2 do correct[k] = 0 end
  local max_new = (COT - removal(step)) + D2 + 2
  for _, chunk in ipairs(chunks(problems, CHUNK)) do
    local b = mult.batch(chunk, { mode = "sft" })
    local P = 2 * D + 2                                    -- input and `||`
    local ids = b.inputs:narrow(2, 1, P):contiguous()
    local rows = ids:totable()
    for _ = 1, math.min(max_new, CONTEXT - P) do
      local logits = model(ids)
      local T = ids:size(2)
      local next_ids = logits:narrow(2, T, 1):argmax(-1)  -- (B, 1)
      ids = lab.cat({ ids, next_ids:reshape{ b.B, 1 } }, 2):contiguous()
    end
    rows = ids:totable()
    for i, row in ipairs(rows) do
      local start
      for t = P + 1, #row do if row[t] == mult.ANS then start = t break end end
      local all = start ~= nil
      for k = 1, D2 do
        local ok = start ~= nil and row[start + k] == b.answer:get(i, k)
        if ok then correct[k] = correct[k] + 1 else all = false end
      end
      if all then hits = hits + 1 end
      n = n + 1
    end
  end
  local acc = {}
  for k = 1, D2 do acc[k] = correct[k] / n end
  return hits / n, acc
end

-- Teacher-forced scoring: exact match, per-position accuracy and loss (exact for the answer-only
-- layout: greedy decoding writes nothing before the answer).
local function teacher_forced(problems, step)
  local hits, n, acc, loss = 0, 0, {}, {}
  for k = 1, D2 do acc[k], loss[k] = 0, 0 end
  for _, chunk in ipairs(chunks(problems, CHUNK)) do
    local b = scored_batch(chunk, step)
    local logits = model(b.inputs)
    local pred = mult.at_answers(logits, b):argmax(-1):reshape{ b.B, D2 }
    local eq = pred:eq(b.answer):float()
    local per = eq:sum(1):totable()
    local rowsum = eq:sum(2):totable()
    local pl = position_losses(logits, b):totable()
    for k = 1, D2 do acc[k] = acc[k] + per[k]; loss[k] = loss[k] + pl[k] * b.B end
    for i = 1, b.B do if rowsum[i] == D2 then hits = hits + 1 end end
    n = n + b.B
  end
  for k = 1, D2 do acc[k], loss[k] = acc[k] / n, loss[k] / n end
  return hits / n, acc, loss
end

local function evaluate(step, problems)
  return lab.no_grad(function()
    local em_tf, acc_tf, loss = teacher_forced(problems, step)
    if removal(step) >= COT then return { exact = em_tf, acc = acc_tf, loss = loss, method = "teacher_forced" } end
    local em, acc = greedy(problems, step)
    return { exact = em, acc = acc, loss = loss, method = "greedy", exact_teacher_forced = em_tf }
  end)
end

---------------------------------------------------------------------------------------------------
-- analysis: the c_hat probe and the logit attribution
---------------------------------------------------------------------------------------------------

-- features (N, 2d, W+1) of layer PROBE_LAYER's resid_mid at the answer positions (plus a 1)
local function probe_features(problems, step, input_pos)
  local feats, chats = {}, {}
  local name = "blocks." .. PROBE_LAYER .. ".resid_mid"
  for _, chunk in ipairs(chunks(problems, CHUNK)) do
    local b = scored_batch(chunk, step)
    local _, cache = model:run_with_cache(b.inputs, { names = { name } })
    local x = mult.at_answers(cache[name], b, { input = input_pos })
    feats[#feats + 1] = lab.cat({ x, lab.ones{ b.B, D2, 1 } }, 3)
    chats[#chats + 1] = b.c_hat
  end
  return lab.cat(feats, 1):double(), lab.cat(chats, 1):double()
end

-- B.6: a linear probe per answer position for c_hat_k (unscaled), fitted by ridge least squares
-- on training-side problems the model never trained on (a generator of another seed), scored on
-- the test problems: mean |prediction - c_hat_k| per position.
local function probe_mae(step, input_pos)
  return lab.no_grad(function()
    local pgen = mult.generator{ digits = D, seed = cfg.seed + 1000003 }
    local X, Y = probe_features(pgen:problems(cfg.probe_size), step, input_pos)
    local Xk = X:permute(2, 1, 3):contiguous()                          -- (2d, N, W+1)
    local Yk = Y:t():contiguous():reshape{ D2, cfg.probe_size, 1 }
    local F = Xk:size(3)
    local A = Xk:transpose(2, 3):matmul(Xk) + lab.eye(F):double() * (cfg.probe_ridge * cfg.probe_size)
    local beta = lab.solve(A, Xk:transpose(2, 3):matmul(Yk))            -- (2d, W+1, 1)
    local Xt, Yt = probe_features(test_problems, step, input_pos)
    local pred = Xt:permute(2, 1, 3):matmul(beta):reshape{ D2, #test_problems }
    local mae = (pred - Yt:t()):abs():mean(2):totable()
    return mae
  end)
end

-- Logit attribution (B.6): for each operand digit (a_0 .. a_{d-1}, b_0 .. b_{d-1}) replace it in
-- the input by another digit at random (a leading digit stays nonzero), keep the rest of the
-- sequence, and take the mean |change| of the correct answer digit's logit at each c_k position.
-- The replacement digits come from the data's hash (seed, a fixed stream), not lab's generator.
local function attribution(step, n)
  return lab.no_grad(function()
    local problems = {}
    for i = 1, math.min(n, #test_problems) do problems[i] = test_problems[i] end
    local b = scored_batch(problems, step)
    local function answer_logits(ids)
      local la = mult.at_answers(model(ids), b)
      return la:gather(3, b.answer:unsqueeze(3)):reshape{ b.B, D2 }
    end
    local base = answer_logits(b.inputs)
    local rows = b.inputs:totable()
    local M = {}
    for o = 1, 2 * D do
      local pos = o <= D and o or o + 1                 -- a_i at t = i+1, `*` at d+1, b_j at d+2+j
      local leading = (o == D) or (o == 2 * D)
      local mod = {}
      for i, row in ipairs(rows) do
        local r = {}
        for t = 1, #row do r[t] = row[t] end
        local old = mult.id_digit(row[pos])
        local choices = {}
        for dgt = leading and 1 or 0, 9 do if dgt ~= old then choices[#choices + 1] = dgt end end
        local u = mult._uniform(cfg.seed, 77, i, o)
        r[pos] = mult.digit_id(choices[1 + math.floor(u * #choices)])
        mod[i] = r
      end
      local changed = answer_logits(lab.tensor(mod, "int64"))
      M[o] = (changed - base):abs():mean(1):totable()
    end
    return M
  end)
end

local OPERANDS, ANSWERS = {}, {}
for i = 0, D - 1 do OPERANDS[i + 1] = "a" .. i; OPERANDS[D + i + 1] = "b" .. i end
for k = 0, D2 - 1 do ANSWERS[k + 1] = "c" .. k end

---------------------------------------------------------------------------------------------------
-- the viewer: each answer digit's attention over the earlier positions, per layer and head; the
-- attribution heatmap.  Per-position loss curves are the loss_c* scalars of metrics.jsonl.
---------------------------------------------------------------------------------------------------
local viz = lab.viz
local function publish(step, matrix)
  if not (cfg.viz and viz.enabled()) then return end
  lab.no_grad(function()
    local p = test_problems[1]
    local b = scored_batch({ p }, step)
    local names = {}
    for l = 1, cfg.layers do names[l] = "blocks." .. l .. ".attn.pattern" end
    local _, cache = model:run_with_cache(b.inputs, { names = names })
    local r = removal(step)
    local pos_names = mult.position_names(mult.problem(p.a, p.b, D), r >= COT and "sft" or "icot", r < COT and r or nil)
    local keys = {}
    for t = 1, b.T do keys[t] = pos_names[t] end
    local first = b.answer_pos:get(1, 1)
    for l = 1, cfg.layers do
      local map = cache[names[l]]:narrow(3, first, D2)         -- (1, H, 2d, T): c_k's query row
      viz.attention("answer attention", map, { layer = l, force = true,
        tokens = { queries = ANSWERS, keys = keys } })
    end
    if matrix then viz.matrix("logit attribution (operand x c_k)", lab.tensor(matrix), { force = true }) end
  end)
end

---------------------------------------------------------------------------------------------------
-- training
---------------------------------------------------------------------------------------------------
local history = {}        -- eval records of this process (the report reads metrics.jsonl)
local last_eval
-- The schedule's clock: the step, except that with lr_hold_at it stops there until an evaluation
-- releases it, and then runs on from lr_hold_at (so the decay after the hold keeps its length).
local function schedule_clock(step)
  if cfg.lr_hold_at <= 0 or step <= cfg.lr_hold_at then return step end
  if hold.released == 0 then return cfg.lr_hold_at end
  return cfg.lr_hold_at + (step - hold.released)   -- released at or after lr_hold_at
end
-- after an evaluation at `step`: the held lr is released once every answer digit reaches lr_hold_until
local function release_hold(step, acc)
  if cfg.lr_hold_at <= 0 or hold.released > 0 or step < cfg.lr_hold_at then return end
  for k = 1, D2 do if acc[k] < cfg.lr_hold_until then return end end
  hold.released = step
end

-- warmup (linear from 0), then constant, then (decay_start > 0) linear down to lr_final at decay_end
-- (0: the last step) and lr_final after it, or the knots of lr_schedule; a function of the schedule's
-- clock, which the checkpoint restores, so resume= continues the schedule exactly
local function learning_rate(step)
  if cfg.warmup > 0 and step < cfg.warmup then return cfg.lr * step / cfg.warmup end
  step = schedule_clock(step)
  if lr_knots then
    if step <= lr_knots[1][1] then return cfg.lr end
    for i = 2, #lr_knots do
      local a, b = lr_knots[i - 1], lr_knots[i]
      if step <= b[1] then return a[2] + (b[2] - a[2]) * (step - a[1]) / (b[1] - a[1]) end
    end
    return lr_knots[#lr_knots][2]
  end
  if cfg.decay_start > 0 and step > cfg.decay_start then
    local finish = cfg.decay_end > 0 and cfg.decay_end or cfg.steps
    local f = math.min(1, (step - cfg.decay_start) / (finish - cfg.decay_start))
    return cfg.lr + (cfg.lr_final - cfg.lr) * f
  end
  return cfg.lr
end

local t_loop = lab.time()
local first_step

for step in run:steps(cfg.steps) do
  first_step = first_step or step
  if cfg.mode == "icot" and cfg.icot_gate <= 0 and removal(step) > removal(step - 1) then removal_grew() end
  opt.hyper.lr = learning_rate(step)
  local b = train_batch(step)
  local z
  local logits
  if aux then
    logits = model:run_with_hooks(b.inputs, { ["blocks." .. cfg.aux_layer .. ".attn.head_out"] = function(t) z = t end })
  else
    logits = model(b.inputs)
  end
  local lm
  if cfg.loss_on == "answer" then
    lm = lab.cross_entropy(mult.at_answers(logits, b):reshape{ b.B * D2, V }, b.answer:reshape{ -1 })
  else
    lm = lab.cross_entropy(logits:reshape{ b.B * b.T, V }, b.targets:reshape{ -1 }, { ignore = mult.ignore })
  end
  local loss, aux_loss = lm, nil
  if aux then
    aux_loss = aux(z, b, cfg.aux_scale)
    loss = lm + aux_loss * cfg.aux_weight
  end
  opt:zero_grad()
  loss:backward()
  if cfg.grad_clip > 0 then lab.optim.clip_grad_norm(params, cfg.grad_clip) end
  opt:step()

  local pl = lab.no_grad(function() return position_losses(logits:detach(), b):totable() end)
  window.n = window.n + 1
  window.loss = window.loss + loss:item()
  window.lm = window.lm + lm:item()
  window.aux = window.aux + (aux_loss and aux_loss:item() or 0)
  for k = 1, D2 do window.c[k] = window.c[k] + pl[k] end

  local rec
  if run:should_log(step) then
    rec = { loss = window.loss / window.n, lm_loss = window.lm / window.n, lr = opt.hyper.lr }
    if aux then rec.aux_loss = window.aux / window.n end
    if cfg.mode == "icot" then rec.removed = removal(step) end
    for k = 1, D2 do rec["loss_c" .. (k - 1)] = window.c[k] / window.n end
    reset_window()
  end
  if step % cfg.eval_every == 0 or step == cfg.steps then
    local e = evaluate(step, test_problems)
    rec = rec or {}
    rec.exact_match = e.exact
    if e.exact_teacher_forced then rec.exact_match_teacher_forced = e.exact_teacher_forced end
    for k = 1, D2 do rec["acc_c" .. (k - 1)] = e.acc[k]; rec["test_loss_c" .. (k - 1)] = e.loss[k] end
    history[#history + 1] = { step = step, exact = e.exact }
    last_eval = e
    e.removed = removal(step)            -- the count this evaluation ran with (the summary's)
    open_gate(step, e.exact)
    release_hold(step, e.acc)
    if cfg.lr_hold_at > 0 then rec.lr_released_at = hold.released end
    if cfg.viz and viz.enabled() then publish(step, attribution(step, math.min(64, cfg.attribution_size))) end
  end
  if rec then run:log(step, rec) end
end
local train_time = lab.time() - t_loop
local steps_done = run.step - (first_step or run.step + 1) + 1

---------------------------------------------------------------------------------------------------
-- summary
---------------------------------------------------------------------------------------------------
local final_step = run.step
local e = last_eval or evaluate(final_step, test_problems)
local function by_position(list)
  local out = {}
  for k = 1, D2 do out["c" .. (k - 1)] = list[k] end
  return out
end
local mae = probe_mae(final_step, false)
local mae_in = probe_mae(final_step, true)
local M = attribution(final_step, cfg.attribution_size)
publish(final_step, M)

local effective = {}
for k, v in pairs(cfg) do effective[k] = v end
local summary = {
  mode = cfg.mode, digits = D, steps = final_step,
  exact_match = e.exact, eval_method = e.method, exact_match_teacher_forced = e.exact_teacher_forced,
  test_size = #test_problems,
  digit_accuracy = by_position(e.acc), digit_loss = by_position(e.loss),
  probe_mae = by_position(mae), probe_mae_input_pos = by_position(mae_in),
  probe_layer = PROBE_LAYER,
  attribution = { rows = OPERANDS, cols = ANSWERS, matrix = M },
  icot_removed = cfg.mode == "icot" and (e.removed or removal(final_step)) or nil,
  lr_released_at = cfg.lr_hold_at > 0 and hold.released or nil,
  parameters = model:num_parameters() + (aux and aux:num_parameters() or 0),
  wall_time_s = lab.time() - t_start, train_time_s = train_time,
  steps_this_process = steps_done, steps_per_s = steps_done > 0 and steps_done / train_time or 0,
  threads = lab.num_threads and lab.num_threads() or nil,
  config = effective,
}
run:summary(summary)

local accs = {}
for k = 1, D2 do accs[k] = string.format("%.2f", e.acc[k]) end
io.stderr:write(string.format("%s %dx%d: exact match %.3f (%s, %d held-out) | digit accuracy c0..c%d: %s | %.1f steps/s\n",
  cfg.mode, D, D, e.exact, e.method, #test_problems, D2 - 1, table.concat(accs, " "), summary.steps_per_s))

---------------------------------------------------------------------------------------------------
-- report.md with PNG plots (lab.plot: drawn by the workbench itself)
---------------------------------------------------------------------------------------------------
local Plot = lab.plot

local function read_metrics(path)
  local out = {}
  local f = io.open(path, "rb")
  if not f then return out end
  for line in f:lines() do
    local ok, r = pcall(json.decode, line)
    if ok and type(r) == "table" then out[#out + 1] = r end
  end
  f:close()
  return out
end

local function write_report()
  local dir = run.dir
  if run.metrics then run.metrics:flush() end         -- the last lines are still buffered
  local recs = read_metrics(dir .. "/metrics.jsonl")
  local loss_series, xs_eval, em_ys = {}, {}, {}
  local acc_series = {}
  local ymax = math.log(10) * 1.2
  for k = 1, D2 do
    loss_series[k] = { xs = {}, ys = {}, colour = Plot.PALETTE[(k - 1) % 10 + 1], label = "c" .. (k - 1) }
    acc_series[k] = { xs = {}, ys = {}, colour = Plot.PALETTE[(k - 1) % 10 + 1], label = "c" .. (k - 1), thick = 1 }
  end
  for _, r in ipairs(recs) do
    if r["loss_c0"] then
      for k = 1, D2 do
        local v = r["loss_c" .. (k - 1)]
        local s = loss_series[k]
        s.xs[#s.xs + 1], s.ys[#s.ys + 1] = r.step, v
        ymax = math.max(ymax, math.min(v, 4))
      end
    end
    if r.exact_match then
      xs_eval[#xs_eval + 1], em_ys[#em_ys + 1] = r.step, r.exact_match
      for k = 1, D2 do
        local s = acc_series[k]
        s.xs[#s.xs + 1], s.ys[#s.ys + 1] = r.step, r["acc_c" .. (k - 1)]
      end
    end
  end
  local xmax = math.max(1, final_step)
  Plot.lines(dir .. "/loss_per_position.png", { series = loss_series, xmin = 0, xmax = xmax, ymin = 0, ymax = ymax,
    hlines = { { y = math.log(10), colour = { 0.8, 0, 0 } } } })
  local em_series = {}
  for k = 1, D2 do em_series[k] = acc_series[k] end
  em_series[#em_series + 1] = { xs = xs_eval, ys = em_ys, colour = { 0, 0, 0 }, label = "exact", thick = 3 }
  Plot.lines(dir .. "/exact_match.png", { series = em_series, xmin = 0, xmax = xmax, ymin = 0, ymax = 1 })
  Plot.heatmap(dir .. "/attribution.png", M, OPERANDS, ANSWERS)

  local L = {}
  local function add(s) L[#L + 1] = s end
  add(string.format("# Multiplication, %d x %d digits, mode `%s`", D, D, cfg.mode))
  add("")
  add(string.format("%d steps, batch %d, %d layers x width %d x %d heads, lr %g (warmup %d%s%s), AdamW weight decay %g, seed %d%s%s.",
    final_step, cfg.batch, cfg.layers, cfg.width, cfg.heads, cfg.lr, cfg.warmup,
    cfg.decay_start > 0 and string.format(", linear decay to %g from step %d to %d", cfg.lr_final, cfg.decay_start,
      cfg.decay_end > 0 and cfg.decay_end or cfg.steps)
      or cfg.lr_schedule ~= "" and string.format(", lr piecewise linear through step:lr %s", cfg.lr_schedule) or "",
    cfg.lr_hold_at > 0 and string.format(", the schedule held at step %d until every digit's held-out accuracy reached %g (%s)",
      cfg.lr_hold_at, cfg.lr_hold_until, hold.released > 0 and "released at step " .. hold.released .. ", the schedule's steps after it shifted by " .. (hold.released - cfg.lr_hold_at) or "never released") or "",
    cfg.weight_decay, cfg.seed,
    cfg.mode == "aux" and string.format(", aux weight %g on heads 1..%d of layer %d, target c_hat/%g", cfg.aux_weight, cfg.aux_heads, cfg.aux_layer, cfg.aux_scale) or "",
    cfg.mode == "icot" and (cfg.icot_gate > 0
      and string.format(", a CoT token removed after each evaluation with exact match %g or more (at most one per %d steps), smoothing lambda %g, %d of %d removed at the last evaluation",
        cfg.icot_gate, steps_per_token, cfg.icot_lambda, summary.icot_removed, COT)
      or string.format(", %d CoT tokens per %d steps, smoothing lambda %g, %d of %d removed at the end", cfg.icot_per_epoch, cfg.icot_epoch_steps, cfg.icot_lambda, removal(final_step), COT)) or ""))
  add(string.format("Wall time %.1f s (training %.1f s, %.1f steps/s in this process).  Training data: %s.",
    summary.wall_time_s, train_time, summary.steps_per_s, cfg.train_size == 0 and "a fresh problem every draw" or cfg.train_size .. " fixed problems"))
  add("")
  add(string.format("**Exact match on %d held-out problems: %.1f%%** (%s).", #test_problems, 100 * e.exact,
    e.method == "greedy" and "greedy decoding of the remaining CoT and the answer" or "teacher-forced argmax at the answer positions, which equals greedy decoding when no CoT precedes the answer"))
  add("")
  local head = "| | " .. table.concat(ANSWERS, " | ") .. " |"
  add(head)
  add("|---" .. string.rep("|---", D2) .. "|")
  local function row(name, list, f)
    local cells = {}
    for k = 1, D2 do cells[k] = string.format(f, list[k]) end
    add("| " .. name .. " | " .. table.concat(cells, " | ") .. " |")
  end
  row("digit accuracy", e.acc, "%.3f")
  row("test loss (nats; chance ln 10 = 2.303)", e.loss, "%.3f")
  row("probe MAE, c_hat_k (predicting position)", mae, "%.2f")
  row("probe MAE, c_hat_k (position after c_k)", mae_in, "%.2f")
  add("")
  add(string.format("The probe: ridge least squares from layer %d's resid_mid at each answer position to c_hat_k (unscaled), fitted on %d training-side problems, scored on the held-out set (B.6 reports ICoT 0.6-2.0 against SFT 28-113 for c_hat_2..c_hat_6).", PROBE_LAYER, cfg.probe_size))
  add("")
  add("## Per-position training loss")
  add("")
  add("![per-position loss](loss_per_position.png)")
  add("")
  add(string.format("Cross-entropy of each answer digit c0..c%d on the training batches (mean over each log window), against the step; the dashed red line is chance, ln 10 = 2.303.  Colours: c0 blue, c1 orange, c2 green, c3 red, c4 purple, c5 brown, c6 pink, c7 grey, c8 olive, c9 cyan.", D2 - 1))
  add("")
  add("## Exact match over training")
  add("")
  add("![exact match](exact_match.png)")
  add("")
  add("Black: exact match on the held-out set; thin lines: each digit's accuracy (colours as above).")
  add("")
  add("## Logit attribution")
  add("")
  add("![attribution](attribution.png)")
  add("")
  add(string.format("Mean |change in the correct c_k logit| when one operand digit is replaced at random (%d held-out problems; rows a0..a%d, b0..b%d; columns c0..c%d; brighter = larger; the scale bar's top is the largest entry).  Under a correct algorithm a_i and b_j matter for c_k when i + j <= k.", math.min(cfg.attribution_size, #test_problems), D - 1, D - 1, D2 - 1))
  add("")
  add("| | " .. table.concat(ANSWERS, " | ") .. " |")
  add("|---" .. string.rep("|---", D2) .. "|")
  for o = 1, 2 * D do row(OPERANDS[o], M[o], "%.2f") end
  add("")
  add("The viewer (`attnlab view " .. dir .. "`) shows each answer digit's attention per layer and head, the attribution heatmap, and every metric as a curve.")
  lab.write_file_atomic(dir .. "/report.md", table.concat(L, "\n") .. "\n")
end
if cfg.report then write_report() end
run:finish()
