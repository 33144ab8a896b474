-- test_errors.lua -- what a user reads when a call goes wrong (issue 16): the error names the
-- function or module the user called and points at the user's line, never at an al_ function of
-- the core or at a line inside the library.  Scalar arguments are checked before the FFI sees them;
-- every options table rejects an unknown key, naming the valid ones; an error inside a module
-- names the module called, with the shapes.  (tests/lua/test_fuzz.lua applies the same rule to
-- random misuse.)
--   ./build/attnlab tests/lua/test_errors.lua
local check = dofile("tests/lua/check.lua")("errors")
local lab = lab or require "attnlab"
local nn = lab.nn

local HERE = debug.getinfo(1, "S").short_src
-- fn must fail with exactly "<this file>:<the line of the call>: " .. want
local function fails_at_line(fn, want, what)
  local line = debug.getinfo(2, "l").currentline
  local ok, err = pcall(fn)
  local expect = HERE .. ":" .. line .. ": " .. want
  return check.ok(not ok and err == expect, what or want, ok and "no error" or "got " .. tostring(err) .. "\n   want " .. expect)
end
-- fn must fail with a message starting "<this file>:<line>: " .. prefix, and no al_ symbol in it
local function fails_with_prefix(fn, prefix, what)
  local ok, err = pcall(fn)
  local good = not ok and type(err) == "string" and err:match("^" .. HERE:gsub("%p", "%%%0") .. ":%d+: (.*)$")
  good = good and good:sub(1, #prefix) == prefix and not err:find("%f[%w_]al_[%w_]")
  return check.ok(good, what or prefix, ok and "no error" or tostring(err))
end

local t = lab.randn{ 2, 3 }

---------------------------------------------------------------------------------------------------
-- 1. scalar arguments: checked before the FFI, named as the call, at the caller's line
---------------------------------------------------------------------------------------------------
-- the examples of issue 16 (they failed inside the FFI: "bad argument #2 to 'al_fill_' (cannot
-- convert 'table' to 'double')", at a line of init.lua)
fails_at_line(function() t:fill_({}) end, "fill_: value must be a number (got table)")
fails_at_line(function() t:fill_() end, "fill_: value must be a number (got nil)")
fails_at_line(function() t:fill_(t) end, "fill_: value must be a number (got tensor)")
fails_at_line(function() t:mul_("2") end, 'mul_: factor must be a number (got "2")')
fails_at_line(function() t:add_(t, {}) end, "add_: alpha must be a number (got table)")
fails_at_line(function() t:add_({}) end, "add_: argument 'src' must be a tensor (got table)")
fails_at_line(function() t:clamp({}, 1) end, "clamp: lo must be a number (got table)")
fails_at_line(function() t:clamp(0, 0 / 0) end, "clamp: hi must be a number other than NaN (got nan)")
fails_at_line(function() lab.clamp(t, "0") end, 'clamp: lo must be a number (got "0")')
fails_at_line(function() lab.dropout(t, {}) end, "dropout: p must be a number in [0, 1) (got table)")
fails_at_line(function() lab.dropout(t, 0 / 0) end, "dropout: p must be a number in [0, 1) (got nan)")
fails_at_line(function() lab.dropout(lab.ones({ 3 }, "int64"), 0.5) end, "dropout: x must be a float tensor (got int64 of shape {3})")
fails_at_line(function() lab.layer_norm(t, nil, nil, "1e-5") end, 'layer_norm: eps must be a finite number >= 0 (got "1e-5")')
fails_at_line(function() lab.layer_norm(t, nil, nil, -1) end, "layer_norm: eps must be a finite number >= 0 (got -1)")
fails_at_line(function() t:pow(t) end, "pow: exponent must be a number (got tensor)")
fails_at_line(function() lab.full({ 2 }, nil) end, "full: value must be a number (got nil)")
fails_at_line(function() lab.arange(0, {}) end, "arange: end must be a number (got table)")
fails_at_line(function() t:set(1, 1, "x") end, 'set: the value (last argument) must be a number (got "x")')
fails_at_line(function() lab.seed(-1) end, "seed: seed must be an integer >= 0 (got -1)")
fails_at_line(function() lab.set_num_threads(0) end, "set_num_threads: n must be an integer >= 1 (got 0)")
fails_at_line(function() lab.set_memory_limit(0 / 0) end, "set_memory_limit: bytes must be a number in (0, 4.61169e+18] (got nan)")
fails_at_line(function() lab.attention.set_map_limit(-1) end, "attention.set_map_limit: bytes must be a number in [0, 4.61169e+18] (got -1)")
fails_at_line(function() lab.set_rng_state{ {}, 1 } end, "set_rng_state: the seed must be an integer >= 0 or a string of digits (got table)")
fails_at_line(function() lab.attention.routing_update(lab.ones{ 1, 1, 2 }, lab.ones{ 1, 1, 2, 2 }, lab.ones{ 1, 1, 2, 2 }, "x") end,
  'attention.routing_update: decay must be a number in [0, 1] (got "x")')
-- the values these functions did take keep working, NaN where it is a fair value
check.ok(t:clone():fill_(0 / 0):sum():item() ~= t:clone():fill_(0 / 0):sum():item(), "fill_(NaN) still fills with NaN")
check.ok(t:clone():mul_(2):sum():item() == (t * 2):sum():item(), "mul_(2) still doubles")
check.ok(t:clone():add_(t, 2):sum():item() == (t * 3):sum():item(), "add_(t, 2) still adds 2 t")
check.ok(t:clamp(nil, 0):max():item() <= 0 and t:clamp(-math.huge, math.huge):sum():item() == t:sum():item(),
  "clamp with one side open, and with infinite bounds")
check.ok(lab.dropout(t, 0.5, false):sum():item() == t:sum():item(), "dropout(t, 0.5, false) is the identity")

-- the optimisers, the viz stream and the analysis helpers take the same care
local p = lab.param(lab.randn{ 2 })
fails_at_line(function() lab.optim.SGD({ p }, { lr = 0 / 0 }) end, "SGD: option lr must be a finite number >= 0 (got nan)")
fails_at_line(function() lab.optim.SGD({ p }, { nesterov = "yes" }) end, 'SGD: option nesterov must be true or false (got "yes")')
fails_at_line(function() lab.optim.Adam({ p }, { betas = { 0.9, 1 } }) end, "Adam: betas[2] must be a number in [0, 1) (got 1)")
fails_at_line(function() lab.optim.clip_grad_norm({ p }, "1") end, 'clip_grad_norm: max_norm must be a number > 0 (got "1")')
fails_at_line(function() lab.optim.SGD({ p }):load_state_dict(3) end,
  "load_state_dict: expects an optimiser state {tensors = {...}, numbers = {...}} (got number)")
fails_at_line(function() lab.analysis.interpolate_identity(lab.ones{ 1, 1, 2, 2 }, "0.5") end,
  'interpolate_identity: alpha must be a finite number (got "0.5")')

---------------------------------------------------------------------------------------------------
-- 2. an options table rejects a key it does not know, naming the valid ones
---------------------------------------------------------------------------------------------------
local q = lab.randn{ 1, 2, 3, 4 }
fails_with_prefix(function() lab.attention(q, q, q, { casual = true }) end,
  "attention: unknown option 'casual' (valid: variant, causal, scale, bias, mask, weights; the options of variant 'softmax': kernel)")
fails_with_prefix(function() lab.attention(q, q, q, { variant = "softmax", wieghts = true, sacle = 2 }) end,
  "attention: unknown options 'sacle', 'wieghts' (valid: variant, causal,")
-- every option a variant's descriptor lists is taken by that variant (none is refused as unknown)
for _, name in ipairs(lab.attention.variants()) do
  for _, opt in ipairs(lab.attention.describe(name).options) do
    local ok, err = pcall(lab.attention, q, q, q, { variant = name, [opt.name] = 1 })
    check.ok(ok or not tostring(err):find("unknown option", 1, true), name .. " takes its option " .. opt.name, tostring(err))
  end
end
-- 0 meant "the default" to the core: a 0 given is refused rather than silently replaced
fails_at_line(function() lab.attention(q, q, q, { scale = 0 }) end,
  "attention: opts.scale must not be 0 (leave it out for the default, 1/sqrt(d))")
fails_at_line(function() lab.attention(q, q, q, { variant = "lsa", norm = 0 }) end, "attention: opts.norm must be a finite number > 0 (got 0)")
fails_at_line(function() lab.attention(q, q, q, { scale = {} }) end, "attention: opts.scale must be a finite number (got table)")
check.ok((lab.attention(q, q, q, { scale = 1 }) - lab.attention(q * 2, q, q)):abs():max():item() < 1e-6,
  "attention's scale still scales the logits (scale 1 = the default 1/sqrt(4) on q * 2)")
fails_with_prefix(function() lab.cross_entropy(lab.randn{ 2, 3 }, lab.tensor({ 1, 2 }, "int64"), { ignored = 0 }) end,
  "cross_entropy: unknown option 'ignored' (valid: ignore)")
fails_with_prefix(function() lab.analysis.calibrate_sinks(lab.ones{ 1, 1, 2, 2 } / 2, { t = 1 }) end,
  "calibrate_sinks: unknown option 't' (valid: tau, beta)")
fails_with_prefix(function() lab.analysis.attention_at(nn.Linear(2, 2), function() end, { epsilon = 1 }) end,
  "attention_at: unknown option 'epsilon' (valid: xi)")
fails_with_prefix(function() lab.viz.set_rate{ intervall = 1 } end, "viz.set_rate: unknown option 'intervall' (valid: interval, every)")
fails_with_prefix(function() lab.viz.attention("A", lab.eye(2), { heads = 1 }) end,
  "viz.attention: unknown option 'heads' (valid: batch, layer, head, tokens, q, k, force, every, interval)")
fails_with_prefix(function() lab.viz.matrix("W", lab.eye(2), { step = 1 }) end,
  "viz.matrix: unknown option 'step' (valid: layer, head, force, every, interval)")
fails_with_prefix(function() lab.viz.image("I", lab.ones{ 2, 2 }, { point = 1 }) end,
  "viz.image: unknown option 'point' (valid: points, heat, force, every, interval)")
fails_with_prefix(function() nn.MultiHeadAttention{ dim = 4, heads = 2, attention = { windw = 3 } } end,
  "MultiHeadAttention: unknown option 'windw' in attention = {...} (lab.attention's options) (valid: variant,")

---------------------------------------------------------------------------------------------------
-- 3. an error inside a module names the module the user called, with the shapes
---------------------------------------------------------------------------------------------------
lab.seed(1)
local mha = nn.MultiHeadAttention{ dim = 32, heads = 4 }
-- issue 16: a wrong width into MultiHeadAttention was reported by Linear(32, 32)
fails_at_line(function() mha(lab.randn{ 2, 5, 16 }) end, "MultiHeadAttention(dim=32): input of shape {2,5,16} does not end in 32")
fails_at_line(function() mha(lab.randn{ 2, 5, 32 }, lab.randn{ 2, 7, 16 }) end,
  "MultiHeadAttention(dim=32): context of shape {2,7,16} does not end in 32")
fails_at_line(function() mha(lab.randn{ 2, 5, 32 }, lab.randn{ 3, 7, 32 }) end,
  "MultiHeadAttention(dim=32): input {2,5,32} and context {3,7,32} have different batch sizes")
fails_at_line(function() mha(lab.randn{ 5, 32 }) end, "MultiHeadAttention(dim=32): input must be a 3-d tensor (B, N, dim) (got shape {5,32})")
fails_at_line(function() mha(lab.randn({ 2, 5, 32 }, "float64")) end,
  'MultiHeadAttention(dim=32): input is float64 (shape {2,5,32}) and the module\'s parameters are float32 (convert with x:to("float32"))')
local block = nn.TransformerBlock{ dim = 32, heads = 4 }
fails_at_line(function() block(lab.randn{ 2, 5, 16 }) end, "TransformerBlock(dim=32): input of shape {2,5,16} does not end in 32")
fails_at_line(function() block(lab.ones({ 2, 5, 32 }, "int64")) end,
  'TransformerBlock(dim=32): input is int64 (shape {2,5,32}) and the module\'s parameters are float32 (convert with x:to("float32"))')
fails_at_line(function() block("x") end, "TransformerBlock(dim=32): input must be a tensor (got string)")
local ln = nn.LayerNorm(32)
fails_at_line(function() ln(lab.randn{ 2, 16 }) end, "LayerNorm(32): input of shape {2,16} does not end in 32")
local emb = nn.Embedding(10, 8)
fails_at_line(function() emb(lab.randn{ 2, 5 }) end, "Embedding(10, 8): ids must be an int64 tensor of ids from 1 to 10 (got float32 of shape {2,5})")
fails_at_line(function() emb(lab.tensor({ { 3, 11 } }, "int64")) end,
  "Embedding: embedding: index 11 is out of range for an embedding table of size 10")
fails_at_line(function() nn.MLP{ dims = { 4, 8, 3 } }(lab.randn{ 2, 5 }) end, "MLP(4-8-3, gelu): input of shape {2,5} does not end in 4")
fails_at_line(function() nn.Sequential(nn.Linear(4, 4), nn.ReLU())(lab.randn{ 2, 5 }) end,
  "Sequential: Linear(4, 4): input of shape {2,5} does not end in 4")
local gpt = nn.GPT{ vocab = 10, context = 8, layers = 2, width = 16, heads = 2 }
fails_at_line(function() gpt(lab.ones({ 1, 9 }, "int64")) end, "GPT: ids {1,9}: sequence length 9 is longer than the context 8")
fails_at_line(function() gpt(lab.tensor({ { 1, 11 } }, "int64")) end,
  "GPT: token ids must be from 1 to vocab = 10 (ids count from 1; index 11 is out of range for an embedding table of size 10)")
-- an op failing inside a module, past the input checks: the module's name in front of the op's message
local grid = nn.MultiHeadAttention{ dim = 8, heads = 2, variant = "neighborhood", kernel_size = 3, grid = { 2, 3 } }
fails_with_prefix(function() grid(lab.randn{ 1, 5, 8 }) end, "MultiHeadAttention: attention: ", "an op's error inside a module names the module")
-- ... and inside a constructor: a child's error carries the name of the module called
fails_with_prefix(function() nn.TransformerBlock{ dim = 8, heads = 3 } end,
  "TransformerBlock: MultiHeadAttention: dim 8 is not divisible by heads 3", "a child constructor's error names the block")
fails_with_prefix(function() nn.Linear(2 ^ 40, 2 ^ 40) end, "Linear: rand: ", "an allocation failing in a constructor names it")
-- the constructors check their scalar options at once (not at the first forward)
fails_at_line(function() nn.LayerNorm(4, { eps = "1e-5" }) end, 'LayerNorm: eps must be a finite number >= 0 (got "1e-5")')
fails_at_line(function() nn.TransformerBlock{ dim = 8, heads = 2, dropout = "0.1" } end,
  'TransformerBlock: dropout must be a number in [0, 1) (got "0.1")')
fails_at_line(function() nn.TransformerBlock{ dim = 8, heads = 2, mlp_ratio = 0 } end,
  "TransformerBlock: mlp_ratio must be a finite number > 0 (got 0)")
fails_at_line(function() nn.MultiHeadAttention{ dim = 8, heads = 2, scale = 0 } end,
  "MultiHeadAttention: scale must not be 0 (leave it out for the default, 1/sqrt(head_dim))")
fails_at_line(function() nn.MultiHeadAttention{ dim = 8, heads = 2, causal = "yes" } end,
  "MultiHeadAttention: causal must be true, false, 'top_left', 'bottom_right' or, with a grid, a table of booleans per axis (got \"yes\")")
fails_at_line(function() mha:set_head_scale(1, 0 / 0) end, "set_head_scale: scale must be a number other than NaN (got nan)")
-- a module that works is not slowed into a different result by the checks
local x = lab.randn{ 2, 5, 32 }
check.ok(block(x):shape_string() == "{2,5,32}" and mha(x, lab.randn{ 2, 7, 32 }):shape_string() == "{2,5,32}",
  "modules still run on good inputs (self- and cross-attention)")
-- an error raised by the user's own code inside a module keeps the user's message and line
local Mine = nn.class("Mine")
function Mine:init() end
function Mine:forward() error("my own failure") end
local ok, err = pcall(function() return Mine()(1) end)
check.ok(not ok and err:find(HERE .. ":%d+: Mine: my own failure$"), "a user's module error keeps its line, named by the module", tostring(err))

os.exit(check.report())
