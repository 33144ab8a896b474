-- attnlab.tensor: the tensor metatype -- the methods of a tensor (t:sum(1), t:narrow(...)), its
-- operators (t + 1, -t, #t) and how it prints.  lab.Tensor is this table.  Methods take and give
-- 1-based dimensions; the conversions and the ownership of what the core returns are attnlab.core's.
local ffi = require "ffi"
local core, args = require "attnlab.core", require "attnlab.args"

local C, raise, wrap, wrap_slot = core.C, core.raise, core.wrap, core.wrap_slot
local check_status, cdim, parse_shape, parse_dtype = core.check_status, core.cdim, core.parse_shape, core.parse_dtype
local is_tensor, opt_tensor, scalar_tensor = core.is_tensor, core.opt_tensor, core.scalar_tensor
local i64arr, ref_array, dtype_names = core.i64_array, core.ref_array, core.dtype_names
local expect_tensor, check_int, check_number = args.expect_tensor, args.check_int, args.check_number

local Tensor = {}

-- Introspection ----------------------------------------------------------------------------------

function Tensor.dim(t) return C.al_ndim(t) end
function Tensor.numel(t) return tonumber(C.al_numel(t)) end
function Tensor.dtype(t) return dtype_names[tonumber(C.al_dtype_of(t))] end
function Tensor.device(t) return tonumber(C.al_device_of(t)) == 0 and "cpu" or "cuda" end
function Tensor.is_contiguous(t) return C.al_is_contiguous(t) ~= 0 end
function Tensor.shape(t)
  local s = {}
  for i = 0, C.al_ndim(t) - 1 do s[i + 1] = tonumber(C.al_size(t, i)) end
  return s
end
function Tensor.size(t, d)
  if d == nil then return Tensor.shape(t) end
  return tonumber(C.al_size(t, cdim(d, "size", C.al_ndim(t))))
end
function Tensor.stride(t, d) return tonumber(C.al_stride(t, cdim(d, "stride", C.al_ndim(t)))) end
local shape_buf = ffi.new("char[160]")
function Tensor.shape_string(t) return ffi.string(C.al_shape_string(t, shape_buf, 160)) end

function Tensor.item(t)
  local v = C.al_item(t)
  if v ~= v and C.al_numel(t) ~= 1 then raise(core.core_message("item")) end
  return v
end

local function index_array(t, fn, ...)
  local nd = C.al_ndim(t)
  local n = select("#", ...)
  if n ~= nd then raise(string.format("%s: %d indices given for a %d-d tensor of shape %s", fn, n, nd, t:shape_string())) end
  local idx = i64arr(math.max(nd, 1))
  for i = 1, nd do
    local v = select(i, ...)
    check_int(v, fn, "index " .. i)
    local size = tonumber(C.al_size(t, i - 1))
    if v < 0 then v = v + size + 1 end
    idx[i - 1] = v - 1
  end
  return idx
end

local get_out = ffi.new("double[1]")
function Tensor.get(t, ...)
  check_status(C.al_get(t, index_array(t, "get", ...), get_out), "get")
  return get_out[0]
end
function Tensor.set(t, ...)
  local n = select("#", ...)
  local v = n > 0 and select(n, ...) or nil
  if type(v) ~= "number" then raise("set: the value (last argument) must be a number (got " .. args.show(v) .. ")") end
  local idx = index_array(t, "set", unpack({ ... }, 1, n - 1))
  check_status(C.al_set(t, idx, v), "set")
  return t
end

function Tensor.totable(t)
  local n = tonumber(C.al_numel(t))
  local buf = ffi.new("double[?]", math.max(n, 1))
  check_status(C.al_copy_to_doubles(t, buf, n), "totable")
  local shape = t:shape()
  if #shape == 0 then return buf[0] end
  if n == 0 then -- no elements, but maybe 2^40 empty rows: refuse rather than build them all
    local rows = 1
    for d = 1, #shape - 1 do
      if shape[d] == 0 then break end
      rows = rows * shape[d]
      if rows > 2 ^ 24 then raise("totable: a tensor of shape " .. t:shape_string() .. " would need more than 2^24 tables") end
    end
  end
  local pos = 0
  local function build(d)
    local out = {}
    for i = 1, shape[d] do
      if d == #shape then out[i] = buf[pos]; pos = pos + 1
      else out[i] = build(d + 1) end
    end
    return out
  end
  return build(1)
end

-- Views and copies -------------------------------------------------------------------------------

function Tensor.clone(t) return wrap(C.al_clone(t), "clone") end
function Tensor.contiguous(t) return wrap(C.al_contiguous(t), "contiguous") end
function Tensor.detach(t) return wrap(C.al_detach(t), "detach") end
-- t:to("cpu"), t:to("cuda") (a copy on that device, gradients flowing back across; t itself when it
-- is there already), or t:to(dtype)
local device_ids = { cpu = 0, cuda = 1 }
function Tensor.to(t, what)
  if device_ids[what] then return wrap(C.al_to_device(t, device_ids[what]), "to") end
  return wrap(C.al_to_dtype(t, parse_dtype(what, "to")), "to")
end
function Tensor.float(t) return wrap(C.al_to_dtype(t, 0), "float") end
function Tensor.double(t) return wrap(C.al_to_dtype(t, 1), "double") end
function Tensor.long(t) return wrap(C.al_to_dtype(t, 2), "long") end
function Tensor.reshape(t, ...)
  local n, a = parse_shape("reshape", ...)
  return wrap(C.al_reshape(t, n, a), "reshape")
end
function Tensor.view(t, ...)
  local n, a = parse_shape("view", ...)
  return wrap(C.al_reshape(t, n, a), "view")
end
function Tensor.transpose(t, d1, d2)
  local nd = C.al_ndim(t)
  return wrap(C.al_transpose(t, cdim(d1, "transpose", nd), cdim(d2, "transpose", nd)), "transpose")
end
function Tensor.t(t)
  if C.al_ndim(t) ~= 2 then raise("t: expects a 2-d tensor (got shape " .. t:shape_string() .. "); use transpose") end
  return wrap(C.al_transpose(t, 0, 1), "t")
end
function Tensor.permute(t, ...)
  local order = type((...)) == "table" and not is_tensor((...)) and ... or { ... }
  local nd = C.al_ndim(t)
  if #order ~= nd then raise(string.format("permute: %d dimensions given for a %d-d tensor", #order, nd)) end
  local arr = ffi.new("int[?]", math.max(nd, 1))
  for i = 1, nd do arr[i - 1] = cdim(order[i], "permute", nd) end
  return wrap(C.al_permute(t, arr), "permute")
end
function Tensor.narrow(t, d, start, len)
  local nd = C.al_ndim(t)
  d = cdim(d, "narrow", nd)
  check_int(start, "narrow", "start"); check_int(len, "narrow", "length")
  return wrap(C.al_narrow(t, d, start - 1, len), "narrow")
end
function Tensor.select(t, d, index)
  local nd = C.al_ndim(t)
  check_int(index, "select", "index")
  return wrap(C.al_select(t, cdim(d, "select", nd), index - 1), "select")
end
function Tensor.unsqueeze(t, d) return wrap(C.al_unsqueeze(t, cdim(d, "unsqueeze", C.al_ndim(t) + 1)), "unsqueeze") end
function Tensor.squeeze(t, d)
  if d == nil then return wrap(C.al_squeeze(t, 127), "squeeze") end
  return wrap(C.al_squeeze(t, cdim(d, "squeeze", C.al_ndim(t))), "squeeze")
end
function Tensor.expand(t, ...)
  local n, a = parse_shape("expand", ...)
  return wrap(C.al_expand(t, n, a), "expand")
end
function Tensor.expand_as(t, other)
  local n, a = parse_shape("expand_as", expect_tensor(other, "expand_as", "other"):shape())
  return wrap(C.al_expand(t, n, a), "expand_as")
end

-- Math -----------------------------------------------------------------------------------------

for _, name in ipairs{ "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "gelu", "abs", "neg" } do
  local cname = "al_" .. name     -- looked up at each call, so that lab.profile can time it
  Tensor[name] = function(t) return wrap(C[cname](expect_tensor(t, name, "self")), name) end
end
function Tensor.pow(t, p)
  check_number(p, "pow", "exponent")
  return wrap(C.al_pow_scalar(t, p), "pow")
end
-- (a NaN bound would make every element NaN: refused; nil leaves that side open)
local any_bound = { -math.huge, math.huge }
function Tensor.clamp(t, lo, hi)
  lo = args.opt_number(lo, -math.huge, "clamp", "lo", any_bound)
  hi = args.opt_number(hi, math.huge, "clamp", "hi", any_bound)
  return wrap(C.al_clamp(t, lo, hi), "clamp")
end

local function binary(name, cfun, scalar_fun, rscalar_fun)
  return function(a, b)
    if type(a) == "number" then
      expect_tensor(b, name, "b")
      return wrap(rscalar_fun(a, b), name)
    elseif type(b) == "number" then
      expect_tensor(a, name, "a")
      return wrap(scalar_fun(a, b), name)
    end
    return wrap(cfun(expect_tensor(a, name, "a"), expect_tensor(b, name, "b")), name)
  end
end
-- (the core functions are named at each call rather than captured, so that lab.profile can time them)
Tensor.add = binary("add", function(a, b) return C.al_add(a, b) end, function(t, s) return C.al_add_scalar(t, s) end,
  function(s, t) return C.al_add_scalar(t, s) end)
Tensor.sub = binary("sub", function(a, b) return C.al_sub(a, b) end, function(t, s) return C.al_add_scalar(t, -s) end,
  function(s, t) return C.al_rsub_scalar(s, t) end)
Tensor.mul = binary("mul", function(a, b) return C.al_mul(a, b) end, function(t, s) return C.al_mul_scalar(t, s) end,
  function(s, t) return C.al_mul_scalar(t, s) end)
-- t / s divides (as t / tensor does, not multiplies by 1/s: one rounding, and int64 / number is a
-- true division in float32 like int64 / int64)
Tensor.div = binary("div", function(a, b) return C.al_div(a, b) end, function(t, s)
  local dt = tonumber(C.al_dtype_of(t))
  return C.al_div(t, scalar_tensor(s, dt == 2 and 0 or dt, "div", t))
end, function(s, t) return C.al_rdiv_scalar(s, t) end)
local function scalar_as_tensor(fun, fn)
  return function(t, s) local st = scalar_tensor(s, tonumber(C.al_dtype_of(t)), fn, t) return fun(t, st) end
end
Tensor.maximum = binary("maximum", function(a, b) return C.al_maximum(a, b) end,
  scalar_as_tensor(function(a, b) return C.al_maximum(a, b) end, "maximum"),
  function(s, t) return C.al_maximum(t, scalar_tensor(s, tonumber(C.al_dtype_of(t)), "maximum", t)) end)
Tensor.minimum = binary("minimum", function(a, b) return C.al_minimum(a, b) end,
  scalar_as_tensor(function(a, b) return C.al_minimum(a, b) end, "minimum"),
  function(s, t) return C.al_minimum(t, scalar_tensor(s, tonumber(C.al_dtype_of(t)), "minimum", t)) end)

local compare_ops = { eq = 0, ne = 1, lt = 2, le = 3, gt = 4, ge = 5 }
for name, op in pairs(compare_ops) do
  Tensor[name] = function(a, b)
    expect_tensor(a, name, "a")
    if type(b) == "number" then return wrap(C.al_compare_scalar(a, b, op), name) end
    return wrap(C.al_compare(a, expect_tensor(b, name, "b"), op), name)
  end
end

-- Reductions -----------------------------------------------------------------------------------

local ALL = 127
local function reduce_dim(t, d, fn)
  if d == nil then return ALL end
  return cdim(d, fn, C.al_ndim(t))
end
function Tensor.sum(t, d, keepdim) return wrap(C.al_sum(t, reduce_dim(t, d, "sum"), keepdim and 1 or 0), "sum") end
function Tensor.mean(t, d, keepdim) return wrap(C.al_mean(t, reduce_dim(t, d, "mean"), keepdim and 1 or 0), "mean") end
local idx_out = ref_array(1)
local function argbest(cfun, fn)
  local function best(t, d, keepdim)
    if d == nil then return best(wrap(C.al_reshape(t, 1, i64arr(1, -1)), fn), 1) end   -- over everything: flatten first
    local v = cfun(t, cdim(d, fn, C.al_ndim(t)), keepdim and 1 or 0, idx_out)
    local values = wrap(v, fn)
    local indices = wrap_slot(idx_out[0], fn)
    return values, wrap(C.al_add_scalar(indices, 1), fn)
  end
  return best
end
Tensor.max = argbest(function(...) return C.al_max(...) end, "max")
Tensor.min = argbest(function(...) return C.al_min(...) end, "min")
function Tensor.argmax(t, d, keepdim)
  local ids
  if d == nil then ids = wrap(C.al_argmax(wrap(C.al_reshape(t, 1, i64arr(1, -1)), "argmax"), 0, 0), "argmax")
  else ids = wrap(C.al_argmax(t, cdim(d, "argmax", C.al_ndim(t)), keepdim and 1 or 0), "argmax") end
  return wrap(C.al_add_scalar(ids, 1), "argmax")
end
function Tensor.softmax(t, d) return wrap(C.al_softmax(t, cdim(d or -1, "softmax", C.al_ndim(t))), "softmax") end
function Tensor.log_softmax(t, d) return wrap(C.al_log_softmax(t, cdim(d or -1, "log_softmax", C.al_ndim(t))), "log_softmax") end
function Tensor.logsumexp(t, d, keepdim)
  return wrap(C.al_logsumexp(t, cdim(d or -1, "logsumexp", C.al_ndim(t)), keepdim and 1 or 0), "logsumexp")
end
function Tensor.cumsum(t, d) return wrap(C.al_cumsum(t, cdim(d or -1, "cumsum", C.al_ndim(t))), "cumsum") end
function Tensor.matmul(a, b)
  return wrap(C.al_matmul(expect_tensor(a, "matmul", "a"), expect_tensor(b, "matmul", "b")), "matmul")
end

-- (lab.gather too)
function Tensor.gather(t, d, idx)
  expect_tensor(t, "gather", "self"); expect_tensor(idx, "gather", "indices")
  if idx:dtype() ~= "int64" then raise("gather: indices must be int64 (got " .. idx:dtype() .. " of shape " .. idx:shape_string() .. ")") end
  return wrap(C.al_gather(t, cdim(d, "gather", C.al_ndim(t)), wrap(C.al_add_scalar(idx, -1), "gather")), "gather")
end

-- In place (never recorded) ----------------------------------------------------------------------

-- t:name(x) for an in-place op of t and a number x: x checked (named `what` in the error), then the
-- core's op_(t, x); returns t
local function number_op_(name, what, op_)
  return function(t, x)
    check_number(x, name, what)
    check_status(op_(t, x), name)
    return t
  end
end

Tensor.fill_ = number_op_("fill_", "value", C.al_fill_)
function Tensor.zero_(t) check_status(C.al_fill_(t, 0), "zero_") return t end
function Tensor.copy_(t, src) check_status(C.al_copy_(t, expect_tensor(src, "copy_", "src")), "copy_") return t end
function Tensor.add_(t, src, alpha)
  if type(src) == "number" then src = scalar_tensor(src, tonumber(C.al_dtype_of(t)), "add_", t) end
  expect_tensor(src, "add_", "src")
  alpha = args.opt_number(alpha, 1, "add_", "alpha")
  check_status(C.al_add_scaled_(t, src, alpha), "add_")
  return t
end
Tensor.mul_ = number_op_("mul_", "factor", C.al_mul_scalar_)

-- Autograd ---------------------------------------------------------------------------------------

function Tensor.requires_grad(t, flag)
  if flag == nil then return C.al_requires_grad(t) ~= 0 end
  check_status(C.al_set_requires_grad(t, flag and 1 or 0), "requires_grad")
  return t
end
function Tensor.is_leaf(t) return C.al_is_leaf(t) ~= 0 end
-- the name of the op that made t on the graph ("matmul", "attention_softmax_tiled", ...), or nil
function Tensor.grad_fn(t)
  local name = C.al_grad_fn_name(t)
  return name ~= nil and ffi.string(name) or nil
end
function Tensor.backward(t, grad)
  if grad ~= nil then expect_tensor(grad, "backward", "grad") end
  check_status(C.al_backward(t, opt_tensor(grad)), "backward")
end
function Tensor.zero_grad(t) check_status(C.al_zero_grad(t), "zero_grad") return t end
function Tensor.set_grad(t, g)
  if g ~= nil then expect_tensor(g, "set_grad", "grad") end
  check_status(C.al_set_grad(t, opt_tensor(g)), "set_grad")
  return t
end
local function get_grad(t)
  local g = C.al_grad(t)
  if g.p == nil then return nil end
  return ffi.gc(g, C.al_release)
end

-- Metatype ---------------------------------------------------------------------------------------

local function format_number(v, dtype)
  if dtype == "int64" then return string.format("%d", v) end
  if v == math.floor(v) and math.abs(v) < 1e9 then return string.format("%.1f", v) end
  return string.format("%.5g", v)
end

function Tensor.tostring(t)
  local shape, dtype = t:shape(), t:dtype()
  local head = string.format("tensor(%s, %s", t:shape_string(), dtype)
  if t:numel() > 1000 then return head .. ", not shown: more than 1000 elements)" end
  if math.max(0, unpack(shape)) > 1000 then return head .. ", not shown)" end
  local vals = t:totable()
  local function show(v, depth)
    if type(v) ~= "table" then return format_number(v, dtype) end
    local parts = {}
    for i = 1, #v do parts[i] = show(v[i], depth + 1) end
    local sep = depth == #shape and ", " or (",\n" .. string.rep(" ", depth))
    return "[" .. table.concat(parts, sep) .. "]"
  end
  return show(vals, 1) .. "\n" .. head .. (t:requires_grad() and ", requires_grad)" or ")")
end

local mt = {
  __index = function(t, k)
    local m = Tensor[k]
    if m ~= nil then return m end
    if k == "grad" then return get_grad(t) end
    return nil
  end,
  __add = function(a, b) return Tensor.add(a, b) end,
  __sub = function(a, b) return Tensor.sub(a, b) end,
  __mul = function(a, b) return Tensor.mul(a, b) end,
  __div = function(a, b) return Tensor.div(a, b) end,
  __unm = function(a) return wrap(C.al_neg(a), "neg") end,
  __pow = function(a, p) return Tensor.pow(a, p) end,
  __len = function(t) return C.al_ndim(t) > 0 and tonumber(C.al_size(t, 0)) or 0 end,
  __tostring = function(t) return Tensor.tostring(t) end,
}
ffi.metatype("al_ref", mt)

return Tensor
