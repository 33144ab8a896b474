-- attnlab.optim: SGD, Adam and AdamW over a list of parameters, with the update itself done in C
-- (one fused loop per parameter, al_sgd_step / al_adam_step).  State is kept per parameter index
-- and can be saved and restored exactly (for resumable runs).
local lab = require "attnlab"
local core, args = require "attnlab.core", require "attnlab.args"
local C, raise = core.C, core.raise

local optim = {}

local function param_list(params, fn)
  if type(params) == "table" and params.parameters and not core.is_tensor(params) then params = params:parameters() end
  if type(params) ~= "table" or #params == 0 then raise(fn .. ": expects a non-empty list of parameters (or a module)") end
  for i, p in ipairs(params) do
    if not core.is_tensor(p) then raise(string.format("%s: parameter %d is not a tensor", fn, i)) end
    if not p:requires_grad() then raise(string.format("%s: parameter %d (shape %s) does not require grad", fn, i, p:shape_string())) end
  end
  return params
end

-- a hyperparameter: a finite number >= 0 (an infinite or NaN one would make every parameter NaN)
local function number_opt(opts, key, default, fn)
  return args.opt_number(opts[key], default, fn, "option " .. key, { 0, finite = true })
end

-- the core's failure, named as the optimiser's method the user called ("Adam:step: ...")
local check_status = core.check_status

-- An option the optimiser would ignore is an error (a silently ignored option is a wrong experiment).
local check_option_keys = args.check_options

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
  if type(sd) ~= "table" or core.is_tensor(sd) then
    raise("load_state_dict: expects an optimiser state {tensors = {...}, numbers = {...}} (got " .. args.typename(sd) .. ")")
  end
  if sd.tensors ~= nil and type(sd.tensors) ~= "table" then raise("load_state_dict: tensors must be a table of name = tensor") end
  if sd.numbers ~= nil and type(sd.numbers) ~= "table" then raise("load_state_dict: numbers must be a table of name = number") end
  local step = sd.numbers and sd.numbers.step or 0
  if type(step) ~= "number" then raise("load_state_dict: numbers.step must be a number (got " .. args.show(step) .. ")") end
  self.t = step
  for name, t in pairs(sd.tensors or {}) do
    if type(name) ~= "string" or not core.is_tensor(t) then
      raise("load_state_dict: tensors must be a table of name = tensor (got " .. args.show(name) .. " = " .. args.typename(t) .. ")")
    end
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
  if opts.nesterov ~= nil and type(opts.nesterov) ~= "boolean" then
    raise("SGD: option nesterov must be true or false (got " .. args.show(opts.nesterov) .. ")")
  end
  return new(SGD, params, {
    lr = number_opt(opts, "lr", 1e-2, "SGD"),
    momentum = number_opt(opts, "momentum", 0, "SGD"),
    weight_decay = number_opt(opts, "weight_decay", 0, "SGD"),
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
    check_status(C.al_sgd_step(p, core.opt_tensor(buf), h.lr, h.momentum, h.weight_decay, h.nesterov), "SGD:step")
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
    if type(betas) ~= "table" or core.is_tensor(betas) or #betas ~= 2 then
      raise(name .. ": betas must be a table of two numbers {beta1, beta2} (got " .. args.show(betas) .. ")")
    end
    for i = 1, 2 do args.check_number(betas[i], name, "betas[" .. i .. "]", { 0, 1, hi_open = true }) end
    return new(Adam, params, {
      lr = number_opt(opts, "lr", 1e-3, name),
      beta1 = betas[1], beta2 = betas[2],
      eps = number_opt(opts, "eps", 1e-8, name),
      weight_decay = number_opt(opts, "weight_decay", default_wd, name),
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
    check_status(C.al_adam_step(p, st.m, st.v, h.lr, h.beta1, h.beta2, h.eps, h.weight_decay, h.decoupled, self.t),
      (h.decoupled == 1 and "AdamW" or "Adam") .. ":step")
  end
end

-- Scales the gradients so that their joint L2 norm is at most max_norm; returns the norm before.
function optim.clip_grad_norm(params, max_norm)
  params = param_list(params, "clip_grad_norm")
  args.check_number(max_norm, "clip_grad_norm", "max_norm", { 0, lo_open = true })
  local arr = core.ref_array(#params)
  for i, p in ipairs(params) do arr[i - 1] = p end
  local norm = C.al_clip_grad_norm(#params, arr, max_norm)
  check_status(norm, "clip_grad_norm")
  return norm
end

return optim
