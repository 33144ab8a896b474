-- attnlab.nn_layers: the plain layers of lab.nn -- Linear, Embedding, LayerNorm, the activations
-- (ReLU, GELU, Tanh, Sigmoid), Sequential and MLP.  nn.lua hands them to lab.nn.
local lab = require "attnlab"
local core, args = require "attnlab.core", require "attnlab.args"
local nn_module = require "attnlab.nn_module"

local raise, is_tensor = core.raise, core.is_tensor
local check_positive_int, check_options, check_input, uniform = nn_module.check_positive_int, nn_module.check_options, nn_module.check_input, nn_module.uniform

local nn = {}   -- what this file gives lab.nn

---------------------------------------------------------------------------------------------------
-- Linear: y = x W^T + b, W (out, in); initialised as PyTorch does: U(-1/sqrt(in), 1/sqrt(in)).
---------------------------------------------------------------------------------------------------
local Linear = nn_module.class("Linear")
nn.Linear = Linear
function Linear:init(nin, nout, opts)
  check_positive_int(nin, "Linear", "in_features")
  check_positive_int(nout, "Linear", "out_features")
  opts = opts or {}
  if type(opts) ~= "table" then raise("Linear: options must be a table {bias=} (got " .. type(opts) .. ")") end
  check_options(opts, "Linear", { "bias" })
  self.nin, self.nout = nin, nout
  local bound = 1 / math.sqrt(nin)
  self.weight = self:add_param("weight", uniform({ nout, nin }, bound))
  if opts.bias ~= false then self.bias = self:add_param("bias", uniform({ nout }, bound)) end
end
function Linear:forward(x)
  check_input(self, x, "input", self.nin, self.weight:dtype())
  return lab.linear(x, self.weight, self.bias)
end
function Linear:describe() return string.format("Linear(%d, %d%s)", self.nin, self.nout, self.bias and "" or ", bias=false") end

---------------------------------------------------------------------------------------------------
-- Embedding: rows of a (n, dim) table picked by int64 ids (1-based), N(0, 1) initialisation.
---------------------------------------------------------------------------------------------------
local Embedding = nn_module.class("Embedding")
nn.Embedding = Embedding
function Embedding:init(n, dim)
  check_positive_int(n, "Embedding", "count")
  check_positive_int(dim, "Embedding", "dim")
  self.n, self.dim = n, dim
  self.weight = self:add_param("weight", lab.randn{ n, dim })
end
function Embedding:forward(ids)
  if not is_tensor(ids) or ids:dtype() ~= "int64" then
    raise(string.format("%s: ids must be an int64 tensor of ids from 1 to %d (got %s)", self:describe(), self.n,
      is_tensor(ids) and ids:dtype() .. " of shape " .. ids:shape_string() or args.typename(ids)))
  end
  return lab.embedding(self.weight, ids)
end
function Embedding:describe() return string.format("Embedding(%d, %d)", self.n, self.dim) end

---------------------------------------------------------------------------------------------------
-- LayerNorm over the last dimension.
---------------------------------------------------------------------------------------------------
local LayerNorm = nn_module.class("LayerNorm")
nn.LayerNorm = LayerNorm
function LayerNorm:init(dim, opts)
  check_positive_int(dim, "LayerNorm", "dim")
  opts = opts or {}
  if type(opts) ~= "table" then raise("LayerNorm: options must be a table {eps=, bias=} (got " .. type(opts) .. ")") end
  check_options(opts, "LayerNorm", { "eps", "bias" })
  self.dim, self.eps = dim, args.opt_number(opts.eps, 1e-5, "LayerNorm", "eps", { 0, finite = true })
  self.weight = self:add_param("weight", lab.ones{ dim })
  if opts.bias ~= false then self.bias = self:add_param("bias", lab.zeros{ dim }) end
end
function LayerNorm:forward(x)
  check_input(self, x, "input", self.dim, self.weight:dtype())
  return lab.layer_norm(x, self.weight, self.bias, self.eps)
end
function LayerNorm:describe() return string.format("LayerNorm(%d)", self.dim) end

---------------------------------------------------------------------------------------------------
-- Activations as modules, Sequential, MLP.
---------------------------------------------------------------------------------------------------
-- the activation names modules accept (MLP, TransformerBlock), each the name of a tensor method
local activations = { relu = "relu", gelu = "gelu", tanh = "tanh", sigmoid = "sigmoid" }
local Activation = nn_module.class("Activation")
function Activation:init(kind)
  if not activations[kind] then raise("Activation: unknown activation '" .. tostring(kind) .. "' (relu, gelu, tanh, sigmoid)") end
  self.kind = kind
end
function Activation:forward(x) return x[activations[self.kind]](x) end
function Activation:describe() return self.kind end
nn.ReLU = function() return Activation("relu") end
nn.GELU = function() return Activation("gelu") end
nn.Tanh = function() return Activation("tanh") end
nn.Sigmoid = function() return Activation("sigmoid") end

local Sequential = nn_module.class("Sequential")
nn.Sequential = Sequential
function Sequential:init(...)
  local mods = select("#", ...) == 1 and type(...) == "table" and getmetatable(...) == nil and ... or { ... }
  for i, m in ipairs(mods) do
    if type(m) ~= "table" or not m.forward then raise("Sequential: item " .. i .. " is not a module") end
    self:add_child(tostring(i), m)
  end
end
function Sequential:forward(x)
  for _, name in ipairs(self.child_order) do x = self.children[name]:forward(x) end
  return x
end
function Sequential:describe()
  local parts = {}
  for i, name in ipairs(self.child_order) do parts[i] = self.children[name]:describe() end
  return "Sequential(" .. table.concat(parts, ", ") .. ")"
end

-- MLP{dims = {in, hidden..., out}, activation = "gelu", bias = true}, or MLP{in=, hidden=, out=}.
local MLP = nn_module.class("MLP")
nn.MLP = MLP
function MLP:init(opts)
  if type(opts) ~= "table" then raise("MLP: expects a table of options {dims = {...}} or {in=, hidden=, out=}") end
  check_options(opts, "MLP", { "dims", "in", "hidden", "out", "activation", "bias" })
  local dims = opts.dims or { opts["in"], opts.hidden, opts.out }
  if type(dims) ~= "table" then raise("MLP: dims must be a list of sizes (got " .. type(dims) .. ")") end
  if #dims < 2 then raise("MLP: needs at least two sizes in dims") end
  for i = 1, #dims do check_positive_int(dims[i], "MLP", "dims[" .. i .. "]") end
  self.activation = opts.activation or "gelu"
  if not activations[self.activation] then raise("MLP: unknown activation '" .. tostring(self.activation) .. "'") end
  self.dims = dims
  for i = 1, #dims - 1 do self:add_child("fc" .. i, Linear(dims[i], dims[i + 1], { bias = opts.bias })) end
end
function MLP:forward(x)
  local first = self.children[self.child_order[1]]
  if getmetatable(first) == Linear then check_input(self, x, "input", self.dims[1], first.weight:dtype()) end
  local n = #self.child_order
  for i, name in ipairs(self.child_order) do
    x = self.children[name]:forward(x)
    if i < n then x = x[activations[self.activation]](x) end
  end
  return x
end
function MLP:describe() return "MLP(" .. table.concat(self.dims, "-") .. ", " .. self.activation .. ")" end

-- (not a module: the names MLP and TransformerBlock check their activation against)
nn.activations = activations

return nn
