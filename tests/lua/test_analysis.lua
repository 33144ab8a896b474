-- test_analysis.lua -- lab.analysis on maps with known answers: uniform rows have entropy log M,
-- one-hot rows 0; the sink mass of a map that puts everything on token 1 is 1; the identity
-- interpolation at alpha = 1 is the identity; apply_map with the model's own map gives the
-- attention output.
local check = dofile("tests/lua/check.lua")("analysis")
local lab = lab or require "attnlab"
local A = lab.analysis

local B, H, N, M = 2, 3, 4, 5
local uniform = lab.full({ B, H, N, M }, 1 / M, "float64")
local ent = A.entropy(uniform)
check.ok(ent:dim() == 3 and ent:size(3) == N, "entropy is (B, H, N)")
check.near(ent:max():item(), math.log(M), 1e-12, "uniform rows: entropy log M")
check.near(ent:min():item(), math.log(M), 1e-12, "every uniform row")

local onehot = lab.zeros({ B, H, N, M }, "float64")
for b = 1, B do for h = 1, H do for i = 1, N do onehot:set(b, h, i, 1, 1) end end end
check.near(A.entropy(onehot):abs():max():item(), 0, 0, "one-hot rows: entropy 0 (no NaN from 0 log 0)")
local he = A.head_entropy(uniform)
check.ok(he:dim() == 1 and he:size(1) == H, "head_entropy is (H)")
check.near(A.sink_mass(onehot):min():item(), 1, 1e-12, "all mass on token 1: sink mass 1")
check.near(A.sink_mass(uniform, 3):max():item(), 1 / M, 1e-12, "uniform: mass 1/M on any token")

local sq = lab.full({ 1, 1, 3, 3 }, 1 / 3, "float64")
local I = A.interpolate_identity(sq, 1)
check.near((I:reshape{ 3, 3 } - lab.eye(3, "float64")):abs():max():item(), 0, 1e-15, "alpha = 1 gives the identity")
local half = A.interpolate_identity(sq, 0.5)
check.near(half:sum(4):max():item(), 1, 1e-12, "interpolated rows still sum to 1")

-- apply_map reproduces attention from its own map, and is differentiable
local q, k, v = lab.randn({ B, H, N, 4 }, "float64"), lab.randn({ B, H, M, 4 }, "float64"), lab.randn({ B, H, M, 3 }, "float64")
local out, w = lab.attention(q, k, v, { weights = true })
check.near((A.apply_map(w, v) - out):abs():max():item(), 0, 1e-12, "apply_map(map, v) equals the attention output")
local vv = v:clone():requires_grad(true)
A.apply_map(w, vv):sum():backward()
check.ok(vv.grad ~= nil and vv.grad:shape_string() == v:shape_string(), "apply_map is differentiable")

check.fails(function() A.entropy(lab.zeros{ 2, 2 }) end, "entropy: expects a (B, H, N, M) attention map")
check.fails(function() A.sink_mass(uniform, 9) end, "sink_mass: key position 9 is out of range")
check.fails(function() A.interpolate_identity(uniform, 0.5) end, "needs a square map")

-- a small causal model to probe: two blocks, so that the hooks find two attention layers
lab.seed(4)
local model = lab.nn.Sequential(lab.nn.TransformerBlock{ dim = 8, heads = 2, causal = true },
                                lab.nn.TransformerBlock{ dim = 8, heads = 2, causal = true })
local layers = A.attention_modules(model)
check.ok(#layers == 2 and layers[1].module.name == "MultiHeadAttention", "attention_modules finds both layers",
  tostring(#layers))
local x = lab.randn{ 2, 6, 8 }
local target = lab.randn{ 2, 6, 8 }
local function loss() return lab.mse(model(x), target) end

-- map_hook: the identity hook changes nothing; alpha = 1 toward the identity makes each query
-- return its own value (SoftPAG), i.e. the layer equals out-projection of v
local attn = layers[1].module
local base = model(x)
attn.map_hook = function(map) return map end
check.near((model(x) - base):abs():max():item(), 0, 1e-5, "map_hook = identity function: same output")
local function grads()
  model:zero_grad()
  loss():backward()
  local g = {}
  for i, p in ipairs(model:parameters()) do g[i] = p.grad:clone() end
  return g
end
local with_hook = grads()
attn.map_hook = nil
local without = grads()
local worst = 0
for i = 1, #without do worst = math.max(worst, (with_hook[i] - without[i]):abs():max():item()) end
check.ok(worst < 1e-5, "map_hook path: the same parameter gradients as the kernel", tostring(worst))
model:zero_grad()
attn.map_hook = function(map) return A.interpolate_identity(map, 1) end
attn.record = true
local h = attn(x)
local v_only = attn.o(attn.v(x))
check.near((h - v_only):abs():max():item(), 0, 1e-5, "interpolate_identity(map, 1): each query returns its own value")
check.near((attn.weights:narrow(2, 1, 1):reshape{ 2, 6, 6 } - lab.eye(6):reshape{ 1, 6, 6 }):abs():max():item(), 0, 0,
  "the recorded map is the hooked one")
attn.map_hook, attn.record = nil, false
check.fails(function() attn.map_hook = function() return 1 end; attn(x) end, "map_hook must return a (B, H, N, M) tensor")
attn.map_hook = nil

-- ACT: a causal map with a sink at key 3 (beyond BOS at key 1): calibration removes it, keeps BOS,
-- keeps rows summing to 1 and non-negative
local P = {}
for i = 1, 6 do
  P[i] = {}
  for j = 1, 6 do P[i][j] = 0 end
  if i < 3 then for j = 1, i do P[i][j] = 1 / i end
  else P[i][1], P[i][3] = 0.3, 0.5; for j = 2, i do if j ~= 3 then P[i][j] = P[i][j] + 0.2 / (i - 2) end end end
end
local causal_map = lab.tensor({ { P } }, "float64")
local scores = A.sink_scores(causal_map)
check.ok(scores:get(1, 1, 3) > 0.4 and scores:get(1, 1, 1) > 0.3, "sink_scores: keys 1 and 3 stand out")
local cal, sinks = A.calibrate_sinks(causal_map, { tau = 0.3, beta = 0 })
check.ok(sinks:get(1, 1, 1, 1) == 0 and sinks:get(1, 1, 1, 3) == 1, "the first sink (BOS) is kept, key 3 is a sink")
check.near((cal:sum(4) - 1):abs():max():item(), 0, 1e-12, "calibrated rows sum to 1")
check.ok(cal:min():item() >= 0, "and are non-negative")
check.near(cal:narrow(4, 3, 1):abs():max():item(), 0, 0, "beta = 0: no attention left on the sink")
local half_cal = A.calibrate_sinks(causal_map, { tau = 0.3, beta = 0.5 })
check.near(half_cal:get(1, 1, 6, 3), 0.25, 1e-12, "beta = 0.5 halves the sink's attention")

-- retrieval score: a head that always attends to the needle token it copies scores 1, one that
-- attends elsewhere 0
local prompt = { 7, 7, 11, 12, 13, 7, 7 }            -- the needle is positions 3..5
local generated = { 11, 12, 13 }
local maps = lab.zeros({ 3, 2, 7 }, "float64")
for t = 1, 3 do maps:set(t, 1, 2 + t, 1) maps:set(t, 2, 1, 1) end
local score = A.retrieval_score(maps, prompt, { 3, 5 }, generated)
check.near(score:get(1), 1, 1e-12, "retrieval_score: a copying head scores 1")
check.near(score:get(2), 0, 0, "a head on the first token scores 0")
check.fails(function() A.retrieval_score(maps, { 1, 2 }, { 3, 5 }, generated) end, "prompt must list the 7 prompt tokens")

-- Attention AT: the perturbation has norm xi in every row that has a gradient (the first query of a
-- causal layer sees one key: its softmax is constant, its gradient 0), and raises the loss
local clean = loss():item()
local adv, r = A.attention_at(model, loss, { xi = 0.5 })
check.ok(#r == 2, "one perturbation per attention layer")
local norms = (r[1] * r[1]):sum(4):sqrt()
check.near(norms:max():item(), 0.5, 1e-4, "perturbation rows have norm xi (max)")
check.near(norms:narrow(3, 2, 5):min():item(), 0.5, 1e-4, "perturbation rows have norm xi (min over rows 2..6)")
check.near(norms:narrow(3, 1, 1):max():item(), 0, 0, "the first causal row is not perturbed")
check.ok(adv:item() > clean, "the perturbed loss is above the clean loss", string.format("%.6f vs %.6f", adv:item(), clean))
local with_grad = 0
for _, p in ipairs(model:parameters()) do if p.grad ~= nil then with_grad = with_grad + 1 end end
check.ok(with_grad == 0, "attention_at leaves no parameter gradients behind", with_grad .. " parameters have one")
adv:backward()
check.ok(model:parameters()[1].grad ~= nil, "the perturbed loss trains the model")
check.ok(attn.logit_extra == nil and attn.logit_probe == nil, "attention_at removes its hooks")

os.exit(check.report(), true)
