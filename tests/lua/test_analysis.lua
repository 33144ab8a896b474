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

os.exit(check.report(), true)
