-- test_attention_modules.lua -- the head-gated "moh" and the "random_feature" attention (functional
-- forms against float64 references built here, gradients, refusals), and nn.MultiHeadAttention's
-- module-level variants: MoH's router (the all-zero-router identity with plain MHA, top-k gates,
-- the balance loss = k at uniform gates), lowrank against an explicit reference (and its global
-- query), random_feature's frozen Q/K, a short training of every variant on a toy target, and the
-- keys and values computed in the context's space against the module as written.
local check = dofile("tests/lua/check.lua")("attention_modules")
local lab = lab or require "attnlab"
local nn = lab.nn

lab.seed(17)
local function rnd(shape) return lab.randn(shape, "float64") end
local function max_abs_diff(a, b) return (a - b):abs():max():item() end
local function causal_keep(N, M)
  local rows = {}
  for i = 1, N do rows[i] = {} for j = 1, M do rows[i][j] = j <= i and 1 or 0 end end
  return lab.tensor(rows, "float64")
end

-- moh, functional: softmax attention with each (token, head) output scaled by its gate
for _, causal in ipairs{ false, true } do
  local q, k, v = rnd{ 2, 3, 5, 4 }, rnd{ 2, 3, 5, 4 }, rnd{ 2, 3, 5, 2 }
  local gates = rnd{ 2, 3, 5 }
  local out, w = lab.attention(q, k, v, { variant = "moh", gates = gates, causal = causal, weights = true })
  local logits = q:matmul(k:transpose(3, 4)) * 0.5
  if causal then logits = logits + (causal_keep(5, 5) - 1) * 1e300 end
  local P = logits:softmax(4)
  local ref = P:matmul(v) * gates:unsqueeze(4)
  local name = causal and "moh causal" or "moh"
  check.ok(max_abs_diff(out, ref) < 1e-12, name .. ": output equals gates times softmax attention")
  check.ok(max_abs_diff(w, P * gates:unsqueeze(4)) < 1e-12, name .. ": map is the gated softmax map")
  local R = rnd(out:shape())
  for _, x in ipairs{ q, k, v, gates } do x:requires_grad(true) end
  check.gradients(function()
    return (lab.attention(q, k, v, { variant = "moh", gates = gates, causal = causal }) * R):sum()
  end, { q = q, k = k, v = v, gates = gates }, name)
end
do
  local q = rnd{ 1, 2, 3, 4 }
  check.fails(function() lab.attention(q, q, q, { variant = "moh" }) end,
    "variant 'moh' needs opts.gates, per-token head gates broadcastable to (B, H, N) = {1,2,3}")
  check.fails(function() lab.attention(q, q, q, { variant = "moh", gates = rnd{ 1, 3, 3 } }) end,
    "needs gates as a float tensor broadcastable to (B, H, N) = {1,2,3} (got float64 {1,3,3})")
  check.fails(function() lab.attention(q, q, q, { gates = rnd{ 1, 2, 3 } }) end,
    "gates is an option of the variant(s) moh, not of 'softmax'")
end

-- random_feature, functional: relu(scale q k^T + bias) over the allowed keys, divided by their count
for _, case in ipairs{ { name = "random_feature", causal = false }, { name = "random_feature causal", causal = true },
                       { name = "random_feature mask, grouped heads", mask = true } } do
  local q, k, v = rnd{ 2, 4, 5, 3 }, rnd{ 2, 2, 5, 3 }, rnd{ 2, 2, 5, 2 }
  local bias = rnd{ 5, 5 }
  local mask = case.mask and lab.tensor({ { 1, 0, 1, 1, 0 }, { 0, 0, 0, 0, 0 }, { 1, 1, 1, 1, 1 }, { 0, 1, 0, 0, 0 },
                                          { 1, 1, 0, 1, 1 } }, "float64") or nil
  local out, w = lab.attention(q, k, v, { variant = "random_feature", causal = case.causal, bias = bias, mask = mask, weights = true })
  local kr = k:unsqueeze(3):expand{ 2, 2, 2, 5, 3 }:reshape{ 2, 4, 5, 3 }
  local vr = v:unsqueeze(3):expand{ 2, 2, 2, 5, 2 }:reshape{ 2, 4, 5, 2 }
  local keep = case.causal and causal_keep(5, 5) or mask or lab.ones({ 5, 5 }, "float64")
  local count = keep:sum(2, true):clamp(1, math.huge)
  local A = (q:matmul(kr:transpose(3, 4)) / math.sqrt(3) + bias):relu() * keep / count
  check.ok(max_abs_diff(out, A:matmul(vr)) < 1e-12, case.name .. ": output equals relu attention / key count")
  check.ok(max_abs_diff(w, A) < 1e-12, case.name .. ": map is the relu weights / key count")
  local R = rnd(out:shape())
  for _, x in ipairs{ q, k, v, bias } do x:requires_grad(true) end
  check.gradients(function()
    return (lab.attention(q, k, v, { variant = "random_feature", causal = case.causal, bias = bias, mask = mask }) * R):sum()
  end, { q = q, k = k, v = v, bias = bias }, case.name)
end

-- MoH module: with every router at zero and all routed heads active, every gate is 1 and the module
-- equals plain multi-head attention; the balance loss is then exactly k (attention-variants.md section 3)
for _, shared in ipairs{ 0, 1, 2 } do
  lab.seed(2)
  local moh = nn.MultiHeadAttention{ dim = 8, heads = 4, variant = "moh", shared_heads = shared, active_heads = 4 - shared }
  local plain = nn.MultiHeadAttention{ dim = 8, heads = 4 }
  local sd = moh:state_dict()
  lab.no_grad(function()
    for name, p in pairs(plain:state_dict()) do p:copy_(sd[name]) end
    for _, name in ipairs{ "router", "shared_router", "balance_router" } do if moh[name] then moh[name]:copy_(moh[name] * 0) end end
  end)
  local x = lab.randn{ 2, 5, 8 }
  check.ok(max_abs_diff(moh(x), plain(x)) < 1e-6, "moh, " .. shared .. " shared heads, zero routers, k = E: equals plain MHA")
  check.near(moh.aux_loss:item(), 4 - shared, 1e-5, "moh, " .. shared .. " shared heads: balance loss at uniform gates is k")
end
do   -- top-k: exactly k routed heads have a gate per token, and (no shared heads) the gates sum to k
  lab.seed(4)
  local m = nn.MultiHeadAttention{ dim = 10, heads = 5, variant = "moh", active_heads = 2 }
  local gates = nn.moh_gates(m, lab.randn{ 3, 6, 10 })
  local on = gates:ne(lab.zeros{ 1 }):sum(2)
  check.ok(max_abs_diff(on, lab.full({ 3, 6 }, 2)) == 0, "moh: two routed heads are on per token")
  check.ok(max_abs_diff(gates:sum(2), lab.full({ 3, 6 }, 2)) < 1e-5, "moh: routed gates sum to k")
  check.fails(function() nn.MultiHeadAttention{ dim = 8, heads = 4, variant = "moh", shared_heads = 4 } end,
    "moh needs 0 <= shared_heads < heads = 4 (got 4)")
  check.fails(function() nn.MultiHeadAttention{ dim = 8, heads = 4, variant = "moh", shared_heads = 1, active_heads = 4 } end,
    "moh needs 1 <= active_heads <= heads - shared_heads = 3 (got 4)")
end

-- lowrank module against an explicit per-head reference, token queries and a global query
for _, global in ipairs{ false, true } do
  lab.seed(6)
  local m = nn.MultiHeadAttention{ dim = 6, heads = 3, variant = "lowrank", rank = 2, global_query = global, causal = not global }
  local x = lab.randn{ 2, 4, 6 }
  local y = m(x)
  local src = global and m.context_vector:reshape{ 1, 1, 6 }:expand{ 2, 1, 6 } or x
  local qf, kf = lab.linear(src, m.query_factor):tanh(), lab.linear(x, m.key_factor):tanh()
  local heads = {}
  for h = 1, 3 do
    local logits = (qf * m.head_mix:narrow(2, h, 1):t()):matmul(kf:transpose(2, 3))
    if not global then logits = logits + (causal_keep(4, 4):float() - 1) * 1e30 end
    heads[h] = logits:softmax(3):matmul(x)
  end
  local ref = m.o(lab.cat(heads, 3))
  check.ok(max_abs_diff(y, ref) < 1e-5, "lowrank" .. (global and " global query" or " causal") .. ": equals the per-head reference")
  check.ok(y:size(2) == (global and 1 or 4), "lowrank: output length")
end
check.fails(function() nn.MultiHeadAttention{ dim = 8, heads = 2, variant = "nope" } end,
  "unknown variant 'nope' (known: ")

-- random_feature module: W_Q, W_K frozen (not parameters, no gradient), W_V and W_O trained
do
  lab.seed(8)
  local m = nn.MultiHeadAttention{ dim = 8, heads = 4, variant = "random_feature", qk_mean = 0.1 }
  local names = {}
  for _, pair in ipairs(m:named_parameters()) do names[#names + 1] = pair[1] end
  check.ok(table.concat(names, ",") == "v.weight,v.bias,o.weight,o.bias", "random_feature: only V and O are parameters",
    table.concat(names, ","))
  local before = m.q_frozen:clone()
  local opt = lab.optim.SGD(m:parameters(), { lr = 0.1 })
  local x = lab.randn{ 2, 5, 8 }
  lab.mse(m(x), x):backward(); opt:step()
  check.ok(m.q_frozen.grad == nil and max_abs_diff(m.q_frozen, before) == 0, "random_feature: W_Q stays as sampled")
  check.near(m.q_frozen:mean():item(), 0.1, 0.05, "random_feature: qk_mean shifts the frozen weights")
end

-- TransformerBlock hands the variant's module options to its attention
do
  local block = nn.TransformerBlock{ dim = 8, heads = 4, variant = "moh", attention = { shared_heads = 1, active_heads = 2 } }
  local y = block(lab.randn{ 2, 3, 8 })
  check.ok(block.attn.shared_heads == 1 and block.attn.active_heads == 2 and block.attn.aux_loss ~= nil and y:size(3) == 8,
    "TransformerBlock{attention = {...}} configures the moh router")
  check.fails(function() nn.TransformerBlock{ dim = 8, heads = 2, attention = 3 } end,
    "TransformerBlock: attention must be a table of MultiHeadAttention options (got number)")
end

-- a short training of each module-level variant on a toy target: the loss falls
for _, var in ipairs{ "flow", "local_linear", "delta", "random_feature", "agent", "moh", "lowrank", "tensor" } do
  lab.seed(1)
  local teacher = nn.MultiHeadAttention{ dim = 8, heads = 2 }
  local x = lab.randn{ 8, 6, 8 }
  local target = lab.no_grad(function() return teacher(x) end)
  local m = nn.MultiHeadAttention{ dim = 8, heads = 2, variant = var, shared_heads = 1, active_heads = 1, agent_count = 3 }
  local opt = lab.optim.Adam(m:parameters(), { lr = 1e-2 })
  local first, last
  for step = 1, 40 do
    opt:zero_grad()
    local mse = lab.mse(m(x), target)
    local loss = m.aux_loss and mse + m.aux_loss * 0.01 or mse
    loss:backward(); opt:step()
    if step == 1 then first = mse:item() end
    last = mse:item()
  end
  check.ok(last < 0.5 * first, "MultiHeadAttention{variant = " .. var .. "} trains: mse falls by half in 40 steps",
    string.format("%.4g -> %.4g", first, last))
end

-- Self-attention projects q, k and v in one product against the stacked weights; the same module
-- with its q projection wrapped in a Sequential takes the three separate products.  In float64 the
-- two agree in the output and in every parameter's gradient.
for _, opts in ipairs{ { dim = 24, heads = 3, causal = true }, { dim = 24, heads = 4, kv_heads = 2 },
                       { dim = 24, heads = 2, bias = false } } do
  local function grads(m, x, g)
    m:zero_grad()
    local y = m(x)
    y:backward(g)
    local out = {}
    for _, pair in ipairs(m:named_parameters()) do out[pair[1]:gsub("%.1%.", ".")] = pair[2].grad end
    return y:detach(), out
  end
  local fused = lab.nn.MultiHeadAttention(opts)
  local params64 = {}
  for _, pair in ipairs(fused:named_parameters()) do params64[#params64 + 1] = pair end
  local x, g = lab.randn({ 2, 7, 24 }, "float64"), lab.randn({ 2, 7, 24 }, "float64")
  -- the module in float64: every parameter replaced by a float64 copy
  for _, pair in ipairs(params64) do
    local owner, name = fused, pair[1]
    for part in pair[1]:gmatch("([^.]+)%.") do owner = owner.children[part] end
    name = pair[1]:match("([^.]+)$")
    owner.params[name] = pair[2]:to("float64"):detach():requires_grad(true)
    owner[name] = owner.params[name]
  end
  local y1, g1 = grads(fused, x, g)
  fused.q = fused:add_child("q", lab.nn.Sequential(fused.q))
  local y2, g2 = grads(fused, x, g)
  local worst = (y1 - y2):abs():max():item()
  for name, t in pairs(g1) do worst = math.max(worst, (t - g2[name]):abs():max():item()) end
  check.ok(worst < 1e-12, "q, k, v from one product equal three products, output and gradients (heads "
    .. opts.heads .. ")", tostring(worst))
end

-- Keys and values in the context's space (MultiHeadAttention:folds_context): where the context is no
-- wider than a head, with bias-free k and v, the module attends over the context itself with folded
-- weights; the output, the map and every parameter's gradient equal the module computed as written.
do
  local function run(m, fold, x, z)
    m.fold_context = fold
    m:zero_grad()
    m.record = true
    local y = z and m(x, z) or m(x)
    y:pow(2):sum():backward()
    local grads = {}
    for i, p in ipairs(m:parameters()) do grads[i] = p.grad:clone() end
    return y, grads, m.weights
  end
  local cases = {
    { "softmax, one query over a context (the regression study's model)",
      { dim = 6, heads = 4, head_dim = 6, out_dim = 1, bias = false }, { 6, 1, 6 }, { 6, 11, 6 } },
    { "lsa with its norm", { dim = 6, heads = 4, head_dim = 6, out_dim = 1, bias = false, variant = "lsa", norm = 11 },
      { 6, 1, 6 }, { 6, 11, 6 } },
    { "causal self-attention, tokens narrower than a head", { dim = 5, heads = 3, head_dim = 7, bias = false, causal = true },
      { 4, 9, 5 } },
    { "a head ablated, and q and o biases (k and v bias-free)", { dim = 6, heads = 4, head_dim = 6, bias = false },
      { 5, 2, 6 }, { 5, 9, 6 }, function(m)
        m:set_head_scale(2, 0)
        m.q.bias = m.q:add_param("bias", rnd{ 24 })
        m.o.bias = m.o:add_param("bias", rnd{ 6 })
      end },
  }
  for _, c in ipairs(cases) do
    local m = nn.MultiHeadAttention(c[2]):to("float64")
    if c[5] then c[5](m) end
    m.fold_context = nil
    check.ok(m:folds_context(), c[1] .. ": folds")
    local x, z = rnd(c[3]), c[4] and rnd(c[4])
    local y1, g1, w1 = run(m, false, x, z)
    local y2, g2, w2 = run(m, nil, x, z)
    local worst = math.max(max_abs_diff(y1, y2), max_abs_diff(w1, w2))
    for i = 1, #g1 do worst = math.max(worst, max_abs_diff(g1[i], g2[i])) end
    check.ok(#g1 == #g2 and worst < 1e-12, c[1] .. ": output, map and " .. #g1 .. " gradients equal the module as written",
      tostring(worst))
  end
  -- where it would not be the same computation, or would not save anything: as written
  local wide = nn.MultiHeadAttention{ dim = 16, heads = 2, bias = false }
  check.ok(not wide:folds_context(), "a context wider than a head is not folded")
  local biased = nn.MultiHeadAttention{ dim = 6, heads = 4, head_dim = 6 }
  check.ok(not biased:folds_context(), "k and v with biases are not folded")
  local other = nn.MultiHeadAttention{ dim = 6, heads = 4, head_dim = 6, bias = false, variant = "linear" }
  check.ok(not other:folds_context(), "a variant other than softmax and lsa is not folded")
  local hooked = nn.MultiHeadAttention{ dim = 6, heads = 4, head_dim = 6, bias = false }
  hooked.map_hook = function(map) return map end
  check.ok(not hooked:folds_context(), "a module with a map_hook is not folded")
  local grouped = nn.MultiHeadAttention{ dim = 6, heads = 4, kv_heads = 2, head_dim = 6, bias = false }
  check.ok(not grouped:folds_context(), "grouped kv heads are not folded")
end

os.exit(check.report(), true)
