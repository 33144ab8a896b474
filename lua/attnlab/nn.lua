-- attnlab.nn: modules composed from the core's ops.  A module is a table with a forward method,
-- callable as m(x); its parameters are the tensors in m.params (by name) and those of the modules
-- in m.children (by name), which is all :parameters(), :state_dict() and :load_state_dict() need.
local lab = require "attnlab"
local raise = lab.raise
local args = lab._args

local nn = {}

-- Errors inside a module name the module the user called.  A constructor or a forward that fails
-- in an op or in a child module ("linear: ...", "Linear(32, 32): ...", "MultiHeadAttention: ...")
-- is reported with the called module's class name in front ("TransformerBlock: linear: ..."),
-- still located at the user's line; a message that already starts with that name is left as it
-- is.  Only the outermost module call pays for the pcall: the modules it calls run plainly.
local module_depth = 0
local function named_error(name, err)
  if type(err) ~= "string" then error(err, 0) end
  local loc, body = err:match("^([^\n]-:%d+: )(.*)$")
  if not loc then loc, body = "", err end
  local after = body:sub(#name + 1, #name + 1)
  if body:sub(1, #name) == name and (after == ":" or after == "(") then error(err, 0) end
  error(loc .. name .. ": " .. body, 0)
end
local function finish_named(name, ok, ...)
  module_depth = module_depth - 1
  if ok then return ... end
  named_error(name, (...))
end
-- f(...) with its errors named as the module `name` (the outermost module call only)
local function call_named(name, f, ...)
  if module_depth > 0 then return f(...) end
  module_depth = module_depth + 1
  return finish_named(name, pcall(f, ...))
end

local Module = {}
Module.__index = Module
Module.__call = function(self, ...) return call_named(self.name or "module", self.forward, self, ...) end
nn.Module = Module

-- A new module class: `local Foo = nn.class("Foo")`, then `function Foo:init(opts) ... end`.
function nn.class(name)
  local cls = setmetatable({ name = name }, { __index = Module })
  cls.__index = cls
  cls.__call = Module.__call
  cls.__tostring = function(self) return self:describe() end
  setmetatable(cls, {
    __index = Module,
    __call = function(c, ...)
      local self = setmetatable({ params = {}, param_order = {}, children = {}, child_order = {}, training = true }, c)
      call_named(name or "module", c.init, self, ...)
      return self
    end,
  })
  return cls
end

function Module:init() end
function Module:forward() raise(self.name .. ": forward is not defined") end
function Module:describe() return self.name end

function Module:add_param(name, t)
  if self.params[name] == nil then self.param_order[#self.param_order + 1] = name end
  self.params[name] = t:requires_grad(true)
  return t
end

-- A buffer: state that is saved and loaded with the module but not trained (no gradient, not in
-- :parameters()), e.g. routing attention's centroids.  Calling it again replaces the tensor.
function Module:add_buffer(name, t)
  if not self.buffers then self.buffers, self.buffer_order = {}, {} end
  if self.buffers[name] == nil then self.buffer_order[#self.buffer_order + 1] = name end
  self.buffers[name] = t
  return t
end

-- (name, tensor) pairs of one kind of a module's tensors ("params" or "buffers"), in a fixed order:
-- its own first, then its children's depth-first.
local function named_tensors(m, kind, prefix, out)
  local map, order = m[kind], kind == "params" and m.param_order or m.buffer_order
  for _, name in ipairs(order or {}) do out[#out + 1] = { prefix .. name, map[name] } end
  for _, name in ipairs(m.child_order) do named_tensors(m.children[name], kind, prefix .. name .. ".", out) end
  return out
end

function Module:named_buffers(prefix, out) return named_tensors(self, "buffers", prefix or "", out or {}) end

function Module:add_child(name, m)
  if self.children[name] == nil then self.child_order[#self.child_order + 1] = name end
  self.children[name] = m
  return m
end

function Module:named_parameters(prefix, out) return named_tensors(self, "params", prefix or "", out or {}) end

function Module:parameters()
  local list = {}
  for i, pair in ipairs(self:named_parameters()) do list[i] = pair[2] end
  return list
end

function Module:num_parameters()
  local n = 0
  for _, p in ipairs(self:parameters()) do n = n + p:numel() end
  return n
end

function Module:state_dict()
  local sd = {}
  for _, pair in ipairs(self:named_parameters()) do sd[pair[1]] = pair[2] end
  for _, pair in ipairs(self:named_buffers()) do sd[pair[1]] = pair[2] end
  return sd
end

-- Copies values in place, so optimisers holding these parameters keep working.
function Module:load_state_dict(sd)
  if type(sd) ~= "table" then raise("load_state_dict: expects a table of name = tensor (got " .. type(sd) .. ")") end
  for _, pair in ipairs(self:named_parameters()) do
    local name, p = pair[1], pair[2]
    local t = sd[name]
    if t == nil then raise("load_state_dict: missing parameter '" .. name .. "'") end
    if not lab.is_tensor(t) then raise("load_state_dict: '" .. name .. "' is a " .. type(t) .. ", not a tensor") end
    if t:shape_string() ~= p:shape_string() then
      raise(string.format("load_state_dict: parameter '%s' has shape %s, the state has %s", name, p:shape_string(), t:shape_string()))
    end
    p:copy_(t)
  end
  for _, pair in ipairs(self:named_buffers()) do
    local name, b = pair[1], pair[2]
    local t = sd[name]
    if t == nil then raise("load_state_dict: missing buffer '" .. name .. "'") end
    if not lab.is_tensor(t) or t:shape_string() ~= b:shape_string() then
      raise(string.format("load_state_dict: buffer '%s' has shape %s, the state has %s", name, b:shape_string(),
        lab.is_tensor(t) and t:shape_string() or type(t)))
    end
    b:copy_(t)
  end
  return self
end

function Module:zero_grad()
  for _, p in ipairs(self:parameters()) do p:zero_grad() end
end

function Module:train(on)
  self.training = on ~= false
  for _, name in ipairs(self.child_order) do self.children[name]:train(on) end
  return self
end
function Module:eval() return self:train(false) end

local check_positive_int = args.check_positive_int
-- Every constructor that takes an options table rejects a key it does not know, naming itself and
-- the valid keys: "TransformerBlock: unknown option 'bogus' (valid: dim, heads, ...)" (the checker
-- every lab function shares, lua/attnlab/args.lua).
local check_options = args.check_options
nn.check_options = check_options

-- The input check a module's forward starts with, so that a wrong input is reported by the module
-- the user called, with the shapes: x must be a tensor of `ndim` dimensions (any when nil; layout
-- names them, e.g. "(B, N, dim)") whose last one is `width`, of the module's float dtype.  label
-- names the module in the message: a string, or the module itself (its input_label field when it
-- has one, else its describe()), looked at only when the check fails, so that a forward that
-- passes it makes no string.
local function check_input(label, x, what, width, dtype, ndim, layout)
  if lab.is_tensor(x) and (ndim == nil or x:dim() == ndim) and x:dim() >= 1 and x:size(-1) == width and x:dtype() == dtype then
    return x
  end
  if type(label) == "table" then label = label.input_label or label:describe() end
  if not lab.is_tensor(x) then raise(string.format("%s: %s must be a tensor (got %s)", label, what, args.typename(x))) end
  if ndim and x:dim() ~= ndim then
    raise(string.format("%s: %s must be a %d-d tensor %s (got shape %s)", label, what, ndim, layout or "", x:shape_string()))
  end
  if x:dim() < 1 or x:size(-1) ~= width then
    raise(string.format("%s: %s of shape %s does not end in %d", label, what, x:shape_string(), width))
  end
  if x:dtype() ~= dtype then
    raise(string.format("%s: %s is %s (shape %s) and the module's parameters are %s (convert with x:to(\"%s\"))", label, what,
      x:dtype(), x:shape_string(), dtype, dtype))
  end
  return x
end
nn.check_input = check_input

local function uniform(shape, bound)
  return lab.rand(shape) * (2 * bound) - bound
end
nn.uniform = uniform

---------------------------------------------------------------------------------------------------
-- Linear: y = x W^T + b, W (out, in); initialised as PyTorch does: U(-1/sqrt(in), 1/sqrt(in)).
---------------------------------------------------------------------------------------------------
local Linear = nn.class("Linear")
nn.Linear = Linear
function Linear:init(nin, nout, opts)
  check_positive_int(nin, "Linear", "in_features")
  check_positive_int(nout, "Linear", "out_features")
  opts = opts or {}
  if type(opts) ~= "table" then raise("Linear: options must be a table {bias=} (got " .. type(opts) .. ")") end
  check_options(opts, "Linear", { "bias" })
  self.nin, self.nout = nin, nout
  local bound = 1 / math.sqrt(nin)
  self.weight = self:add_param("weight", uniform({ nout, nin }, bound))
  if opts.bias ~= false then self.bias = self:add_param("bias", uniform({ nout }, bound)) end
end
function Linear:forward(x)
  check_input(self, x, "input", self.nin, self.weight:dtype())
  return lab.linear(x, self.weight, self.bias)
end
function Linear:describe() return string.format("Linear(%d, %d%s)", self.nin, self.nout, self.bias and "" or ", bias=false") end

---------------------------------------------------------------------------------------------------
-- Embedding: rows of a (n, dim) table picked by int64 ids (1-based), N(0, 1) initialisation.
---------------------------------------------------------------------------------------------------
local Embedding = nn.class("Embedding")
nn.Embedding = Embedding
function Embedding:init(n, dim)
  check_positive_int(n, "Embedding", "count")
  check_positive_int(dim, "Embedding", "dim")
  self.n, self.dim = n, dim
  self.weight = self:add_param("weight", lab.randn{ n, dim })
end
function Embedding:forward(ids)
  if not lab.is_tensor(ids) or ids:dtype() ~= "int64" then
    raise(string.format("%s: ids must be an int64 tensor of ids from 1 to %d (got %s)", self:describe(), self.n,
      lab.is_tensor(ids) and ids:dtype() .. " of shape " .. ids:shape_string() or args.typename(ids)))
  end
  return lab.embedding(self.weight, ids)
end
function Embedding:describe() return string.format("Embedding(%d, %d)", self.n, self.dim) end

---------------------------------------------------------------------------------------------------
-- LayerNorm over the last dimension.
---------------------------------------------------------------------------------------------------
local LayerNorm = nn.class("LayerNorm")
nn.LayerNorm = LayerNorm
function LayerNorm:init(dim, opts)
  check_positive_int(dim, "LayerNorm", "dim")
  opts = opts or {}
  if type(opts) ~= "table" then raise("LayerNorm: options must be a table {eps=, bias=} (got " .. type(opts) .. ")") end
  check_options(opts, "LayerNorm", { "eps", "bias" })
  self.dim, self.eps = dim, args.opt_number(opts.eps, 1e-5, "LayerNorm", "eps", { 0, finite = true })
  self.weight = self:add_param("weight", lab.ones{ dim })
  if opts.bias ~= false then self.bias = self:add_param("bias", lab.zeros{ dim }) end
end
function LayerNorm:forward(x)
  check_input(self, x, "input", self.dim, self.weight:dtype())
  return lab.layer_norm(x, self.weight, self.bias, self.eps)
end
function LayerNorm:describe() return string.format("LayerNorm(%d)", self.dim) end

---------------------------------------------------------------------------------------------------
-- Activations as modules, Sequential, MLP.
---------------------------------------------------------------------------------------------------
local activations = { relu = "relu", gelu = "gelu", tanh = "tanh", sigmoid = "sigmoid" }
local Activation = nn.class("Activation")
function Activation:init(kind)
  if not activations[kind] then raise("Activation: unknown activation '" .. tostring(kind) .. "' (relu, gelu, tanh, sigmoid)") end
  self.kind = kind
end
function Activation:forward(x) return x[activations[self.kind]](x) end
function Activation:describe() return self.kind end
nn.ReLU = function() return Activation("relu") end
nn.GELU = function() return Activation("gelu") end
nn.Tanh = function() return Activation("tanh") end
nn.Sigmoid = function() return Activation("sigmoid") end

local Sequential = nn.class("Sequential")
nn.Sequential = Sequential
function Sequential:init(...)
  local mods = select("#", ...) == 1 and type(...) == "table" and getmetatable(...) == nil and ... or { ... }
  for i, m in ipairs(mods) do
    if type(m) ~= "table" or not m.forward then raise("Sequential: item " .. i .. " is not a module") end
    self:add_child(tostring(i), m)
  end
end
function Sequential:forward(x)
  for _, name in ipairs(self.child_order) do x = self.children[name]:forward(x) end
  return x
end
function Sequential:describe()
  local parts = {}
  for i, name in ipairs(self.child_order) do parts[i] = self.children[name]:describe() end
  return "Sequential(" .. table.concat(parts, ", ") .. ")"
end

-- MLP{dims = {in, hidden..., out}, activation = "gelu", bias = true}, or MLP{in=, hidden=, out=}.
local MLP = nn.class("MLP")
nn.MLP = MLP
function MLP:init(opts)
  if type(opts) ~= "table" then raise("MLP: expects a table of options {dims = {...}} or {in=, hidden=, out=}") end
  check_options(opts, "MLP", { "dims", "in", "hidden", "out", "activation", "bias" })
  local dims = opts.dims or { opts["in"], opts.hidden, opts.out }
  if type(dims) ~= "table" then raise("MLP: dims must be a list of sizes (got " .. type(dims) .. ")") end
  if #dims < 2 then raise("MLP: needs at least two sizes in dims") end
  for i = 1, #dims do check_positive_int(dims[i], "MLP", "dims[" .. i .. "]") end
  self.activation = opts.activation or "gelu"
  if not activations[self.activation] then raise("MLP: unknown activation '" .. tostring(self.activation) .. "'") end
  self.dims = dims
  for i = 1, #dims - 1 do self:add_child("fc" .. i, Linear(dims[i], dims[i + 1], { bias = opts.bias })) end
end
function MLP:forward(x)
  local first = self.children[self.child_order[1]]
  if getmetatable(first) == Linear then check_input(self, x, "input", self.dims[1], first.weight:dtype()) end
  local n = #self.child_order
  for i, name in ipairs(self.child_order) do
    x = self.children[name]:forward(x)
    if i < n then x = x[activations[self.activation]](x) end
  end
  return x
end
function MLP:describe() return "MLP(" .. table.concat(self.dims, "-") .. ", " .. self.activation .. ")" end

---------------------------------------------------------------------------------------------------
-- MultiHeadAttention{dim=, heads=, head_dim=dim/heads, kv_heads=heads, out_dim=dim, variant="softmax",
--                    causal=false, bias=true, scale=nil, norm=nil, window=, kernel_size=, stride=,
--                    dilation=, grid=, kernel=, attention={...}}
--   The variant's own options (window, kernel_size, stride, dilation, grid, kernel, or any
--   lab.attention option in the table `attention`) go to every lab.attention call; with a grid
--   (neighborhood variants) N must equal the grid's product.
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
-- the variant options MultiHeadAttention and TransformerBlock take by name and hand to lab.attention
nn.attention_option_names = { "window", "kernel_size", "stride", "dilation", "grid", "kernel" }
-- MultiHeadAttention's own options, those of the lab.attention variants it hands on by name
-- (integers and per-call tensors, checked against their variant by lab.attention), and those of the
-- variants it sets up itself.  An option of a variant other than the module's is accepted and has
-- no effect (a script may give one table of options to every variant; tests do).
local mha_base_options = { "dim", "heads", "head_dim", "kv_heads", "out_dim", "context_dim", "variant", "causal", "scale",
                           "norm", "bias", "record", "attention" }
local mha_passed_options = { "block_size", "local_blocks", "top_k", "cluster_size", "samples", "lsh_bits", "landmarks",
                             "bias_q", "bias_k" }
local mha_owned_options = { { "max_relative", "relative" }, { "clusters", "routing" }, { "routing_decay", "routing" },
                            { "pointer_hidden", "pointer" } }

-- Every option name MultiHeadAttention accepts (in the order of its error messages), and the variant
-- owning each variant-specific one (including the options = {...} of nn.attention_variant_modules).
function nn.attention_module_options()
  local list, owner = {}, {}
  for _, k in ipairs(mha_base_options) do list[#list + 1] = k end
  for _, k in ipairs(nn.attention_option_names) do list[#list + 1] = k end
  for _, k in ipairs(mha_passed_options) do list[#list + 1] = k end
  for _, pair in ipairs(mha_owned_options) do list[#list + 1] = pair[1]; owner[pair[1]] = pair[2] end
  local variants = {}
  for name in pairs(nn.attention_variant_modules) do variants[#variants + 1] = name end
  table.sort(variants)
  for _, v in ipairs(variants) do
    for _, k in ipairs(nn.attention_variant_modules[v].options or {}) do
      if not owner[k] then list[#list + 1] = k end
      owner[k] = v
    end
  end
  return list, owner
end

local MHA = nn.class("MultiHeadAttention")
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
  local known, names = nn.attention_variant_modules[self.variant] ~= nil, lab.attention.variants()
  for _, v in ipairs(names) do if v == self.variant then known = true end end
  if not known then
    for name, m in pairs(nn.attention_variant_modules) do if m.module_only then names[#names + 1] = name end end
    table.sort(names)
    raise("MultiHeadAttention: unknown variant '" .. tostring(self.variant) .. "' (known: " .. table.concat(names, ", ") .. ")")
  end
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
  if opts.attention ~= nil and (type(opts.attention) ~= "table" or lab.is_tensor(opts.attention)) then
    raise("MultiHeadAttention: attention must be a table of lab.attention options (got " .. args.typename(opts.attention) .. ")")
  end
  if opts.attention then
    check_options(opts.attention, "MultiHeadAttention", lab.attention._option_names, nil, " in attention = {...} (lab.attention's options)")
  end
  self.attention_opts = {}
  for key, val in pairs(opts.attention or {}) do self.attention_opts[key] = val end
  for _, key in ipairs(nn.attention_option_names) do
    if opts[key] ~= nil then self.attention_opts[key] = opts[key] end
  end
  local bias = opts.bias ~= false
  local o_in = heads * head_dim
  local variant_init = nn.attention_variant_modules[self.variant]
  if variant_init and variant_init.init then
    o_in = variant_init.init(self, opts, bias)
  else
    self:standard_projections(opts, bias)
  end
  self.o = self:add_child("o", Linear(o_in, self.out_dim, { bias = bias }))
  self.record = opts.record or false
  self:init_variant(opts)
end

-- The options and parameters of the variants power ... pointer (see lab.attention):
--   power: block_size, local_blocks;  hyper: block_size, samples, lsh_bits
--   dynamic_mask: top_k (required); owns dt_proj (kv_heads*head_dim, kv_heads) and dt_a (kv_heads)
--   relative: max_relative (the clip distance k, required); owns rel_key, rel_value (2k+1, head_dim)
--   routing: clusters (required), cluster_size, routing_decay (0.999); owns the centroids
--     (heads, clusters, head_dim), a buffer (in the state dict, not a parameter) that each
--     training forward moves one EMA k-means step towards its queries and keys
--   pointer: pointer_hidden (h: additive scores; absent: dot scores); owns pointer_w1, pointer_w2
--     (h, head_dim), pointer_v (h); forward returns the (B, heads, N, M) log-distribution over the
--     context positions (no value or output projection)
--   landmark (m.landmarks, (M) or (B, M)) and flashbias (m.bias_q, m.bias_k) read per-call tensors
--     the caller sets on the module (they depend on the tokens or positions), or give them in opts
local variant_ints = { "block_size", "local_blocks", "top_k", "cluster_size", "samples", "lsh_bits" }
function MHA:init_variant(opts)
  local v, hd, kvh = self.variant, self.head_dim, self.kv_heads
  self.variant_opts = {}
  for _, name in ipairs(variant_ints) do self.variant_opts[name] = opts[name] end
  self.landmarks, self.bias_q, self.bias_k = opts.landmarks, opts.bias_q, opts.bias_k
  if v == "dynamic_mask" then
    check_positive_int(opts.top_k, "MultiHeadAttention", "top_k (variant dynamic_mask)")
    self:add_param("dt_proj", lab.randn{ kvh * hd, kvh } * (1 / math.sqrt(kvh * hd)))
    self:add_param("dt_a", lab.full({ kvh }, -0.5))   -- negative, so z = exp(A softplus(.)) starts in (0, 1]
  elseif v == "relative" then
    local k = opts.max_relative
    if type(k) ~= "number" or k ~= math.floor(k) or k < 0 then
      raise("MultiHeadAttention: variant relative needs max_relative, the clip distance, an integer >= 0 (got " .. tostring(k) .. ")")
    end
    self:add_param("rel_key", lab.randn{ 2 * k + 1, hd } * 0.02)
    self:add_param("rel_value", lab.randn{ 2 * k + 1, hd } * 0.02)
  elseif v == "routing" then
    local c = check_positive_int(opts.clusters, "MultiHeadAttention", "clusters (variant routing)")
    local mu = lab.randn{ self.heads, c, hd }
    self.centroids = self:add_buffer("centroids", mu / mu:pow(2):sum(3, true):sqrt())
    self.routing_decay = opts.routing_decay or 0.999
  elseif v == "pointer" and opts.pointer_hidden then
    local h = check_positive_int(opts.pointer_hidden, "MultiHeadAttention", "pointer_hidden")
    self:add_param("pointer_w1", uniform({ h, hd }, 1 / math.sqrt(hd)))
    self:add_param("pointer_w2", uniform({ h, hd }, 1 / math.sqrt(hd)))
    self:add_param("pointer_v", uniform({ h }, 1 / math.sqrt(h)))
  end
end

-- the variant's entries of lab.attention's opts for one call
function MHA:variant_call_opts(o)
  for name, val in pairs(self.variant_opts) do o[name] = val end
  for _, name in ipairs{ "dt_proj", "dt_a", "rel_key", "rel_value", "pointer_w1", "pointer_w2", "pointer_v" } do
    o[name] = self.params[name]
  end
  o.centroids, o.landmarks, o.bias_q, o.bias_k = self.centroids, self.landmarks, self.bias_q, self.bias_k
  return o
end

-- (B, N, H*hd) -> (B, H, N, hd)
local function split_heads(x, h, hd)
  local s = x:shape()
  return x:reshape{ s[1], s[2], h, hd }:permute(1, 3, 2, 4)
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

function MHA:forward(x, context)
  context = check_attention_inputs(self, x, context)
  local q, k, v
  local call = { variant = self.variant, causal = self.causal, scale = self.scale, norm = self.norm, weights = self.record }
  for key, val in pairs(self.attention_opts) do call[key] = val end
  self:variant_call_opts(call)
  local variant_forward = nn.attention_variant_modules[self.variant]
  if variant_forward and variant_forward.forward then
    q, k, v = variant_forward.forward(self, x, context, call)
  else
    q, k, v = self:standard_qkv(x, context)
  end
  local bias = self:logit_hooks_bias(x:size(1), x:size(2), context:size(2), q:dtype())
  call.bias = bias
  local out, weights
  if self.map_hook then
    -- the map itself, differentiable (softmax of the logits), edited by the hook, then applied
    local map = self:attention_map(q, k, bias)
    map = self.map_hook(map)
    if not lab.is_tensor(map) or map:dim() ~= 4 then
      raise("MultiHeadAttention: map_hook must return a (B, H, N, M) tensor (got " .. (lab.is_tensor(map) and map:shape_string() or type(map)) .. ")")
    end
    out, weights = map:matmul(repeat_kv_heads(v, self.heads)), map:detach()
  else
    out, weights = lab.attention(q, k, v, call)
  end
  if self.record then self.weights = weights end
  if self.centroids and self.training then
    -- in place, so that the state dict (and a checkpoint) always holds the current centroids
    self.centroids:copy_(lab.attention.routing_update(self.centroids, q:detach(), k:detach(), self.routing_decay))
  end
  if self.variant == "pointer" then return out end   -- the log-distribution over the context positions
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

-- The attention map of queries q and keys k under this module's options, differentiable: the dense
-- softmax of the logits as a composed op (for map_hook; only the softmax and lsa variants have it).
function MHA:attention_map(q, k, bias)
  if self.variant ~= "softmax" and self.variant ~= "lsa" then
    raise("MultiHeadAttention: map_hook needs the softmax or lsa variant (this module is '" .. self.variant .. "')")
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
  if self.variant == "lsa" then
    local p = logits / (self.norm or M)
    return allowed and lab.where(allowed, p, 0) or p
  end
  if allowed then logits = lab.where(allowed, logits, -math.huge) end
  return logits:softmax(4)
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

nn.split_heads = split_heads
-- The variants whose parameters are the module's own (their init returns the output projection's
-- input size; their forward returns q, k, v and may add options to attn_opts): see nn_variants.lua.
nn.attention_variant_modules = {}
nn.check_positive_int = check_positive_int
require("attnlab.nn_variants")(nn)

---------------------------------------------------------------------------------------------------
-- TransformerBlock{dim=, heads=, mlp_ratio=4, variant=, causal=, dropout=0, mlp=true, the variant
--                  options of MultiHeadAttention by name (window, ...), attention={...}}: pre-LN,
--   x = x + attn(ln1(x)); x = x + mlp(ln2(x)).  mlp = false: an attention-only block (no ln2, no
--   mlp; x = x + attn(ln1(x))).
---------------------------------------------------------------------------------------------------
local block_options = { "dim", "heads", "head_dim", "kv_heads", "variant", "causal", "bias", "scale", "norm", "attention",
                        "mlp", "mlp_ratio", "activation", "dropout" }
for _, k in ipairs(nn.attention_option_names) do block_options[#block_options + 1] = k end
local Block = nn.class("TransformerBlock")
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

nn.GPT = require("attnlab.gpt")(nn)   -- GPT: a decoder with an activation cache and hook points (gpt.lua)

return nn
