-- test_attention_agent.lua -- the "agent" variant (Agent attention, Han et al. 2023): forward against
-- a float64 reference written here on plain Lua numbers (pooling, then two explicit softmaxes), the
-- associativity identity (map = softmax(QA^T) softmax(AK^T) times V gives the output), n = 1 (every
-- row the same), gradients of q, k, v and given agents, float32, refusals.
local check = dofile("tests/lua/check.lua")("attention_agent")
local lab = lab or require "attnlab"

lab.seed(13)
local function rnd(shape) return lab.randn(shape, "float64") end
local function max_abs_diff(a, b) return (a - b):abs():max():item() end

-- rows of softmax(scale X Y^T) Z for tables X (r x d), Y (c x d), Z (c x e)
local function softmax_read(X, Y, Z, scale)
  local out = {}
  for i = 1, #X do
    local w, top, z = {}, -math.huge, 0
    for j = 1, #Y do
      local s = 0
      for t = 1, #X[i] do s = s + X[i][t] * Y[j][t] end
      w[j] = scale * s
      top = math.max(top, w[j])
    end
    for j = 1, #Y do w[j] = math.exp(w[j] - top); z = z + w[j] end
    local row = {}
    for e = 1, #Z[1] do
      row[e] = 0
      for j = 1, #Y do row[e] = row[e] + w[j] / z * Z[j][e] end
    end
    out[i] = row
  end
  return out
end

-- agents: a table (B, H, n, d) or the number n to pool from q
local function reference(q, k, v, agents, scale)
  local Q, K, V = q:totable(), k:totable(), v:totable()
  local H, Hkv, N = q:size(2), k:size(2), q:size(3)
  local out = {}
  for b = 1, #Q do
    out[b] = {}
    for h = 1, H do
      local hk = math.floor((h - 1) * Hkv / H) + 1
      local A
      if type(agents) == "number" then
        A = {}
        for a = 1, agents do   -- adaptive average pooling, PyTorch's bins
          local lo, hi = math.floor((a - 1) * N / agents) + 1, math.ceil(a * N / agents)
          local row = {}
          for t = 1, #Q[b][h][1] do
            local s = 0
            for i = lo, hi do s = s + Q[b][h][i][t] end
            row[t] = s / (hi - lo + 1)
          end
          A[a] = row
        end
      else
        A = agents[b][h]
      end
      local VA = softmax_read(A, K[b][hk], V[b][hk], scale)
      out[b][h] = softmax_read(Q[b][h], A, VA, scale)
    end
  end
  return lab.tensor(out, "float64")
end

local function repeat_heads(t, H)
  local s = t:shape()
  if s[2] == H then return t end
  return t:unsqueeze(3):expand{ s[1], s[2], H / s[2], s[3], s[4] }:reshape{ s[1], H, s[3], s[4] }
end

for _, case in ipairs{
  { name = "self, pooled agents", q = { 2, 2, 7, 3 }, k = { 2, 2, 7, 3 }, dv = 2, count = 3 },
  { name = "cross, pooled agents", q = { 1, 2, 5, 3 }, k = { 1, 2, 8, 3 }, dv = 4, count = 2 },
  { name = "given agents, grouped heads", q = { 2, 4, 6, 3 }, k = { 2, 2, 6, 3 }, dv = 2, agents = { 1, 4, 3, 3 } },
} do
  local q, k = rnd(case.q), rnd(case.k)
  local v = rnd{ case.k[1], case.k[2], case.k[3], case.dv }
  local agents = case.agents and rnd(case.agents)
  local opts = { variant = "agent", agent_count = case.count, agents = agents, weights = true }
  local out, w = lab.attention(q, k, v, opts)
  local ref = reference(q, k, v, agents and agents:expand{ case.q[1], case.q[2], case.agents[3], case.q[4] }:totable() or case.count,
    1 / math.sqrt(case.q[4]))
  check.ok(max_abs_diff(out, ref) < 1e-12, case.name .. ": output equals the two-softmax loop", tostring(max_abs_diff(out, ref)))
  check.ok(max_abs_diff(w:matmul(repeat_heads(v, case.q[2])), out) < 1e-12, case.name .. ": explicit N x M map times V is the output")
  check.ok((w:sum(4) - 1):abs():max():item() < 1e-12, case.name .. ": map rows sum to 1")
  local R = rnd(out:shape())
  local inputs = { q = q, k = k, v = v, agents = agents }
  for _, x in pairs(inputs) do x:requires_grad(true) end
  check.gradients(function()
    return (lab.attention(q, k, v, { variant = "agent", agent_count = case.count, agents = agents }) * R):sum()
  end, inputs, case.name)
end

-- one agent: every output row is the same vector V_A
do
  local q, k, v = rnd{ 1, 2, 6, 3 }, rnd{ 1, 2, 6, 3 }, rnd{ 1, 2, 6, 2 }
  local out = lab.attention(q, k, v, { variant = "agent", agent_count = 1 })
  check.ok(max_abs_diff(out, out:narrow(3, 1, 1):expand{ 1, 2, 6, 2 }) < 1e-14, "n = 1: every row equals V_A")
  -- n = N agents pooled from q are q itself
  local a = lab.attention(q, k, v, { variant = "agent", agent_count = 6 })
  local b = lab.attention(q, k, v, { variant = "agent", agents = q })
  check.ok(max_abs_diff(a, b) < 1e-14, "agent_count = N pools q to itself")
end

-- float32 against float64
do
  local q, k, v = rnd{ 2, 2, 16, 8 }, rnd{ 2, 2, 16, 8 }, rnd{ 2, 2, 16, 8 }
  local o64 = lab.attention(q, k, v, { variant = "agent", agent_count = 4 })
  local o32 = lab.attention(q:float(), k:float(), v:float(), { variant = "agent", agent_count = 4 })
  check.ok(o32:dtype() == "float32" and max_abs_diff(o32:double(), o64) < 1e-5, "float32 matches float64 within 1e-5")
end

-- refusals, with the reason
do
  local q, k, v = rnd{ 1, 2, 5, 3 }, rnd{ 1, 2, 5, 3 }, rnd{ 1, 2, 5, 3 }
  check.fails(function() lab.attention(q, k, v, { variant = "agent" }) end,
    "variant 'agent' needs opts.agents (B, H, n, d) or opts.agent_count in 1..N = 5 (got agent_count 0)")
  check.fails(function() lab.attention(q, k, v, { variant = "agent", agent_count = 6 }) end, "(got agent_count 6)")
  check.fails(function() lab.attention(q, k, v, { variant = "agent", agents = rnd{ 1, 2, 3, 4 } }) end,
    "needs agents of shape (B, H, n, d) with d = 3, n >= 1 (got {1,2,3,4})")
  check.fails(function() lab.attention(q, k, v, { variant = "agent", agents = rnd{ 3, 2, 3, 3 } }) end,
    "needs agents as a float tensor broadcastable to (B, H, n, d) = {1,2,3,3} (got float64 {3,2,3,3})")
  check.fails(function() lab.attention(q, k, v, { variant = "agent", agents = q, agent_count = 2 }) end, "not both")
  check.fails(function() lab.attention(q, k, v, { variant = "agent", agent_count = 2, causal = true }) end,
    "variant 'agent' has no causal form")
  check.fails(function() lab.attention(q, k, v, { variant = "agent", agent_count = 2.5 }) end,
    "opts.agent_count must be an integer >= 1 (got 2.5)")
end

os.exit(check.report(), true)
