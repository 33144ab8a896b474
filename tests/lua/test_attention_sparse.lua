-- test_attention_sparse.lua -- the variants on the sparse key-list kernel: "power" (PowerAttention),
-- "dynamic_mask" (DMA), "hyper" (HyperAttention, an estimator: its error bound, exactness when
-- one block holds everything, equality with the log-sum-exp merge of its two parts) and "routing"
-- (Routing Transformer, against per-cluster masked softmax).  Each against the float64 dense reference with an explicit mask built
-- here (attention_reference.lua), in float64 (1e-12) and float32 (1e-5); maps; gradients against
-- central differences; the identity cases; the errors.
--   ./attnlab tests/lua/test_attention_sparse.lua
local check = dofile("tests/lua/check.lua")("attention_sparse")
local ref = dofile("tests/lua/attention_reference.lua")
local lab = lab or require "attnlab"

lab.seed(11)
local function rnd(shape, dt) return lab.randn(shape, dt or "float64") end

-- the variant against masked dense softmax (with a bias), in float64 and float32; returns the map
local function compare(label, q, k, v, opts, mask, bias)
  local r, rw = ref.attention(q, k, v, { mask = mask, bias = bias })
  return ref.check_variant(check, label, q, k, v, opts, r, rw)
end

---------------------------------------------------------------------------------------------------
-- power: allowed iff j <= t and (I - J < local_blocks or I - J a power of two), blocks of b tokens
---------------------------------------------------------------------------------------------------
local function is_power_of_two(x)
  if x < 1 then return false end
  while x % 2 == 0 do x = x / 2 end
  return x == 1
end
local function power_allowed(N, M, b, w, mode)
  local shift = mode == "bottom_right" and M - N or 0
  return function(_, _, i, j)
    local t = i - 1 + shift
    local I, J = math.floor(t / b), math.floor((j - 1) / b)
    return j - 1 <= t and (I - J < w or is_power_of_two(I - J))
  end
end

for _, c in ipairs{
  { name = "token level", B = 1, H = 2, Hkv = 2, N = 13, M = 13, b = 1, w = 1, causal = true },
  { name = "blocks of 2, window 2", B = 2, H = 2, Hkv = 1, N = 17, M = 17, b = 2, w = 2, causal = true },
  { name = "blocks of 3", B = 1, H = 3, Hkv = 3, N = 20, M = 20, b = 3, w = 1, causal = true },
  { name = "cross bottom_right", B = 1, H = 2, Hkv = 2, N = 5, M = 12, b = 2, w = 1, causal = "bottom_right" },
  { name = "cross top_left", B = 1, H = 2, Hkv = 2, N = 9, M = 6, b = 1, w = 1, causal = "top_left" },
} do
  local q, k, v = rnd{ c.B, c.H, c.N, 4 }, rnd{ c.B, c.Hkv, c.M, 4 }, rnd{ c.B, c.Hkv, c.M, 3 }
  local mask = ref.mask(c.B, c.H, c.N, c.M, power_allowed(c.N, c.M, c.b, c.w, c.causal))
  local w = compare("power " .. c.name, q, k, v,
    { variant = "power", causal = c.causal, block_size = c.b, local_blocks = c.w }, mask)
  -- keys per row: the local window plus one block per power of two, never more
  local most = w:gt(0):sum(4):max():item()
  local bound = (c.w + math.floor(math.log(math.max(c.M / c.b, 1)) / math.log(2)) + 1) * c.b
  check.ok(most <= bound, "power " .. c.name .. ": at most (w + log2(M/b) + 1) b keys per query",
    most .. " > " .. bound)
end

-- gradients of q, k, v (grouped heads, blocks of 2)
do
  local q, k, v = rnd{ 1, 2, 7, 3 }:requires_grad(true), rnd{ 1, 1, 7, 3 }:requires_grad(true),
                  rnd{ 1, 1, 7, 2 }:requires_grad(true)
  check.gradients(function()
    return (lab.attention(q, k, v, { variant = "power", causal = true, block_size = 2 }) ^ 2):sum()
  end, { q = q, k = k, v = v }, "power")
end

-- completeness (the paper's claim): at block level, (I + G)^L is full lower-triangular for
-- L = ceil(log2(N)) + 1; a sliding window of the same width is not
do
  local N = 33
  local q, k, v = rnd{ 1, 1, N, 2 }, rnd{ 1, 1, N, 2 }, rnd{ 1, 1, N, 2 }
  local function reach(opts, hops)
    local _, w = lab.attention(q, k, v, opts)
    local G = w:reshape{ N, N }:gt(0):to("float64") + lab.eye(N, "float64")
    local R = G
    for _ = 2, hops do R = R:matmul(G):gt(0):to("float64") end
    return R:sum():item()
  end
  local hops = math.ceil(math.log(N) / math.log(2)) + 1
  check.near(reach({ variant = "power", causal = true, weights = true }, hops), N * (N + 1) / 2, 0,
    "power: every earlier token is reached within ceil(log2 N) + 1 layers")
  check.ok(reach({ variant = "sliding_window", window = 1, causal = true, weights = true }, hops) < N * (N + 1) / 2,
    "a window of 1 does not reach that far in as many layers")
end

-- identity: a local window covering everything is causal softmax
do
  local q, k, v = rnd{ 2, 2, 9, 3 }, rnd{ 2, 2, 9, 3 }, rnd{ 2, 2, 9, 3 }
  local out = lab.attention(q, k, v, { variant = "power", causal = true, local_blocks = 9 })
  check.ok(ref.max_abs_diff(out, lab.attention(q, k, v, { causal = true })) < 1e-12,
    "power: local_blocks >= N is causal softmax attention")
end

do
  local q = rnd{ 1, 1, 4, 2 }
  check.fails(function() return lab.attention(q, q, q, { variant = "power" }) end,
    "variant 'power' is causal by definition", "power without causal")
  check.fails(function() return lab.attention(q, q, q, { variant = "power", causal = true, local_blocks = 0 }) end,
    "opts.local_blocks must be an integer >= 1", "power local_blocks 0")
  check.fails(function() return lab.attention(q, q, q, { variant = "power", causal = true, block_size = 1.5 }) end,
    "opts.block_size", "power fractional block_size")
end

---------------------------------------------------------------------------------------------------
-- dynamic_mask: z = exp(A softplus(vcat W_dt)) per (b, kv head, key), top_k keys by z, bias z
---------------------------------------------------------------------------------------------------
-- z (B, Hkv, M) from plain ops (softplus = log(1 + exp(x)), fine for these small x)
local function dma_scores(v, W, A)
  local B, Hkv, M, dv = v:size(1), v:size(2), v:size(3), v:size(4)
  local x = v:permute(1, 3, 2, 4):reshape{ B, M, Hkv * dv }:matmul(W)
  return ((x:exp() + 1):log() * A):exp():permute(1, 3, 2)
end
-- the kept keys of (b, h, i): the top_k allowed keys by z, ties to the lower index
local function dma_allowed(z, H, top_k, visible)
  local Hkv = z:size(2)
  local zt = z:totable()
  local cache = {}
  return function(b, h, i, j)
    local hk = math.floor((h - 1) * Hkv / H) + 1
    local key = b .. "," .. h .. "," .. i
    if not cache[key] then
      local cand = {}
      for jj = 1, #zt[b][hk] do if visible(b, h, i, jj) then cand[#cand + 1] = jj end end
      table.sort(cand, function(x, y)
        local zx, zy = zt[b][hk][x], zt[b][hk][y]
        if zx ~= zy then return zx > zy end
        return x < y
      end)
      local set = {}
      for n = 1, math.min(top_k, #cand) do set[cand[n]] = true end
      cache[key] = set
    end
    return cache[key][j] or false
  end
end

for _, c in ipairs{
  { name = "non-causal", B = 2, H = 2, Hkv = 2, N = 5, M = 8, top_k = 3 },
  { name = "causal", B = 1, H = 2, Hkv = 2, N = 9, M = 9, top_k = 4, causal = true },
  { name = "grouped heads, bottom_right", B = 2, H = 4, Hkv = 2, N = 4, M = 10, top_k = 3, causal = "bottom_right" },
  { name = "top_k >= M (dense with bias z)", B = 1, H = 2, Hkv = 1, N = 6, M = 6, top_k = 6, causal = true },
} do
  local q, k, v = rnd{ c.B, c.H, c.N, 3 }, rnd{ c.B, c.Hkv, c.M, 3 }, rnd{ c.B, c.Hkv, c.M, 2 }
  local W, A = rnd{ c.Hkv * 2, c.Hkv }, rnd{ c.Hkv }
  local z = dma_scores(v, W, A)
  local visible = c.causal and ref.causal(c.N, c.M, c.causal) or function() return true end
  local mask = ref.mask(c.B, c.H, c.N, c.M, dma_allowed(z, c.H, c.top_k, visible))
  local bias = ref.repeat_heads(z:unsqueeze(3), c.H)
  compare("dynamic_mask " .. c.name, q, k, v,
    { variant = "dynamic_mask", causal = c.causal, top_k = c.top_k, dt_proj = W, dt_a = A }, mask, bias)
end

-- gradients of q, k, v, W_dt and A (the selection is a constant)
do
  local q, k, v = rnd{ 1, 2, 5, 3 }:requires_grad(true), rnd{ 1, 1, 6, 3 }:requires_grad(true),
                  rnd{ 1, 1, 6, 2 }:requires_grad(true)
  local W, A = rnd{ 2, 1 }:requires_grad(true), rnd{ 1 }:requires_grad(true)
  check.gradients(function()
    return (lab.attention(q, k, v, { variant = "dynamic_mask", top_k = 3, dt_proj = W, dt_a = A,
                                     causal = "bottom_right" }) ^ 2):sum()
  end, { q = q, k = k, v = v, dt_proj = W, dt_a = A }, "dynamic_mask")
end

do
  local q, W, A = rnd{ 1, 2, 4, 2 }, rnd{ 4, 2 }, rnd{ 2 }
  check.fails(function() return lab.attention(q, q, q, { variant = "dynamic_mask", top_k = 2 }) end,
    "variant 'dynamic_mask' needs dt_proj", "dynamic_mask without its parameters")
  check.fails(function() return lab.attention(q, q, q, { variant = "dynamic_mask", top_k = 2, dt_proj = rnd{ 3, 2 }, dt_a = A }) end,
    "dt_proj {4,2}", "dynamic_mask with a dt_proj of the wrong shape")
  check.fails(function() return lab.attention(q, q, q, { variant = "dynamic_mask", dt_proj = W, dt_a = A }) end,
    "top_k >= 1", "dynamic_mask without top_k")
  check.fails(function() return lab.attention(q, q, q, { variant = "softmax", top_k = 2 }) end,
    "top_k is an option of", "top_k given to softmax")
end

---------------------------------------------------------------------------------------------------
-- hyper
---------------------------------------------------------------------------------------------------
local function relative_error(o, exact) return ((o - exact) ^ 2):sum():sqrt():item() / (exact ^ 2):sum():sqrt():item() end

-- exact when one block holds every key (the sampled keys then all fall inside it and are dropped)
for _, c in ipairs{
  { name = "self", B = 2, H = 2, Hkv = 2, N = 10, M = 10 },
  { name = "cross, grouped heads", B = 1, H = 4, Hkv = 2, N = 6, M = 11 },
  { name = "causal", B = 1, H = 2, Hkv = 2, N = 9, M = 9, causal = true },
  { name = "causal bottom_right", B = 1, H = 2, Hkv = 1, N = 5, M = 9, causal = "bottom_right" },
} do
  local q, k, v = rnd{ c.B, c.H, c.N, 4 }, rnd{ c.B, c.Hkv, c.M, 4 }, rnd{ c.B, c.Hkv, c.M, 3 }
  local mask = c.causal and ref.mask(c.B, c.H, c.N, c.M, ref.causal(c.N, c.M, c.causal)) or nil
  compare("hyper block_size >= M, " .. c.name, q, k, v,
    { variant = "hyper", causal = c.causal, block_size = c.M, samples = 5 }, mask)
end

-- one bucket, no samples: blocks of consecutive positions (query rank r in block floor(r nb / N))
do
  local N, M, b = 12, 12, 4
  local q, k, v = rnd{ 1, 2, N, 3 }, rnd{ 1, 2, M, 3 }, rnd{ 1, 2, M, 2 }
  local nb = math.ceil(M / b)
  local mask = ref.mask(1, 2, N, M, function(_, _, i, j)
    return math.floor((i - 1) * nb / N) == math.floor((j - 1) * nb / M)
  end)
  compare("hyper one bucket, no samples: block-diagonal", q, k, v,
    { variant = "hyper", lsh_bits = -1, block_size = b, samples = 0 }, mask)
end

-- the estimator is the log-sum-exp merge of the block part and the sampled part (weight M / m);
-- one bucket, so the blocks are known; the samples are the same draws from the same seed
do
  local B, H, N, M, b, m = 1, 2, 8, 8, 4, 6
  local q, k, v = rnd{ B, H, N, 3 }, rnd{ B, H, M, 3 }, rnd{ B, H, M, 2 }
  lab.seed(99)
  local out = lab.attention(q, k, v, { variant = "hyper", lsh_bits = -1, block_size = b, samples = m })
  lab.seed(99)
  local drawn = lab.randint(0, M - 1, { B, H, m }):totable()
  local nb = math.ceil(M / b)
  local function block(i, n) return math.floor((i - 1) * nb / n) end
  local counts = {}   -- counts[1][h][i][j]: how often key j was drawn and lies outside i's block
  counts[1] = {}
  for h = 1, H do
    counts[1][h] = {}
    for i = 1, N do
      local row = {}
      for j = 1, M do row[j] = 0 end
      for _, j0 in ipairs(drawn[1][h]) do
        if block(j0 + 1, M) ~= block(i, N) then row[j0 + 1] = row[j0 + 1] + 1 end
      end
      counts[1][h][i] = row
    end
  end
  local C = lab.tensor(counts, "float64")
  local S = q:matmul(k:transpose(3, 4)) / math.sqrt(3)
  local in_block = ref.mask(B, H, N, M, function(_, _, i, j) return block(i, N) == block(j, M) end)
  local S1 = lab.where(in_block, S, -math.huge)
  local S2 = lab.where(C:gt(0), S + math.log(M / m) + C:log(), -math.huge)
  local merged, lse = lab.attention.merge(S1:softmax(4):matmul(v), S1:logsumexp(4), S2:softmax(4):matmul(v), S2:logsumexp(4))
  check.ok(ref.max_abs_diff(out, merged) < 1e-12, "hyper equals lab.attention.merge of its block and sample parts",
    tostring(ref.max_abs_diff(out, merged)))
  check.ok(lse:shape()[3] == N, "merge returns the merged log-sum-exp per row")
end

-- the error bound: the output's relative Frobenius error falls as the samples grow (mean of 6 seeds)
do
  local N = 64
  local q, k, v = rnd{ 1, 2, N, 8 }, rnd{ 1, 2, N, 8 }, rnd{ 1, 2, N, 4 }
  local exact = lab.attention(q, k, v)
  local errors = {}
  for n, m in ipairs{ 8, 64, 512 } do
    local total = 0
    for s = 1, 6 do
      lab.seed(s)
      total = total + relative_error(lab.attention(q, k, v, { variant = "hyper", block_size = 8, lsh_bits = 3, samples = m }), exact)
    end
    errors[n] = total / 6
  end
  check.ok(errors[1] > errors[2] and errors[2] > errors[3], "hyper: the error falls with more samples",
    string.format("%.3g, %.3g, %.3g", errors[1], errors[2], errors[3]))
  check.ok(errors[3] < 0.5 * errors[1], "hyper: 64x the samples at least halves the error",
    string.format("%.3g vs %.3g", errors[3], errors[1]))
  local _, w = lab.attention(q, k, v, { variant = "hyper", block_size = 8, samples = 16, weights = true })
  check.ok((w:sum(4) - 1):abs():max():item() < 1e-12, "hyper: its map's rows sum to 1")
  lab.seed(4)
  local o64 = lab.attention(q, k, v, { variant = "hyper", block_size = 8, lsh_bits = 3, samples = 16 })
  lab.seed(4)
  local o32 = lab.attention(q:to("float32"), k:to("float32"), v:to("float32"),
    { variant = "hyper", block_size = 8, lsh_bits = 3, samples = 16 })
  check.ok(ref.max_abs_diff(o32:to("float64"), o64) < 1e-5, "hyper: float32 within 1e-5 of float64 (same seed)")
end

do   -- gradients: the seed fixed inside the loss, so every evaluation draws the same estimator
  local q, k, v = rnd{ 1, 2, 8, 3 }:requires_grad(true), rnd{ 1, 1, 8, 3 }:requires_grad(true),
                  rnd{ 1, 1, 8, 2 }:requires_grad(true)
  check.gradients(function()
    lab.seed(5)
    return (lab.attention(q, k, v, { variant = "hyper", block_size = 3, lsh_bits = 2, samples = 4, causal = true }) ^ 2):sum()
  end, { q = q, k = k, v = v }, "hyper")
  -- no hyperplane is one bucket: lsh_bits 0 and -1 are the same estimator (the same draws)
  local function one_bucket(bits)
    lab.seed(8)
    return lab.attention(q, k, v, { variant = "hyper", block_size = 3, lsh_bits = bits, samples = 4 })
  end
  check.near(ref.max_abs_diff(one_bucket(0), one_bucket(-1)), 0, 0, "hyper lsh_bits 0 is one bucket, as -1")
  check.fails(function() return lab.attention(q, k, v, { variant = "hyper", lsh_bits = -2 }) end,
    "opts.lsh_bits must be an integer >= -1 and <= 30 (got -2)", "hyper lsh_bits -2")
  check.fails(function() return lab.attention(q, k, v, { variant = "hyper", lsh_bits = 31 }) end,
    "opts.lsh_bits must be an integer >= -1 and <= 30 (got 31)", "hyper lsh_bits 31")
end

---------------------------------------------------------------------------------------------------
-- routing
---------------------------------------------------------------------------------------------------
-- the clusters of (b, h) as Lua sets: top-w rows of x by cosine with each centroid, ties to the lower index
local function clusters(x, mu, w)
  local xn = x / x:pow(2):sum(4, true):sqrt()
  local scores = xn:matmul(mu:transpose(2, 3)):totable()   -- (B, Hx, n, c) with Hx = H of mu
  local out = {}
  for b = 1, #scores do
    out[b] = {}
    for h = 1, #scores[b] do
      out[b][h] = {}
      local n, c = #scores[b][h], #scores[b][h][1]
      for cl = 1, c do
        local order = {}
        for i = 1, n do order[i] = i end
        table.sort(order, function(a, z)
          local sa, sz = scores[b][h][a][cl], scores[b][h][z][cl]
          if sa ~= sz then return sa > sz end
          return a < z
        end)
        local set = {}
        for r = 1, math.min(w, n) do set[order[r]] = true end
        out[b][h][cl] = set
      end
    end
  end
  return out
end

-- the reference: per cluster, dense softmax with the cluster's key mask; each query the mean over
-- the clusters that took it (0 if none)
local function routing_reference(q, k, v, mu, w, causal)
  local B, H, N, M, c = q:size(1), q:size(2), q:size(3), k:size(3), mu:size(2)
  local kr = ref.repeat_heads(k, H)
  local qc, kc = clusters(q, mu, w), clusters(kr, mu, w)
  local visible = causal and ref.causal(N, M, causal) or function() return true end
  local total, count
  for cl = 1, c do
    local mask = ref.mask(B, H, N, M, function(b, h, i, j) return kc[b][h][cl][j] and visible(b, h, i, j) or false end)
    local taken = ref.mask(B, H, N, 1, function(b, h, i) return qc[b][h][cl][i] or false end)
    local o = ref.attention(q, k, v, { mask = mask }) * taken
    total, count = total and total + o or o, count and count + taken or taken
  end
  return total / lab.maximum(count, lab.ones({ 1 }, "float64"))
end

for _, c in ipairs{
  { name = "self", B = 1, H = 2, Hkv = 2, N = 12, M = 12, c = 3, w = 4 },
  { name = "overlapping clusters", B = 2, H = 2, Hkv = 2, N = 8, M = 8, c = 3, w = 5 },
  { name = "causal, grouped heads", B = 1, H = 4, Hkv = 2, N = 10, M = 10, c = 2, w = 6, causal = true },
  { name = "cross", B = 1, H = 2, Hkv = 2, N = 6, M = 9, c = 3, w = 3 },
} do
  local q, k, v = rnd{ c.B, c.H, c.N, 4 }, rnd{ c.B, c.Hkv, c.M, 4 }, rnd{ c.B, c.Hkv, c.M, 3 }
  local mu = rnd{ c.H, c.c, 4 }
  local out = lab.attention(q, k, v, { variant = "routing", centroids = mu, cluster_size = c.w, causal = c.causal })
  local r = routing_reference(q, k, v, mu, c.w, c.causal)
  check.ok(ref.max_abs_diff(out, r) < 1e-12, "routing " .. c.name .. ": the mean of per-cluster masked softmax",
    tostring(ref.max_abs_diff(out, r)))
  local out32 = lab.attention(q:to("float32"), k:to("float32"), v:to("float32"),
    { variant = "routing", centroids = mu:to("float32"), cluster_size = c.w, causal = c.causal })
  check.ok(ref.max_abs_diff(out32:to("float64"), r) < 1e-5, "routing " .. c.name .. ": float32 within 1e-5")
end

do   -- one cluster holding everything is dense attention (the reference's identity case)
  local q, k, v = rnd{ 2, 2, 7, 3 }, rnd{ 2, 2, 7, 3 }, rnd{ 2, 2, 7, 2 }
  local mu = rnd{ 2, 1, 3 }
  for _, causal in ipairs{ false, true } do
    local out, w = lab.attention(q, k, v, { variant = "routing", centroids = mu, causal = causal, weights = true })
    local r, rw = lab.attention(q, k, v, { causal = causal, weights = true })
    check.ok(ref.max_abs_diff(out, r) < 1e-12, "routing, one cluster of every token, causal " .. tostring(causal) .. ": dense")
    check.ok(ref.max_abs_diff(w, rw) < 1e-12, "routing, one cluster: the map is the dense map")
  end
end

do
  local q, k, v = rnd{ 1, 2, 6, 3 }:requires_grad(true), rnd{ 1, 2, 6, 3 }:requires_grad(true),
                  rnd{ 1, 2, 6, 2 }:requires_grad(true)
  local mu = rnd{ 2, 2, 3 }
  check.gradients(function()
    return (lab.attention(q, k, v, { variant = "routing", centroids = mu, cluster_size = 4, causal = true }) ^ 2):sum()
  end, { q = q, k = k, v = v }, "routing")
  check.fails(function() return lab.attention(q, k, v, { variant = "routing" }) end,
    "variant 'routing' needs centroids of shape (H, c, d) = (2, c, 3)", "routing without centroids")
  check.fails(function() return lab.attention(q, k, v, { variant = "routing", centroids = rnd{ 2, 2, 4 } }) end,
    "(got {2,2,4})", "routing with centroids of the wrong width")
  check.fails(function() return lab.attention(q, k, v, { variant = "routing", centroids = mu, bias = rnd{ 6, 6 } }) end,
    "variant 'routing' takes no bias or mask", "routing with a bias")
end

-- the centroid update: decay 0 is one spherical k-means step (assign by largest cosine, sum the
-- normalised rows, normalise); a cluster nobody chose keeps its centroid; decay 1 changes nothing
do
  local q, k = rnd{ 1, 1, 9, 2 }, rnd{ 1, 1, 9, 2 }
  local mu = lab.tensor({ { { 1, 0 }, { 0, 1 }, { -1e-3, -1 } } }, "float64")
  mu = mu / mu:pow(2):sum(3, true):sqrt()
  local new = lab.attention.routing_update(mu, q, k, 0)
  local rows = lab.cat({ q, k }, 3):reshape{ 18, 2 }
  rows = rows / rows:pow(2):sum(2, true):sqrt()
  local sc, mut, sums, hits = rows:matmul(mu:reshape{ 3, 2 }:t()):totable(), mu:reshape{ 3, 2 }:totable(), {}, {}
  for cl = 1, 3 do sums[cl], hits[cl] = { 0, 0 }, 0 end
  local rt = rows:totable()
  for r = 1, 18 do
    local best = 1
    for cl = 2, 3 do if sc[r][cl] > sc[r][best] then best = cl end end
    hits[best] = hits[best] + 1
    sums[best][1], sums[best][2] = sums[best][1] + rt[r][1], sums[best][2] + rt[r][2]
  end
  local expect = {}
  for cl = 1, 3 do
    local n = math.sqrt(sums[cl][1] ^ 2 + sums[cl][2] ^ 2)
    expect[cl] = hits[cl] > 0 and { sums[cl][1] / n, sums[cl][2] / n } or mut[cl]
  end
  check.ok(ref.max_abs_diff(new:reshape{ 3, 2 }, lab.tensor(expect, "float64")) < 1e-12,
    "routing_update with decay 0 is one spherical k-means step")
  check.ok(ref.max_abs_diff(lab.attention.routing_update(mu, q, k, 1), mu) == 0, "routing_update with decay 1 keeps the centroids")
  check.fails(function() return lab.attention.routing_update(mu, q, k, 2) end, "attention.routing_update: decay must be a number in [0, 1] (got 2)", "routing_update decay 2")
end

os.exit(check.report(), true)   -- true: close the Lua state, so every tensor is freed (quiet leak checks)
