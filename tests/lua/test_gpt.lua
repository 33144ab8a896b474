-- test_gpt.lua -- lab.nn.GPT (lua/attnlab/gpt.lua, docs/gpt.md): shapes, tied weights, gradients,
-- the activation cache, hooks (identity, head ablation, pattern replacement), activation patching
-- checked against the same computation done by hand with the model's parts, state dicts and
-- optimisers, other variants, and the errors.
--   ./attnlab tests/lua/test_gpt.lua
local lab = rawget(_G, "lab") or require "attnlab"
local check = dofile("tests/lua/check.lua")("gpt")
local nn = lab.nn
local GPT = nn.GPT

local function ids_of(rows) return lab.tensor(rows, "int64") end
local function maxdiff(a, b) return (a - b):abs():max():item() end
local function at(t, b, pos, v) return t:narrow(1, b, 1):narrow(2, pos, 1):narrow(3, v, 1):item() end
local function shape(t) return t:shape_string() end

---------------------------------------------------------------------------------------------------
-- shapes, parameters, initialisation
---------------------------------------------------------------------------------------------------
do
  lab.seed(1)
  local m = GPT{ vocab = 11, context = 9, layers = 2, heads = 4, width = 16 }
  local ids = lab.randint(11, { 3, 7 })
  local y = m(ids)
  check.ok(shape(y) == "{3,7,11}", "logits (B, T, vocab)", shape(y))
  check.ok(y:dtype() == "float32", "float32 by default")
  check.ok(shape(m(lab.randint(11, { 2, 9 }))) == "{2,9,11}", "T = context")
  -- parameter count: wte, wpe, per block ln1, q k v o, ln2, mlp (4x), ln_f; tied: no head
  local w = 16
  local per_block = 2 * w + 4 * (w * w + w) + 2 * w + (w * 4 * w + 4 * w) + (4 * w * w + w)
  check.ok(m:num_parameters() == 11 * w + 9 * w + 2 * per_block + 2 * w, "parameter count (tied)", tostring(m:num_parameters()))
  local sd = m:state_dict()
  check.ok(sd["wte.weight"] and sd["wpe.weight"] and sd["blocks.2.attn.q.weight"] and sd["blocks.1.mlp.fc2.weight"]
    and sd["ln_f.weight"] and sd["head.weight"] == nil, "state dict names (blocks.<l>.<...>, no head when tied)")
  -- GPT-2 initialisation: std 0.02, residual projections 0.02 / sqrt(2 layers), Linear biases 0
  local big = GPT{ vocab = 64, context = 64, layers = 2, heads = 4, width = 128 }
  local function std(t) return (t * t):mean():sqrt():item() end
  check.near(std(big.wte.weight), 0.02, 0.002, "gpt2 init: wte std 0.02")
  check.near(std(big.blocks[1].attn.q.weight), 0.02, 0.002, "gpt2 init: q std 0.02")
  check.near(std(big.blocks[1].mlp.children.fc1.weight), 0.02, 0.002, "gpt2 init: fc1 std 0.02")
  check.near(std(big.blocks[2].attn.o.weight), 0.02 / 2, 0.001, "gpt2 init: attn.o std 0.02/sqrt(2*2)")
  check.near(std(big.blocks[2].mlp.children.fc2.weight), 0.02 / 2, 0.001, "gpt2 init: mlp.fc2 std 0.02/sqrt(2*2)")
  check.ok(big.blocks[1].attn.q.bias:abs():max():item() == 0 and big.blocks[1].mlp.children.fc1.bias:abs():max():item() == 0,
    "gpt2 init: Linear biases 0")
  check.ok(big.blocks[1].ln1.weight:min():item() == 1, "gpt2 init: LayerNorm weight 1")
  local ao = GPT{ vocab = 64, context = 64, layers = 4, heads = 4, width = 128, mlp = false }
  check.near(std(ao.blocks[1].attn.o.weight), 0.02 / 2, 0.001, "gpt2 init, attention-only: attn.o std 0.02/sqrt(layers)")
  check.ok(ao.blocks[1].mlp == nil and ao:state_dict()["blocks.1.ln2.weight"] == nil, "mlp=false: no ln2, no MLP")
  local dflt = GPT{ vocab = 64, context = 64, layers = 1, heads = 4, width = 128, init = "default" }
  check.near(std(dflt.wte.weight), 1, 0.05, "init=default: Embedding's own N(0, 1)")
  -- untied: a head Linear(width, vocab) without bias
  local u = GPT{ vocab = 11, context = 9, layers = 1, heads = 2, width = 8, tied = false }
  check.ok(u.head and shape(u.head.weight) == "{11,8}" and u.head.bias == nil, "untied: head (vocab, width), no bias")
  check.ok(shape(u(ids)) == "{3,7,11}", "untied logits shape")
  -- float64
  local d = GPT{ vocab = 5, context = 4, layers = 1, heads = 2, width = 4, dtype = "float64" }
  local all64 = true
  for _, p in ipairs(d:parameters()) do all64 = all64 and p:dtype() == "float64" and p:requires_grad() end
  check.ok(all64, "dtype=float64: every parameter float64 and trainable")
  check.ok(d(lab.randint(5, { 2, 4 })):dtype() == "float64", "float64 logits")
end

---------------------------------------------------------------------------------------------------
-- tied weights: one tensor, used twice; its gradient is the sum of the untied model's two
---------------------------------------------------------------------------------------------------
do
  lab.seed(2)
  local t = GPT{ vocab = 7, context = 6, layers = 1, heads = 2, width = 8, init = "default" }
  local u = GPT{ vocab = 7, context = 6, layers = 1, heads = 2, width = 8, tied = false }
  local sd = t:state_dict()
  sd["head.weight"] = t.wte.weight
  u:load_state_dict(sd)
  local ids = lab.randint(7, { 2, 6 })
  local targets = lab.randint(7, { 2, 6 })
  check.ok(maxdiff(t(ids), u(ids)) == 0, "tied model = untied model with head.weight = wte.weight")
  local n = 0
  for _, p in ipairs(t:parameters()) do if rawequal(p, t.wte.weight) then n = n + 1 end end
  check.ok(n == 1 and #t:parameters() == #u:parameters() - 1, "the tied weight is one parameter")
  lab.cross_entropy(t(ids), targets):backward()
  lab.cross_entropy(u(ids), targets):backward()
  check.ok(maxdiff(t.wte.weight.grad, u.wte.weight.grad + u.head.weight.grad) < 1e-6,
    "tied gradient = embedding's + unembedding's gradient of the untied model")
  -- changing the embedding in place changes the unembedding: logits = ln_f(x) wte^T
  local _, cache = t:run_with_cache(ids)
  lab.no_grad(function() t.wte.weight:mul_(2) end)
  local logits2, cache2 = t:run_with_cache(ids)
  check.ok(maxdiff(logits2, lab.linear(cache2["ln_final.out"], t.wte.weight)) < 1e-5, "tied: logits read wte.weight")
  check.ok(maxdiff(cache2["embed"], cache["embed"] * 2) < 1e-6, "tied: the embedding is the same tensor")
end

---------------------------------------------------------------------------------------------------
-- gradients of a tiny float64 GPT against central differences (every parameter), and through hooks
---------------------------------------------------------------------------------------------------
do
  lab.seed(3)
  for _, cfg in ipairs{ { tied = true, mlp = true }, { tied = false, mlp = false } } do
    local m = GPT{ vocab = 5, context = 4, layers = 2, heads = 2, width = 4, mlp_ratio = cfg.mlp and 2 or nil,
                   dtype = "float64", tied = cfg.tied, mlp = cfg.mlp, init = "default" }
    lab.no_grad(function() for _, p in ipairs(m:parameters()) do p:add_(lab.randn(p:shape(), "float64") * 0.1) end end)
    local ids = ids_of{ { 1, 3, 5, 2 }, { 4, 4, 1, 3 } }
    local W = lab.randn({ 2, 4, 5 }, "float64")
    local inputs = {}
    for _, pair in ipairs(m:named_parameters()) do inputs[pair[1]] = pair[2] end
    check.gradients(function() return (m(ids) * W):sum() end, inputs,
      string.format("GPT float64 (tied=%s, mlp=%s)", tostring(cfg.tied), tostring(cfg.mlp)))
    -- a hook's replacement is differentiable: a per-head scale on head_out and a weight on the map
    local s = lab.tensor({ 0.7, 1.3 }, "float64"):reshape{ 1, 2, 1, 1 }:requires_grad(true)
    local w = (lab.rand({ 1, 2, 4, 4 }, "float64") + 0.5):requires_grad(true)
    local hooks = {
      ["blocks.1.attn.head_out"] = function(t) return t * s end,
      ["blocks.2.attn.pattern"] = function(p) return p * w end,
    }
    check.gradients(function() return (m:run_with_hooks(ids, hooks) * W):sum() end,
      { s = s, w = w, q = m.blocks[2].attn.q.weight, wte = m.wte.weight }, "GPT float64 through hooks")
  end
end

---------------------------------------------------------------------------------------------------
-- run_with_cache: every documented name, the right shapes, the plain forward's logits
---------------------------------------------------------------------------------------------------
local documented = { "embed", "pos_embed", "resid_pre", "ln1.out", "attn.q", "attn.k", "attn.v", "attn.pattern",
                     "attn.head_out", "attn.out", "resid_mid", "ln2.out", "mlp.post", "mlp.out", "resid_post",
                     "ln_final.out", "logits" }
do
  lab.seed(4)
  local B, T, V, W, H, L = 3, 7, 11, 16, 4, 2
  local m = GPT{ vocab = V, context = 9, layers = L, heads = H, width = W }
  local ids = lab.randint(V, { B, T })
  local plain = m(ids)
  local logits, cache = m:run_with_cache(ids)
  check.ok(maxdiff(plain, logits) == 0, "run_with_cache: logits bit-identical to the plain forward")
  local hd = W / H
  local want = {
    embed = { B, T, W }, pos_embed = { 1, T, W }, ["ln_final.out"] = { B, T, W }, logits = { B, T, V },
  }
  for l = 1, L do
    local p = "blocks." .. l .. "."
    for _, n in ipairs{ "resid_pre", "ln1.out", "attn.out", "resid_mid", "ln2.out", "mlp.out", "resid_post" } do want[p .. n] = { B, T, W } end
    for _, n in ipairs{ "attn.q", "attn.k", "attn.v", "attn.head_out" } do want[p .. n] = { B, H, T, hd } end
    want[p .. "attn.pattern"] = { B, H, T, T }
    want[p .. "mlp.post"] = { B, T, 4 * W }
  end
  local names = m:hook_names()
  local count = 0
  for _ in pairs(want) do count = count + 1 end
  check.ok(#names == count, "hook_names lists every point", #names .. " vs " .. count)
  local cached = 0
  for _ in pairs(cache) do cached = cached + 1 end
  check.ok(cached == count, "the cache holds every hook point")
  local covered = {}
  for _, n in ipairs(names) do
    covered[n:gsub("^blocks%.%d+%.", "")] = true
    local t = cache[n]
    local s = want[n] and "{" .. table.concat(want[n], ",") .. "}"
    check.ok(t ~= nil and shape(t) == s, "cache['" .. n .. "'] has shape " .. tostring(s), t and shape(t) or "absent")
    check.ok(t ~= nil and not t:requires_grad(), "cache['" .. n .. "'] is detached")
  end
  for _, n in ipairs(documented) do check.ok(covered[n], "documented point '" .. n .. "' exists") end
  -- the values are the model's: residual arithmetic, the map's rows, the logits
  local c = cache
  check.ok(maxdiff(c["blocks.1.resid_pre"], c.embed + c.pos_embed) == 0, "resid_pre(1) = embed + pos_embed")
  check.ok(maxdiff(c["blocks.1.resid_mid"], c["blocks.1.resid_pre"] + c["blocks.1.attn.out"]) == 0, "resid_mid = resid_pre + attn.out")
  check.ok(maxdiff(c["blocks.1.resid_post"], c["blocks.1.resid_mid"] + c["blocks.1.mlp.out"]) == 0, "resid_post = resid_mid + mlp.out")
  check.ok(maxdiff(c["blocks.2.resid_pre"], c["blocks.1.resid_post"]) == 0, "resid_pre(2) = resid_post(1)")
  check.ok(maxdiff(c.logits, logits) == 0, "cache.logits = the logits")
  local pat = c["blocks.2.attn.pattern"]
  check.ok(maxdiff(pat:sum(4), lab.ones{ B, H, T }) < 1e-5, "pattern rows sum to 1")
  check.ok(pat:narrow(3, 1, 1):narrow(4, 2, T - 1):abs():max():item() == 0, "pattern is causal (query 1 sees key 1 only)")
  -- the map is the one the module's record machinery keeps
  local a = m.blocks[2].attn
  a.record = true
  m(ids)
  a.record = false
  check.ok(maxdiff(a.weights, pat) < 1e-6, "pattern = MultiHeadAttention's recorded map")
  local split = nn.split_heads
  local q = split(a.q(c["blocks.2.ln1.out"]), H, hd)
  check.ok(maxdiff(q, c["blocks.2.attn.q"]) == 0, "attn.q = the module's q projection, split into heads")
  local merged = c["blocks.2.attn.head_out"]:permute(1, 3, 2, 4):reshape{ B, T, W }
  check.ok(maxdiff(a.o(merged), c["blocks.2.attn.out"]) == 0, "attn.out = o(head_out merged)")
  -- names: only those asked for
  local _, some = m:run_with_cache(ids, { names = { "blocks.1.attn.pattern", "logits" } })
  local k = 0
  for _ in pairs(some) do k = k + 1 end
  check.ok(k == 2 and some["blocks.1.attn.pattern"] and some.logits, "names = {...}: only the named points")
  check.ok(maxdiff(some["blocks.1.attn.pattern"], c["blocks.1.attn.pattern"]) == 0, "the named pattern is the same map")
end

---------------------------------------------------------------------------------------------------
-- hooks: identity leaves the logits bit-identical; ablation = set_head_scale; pattern = map_hook
---------------------------------------------------------------------------------------------------
do
  lab.seed(5)
  for _, mlp in ipairs{ true, false } do
    local m = GPT{ vocab = 11, context = 8, layers = 2, heads = 4, width = 16, mlp = mlp }
    local ids = lab.randint(11, { 2, 8 })
    local plain = m(ids)
    local seen, identity, none = {}, {}, {}
    for _, n in ipairs(m:hook_names()) do
      identity[n] = function(t, name) seen[name] = true return t end
      none[n] = function() end
    end
    local y = m:run_with_hooks(ids, identity)
    check.ok(maxdiff(y, plain) == 0, "identity hooks at every point: logits bit-identical (mlp=" .. tostring(mlp) .. ")")
    local all = true
    for _, n in ipairs(m:hook_names()) do all = all and seen[n] end
    check.ok(all, "every hook was called with its name")
    check.ok(maxdiff(m:run_with_hooks(ids, none), plain) == 0, "hooks returning nil: logits bit-identical")
    check.ok(maxdiff(m:run_with_hooks(ids, {}), plain) == 0, "no hooks: logits bit-identical")
  end
  -- head ablation through a hook = the module's set_head_scale(h, 0)
  local m = GPT{ vocab = 11, context = 8, layers = 2, heads = 4, width = 16 }
  local ids = lab.randint(11, { 2, 8 })
  local plain = m(ids)
  local ablated = m:run_with_hooks(ids, { ["blocks.2.attn.head_out"] = function(t) return GPT.replace_heads(t, 3) end })
  m.blocks[2].attn:set_head_scale(3, 0)
  local scaled = m(ids)
  local _, cache = m:run_with_cache(ids)
  m.blocks[2].attn:reset_head_scale()
  check.ok(maxdiff(ablated, scaled) == 0, "ablating head 3 by hook = set_head_scale(3, 0), bit for bit")
  check.ok(maxdiff(ablated, plain) > 1e-4, "the ablation changes the logits", tostring(maxdiff(ablated, plain)))
  check.ok(cache["blocks.2.attn.head_out"]:narrow(2, 3, 1):abs():max():item() == 0, "with set_head_scale(3, 0), head_out of head 3 is 0")
  -- by hand with narrow/cat, the other way of writing it
  local by_cat = m:run_with_hooks(ids, { ["blocks.2.attn.head_out"] = function(t)
    return lab.cat({ t:narrow(2, 1, 2), lab.zeros{ 2, 1, 8, 4 }, t:narrow(2, 4, 1) }, 2)
  end })
  check.ok(maxdiff(by_cat, scaled) < 1e-6, "ablation written with cat agrees")
  -- a pattern hook is the module's map_hook
  local uniform = function(p)
    local T = p:size(3)
    local allowed = lab.arange(T):reshape{ 1, T }:le(lab.arange(T):reshape{ T, 1 }):to("float32")
    return (p * 0 + allowed) / allowed:sum(2, true)
  end
  local hooked = m:run_with_hooks(ids, { ["blocks.1.attn.pattern"] = uniform })
  m.blocks[1].attn.map_hook = uniform
  local by_module = m(ids)
  local _, c2 = m:run_with_cache(ids)
  m.blocks[1].attn.map_hook = nil
  check.ok(maxdiff(hooked, by_module) == 0, "pattern hook = MultiHeadAttention.map_hook, bit for bit")
  check.ok(maxdiff(hooked, plain) > 1e-5, "the replaced map changes the logits")
  check.near(c2["blocks.1.attn.pattern"]:narrow(3, 4, 1):narrow(4, 1, 1):max():item(), 0.25, 1e-6,
    "the cache shows the map_hook's map (query 4: 1/4 on each key)")
  -- hooks combined with a cache: the cache holds the replacement
  local _, c3 = m:run_with_cache(ids, { hooks = { ["blocks.1.attn.q"] = function(t) return t * 0 end } })
  check.ok(c3["blocks.1.attn.q"]:abs():max():item() == 0, "run_with_cache{hooks=}: the cache holds what the hook returned")
  check.near(c3["blocks.1.attn.pattern"]:narrow(3, 8, 1):max():item(), 1 / 8, 1e-6,
    "q = 0 gives uniform causal maps (the hook reaches the attention)")
  -- a hook on k reaches the logits
  local yk = m:run_with_hooks(ids, { ["blocks.2.attn.k"] = function(t) return GPT.replace_heads(t, { 1, 2 }) end })
  check.ok(maxdiff(yk, plain) > 1e-6, "a hook on attn.k changes the logits")
end

---------------------------------------------------------------------------------------------------
-- activation patching (issue 16's acceptance test): one head's output from the clean run patched
-- into the corrupted run; the logit difference equals the same computation done by hand with the
-- model's parts (embeddings, LayerNorms, the q/k/v/o Linears, softmax written out, the MLP).
---------------------------------------------------------------------------------------------------
-- the model by hand; patch = {layer =, head =, value = (B, H, T, hd) clean head outputs}
local function by_hand(m, ids, patch)
  local B, T = ids:size(1), ids:size(2)
  local x = m.wte(ids) + m.wpe(lab.arange(1, T + 1):reshape{ 1, T }:to("int64"))
  local outs = {}
  for l, blk in ipairs(m.blocks) do
    local a = blk.attn
    local H, hd = a.heads, a.head_dim
    local h = blk.ln1(x)
    local function split(t) return t:reshape{ B, T, H, hd }:permute(1, 3, 2, 4) end
    local q, k, v = split(a.q(h)), split(a.k(h)), split(a.v(h))
    local logits = q:matmul(k:transpose(3, 4)) * (1 / math.sqrt(hd))
    local allowed = lab.arange(T):reshape{ 1, T }:le(lab.arange(T):reshape{ T, 1 })
    local z = lab.where(allowed, logits, -math.huge):softmax(4):matmul(v)        -- (B, H, T, hd)
    outs[l] = z
    if patch and patch.layer == l then
      local parts = {}
      for j = 1, H do parts[j] = (j == patch.head and patch.value or z):narrow(2, j, 1) end
      z = lab.cat(parts, 2)
    end
    x = x + a.o(z:permute(1, 3, 2, 4):reshape{ B, T, H * hd })
    if blk.mlp then
      local f = blk.mlp.children
      x = x + f.fc2(f.fc1(blk.ln2(x)):gelu())
    end
  end
  local h = m.ln_f(x)
  return m.tied and lab.linear(h, m.wte.weight) or m.head(h), outs
end

for _, case in ipairs{ { dtype = "float64", tol = 1e-10 }, { dtype = "float32", tol = 2e-4 } } do
  lab.seed(6)
  local m = GPT{ vocab = 12, context = 8, layers = 2, heads = 4, width = 32, init = "default", dtype = case.dtype }
  local clean = ids_of{ { 3, 7, 1, 9, 4, 7, 2, 5 }, { 8, 2, 6, 2, 11, 5, 3, 10 } }
  local corrupt = ids_of{ { 3, 7, 1, 12, 4, 7, 2, 5 }, { 8, 2, 6, 1, 11, 5, 3, 10 } }   -- token 4 changed
  local tag = " (" .. case.dtype .. ")"
  local clean_logits, cache = m:run_with_cache(clean)
  local corrupt_logits = m(corrupt)
  -- the metric: at the last position, logit(clean's top token) - logit(corrupt's top token)
  local B, T = 2, 8
  local tok_a, tok_b = {}, {}
  for b = 1, B do
    local ca = clean_logits:narrow(1, b, 1):narrow(2, T, 1):reshape{ -1 }
    local cb = corrupt_logits:narrow(1, b, 1):narrow(2, T, 1):reshape{ -1 }
    local _, ia = ca:max(1); local _, ib = cb:max(1)
    tok_a[b], tok_b[b] = ia:item(), ib:item()
    if tok_a[b] == tok_b[b] then tok_b[b] = tok_a[b] % 12 + 1 end
  end
  local function metric(y, b) return at(y, b, T, tok_a[b]) - at(y, b, T, tok_b[b]) end
  local hand_clean, hand_outs = by_hand(m, clean)
  check.ok(maxdiff(hand_clean, clean_logits) < case.tol, "by hand = the model's forward" .. tag,
    tostring(maxdiff(hand_clean, clean_logits)))
  check.ok(maxdiff(hand_outs[1], cache["blocks.1.attn.head_out"]) < case.tol, "by hand head outputs = cache's head_out" .. tag)
  local somewhere = false
  for layer = 1, 2 do
    for head = 1, 4 do
      local name = "blocks." .. layer .. ".attn.head_out"
      local clean_z = cache[name]
      local patched = m:run_with_hooks(corrupt, { [name] = function(z) return GPT.replace_heads(z, head, clean_z) end })
      local hand = by_hand(m, corrupt, { layer = layer, head = head, value = hand_outs[layer] })
      for b = 1, B do
        local mc, mx = metric(clean_logits, b), metric(corrupt_logits, b)
        local mp, mh = metric(patched, b), metric(hand, b)
        check.near(mp, mh, case.tol * 10, string.format("patched logit difference = by hand (layer %d head %d, seq %d)%s",
          layer, head, b, tag))
        -- the fraction of the clean logit difference recovered, both ways
        check.near((mp - mx) / (mc - mx), (mh - mx) / (mc - mx), case.tol * 100,
          string.format("recovered fraction = by hand (layer %d head %d, seq %d)%s", layer, head, b, tag))
        if math.abs(mp - mx) > 1e-3 then somewhere = true end
      end
    end
  end
  check.ok(somewhere, "patching a head moves the logit difference somewhere" .. tag)
  -- the two ends of the scale: patching the whole residual stream recovers all, patching nothing none
  local full = m:run_with_hooks(corrupt, { ["blocks.1.resid_pre"] = function() return cache["blocks.1.resid_pre"] end })
  check.ok(maxdiff(full, clean_logits) == 0, "patching resid_pre of block 1 gives the clean logits" .. tag)
  local allheads = m:run_with_hooks(corrupt, {
    ["blocks.1.attn.head_out"] = function(z) return GPT.replace_heads(z, { 1, 2, 3, 4 }, cache["blocks.1.attn.head_out"]) end })
  check.ok(maxdiff(allheads, corrupt_logits) > 1e-4, "patching every head of layer 1 changes the corrupted logits" .. tag)
end

---------------------------------------------------------------------------------------------------
-- state dicts, checkpoints and optimisers: the parameters are ordinary modules' parameters
---------------------------------------------------------------------------------------------------
do
  lab.seed(7)
  local opts = { vocab = 9, context = 6, layers = 2, heads = 2, width = 8 }
  local a, b = GPT(opts), GPT(opts)
  local ids = lab.randint(9, { 4, 6 })
  check.ok(maxdiff(a(ids), b(ids)) > 0, "two models differ before loading")
  local dir = check.tmpdir("gpt")
  lab.save(dir .. "/m.safetensors", a:state_dict())
  b:load_state_dict(lab.load(dir .. "/m.safetensors"))
  check.ok(maxdiff(a(ids), b(ids)) == 0, "save / load_state_dict: the same logits")
  local opt = lab.optim.AdamW(a, { lr = 1e-2 })
  local targets = lab.randint(9, { 4, 6 })
  local first, last
  for step = 1, 30 do
    local loss = lab.cross_entropy(a(ids), targets)
    opt:zero_grad(); loss:backward(); opt:step()
    if step == 1 then first = loss:item() end
    last = loss:item()
  end
  check.ok(last < first - 0.5, "AdamW on GPT's parameters lowers the loss", string.format("%.3f -> %.3f", first, last))
  local u = GPT{ vocab = 9, context = 6, layers = 1, heads = 2, width = 8, tied = false, mlp = false }
  local g = 0
  lab.cross_entropy(u(ids), targets):backward()
  for _, p in ipairs(u:parameters()) do g = g + (p.grad and 1 or 0) end
  check.ok(g == #u:parameters(), "every parameter gets a gradient (untied, attention-only)")
  check.cleanup()
end

---------------------------------------------------------------------------------------------------
-- other variants and options
---------------------------------------------------------------------------------------------------
do
  lab.seed(8)
  local ids = lab.randint(7, { 2, 8 })
  for _, o in ipairs{
    { variant = "linear" }, { variant = "sliding_window", window = 3 }, { variant = "lsa" },
    { kv_heads = 1 }, { variant = "relative", max_relative = 2 }, { head_dim = 3 },
  } do
    local opts = { vocab = 7, context = 8, layers = 2, heads = 2, width = 8 }
    for key, val in pairs(o) do opts[key] = val end
    local what = "GPT{" .. (o.variant or "") .. (o.kv_heads and "kv_heads=1" or "") .. (o.head_dim and "head_dim=3" or "") .. "}"
    local m = GPT(opts)
    local y = m(ids)
    local y2, cache = m:run_with_cache(ids)
    check.ok(shape(y) == "{2,8,7}" and maxdiff(y, y2) == 0, what .. ": cached run = plain forward")
    local kshape = "{2," .. (o.kv_heads or 2) .. ",8," .. (o.head_dim or 4) .. "}"
    check.ok(shape(cache["blocks.2.attn.k"]) == kshape, what .. ": attn.k " .. kshape, shape(cache["blocks.2.attn.k"]))
    check.ok(cache["blocks.1.attn.pattern"] and shape(cache["blocks.1.attn.pattern"]) == "{2,2,8,8}", what .. ": a pattern")
    local ident = {}
    for _, n in ipairs(m:hook_names()) do if not n:match("pattern") then ident[n] = function(t) return t end end end
    check.ok(maxdiff(m:run_with_hooks(ids, ident), y) == 0, what .. ": identity hooks, same bits")
  end
  -- window reaches the attention: keys farther than the window get no weight
  local m = GPT{ vocab = 7, context = 8, layers = 1, heads = 2, width = 8, variant = "sliding_window", window = 3 }
  local _, c = m:run_with_cache(ids)
  check.ok(c["blocks.1.attn.pattern"]:narrow(3, 8, 1):narrow(4, 1, 4):abs():max():item() == 0, "sliding_window window=3: the map is banded")
  -- attention = {...}: more MultiHeadAttention options
  local s = GPT{ vocab = 7, context = 8, layers = 1, heads = 2, width = 8, attention = { scale = 1e-12 } }
  local _, cs = s:run_with_cache(ids)
  check.near(cs["blocks.1.attn.pattern"]:narrow(3, 8, 1):max():item(), 1 / 8, 1e-6, "attention={scale=1e-12}: uniform maps")
  -- causal=false
  local nc = GPT{ vocab = 7, context = 8, layers = 1, heads = 2, width = 8, causal = false }
  local _, cn = nc:run_with_cache(ids)
  check.ok(cn["blocks.1.attn.pattern"]:narrow(3, 1, 1):narrow(4, 8, 1):min():item() > 0, "causal=false: query 1 sees key 8")
end

---------------------------------------------------------------------------------------------------
-- errors name GPT
---------------------------------------------------------------------------------------------------
do
  local base = { vocab = 7, context = 8, layers = 1, heads = 2, width = 8 }
  local function with(k, v) local o = {} for kk, vv in pairs(base) do o[kk] = vv end o[k] = v return o end
  check.fails(function() GPT(with("bogus_option", 3)) end, "GPT: unknown option 'bogus_option'", "unknown option")
  check.fails(function() GPT(with("bogus_option", 3)) end, "valid: activation, active_heads", "the error lists the valid keys")
  check.fails(function() GPT(with("layer", 2)) end, "GPT: unknown option 'layer'", "a typo is an unknown option")
  check.fails(function() GPT{ vocab = 7, context = 8, layers = 1 } end, "GPT: width must be a positive integer", "width required")
  check.fails(function() GPT(with("vocab", 0)) end, "GPT: vocab must be a positive integer", "vocab >= 1")
  check.fails(function() GPT(with("mlp", "no")) end, "GPT: mlp must be true or false", "mlp boolean")
  check.fails(function() GPT(with("tied", 1)) end, "GPT: tied must be true or false", "tied boolean")
  check.fails(function() GPT(with("init", "xavier")) end, "GPT: init must be", "init choices")
  check.fails(function() GPT(with("dtype", "int64")) end, "GPT: dtype must be", "dtype choices")
  check.fails(function() GPT(with("mlp_ratio", -1)) end, "GPT: mlp_ratio must be a number > 0", "mlp_ratio")
  check.fails(function() GPT(with("variant", "pointer")) end, "GPT: variant 'pointer'", "pointer refused")
  check.fails(function() GPT(with("variant", "nope")) end, "unknown variant 'nope'", "unknown variant")
  check.fails(function() GPT("x") end, "GPT: expects a table", "options not a table")
  local m = GPT(base)
  check.fails(function() m(lab.tensor{ { 1, 2 } }) end, "GPT: ids must be an int64 tensor (B, T)", "float ids")
  check.fails(function() m(ids_of{ 1, 2 }) end, "GPT: ids must be an int64 tensor (B, T)", "1-d ids")
  check.fails(function() m(ids_of{ { 1, 2, 3, 4, 5, 6, 7, 1, 2 } }) end, "GPT: ids {1,9}: sequence length 9 is longer than the context 8", "too long")
  check.fails(function() m(ids_of{ { 1, 0 } }) end, "GPT: token ids must be from 1 to vocab = 7", "id 0")
  check.fails(function() m(ids_of{ { 1, 8 } }) end, "index 8 is out of range", "id > vocab, with the index")
  check.fails(function() m:run_with_cache(ids_of{ { 1, 8 } }) end, "GPT: token ids must be from 1", "ids checked in run_with_cache")
  check.fails(function() m("ids") end, "GPT: ids must be an int64 tensor", "ids not a tensor")
  local ids = ids_of{ { 1, 2, 3 } }
  check.fails(function() m:run_with_hooks(ids, { ["blocks.2.attn.q"] = function(t) return t end }) end,
    "GPT:run_with_hooks: no hook point 'blocks.2.attn.q'", "hook on a layer that does not exist")
  check.fails(function() m:run_with_hooks(ids, { ["blocks.1.attn.z"] = function(t) return t end }) end,
    "hook_names() lists them", "unknown hook name lists the way out")
  check.fails(function() m:run_with_hooks(ids, { embed = 3 }) end, "the hook of 'embed' must be a function", "hook not a function")
  check.fails(function() m:run_with_hooks(ids, { embed = function(t) return t:narrow(2, 1, 2) end }) end,
    "the hook of 'embed' returned a tensor of shape {1,2,8} for one of shape {1,3,8}", "hook returns a wrong shape")
  check.fails(function() m:run_with_hooks(ids, { embed = function() return 1 end }) end, "returned a number, not a tensor", "hook returns a number")
  check.fails(function() m:run_with_cache(ids, { names = { "resid_pre" } }) end, "no hook point 'resid_pre'", "names checked")
  check.fails(function() m:run_with_cache(ids, { name = { "embed" } }) end, "GPT:run_with_cache: unknown option 'name'", "run_with_cache options")
  local ao = GPT(with("mlp", false))
  check.fails(function() ao:run_with_cache(ids, { names = { "blocks.1.mlp.out" } }) end, "attention-only", "no mlp.out without MLPs")
  local lin = GPT(with("variant", "linear"))
  check.fails(function() lin:run_with_hooks(ids, { ["blocks.1.attn.pattern"] = function(p) return p end }) end,
    "needs the softmax or lsa variant", "pattern hook on a variant without a composed map")
  check.fails(function() GPT.replace_heads(lab.zeros{ 1, 2, 3, 4 }, 3) end, "GPT.replace_heads: head 3 is out of range 1..2", "replace_heads range")
  check.fails(function() GPT.replace_heads(lab.zeros{ 1, 2, 3, 4 }, 1, lab.zeros{ 1, 2, 3, 5 }) end, "src must be a tensor of t's shape", "replace_heads src")
end

check.fails(function() GPT{ vocab = 5, context = 4, layers = 1, width = 4, mlp = false, activation = "relu" } end,
  "GPT: activation shapes the MLP, and mlp = false builds none", "an MLP option without an MLP is an error")

os.exit(check.report(), true)
