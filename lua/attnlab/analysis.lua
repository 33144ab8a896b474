-- attnlab.analysis: measurements and interventions on attention maps, as the analysis papers use
-- them (attention-variants.md section 19).  A map is a (B, H, N, M) tensor whose rows sum to 1,
-- e.g. the second result of lab.attention(q, k, v, {weights = true}) or MultiHeadAttention's
-- m.weights with m.record = true.
local lab = require "attnlab"
local core, args = require "attnlab.core", require "attnlab.args"
local raise = core.raise

local analysis = {}

local function check_map(w, fn)
  if not core.is_tensor(w) or w:dim() ~= 4 then
    raise(fn .. ": expects a (B, H, N, M) attention map (got " .. (core.is_tensor(w) and w:shape_string() or type(w)) .. ")")
  end
  return w
end

-- Entropy of each query's row, in nats, (B, H, N): 0 for a one-hot row, log M for a uniform one.
-- (0 log 0 is taken as 0.)
function analysis.entropy(w)
  check_map(w, "entropy")
  local safe = lab.where(w:gt(0), w, 1)            -- log 1 = 0 where p = 0
  return -(w * safe:log()):sum(4)
end

-- Mean row entropy per head, (H): the usual "how focused is this head" figure.
function analysis.head_entropy(w)
  return analysis.entropy(w):mean(3):mean(1)
end

-- Mean attention mass on key position pos (default 1, the first token), per head (H): attention
-- sinks show as heads whose mass on the first token is far above 1/M.
function analysis.sink_mass(w, pos)
  check_map(w, "sink_mass")
  pos = pos or 1
  if type(pos) ~= "number" or pos < 1 or pos > w:size(4) or pos ~= math.floor(pos) then
    raise(string.format("sink_mass: key position %s is out of range 1..%d", tostring(pos), w:size(4)))
  end
  return w:narrow(4, pos, 1):mean(4):mean(3):mean(1)
end

-- SoftPAG-style interpolation toward the identity map (N = M): (1 - alpha) w + alpha I.
function analysis.interpolate_identity(w, alpha)
  check_map(w, "interpolate_identity")
  if w:size(3) ~= w:size(4) then raise("interpolate_identity: needs a square map (N = M), got " .. w:shape_string()) end
  args.check_number(alpha, "interpolate_identity", "alpha", { finite = true })
  local eye = lab.eye(w:size(3), w:dtype())
  return w * (1 - alpha) + eye * alpha
end

-- The attention output for a given (possibly replaced or edited) map: map (B, H, N, M) times
-- v (B, H, M, dv), differentiable in both.
function analysis.apply_map(map, v)
  check_map(map, "apply_map")
  return map:matmul(v)
end

-- The attention modules of a model, depth-first in the order they were added:
-- { {name = "blocks.1.attn", module = m}, ... } -- the handles the hooks below take.
function analysis.attention_modules(model)
  if type(model) ~= "table" or type(model.child_order) ~= "table" then
    raise("attention_modules: expects an nn module (got " .. type(model) .. ")")
  end
  local found = {}
  local function walk(m, prefix)
    if m.name == "MultiHeadAttention" then found[#found + 1] = { name = prefix == "" and "(root)" or prefix, module = m } end
    for _, child in ipairs(m.child_order) do walk(m.children[child], prefix == "" and child or prefix .. "." .. child) end
  end
  walk(model, "")
  return found
end

-- Attention sinks (ACT: Yu et al. 2024, "Unveiling and Harnessing Hidden Attention Sinks"; GATECH-EIC/ACT).
-- Column scores of a causal square map, (B, H, M): key j's attention summed over the queries that
-- can see it, divided by their number, a_j = sum_i P_ij / (N - j + 1) (1-based j).
function analysis.sink_scores(w)
  check_map(w, "sink_scores")
  local N, M = w:size(3), w:size(4)
  if N ~= M then raise("sink_scores: needs a square causal map (N = M), got " .. w:shape_string()) end
  local seen_by = lab.arange(M, w:dtype()) * -1 + N        -- N - j + 1 for j = 1..M (1-based)
  return w:sum(3) / seen_by
end

-- ACT's calibration: the keys whose score exceeds tau (default 2 / N) are sinks, except the first
-- one found (normally the BOS token, which the model needs); each row's attention on the sinks is
-- scaled by beta (default 0) and the mass freed goes to the row's other keys in proportion to their
-- attention.  Rows keep summing to 1; differentiable in w (the sink set is a constant).  Returns the
-- new map and the sinks as a (B, H, 1, M) 0/1 tensor.
function analysis.calibrate_sinks(w, opts)
  check_map(w, "calibrate_sinks")
  opts = args.options_table(opts, "calibrate_sinks", "{tau=, beta=}")
  args.check_options(opts, "calibrate_sinks", { "tau", "beta" })
  local N = w:size(3)
  local tau = args.opt_number(opts.tau, 2 / N, "calibrate_sinks", "opts.tau", { -math.huge, math.huge })
  local beta = args.opt_number(opts.beta, 0, "calibrate_sinks", "opts.beta", { finite = true })
  local scores = lab.no_grad(function() return analysis.sink_scores(w):totable() end)
  local marks = {}
  for b, heads in ipairs(scores) do
    marks[b] = {}
    for h, row in ipairs(heads) do
      local out, first = {}, true
      for j, a in ipairs(row) do
        local sink = a > tau
        if sink and first then sink, first = false, false end     -- keep the first sink (BOS)
        out[j] = sink and 1 or 0
      end
      marks[b][h] = { out }
    end
  end
  local sinks = lab.tensor(marks, w:dtype())
  local keep = sinks * -1 + 1
  local on_sinks = (w * sinks):sum(4, true)                      -- (B, H, N, 1)
  local rest = w * keep
  local rest_sum = rest:sum(4, true)
  local has_rest = rest_sum:gt(0)
  local share = lab.where(has_rest, rest / lab.where(has_rest, rest_sum, 1), 0)
  -- rows with nothing outside the sinks keep their mass where it is
  local freed = lab.where(has_rest, on_sinks * (1 - beta), 0)
  local kept = lab.where(has_rest, w * sinks * beta, w * sinks)
  return rest + kept + share * freed, sinks
end

-- Retrieval-head score (Wu et al. 2024, "Retrieval Head Mechanistically Explains Long-Context
-- Factuality"; nightdessert/Retrieval_Head): while a model decodes the answer to a needle-in-a-
-- haystack prompt, a head scores 1/|needle| at each generated token that it copies -- its most
-- attended prompt position lies in the needle and holds that very token.
--   maps: (T, H, M) or (T, L, H, M): at each of T decoding steps, each head's attention of the
--         current query over the M prompt positions
--   prompt: M token ids; needle = {first, last} prompt positions (1-based, inclusive);
--   generated: T token ids.  Returns (H) or (L, H) scores, 1 for a head that copied every token.
function analysis.retrieval_score(maps, prompt, needle, generated)
  if not core.is_tensor(maps) or (maps:dim() ~= 3 and maps:dim() ~= 4) then
    raise("retrieval_score: maps must be (T, H, M) or (T, L, H, M) (got " .. (core.is_tensor(maps) and maps:shape_string() or type(maps)) .. ")")
  end
  local T, M = maps:size(1), maps:size(-1)
  if type(prompt) ~= "table" or #prompt ~= M then raise(string.format("retrieval_score: prompt must list the %d prompt tokens (got %s)", M, type(prompt) == "table" and #prompt or type(prompt))) end
  if type(generated) ~= "table" or #generated ~= T then raise(string.format("retrieval_score: generated must list the %d generated tokens (got %s)", T, type(generated) == "table" and #generated or type(generated))) end
  if type(needle) ~= "table" or type(needle[1]) ~= "number" or type(needle[2]) ~= "number" or needle[1] < 1 or needle[2] > M
     or needle[1] > needle[2] or needle[1] ~= math.floor(needle[1]) or needle[2] ~= math.floor(needle[2]) then
    raise(string.format("retrieval_score: needle must be {first, last} within 1..%d", M))
  end
  local top = maps:argmax(-1):reshape{ T, -1 }:totable()          -- (T, L*H), 1-based positions
  local per = 1 / (needle[2] - needle[1] + 1)
  local score = {}
  for t = 1, T do
    for h, j in ipairs(top[t]) do
      score[h] = score[h] or 0
      if j >= needle[1] and j <= needle[2] and prompt[j] == generated[t] then score[h] = score[h] + per end
    end
  end
  local shape = maps:shape()
  table.remove(shape, 1) table.remove(shape)
  return lab.tensor(score, "float64"):reshape(shape)
end

-- Attention adversarial training (Kitada & Iyatomi, "Attention Meets Perturbations";
-- shunk031/attention-meets-perturbation, AT): the worst-case small perturbation of the attention
-- logits, r = xi g / ||g|| with g = dL/dlogits normalised over the keys of each row, then the loss
-- with r added.  model: the nn module whose attention layers are perturbed; loss_fn(): the loss of
-- a forward pass on the current batch.  Runs loss_fn twice (once to find g, its parameter
-- gradients discarded, once perturbed) and returns the perturbed loss (on the graph: add it to the
-- clean loss and call backward) and the perturbations, one per attention module.
function analysis.attention_at(model, loss_fn, opts)
  opts = args.options_table(opts, "attention_at", "{xi=}")
  args.check_options(opts, "attention_at", { "xi" })
  local xi = args.opt_number(opts.xi, 1, "attention_at", "opts.xi", { 0, finite = true })
  if type(loss_fn) ~= "function" then raise("attention_at: loss_fn must be a function returning the loss") end
  local layers = analysis.attention_modules(model)
  if #layers == 0 then raise("attention_at: the model has no MultiHeadAttention module") end
  for _, l in ipairs(layers) do
    if l.module.logit_extra then raise("attention_at: " .. l.name .. " already carries a logit_extra") end
    l.module.logit_probe = true
  end
  local ok, err = pcall(function() loss_fn():backward() end)
  for _, l in ipairs(layers) do l.module.logit_probe = nil end
  model:zero_grad()
  if not ok then error(err, 0) end
  local perturbations = {}
  for i, l in ipairs(layers) do
    local g = l.module.logit_probe_tensor.grad
    l.module.logit_probe_tensor = nil
    local norm = (g * g):sum(4, true):sqrt() + 1e-12
    perturbations[i] = (g / norm * xi):detach()
    l.module.logit_extra = perturbations[i]
  end
  local ok2, adv = pcall(loss_fn)
  for _, l in ipairs(layers) do l.module.logit_extra = nil end
  if not ok2 then error(adv, 0) end
  return adv, perturbations
end

return analysis
