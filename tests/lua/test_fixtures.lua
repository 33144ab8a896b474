-- test_fixtures.lua -- attnlab against PyTorch: forward values and gradients of a representative set
-- of ops, one Linear / MLP, manual scaled dot-product attention, Adam / AdamW / SGD steps and
-- clip_grad_norm, from tests/fixtures/torch_fixtures.safetensors (made by
-- tests/fixtures/make_fixtures.py; see there for the names and how to rerun it).
--
-- Tolerance: max|attnlab - torch| / max|torch| per tensor, below 1e-10 for float64 cases and 1e-5 for
-- float32 ones ("_f32").  Class ids in the file are 0-based (PyTorch's); attnlab's are 1-based.
--
-- Run: ./build/attnlab tests/lua/test_fixtures.lua
local lab = rawget(_G, "lab") or require "attnlab"
local check = dofile("tests/lua/check.lua")("fixtures")

local PATH = "tests/fixtures/torch_fixtures.safetensors"
local F64 = "float64"
local FX = dofile("tests/lua/fixtures.lua")(check, PATH)
local TOL64, TOL32 = FX.TOL64, FX.TOL32
local meta, get, has, compare = FX.meta, FX.get, FX.has, FX.compare
local json = lab.json

-- Runs one case: the named inputs become leaves (fresh copies), fn(inputs...) gives y, compared
-- with "<case>.y"; then the backward of sum(y * gy) (or of y itself when scalar) gives the grads,
-- compared with "<case>.d<name>".  consts are passed after the leaves.
local function case(prefix, names, fn, consts)
  local inputs = {}
  for i, n in ipairs(names) do inputs[i] = get(prefix .. "." .. n):clone():requires_grad(true) end
  local args = {}
  for i = 1, #inputs do args[i] = inputs[i] end
  for _, c in ipairs(consts or {}) do args[#args + 1] = c end
  local okf, y = pcall(fn, unpack(args, 1, #names + #(consts or {})))
  if not check.ok(okf, prefix .. ": forward", not okf and tostring(y) or nil) then return end
  local want = get(prefix .. ".y")
  if y:dim() == 0 then y = y:reshape{ 1 } end
  compare(prefix .. ": y", y, want)
  local okb, err = pcall(function()
    if has(prefix .. ".gy") then (y * get(prefix .. ".gy")):sum():backward()
    else y:sum():backward() end
  end)
  if not check.ok(okb, prefix .. ": backward", not okb and tostring(err) or nil) then return end
  for i, n in ipairs(names) do
    local g = inputs[i].grad
    if check.ok(g ~= nil, prefix .. ": d" .. n .. " present") then compare(prefix .. ": d" .. n, g, get(prefix .. ".d" .. n)) end
  end
end

---------------------------------------------------------------------------------------------------
-- ops
---------------------------------------------------------------------------------------------------
local function mm(a, b) return a:matmul(b) end
case("matmul", { "a", "b" }, mm)
case("matmul_bcast", { "a", "b" }, mm)
case("matmul_fold", { "a", "b" }, mm)
case("matmul_f32", { "a", "b" }, mm)

case("softmax", { "x" }, function(x) return x:softmax(-1) end)
case("log_softmax", { "x" }, function(x) return x:log_softmax(2) end)
case("logsumexp", { "x" }, function(x) return x:logsumexp(-1) end)
case("softmax_f32", { "x" }, function(x) return x:softmax(-1) end)

local ln_eps = tonumber(meta["layer_norm.eps"])
case("layer_norm", { "x", "w", "b" }, function(x, w, b) return lab.layer_norm(x, w, b, ln_eps) end)
case("layer_norm_f32", { "x", "w", "b" }, function(x, w, b) return lab.layer_norm(x, w, b, ln_eps) end)
case("gelu", { "x" }, function(x) return x:gelu() end)
case("gelu_f32", { "x" }, function(x) return x:gelu() end)

-- cross_entropy: ids 0-based in the file
local target = get("cross_entropy.target") + 1
check.ok(target:dtype() == "int64", "cross_entropy: ids + 1 stay int64")
local ignore = tonumber(meta["cross_entropy.ignore_index"]) + 1
case("cross_entropy", { "logits" }, function(l, t) return lab.cross_entropy(l, t, { ignore = ignore }) end, { target })
case("cross_entropy_all", { "logits" }, function(l, t) return lab.cross_entropy(l, t) end, { target })
case("cross_entropy_f32", { "logits" }, function(l, t) return lab.cross_entropy(l, t, { ignore = ignore }) end, { target })
case("mse", { "pred", "target" }, function(p, t) return lab.mse(p, t) end)

---------------------------------------------------------------------------------------------------
-- attention (PyTorch side: softmax(q k^T * scale + bias, masked) v written out by hand)
---------------------------------------------------------------------------------------------------
case("attention_causal", { "q", "k", "v", "bias" }, function(q, k, v, b)
  return lab.attention(q, k, v, { causal = true, bias = b })
end)
case("attention_cross", { "q", "k", "v", "bias" }, function(q, k, v, b, m)
  return lab.attention(q, k, v, { bias = b, mask = m })
end, { get("attention_cross.mask") })
case("attention_bottom_right", { "q", "k", "v" }, function(q, k, v)
  return lab.attention(q, k, v, { causal = "bottom_right", scale = 0.3 })
end)
case("attention_gqa", { "q", "k", "v" }, function(q, k, v)
  return lab.attention(q, k, v, { causal = "top_left" })
end)
case("attention_f32", { "q", "k", "v", "bias" }, function(q, k, v, b)
  return lab.attention(q, k, v, { causal = true, bias = b })
end)
case("attention_long_f32", { "q", "k", "v" }, function(q, k, v)
  return lab.attention(q, k, v, { causal = "bottom_right" })
end)

---------------------------------------------------------------------------------------------------
-- Linear, MLP
---------------------------------------------------------------------------------------------------
case("linear", { "x", "w", "b" }, function(x, w, b) return lab.linear(x, w, b) end)
case("linear_nobias", { "x", "w" }, function(x, w) return lab.linear(x, w) end)
local mlp_names = { "x", "fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias" }
case("mlp", mlp_names, function(x, w1, b1, w2, b2)
  return lab.linear(lab.linear(x, w1, b1):gelu(), w2, b2)
end)
case("mlp_f32", mlp_names, function(x, w1, b1, w2, b2)
  return lab.linear(lab.linear(x, w1, b1):gelu(), w2, b2)
end)

-- the same MLP through lab.nn.MLP (float32 parameters), its state loaded from the fixture
do
  local m = lab.nn.MLP{ dims = { 6, 8, 3 }, activation = "gelu" }
  m:load_state_dict{ ["fc1.weight"] = get("mlp_f32.fc1_weight"), ["fc1.bias"] = get("mlp_f32.fc1_bias"),
                     ["fc2.weight"] = get("mlp_f32.fc2_weight"), ["fc2.bias"] = get("mlp_f32.fc2_bias") }
  local x = get("mlp_f32.x"):clone():requires_grad(true)
  local y = m(x)
  compare("nn.MLP: y", y, get("mlp_f32.y"))
  ;(y * get("mlp_f32.gy")):sum():backward()
  compare("nn.MLP: dx", x.grad, get("mlp_f32.dx"))
  for _, pair in ipairs(m:named_parameters()) do
    local name = pair[1]:gsub("%.", "_")
    compare("nn.MLP: d" .. pair[1], pair[2].grad, get("mlp_f32.d" .. name))
  end
  -- and nn.Linear
  local lin = lab.nn.Linear(4, 5)
  lin:load_state_dict{ weight = get("linear.w"), bias = get("linear.b") }
  compare("nn.Linear: y (float32 module, float64 reference)", lin(get("linear.x"):to("float32")), get("linear.y"):to("float32"), TOL32)
end

---------------------------------------------------------------------------------------------------
-- optimisers: three steps from p0 with grads g1, g2, g3
---------------------------------------------------------------------------------------------------
local steps = tonumber(meta["optim.steps"])
local function optimiser_case(name, suffix, make)
  local hyper = json.decode(meta[name .. ".hyper"])
  local case_name = name .. suffix
  local p = get(case_name .. ".p0"):clone():requires_grad(true)
  local opt = make({ p }, hyper)
  for s = 1, steps do
    p:set_grad(get(case_name .. ".g" .. s))
    opt:step()
    compare(string.format("%s step %d", case_name, s), p:detach(), get(case_name .. ".p" .. s))
  end
end
for _, suffix in ipairs{ "", "_f32" } do
  optimiser_case("adam", suffix, function(ps, h)
    return lab.optim.Adam(ps, { lr = h.lr, betas = h.betas, eps = h.eps, weight_decay = h.weight_decay })
  end)
  optimiser_case("adamw", suffix, function(ps, h)
    return lab.optim.AdamW(ps, { lr = h.lr, betas = h.betas, eps = h.eps, weight_decay = h.weight_decay })
  end)
  optimiser_case("sgd", suffix, function(ps, h)
    return lab.optim.SGD(ps, { lr = h.lr, momentum = h.momentum, weight_decay = h.weight_decay })
  end)
end

---------------------------------------------------------------------------------------------------
-- clip_grad_norm
---------------------------------------------------------------------------------------------------
for _, c in ipairs{ "clip", "clip_noop" } do
  local p1 = lab.zeros({ 3, 4 }, F64):requires_grad(true)
  local p2 = lab.zeros({ 5 }, F64):requires_grad(true)
  p1:set_grad(get(c .. ".g1"):clone())
  p2:set_grad(get(c .. ".g2"):clone())
  local norm = lab.optim.clip_grad_norm({ p1, p2 }, tonumber(meta[c .. ".max_norm"]))
  local want = get(c .. ".norm"):item()
  check.value(math.abs(norm - want) <= TOL64 * want, c .. ": returned norm", string.format("%.17g vs %.17g", norm, want))
  compare(c .. ": grad 1", p1.grad, get(c .. ".g1_out"))
  compare(c .. ": grad 2", p2.grad, get(c .. ".g2_out"))
end

-- every tensor in the file was checked
FX.all_used()

os.exit(check.report(), true)
