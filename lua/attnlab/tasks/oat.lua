-- attnlab.tasks.oat: an OAT-style scanpath predictor (Object-level Attention Transformer; Fang, Yu,
-- Zhang, van der Lans, Shi, ECCV 2024; code HKUST-NISL/oat_eccv24), scaled to a CPU.  The study
-- that trains it: experiments/scanpath_oat.lua, docs/scanpath_oat.md.
--
-- The model reads a shelf as a set of objects and predicts, one step at a time, which object is
-- fixated next or that the search ends:
--   - object token = [CNN appearance feature (d_app) || 2-D position code of the object's grid cell
--     (d_pos)]; the CNN is OAT's in miniature (conv 3x3 -> ReLU -> max-pool 2 -> conv 3x3 -> ReLU ->
--     max-pool 2 -> linear, then a LayerNorm), run on every object's patch (pixels centred on 0);
--   - the target image goes through the same CNN and is an extra encoder token, with a learned
--     vector in place of a position code;
--   - an encoder of pre-LN transformer blocks (lab.nn.TransformerBlock) over the n + 1 tokens;
--   - a decoder over the previously fixated objects (a start token, then each fixated object's own
--     token, or with decoder_input = "memory" its encoder output, plus a 1-D sinusoidal position
--     code), each block causal self-attention, cross-attention to the encoder's output
--     (lab.nn.MultiHeadAttention with a context) and an MLP;
--   - the output is pointer-style ("object attention"): per step, each of pointer_heads heads scores
--     the n objects' encoder outputs against the decoder state (lab.attention's "pointer" variant:
--     the log-softmax of (W_d dec)(W_e enc)^T / sqrt(head_dim)) and an end-of-search key: the zero
--     vector (eos = "zero"), whose score is the constant 0 of OAT, or a learned one (eos =
--     "learned"); a linear readout (no bias) merges the heads into n + 1 logits.  (A linear mix of
--     per-head log-softmaxes differs from the mix of the raw scores by a constant per step, which
--     the loss's softmax removes: it is OAT's readout.)
--   Trained by cross-entropy over the n + 1 classes, padding ignored.
--
-- The position code (pe = "gaussian", OAT's "new positional encoding"): one learned matrix per grid
-- axis, fitted before training with Adam so that the cosine similarity of the codes of cells i and j
-- is exp(-(i - j)^2 / (2 sigma^2)), the norms kept at 1, and then fixed; a cell's code is its row's
-- code || its column's code.  pe = "trained" instead learns a free code per cell with the model.
local lab = require "attnlab"
local nn = require "attnlab.nn"
local args = require "attnlab.args"

local floor, sqrt, exp, sin, cos = math.floor, math.sqrt, math.exp, math.sin, math.cos
local raise = lab.raise

local oat = {}

---------------------------------------------------------------------------------------------------
-- The position code
---------------------------------------------------------------------------------------------------
-- oat.gaussian_code(n, dim [, {sigma = 2, steps = 1500, lr = 0.01}]) -> (n, dim) float32: rows whose
-- cosine similarities approach exp(-(i - j)^2 / (2 sigma^2)), each of norm 1 (OAT's learned PE,
-- fitted by Adam from a N(0, 1) start drawn from lab's generator)
function oat.gaussian_code(n, dim, opts)
  local fn = "oat.gaussian_code"
  nn.check_positive_int(n, fn, "n")
  nn.check_positive_int(dim, fn, "dim")
  opts = opts or {}
  nn.check_options(opts, fn, { "sigma", "steps", "lr" })
  local sigma = args.opt_number(opts.sigma, 2, fn, "sigma", { 0, lo_open = true, finite = true })
  local steps = opts.steps or 1500
  if type(steps) ~= "number" or steps < 0 or steps ~= floor(steps) then raise(fn .. ": steps must be an integer >= 0 (got " .. tostring(steps) .. ")") end
  local lr = args.opt_number(opts.lr, 0.01, fn, "lr", { 0, lo_open = true, finite = true })
  local want = {}
  for i = 1, n do
    want[i] = {}
    for j = 1, n do want[i][j] = exp(-(i - j) ^ 2 / (2 * sigma * sigma)) end
  end
  want = lab.tensor(want)
  local W = lab.randn{ n, dim }:requires_grad(true)
  local opt = lab.optim.Adam({ W }, { lr = lr })
  for _ = 1, steps do
    local norm = ((W * W):sum(2, true) + 1e-12):sqrt()                 -- (n, 1)
    local U = W / norm
    local cosine = U:matmul(U:t())
    local loss = ((cosine - want) ^ 2):mean() + ((norm - 1) ^ 2):mean()
    opt:zero_grad()
    loss:backward()
    opt:step()
  end
  return lab.no_grad(function()
    local norm = ((W * W):sum(2, true) + 1e-12):sqrt()
    return (W / norm):detach():contiguous()
  end)
end

-- the 1-D sinusoidal position code of Vaswani et al.: (n, dim), dim even
local function sinusoidal(n, dim)
  local t = {}
  for pos = 1, n do
    local row = {}
    for i = 0, dim / 2 - 1 do
      local f = 1 / 10000 ^ (2 * i / dim)
      row[2 * i + 1], row[2 * i + 2] = sin((pos - 1) * f), cos((pos - 1) * f)
    end
    t[pos] = row
  end
  return lab.tensor(t)
end

---------------------------------------------------------------------------------------------------
-- A decoder block: pre-LN causal self-attention, cross-attention to the encoder, MLP.
---------------------------------------------------------------------------------------------------
local DecoderBlock = nn.class("OAT decoder block")
function DecoderBlock:init(dim, heads, ffn)
  self.ln1 = self:add_child("ln1", nn.LayerNorm(dim))
  self.self_attn = self:add_child("self_attn", nn.MultiHeadAttention{ dim = dim, heads = heads, causal = true })
  self.ln2 = self:add_child("ln2", nn.LayerNorm(dim))
  self.cross_attn = self:add_child("cross_attn", nn.MultiHeadAttention{ dim = dim, heads = heads, context_dim = dim })
  self.ln3 = self:add_child("ln3", nn.LayerNorm(dim))
  self.mlp = self:add_child("mlp", nn.MLP{ dims = { dim, ffn, dim }, activation = "gelu" })
end
function DecoderBlock:forward(x, memory)
  x = x + self.self_attn(self.ln1(x))
  x = x + self.cross_attn(self.ln2(x), memory)
  return x + self.mlp(self.ln3(x))
end

---------------------------------------------------------------------------------------------------
-- oat.Model{n =, rows =, cols =, patch = 16, channels = {8, 16}, d_app = 32, d_pos = 32,
--           layers = 2, dec_layers = 2, heads = 4, ffn = 128, pointer_heads = 2, max_len = 20,
--           pe = "gaussian", sigma = 2, eos = "zero", decoder_input = "token"}
--   n = rows x cols objects in row-major order; the model width is d_app + d_pos.  The defaults
--   are OAT's choices; the study uses eos = "learned" and decoder_input = "memory" (they learn
--   faster: docs/scanpath_oat.md).
---------------------------------------------------------------------------------------------------
local Model = nn.class("oat.Model")
oat.Model = Model
local model_keys = { "n", "rows", "cols", "patch", "channels", "d_app", "d_pos", "layers", "dec_layers", "heads", "ffn",
                     "pointer_heads", "max_len", "pe", "sigma", "eos", "decoder_input" }
function Model:init(o)
  local fn = "oat.Model"
  if type(o) ~= "table" then raise(fn .. ": expects a table of options {rows =, cols =, ...}") end
  nn.check_options(o, fn, model_keys)
  local rows, cols = nn.check_positive_int(o.rows, fn, "rows"), nn.check_positive_int(o.cols, fn, "cols")
  local n = o.n or rows * cols
  if n ~= rows * cols then raise(string.format("%s: n = %s, but rows x cols = %d", fn, tostring(n), rows * cols)) end
  local P = o.patch or 16
  nn.check_positive_int(P, fn, "patch")
  local ch = o.channels or { 8, 16 }
  if type(ch) ~= "table" or #ch ~= 2 then raise(fn .. ": channels must be a table of two channel counts {c1, c2}") end
  nn.check_positive_int(ch[1], fn, "channels[1]"); nn.check_positive_int(ch[2], fn, "channels[2]")
  local s1 = floor((P - 2) / 2)
  local s2 = floor((s1 - 2) / 2)
  if s2 < 1 then raise(string.format("%s: patch %d is too small for the CNN (needs at least 10 pixels)", fn, P)) end
  local d_app, d_pos = o.d_app or 32, o.d_pos or 32
  nn.check_positive_int(d_app, fn, "d_app"); nn.check_positive_int(d_pos, fn, "d_pos")
  local d = d_app + d_pos
  local heads = o.heads or 4
  nn.check_positive_int(heads, fn, "heads")
  if d % heads ~= 0 or d % 2 ~= 0 then raise(string.format("%s: the width d_app + d_pos = %d must be even and a multiple of heads = %d", fn, d, heads)) end
  local ph = o.pointer_heads or 2
  nn.check_positive_int(ph, fn, "pointer_heads")
  if d % ph ~= 0 then raise(string.format("%s: the width %d must be a multiple of pointer_heads = %d", fn, d, ph)) end
  local pe = o.pe or "gaussian"
  if pe ~= "gaussian" and pe ~= "trained" then raise(fn .. ": pe must be 'gaussian' or 'trained' (got " .. tostring(pe) .. ")") end
  if pe == "gaussian" and d_pos % 2 ~= 0 then raise(fn .. ": d_pos must be even with pe = 'gaussian' (a row half and a column half)") end
  local eos, dec_in = o.eos or "zero", o.decoder_input or "token"
  if eos ~= "zero" and eos ~= "learned" then raise(fn .. ": eos must be 'zero' or 'learned' (got " .. tostring(eos) .. ")") end
  if dec_in ~= "token" and dec_in ~= "memory" then raise(fn .. ": decoder_input must be 'token' or 'memory' (got " .. tostring(dec_in) .. ")") end
  self.eos, self.decoder_input = eos, dec_in
  local max_len = o.max_len or 20
  nn.check_positive_int(max_len, fn, "max_len")
  self.n, self.rows, self.cols, self.patch, self.d, self.d_app, self.d_pos = n, rows, cols, P, d, d_app, d_pos
  self.heads, self.pointer_heads, self.max_len, self.pe = heads, ph, max_len, pe
  self.layers, self.dec_layers = o.layers or 2, o.dec_layers or 2
  nn.check_positive_int(self.layers, fn, "layers"); nn.check_positive_int(self.dec_layers, fn, "dec_layers")
  local ffn = o.ffn or 128
  nn.check_positive_int(ffn, fn, "ffn")

  self.cnn = self:add_child("cnn", nn.Sequential(nn.Conv2d(3, ch[1], 3), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(ch[1], ch[2], 3), nn.ReLU(), nn.MaxPool2d(2)))
  self.cnn_flat = ch[2] * s2 * s2
  self.fc = self:add_child("fc", nn.Linear(self.cnn_flat, d_app))
  -- the appearance half normalised, so that it starts on the scale of the position half (unit
  -- norm codes): a freshly initialised CNN's features are an order of magnitude smaller, and the
  -- encoder's first LayerNorm would then see mostly position
  self.app_ln = self:add_child("app_ln", nn.LayerNorm(d_app))
  if pe == "gaussian" then
    local sigma = args.opt_number(o.sigma, 2, fn, "sigma", { 0, lo_open = true, finite = true })
    local rcode, ccode = oat.gaussian_code(rows, d_pos / 2, { sigma = sigma }), oat.gaussian_code(cols, d_pos / 2, { sigma = sigma })
    local codes = {}
    local rt, ct = rcode:totable(), ccode:totable()
    for i = 1, n do
      local r, c = floor((i - 1) / cols) + 1, (i - 1) % cols + 1
      local row = {}
      for k = 1, d_pos / 2 do row[k], row[d_pos / 2 + k] = rt[r][k], ct[c][k] end
      codes[i] = row
    end
    self:add_buffer("pos_code", lab.tensor(codes))
  else
    if o.sigma ~= nil then raise(fn .. ": sigma shapes the gaussian position code, and pe = 'trained' has none") end
    self:add_param("pos_code", lab.randn{ n, d_pos } * 0.5)
  end
  self:add_param("target_pos", lab.randn{ 1, 1, d_pos } * 0.5)   -- the target token's stand-in for a position
  self:add_param("start", lab.randn{ 1, 1, d } * 0.5)            -- the decoder's first input
  self:add_buffer("step_code", sinusoidal(max_len + 1, d))
  self.enc = {}
  for l = 1, self.layers do
    self.enc[l] = self:add_child("enc" .. l, nn.TransformerBlock{ dim = d, heads = heads, mlp_ratio = ffn / d })
  end
  self.enc_ln = self:add_child("enc_ln", nn.LayerNorm(d))
  self.dec = {}
  for l = 1, self.dec_layers do self.dec[l] = self:add_child("dec" .. l, DecoderBlock(d, heads, ffn)) end
  self.dec_ln = self:add_child("dec_ln", nn.LayerNorm(d))
  self.w_dec = self:add_child("w_dec", nn.Linear(d, d, { bias = false }))
  self.w_enc = self:add_child("w_enc", nn.Linear(d, d, { bias = false }))
  self.readout = self:add_child("readout", nn.Linear(ph, 1, { bias = false }))
  if eos == "learned" then self:add_param("eos_key", lab.randn{ 1, ph, 1, d / ph } * 0.5) end
end
function Model:describe()
  return string.format("oat.Model(%d x %d objects, width %d = %d appearance + %d position (%s), %d encoder + %d decoder layers, "
    .. "%d heads, %d pointer heads)", self.rows, self.cols, self.d, self.d_app, self.d_pos, self.pe, self.layers,
    self.dec_layers, self.heads, self.pointer_heads)
end

-- m:encode(patches) -> tokens (B, n + 1, d) (the objects' then the target's), memory (B, n + 1, d)
-- (the encoder's output); patches (B, n + 1, 3, P, P) as tasks.shelves.render makes them
function Model:encode(patches)
  local n, P = self.n, self.patch
  if not lab.is_tensor(patches) or patches:dim() ~= 5 or patches:size(2) ~= n + 1 or patches:size(3) ~= 3
     or patches:size(4) ~= P or patches:size(5) ~= P then
    raise(string.format("oat.Model:encode: patches must be (B, %d, 3, %d, %d): the %d objects and the target (got %s)", n + 1, P, P, n,
      lab.is_tensor(patches) and patches:shape_string() or type(patches)))
  end
  local B = patches:size(1)
  -- pixels centred on 0 (they come in [0, 1])
  local feat = self.cnn(patches:reshape{ B * (n + 1), 3, P, P } - 0.5):reshape{ B, n + 1, self.cnn_flat }
  local app = self.app_ln(self.fc(feat))                                        -- (B, n + 1, d_app)
  local pos = self.params.pos_code or self.buffers.pos_code
  local codes = lab.cat({ pos:unsqueeze(1), self.params.target_pos }, 2):expand{ B, n + 1, self.d_pos }
  local tokens = lab.cat({ app, codes }, 3)
  local x = tokens
  for l = 1, self.layers do x = self.enc[l](x) end
  return tokens, self.enc_ln(x)
end

-- m:decode(tokens, memory, inputs) -> logits (B, T, n + 1): for each step the scores of the n
-- objects and (class n + 1) of ending the search.  inputs (B, T) int64: the decoder's inputs, n + 1
-- for the start token (and for padding after the end), 1 .. n for a fixated object.
function Model:decode(tokens, memory, inputs)
  local n, d = self.n, self.d
  if not lab.is_tensor(tokens) or not lab.is_tensor(memory) or tokens:dim() ~= 3 or tokens:shape_string() ~= memory:shape_string()
     or tokens:size(2) ~= n + 1 or tokens:size(3) ~= d then
    raise(string.format("oat.Model:decode: tokens and memory must be (B, %d, %d), as encode returns them", n + 1, d))
  end
  if not lab.is_tensor(inputs) or inputs:dtype() ~= "int64" or inputs:dim() ~= 2 or inputs:size(1) ~= tokens:size(1) then
    raise(string.format("oat.Model:decode: inputs must be an int64 (B, T) tensor with B = %d (got %s)", tokens:size(1),
      lab.is_tensor(inputs) and inputs:dtype() .. " " .. inputs:shape_string() or type(inputs)))
  end
  if inputs:min():item() < 1 or inputs:max():item() > n + 1 then
    raise(string.format("oat.Model:decode: inputs must be object ids 1 .. %d or %d (the start and padding)", n, n + 1))
  end
  local B, T = inputs:size(1), inputs:size(2)
  if T > self.max_len + 1 then
    raise(string.format("oat.Model:decode: %d decoder steps, the model was built for max_len + 1 = %d", T, self.max_len + 1))
  end
  local rows = self.decoder_input == "memory" and memory or tokens
  local lookup = lab.cat({ rows:narrow(2, 1, n), self.params.start:expand{ B, 1, d } }, 2)     -- (B, n + 1, d)
  local x = lookup:gather(2, inputs:unsqueeze(3):expand{ B, T, d })
  x = x + self.buffers.step_code:narrow(1, 1, T):unsqueeze(1)
  for l = 1, self.dec_layers do x = self.dec[l](x, memory) end
  x = self.dec_ln(x)
  local H = self.pointer_heads
  local hd = d / H
  local q = self.w_dec(x):reshape{ B, T, H, hd }:permute(1, 3, 2, 4)
  local k = self.w_enc(memory:narrow(2, 1, n)):reshape{ B, n, H, hd }:permute(1, 3, 2, 4)
  local eos_key = self.params.eos_key and self.params.eos_key:expand{ B, H, 1, hd } or lab.zeros({ B, H, 1, hd }, k:dtype())
  k = lab.cat({ k, eos_key }, 3)                   -- the end-of-search key (zero: its score is the constant 0)
  local logp = lab.attention(q, k, k, { variant = "pointer" })                  -- (B, H, T, n + 1)
  return self.readout(logp:permute(1, 3, 4, 2)):reshape{ B, T, n + 1 }
end

-- (B, ...) -> (B K, ...): each row repeated K times in a row (rows b K - K + 1 .. b K are row b)
local function repeat_rows(x, K)
  if K == 1 then return x end
  local s = x:shape()
  local shape = { s[1], K }
  for i = 2, #s do shape[i + 1] = s[i] end
  local flat = { s[1] * K }
  for i = 2, #s do flat[i] = s[i] end
  return x:unsqueeze(2):expand(shape):reshape(flat)
end

-- m(patches, inputs) -> logits (B K, T, n + 1): inputs (B K, T) holds K scanpaths of each shelf in
-- a row (K = 1: one each), so that the CNN and the encoder run once per shelf
function Model:forward(patches, inputs)
  local tokens, memory = self:encode(patches)
  local B = tokens:size(1)
  if not lab.is_tensor(inputs) or inputs:dtype() ~= "int64" or inputs:dim() ~= 2 or inputs:size(1) % B ~= 0 then
    raise(string.format("oat.Model: inputs must be an int64 (B K, T) tensor, K scanpaths for each of the %d shelves (got %s)", B,
      lab.is_tensor(inputs) and inputs:dtype() .. " " .. inputs:shape_string() or type(inputs)))
  end
  local K = inputs:size(1) / B
  return self:decode(repeat_rows(tokens, K), repeat_rows(memory, K), inputs)
end

-- m:generate(patches [, {greedy = true, samples = 1, max_len = m.max_len}]) -> a list of B x samples
-- scanpaths (row b's samples at (b - 1) samples + 1 ...): greedy decoding takes the most likely class
-- at each step, sampling draws it from the softmax (lab's generator); a scanpath stops at the end
-- class or after max_len fixations.
function Model:generate(patches, opts)
  opts = opts or {}
  nn.check_options(opts, "oat.Model:generate", { "greedy", "samples", "max_len" })
  local greedy = opts.greedy ~= false
  local K = opts.samples or 1
  nn.check_positive_int(K, "oat.Model:generate", "samples")
  local max_len = opts.max_len or self.max_len
  if max_len > self.max_len then raise("oat.Model:generate: max_len " .. max_len .. " is longer than the model's " .. self.max_len) end
  local n, d = self.n, self.d
  return lab.no_grad(function()
    local tokens, memory = self:encode(patches)
    local B = tokens:size(1)
    tokens, memory = repeat_rows(tokens, K), repeat_rows(memory, K)
    local R = B * K
    local inputs, paths, done = {}, {}, {}
    for r = 1, R do inputs[r], paths[r], done[r] = { n + 1 }, {}, false end
    local left = R
    for t = 1, max_len do
      local logits = self:decode(tokens, memory, lab.tensor(inputs, "int64"))
      local last = logits:narrow(2, t, 1):reshape{ R, n + 1 }
      if not greedy then last = last - (-(lab.rand{ R, n + 1 } * (1 - 2e-7) + 1e-7):log()):log() end   -- Gumbel-max
      local pick = last:argmax(2):totable()
      for r = 1, R do
        local j = pick[r]
        if type(j) == "table" then j = j[1] end
        if not done[r] then
          if j == n + 1 then
            done[r], left = true, left - 1
          else
            paths[r][#paths[r] + 1] = j
          end
        end
        inputs[r][t + 1] = done[r] and n + 1 or j
      end
      if left == 0 then break end
    end
    return paths
  end)
end

return oat
