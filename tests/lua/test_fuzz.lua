-- test_fuzz.lua -- 10,000 calls of the Lua API with malformed arguments drawn by a seeded generator,
-- among them the scalar arguments (fill_, mul_, add_, clamp, dropout, eps, scale, lr, ...) given
-- tables, strings, nil, NaN, infinities and tensors.  Every call must either succeed or raise a Lua
-- error located at the caller's line (this file) that starts with the name of the function called
-- and shows nothing of the library's insides: no al_ symbol, no line of a library file, no FFI
-- "bad argument", no Lua runtime error ("attempt to ...").  The process must never crash, abort or
-- run out of memory.
-- (One file, over 500 lines, on purpose: the argument generators and the table of calls draw from one
-- seeded stream, so a seed names one sequence of 10,000 calls; split across files, the sequences
-- and the ATTNLAB_FUZZ_LOG replay of a crash would no longer be one.)
--   ./build/attnlab tests/lua/test_fuzz.lua
-- Environment: ATTNLAB_FUZZ_CALLS (default 10000), ATTNLAB_FUZZ_SEED (default 20240611),
-- ATTNLAB_FUZZ_LOG=FILE writes each call before it is made (to find the one that crashed),
-- ATTNLAB_FUZZ_VERBOSE=1 prints every kind of error message that fails the rule above.
local check = dofile("tests/lua/check.lua")("fuzz")
local lab = lab or require "attnlab"
local ffi = require "ffi"

local CALLS = tonumber(os.getenv("ATTNLAB_FUZZ_CALLS") or "") or 10000
local SEED = tonumber(os.getenv("ATTNLAB_FUZZ_SEED") or "") or 20240611
local LOG = os.getenv("ATTNLAB_FUZZ_LOG")
local VERBOSE = os.getenv("ATTNLAB_FUZZ_VERBOSE")
local t_start = os.clock()
local wall_start = lab.time()

-- Huge sizes must be refused, not attempted: cap tensor memory at 1 GiB for this test so that a
-- size that passes the 2^40-element check (e.g. {2^31} float32 = 8 GiB) fails fast instead of
-- filling gigabytes.
-- ATTNLAB_FUZZ_MEMORY_LIMIT (MiB, default 1024; 0 keeps the library's default).
local MEMORY_LIMIT = tonumber(os.getenv("ATTNLAB_FUZZ_MEMORY_LIMIT") or "") or 1024
if lab.set_memory_limit and MEMORY_LIMIT > 0 then lab.set_memory_limit(MEMORY_LIMIT * 1024 * 1024) end

math.randomseed(SEED)
local R = math.random
local function pick(list) return list[R(#list)] end

local tmpdir = os.tmpname()
os.remove(tmpdir)
os.execute("mkdir -p '" .. tmpdir .. "'")

local function write_bytes(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end
local function u64le(n)
  local b = {}
  for i = 1, 8 do b[i] = string.char(n % 256); n = math.floor(n / 256) end
  return table.concat(b)
end

---------------------------------------------------------------------------------------------------
-- garbage files for lab.load / lab.image.load
---------------------------------------------------------------------------------------------------
local files = {}
do
  -- a real safetensors file, then truncations of it
  local real = tmpdir .. "/real.safetensors"
  lab.save(real, { a = lab.randn{ 3, 4 }, b = lab.tensor({ 1, 2, 3 }, "int64"), c = lab.tensor({ 0.5 }, "float64") }, { note = "x" })
  files[#files + 1] = real
  local f = assert(io.open(real, "rb"))
  local bytes = f:read("*a")
  f:close()
  for _, cut in ipairs{ 0, 1, 4, 7, 8, 9, 20, 40, #bytes - 30, #bytes - 1 } do
    if cut >= 0 and cut < #bytes then
      local p = string.format("%s/trunc%d.safetensors", tmpdir, cut)
      write_bytes(p, bytes:sub(1, cut))
      files[#files + 1] = p
    end
  end
  -- flipped bytes in the header and the data
  for k = 1, 12 do
    local pos = R(#bytes)
    local p = string.format("%s/flip%d.safetensors", tmpdir, k)
    write_bytes(p, bytes:sub(1, pos - 1) .. string.char(R(0, 255)) .. bytes:sub(pos + 1))
    files[#files + 1] = p
  end
  -- random bytes
  for k = 1, 6 do
    local n = R(0, 200)
    local b = {}
    for i = 1, n do b[i] = string.char(R(0, 255)) end
    local p = string.format("%s/random%d.bin", tmpdir, k)
    write_bytes(p, table.concat(b))
    files[#files + 1] = p
  end
  -- hand-made headers that lie
  local function st(header, data)
    return u64le(#header) .. header .. (data or "")
  end
  local crafted = {
    u64le(2 ^ 62) .. "{}",                                                        -- header length huge
    u64le(2 ^ 53) .. "{}",
    u64le(1000) .. "{}",                                                          -- longer than the file
    st("{}"),                                                                     -- no tensors
    st("[]"), st("null"), st("\"x\""), st("{"), st("{\"a\":"), st("{\"a\":{}}"),
    st('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', "12345678"),     -- fine
    st('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', "1234"),         -- data short
    st('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', "12345678"),     -- shape vs bytes
    st('{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}', "12345678"),     -- reversed
    st('{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}', "12345678"),
    st('{"a":{"dtype":"F32","shape":[1e30],"data_offsets":[0,8]}}', "12345678"),
    st('{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}', "12345678"),
    st('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551615]}}', "12345678"),
    st('{"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}', "12345678"),
    st('{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}', "1234"),         -- dtype not supported
    st('{"a":{"dtype":"Q99","shape":[2],"data_offsets":[0,8]}}', "12345678"),
    st('{"a":{"dtype":7,"shape":"x","data_offsets":null}}', "12345678"),
    st('{"a":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,1,1],"data_offsets":[0,4]}}', "1234"), -- 10 dims
    st('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', "12345678"),
    st('{"__metadata__":{"k":5},"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}', "1234"),
    st('{"__metadata__":"x"}'),
    st('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}   \0\0\0', "12345678"),
    st('{"\\ud800":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', "1234"),  -- lone surrogate
    st('{"a\\u0000b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', "1234"),
    st(string.rep("[", 100000) .. string.rep("]", 100000)),                    -- deep nesting
    st("{\"a\":" .. string.rep("{\"b\":", 50000) .. "1" .. string.rep("}", 50000) .. "}"),
    st('{"a":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}}', string.rep("\255", 16)),
    st('{"a":{"dtype":"F64","shape":[0],"data_offsets":[0,0]}}'),
    -- NaNs with payloads: LuaJIT keeps its tagged values in NaN payloads, so these must not reach
    -- Lua as they are (they read back as nil, false or a bogus pointer)
    st('{"a":{"dtype":"F64","shape":[4],"data_offsets":[0,32]}}',
       "\120\86\52\18\0\0\250\255" .. "\0\16\0\0\0\0\254\255" .. "\0\0\0\0\0\0\249\255" .. string.rep("\255", 8)),
    st('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}}', "\1\0\192\255" .. "\255\255\255\255" .. "\69\35\193\127"),
  }
  for k, s in ipairs(crafted) do
    local p = string.format("%s/crafted%d.safetensors", tmpdir, k)
    write_bytes(p, s)
    files[#files + 1] = p
  end
  -- images: a real one, truncated, garbage
  local img = tmpdir .. "/img.png"
  lab.image.save(img, lab.rand{ 4, 5, 3 })
  files[#files + 1] = img
  local fi = assert(io.open(img, "rb"))
  local ib = fi:read("*a")
  fi:close()
  for _, cut in ipairs{ 8, 20, 33, #ib - 12 } do
    local p = string.format("%s/img_trunc%d.png", tmpdir, cut)
    write_bytes(p, ib:sub(1, cut))
    files[#files + 1] = p
  end
  -- a PNG header claiming 65535 x 65535 pixels
  local png = ib:sub(1, 16) .. "\0\0\255\255\0\0\255\255" .. ib:sub(25)
  write_bytes(tmpdir .. "/img_huge.png", png)
  files[#files + 1] = tmpdir .. "/img_huge.png"
  files[#files + 1] = tmpdir                                   -- a directory
  files[#files + 1] = tmpdir .. "/does/not/exist"
  files[#files + 1] = "/dev/null"
  files[#files + 1] = ""
end

---------------------------------------------------------------------------------------------------
-- the pool of argument values
---------------------------------------------------------------------------------------------------
local nan, inf = 0 / 0, math.huge
local numbers = { 0, 1, 2, 3, 4, -1, -2, -3, 0.5, -0.5, 1.5, 2 ^ 31, 2 ^ 32, 2 ^ 53, 2 ^ 63, -2 ^ 31, 1e12, 1e15,
                  -1e12, nan, inf, -inf, 1e-300, 1e300, 5, 7, 8, 127, 2 ^ 40 }
local strings = { "", "x", "float32", "float64", "int64", "float16", "cuda", "cpu", "softmax", "lsa", "nope",
                  "1", "{2,3}", string.rep("a", 300), "\0", "a\0b", "sum", "__index" }
local shapes = {
  {}, { 0 }, { 1 }, { 3 }, { 2, 3 }, { 3, 2 }, { 2, 3, 4 }, { 1, 1, 1 }, { 0, 3 }, { 3, 0, 2 }, { -1 }, { -2, 3 },
  { 2, -1 }, { 1.5 }, { 2, 0.5 }, { nan }, { inf }, { -inf }, { 1e12 }, { 2 ^ 31, 2 ^ 31 }, { 2 ^ 40 }, { 2 ^ 62 },
  { 2 ^ 63 }, { 1e300 }, { 2 ^ 31 }, { 1e10 }, { 65536, 65536, 65536 }, { 2 ^ 20, 2 ^ 20 }, { 2 ^ 53 },
  { 1, 2, 3, 4, 5, 6, 7, 8, 9 }, { 1, 1, 1, 1, 1, 1, 1, 1 }, { "a" }, { {} }, { true }, { 2, nil, 3 }, { 2, "3" },
  { n = 3 }, { [2] = 3 },
}

-- small tensors of every kind: dtypes, 0-d, 0 elements, views, requires_grad, NaN
local function make_tensors()
  local list = {
    lab.randn{ 2, 3 }, lab.randn{ 3, 2 }, lab.randn{ 4 }, lab.randn{ 2, 3, 4 }, lab.randn{ 1, 2, 3, 4 },
    lab.randn{ 2, 2, 3, 4 }, lab.randn{ 1, 1, 4, 4 }, lab.randn{ 5, 5 }, lab.tensor(3.5), lab.zeros{ 0 },
    lab.zeros{ 0, 3 }, lab.zeros{ 2, 0, 4 }, lab.tensor({ 1, 2, 3 }, "int64"), lab.tensor({ { 1, 0 }, { 2, 7 } }, "int64"),
    lab.tensor({ -5, 0, 99 }, "int64"), lab.randn({ 2, 3 }, "float64"), lab.tensor({ nan, inf, -inf }),
    lab.randn{ 3, 4 }:t(), lab.randn{ 4, 6 }:narrow(2, 2, 3), lab.randn{ 1, 3 }:expand{ 4, 3 },
    lab.param(lab.randn{ 2, 3 }), lab.param(lab.randn{ 3 }), lab.param(lab.randn({ 2, 2 }, "float64")),
    lab.param(lab.randn{ 2, 3 }) * 2, lab.tensor(0, "int64"), lab.ones{ 1 }, lab.randn{ 1, 1, 1, 1, 1, 1, 1, 1 },
    lab.rand{ 4, 5, 3 }, lab.rand{ 3, 3 }, lab.zeros{ 2, 3, 5 },
    -- no elements, but 2^40 rows: a kernel that loops over rows before checking would never end
    lab.zeros{ 2 ^ 40, 0 }, lab.zeros{ 0, 2 ^ 40 }, lab.zeros{ 2 ^ 20, 0, 2 ^ 20 }, lab.zeros({ 2 ^ 40, 0 }, "int64"),
    lab.zeros{ 1, 2 ^ 38, 0, 4 },
  }
  return list
end
local tensors = make_tensors()

-- results of successful calls join the pool (small ones only), so later calls see odd views too
local function remember(v)
  if lab.is_tensor(v) and v:numel() <= 4096 then
    if #tensors < 80 then tensors[#tensors + 1] = v else tensors[R(#tensors)] = v end
  end
end

local function random_table()
  local k = R(6)
  if k == 1 then return {} end
  if k == 2 then return { pick(tensors), pick(tensors) } end
  if k == 3 then return { a = pick(tensors), b = 3 } end
  if k == 4 then return { 1, "x", true } end
  if k == 5 then return setmetatable({}, { __index = function() error("boom from __index") end }) end
  return { pick(tensors) }
end

local random_opts -- defined below

local function value()
  local k = R(100)
  if k <= 35 then return pick(tensors) end
  if k <= 55 then return pick(numbers) end
  if k <= 65 then return pick(shapes) end
  if k <= 73 then return pick(strings) end
  if k <= 78 then return nil end
  if k <= 82 then return R(2) == 1 end
  if k <= 87 then return random_table() end
  if k <= 92 then return random_opts() end
  if k <= 94 then return function() return 1 end end
  if k <= 96 then return ffi.new("int[2]") end
  if k <= 98 then return lab.nn.Linear(2, 3) end
  return coroutine.create(function() end)
end

function random_opts()
  local o = {}
  local keys = { "variant", "causal", "scale", "bias", "mask", "weights", "norm", "ignore", "lr", "momentum", "betas",
                 "eps", "weight_decay", "nesterov", "bias", "dim", "heads", "head_dim", "kv_heads", "dims", "in", "hidden",
                 "out", "activation", "mlp_ratio", "dropout", "context_dim", "out_dim", "record",
                 "beta", "gate", "agents", "agent_count", "k2", "v2", "gates", "ridge", "shared_heads", "active_heads",
                 "rank", "global_query", "qk_mean", "qk_std", "gated", "attention",
                 -- the options of the variants power ... pointer
                 "block_size", "local_blocks", "top_k", "dt_proj", "dt_a", "landmarks", "centroids", "cluster_size",
                 "samples", "lsh_bits", "rel_key", "rel_value", "bias_q", "bias_k", "pointer_w1", "pointer_w2", "pointer_v" }
  for _ = 1, R(0, 4) do
    local key = pick(keys)
    local v
    local c = R(6)
    if c == 1 then v = pick(numbers)
    elseif c == 2 then v = pick(strings)
    elseif c == 3 then v = pick(tensors)
    elseif c == 4 then v = R(2) == 1
    elseif c == 5 then v = pick(shapes)
    elseif c == 6 and key == "variant" then
      v = ({ "power", "dynamic_mask", "landmark", "routing", "hyper", "relative", "flashbias", "pointer" })[R(8)]
    else v = ({ "softmax", "lsa", true, 2, 0.1, { 0.9, 0.999 }, { 2, 4, 2 }, "flow", "local_linear", "delta",
                "random_feature", "agent", "moh", "tensor", "lowrank" })[R(15)] end
    o[key] = v
  end
  return o
end

local logf -- ATTNLAB_FUZZ_LOG: the arguments of each call are written before it is made
local function describe(v)
  if lab.is_tensor(v) then return "tensor" .. v:shape_string() .. v:dtype() end
  if type(v) == "table" then
    local parts = {}
    for k, x in pairs(v) do
      if #parts > 8 then break end
      parts[#parts + 1] = tostring(k) .. "=" .. (lab.is_tensor(x) and ("tensor" .. x:shape_string()) or tostring(x))
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  if type(v) == "string" then return string.format("%q", v:sub(1, 40)) end
  return tostring(v)
end
local function args(lo, hi)
  local n = R(lo or 0, hi or 4)
  local a = {}
  for i = 1, n do a[i] = value() end
  if logf then
    local d = {}
    for i = 1, n do d[i] = describe(a[i]) end
    logf:write("    args(", table.concat(d, ", "), ")\n"); logf:flush()
  end
  return a, n
end

---------------------------------------------------------------------------------------------------
-- the targets: name, the words an error message may use to name it, and the call
---------------------------------------------------------------------------------------------------
local Tensor = lab.Tensor
local targets = {}
local function target(name, names, fn, weight)
  targets[#targets + 1] = { name = name, names = names, fn = fn }
  for _ = 2, weight or 1 do targets[#targets + 1] = targets[#targets] end
end
local function fun(name, f, names, weight)
  target("lab." .. name, names or { name }, function()
    local a, n = args()
    return f(unpack(a, 1, n))
  end, weight)
end

-- creation
fun("tensor", lab.tensor)
fun("zeros", lab.zeros, { "zeros" }, 2)
fun("ones", lab.ones)
fun("full", lab.full, { "full" }, 2)
fun("randn", lab.randn, { "randn" }, 2)
fun("rand", lab.rand)
fun("arange", lab.arange, { "arange" }, 2)
fun("eye", lab.eye)
fun("seed", lab.seed)
fun("empty", lab.empty)
target("lab.tensor(nested)", { "tensor" }, function()
  local data = pick{ { { 1, 2 }, { 3 } }, { { 1 }, 2 }, { "a" }, { {}, {} }, { { {} } }, { 1, { 2 } }, { nan, inf }, {}, { true, false },
                     { 2 ^ 63, -2 ^ 63 }, { pick(tensors) } }
  return lab.tensor(data, pick{ nil, "float32", "int64", "float64", "x", 3 })
end, 2)
target("lab.zeros(shape, dtype)", { "zeros" }, function() return lab.zeros(pick(shapes), pick(strings)) end, 2)
target("lab.full(shape, v, dtype)", { "full" }, function() return lab.full(pick(shapes), value(), value()) end, 2)
target("lab.randn(numbers)", { "randn" }, function() return lab.randn(pick(numbers), pick(numbers)) end, 2)

-- tensor methods, self a tensor (as t:method() always passes)
local methods = {
  "shape", "dim", "numel", "dtype", "item", "totable", "get", "set", "clone", "contiguous", "to", "reshape", "view",
  "transpose", "t", "permute", "narrow", "select", "unsqueeze", "squeeze", "expand", "expand_as", "exp", "log", "sqrt",
  "tanh", "sigmoid", "relu", "gelu", "pow", "abs", "neg", "clamp", "sum", "mean", "max", "min", "argmax", "softmax",
  "log_softmax", "logsumexp", "matmul", "add", "sub", "mul", "div", "maximum", "minimum", "eq", "ne", "lt", "le", "gt",
  "ge", "requires_grad", "backward", "zero_grad", "detach", "size", "stride", "float", "double", "long", "gather",
  "fill_", "zero_", "copy_", "add_", "mul_", "set_grad", "is_contiguous", "is_leaf", "tostring", "shape_string",
}
-- (each method's errors name the method itself, never a core function it calls)
for _, m in ipairs(methods) do
  target("t:" .. m, { m }, function()
    local t = pick(tensors)
    if logf then logf:write("    self ", describe(t), "\n") end
    local a, n = args()
    return Tensor[m](t, unpack(a, 1, n))
  end, 2)
end
-- operators with anything on either side
local ops = {
  { "+", { "add" }, function(a, b) return a + b end }, { "-", { "sub" }, function(a, b) return a - b end },
  { "*", { "mul" }, function(a, b) return a * b end }, { "/", { "div" }, function(a, b) return a / b end },
  { "^", { "pow" }, function(a, b) return a ^ b end },
}
for _, op in ipairs(ops) do
  target("operator " .. op[1], op[2], function()
    local a, b = value(), value()
    if not lab.is_tensor(a) and not lab.is_tensor(b) then a = pick(tensors) end
    return op[3](a, b)
  end, 3)
end
target("unary -", { "neg" }, function() return -pick(tensors) end)

-- lab.* functions
for _, name in ipairs{ "cat", "stack", "where", "matmul", "solve", "linear", "layer_norm", "embedding", "gather", "dropout",
                       "exp", "log", "sum", "mean", "max", "argmax", "softmax", "log_softmax", "pow", "clamp",
                       "maximum", "minimum", "mse", "cross_entropy", "no_grad", "randint" } do
  fun(name, lab[name], { name }, 2)
end
fun("param", lab.param, { "param", "requires_grad" }, 2)  -- lab.param(t) is t:requires_grad(true)
target("lab.cat(list)", { "cat" }, function() return lab.cat({ pick(tensors), pick(tensors), pick(tensors) }, value()) end, 3)
target("lab.stack(list)", { "stack" }, function() return lab.stack({ pick(tensors), pick(tensors) }, value()) end, 3)
target("lab.mse(t, t)", { "mse" }, function() return lab.mse(pick(tensors), pick(tensors)) end, 2)
target("lab.cross_entropy(t, ids, opts)", { "cross_entropy" }, function()
  return lab.cross_entropy(pick(tensors), pick(tensors), R(2) == 1 and { ignore = value() } or value())
end, 3)
target("lab.attention", { "attention" }, function()
  local a, n = args(3, 4)
  return lab.attention(unpack(a, 1, n))
end, 2)
target("lab.attention(q,k,v,opts)", { "attention" }, function()
  local shp = { { 1, 1, 4, 4 }, { 2, 2, 3, 4 }, { 1, 2, 3, 4 }, { 2, 3, 4 }, { 1, 1, 0, 4 }, { 1, 1, 4, 0 } }
  local q = R(4) == 1 and pick(tensors) or lab.randn(pick(shp))
  local k = R(4) == 1 and pick(tensors) or lab.randn(pick(shp))
  local v = R(4) == 1 and pick(tensors) or lab.randn(pick(shp))
  return lab.attention(q, k, v, random_opts())
end, 6)
target("lab.attention.variants", { "attention.variants" }, function() return lab.attention.variants(value()) end)
target("lab.no_grad(fn)", { "no_grad" }, function() return lab.no_grad(function() return pick(tensors) * 2 end) end)

-- autograd on graphs
target("backward", { "backward" }, function()
  local p = lab.param(lab.randn(pick{ { 2 }, { 2, 3 }, {} }))
  local y = pick{ p:sum(), p * 2, p:exp():mean(), p:detach():sum(), pick(tensors) }
  if logf then logf:write("    y ", describe(y), "\n") end
  return y:backward(R(2) == 1 and value() or nil)
end, 3)

-- nn constructors and forward calls
local nn = lab.nn
-- (an error inside a constructor, even one of the rand that draws its weights, names the module)
local function ctor(name, names, weight)
  target("nn." .. name, names, function()
    local a, n = args()
    if R(2) == 1 then a, n = { random_opts() }, 1 end
    return nn[name](unpack(a, 1, n))
  end, weight)
end
ctor("Linear", { "Linear" }, 3)
ctor("Embedding", { "Embedding" }, 2)
ctor("LayerNorm", { "LayerNorm" }, 2)
ctor("MLP", { "MLP" }, 3)
ctor("MultiHeadAttention", { "MultiHeadAttention" }, 3)
ctor("TransformerBlock", { "TransformerBlock" }, 3)
ctor("Sequential", { "Sequential" }, 2)
-- (a forward's errors name the module called, not the op or the child module that failed in it)
local modules = {
  { nn.Linear(3, 4), { "Linear" } },
  { nn.Linear(4, 2, { bias = false }), { "Linear" } },
  { nn.Embedding(5, 3), { "Embedding" } },
  { nn.LayerNorm(4), { "LayerNorm" } },
  { nn.MLP{ dims = { 4, 6, 2 } }, { "MLP" } },
  { nn.MultiHeadAttention{ dim = 4, heads = 2 }, { "MultiHeadAttention" } },
  { nn.TransformerBlock{ dim = 4, heads = 2 }, { "TransformerBlock" } },
  { nn.Sequential(nn.Linear(3, 3), nn.ReLU()), { "Sequential" } },
}
for i, m in ipairs(modules) do
  target("forward " .. i, m[2], function()
    local a, n = args(0, 3)
    return m[1](unpack(a, 1, n))
  end, 3)
  target("load_state_dict " .. i, { "load_state_dict" }, function()
    local sd = {}
    for _, pair in ipairs(m[1]:named_parameters()) do
      sd[pair[1]] = R(3) == 1 and value() or pair[2]:clone()
    end
    if R(4) == 1 then sd = value() end
    return m[1]:load_state_dict(sd)
  end)
end

-- optimisers
local function opt_target(name, names)
  target("optim." .. name, names, function()
    local params = pick{ { lab.param(lab.randn{ 2 }) }, {}, { lab.randn{ 2 } }, value(), modules[1][1], { 3 },
                         { lab.param(lab.randn({ 3 }, "float64")), lab.param(lab.randn{ 1 }) } }
    local o = lab.optim[name](params, R(3) == 1 and value() or random_opts())
    -- a step on params that may or may not have grads
    for _, p in ipairs(o.params) do if R(2) == 1 then (p * p):sum():backward() end end
    o:step()
    o:zero_grad()
    return o
  end, 3)
end
opt_target("SGD", { "SGD" })
opt_target("Adam", { "Adam" })
opt_target("AdamW", { "AdamW" })
target("optim.clip_grad_norm", { "clip_grad_norm" }, function()
  local ps = pick{ { lab.param(lab.randn{ 2 }) }, {}, { lab.randn{ 2 } }, { 1 } }
  if R(2) == 1 and lab.is_tensor(ps[1]) and ps[1]:requires_grad() then (ps[1] * pick(numbers)):sum():backward() end
  return lab.optim.clip_grad_norm(R(5) == 1 and value() or ps, value())
end, 2)

-- files
local bad_paths = { "", "/", tmpdir, tmpdir .. "/no/such/dir/x.safetensors", "/proc/self/status", "/dev/full",
                    tmpdir .. "/" .. string.rep("n", 300) .. ".safetensors", tmpdir .. "/ok.safetensors", "a\0b",
                    tmpdir .. "/x\"y.safetensors" }
target("lab.save", { "save" }, function()
  local path = R(4) == 1 and value() or pick(bad_paths)
  local tbl = pick{ {}, { a = pick(tensors) }, { [1] = pick(tensors) }, { a = 3 }, { ["x\"y"] = pick(tensors) },
                    { [""] = pick(tensors) }, { __metadata__ = pick(tensors) }, { ["\0"] = pick(tensors) },
                    { [string.rep("k", 5000)] = pick(tensors) }, { a = pick(tensors), b = pick(tensors) }, value() }
  return lab.save(path, tbl, R(4) == 1 and value() or nil)
end, 4)
target("lab.load", { "load" }, function()
  local got = lab.load(R(8) == 1 and value() or pick(files))
  for _, t in pairs(got) do                         -- read every value back into Lua
    if t:numel() <= 4096 then
      local flat = t:reshape{ -1 }:totable()
      for k = 1, #flat do assert(type(flat[k]) == "number", "load: a value read back as " .. type(flat[k])) end
      if t:numel() == 1 then assert(type(t:reshape{}:item()) == "number", "load: item is not a number") end
    end
  end
  return got
end, 5)
target("lab.image.load", { "image.load" }, function()
  return lab.image.load(R(8) == 1 and value() or pick(files))
end, 3)
target("lab.image.save", { "image.save" }, function()
  return lab.image.save(R(6) == 1 and value() or pick(bad_paths):gsub("safetensors$", "png"), R(6) == 1 and value() or pick(tensors))
end, 3)

---------------------------------------------------------------------------------------------------
-- scalar arguments: every lab function and Tensor method that takes a number, given anything
---------------------------------------------------------------------------------------------------
-- what a scalar argument may be given: numbers of every kind, and what is not a number at all
local function scalar()
  local k = R(100)
  if k <= 40 then return pick{ 0, 1, 2, -1, 0.5, 0.9, 1.5, 3, 1e-5, 1e-12 } end
  if k <= 55 then return pick{ nan, inf, -inf, 1e300, -1e300, 2 ^ 53, 2 ^ 63, -2 ^ 63, 2 ^ 31 } end
  if k <= 65 then return pick(strings) end
  if k <= 72 then return nil end
  if k <= 80 then return pick(tensors) end
  if k <= 86 then return random_table() end
  if k <= 90 then return R(2) == 1 end
  if k <= 94 then return function() return 1 end end
  if k <= 97 then return ffi.new("int[2]") end
  return lab.nn.Linear(2, 3)
end
local function float_tensor() return pick{ lab.randn{ 2, 3 }, lab.randn({ 4 }, "float64"), lab.tensor(2.5), lab.zeros{ 0, 3 } } end
local function scalar_target(name, names, fn, weight) target("scalar " .. name, names, fn, weight or 3) end

scalar_target("t:fill_", { "fill_" }, function() return float_tensor():fill_(scalar()) end)
scalar_target("t:mul_", { "mul_" }, function() return float_tensor():mul_(scalar()) end)
scalar_target("t:add_(s)", { "add_" }, function() return float_tensor():add_(scalar()) end)
scalar_target("t:add_(src, alpha)", { "add_" }, function() local t = float_tensor() return t:add_(t:clone(), scalar()) end)
scalar_target("t:clamp", { "clamp" }, function() return float_tensor():clamp(scalar(), scalar()) end)
scalar_target("lab.clamp", { "clamp" }, function() return lab.clamp(float_tensor(), scalar(), scalar()) end)
scalar_target("t:pow", { "pow" }, function() return float_tensor():pow(scalar()) end)
scalar_target("t:set", { "set" }, function() return lab.zeros{ 2, 2 }:set(scalar(), scalar(), scalar()) end)
scalar_target("t:get", { "get" }, function() return lab.zeros{ 2, 2 }:get(scalar(), scalar()) end)
scalar_target("t:narrow", { "narrow" }, function() return lab.zeros{ 4, 2 }:narrow(scalar(), scalar(), scalar()) end)
scalar_target("t:select", { "select" }, function() return lab.zeros{ 4, 2 }:select(1, scalar()) end)
scalar_target("t op s", { "add", "sub", "mul", "div", "maximum", "minimum", "eq", "lt" }, function()
  local op = pick{ "add", "sub", "mul", "div", "maximum", "minimum", "eq", "lt" }
  return float_tensor()[op](float_tensor(), scalar())
end)
scalar_target("lab.full", { "full" }, function() return lab.full({ 2 }, scalar(), pick{ nil, "float64", "int64" }) end)
scalar_target("lab.arange", { "arange" }, function() return lab.arange(scalar(), scalar(), scalar()) end)
scalar_target("lab.eye", { "eye" }, function() return lab.eye(scalar()) end)
scalar_target("lab.seed", { "seed" }, function() return lab.seed(scalar()) end)
scalar_target("lab.randint", { "randint" }, function() return lab.randint(scalar(), scalar(), { 3 }) end)
scalar_target("lab.dropout", { "dropout" }, function() return lab.dropout(float_tensor(), scalar(), pick{ true, false, nil }) end)
scalar_target("lab.layer_norm", { "layer_norm" }, function() return lab.layer_norm(lab.randn{ 2, 3 }, nil, nil, scalar()) end)
scalar_target("lab.where", { "where" }, function() return lab.where(lab.randn{ 3 }:gt(0), scalar(), scalar()) end)
scalar_target("lab.cross_entropy ignore", { "cross_entropy" }, function()
  return lab.cross_entropy(lab.randn{ 2, 3 }, lab.tensor({ 1, 3 }, "int64"), { ignore = scalar() })
end)
local function qkv() return lab.randn{ 1, 2, 3, 4 }, lab.randn{ 1, 2, 3, 4 }, lab.randn{ 1, 2, 3, 4 } end
scalar_target("lab.attention scalars", { "attention" }, function()
  local q, k, v = qkv()
  local key = pick{ "scale", "norm", "window", "ridge", "agent_count", "block_size", "top_k", "kernel_size", "causal", "kernel" }
  local variant = ({ norm = "lsa", window = "sliding_window", ridge = "local_linear", agent_count = "agent", block_size = "power",
                     top_k = "softmax", kernel_size = "neighborhood" })[key]
  return lab.attention(q, k, v, { [key] = scalar(), variant = variant })
end, 6)
scalar_target("attention.routing_update", { "attention.routing_update" }, function()
  local c = lab.randn{ 2, 3, 4 }
  return lab.attention.routing_update(c / c:pow(2):sum(3, true):sqrt(), lab.randn{ 1, 2, 5, 4 }, lab.randn{ 1, 2, 5, 4 }, scalar())
end)
scalar_target("attention.topk_mask", { "attention.topk_mask" }, function() return lab.attention.topk_mask(lab.randn{ 2, 5 }, scalar()) end)
-- the global settings are put back at once, so that the calls after these run as before
scalar_target("attention.set_map_limit", { "attention.set_map_limit" }, function()
  local ok, err = pcall(lab.attention.set_map_limit, scalar())
  lab.attention.set_map_limit(64 * 2 ^ 20)
  if not ok then error(err, 0) end
end, 2)
scalar_target("lab.set_memory_limit", { "set_memory_limit" }, function()
  local ok, err = pcall(lab.set_memory_limit, scalar())
  lab.set_memory_limit(MEMORY_LIMIT > 0 and MEMORY_LIMIT * 1024 * 1024 or 2 ^ 40)
  if not ok then error(err, 0) end
end, 2)
local threads = lab.num_threads()
scalar_target("lab.set_num_threads", { "set_num_threads" }, function()
  local ok, err = pcall(lab.set_num_threads, scalar())
  lab.set_num_threads(threads)
  if not ok then error(err, 0) end
end, 2)
-- nn: the scalar options of the constructors, and the methods with numbers
scalar_target("nn.Linear sizes", { "Linear" }, function() return nn.Linear(scalar(), scalar()) end)
scalar_target("nn.Embedding sizes", { "Embedding" }, function() return nn.Embedding(scalar(), scalar()) end)
scalar_target("nn.LayerNorm eps", { "LayerNorm" }, function() return nn.LayerNorm(4, { eps = scalar() }) end)
scalar_target("nn.TransformerBlock scalars", { "TransformerBlock" }, function()
  return nn.TransformerBlock{ dim = 4, heads = 2, [pick{ "dropout", "mlp_ratio", "scale", "norm", "heads", "window" }] = scalar() }
end)
scalar_target("nn.MultiHeadAttention scalars", { "MultiHeadAttention" }, function()
  return nn.MultiHeadAttention{ dim = 4, heads = 2, [pick{ "scale", "norm", "out_dim", "context_dim", "head_dim", "kv_heads" }] = scalar() }
end)
-- (not layers: 2^53 layers is no misuse, only a model that takes forever to build)
scalar_target("nn.GPT scalars", { "GPT" }, function()
  return nn.GPT{ vocab = 5, context = 4, layers = 1, width = 4, heads = 2,
                 [pick{ "vocab", "context", "width", "heads", "mlp_ratio", "scale", "norm" }] = scalar() }
end)
local mha = nn.MultiHeadAttention{ dim = 4, heads = 2 }
scalar_target("set_head_scale", { "set_head_scale" }, function() return mha:set_head_scale(scalar(), scalar()) end)
scalar_target("TransformerBlock forward", { "TransformerBlock" }, function()
  return modules[7][1](pick{ lab.randn{ 1, 3, 4 }, lab.randn{ 1, 3, 5 }, lab.randn({ 1, 3, 4 }, "float64"), lab.ones({ 1, 3, 4 }, "int64"),
                             lab.randn{ 3, 4 }, scalar() })
end)
scalar_target("MultiHeadAttention context", { "MultiHeadAttention" }, function()
  return mha(lab.randn{ 2, 3, 4 }, pick{ lab.randn{ 2, 5, 4 }, lab.randn{ 2, 5, 6 }, lab.randn{ 3, 5, 4 }, lab.randn{ 5, 4 }, scalar() })
end)
-- optimisers
local function opt_params() return { lab.param(lab.randn{ 2 }) } end
scalar_target("SGD scalars", { "SGD" }, function()
  return lab.optim.SGD(opt_params(), { [pick{ "lr", "momentum", "weight_decay", "nesterov" }] = scalar() })
end)
scalar_target("Adam scalars", { "Adam" }, function()
  return lab.optim.Adam(opt_params(), { [pick{ "lr", "eps", "weight_decay" }] = scalar(), betas = R(2) == 1 and { scalar(), scalar() } or nil })
end)
scalar_target("clip_grad_norm max", { "clip_grad_norm" }, function() return lab.optim.clip_grad_norm(opt_params(), scalar()) end)
-- the viz stream and the analysis helpers
local viz = lab.viz
os.execute("mkdir -p '" .. tmpdir .. "/viz'")
viz.open(tmpdir .. "/viz", { interval = 0 })
scalar_target("viz.scalar", { "viz.scalar" }, function() return viz.scalar("s", scalar()) end)
scalar_target("viz.reference", { "viz.reference" }, function() return viz.reference("s", "base", scalar()) end)
scalar_target("viz.set_step", { "viz.set_step" }, function() local ok, err = pcall(viz.set_step, scalar()) viz.set_step(0) if not ok then error(err, 0) end end)
scalar_target("viz.set_rate", { "viz.set_rate" }, function()
  local ok, err = pcall(viz.set_rate, { [pick{ "interval", "every" }] = scalar() })
  viz.set_rate{ interval = 0 }
  if not ok then error(err, 0) end
end)
scalar_target("viz.attention opts", { "viz.attention" }, function()
  return viz.attention("a", lab.ones{ 2, 2, 3, 3 }, { [pick{ "layer", "head", "batch", "every", "interval" }] = scalar() })
end)
scalar_target("viz.matrix opts", { "viz.matrix" }, function() return viz.matrix("m", lab.eye(2), { [pick{ "layer", "head" }] = scalar() }) end)
local map = lab.ones{ 1, 2, 3, 3 } / 3
scalar_target("analysis.sink_mass", { "sink_mass" }, function() return lab.analysis.sink_mass(map, scalar()) end)
scalar_target("analysis.interpolate_identity", { "interpolate_identity" }, function() return lab.analysis.interpolate_identity(map, scalar()) end)
scalar_target("analysis.calibrate_sinks", { "calibrate_sinks" }, function()
  return lab.analysis.calibrate_sinks(map, { [pick{ "tau", "beta" }] = scalar() })
end)

-- the figures of lab.plot and the one-process lab.dist
local plot, canvas = lab.plot, lab.plot.canvas(8, 6)
local colour = function() return R(3) == 1 and scalar() or { scalar(), 0.5, 0.5 } end
scalar_target("plot.canvas", { "plot.canvas" }, function() return plot.canvas(scalar(), scalar()) end)
scalar_target("Canvas:set", { "plot.Canvas:set" }, function() return canvas:set(scalar(), scalar(), colour()) end)
scalar_target("Canvas:get", { "plot.Canvas:get" }, function() return canvas:get(scalar(), scalar()) end)
scalar_target("Canvas:rect", { "plot.Canvas:rect" }, function() return canvas:rect(scalar(), scalar(), scalar(), scalar(), colour()) end)
scalar_target("Canvas:line", { "plot.Canvas:line" }, function() return canvas:line(scalar(), scalar(), scalar(), scalar(), colour(), scalar()) end)
scalar_target("Canvas:text", { "plot.Canvas:text" }, function() return canvas:text(scalar(), scalar(), pick{ "ab", 3, scalar() }, colour(), scalar()) end)
scalar_target("plot.viridis", { "plot.viridis" }, function() return plot.viridis(scalar()) end)
scalar_target("plot.lines", { "plot.lines" }, function()
  return plot.lines("fig.png", { series = { { xs = { 1, scalar() }, ys = { scalar(), 2 }, thick = R(2) == 1 and scalar() or nil } },
                                 width = 120, height = 90, [pick{ "xmin", "xmax", "ymin", "ymax", "width", "title" }] = scalar() })
end, 2)
scalar_target("plot.heatmap", { "plot.heatmap" }, function()
  return plot.heatmap("heat.png", { { scalar(), 1 } }, nil, nil, { [pick{ "cell", "max", "title" }] = scalar() })
end, 2)
scalar_target("dist", { "dist.seed", "dist.shard", "dist.broadcast", "dist.mean", "dist.all_reduce" }, function()
  local f = pick{ function() return lab.dist.seed(scalar()) end, function() return lab.dist.shard(lab.zeros{ 4, 2 }, scalar()) end,
                  function() return lab.dist.broadcast(lab.zeros{ 2 }, scalar()) end, function() return lab.dist.mean(scalar()) end,
                  function() return lab.dist.all_reduce(lab.zeros{ 2 }, scalar()) end }
  return f()
end)

---------------------------------------------------------------------------------------------------
-- the rule every error must follow
---------------------------------------------------------------------------------------------------
local HERE = debug.getinfo(1, "S").short_src   -- this file: the caller of every target
-- nil when msg is an error as the house wants it from a call of a function named in names, else why not
local function fault(msg, names)
  if type(msg) ~= "string" or msg == "" then return "not a non-empty string" end
  local src, body = msg:match("^([^\n]-):%d+: (.*)$")
  if src ~= HERE then return "not located at the caller's line" end
  if body:find("%f[%w_]al_[%w_]") then return "names an al_ function of the core" end
  if body:find("attnlab/[%w_]+%.lua:%d+") or body:find("init%.lua:%d+") then return "names a line of the library" end
  if body:find("bad argument #", 1, true) or body:find("attempt to ", 1, true) then return "a raw Lua or FFI error" end
  for _, n in ipairs(names) do
    local after = body:sub(#n + 1, #n + 1)
    if body:sub(1, #n) == n and (after == ":" or after == "(") then return nil end
  end
  return "does not start with the name of the function called"
end
-- the rule is not a tautology: the messages issue 16 counted as unclear fail it, a clear one passes
check.ok(fault(HERE .. ":12: fill_: value must be a number (got table)", { "fill_" }) == nil, "the rule accepts a clear error")
check.ok(fault("/x/lua/attnlab/init.lua:562: bad argument #2 to 'al_fill_' (cannot convert 'table' to 'double')", { "fill_" }),
  "the rule refuses the FFI's message at a library line")
check.ok(fault(HERE .. ":12: bad argument #2 to 'al_fill_' (cannot convert 'table' to 'double')", { "fill_" }),
  "the rule refuses the FFI's message even at the caller's line")
check.ok(fault(HERE .. ":12: tensor: cannot allocate {2147483648} of float32", { "zeros" }),
  "the rule refuses a core message that names another function than the one called")
check.ok(fault(HERE .. ":12: Linear(32, 32): input of shape {2,5,16} does not end in 32", { "MultiHeadAttention" }),
  "the rule refuses an error of a child module for the module called")
check.ok(fault(HERE .. ":12: fill_ failed", { "fill_" }) and fault("fill_: x", { "fill_" }),
  "the rule wants the name as a prefix, and a location")

---------------------------------------------------------------------------------------------------
-- the loop
---------------------------------------------------------------------------------------------------
logf = LOG and assert(io.open(LOG, "w"))
-- relative paths ("x", "cpu", "a\0b" -> "a") would land in the current folder: work in tmpdir
pcall(ffi.cdef, "int chdir(const char *path); char *getcwd(char *buf, size_t size);")
local cwd_buf = ffi.new("char[4096]")
local cwd = ffi.C.getcwd(cwd_buf, 4096) ~= nil and ffi.string(cwd_buf) or nil
assert(cwd and ffi.C.chdir(tmpdir) == 0, "cannot change into " .. tmpdir)
local succeeded, errored, unclear, nonstring = 0, 0, 0, 0
local scalar_calls, scalar_errors = 0, 0
local slowest = { 0 }
local per_target = {}
local unclear_examples = {}

for i = 1, CALLS do
  local tg = pick(targets)
  if logf then
    local f = io.open("/proc/self/status")
    local st = f and f:read("*a") or ""
    if f then f:close() end
    logf:write(i, " ", tg.name, " rss ", st:match("VmRSS:%s*(%d+)") or "?", " kB\n"); logf:flush()
  end
  local t0 = lab.time()
  local res = { pcall(tg.fn) }
  local dt = lab.time() - t0
  if dt > slowest[1] then slowest = { dt, i, tg.name } end
  local stats = per_target[tg.name] or { ok = 0, err = 0 }
  per_target[tg.name] = stats
  local is_scalar = tg.name:sub(1, 7) == "scalar "
  if is_scalar then scalar_calls = scalar_calls + 1 end
  if res[1] then
    succeeded = succeeded + 1
    stats.ok = stats.ok + 1
    for k = 2, #res do remember(res[k]) end
  else
    errored = errored + 1
    stats.err = stats.err + 1
    if is_scalar then scalar_errors = scalar_errors + 1 end
    local msg = res[2]
    if type(msg) ~= "string" or msg == "" then
      nonstring = nonstring + 1
      unclear_examples[#unclear_examples + 1] = tg.name .. ": non-string error " .. tostring(msg)
    elseif not msg:find("boom from __index", 1, true) then   -- our own table's error passes through
      local why = fault(msg, tg.names)
      if why then
        unclear = unclear + 1
        if #unclear_examples < 400 then unclear_examples[#unclear_examples + 1] = tg.name .. " (" .. why .. "): " .. msg end
      end
    end
  end
  -- keep memory flat: drop dead tensors now and then, reset grad mode in case a call left it off
  if i % 500 == 0 then collectgarbage("collect") end
  if not lab.grad_enabled() then lab.set_grad_enabled(true) end
end
if logf then logf:close() end
ffi.C.chdir(cwd)
viz.close()

-- the distinct messages that break the rule (with the number of each)
local distinct, order = {}, {}
for _, e in ipairs(unclear_examples) do
  local key = e:gsub(HERE:gsub("%p", "%%%0") .. ":%d+: ", "")
  if not distinct[key] then distinct[key] = 0; order[#order + 1] = key end
  distinct[key] = distinct[key] + 1
end
if #order > 0 then
  io.stderr:write("errors that break the rule:\n")
  for k, key in ipairs(order) do
    if k > 40 and not VERBOSE then io.stderr:write(string.format("  ... and %d more kinds\n", #order - 40)) break end
    io.stderr:write(string.format("  %4dx %s\n", distinct[key], key:sub(1, 300)))
  end
end

collectgarbage("collect")
collectgarbage("collect")
local rss
do
  local f = io.open("/proc/self/status")
  if f then
    local s = f:read("*a")
    f:close()
    rss = tonumber(s:match("VmHWM:%s*(%d+)"))
  end
end
local wall = lab.time() - wall_start
print(string.format("fuzz: %d calls (seed %d): %d succeeded, %d raised errors (%d of %d scalar-argument calls); %d errors break the rule, %d non-string; %d targets",
  CALLS, SEED, succeeded, errored, scalar_errors, scalar_calls, unclear, nonstring, #targets))
print(string.format("fuzz: %.1f s wall, %.1f s cpu, peak RSS %s MiB, peak tensor memory %.1f MiB; slowest call %.3f s (call %d, %s)",
  wall, os.clock() - t_start, rss and string.format("%.0f", rss / 1024) or "?", lab.memory().peak / 1048576,
  slowest[1], slowest[2] or 0, slowest[3] or "-"))

check.ok(succeeded + errored == CALLS, "every call returned")
check.ok(errored > CALLS / 10 and succeeded > CALLS / 20, "a mix of failing and succeeding calls",
  succeeded .. " ok / " .. errored .. " errors")
check.ok(nonstring == 0, "every error is a non-empty string", tostring(nonstring))
check.ok(scalar_errors > CALLS / 20 and scalar_errors < scalar_calls, "the scalar arguments were misused, and some calls were fine",
  scalar_errors .. " errors of " .. scalar_calls .. " calls")
check.ok(unclear == 0, "every error is located at the caller's line, starts with the name of the function called and names no al_ "
  .. "symbol or library line", unclear .. " do not")
check.ok(not rss or rss < 4 * 1024 * 1024, "peak RSS under 4 GiB", rss and (rss / 1024 .. " MiB"))
check.ok(wall < 60, "finishes in under 60 s", string.format("%.1f s", wall))
-- the library still works after all that
local sane = lab.tensor{ { 1, 2 }, { 3, 4 } }:matmul(lab.eye(2)):sum():item()
check.ok(sane == 10, "the library still computes after the fuzzing")
os.execute("rm -rf '" .. tmpdir .. "'")
os.exit(check.report(), true)   -- true: close the Lua state, so every tensor is freed (quiet leak checks)
