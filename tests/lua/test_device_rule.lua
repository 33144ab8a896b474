-- test_device_rule.lua -- the device rule, for every function of the C core's public header: given
-- a tensor that lives on the CUDA device, a function either works on it (a view, an introspection,
-- an op with a CUDA kernel) or refuses it with an error that names the device; none reads or writes
-- the memory as if it were the CPU's.  That last failure is a crash (or a silent wrong number on a
-- real GPU), so it is caught here without a GPU: al_unreadable_device_tensor makes a tensor that
-- says "cuda" and whose pages are mapped PROT_NONE, each function is called on it in a child
-- process (fork), and a child killed by a signal names a function that touched device memory.
--
-- The functions are read from the header's FFI declarations (tests/lua/header_sweep.lua), so a
-- function added later is tested without editing this file.
local check = dofile("tests/lua/check.lua")("device_rule")
local lab = require "attnlab"
local ffi = require "ffi"
local core = require "attnlab.core"
local C = core.C

if C.al_cuda_available() ~= 0 then
  -- With a real GPU the device tensor would reach real kernels; make test-cuda covers that build.
  check.skip(1, "a CUDA device is present: the device rule is tested by make test-cuda here")
  os.exit(check.report())
end

-- The Lua side of devices, without a GPU: the default device, moving tensors and modules.
check.ok(lab.default_device() == "cpu", "tensors are made on the CPU by default")
check.fails(function() lab.set_default_device("cuda") end, "no CUDA device", "set_default_device says why there is no GPU")
check.fails(function() lab.set_default_device("gpu") end, '"cpu" or "cuda"', "set_default_device names the devices")
check.fails(function() lab.randn{ 2 }:to("cuda") end, "no CUDA device", "to(\"cuda\") says why there is no GPU")
check.ok(lab.randn{ 2 }:to("cpu"):device() == "cpu", "to(\"cpu\") on the CPU")
do
  local model = lab.nn.Sequential(lab.nn.Linear(3, 4), lab.nn.LayerNorm(4)):to("float64")
  local ok = true
  for _, p in ipairs(model:parameters()) do ok = ok and p:dtype() == "float64" and p:requires_grad() end
  check.ok(ok and #model:parameters() == 4, "module:to moves every parameter, which stay leaves that require grad")
  local lin = model.children[model.child_order[1]]
  check.ok(lin.weight:dtype() == "float64" and lin.weight.p == lin.params.weight.p, "module:to moves the fields that name the parameters")
  local opt = lab.optim.SGD(model:parameters(), { lr = 0.1 })
  local before = lin.weight:clone()
  local loss = model(lab.randn({ 5, 3 }, "float64")):pow(2):sum()
  loss:backward()
  opt:step()
  check.ok((lin.weight - before):abs():sum():item() > 0, "a module moved with :to trains")
end

-- Every header function that takes a tensor, given the unreadable device tensor (header_sweep.lua)
local shape = ffi.new("int64_t[3]", { 2, 3, 4 })
local function device_tensor(dtype)
  local t = C.al_unreadable_device_tensor(3, shape, dtype or 0)
  assert(t.p ~= nil, "al_unreadable_device_tensor failed: " .. ffi.string(C.al_last_error()))
  return t
end
local outcome = dofile("tests/lua/header_sweep.lua")(device_tensor, function(message)
  return message:match("cuda") ~= nil or message:match("CUDA") ~= nil
end)
local functions = outcome.functions
check.ok(#functions > 100, "the header declares the functions that take tensors", tostring(#functions))
print("note: " .. #functions .. " functions take a tensor")

check.ok(#outcome.crashed == 0, "no function reads or writes a CUDA tensor's memory on the CPU",
  table.concat(outcome.crashed, ", "))
-- (The count falls as ops get CUDA kernels: such an op either refuses here for want of a device or
-- stops first at its other made-up arguments; it only guards that the harness reaches the header:
-- 52 of 106 functions in the seventh session, when the attention primitives gained kernels.)
check.ok(#outcome.refused >= #functions / 3, "the device tensor reached many functions, which refused it naming the device",
  tostring(#outcome.refused) .. " of " .. #functions)
-- What worked on the device tensor must be metadata only: views and introspection.
print("note: " .. #outcome.refused .. " functions refuse a CUDA tensor; worked on it (metadata only): " ..
  table.concat(outcome.worked, " "))
if #outcome.other > 0 then
  print("note: stopped before the device check by their other arguments: " .. table.concat(outcome.other, " "))
end
os.exit(check.report())
