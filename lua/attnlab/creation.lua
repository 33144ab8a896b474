-- attnlab.creation: making tensors (lab.tensor from numbers or nested tables, zeros, ones, full,
-- randn, rand, randint, arange, eye) and the random generator's seed and state.  init.lua hands
-- what this returns to lab.
local ffi = require "ffi"
local core, args = require "attnlab.core", require "attnlab.args"

local C, raise, wrap, is_tensor = core.C, core.raise, core.wrap, core.is_tensor
local parse_shape, parse_dtype, scalar_tensor, placed = core.parse_shape, core.parse_dtype, core.scalar_tensor, core.placed
local typename, check_int, check_number = args.typename, args.check_int, args.check_number

local lab = {}   -- the functions this file gives lab

local function flatten(data, shape, depth, out, fn)
  if type(data) == "table" and not is_tensor(data) then
    local n = #data
    if shape[depth] == nil then shape[depth] = n
    elseif shape[depth] ~= n then
      raise(string.format("%s: ragged nested table (dimension %d has sizes %d and %d)", fn, depth, shape[depth], n))
    end
    for i = 1, n do flatten(data[i], shape, depth + 1, out, fn) end
  else
    if shape[depth] ~= nil then raise(string.format("%s: ragged nested table at depth %d", fn, depth)) end
    local v = data
    if type(v) == "boolean" then v = v and 1 or 0 end
    if type(v) ~= "number" then raise(string.format("%s: element %d is %s, not a number", fn, #out + 1, typename(v))) end
    out[#out + 1] = v
  end
end

function lab.tensor(data, dtype)
  if type(data) == "number" or type(data) == "boolean" then
    return scalar_tensor(type(data) == "boolean" and (data and 1 or 0) or data, parse_dtype(dtype, "tensor"), "tensor")
  end
  if is_tensor(data) then   -- a copy where data is (a clone or a conversion keeps the device)
    if dtype == nil then return wrap(C.al_clone(data), "tensor") end
    return wrap(C.al_to_dtype(data, parse_dtype(dtype, "tensor")), "tensor")
  end
  if type(data) ~= "table" then raise("tensor: expected a number or a nested table of numbers (got " .. type(data) .. ")") end
  local shape, flat = {}, {}
  flatten(data, shape, 1, flat, "tensor")
  local dt = parse_dtype(dtype, "tensor")
  local n, arr = parse_shape("tensor", shape)
  local buf = ffi.new(dt == 0 and "float[?]" or (dt == 1 and "double[?]" or "int64_t[?]"), math.max(#flat, 1))
  for i = 1, #flat do buf[i - 1] = flat[i] end
  return placed(wrap(C.al_from_buffer(n, arr, dt, buf), "tensor"), "tensor")
end

local function shape_and_dtype(fn, ...)
  local args = { ... }
  local dtype
  if type(args[#args]) == "string" then dtype = table.remove(args) end
  local n, arr = parse_shape(fn, unpack(args))
  return n, arr, parse_dtype(dtype, fn)
end

-- (lab.zeros and lab.ones call al_full, whose errors say "full: ...": wrap renames them)
-- (each made on the CPU and moved to the default device: see core.placed)
function lab.zeros(...) local n, a, dt = shape_and_dtype("zeros", ...) return placed(wrap(C.al_full(n, a, 0, dt), "zeros"), "zeros") end
function lab.ones(...) local n, a, dt = shape_and_dtype("ones", ...) return placed(wrap(C.al_full(n, a, 1, dt), "ones"), "ones") end
function lab.empty(...) local n, a, dt = shape_and_dtype("empty", ...) return placed(wrap(C.al_empty(n, a, dt), "empty"), "empty") end
function lab.full(shape, value, dtype)
  check_number(value, "full", "value")
  local n, a = parse_shape("full", shape)
  return placed(wrap(C.al_full(n, a, value, parse_dtype(dtype, "full")), "full"), "full")
end
function lab.randn(...) local n, a, dt = shape_and_dtype("randn", ...) return placed(wrap(C.al_randn(n, a, dt), "randn"), "randn") end
function lab.rand(...) local n, a, dt = shape_and_dtype("rand", ...) return placed(wrap(C.al_rand(n, a, dt), "rand"), "rand") end
-- randint(n, shape): integers 1 .. n (token ids for n symbols); randint(low, high, shape): low ..
-- high, both ends included, as Lua's math.random(m, n) and the 1-based convention have it.  (The
-- core's al_randint takes the half-open [low, high + 1).)
function lab.randint(low, high, shape)
  if shape == nil and type(high) == "table" then low, high, shape = 1, low, high end
  check_int(low, "randint", "low"); check_int(high, "randint", "high")
  if high < low then
    raise(string.format("randint: empty range %d .. %d (both ends are included, as in math.random: high must be >= low)", low, high))
  end
  local n, a = parse_shape("randint", shape)
  return placed(wrap(C.al_randint(low, high + 1, n, a), "randint"), "randint")
end
function lab.arange(a, b, step, dtype)
  if type(step) == "string" then dtype, step = step, nil end
  if b == nil or type(b) == "string" then dtype = dtype or b; a, b = 0, a end
  check_number(a, "arange", "start"); check_number(b, "arange", "end")
  step = args.opt_number(step, 1, "arange", "step")
  return placed(wrap(C.al_arange(a, b, step, parse_dtype(dtype, "arange")), "arange"), "arange")
end
function lab.eye(n, dtype)
  check_int(n, "eye", "n")
  if n < 0 then raise("eye: size must be >= 0 (got " .. n .. ")") end
  return placed(wrap(C.al_eye(n, parse_dtype(dtype, "eye")), "eye"), "eye")
end

-- lab.default_device() is "cpu" or "cuda": where lab.zeros, lab.randn, lab.tensor ... and so every
-- module's parameters are made.  `attnlab run --device cuda` sets it for the whole script.
local device_ids, device_names = { cpu = 0, cuda = 1 }, { [0] = "cpu", [1] = "cuda" }
function lab.default_device() return device_names[core.default_device()] end
function lab.set_default_device(d)
  local id = device_ids[d]
  if id == nil then raise("set_default_device: device must be \"cpu\" or \"cuda\" (got " .. args.show(d) .. ")") end
  if id == 1 and C.al_cuda_available() == 0 then
    raise("set_default_device: no CUDA device (" .. ffi.string(C.al_cuda_unavailable_reason()) .. ")")
  end
  core.set_default_device(id)
end

-- (the core takes the seed as an unsigned integer: a negative one would silently be another)
function lab.seed(n)
  check_int(n, "seed", "seed")
  if n < 0 then raise("seed: seed must be an integer >= 0 (got " .. n .. ")") end
  C.al_seed(n)
end
function lab.rng_state()
  local s, c = ffi.new("uint64_t[1]"), ffi.new("uint64_t[1]")
  C.al_rng_get_state(s, c)
  local seed = tostring(s[0]):gsub("ULL", "")
  local counter = tostring(c[0]):gsub("ULL", "")
  return { seed, counter }
end
function lab.set_rng_state(st)
  if type(st) ~= "table" or is_tensor(st) or #st ~= 2 then
    raise("set_rng_state: expected {seed, counter} as lab.rng_state() returns it (got " .. typename(st) .. ")")
  end
  for i, what in ipairs{ "seed", "counter" } do
    local x = st[i]
    if not ((type(x) == "number" and x >= 0 and x < 2^53 and x == math.floor(x)) or (type(x) == "string" and x:match("^%d+$"))) then
      raise("set_rng_state: the " .. what .. " must be an integer >= 0 or a string of digits (got " .. args.show(x) .. ")")
    end
  end
  local function u64(x)
    if type(x) == "number" then return ffi.new("uint64_t", x) end
    local v = ffi.new("uint64_t", 0ULL)
    for ch in tostring(x):gmatch("%d") do v = v * 10ULL + (ch:byte() - 48) end
    return v
  end
  C.al_rng_set_state(u64(st[1]), u64(st[2]))
end

return lab
