-- attnlab.functions: the lab functions over tensors that are not methods of one tensor -- cat,
-- stack, where, matmul, solve, linear, layer_norm, embedding, gather, dropout, the losses, the
-- function forms of the tensor methods (lab.exp(t) for t:exp()) -- and the autograd scopes
-- (param, no_grad, grad_enabled).  init.lua hands what this returns to lab.
local core, args = require "attnlab.core", require "attnlab.args"
local Tensor = require "attnlab.tensor"

local C, raise, wrap, is_tensor = core.C, core.raise, core.wrap, core.is_tensor
local check_status, cdim, opt_tensor, scalar_tensor = core.check_status, core.cdim, core.opt_tensor, core.scalar_tensor
local ref_array = core.ref_array
local expect_tensor, check_int = args.expect_tensor, args.check_int

local lab = {}   -- the functions this file gives lab

local function tensor_list(list, fn)
  if type(list) ~= "table" or is_tensor(list) then raise(fn .. ": expects a list of tensors") end
  local n = #list
  if n == 0 then raise(fn .. ": needs at least one tensor") end
  local arr = ref_array(n)
  for i = 1, n do arr[i - 1] = expect_tensor(list[i], fn, "list[" .. i .. "]") end
  return n, arr
end
function lab.cat(list, d)
  local n, arr = tensor_list(list, "cat")
  return wrap(C.al_cat(n, arr, cdim(d or 1, "cat", C.al_ndim(arr[0]))), "cat")
end
function lab.stack(list, d)
  local n, arr = tensor_list(list, "stack")
  return wrap(C.al_stack(n, arr, cdim(d or 1, "stack", C.al_ndim(arr[0]) + 1)), "stack")   -- (al_stack's errors say cat or unsqueeze)
end
function lab.where(cond, a, b)
  expect_tensor(cond, "where", "cond")
  if type(a) == "number" then a = scalar_tensor(a, is_tensor(b) and tonumber(C.al_dtype_of(b)) or 0, "where", is_tensor(b) and b or cond) end
  if type(b) == "number" then b = scalar_tensor(b, tonumber(C.al_dtype_of(expect_tensor(a, "where", "a"))), "where", a) end
  return wrap(C.al_where(cond, expect_tensor(a, "where", "a"), expect_tensor(b, "where", "b")), "where")
end
function lab.matmul(a, b) return Tensor.matmul(a, b) end
function lab.solve(a, b) return wrap(C.al_solve(expect_tensor(a, "solve", "A"), expect_tensor(b, "solve", "B")), "solve") end
function lab.linear(x, w, b)
  expect_tensor(x, "linear", "x"); expect_tensor(w, "linear", "weight")
  if b ~= nil then expect_tensor(b, "linear", "bias") end
  return wrap(C.al_linear(x, w, opt_tensor(b)), "linear")
end
local eps_range = { 0, finite = true }
function lab.layer_norm(x, w, b, eps)
  if w ~= nil then expect_tensor(w, "layer_norm", "weight") end
  if b ~= nil then expect_tensor(b, "layer_norm", "bias") end
  eps = args.opt_number(eps, 1e-5, "layer_norm", "eps", eps_range)
  return wrap(C.al_layer_norm(expect_tensor(x, "layer_norm", "x"), opt_tensor(w), opt_tensor(b), eps), "layer_norm")
end
function lab.embedding(weight, ids)
  expect_tensor(weight, "embedding", "weight"); expect_tensor(ids, "embedding", "ids")
  if ids:dtype() ~= "int64" then raise("embedding: ids must be int64 (got " .. ids:dtype() .. " of shape " .. ids:shape_string() .. ")") end
  return wrap(C.al_embedding(weight, wrap(C.al_add_scalar(ids, -1), "embedding")), "embedding")
end
lab.gather = Tensor.gather
-- p: the probability of dropping an element, in [0, 1); training = false: the identity
local dropout_p = { 0, 1, hi_open = true }
function lab.dropout(x, p, training)
  expect_tensor(x, "dropout", "x")
  p = args.opt_number(p, 0.5, "dropout", "p", dropout_p)
  if C.al_dtype_of(x) == 2 then raise("dropout: x must be a float tensor (got int64 of shape " .. x:shape_string() .. ")") end
  return wrap(C.al_dropout(x, p, training == false and 0 or 1), "dropout")
end
for _, name in ipairs{ "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "gelu", "abs", "softmax", "log_softmax",
                        "sum", "mean", "max", "argmax", "pow", "clamp", "maximum", "minimum", "logsumexp",
                        "cumsum" } do
  lab[name] = function(t, ...) return Tensor[name](expect_tensor(t, name, "self"), ...) end
end

function lab.mse(pred, target)
  return wrap(C.al_mse(expect_tensor(pred, "mse", "pred"), expect_tensor(target, "mse", "target")), "mse")
end
function lab.cross_entropy(logits, target, opts)
  expect_tensor(logits, "cross_entropy", "logits"); expect_tensor(target, "cross_entropy", "target")
  opts = args.options_table(opts, "cross_entropy", "{ignore=}")
  args.check_options(opts, "cross_entropy", { "ignore" })
  if target:dtype() ~= "int64" then
    raise("cross_entropy: target ids must be int64 (got " .. target:dtype() .. " of shape " .. target:shape_string() .. ")")
  end
  local ignore = -2 ^ 52
  if opts.ignore ~= nil then ignore = check_int(opts.ignore, "cross_entropy", "opts.ignore") - 1 end
  return wrap(C.al_cross_entropy(logits, wrap(C.al_add_scalar(target, -1), "cross_entropy"), ignore), "cross_entropy")
end

-- Autograd scopes, parameters -------------------------------------------------------------------

function lab.param(t)
  check_status(C.al_set_requires_grad(expect_tensor(t, "param", "t"), 1), "param")
  return t
end
function lab.no_grad(fn)
  if type(fn) ~= "function" then raise("no_grad: expects a function") end
  local prev = C.al_set_grad_enabled(0)
  local res = { pcall(fn) }
  C.al_set_grad_enabled(prev)
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, table.maxn(res))
end
function lab.grad_enabled() return C.al_is_grad_enabled() ~= 0 end
function lab.set_grad_enabled(on) return C.al_set_grad_enabled(on and 1 or 0) ~= 0 end

return lab
