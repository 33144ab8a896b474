-- test_attention_modules_sparse.lua -- nn.MultiHeadAttention with the variants power, dynamic_mask,
-- landmark, routing, hyper, relative, flashbias and pointer: the module owns the parameters a
-- variant needs, gradients reach them, and a few Adam steps lower a small loss (so a model can
-- train with each); routing's centroids move in training and stay put in eval.
--   ./attnlab tests/lua/test_attention_modules_sparse.lua
local check = dofile("tests/lua/check.lua")("attention_modules_sparse")
local lab = lab or require "attnlab"
local nn = lab.nn

lab.seed(53)
local B, N, dim = 2, 8, 8
local x, target = lab.randn{ B, N, dim }, lab.randn{ B, N, dim }
local lm = lab.tensor{ 0, 0, 1, 0, 0, 1, 0, 0 }
local fq, fk = {}, {}
for i = 1, N do fq[i], fk[i] = { 0.5, -0.5 * i }, { i, 1 } end   -- ALiBi, slope 0.5

local cases = {
  { variant = "power", causal = true, block_size = 2 },
  { variant = "dynamic_mask", top_k = 3, causal = true, owns = { "dt_proj", "dt_a" } },
  { variant = "landmark", causal = true, landmarks = lm },
  { variant = "routing", clusters = 2, cluster_size = 5 },
  { variant = "hyper", block_size = 4, samples = 4 },
  { variant = "relative", max_relative = 2, causal = true, owns = { "rel_key", "rel_value" } },
  { variant = "flashbias", bias_q = lab.tensor(fq), bias_k = lab.tensor(fk), causal = true },
}
for _, c in ipairs(cases) do
  local opts = { dim = dim, heads = 2, kv_heads = c.variant == "dynamic_mask" and 1 or 2 }
  for key, val in pairs(c) do if key ~= "owns" then opts[key] = val end end
  local m = nn.MultiHeadAttention(opts)
  local names = {}
  for _, pair in ipairs(m:named_parameters()) do names[pair[1]] = pair[2] end
  for _, owned in ipairs(c.owns or {}) do check.ok(names[owned] ~= nil, c.variant .. ": the module owns " .. owned) end
  local opt = lab.optim.Adam(m:parameters(), { lr = 0.01 })
  local first, last
  for step = 1, 15 do
    opt:zero_grad()
    if c.variant == "hyper" then lab.seed(7) end   -- the same estimator every step
    local loss = lab.mse(m(x), target)
    loss:backward()
    if step == 1 then
      first = loss:item()
      for _, owned in ipairs(c.owns or {}) do
        check.ok(names[owned].grad ~= nil and names[owned].grad:abs():sum():item() > 0, c.variant .. ": gradient reaches " .. owned)
      end
    end
    last = loss:item()
    opt:step()
  end
  check.ok(last < first, c.variant .. ": 15 Adam steps lower the loss", string.format("%.4f -> %.4f", first, last))
end

do   -- routing's centroids: one EMA step per training forward, none in eval
  local m = nn.MultiHeadAttention{ dim = dim, heads = 2, variant = "routing", clusters = 2, routing_decay = 0.5 }
  local before = m.centroids:clone()
  m(x)
  check.ok((m.centroids - before):abs():max():item() > 0, "routing: a training forward moves the centroids")
  m:eval()
  local now = m.centroids:clone()
  m(x)
  check.ok((m.centroids - now):abs():max():item() == 0, "routing: an eval forward leaves them")
  -- a buffer: in the state dict (so in checkpoints), not a parameter, restored by load_state_dict
  local sd = m:state_dict()
  check.ok(sd.centroids ~= nil and (sd.centroids - m.centroids):abs():max():item() == 0, "routing: the centroids are in the state dict")
  for _, p in ipairs(m:parameters()) do check.ok(p ~= m.centroids, "routing: the centroids are not a parameter") end
  local fresh = nn.MultiHeadAttention{ dim = dim, heads = 2, variant = "routing", clusters = 2 }
  fresh:load_state_dict(sd)
  check.ok((fresh.centroids - m.centroids):abs():max():item() == 0, "routing: load_state_dict restores the centroids")
  check.fails(function() fresh:load_state_dict{} end, "missing parameter", "a state without the module's tensors is refused")
end

do   -- pointer: the module returns the log-distribution over the context and learns to point
  local m = nn.MultiHeadAttention{ dim = dim, heads = 1, variant = "pointer", pointer_hidden = 6 }
  local ctx = lab.randn{ B, 5, dim }
  local logp = m(x, ctx)
  check.ok(logp:shape_string() == "{2,1,8,5}", "pointer: (B, heads, N, M) log-probabilities", logp:shape_string())
  check.ok((logp:exp():sum(4) - 1):abs():max():item() < 1e-5, "pointer: each row is a distribution")
  local ids = lab.randint(5, { B * N })
  local opt = lab.optim.Adam(m:parameters(), { lr = 0.05 })
  local first, last
  for step = 1, 30 do
    opt:zero_grad()
    local loss = lab.cross_entropy(m(x, ctx):reshape{ B * N, 5 }, ids)
    loss:backward()
    if step == 1 then first = loss:item() end
    last = loss:item()
    opt:step()
  end
  check.ok(last < first, "pointer: training with cross-entropy lowers the loss", string.format("%.4f -> %.4f", first, last))
end

check.fails(function() return nn.MultiHeadAttention{ dim = dim, heads = 2, variant = "relative" } end,
  "variant relative needs max_relative", "relative module without max_relative")
check.fails(function() return nn.MultiHeadAttention{ dim = dim, heads = 2, variant = "routing" } end,
  "clusters (variant routing)", "routing module without clusters")
check.fails(function() return nn.MultiHeadAttention{ dim = dim, heads = 2, variant = "dynamic_mask" } end,
  "top_k (variant dynamic_mask)", "dynamic_mask module without top_k")

os.exit(check.report(), true)   -- true: close the Lua state, so every tensor is freed (quiet leak checks)
