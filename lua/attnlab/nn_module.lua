-- attnlab.nn_module: what every module of lab.nn is made of -- nn.Module (parameters, buffers,
-- children, state_dict, train/eval), nn.class, the naming of a module's errors, and the helpers each
-- module file shares (check_input, uniform, split_heads, and the option checks of attnlab.args).
-- nn.lua hands what this returns to lab.nn.
local lab = require "attnlab"
local core, args = require "attnlab.core", require "attnlab.args"
local raise, is_tensor = core.raise, core.is_tensor

local nn = {}   -- what this file gives lab.nn

-- Errors inside a module name the module the user called.  A constructor or a forward that fails
-- in an op or in a child module ("linear: ...", "Linear(32, 32): ...", "MultiHeadAttention: ...")
-- is reported with the called module's class name in front ("TransformerBlock: linear: ..."),
-- still located at the user's line; a message that already starts with that name is left as it
-- is.  Only the outermost module call pays for the pcall: the modules it calls run plainly.
local module_depth = 0
local function named_error(name, err)
  if type(err) ~= "string" then error(err, 0) end
  local loc, body = err:match("^([^\n]-:%d+: )(.*)$")
  if not loc then loc, body = "", err end
  local after = body:sub(#name + 1, #name + 1)
  if body:sub(1, #name) == name and (after == ":" or after == "(") then error(err, 0) end
  error(loc .. name .. ": " .. body, 0)
end
local function finish_named(name, ok, ...)
  module_depth = module_depth - 1
  if ok then return ... end
  named_error(name, (...))
end
-- f(...) with its errors named as the module `name` (the outermost module call only)
local function call_named(name, f, ...)
  if module_depth > 0 then return f(...) end
  module_depth = module_depth + 1
  return finish_named(name, pcall(f, ...))
end

local Module = {}
Module.__index = Module
Module.__call = function(self, ...) return call_named(self.name or "module", self.forward, self, ...) end
nn.Module = Module

-- A new module class: `local Foo = nn.class("Foo")`, then `function Foo:init(opts) ... end`.
function nn.class(name)
  local cls = setmetatable({ name = name }, { __index = Module })
  cls.__index = cls
  cls.__call = Module.__call
  cls.__tostring = function(self) return self:describe() end
  setmetatable(cls, {
    __index = Module,
    __call = function(c, ...)
      local self = setmetatable({ params = {}, param_order = {}, children = {}, child_order = {}, training = true }, c)
      call_named(name or "module", c.init, self, ...)
      return self
    end,
  })
  return cls
end

function Module:init() end
function Module:forward() raise(self.name .. ": forward is not defined") end
function Module:describe() return self.name end

function Module:add_param(name, t)
  if self.params[name] == nil then self.param_order[#self.param_order + 1] = name end
  self.params[name] = t:requires_grad(true)
  return t
end

-- A buffer: state that is saved and loaded with the module but not trained (no gradient, not in
-- :parameters()), e.g. routing attention's centroids.  Calling it again replaces the tensor.
function Module:add_buffer(name, t)
  if not self.buffers then self.buffers, self.buffer_order = {}, {} end
  if self.buffers[name] == nil then self.buffer_order[#self.buffer_order + 1] = name end
  self.buffers[name] = t
  return t
end

-- (name, tensor) pairs of one kind of a module's tensors ("params" or "buffers"), in a fixed order:
-- its own first, then its children's depth-first.
local function named_tensors(m, kind, prefix, out)
  local map, order = m[kind], kind == "params" and m.param_order or m.buffer_order
  for _, name in ipairs(order or {}) do out[#out + 1] = { prefix .. name, map[name] } end
  for _, name in ipairs(m.child_order) do named_tensors(m.children[name], kind, prefix .. name .. ".", out) end
  return out
end

function Module:named_buffers(prefix, out) return named_tensors(self, "buffers", prefix or "", out or {}) end

function Module:add_child(name, m)
  if self.children[name] == nil then self.child_order[#self.child_order + 1] = name end
  self.children[name] = m
  return m
end

function Module:named_parameters(prefix, out) return named_tensors(self, "params", prefix or "", out or {}) end

function Module:parameters()
  local list = {}
  for i, pair in ipairs(self:named_parameters()) do list[i] = pair[2] end
  return list
end

function Module:num_parameters()
  local n = 0
  for _, p in ipairs(self:parameters()) do n = n + p:numel() end
  return n
end

function Module:state_dict()
  local sd = {}
  for _, pair in ipairs(self:named_parameters()) do sd[pair[1]] = pair[2] end
  for _, pair in ipairs(self:named_buffers()) do sd[pair[1]] = pair[2] end
  return sd
end

-- Copies values in place, so optimisers holding these parameters keep working.
function Module:load_state_dict(sd)
  if type(sd) ~= "table" then raise("load_state_dict: expects a table of name = tensor (got " .. type(sd) .. ")") end
  for _, pair in ipairs(self:named_parameters()) do
    local name, p = pair[1], pair[2]
    local t = sd[name]
    if t == nil then raise("load_state_dict: missing parameter '" .. name .. "'") end
    if not is_tensor(t) then raise("load_state_dict: '" .. name .. "' is a " .. type(t) .. ", not a tensor") end
    if t:shape_string() ~= p:shape_string() then
      raise(string.format("load_state_dict: parameter '%s' has shape %s, the state has %s", name, p:shape_string(), t:shape_string()))
    end
    p:copy_(t)
  end
  for _, pair in ipairs(self:named_buffers()) do
    local name, b = pair[1], pair[2]
    local t = sd[name]
    if t == nil then raise("load_state_dict: missing buffer '" .. name .. "'") end
    if not is_tensor(t) or t:shape_string() ~= b:shape_string() then
      raise(string.format("load_state_dict: buffer '%s' has shape %s, the state has %s", name, b:shape_string(),
        is_tensor(t) and t:shape_string() or type(t)))
    end
    b:copy_(t)
  end
  return self
end

-- module:to("cuda") / module:to("cpu") / module:to(dtype): every parameter and buffer, its own and
-- its children's, replaced by a copy there (parameters stay leaves that require grad; a field of the
-- module that named the old tensor names the new one).  An optimiser made before holds the old
-- tensors: make it after moving the model, as in PyTorch.
function Module:to(what)
  local function move(m)
    local replaced = {}
    for _, kind in ipairs{ "params", "buffers" } do
      for name, t in pairs(m[kind] or {}) do
        local moved = t:detach():to(what)
        if kind == "params" then moved = moved:contiguous():requires_grad(true) end
        m[kind][name] = moved
        replaced[#replaced + 1] = { t, moved }
      end
    end
    for k, v in pairs(m) do   -- the fields (self.weight ...) that named the old tensors
      if is_tensor(v) then
        for _, pair in ipairs(replaced) do
          if v.p == pair[1].p then m[k] = pair[2] end
        end
      end
    end
    for _, name in ipairs(m.child_order) do move(m.children[name]) end
  end
  move(self)
  return self
end

function Module:zero_grad()
  for _, p in ipairs(self:parameters()) do p:zero_grad() end
end

function Module:train(on)
  self.training = on ~= false
  for _, name in ipairs(self.child_order) do self.children[name]:train(on) end
  return self
end
function Module:eval() return self:train(false) end

local check_positive_int = args.check_positive_int
-- Every constructor that takes an options table rejects a key it does not know, naming itself and
-- the valid keys: "TransformerBlock: unknown option 'bogus' (valid: dim, heads, ...)" (the checker
-- every lab function shares, lua/attnlab/args.lua).
local check_options = args.check_options
nn.check_options = check_options

-- The input check a module's forward starts with, so that a wrong input is reported by the module
-- the user called, with the shapes: x must be a tensor of `ndim` dimensions (any when nil; layout
-- names them, e.g. "(B, N, dim)") whose last one is `width`, of the module's float dtype.  label
-- names the module in the message: a string, or the module itself (its input_label field when it
-- has one, else its describe()), looked at only when the check fails, so that a forward that
-- passes it makes no string.
local function check_input(label, x, what, width, dtype, ndim, layout)
  if is_tensor(x) and (ndim == nil or x:dim() == ndim) and x:dim() >= 1 and x:size(-1) == width and x:dtype() == dtype then
    return x
  end
  if type(label) == "table" then label = label.input_label or label:describe() end
  if not is_tensor(x) then raise(string.format("%s: %s must be a tensor (got %s)", label, what, args.typename(x))) end
  if ndim and x:dim() ~= ndim then
    raise(string.format("%s: %s must be a %d-d tensor %s (got shape %s)", label, what, ndim, layout or "", x:shape_string()))
  end
  if x:dim() < 1 or x:size(-1) ~= width then
    raise(string.format("%s: %s of shape %s does not end in %d", label, what, x:shape_string(), width))
  end
  if x:dtype() ~= dtype then
    raise(string.format("%s: %s is %s (shape %s) and the module's parameters are %s (convert with x:to(\"%s\"))", label, what,
      x:dtype(), x:shape_string(), dtype, dtype))
  end
  return x
end
nn.check_input = check_input

local function uniform(shape, bound)
  return lab.rand(shape) * (2 * bound) - bound
end
nn.uniform = uniform

-- (B, N, H*hd) -> (B, H, N, hd)
local function split_heads(x, h, hd)
  local s = x:shape()
  return x:reshape{ s[1], s[2], h, hd }:permute(1, 3, 2, 4)
end

nn.split_heads = split_heads
nn.check_positive_int = check_positive_int

return nn
