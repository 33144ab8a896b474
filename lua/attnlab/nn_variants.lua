-- attnlab.nn_variants: what nn.MultiHeadAttention does for each attention variant beyond the standard
-- q, k, v projections and one lab.attention call: one entry of nn.attention_variant_modules per
-- variant that needs anything (docs/attention-linear-family.md, docs/adding-a-variant.md).  The
-- module reads only this table, never a variant's name.  An entry may have
--   options = {...}: the MultiHeadAttention options that belong to this variant's module (so that
--     the constructor, which rejects unknown keys, accepts them; another variant's module ignores them)
--   init(self, opts, bias) -> the output projection's input size (makes the projections it needs;
--     default: the standard q, k, v, and heads * head_dim)
--   setup(self, opts): its own parameters, buffers and settings, made after the output projection
--     (so that the order of the random draws, and of :parameters(), is the one checkpoints know)
--   forward(self, x, context, call) -> q, k, v (default: the standard ones); may add options to
--     call, the lab.attention options of this forward
--   after(self, q, k): run after the attention of each forward (routing moves its centroids)
--   raw_output = true: forward returns lab.attention's output as it is (no head scale, no output
--     projection)
--   map(self, logits, allowed) -> the differentiable (B, H, N, M) map, for map_hook (allowed: the
--     causal keep-mask, or nil)
--   module_only = true: no lab.attention variant of that name (the module maps it onto another)
-- lab.attention's own options (window, top_k, ...) need no entry: the module hands them on by name.
local lab = require "attnlab"
local core, args = require "attnlab.core", require "attnlab.args"
local nn_module, nn_layers = require "attnlab.nn_module", require "attnlab.nn_layers"
local raise = core.raise

local moh_gates   -- defined at the end, used by moh's entry

local V = {}   -- nn.attention_variant_modules: variant name -> its entry
local Linear = nn_layers.Linear
local split_heads, check_positive_int, uniform = nn_module.split_heads, nn_module.check_positive_int, nn_module.uniform

-- a number option of the module other than NaN (default when nil)
local function check_number(v, what, default)
  return args.opt_number(v, default, "MultiHeadAttention", what, { -math.huge, math.huge })
end
local function standard(self, opts, bias)
  self:standard_projections(opts, bias)
  return self.heads * self.head_dim
end
-- (B, L, H) per-token, per-head values -> (B, H, L)
local function per_head(t) return t:permute(1, 3, 2) end
-- A forward with the standard q, k, v that hands lab.attention the module's tensors of these names:
-- its parameters, or else its own fields (buffers, tensors the caller sets), nil where it has none.
local function passing(...)
  local names = { ... }
  return function(self, x, context, call)
    for _, name in ipairs(names) do
      local t = self.params[name]
      if t == nil then t = rawget(self, name) end
      call[name] = t
    end
    return self:standard_qkv(x, context)
  end
end

-- softmax and lsa: their maps as composed ops, for map_hook
V.softmax = {
  map = function(self, logits, allowed)
    if allowed then logits = lab.where(allowed, logits, -math.huge) end
    return logits:softmax(4)
  end,
}
V.lsa = {
  map = function(self, logits, allowed)
    local p = logits / (self.norm or logits:size(4))
    return allowed and lab.where(allowed, p, 0) or p
  end,
}

-- dynamic_mask: top_k (a lab.attention option, required here); owns dt_proj (kv_heads*head_dim,
-- kv_heads) and dt_a (kv_heads)
V.dynamic_mask = {
  setup = function(self, opts)
    check_positive_int(opts.top_k, "MultiHeadAttention", "top_k (variant dynamic_mask)")
    local kvh, hd = self.kv_heads, self.head_dim
    self:add_param("dt_proj", lab.randn{ kvh * hd, kvh } * (1 / math.sqrt(kvh * hd)))
    self:add_param("dt_a", lab.full({ kvh }, -0.5))   -- negative, so z = exp(A softplus(.)) starts in (0, 1]
  end,
  forward = passing("dt_proj", "dt_a"),
}

-- relative: max_relative, the clip distance k (required); owns rel_key, rel_value (2k+1, head_dim)
V.relative = {
  options = { "max_relative" },
  setup = function(self, opts)
    local k = opts.max_relative
    if type(k) ~= "number" or k ~= math.floor(k) or k < 0 then
      raise("MultiHeadAttention: variant relative needs max_relative, the clip distance, an integer >= 0 (got " .. tostring(k) .. ")")
    end
    self:add_param("rel_key", lab.randn{ 2 * k + 1, self.head_dim } * 0.02)
    self:add_param("rel_value", lab.randn{ 2 * k + 1, self.head_dim } * 0.02)
  end,
  forward = passing("rel_key", "rel_value"),
}

-- routing: clusters (required), routing_decay (0.999); owns the centroids (heads, clusters,
-- head_dim), a buffer (in the state dict, not a parameter) that each training forward moves one EMA
-- k-means step towards its queries and keys
V.routing = {
  options = { "clusters", "routing_decay" },
  setup = function(self, opts)
    local c = check_positive_int(opts.clusters, "MultiHeadAttention", "clusters (variant routing)")
    local mu = lab.randn{ self.heads, c, self.head_dim }
    self.centroids = self:add_buffer("centroids", mu / mu:pow(2):sum(3, true):sqrt())
    self.routing_decay = opts.routing_decay or 0.999
  end,
  forward = passing("centroids"),
  after = function(self, q, k)
    if not self.training then return end
    -- in place, so that the state dict (and a checkpoint) always holds the current centroids
    self.centroids:copy_(lab.attention.routing_update(self.centroids, q:detach(), k:detach(), self.routing_decay))
  end,
}

-- pointer: pointer_hidden (h: additive scores; absent: dot scores); owns pointer_w1, pointer_w2
-- (h, head_dim), pointer_v (h); forward returns the (B, heads, N, M) log-distribution over the
-- context positions (no value or output projection)
V.pointer = {
  options = { "pointer_hidden" },
  raw_output = true,
  setup = function(self, opts)
    if not opts.pointer_hidden then return end
    local h, hd = check_positive_int(opts.pointer_hidden, "MultiHeadAttention", "pointer_hidden"), self.head_dim
    self:add_param("pointer_w1", uniform({ h, hd }, 1 / math.sqrt(hd)))
    self:add_param("pointer_w2", uniform({ h, hd }, 1 / math.sqrt(hd)))
    self:add_param("pointer_v", uniform({ h }, 1 / math.sqrt(h)))
  end,
  forward = passing("pointer_w1", "pointer_w2", "pointer_v"),
}

-- landmark (m.landmarks, (M) or (B, M)) and flashbias (m.bias_q, m.bias_k) read per-call tensors
-- that the caller sets on the module (they depend on the tokens or positions), or gives in opts
V.landmark = {
  options = { "landmarks" },
  setup = function(self, opts) self.landmarks = opts.landmarks end,
  forward = passing("landmarks"),
}
V.flashbias = {
  options = { "bias_q", "bias_k" },
  setup = function(self, opts) self.bias_q, self.bias_k = opts.bias_q, opts.bias_k end,
  forward = passing("bias_q", "bias_k"),
}

-- delta: DeltaNet-style, beta_t = sigmoid(w_beta . x_t) per head, keys L2-normalised (so that
-- beta |k|^2 <= 1 keeps the rule stable); gated = true adds the retention alpha_t = sigmoid(w_alpha . x_t).
V.delta = {
  options = { "gated" },   -- its MultiHeadAttention options
  init = function(self, opts, bias)
    local cdim = opts.context_dim or self.dim
    self.beta_proj = self:add_child("beta", Linear(cdim, self.heads, { bias = bias }))
    if opts.gated then self.gate_proj = self:add_child("gate", Linear(cdim, self.heads, { bias = bias })) end
    return standard(self, opts, bias)
  end,
  forward = function(self, x, context, attn_opts)
    local q, k, v = self:standard_qkv(x, context)
    k = k / ((k * k):sum(4, true) + 1e-12):sqrt()
    attn_opts.beta = per_head(self.beta_proj(context):sigmoid())
    if self.gate_proj then attn_opts.gate = per_head(self.gate_proj(context):sigmoid()) end
    return q, k, v
  end,
}

-- tensor: the second key and value projections
V.tensor = {
  init = function(self, opts, bias)
    local cdim = opts.context_dim or self.dim
    self.k2 = self:add_child("k2", Linear(cdim, self.kv_heads * self.head_dim, { bias = bias }))
    self.v2 = self:add_child("v2", Linear(cdim, self.kv_heads * self.head_dim, { bias = bias }))
    return standard(self, opts, bias)
  end,
  forward = function(self, x, context, attn_opts)
    attn_opts.k2 = split_heads(self.k2(context), self.kv_heads, self.head_dim)
    attn_opts.v2 = split_heads(self.v2(context), self.kv_heads, self.head_dim)
    return self:standard_qkv(x, context)
  end,
}

-- local_linear: the ridge lambda as a module option
V.local_linear = {
  options = { "ridge" },   -- its MultiHeadAttention options
  init = function(self, opts, bias)
    self.ridge = check_number(opts.ridge, "ridge", nil)
    return standard(self, opts, bias)
  end,
  forward = function(self, x, context, attn_opts)
    attn_opts.ridge = self.ridge
    return self:standard_qkv(x, context)
  end,
}

-- agent: agent_count agents pooled from the queries (default 4, at most the sequence length)
V.agent = {
  options = { "agent_count" },   -- its MultiHeadAttention options
  init = function(self, opts, bias)
    self.agent_count = check_positive_int(opts.agent_count or 4, "MultiHeadAttention", "agent_count")
    return standard(self, opts, bias)
  end,
  forward = function(self, x, context, attn_opts)
    attn_opts.agent_count = math.min(self.agent_count, x:size(2))
    return self:standard_qkv(x, context)
  end,
}

-- random_feature (Fu et al. 2023): W_Q, W_K sampled once, entries N(qk_mean, qk_std^2) (qk_std
-- default 1/sqrt(dim)), frozen: plain tensors, never in :parameters() (a checkpoint does not hold
-- them; the seed recreates them); W_V and W_O trained.
V.random_feature = {
  options = { "qk_mean", "qk_std" },   -- its MultiHeadAttention options
  init = function(self, opts, bias)
    local cdim = opts.context_dim or self.dim
    local mean = check_number(opts.qk_mean, "qk_mean", 0)
    local std = check_number(opts.qk_std, "qk_std", 1 / math.sqrt(self.dim))
    self.q_frozen = lab.randn{ self.heads * self.head_dim, self.dim } * std + mean
    self.k_frozen = lab.randn{ self.kv_heads * self.head_dim, cdim } * std + mean
    self.v = self:add_child("v", Linear(cdim, self.kv_heads * self.head_dim, { bias = bias }))
    return self.heads * self.head_dim
  end,
  forward = function(self, x, context, attn_opts)
    local wq, wk = self.q_frozen, self.k_frozen
    if x:dtype() ~= wq:dtype() then wq, wk = wq:to(x:dtype()), wk:to(x:dtype()) end
    return split_heads(lab.linear(x, wq), self.heads, self.head_dim), split_heads(lab.linear(context, wk), self.kv_heads, self.head_dim),
      split_heads(self.v(context), self.kv_heads, self.head_dim)
  end,
}

-- lowrank (Mehta et al. 2019, reconstructed: attention-variants.md section 16a): one low-rank
-- bilinear affinity shared by the heads, a_h(i, j) = sum_r P[r, h] tanh(U c_j)_r tanh(W x_i)_r, softmax
-- over j, heads reading the context states themselves (no value projection); global_query = true
-- queries with one learned context vector instead of the tokens (the paper's sentence encoder:
-- output (B, 1, out_dim), O(N r (D + H))).  Parameters U (rank x context_dim), W (rank x dim),
-- P (rank x heads) [+ c (dim)]; the output projection reads heads * context_dim.
V.lowrank = {
  options = { "rank", "global_query" },   -- its MultiHeadAttention options
  module_only = true,
  init = function(self, opts, bias)
    local cdim = opts.context_dim or self.dim
    local rank = check_positive_int(opts.rank or self.head_dim, "MultiHeadAttention", "rank")
    self.rank, self.context_dim = rank, cdim
    self.key_factor = self:add_param("key_factor", uniform({ rank, cdim }, 1 / math.sqrt(cdim)))
    self.query_factor = self:add_param("query_factor", uniform({ rank, self.dim }, 1 / math.sqrt(self.dim)))
    self.head_mix = self:add_param("head_mix", uniform({ rank, self.heads }, 1 / math.sqrt(rank)))
    if opts.global_query then self.context_vector = self:add_param("context_vector", lab.randn{ self.dim }) end
    return self.heads * cdim
  end,
  forward = function(self, x, context, attn_opts)
    local B, H, r = x:size(1), self.heads, self.rank
    local source = self.context_vector and self.context_vector:reshape{ 1, 1, self.dim }:expand{ B, 1, self.dim } or x
    local qf = lab.linear(source, self.query_factor):tanh()                              -- (B, N, r)
    local q = qf:unsqueeze(2) * self.head_mix:t():reshape{ 1, H, 1, r }                 -- (B, H, N, r)
    local k = lab.linear(context, self.key_factor):tanh():unsqueeze(2)                  -- (B, 1, M, r)
    attn_opts.variant = "softmax"
    attn_opts.scale = attn_opts.scale or 1
    return q, k, context:unsqueeze(2)
  end,
}

-- moh (Jin et al. 2024): heads 1..shared_heads always on, active_heads of the others chosen per
-- token by a router (top-k of g = softmax(W_r x), renormalised, times k; ties to the lowest index);
-- shared gates shared_heads * softmax(W_s x) (1 when there is one shared head), and with shared heads
-- the two-way balance 2 softmax(W_h x).  After each forward, m.aux_loss is the load-balance loss
-- E sum_i f_i P_i (f: fraction of tokens routed to head i, no gradient; P: mean router probability),
-- for a script to add with a weight of its choice.
V.moh = {
  options = { "shared_heads", "active_heads" },   -- its MultiHeadAttention options
  init = function(self, opts, bias)
    local shared = opts.shared_heads or 0
    if type(shared) ~= "number" or shared ~= math.floor(shared) or shared < 0 or shared >= self.heads then
      raise(string.format("MultiHeadAttention: moh needs 0 <= shared_heads < heads = %d (got %s)", self.heads, tostring(shared)))
    end
    local routed = self.heads - shared
    local active = opts.active_heads or routed
    if type(active) ~= "number" or active ~= math.floor(active) or active < 1 or active > routed then
      raise(string.format("MultiHeadAttention: moh needs 1 <= active_heads <= heads - shared_heads = %d (got %s)", routed, tostring(active)))
    end
    self.shared_heads, self.active_heads = shared, active
    local bound = 1 / math.sqrt(self.dim)
    self.router = self:add_param("router", uniform({ routed, self.dim }, bound))
    if shared > 1 then self.shared_router = self:add_param("shared_router", uniform({ shared, self.dim }, bound)) end
    if shared > 0 then self.balance_router = self:add_param("balance_router", uniform({ 2, self.dim }, bound)) end
    return standard(self, opts, bias)
  end,
  forward = function(self, x, context, attn_opts)
    attn_opts.gates, self.aux_loss = moh_gates(self, x)
    return self:standard_qkv(x, context)
  end,
}

-- MoH gates (B, H, N) for tokens x (B, N, dim), and the load-balance loss (lab.nn.moh_gates)
moh_gates = function(self, x)
  local B, N, E, k = x:size(1), x:size(2), self.heads - self.shared_heads, self.active_heads
  local g = lab.linear(x, self.router):softmax(3)                                      -- (B, N, E)
  local chosen = lab.no_grad(function()
    local rest, mask = g:detach(), lab.zeros({ B, N, E }, g:dtype())
    local ids = lab.arange(1, E + 1):reshape{ 1, 1, E }
    for _ = 1, k do
      local _, best = rest:max(3)
      local onehot = ids:eq(best:unsqueeze(3)):to(g:dtype())
      mask, rest = mask + onehot, rest - onehot * 2   -- probabilities are <= 1: never picked again
    end
    return mask
  end)
  local picked = g * chosen
  local eps = g:dtype() == "float64" and 2.220446049250313e-16 or 1.1920928955078125e-07
  local routed = picked / picked:sum(3, true):clamp(eps, math.huge) * k
  local gates = routed
  if self.shared_heads > 0 then
    local shared = self.shared_router and lab.linear(x, self.shared_router):softmax(3) * self.shared_heads
      or lab.ones({ B, N, 1 }, g:dtype())
    local balance = lab.linear(x, self.balance_router):softmax(3) * 2
    gates = lab.cat({ shared * balance:narrow(3, 1, 1), routed * balance:narrow(3, 2, 1) }, 3)
  end
  local P, f = g:reshape{ B * N, E }:mean(1), chosen:reshape{ B * N, E }:mean(1)
  return per_head(gates), (f * P):sum() * E
end

return { modules = V, moh_gates = moh_gates }
