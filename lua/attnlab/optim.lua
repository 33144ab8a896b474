-- attnlab.optim: SGD, Adam and AdamW over a list of parameters, with the update itself done in C
-- (one fused loop per parameter, al_sgd_step / al_adam_step).  State is kept per parameter index
-- and can be saved and restored exactly (for resumable runs).
local lab = require "attnlab"
local C, raise = lab.C, lab.raise

local optim = {}

local function param_list(params, fn)
  if type(params) == "table" and params.parameters and not lab.is_tensor(params) then params = params:parameters() end
  if type(params) ~= "table" or #params == 0 then raise(fn .. ": expects a non-empty list of parameters (or a module)") end
  for i, p in ipairs(params) do
    if not lab.is_tensor(p) then raise(string.format("%s: parameter %d is not a tensor", fn, i)) end
    if not p:requires_grad() then raise(string.format("%s: parameter %d (shape %s) does not require grad", fn, i, p:shape_string())) end
  end
  return params
end

local function number_opt(opts, key, default, fn, lo)
  local v = opts[key]
  if v == nil then return default end
  if type(v) ~= "number" or v ~= v or (lo and v < lo) then
    raise(string.format("%s: option %s must be a number%s (got %s)", fn, key, lo and (" >= " .. lo) or "", tostring(v)))
  end
  return v
end

local function check(rc) if rc < 0 then raise(require("ffi").string(C.al_last_error())) end end

-- An option the optimiser would ignore is an error (a silently ignored option is a wrong experiment).
local function check_option_keys(opts, fn, valid)
  for k in pairs(opts) do
    local known = false
    for _, v in ipairs(valid) do if k == v then known = true end end
    if not known then
      raise(string.format("%s: unknown option '%s' (valid: %s)", fn, tostring(k), table.concat(valid, ", ")))
    end
  end
end

local Optimizer = {}
Optimizer.__index = Optimizer

function Optimizer:zero_grad()
  for _, p in ipairs(self.params) do p:zero_grad() end
end

-- {tensors = {name = tensor}, numbers = {name = number}}: what a checkpoint needs.
function Optimizer:state_dict()
  local tensors, numbers = {}, { step = self.t }
  for i, st in pairs(self.state) do
    for k, t in pairs(st) do tensors[k .. "." .. i] = t end
  end
  for k, v in pairs(self.hyper) do numbers[k] = v end
  return { tensors = tensors, numbers = numbers }
end

function Optimizer:load_state_dict(sd)
  self.t = sd.numbers and sd.numbers.step or 0
  for name, t in pairs(sd.tensors or {}) do
    local k, i = name:match("^(.-)%.(%d+)$")
    i = tonumber(i)
    if not k or not self.params[i] then raise("load_state_dict: unexpected optimiser state '" .. name .. "'") end
    self.state[i] = self.state[i] or {}
    self.state[i][k] = t:clone()
  end
end

local function new(cls, params, hyper)
  return setmetatable({ params = params, hyper = hyper, state = {}, t = 0 }, cls)
end

-- SGD{lr, momentum = 0, weight_decay = 0, nesterov = false}
local SGD = setmetatable({}, { __index = Optimizer })
SGD.__index = SGD
function optim.SGD(params, opts)
  opts = opts or {}
  if type(opts) ~= "table" then raise("SGD: options must be a table {lr=, momentum=, ...} (got " .. type(opts) .. ")") end
  check_option_keys(opts, "SGD", { "lr", "momentum", "weight_decay", "nesterov" })
  params = param_list(params, "SGD")
  return new(SGD, params, {
    lr = number_opt(opts, "lr", 1e-2, "SGD", 0),
    momentum = number_opt(opts, "momentum", 0, "SGD", 0),
    weight_decay = number_opt(opts, "weight_decay", 0, "SGD", 0),
    nesterov = opts.nesterov and 1 or 0,
  })
end
function SGD:step()
  self.t = self.t + 1
  local h = self.hyper
  for i, p in ipairs(self.params) do
    local buf
    if h.momentum ~= 0 then
      self.state[i] = self.state[i] or { momentum = lab.zeros(p:shape(), p:dtype()) }
      buf = self.state[i].momentum
    end
    check(C.al_sgd_step(p, lab._opt_tensor(buf), h.lr, h.momentum, h.weight_decay, h.nesterov))
  end
end

-- Adam{lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 0}; AdamW decouples the decay.
local Adam = setmetatable({}, { __index = Optimizer })
Adam.__index = Adam
local function make_adam(name, decoupled, default_wd)
  return function(params, opts)
    opts = opts or {}
    if type(opts) ~= "table" then raise(name .. ": options must be a table {lr=, betas=, ...} (got " .. type(opts) .. ")") end
    check_option_keys(opts, name, { "lr", "betas", "eps", "weight_decay" })
    params = param_list(params, name)
    local betas = opts.betas or { 0.9, 0.999 }
    if type(betas) ~= "table" or type(betas[1]) ~= "number" or type(betas[2]) ~= "number" then
      raise(name .. ": betas must be a table of two numbers")
    end
    return new(Adam, params, {
      lr = number_opt(opts, "lr", 1e-3, name, 0),
      beta1 = betas[1], beta2 = betas[2],
      eps = number_opt(opts, "eps", 1e-8, name, 0),
      weight_decay = number_opt(opts, "weight_decay", default_wd, name, 0),
      decoupled = decoupled,
    })
  end
end
optim.Adam = make_adam("Adam", 0, 0)
optim.AdamW = make_adam("AdamW", 1, 1e-2)
function Adam:step()
  self.t = self.t + 1
  local h = self.hyper
  for i, p in ipairs(self.params) do
    local st = self.state[i]
    if not st then
      st = { m = lab.zeros(p:shape(), p:dtype()), v = lab.zeros(p:shape(), p:dtype()) }
      self.state[i] = st
    end
    check(C.al_adam_step(p, st.m, st.v, h.lr, h.beta1, h.beta2, h.eps, h.weight_decay, h.decoupled, self.t))
  end
end

-- Scales the gradients so that their joint L2 norm is at most max_norm; returns the norm before.
function optim.clip_grad_norm(params, max_norm)
  params = param_list(params, "clip_grad_norm")
  if type(max_norm) ~= "number" or max_norm <= 0 then raise("clip_grad_norm: max_norm must be a positive number") end
  local ffi = require "ffi"
  local arr = lab._ref_array(#params)
  for i, p in ipairs(params) do arr[i - 1] = p end
  local norm = C.al_clip_grad_norm(#params, arr, max_norm)
  if norm < 0 then raise(ffi.string(C.al_last_error())) end
  return norm
end

return optim
