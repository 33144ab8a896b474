-- attnlab.nn_attention: the attention modules of lab.nn -- MultiHeadAttention (any variant of
-- lab.attention, with the analysis hooks) and TransformerBlock -- and the lists of the variant
-- options they take by name.  What a variant's module does beyond the standard projections and one
-- lab.attention call is its entry in nn_variants.lua.  nn.lua hands what this returns to lab.nn.
local lab = require "attnlab"
local core, args = require "attnlab.core", require "attnlab.args"
local nn_module, nn_layers = require "attnlab.nn_module", require "attnlab.nn_layers"
local variant_modules = require("attnlab.nn_variants").modules

local raise, is_tensor = core.raise, core.is_tensor
local check_positive_int, check_options, check_input, split_heads =
  nn_module.check_positive_int, nn_module.check_options, nn_module.check_input, nn_module.split_heads
local Linear, LayerNorm, MLP, activations = nn_layers.Linear, nn_layers.LayerNorm, nn_layers.MLP, nn_layers.activations

local nn = {}   -- what this file gives lab.nn
nn.attention_variant_modules = variant_modules

---------------------------------------------------------------------------------------------------
-- MultiHeadAttention{dim=, heads=, head_dim=dim/heads, kv_heads=heads, out_dim=dim, variant="softmax",
--                    causal=false, bias=true, scale=nil, norm=nil, window=, kernel_size=, top_k=, ...,
--                    attention={...}}
--   The lab.attention options of any variant (window, kernel_size, ..., block_size, top_k, ...: see
--   nn.attention_option_names), given by name or in the table `attention`, go to every lab.attention
--   call; with a grid (neighborhood variants) N must equal the grid's product.  What a variant's
--   module does beyond that (its parameters, its own options) is its entry in
--   nn.attention_variant_modules (nn_variants.lua).
--   forward(x [, context]) -> (B, N, out_dim); keys and values come from context (cross-attention)
--   or from x (self-attention).  Analysis hooks, per module:
--     m.record = true        keep the last attention map in m.weights (B, H, N, M), detached
--     m:set_head_scale(h, s) scale head h's output (0 ablates it); m:reset_head_scale()
--     m.logit_bias = tensor  added to the logits (broadcast to (B, H, N, M)); a tensor that requires
--                            grad gets its gradient (the logit hook of Attention AT)
--     m.logit_probe = true   adds a zero (B, H, N, M) tensor that requires grad to the logits and keeps
--                            it in m.logit_probe_tensor: after backward its .grad is dL/dlogits
--     m.logit_extra = tensor a second additive term (Attention AT's perturbation), beside logit_bias
--     m.map_hook = fn        fn(map) -> map: replaces the (B, H, N, M) map before it weighs the values,
--                            differentiably (SoftPAG's identity interpolation, ACT's calibration, ...)
---------------------------------------------------------------------------------------------------
-- MultiHeadAttention's own options
local mha_base_options = { "dim", "heads", "head_dim", "kv_heads", "out_dim", "context_dim", "variant", "causal", "scale",
                           "norm", "bias", "record", "attention" }

-- The lab.attention options the module takes by name and hands to every call, and the variants owning
-- each: every option of the C core's descriptors that is not a tensor (tensors are the variants'
-- parameters or per-call values, which their entries in nn.attention_variant_modules make or take),
-- that no entry takes as a module option of its own, and that is not one of the module's own.
-- Made once, after nn_variants.lua has filled the entries (the end of this section).
local function attention_call_options()
  local names, owners, taken = {}, {}, {}
  for _, k in ipairs(mha_base_options) do taken[k] = true end
  for _, entry in pairs(variant_modules) do
    for _, k in ipairs(entry.options or {}) do taken[k] = true end
  end
  for _, variant in ipairs(lab.attention.variants()) do
    for _, o in ipairs(lab.attention.describe(variant).options) do
      if o.kind ~= "tensor" and not taken[o.name] then
        if not owners[o.name] then names[#names + 1] = o.name end
        owners[o.name] = (owners[o.name] and owners[o.name] .. " " or "") .. variant
      end
    end
  end
  return names, owners
end

-- Every option name MultiHeadAttention accepts (in the order of its error messages), and the
-- variant(s) owning each variant-specific one: nn.attention_option_names (lab.attention's, owned as
-- the C core says), then the options = {...} of nn.attention_variant_modules.  An option of a variant
-- other than the module's is accepted; the module's entry never reads it (a script may give one table
-- of options to every variant; tests do), and lab.attention refuses one it would be handed.
function nn.attention_module_options()
  local list, owner = {}, {}
  for _, k in ipairs(mha_base_options) do list[#list + 1] = k end
  local names, owners = attention_call_options()
  for _, k in ipairs(names) do list[#list + 1] = k; owner[k] = owners[k] end
  local variants = {}
  for name in pairs(variant_modules) do variants[#variants + 1] = name end
  table.sort(variants)
  for _, v in ipairs(variants) do
    for _, k in ipairs(variant_modules[v].options or {}) do
      if not owner[k] then list[#list + 1] = k end
      owner[k] = v
    end
  end
  return list, owner
end

local MHA = nn_module.class("MultiHeadAttention")
nn.MultiHeadAttention = MHA
function MHA:init(opts)
  if type(opts) ~= "table" then raise("MultiHeadAttention: expects a table of options {dim=, heads=, ...}") end
  local valid = nn.attention_module_options()
  check_options(opts, "MultiHeadAttention", valid)
  local dim = check_positive_int(opts.dim, "MultiHeadAttention", "dim")
  local heads = check_positive_int(opts.heads or 1, "MultiHeadAttention", "heads")
  local head_dim = opts.head_dim
  if head_dim == nil then
    if dim % heads ~= 0 then raise(string.format("MultiHeadAttention: dim %d is not divisible by heads %d (give head_dim)", dim, heads)) end
    head_dim = dim / heads
  end
  check_positive_int(head_dim, "MultiHeadAttention", "head_dim")
  local kv_heads = check_positive_int(opts.kv_heads or heads, "MultiHeadAttention", "kv_heads")
  if heads % kv_heads ~= 0 then raise(string.format("MultiHeadAttention: heads %d is not a multiple of kv_heads %d", heads, kv_heads)) end
  self.dim, self.heads, self.head_dim, self.kv_heads = dim, heads, head_dim, kv_heads
  self.input_label = string.format("MultiHeadAttention(dim=%d)", dim)   -- how its input errors name it
  self.out_dim = check_positive_int(opts.out_dim or dim, "MultiHeadAttention", "out_dim")
  self.context_dim = check_positive_int(opts.context_dim or dim, "MultiHeadAttention", "context_dim")
  if type(opts.variant or "") ~= "string" then
    raise("MultiHeadAttention: variant must be a string (got " .. args.show(opts.variant) .. ")")
  end
  self.variant = opts.variant or "softmax"
  local entry = variant_modules[self.variant]
  local known, names = entry ~= nil, lab.attention.variants()
  for _, v in ipairs(names) do if v == self.variant then known = true end end
  if not known then
    for name, m in pairs(variant_modules) do if m.module_only then names[#names + 1] = name end end
    table.sort(names)
    raise("MultiHeadAttention: unknown variant '" .. tostring(self.variant) .. "' (known: " .. table.concat(names, ", ") .. ")")
  end
  entry = entry or {}
  -- the options every forward hands to lab.attention, checked here rather than at the first forward
  local causal = opts.causal
  if not (causal == nil or type(causal) == "boolean" or causal == "top_left" or causal == "bottom_right" or causal == "none"
          or type(causal) == "table") then
    raise("MultiHeadAttention: causal must be true, false, 'top_left', 'bottom_right' or, with a grid, a table of booleans "
      .. "per axis (got " .. args.show(causal) .. ")")
  end
  self.causal = causal ~= "none" and causal or false
  if opts.scale ~= nil then
    args.check_number(opts.scale, "MultiHeadAttention", "scale", { finite = true })
    if opts.scale == 0 then raise("MultiHeadAttention: scale must not be 0 (leave it out for the default, 1/sqrt(head_dim))") end
  end
  if opts.norm ~= nil then
    args.check_number(opts.norm, "MultiHeadAttention", "norm", { 0, math.huge, lo_open = true, hi_open = true })
  end
  self.scale, self.norm = opts.scale, opts.norm
  if opts.attention ~= nil and (type(opts.attention) ~= "table" or is_tensor(opts.attention)) then
    raise("MultiHeadAttention: attention must be a table of lab.attention options (got " .. args.typename(opts.attention) .. ")")
  end
  if opts.attention then
    local valid = { "variant", "causal", "scale", "bias", "mask", "weights" }   -- lab.attention's shared keys ...
    for _, k in ipairs(nn.attention_option_names) do valid[#valid + 1] = k end   -- ... and its variants' (descriptors)
    check_options(opts.attention, "MultiHeadAttention", valid, nil, " in attention = {...} (lab.attention's options)")
  end
  self.attention_opts = {}
  for key, val in pairs(opts.attention or {}) do self.attention_opts[key] = val end
  for _, key in ipairs(nn.attention_option_names) do
    if opts[key] ~= nil then self.attention_opts[key] = opts[key] end
  end
  local bias = opts.bias ~= false
  local o_in = heads * head_dim
  if entry.init then
    o_in = entry.init(self, opts, bias)
  else
    self:standard_projections(opts, bias)
  end
  self.o = self:add_child("o", Linear(o_in, self.out_dim, { bias = bias }))
  self.record = opts.record or false
  if entry.setup then entry.setup(self, opts) end
end

-- the q, k, v projections most variants use, and their (B, H, N, hd) outputs
function MHA:standard_projections(opts, bias)
  self.q = self:add_child("q", Linear(self.dim, self.heads * self.head_dim, { bias = bias }))
  self.k = self:add_child("k", Linear(self.context_dim, self.kv_heads * self.head_dim, { bias = bias }))
  self.v = self:add_child("v", Linear(self.context_dim, self.kv_heads * self.head_dim, { bias = bias }))
end
-- Self-attention computes q, k and v in one product against the three weights stacked: one GEMM of
-- three times the width runs faster than three, and the backward takes one product for x's gradient
-- instead of three and their sum.  The heads are views into that one output (no copy either way:
-- the attention kernels take any row stride, and the narrows' gradients go into one tensor in place).
function MHA:standard_qkv(x, context)
  local q, k, v = self.q, self.k, self.v
  -- (only for plain Linear projections: a script that swapped one for its own module keeps it)
  if rawequal(x, context) and getmetatable(q) == Linear and getmetatable(k) == Linear and getmetatable(v) == Linear
     and (q.bias == nil) == (k.bias == nil) and (k.bias == nil) == (v.bias == nil) then
    local H, Hkv = self.heads, self.kv_heads
    local w = lab.cat({ q.weight, k.weight, v.weight }, 1)
    local b = q.bias and lab.cat({ q.bias, k.bias, v.bias }, 1)
    local s = x:shape()
    local all = lab.linear(x, w, b):reshape{ s[1], s[2], H + 2 * Hkv, self.head_dim }
    return all:narrow(3, 1, H):permute(1, 3, 2, 4), all:narrow(3, H + 1, Hkv):permute(1, 3, 2, 4),
      all:narrow(3, H + Hkv + 1, Hkv):permute(1, 3, 2, 4)
  end
  return split_heads(q(x), self.heads, self.head_dim), split_heads(k(context), self.kv_heads, self.head_dim),
    split_heads(v(context), self.kv_heads, self.head_dim)
end

-- k or v (B, Hkv, M, d) with each kv head repeated for the query heads that share it: (B, H, M, d)
local function repeat_kv_heads(t, heads)
  local s = t:shape()
  if s[2] == heads then return t end
  return t:reshape{ s[1], s[2], 1, s[3], s[4] }:expand{ s[1], s[2], heads / s[2], s[3], s[4] }:reshape{ s[1], heads, s[3], s[4] }
end

-- the forward's inputs, checked here so that a wrong one is reported by this module (not by the
-- projection or the attention op inside it); returns the context (x itself for self-attention)
local function check_attention_inputs(self, x, context)
  local label, dtype = self, self.o.weight:dtype()
  check_input(label, x, "input", self.dim, dtype, 3, "(B, N, dim)")
  if context == nil then
    if self.context_dim ~= self.dim then
      raise(string.format("%s: this module attends to a context of width %d (context_dim); give it: m(x, context)", self.input_label,
        self.context_dim))
    end
    return x
  end
  check_input(label, context, "context", self.context_dim, dtype, 3, "(B, M, context_dim)")
  if context:size(1) ~= x:size(1) then
    raise(string.format("%s: input %s and context %s have different batch sizes", self.input_label, x:shape_string(), context:shape_string()))
  end
  return context
end

-- q, k, v (B, H, N, hd), (B, Hkv, M, hd) for queries x and keys and values from context, and the
-- lab.attention options of the call: the module's, then what its variant's entry adds.
-- The lab.attention options of one call: the module's, then its attention = {...} ones.
local function attention_call(self)
  local call = { variant = self.variant, causal = self.causal, scale = self.scale, norm = self.norm, weights = self.record }
  for key, val in pairs(self.attention_opts) do call[key] = val end
  return call
end

function MHA:attention_inputs(x, context)
  local call = attention_call(self)
  local entry = variant_modules[self.variant]
  local q, k, v
  if entry and entry.forward then
    q, k, v = entry.forward(self, x, context, call)
  else
    q, k, v = self:standard_qkv(x, context)
  end
  return q, k, v, call
end

-- After the attention of one forward: the variant's own step (routing's centroids move).
function MHA:after_attention(q, k)
  local entry = variant_modules[self.variant]
  if entry and entry.after then entry.after(self, q, k) end
end

-- Keys and values in the context's own space.  With bias-free k and v projections,
--   q_h . (W_k,h z_j) = (W_k,h^T q_h) . z_j   and   W_o,h sum_j p_hj W_v,h z_j = (W_o,h W_v,h) sum_j p_hj z_j,
-- so softmax (or lsa) attention can run over the context z itself, one kv head shared by every query
-- head, with the queries q~ = x (W_q,h^T W_k,h) + W_k,h^T b_q,h and the output (W_o,h W_v,h) summed
-- over the heads: the same model, the same map and the same gradients, up to rounding; the folded
-- weights are products of the parameters made at each call (H products of head_dim-sized matrices),
-- so the gradients reach the parameters as they are.  Where the context is no wider than a head (the
-- regression study's 6-wide tokens and heads) this reads the context once for all heads instead of
-- projecting it into H copies of keys and values and writing H copies of their gradients: at the
-- study's shapes those projections, their weight gradients and the attention's passes over them were
-- a third of the training step.  Set `module.fold_context = false` to compute k and v as written.
function MHA:folds_context()
  if self.fold_context == false or self.map_hook or self.context_dim > self.head_dim or self.kv_heads ~= self.heads then
    return false
  end
  if self.variant ~= "softmax" and self.variant ~= "lsa" then return false end
  local entry = variant_modules[self.variant] or {}
  if entry.forward or entry.init or entry.after or entry.raw_output then return false end
  local q, k, v, o = self.q, self.k, self.v, self.o
  return getmetatable(q) == Linear and getmetatable(k) == Linear and getmetatable(v) == Linear and getmetatable(o) == Linear
    and k.bias == nil and v.bias == nil
end

-- The module's output for queries x over the context, computed in the context's space (above).
local function forward_in_context_space(self, x, context)
  local H, D, C, dim = self.heads, self.head_dim, self.context_dim, self.dim
  local B, N, M = x:size(1), x:size(2), context:size(2)
  local call = attention_call(self)
  call.scale = call.scale or 1 / math.sqrt(D)   -- the head's default: the keys here are C wide, not D
  call.bias = self:logit_hooks_bias(B, N, M, x:dtype())
  local wk_t = self.k.weight:reshape{ H, D, C }:transpose(2, 3)                          -- (H, C, D)
  local w_qk = wk_t:matmul(self.q.weight:reshape{ H, D, dim }):reshape{ H * C, dim }
  local b_qk = self.q.bias and wk_t:matmul(self.q.bias:reshape{ H, D, 1 }):reshape{ H * C }
  local qc = lab.linear(x, w_qk, b_qk):reshape{ B, N, H, C }:permute(1, 3, 2, 4)         -- (B, H, N, C)
  local z = context:unsqueeze(2)                                                         -- (B, 1, M, C), a view
  local oc, weights = lab.attention(qc, z, z, call)                                     -- (B, H, N, C)
  if self.record then self.weights = weights end
  if self.head_scale then oc = oc * self.head_scale end
  local w_o = self.o.weight:reshape{ self.out_dim, H, D }:permute(2, 1, 3)               -- (H, out, D)
  local w_ov = w_o:matmul(self.v.weight:reshape{ H, D, C }):permute(2, 1, 3):reshape{ self.out_dim, H * C }
  return lab.linear(oc:permute(1, 3, 2, 4):reshape{ B, N, H * C }, w_ov, self.o.bias)
end

function MHA:forward(x, context)
  context = check_attention_inputs(self, x, context)
  if self:folds_context() then return forward_in_context_space(self, x, context) end
  local q, k, v, call = self:attention_inputs(x, context)
  local bias = self:logit_hooks_bias(x:size(1), x:size(2), context:size(2), q:dtype())
  call.bias = bias
  local out, weights
  if self.map_hook then
    -- the map itself, differentiable (softmax of the logits), edited by the hook, then applied
    local map = self:attention_map(q, k, bias)
    map = self.map_hook(map)
    if not is_tensor(map) or map:dim() ~= 4 then
      raise("MultiHeadAttention: map_hook must return a (B, H, N, M) tensor (got " .. (is_tensor(map) and map:shape_string() or type(map)) .. ")")
    end
    out, weights = map:matmul(repeat_kv_heads(v, self.heads)), map:detach()
  else
    out, weights = lab.attention(q, k, v, call)
  end
  if self.record then self.weights = weights end
  self:after_attention(q, k)
  local entry = variant_modules[self.variant]
  if entry and entry.raw_output then return out end   -- e.g. pointer: the log-distribution itself
  if self.head_scale then out = out * self.head_scale end
  local s = out:shape()
  out = out:permute(1, 3, 2, 4):reshape{ s[1], s[3], s[2] * s[4] }
  return self.o(out)
end

-- What the logit hooks add to the logits (B, H, N, M): logit_bias, logit_extra, and with logit_probe
-- a fresh zero tensor that requires grad (kept in logit_probe_tensor); nil when no hook is set.
function MHA:logit_hooks_bias(B, N, M, dtype)
  local bias = self.logit_bias
  if self.logit_extra then bias = bias and bias + self.logit_extra or self.logit_extra end
  if self.logit_probe then
    local probe = lab.zeros({ B, self.heads, N, M }, dtype):requires_grad(true)
    self.logit_probe_tensor = probe
    bias = bias and bias + probe or probe
  end
  return bias
end

-- The attention map of queries q and keys k under this module's options, differentiable: the logits
-- as a composed op, made a map by the variant's entry (its map = fn; softmax and lsa have one), for
-- map_hook.
function MHA:attention_map(q, k, bias)
  local entry = variant_modules[self.variant]
  if not (entry and entry.map) then
    local with = {}
    for name, e in pairs(variant_modules) do if e.map then with[#with + 1] = name end end
    table.sort(with)
    raise("MultiHeadAttention: map_hook needs a variant whose map it can form (" .. table.concat(with, ", ") ..
      "; this module is '" .. self.variant .. "')")
  end
  local scale = self.scale or 1 / math.sqrt(self.head_dim)
  local logits = q:matmul(repeat_kv_heads(k, self.heads):transpose(3, 4)) * scale
  if bias then logits = logits + bias end
  local N, M = logits:size(3), logits:size(4)
  local allowed
  if self.causal then
    local offset = self.causal == "bottom_right" and M - N or 0
    allowed = lab.arange(M):reshape{ 1, M }:le(lab.arange(N):reshape{ N, 1 } + offset)
  end
  return entry.map(self, logits, allowed)
end

function MHA:set_head_scale(h, s)
  if type(h) ~= "number" or h < 1 or h > self.heads or h ~= math.floor(h) then
    raise(string.format("set_head_scale: head %s is out of range 1..%d", tostring(h), self.heads))
  end
  args.check_number(s, "set_head_scale", "scale", { -math.huge, math.huge })
  local scales = self.head_scale and self.head_scale:reshape{ self.heads }:totable() or {}
  for i = 1, self.heads do scales[i] = scales[i] or 1 end
  scales[h] = s
  self.head_scale = lab.tensor(scales):reshape{ 1, self.heads, 1, 1 }
end
function MHA:reset_head_scale() self.head_scale = nil end
function MHA:describe()
  return string.format("MultiHeadAttention(dim=%d, heads=%d, head_dim=%d, variant=%s%s)", self.dim, self.heads,
    self.head_dim, self.variant, self.causal and ", causal" or "")
end

-- the lab.attention options MultiHeadAttention and TransformerBlock take by name (see above)
nn.attention_option_names = attention_call_options()

---------------------------------------------------------------------------------------------------
-- TransformerBlock{dim=, heads=, mlp_ratio=4, variant=, causal=, dropout=0, mlp=true, the variant
--                  options of MultiHeadAttention by name (window, ...), attention={...}}: pre-LN,
--   x = x + attn(ln1(x)); x = x + mlp(ln2(x)).  mlp = false: an attention-only block (no ln2, no
--   mlp; x = x + attn(ln1(x))).
---------------------------------------------------------------------------------------------------
local block_options = { "dim", "heads", "head_dim", "kv_heads", "variant", "causal", "bias", "scale", "norm", "attention",
                        "mlp", "mlp_ratio", "activation", "dropout" }
for _, k in ipairs(nn.attention_option_names) do block_options[#block_options + 1] = k end
local Block = nn_module.class("TransformerBlock")
nn.TransformerBlock = Block
function Block:init(opts)
  if type(opts) ~= "table" then raise("TransformerBlock: expects a table of options {dim=, heads=, ...}") end
  local mha_valid = nn.attention_module_options()
  local mha_known = {}
  for _, k in ipairs(mha_valid) do mha_known[k] = true end
  check_options(opts, "TransformerBlock", block_options, function(k)
    if mha_known[k] then return "MultiHeadAttention's option " .. k .. " goes in attention = {" .. k .. " = ...}" end
  end)
  if opts.attention ~= nil and type(opts.attention) == "table" then
    check_options(opts.attention, "TransformerBlock", mha_valid, nil, " in attention = {...}")
  end
  if opts.mlp ~= nil and type(opts.mlp) ~= "boolean" then
    raise("TransformerBlock: mlp must be true or false (false: an attention-only block; got " .. tostring(opts.mlp) .. ")")
  end
  local dim = check_positive_int(opts.dim, "TransformerBlock", "dim")
  self.dim = dim
  self.input_label = string.format("TransformerBlock(dim=%d)", dim)   -- how its input errors name it
  self.dropout = args.opt_number(opts.dropout, 0, "TransformerBlock", "dropout", { 0, 1, hi_open = true })
  self.ln1 = self:add_child("ln1", LayerNorm(dim))
  local attn_opts = { dim = dim, heads = opts.heads, head_dim = opts.head_dim, kv_heads = opts.kv_heads,
                      variant = opts.variant, causal = opts.causal, bias = opts.bias, scale = opts.scale, norm = opts.norm }
  for _, key in ipairs(nn.attention_option_names) do attn_opts[key] = opts[key] end
  -- opts.attention: more MultiHeadAttention options (e.g. {shared_heads = 1, active_heads = 2} for moh)
  if opts.attention ~= nil and type(opts.attention) ~= "table" then
    raise("TransformerBlock: attention must be a table of MultiHeadAttention options (got " .. type(opts.attention) .. ")")
  end
  for key, value in pairs(opts.attention or {}) do attn_opts[key] = value end
  self.attn = self:add_child("attn", MHA(attn_opts))
  args.opt_number(opts.mlp_ratio, 4, "TransformerBlock", "mlp_ratio", { 0, lo_open = true, finite = true })
  if opts.activation ~= nil and not activations[opts.activation] then
    raise("TransformerBlock: unknown activation " .. args.show(opts.activation) .. " (relu, gelu, tanh, sigmoid)")
  end
  if opts.mlp == false then   -- attention only: the MLP's options would be silently ignored, so they are errors
    for _, key in ipairs{ "mlp_ratio", "activation" } do
      if opts[key] ~= nil then raise("TransformerBlock: " .. key .. " shapes the MLP, and mlp = false builds none") end
    end
    return
  end
  self.ln2 = self:add_child("ln2", LayerNorm(dim))
  local hidden = math.floor((opts.mlp_ratio or 4) * dim)
  if hidden < 1 then raise(string.format("TransformerBlock: mlp_ratio %g gives an MLP of %d hidden units", opts.mlp_ratio, hidden)) end
  self.mlp = self:add_child("mlp", MLP{ dims = { dim, hidden, dim }, activation = opts.activation or "gelu", bias = opts.bias })
end
function Block:forward(x)
  check_input(self, x, "input", self.dim, self.ln1.weight:dtype(), 3, "(B, N, dim)")
  local a = self.attn(self.ln1(x))
  if self.dropout > 0 then a = lab.dropout(a, self.dropout, self.training) end
  x = x + a
  if not self.mlp then return x end
  local m = self.mlp(self.ln2(x))
  if self.dropout > 0 then m = lab.dropout(m, self.dropout, self.training) end
  return x + m
end
function Block:describe()
  return string.format("TransformerBlock(dim=%d, %s%s)", self.dim, self.attn:describe(), self.mlp and "" or ", attention only")
end

return nn
