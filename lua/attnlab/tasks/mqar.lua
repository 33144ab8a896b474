-- attnlab.tasks.mqar: multi-query associative recall (MQAR; Arora et al. 2023, "Zoology", arXiv
-- 2312.04927), the recall task sparse and linear attention papers (DMA among them) test on.
--
-- A sequence lists P key-value pairs, then asks for P of the keys again, each followed by its value:
--   k_1 v_1 k_2 v_2 ... k_P v_P   q_1 a_1 q_2 a_2 ... q_P a_P      (length 4P)
-- keys drawn without replacement from 1..V/2, values from V/2+1..V, the queries a random order of
-- the keys and a_i the value stored with q_i.  The model reads the sequence causally and is scored
-- at each query position on predicting the answer that follows (next-token targets; every other
-- position is ignored).  Recalling needs the pair structure: a value is bound to the key before
-- it, so the model sees each token beside the previous one (see tasks.mqar.Model).
local lab = require "attnlab"
local nn = require "attnlab.nn"

local mqar = {}
mqar.ignore = 0        -- target id of the positions that are not scored (ids are 1-based)

-- B sequences of P pairs over a vocabulary of V ids (V >= 4P so that keys are distinct).
-- Returns ids (B, 4P) int64, targets (B, 4P) int64 (mqar.ignore where not scored).
function mqar.batch(B, P, V, random)
  random = random or math.random
  if V < 4 * P then lab.raise(string.format("mqar.batch: vocabulary %d too small for %d distinct keys (needs >= %d)", V, P, 4 * P)) end
  local half = math.floor(V / 2)
  local ids, targets = {}, {}
  for b = 1, B do
    local keys, pool = {}, {}
    for i = 1, half do pool[i] = i end
    for i = 1, P do                                   -- P distinct keys: a partial Fisher-Yates shuffle
      local j = random(i, half)
      pool[i], pool[j] = pool[j], pool[i]
      keys[i] = pool[i]
    end
    local value = {}
    local seq, tgt = {}, {}
    for i = 1, P do
      value[keys[i]] = half + random(1, V - half)
      seq[#seq + 1], seq[#seq + 2] = keys[i], value[keys[i]]
    end
    local order = {}
    for i = 1, P do order[i] = keys[i] end
    for i = P, 2, -1 do local j = random(1, i) order[i], order[j] = order[j], order[i] end
    for i = 1, #seq do tgt[i] = mqar.ignore end
    for i = 1, P do
      seq[#seq + 1] = order[i]
      tgt[#tgt + 1] = value[order[i]]                  -- scored at the query: predict its answer
      seq[#seq + 1] = value[order[i]]
      tgt[#tgt + 1] = mqar.ignore
    end
    ids[b], targets[b] = seq, tgt
  end
  return lab.tensor(ids, "int64"), lab.tensor(targets, "int64")
end

-- Fraction of scored positions whose argmax prediction is the answer.
function mqar.accuracy(logits, targets)
  return lab.no_grad(function()
    local pred = logits:argmax(-1)
    local scored = targets:ne(mqar.ignore)
    local right = pred:eq(targets):to("float32") * scored:to("float32")
    return right:sum():item() / scored:to("float32"):sum():item()
  end)
end

-- A small causal transformer for token tasks: each position's input is the embedding of its token
-- plus a second embedding of the token before it (a one-step shift, as the short convolutions of
-- the recall papers' models provide), so that no position embedding is needed and a model trained
-- on short sequences runs on longer ones.  opts: vocab, dim, heads, layers, variant, and attention:
-- the variant's MultiHeadAttention options (passed to every TransformerBlock).
local Model = nn.class("MQARModel")
mqar.Model = Model
function Model:init(opts)
  if type(opts) ~= "table" then lab.raise("mqar.Model: expects a table of options {vocab=, dim=, heads=, layers=, ...}") end
  nn.check_options(opts, "mqar.Model", { "vocab", "dim", "heads", "layers", "variant", "attention" })
  self.tok = self:add_child("tok", nn.Embedding(opts.vocab + 1, opts.dim))     -- id vocab + 1: "no previous token"
  self.prev = self:add_child("prev", nn.Embedding(opts.vocab + 1, opts.dim))
  self.vocab = opts.vocab
  self.blocks = {}
  for i = 1, opts.layers do
    self.blocks[i] = self:add_child("block" .. i, nn.TransformerBlock{ dim = opts.dim, heads = opts.heads,
      variant = opts.variant, causal = true, attention = opts.attention })
  end
  self.ln = self:add_child("ln", nn.LayerNorm(opts.dim))
  self.head = self:add_child("head", nn.Linear(opts.dim, opts.vocab))
end
function Model:forward(ids)
  local B, N = ids:size(1), ids:size(2)
  local start = lab.full({ B, 1 }, self.vocab + 1, "int64")
  local prev = lab.cat({ start, ids:narrow(2, 1, N - 1) }, 2)
  local x = self.tok(ids) + self.prev(prev)
  for _, block in ipairs(self.blocks) do x = block(x) end
  return self.head(self.ln(x))
end

return mqar
