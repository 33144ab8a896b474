-- attnlab.gpt: lab.nn.GPT, a GPT-2-style decoder for token tasks, with an activation cache and
-- named hook points (docs/gpt.md).
--
--   lab.nn.GPT{vocab=, context=, layers=, width=, heads=1, head_dim=width/heads, kv_heads=heads,
--              mlp=true, mlp_ratio=4, activation="gelu", variant="softmax", causal=true, tied=true,
--              bias=true, init="gpt2", dtype="float32", scale=, norm=, attention={...},
--              and the variant's options by name (window, kernel_size, top_k, max_relative, ...)}
--
-- Token embedding wte (vocab, width) + learned position embedding wpe (context, width), `layers`
-- pre-LN blocks (x = x + attn(ln1(x)); x = x + mlp(ln2(x)), the second line absent with mlp=false),
-- a final LayerNorm ln_f, and the unembedding: the token embedding itself (tied=true) or a Linear
-- `head` (width -> vocab, no bias).  Ids are int64, counted from 1 as lab.nn.Embedding takes them.
-- init="gpt2": every Linear and Embedding weight N(0, 0.02^2), the residual projections (attn.o,
-- mlp.fc2) N(0, (0.02 / sqrt(residual branches))^2) (2 layers branches, `layers` without MLPs), Linear
-- biases 0, LayerNorm 1 and 0; init="default" keeps the modules' own initialisation.
--
--   model(ids)                                   -> logits (B, T, vocab)
--   model:run_with_cache(ids [, {names=, hooks=}]) -> logits, cache   (name -> detached tensor)
--   model:run_with_hooks(ids, {[name] = fn})     -> logits            fn(t, name) -> replacement or nil
--   model:hook_names()                           -> the hook point names of this model, in forward order
--
-- The plain forward is the fast path: it calls the blocks' modules exactly as TransformerBlock does
-- and looks at no hook.  The hooked forward runs MultiHeadAttention's steps one by one (the
-- module's q, k, v children, lab.attention, its output projection `o`), with the module's own
-- analysis hooks (record, set_head_scale, logit_bias, logit_extra, logit_probe, map_hook) honoured
-- as its forward honours them, so that with no hook installed both paths give the same bits.
local lab = require "attnlab"
local core = require "attnlab.core"
local nn_module, nn_layers = require "attnlab.nn_module", require "attnlab.nn_layers"
local nn_attention, variant_modules = require "attnlab.nn_attention", require("attnlab.nn_variants").modules
local raise, is_tensor = core.raise, core.is_tensor

local check_positive_int = nn_module.check_positive_int

-- GPT's own options, then the variant options it hands to MultiHeadAttention by name: every
-- variant-specific one the module takes (lab.attention's and its variants' module options)
local own_keys = { "vocab", "context", "layers", "heads", "width", "head_dim", "kv_heads", "mlp", "mlp_ratio",
                   "activation", "variant", "causal", "tied", "bias", "init", "dtype", "scale", "norm", "attention" }
local variant_keys = {}
for key in pairs(select(2, nn_attention.attention_module_options())) do variant_keys[#variant_keys + 1] = key end
table.sort(variant_keys)
local valid_keys, valid_list = {}, {}
for _, k in ipairs(own_keys) do valid_keys[k] = true; valid_list[#valid_list + 1] = k end
for _, k in ipairs(variant_keys) do valid_keys[k] = true; valid_list[#valid_list + 1] = k end
table.sort(valid_list)

-- k or v (B, Hkv, M, d) repeated for the query heads that share each kv head: (B, H, M, d)
-- (as MultiHeadAttention does for map_hook)
local function repeat_kv_heads(t, heads)
  local s = t:shape()
  if s[2] == heads then return t end
  return t:reshape{ s[1], s[2], 1, s[3], s[4] }:expand{ s[1], s[2], heads / s[2], s[3], s[4] }:reshape{ s[1], heads, s[3], s[4] }
end

-------------------------------------------------------------------------------------------------
-- GPTBlock: pre-LN, attention (+ MLP).  Children ln1, attn, ln2, mlp: the names (and so the state
-- dict) of TransformerBlock's; with mlp=false only ln1 and attn.
-------------------------------------------------------------------------------------------------
local Block = nn_module.class("GPTBlock")
function Block:init(o)
  self.dim = o.dim
  self.ln1 = self:add_child("ln1", nn_layers.LayerNorm(o.dim))
  self.attn = self:add_child("attn", nn_attention.MultiHeadAttention(o.attn))
  if o.mlp then
    self.ln2 = self:add_child("ln2", nn_layers.LayerNorm(o.dim))
    self.mlp = self:add_child("mlp", nn_layers.MLP{ dims = { o.dim, o.hidden, o.dim }, activation = o.activation, bias = o.bias })
  end
end
-- the fast path: what TransformerBlock:forward does (without dropout)
function Block:forward(x)
  x = x + self.attn(self.ln1(x))
  if self.mlp then x = x + self.mlp(self.ln2(x)) end
  return x
end
function Block:describe()
  return string.format("GPTBlock(dim=%d, %s%s)", self.dim, self.attn:describe(), self.mlp and ", " .. self.mlp:describe() or ", no MLP")
end

-- MultiHeadAttention:forward for self-attention, step by step, with hook points under `prefix`
-- (q, k, v, pattern, head_out).  point(name, t) -> t (the hook's replacement, cached).
local function attention_steps(m, x, point, prefix, wants)
  local q, k, v, call = m:attention_inputs(x, x)
  q, k, v = point(prefix .. "q", q), point(prefix .. "k", k), point(prefix .. "v", v)
  local bias = m:logit_hooks_bias(x:size(1), x:size(2), x:size(2), q:dtype())
  call.bias = bias
  local out, weights
  local pattern = prefix .. "pattern"
  if m.map_hook or wants.hook(pattern) then
    -- the map itself, differentiable, so that a hook may replace it
    local map = m:attention_map(q, k, bias)
    if m.map_hook then
      map = m.map_hook(map)
      if not is_tensor(map) or map:dim() ~= 4 then
        raise("MultiHeadAttention: map_hook must return a (B, H, N, M) tensor (got " .. (is_tensor(map) and map:shape_string() or type(map)) .. ")")
      end
    end
    local new = point(pattern, map)
    if rawequal(new, map) and not m.map_hook then
      out, weights = lab.attention(q, k, v, call)     -- left as it was: the plain forward's kernel, same bits
    else
      out, weights = new:matmul(repeat_kv_heads(v, m.heads)), new:detach()
    end
  else
    out, weights = lab.attention(q, k, v, call)
    if wants.cache(pattern) then
      local map = weights
      if not call.weights then                      -- a second call for the map, so the output keeps its kernel
        local again = {}
        for key, val in pairs(call) do again[key] = val end
        again.weights = true
        map = lab.no_grad(function() local _, w = lab.attention(q, k, v, again) return w end)
      end
      if map then point(pattern, map) end           -- nil: the variant has no (B, H, N, M) map
    end
  end
  if m.record then m.weights = weights end
  m:after_attention(q, k)
  if m.head_scale then out = out * m.head_scale end
  out = point(prefix .. "head_out", out)
  local s = out:shape()
  out = out:permute(1, 3, 2, 4):reshape{ s[1], s[3], s[2] * s[4] }
  return m.o(out)
end

function Block:forward_points(x, l, point, wants)
  local p = "blocks." .. l .. "."
  x = point(p .. "resid_pre", x)
  local a = attention_steps(self.attn, point(p .. "ln1.out", self.ln1(x)), point, p .. "attn.", wants)
  a = point(p .. "attn.out", a)
  if not self.mlp then return point(p .. "resid_post", x + a) end
  x = point(p .. "resid_mid", x + a)
  local h = point(p .. "ln2.out", self.ln2(x))
  local fc1, fc2, act = self.mlp.children.fc1, self.mlp.children.fc2, self.mlp.activation
  h = fc1(h)
  h = point(p .. "mlp.post", h[act](h))
  local mo = point(p .. "mlp.out", fc2(h))
  return point(p .. "resid_post", x + mo)
end

-------------------------------------------------------------------------------------------------
-- GPT
-------------------------------------------------------------------------------------------------
local GPT = nn_module.class("GPT")

local function show(v) return type(v) == "string" and string.format("%q", v) or tostring(v) end

-- every parameter and buffer as a float64 (or float32) tensor, in place of the old one
local function convert(m, dtype)
  for _, kind in ipairs{ "params", "buffers" } do
    local map, order = m[kind], kind == "params" and m.param_order or m.buffer_order
    for _, name in ipairs(order or {}) do
      local old = map[name]
      if old:dtype() ~= dtype then
        local new = old:detach():to(dtype)
        if kind == "params" then new = new:requires_grad(true) end
        map[name] = new
        for key, val in pairs(m) do if rawequal(val, old) then m[key] = new end end
      end
    end
  end
  for _, name in ipairs(m.child_order) do convert(m.children[name], dtype) end
end

-- GPT-2's initialisation (see the top of the file)
local function gpt2_init(self, residual_branches)
  local resid_std = 0.02 / math.sqrt(residual_branches)
  local function visit(m, path)
    local cls = getmetatable(m)
    if cls == nn_layers.Linear or cls == nn_layers.Embedding then
      local resid = path:match("attn%.o$") or path:match("mlp%.fc2$")
      m.weight:copy_(lab.randn(m.weight:shape()) * (resid and resid_std or 0.02))
      if m.bias then m.bias:fill_(0) end
    end
    for _, name in ipairs(m.child_order) do visit(m.children[name], path == "" and name or path .. "." .. name) end
  end
  visit(self, "")
end

function GPT:init(opts)
  if type(opts) ~= "table" then raise("GPT: expects a table of options {vocab=, context=, layers=, width=, heads=, ...}") end
  for key in pairs(opts) do
    if not valid_keys[key] then
      raise("GPT: unknown option '" .. tostring(key) .. "' (valid: " .. table.concat(valid_list, ", ") .. ")")
    end
  end
  local vocab = check_positive_int(opts.vocab, "GPT", "vocab")
  local context = check_positive_int(opts.context, "GPT", "context")
  local layers = check_positive_int(opts.layers, "GPT", "layers")
  local width = check_positive_int(opts.width, "GPT", "width")
  local heads = check_positive_int(opts.heads or 1, "GPT", "heads")
  local mlp = opts.mlp
  if mlp == nil then mlp = true end
  if type(mlp) ~= "boolean" then raise("GPT: mlp must be true or false (got " .. show(opts.mlp) .. ")") end
  local ratio = opts.mlp_ratio or 4
  if type(ratio) ~= "number" or not (ratio > 0) or ratio == math.huge then
    raise("GPT: mlp_ratio must be a number > 0 (got " .. show(opts.mlp_ratio) .. ")")
  end
  local hidden = math.floor(ratio * width)
  if mlp and hidden < 1 then raise(string.format("GPT: mlp_ratio %g gives an MLP of %d hidden units", ratio, hidden)) end
  if not mlp then   -- the MLP's options would be silently ignored
    for _, key in ipairs{ "mlp_ratio", "activation" } do
      if opts[key] ~= nil then raise("GPT: " .. key .. " shapes the MLP, and mlp = false builds none") end
    end
  end
  local tied = opts.tied
  if tied == nil then tied = true end
  if type(tied) ~= "boolean" then raise("GPT: tied must be true or false (got " .. show(opts.tied) .. ")") end
  if opts.bias ~= nil and type(opts.bias) ~= "boolean" then raise("GPT: bias must be true or false (got " .. show(opts.bias) .. ")") end
  local init = opts.init or "gpt2"
  if init ~= "gpt2" and init ~= "default" then raise("GPT: init must be \"gpt2\" or \"default\" (got " .. show(opts.init) .. ")") end
  local dtype = opts.dtype or "float32"
  if dtype ~= "float32" and dtype ~= "float64" then raise("GPT: dtype must be \"float32\" or \"float64\" (got " .. show(opts.dtype) .. ")") end
  local variant = opts.variant or "softmax"
  local entry = variant_modules[variant]
  if entry and entry.raw_output then   -- pointer: a distribution over the positions
    raise("GPT: variant '" .. tostring(variant) .. "' returns its attention output itself (pointer: a distribution over "
      .. "positions), not token states: it has no place in a GPT")
  end
  if opts.activation ~= nil and type(opts.activation) ~= "string" then
    raise("GPT: activation must be a string (got " .. show(opts.activation) .. ")")
  end
  if opts.attention ~= nil and type(opts.attention) ~= "table" then
    raise("GPT: attention must be a table of MultiHeadAttention options (got " .. type(opts.attention) .. ")")
  end
  local causal = opts.causal
  if causal == nil then causal = true end

  self.vocab, self.context, self.layers, self.width, self.heads = vocab, context, layers, width, heads
  self.mlp, self.tied, self.variant, self.dtype = mlp, tied, variant, dtype

  self.wte = self:add_child("wte", nn_layers.Embedding(vocab, width))
  self.wpe = self:add_child("wpe", nn_layers.Embedding(context, width))
  local blocks = {}
  for l = 1, layers do
    local attn = { dim = width, heads = heads, head_dim = opts.head_dim, kv_heads = opts.kv_heads, variant = variant,
                   causal = causal, bias = opts.bias, scale = opts.scale, norm = opts.norm }
    for _, key in ipairs(variant_keys) do attn[key] = opts[key] end
    for key, val in pairs(opts.attention or {}) do attn[key] = val end
    blocks[l] = Block{ dim = width, attn = attn, mlp = mlp, hidden = hidden, activation = opts.activation or "gelu", bias = opts.bias }
  end
  self:add_child("blocks", nn_layers.Sequential(blocks))                     -- parameter names blocks.<l>.<...>
  self.blocks = blocks                                                -- model.blocks[l].attn, .ln1, .mlp ...
  self.ln_f = self:add_child("ln_f", nn_layers.LayerNorm(width))
  if not tied then self.head = self:add_child("head", nn_layers.Linear(width, vocab, { bias = false })) end
  if init == "gpt2" then gpt2_init(self, mlp and 2 * layers or layers) end
  if dtype ~= "float32" then convert(self, dtype) end
  self.position_cache = {}
end

function GPT:describe()
  return string.format("GPT(vocab=%d, context=%d, layers=%d, heads=%d, width=%d, %s, %s, %s)", self.vocab, self.context,
    self.layers, self.heads, self.width, self.mlp and "mlp" or "attention-only", self.variant, self.tied and "tied" or "untied")
end

-- (B, T) int64 ids, checked; returns T
local function check_ids(self, ids)
  if not is_tensor(ids) then
    raise("GPT: ids must be an int64 tensor (B, T) of token ids from 1 to " .. self.vocab .. " (got " .. type(ids) .. ")")
  end
  if ids:dtype() ~= "int64" or ids:dim() ~= 2 then
    raise(string.format("GPT: ids must be an int64 tensor (B, T) of token ids from 1 to %d (got %s %s)", self.vocab,
      ids:dtype(), ids:shape_string()))
  end
  local T = ids:size(2)
  if T < 1 or ids:size(1) < 1 then raise("GPT: ids " .. ids:shape_string() .. " is empty") end
  if T > self.context then
    raise(string.format("GPT: ids %s: sequence length %d is longer than the context %d", ids:shape_string(), T, self.context))
  end
  return T
end

local function positions(self, T)
  local p = self.position_cache[T]
  if not p then
    p = lab.arange(1, T + 1):reshape{ 1, T }:to("int64")
    self.position_cache[T] = p
  end
  return p
end

local function token_embedding(self, ids)
  local ok, x = pcall(self.wte.forward, self.wte, ids)
  if not ok then
    local msg = tostring(x):gsub("^.-embedding: ", "")
    raise(string.format("GPT: token ids must be from 1 to vocab = %d (ids count from 1; %s)", self.vocab, msg))
  end
  return x
end

local function unembed(self, h)
  if self.tied then return lab.linear(h, self.wte.weight) end
  return self.head(h)
end

-- the fast path
function GPT:forward(ids)
  local T = check_ids(self, ids)
  local x = token_embedding(self, ids) + self.wpe(positions(self, T))
  for _, block in ipairs(self.blocks) do x = block:forward(x) end
  return unembed(self, self.ln_f(x))
end

-- the names of this model's hook points, in the order the forward reaches them
-- The blocks' MultiHeadAttention modules, layer by layer (what run:attention_layers takes, so that
-- the viewer's ablate command reaches them).
function GPT:attention_modules()
  local list = {}
  for i, block in ipairs(self.blocks) do list[i] = block.attn end
  return list
end

function GPT:hook_names()
  local names = { "embed", "pos_embed" }
  for l = 1, self.layers do
    local p = "blocks." .. l .. "."
    for _, n in ipairs{ "resid_pre", "ln1.out", "attn.q", "attn.k", "attn.v", "attn.pattern", "attn.head_out", "attn.out" } do
      names[#names + 1] = p .. n
    end
    if self.mlp then
      for _, n in ipairs{ "resid_mid", "ln2.out", "mlp.post", "mlp.out" } do names[#names + 1] = p .. n end
    end
    names[#names + 1] = p .. "resid_post"
  end
  names[#names + 1] = "ln_final.out"
  names[#names + 1] = "logits"
  return names
end

local function name_set(self)
  local set = {}
  for _, n in ipairs(self:hook_names()) do set[n] = true end
  return set
end

local function unknown_name(self, fn, name)
  raise(string.format("GPT:%s: no hook point '%s' in this model (%s; model:hook_names() lists them)", fn, tostring(name),
    self.mlp and "embed, pos_embed, blocks.<1.." .. self.layers .. ">.{resid_pre, ln1.out, attn.q, attn.k, attn.v, "
      .. "attn.pattern, attn.head_out, attn.out, resid_mid, ln2.out, mlp.post, mlp.out, resid_post}, ln_final.out, logits"
    or "embed, pos_embed, blocks.<1.." .. self.layers .. ">.{resid_pre, ln1.out, attn.q, attn.k, attn.v, attn.pattern, "
      .. "attn.head_out, attn.out, resid_post}, ln_final.out, logits (attention-only: no resid_mid, ln2 or mlp)"))
end

local function check_hooks(self, fn, hooks)
  if type(hooks) ~= "table" then raise("GPT:" .. fn .. ": hooks must be a table {[name] = function(t, name) ... end} (got " .. type(hooks) .. ")") end
  local set = name_set(self)
  for name, h in pairs(hooks) do
    if not set[name] then unknown_name(self, fn, name) end
    if type(h) ~= "function" then raise("GPT:" .. fn .. ": the hook of '" .. name .. "' must be a function (got " .. type(h) .. ")") end
    if name:match("attn%.pattern$") then
      local v = self.variant
      if v ~= "softmax" and v ~= "lsa" then
        raise("GPT:" .. fn .. ": a hook on '" .. name .. "' needs the softmax or lsa variant (this model's is '" .. v .. "')")
      end
    end
  end
end

-- the hooked forward: hooks {name = fn}, cache (a table to fill) or nil, names (a set) or nil (all)
local function run(self, fn, ids, hooks, cache, names)
  local T = check_ids(self, ids)
  local function point(name, t)
    local h = hooks[name]
    if h then
      local r = h(t, name)
      if r ~= nil then
        if not is_tensor(r) then raise("GPT:" .. fn .. ": the hook of '" .. name .. "' returned a " .. type(r) .. ", not a tensor") end
        if r:shape_string() ~= t:shape_string() then
          raise(string.format("GPT:%s: the hook of '%s' returned a tensor of shape %s for one of shape %s", fn, name,
            r:shape_string(), t:shape_string()))
        end
        t = r
      end
    end
    if cache and (names == nil or names[name]) then cache[name] = t:detach() end
    return t
  end
  local wants = {
    hook = function(name) return hooks[name] ~= nil end,
    cache = function(name) return cache ~= nil and (names == nil or names[name] == true) end,
  }
  local x = point("embed", token_embedding(self, ids)) + point("pos_embed", self.wpe(positions(self, T)))
  for l, block in ipairs(self.blocks) do x = block:forward_points(x, l, point, wants) end
  return point("logits", unembed(self, point("ln_final.out", self.ln_f(x))))
end

function GPT:run_with_hooks(ids, hooks)
  check_hooks(self, "run_with_hooks", hooks)
  return run(self, "run_with_hooks", ids, hooks)
end

function GPT:run_with_cache(ids, opts)
  opts = opts or {}
  if type(opts) ~= "table" then raise("GPT:run_with_cache: options must be a table {names=, hooks=} (got " .. type(opts) .. ")") end
  for key in pairs(opts) do
    if key ~= "names" and key ~= "hooks" then raise("GPT:run_with_cache: unknown option '" .. tostring(key) .. "' (valid: hooks, names)") end
  end
  local names
  if opts.names ~= nil then
    if type(opts.names) ~= "table" then raise("GPT:run_with_cache: names must be a list of hook point names (got " .. type(opts.names) .. ")") end
    local set = name_set(self)
    names = {}
    for _, n in ipairs(opts.names) do
      if not set[n] then unknown_name(self, "run_with_cache", n) end
      names[n] = true
    end
  end
  local hooks = opts.hooks or {}
  check_hooks(self, "run_with_cache", hooks)
  local cache = {}
  local logits = run(self, "run_with_cache", ids, hooks, cache, names)
  return logits, cache
end

-- GPT.replace_heads(t, heads, src): t (B, H, ...) with the heads listed (a number or a list)
-- taken from src (a tensor of t's shape) or set to 0 (src nil or 0), as t * keep + src * take with
-- (1, H, 1, ...) masks: differentiable in t and src, and a head zeroed this way gives the same bits
-- as MultiHeadAttention:set_head_scale(h, 0).  For hooks on attn.q/k/v/pattern/head_out.
function GPT.replace_heads(t, heads, src)
  if not is_tensor(t) or t:dim() < 2 then
    raise("GPT.replace_heads: t must be a tensor (B, H, ...) (got " .. (is_tensor(t) and t:shape_string() or type(t)) .. ")")
  end
  local H = t:size(2)
  if type(heads) == "number" then heads = { heads } end
  if type(heads) ~= "table" then raise("GPT.replace_heads: heads must be a head number or a list of them (got " .. type(heads) .. ")") end
  local take = {}
  for h = 1, H do take[h] = 0 end
  for _, h in ipairs(heads) do
    if type(h) ~= "number" or h ~= math.floor(h) or h < 1 or h > H then
      raise(string.format("GPT.replace_heads: head %s is out of range 1..%d", tostring(h), H))
    end
    take[h] = 1
  end
  local mshape = { 1, H }
  for _ = 3, t:dim() do mshape[#mshape + 1] = 1 end
  local keep = {}
  for h = 1, H do keep[h] = 1 - take[h] end
  local out = t * lab.tensor(keep, t:dtype()):reshape(mshape)
  if src == nil or src == 0 then return out end
  if not is_tensor(src) or src:shape_string() ~= t:shape_string() then
    raise(string.format("GPT.replace_heads: src must be a tensor of t's shape %s or 0 (got %s)", t:shape_string(),
      is_tensor(src) and src:shape_string() or tostring(src)))
  end
  return out + src * lab.tensor(take, t:dtype()):reshape(mshape)
end

return GPT
