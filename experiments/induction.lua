-- Induction heads (Olsson et al. 2022, "In-context Learning and Induction Heads"), on a toy task.
--
-- A 2-layer attention-only lab.nn.GPT (mlp = false) reads sequences of `length` tokens: a first half
-- of distinct random tokens, then the same tokens again cut into segments of seg_min .. seg_max
-- tokens put in a random order.  It is trained to predict the next token wherever the second half
-- continues a segment (the copied tokens); the first token of the next segment is unpredictable and
-- not trained on.  Every token occurs at most twice, so what followed its first occurrence is never
-- ambiguous, and because the segments are shuffled the distance back to that first occurrence varies
-- from token to token: no head can solve it by reading "the key D back".  The two-head circuit can:
-- a previous-token head in layer 1 writes each position's previous token into its residual stream,
-- and an induction head in layer 2 matches the current token against it and reads the token that
-- followed it last time (docs/induction.md says why the shuffle matters: with one contiguous repeat
-- the model settles on a shifted circuit built on heads that look 4-7 tokens back).
--
-- The control: the same model trained on a fixed-offset copy task (the second half copies the first
-- in order, always length/2 back).  It learns a positional shortcut instead: its layer-1 heads read
-- the key length/2 - 1 back by position alone, no previous-token head forms, and it fails on the
-- shuffled task (its accuracy there is in the summary).
--
--   attnlab run experiments/induction.lua                    the study, under 2 minutes
--   attnlab run experiments/induction.lua control=false      without the control
--   attnlab run experiments/induction.lua steps=300 control_steps=60 eval_size=64   a smoke run
--
-- summary.json: accuracy on the copied tokens; per head the previous-token score (mean attention of
-- query i on key i-1 over the first half, the tokens that are repeated: where the induction head's
-- keys are; also over the whole sequence) and the induction score (mean attention of a copied token's
-- query on the key right after its first occurrence); each head's ablation (accuracy with that
-- head's output zeroed through GPT.replace_heads in run_with_hooks); the same for the control model;
-- the wall time.  records.bin: both models' maps on one held-out sequence, with its tokens.
local lab = require "attnlab"

local run = lab.run.start{
  name = "induction",
  config = {
    vocab = 64,               -- token ids 1 .. vocab (at least length / 2: the first half is distinct)
    length = 32,              -- sequence length T: a first half of T/2 tokens and its shuffled copy
    seg_min = 2,              -- shortest copied segment
    seg_max = 5,              -- longest
    layers = 2, width = 64,
    heads = 1,                -- per layer; with 2 or 4 the previous-token role is shared by several heads
                              -- (backups), so no single ablation shows it (docs/induction.md)
    init = "gpt2",            -- lab.nn.GPT's init: "gpt2" (N(0, 0.02^2)) or "default" (the modules' own)
    steps = 2000,
    batch = 32,
    lr = 1e-3,                -- 3e-3 leaves some seeds on a plateau for thousands of steps
    weight_decay = 0,
    grad_clip = 1.0,
    control = true,           -- also train the fixed-offset control model
    control_steps = 400,
    eval_size = 512,          -- held-out sequences each score is measured on
    log_every = 100,
    seed = 1,
    viz = true,
  },
  kinds = { vocab = "integer", length = "integer", seg_min = "integer", seg_max = "integer", layers = "integer",
            heads = "integer", width = "integer", control_steps = "integer", eval_size = "integer",
            init = { "gpt2", "default" } },
}
local cfg = run.config
local function config_error(msg) error("induction: " .. msg, 0) end
for _, k in ipairs{ "vocab", "length", "layers", "heads", "width", "eval_size" } do
  if cfg[k] < 1 then config_error(k .. " must be at least 1 (got " .. cfg[k] .. ")") end
end
if cfg.control_steps < 0 then config_error("control_steps must be >= 0") end
if cfg.length % 2 ~= 0 or cfg.length < 4 then config_error("length must be even and at least 4 (a first half and its copy)") end
if cfg.seg_min < 2 or cfg.seg_min > cfg.seg_max or cfg.seg_max > cfg.length / 2 then
  config_error(string.format("need 2 <= seg_min <= seg_max <= length / 2 (got seg_min %d, seg_max %d, length %d; "
    .. "a segment of one token has nothing to predict)", cfg.seg_min, cfg.seg_max, cfg.length))
end
if cfg.vocab < cfg.length / 2 then config_error("vocab must be at least length / 2 (the first half's tokens are distinct)") end
if cfg.width % cfg.heads ~= 0 then config_error("width must be a multiple of heads") end
if cfg.layers < 2 then config_error("layers must be at least 2 (the circuit has two)") end

local V, T, H, L = cfg.vocab, cfg.length, cfg.heads, cfg.layers
local HALF = T / 2
local t_start = lab.time()

---------------------------------------------------------------------------------------------------
-- data: ids (B, T) int64; targets (B, T): the next token where the second half continues a segment,
-- 0 (ignored) elsewhere; first (B, T) int64: for a trained query of the second half the position of
-- its token's first occurrence (1 elsewhere), with mask (B, T) marking those queries.  shuffled =
-- false gives the control's task (the first half copied in order).  Drawn from lab's generator only,
-- so a resumed run draws the same.
---------------------------------------------------------------------------------------------------
local function batch(B, shuffled)
  local u = lab.rand{ B, 3 * HALF }:totable()
  local ids, targets, first, mask = {}, {}, {}, {}
  local pool = {}
  for b = 1, B do
    local ub = u[b]
    for v = 1, V do pool[v] = v end
    for k = 1, HALF do                                -- partial Fisher-Yates: HALF distinct tokens
      local j = k + math.min(V - k, math.floor(ub[k] * (V - k + 1)))
      pool[k], pool[j] = pool[j], pool[k]
    end
    -- the first half cut into segments {start, length}; the last one may be shorter
    local segs, s, n = {}, 1, 0
    while s <= HALF do
      n = n + 1
      local len = cfg.seg_min + math.min(cfg.seg_max - cfg.seg_min, math.floor(ub[HALF + n] * (cfg.seg_max - cfg.seg_min + 1)))
      segs[n] = { s, math.min(len, HALF - s + 1) }
      s = s + len
    end
    if shuffled then
      for k = n, 2, -1 do
        local j = 1 + math.min(k - 1, math.floor(ub[2 * HALF + k] * k))
        segs[k], segs[j] = segs[j], segs[k]
      end
    else
      segs = { { 1, HALF } }
    end
    local row, tg, fr, mk = {}, {}, {}, {}
    for t = 1, T do row[t], tg[t], fr[t], mk[t] = t <= HALF and pool[t] or 0, 0, 1, 0 end
    local t = HALF
    for _, sg in ipairs(segs) do
      for m = 0, sg[2] - 1 do
        t = t + 1
        row[t] = row[sg[1] + m]
        if m < sg[2] - 1 then                         -- the segment goes on: the next token is known
          tg[t], fr[t], mk[t] = row[sg[1] + m + 1], sg[1] + m, 1
        end
      end
    end
    ids[b], targets[b], first[b], mask[b] = row, tg, fr, mk
  end
  return { ids = lab.tensor(ids, "int64"), targets = lab.tensor(targets, "int64"),
           first = lab.tensor(first, "int64"), mask = lab.tensor(mask), B = B }
end

---------------------------------------------------------------------------------------------------
-- models
---------------------------------------------------------------------------------------------------
local function new_model()
  return lab.nn.GPT{ vocab = V, context = T, layers = L, heads = H, width = cfg.width, mlp = false, init = cfg.init }
end
local model = new_model()
local opt = lab.optim.AdamW(model, { lr = cfg.lr, weight_decay = cfg.weight_decay })
local control = cfg.control and cfg.control_steps > 0 and new_model() or nil
local copt = control and lab.optim.AdamW(control, { lr = cfg.lr, weight_decay = cfg.weight_decay }) or nil
local tracked = { model = model, optim = opt }
if control then tracked.control = control; tracked.control_optim = copt end
run:track(tracked)
run:attention_layers(model:attention_modules())

---------------------------------------------------------------------------------------------------
-- scores
---------------------------------------------------------------------------------------------------
local function accuracy(logits, b)
  local correct = logits:argmax(-1):eq(b.targets):sum():item()
  local count = b.targets:gt(0):sum():item()
  return correct / count
end

-- mean over the batch and over queries from..to of each head's weight on key query - 1: (H) table
local function prev_weight(w, b, from, to)
  local n = to - from + 1
  local idx = {}
  for q = 1, n do idx[q] = from + q - 2 end
  idx = lab.tensor(idx, "int64"):reshape{ 1, 1, n, 1 }:expand{ b.B, H, n, 1 }
  local s = w:narrow(3, from, n):gather(4, idx):sum(4):sum(3):sum(1):totable()
  for h = 1, H do s[h] = s[h] / (b.B * n) end
  return s
end

-- per layer, per head: previous-token scores (first half, whole sequence) and induction score from
-- the cached maps
local function head_scores(m, b)
  local names = {}
  for l = 1, L do names[l] = "blocks." .. l .. ".attn.pattern" end
  local logits, cache = m:run_with_cache(b.ids, { names = names })
  local iidx = (b.first + 1):reshape{ b.B, 1, T, 1 }:expand{ b.B, H, T, 1 }   -- the key after the first occurrence
  local imask = b.mask:reshape{ b.B, 1, T, 1 }
  local n_ind = b.mask:sum():item()
  local prev, prev_all, ind = {}, {}, {}
  for l = 1, L do
    local w = cache[names[l]]                                    -- (B, H, T, T)
    prev[l] = prev_weight(w, b, 2, HALF)
    prev_all[l] = prev_weight(w, b, 2, T)
    local is = (w:gather(4, iidx) * imask):sum(4):sum(3):sum(1):totable()
    ind[l] = {}
    for h = 1, H do ind[l][h] = is[h] / n_ind end
  end
  return prev, prev_all, ind, accuracy(logits, b), cache
end

-- accuracy with each head's output zeroed
local function ablations(m, b)
  local out = {}
  for l = 1, L do
    out[l] = {}
    for h = 1, H do
      local logits = m:run_with_hooks(b.ids, {
        ["blocks." .. l .. ".attn.head_out"] = function(z) return lab.nn.GPT.replace_heads(z, h) end,
      })
      out[l][h] = accuracy(logits, b)
    end
  end
  return out
end

local function best(scores, l)
  local bv, bh = -1, 1
  for h = 1, H do if scores[l][h] > bv then bv, bh = scores[l][h], h end end
  return bv, bh
end

local function study(m, b)
  return lab.no_grad(function()
    local prev, prev_all, ind, acc, cache = head_scores(m, b)
    local abl = ablations(m, b)
    local r = { accuracy = acc, prev_token_score = prev, prev_token_score_whole = prev_all, induction_score = ind,
                ablation_accuracy = abl }
    local pv, ph = best(prev, 1)
    local iv, ih, il = -1, 1, 2
    for l = 2, L do
      local v, h = best(ind, l)
      if v > iv then iv, ih, il = v, h, l end
    end
    r.prev_token_head = { layer = 1, head = ph, score = pv, score_whole = prev_all[1][ph], ablated_accuracy = abl[1][ph] }
    r.induction_head = { layer = il, head = ih, score = iv, ablated_accuracy = abl[il][ih] }
    return r, cache
  end)
end

---------------------------------------------------------------------------------------------------
-- viewer: both models' maps on one held-out sequence
---------------------------------------------------------------------------------------------------
local viz = lab.viz
local function publish(name, cache, b)
  if not (cfg.viz and viz.enabled()) then return end
  local row = b.ids:narrow(1, 1, 1):reshape{ T }:totable()
  local toks = {}
  for t = 1, T do toks[t] = (t > HALF and "'" or "") .. row[t] end   -- ' marks the copy
  for l = 1, L do
    viz.attention(name, cache["blocks." .. l .. ".attn.pattern"]:narrow(1, 1, 1), { layer = l, force = true, tokens = toks })
  end
end

---------------------------------------------------------------------------------------------------
-- training: steps 1 .. steps train the model, the next control_steps the control
---------------------------------------------------------------------------------------------------
local eval_b = (function()
  local state = lab.rng_state()
  lab.seed(cfg.seed + 1000003)                   -- held-out sets from their own seed
  local e = batch(cfg.eval_size, true)
  local c = batch(cfg.eval_size, false)
  lab.set_rng_state(state)
  return { shuffled = e, fixed = c }
end)()

local total = cfg.steps + (control and cfg.control_steps or 0)
local first_loss, last_loss, first_closs, last_closs
local window, wn = 0, 0
local t_loop = lab.time()
for step in run:steps(total) do
  local is_control = step > cfg.steps
  local m, o = model, opt
  if is_control then m, o = control, copt end
  local b = batch(cfg.batch, not is_control)
  local logits = m(b.ids)
  local loss = lab.cross_entropy(logits:reshape{ b.B * T, V }, b.targets:reshape{ -1 }, { ignore = 0 })
  o:zero_grad()
  loss:backward()
  if cfg.grad_clip > 0 then lab.optim.clip_grad_norm(m:parameters(), cfg.grad_clip) end
  o:step()
  local lv = loss:item()
  if is_control then
    first_closs = first_closs or lv; last_closs = lv
  else
    first_loss = first_loss or lv; last_loss = lv
  end
  window, wn = window + lv, wn + 1
  if run:should_log(step) or step == cfg.steps then
    local rec = { [is_control and "control_loss" or "loss"] = window / wn }
    window, wn = 0, 0
    if step == cfg.steps or (not is_control and step % (cfg.log_every * 5) == 0) then
      local acc = lab.no_grad(function() return accuracy(model(eval_b.shuffled.ids), eval_b.shuffled) end)
      rec.accuracy = acc
      viz.scalar("accuracy", acc)
    end
    viz.scalar(is_control and "control_loss" or "loss", rec.control_loss or rec.loss)
    run:log(step, rec)
  end
end
local train_time = lab.time() - t_loop

---------------------------------------------------------------------------------------------------
-- summary
---------------------------------------------------------------------------------------------------
local main, cache = study(model, eval_b.shuffled)
publish("induction", cache, eval_b.shuffled)
local summary = {
  task = string.format("%d distinct random tokens, then the same tokens cut into segments of %d..%d and shuffled "
                       .. "(T = %d, vocab %d); trained on the copied tokens whose segment goes on",
                       HALF, cfg.seg_min, cfg.seg_max, T, V),
  accuracy = main.accuracy,
  prev_token_score = main.prev_token_score, prev_token_score_whole = main.prev_token_score_whole,
  induction_score = main.induction_score,
  ablation_accuracy = main.ablation_accuracy,
  prev_token_head = main.prev_token_head, induction_head = main.induction_head,
  first_loss = first_loss, final_loss = last_loss,
  eval_size = cfg.eval_size,
}
if control then
  local own, ccache = study(control, eval_b.fixed)
  local other = lab.no_grad(function() return accuracy(control(eval_b.shuffled.ids), eval_b.shuffled) end)
  publish("control (fixed offset)", ccache, eval_b.fixed)
  summary.control = {
    task = string.format("fixed offset: the first half copied in order (the copy is always %d positions back)", HALF),
    accuracy = own.accuracy, accuracy_on_shuffled = other,
    prev_token_score = own.prev_token_score, prev_token_score_whole = own.prev_token_score_whole,
    induction_score = own.induction_score,
    ablation_accuracy = own.ablation_accuracy,
    prev_token_head = own.prev_token_head, induction_head = own.induction_head,
    first_loss = first_closs, final_loss = last_closs,
  }
  -- what the control learned, said with its numbers: its layer-1 head that reads the copied key.  A
  -- layer-1 head sees only each key's own token and position, and the copied key's token is random,
  -- so the weight it puts there is by position alone.
  local pv, ph = -1, 1
  for h = 1, H do if own.induction_score[1][h] > pv then pv, ph = own.induction_score[1][h], h end end
  local c = summary.control
  c.positional_head = { layer = 1, head = ph, score = pv, ablated_accuracy = own.ablation_accuracy[1][ph] }
  c.note = string.format("a positional shortcut: layer-1 head %d puts %.2f of its weight on the copied key (%d back) by "
    .. "position alone (a layer-1 head sees only each key's own token, random here, and its position), while no "
    .. "previous-token head forms (best previous-token score %.2f, against %.2f for the induction model); ablating that "
    .. "head leaves %.3f accuracy; it solves its own task (%.3f) and fails the shuffled one (%.3f), where the offset varies",
    ph, pv, HALF - 1, c.prev_token_head.score, main.prev_token_head.score, c.positional_head.ablated_accuracy,
    c.accuracy, c.accuracy_on_shuffled)
end
summary.steps = cfg.steps
summary.control_steps = control and cfg.control_steps or 0
summary.train_time_s = train_time
summary.wall_time_s = lab.time() - t_start
run:summary(summary)

local function fmt(list)
  local s = {}
  for h = 1, #list do s[h] = string.format("%.2f", list[h]) end
  return table.concat(s, " ")
end
io.stderr:write(string.format("accuracy on the copied tokens %.3f | prev-token L1 (first half): %s | induction L2: %s\n",
  main.accuracy, fmt(main.prev_token_score[1]), fmt(main.induction_score[2])))
io.stderr:write(string.format("ablating L1H%d (prev-token) -> %.3f, L%dH%d (induction) -> %.3f | wall %.1f s\n",
  main.prev_token_head.head, main.prev_token_head.ablated_accuracy, main.induction_head.layer,
  main.induction_head.head, main.induction_head.ablated_accuracy, summary.wall_time_s))
if control then io.stderr:write("control: " .. summary.control.note .. "\n") end
run:finish()
