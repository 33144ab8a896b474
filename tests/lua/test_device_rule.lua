-- test_device_rule.lua -- the device rule, for every function of the C core's public header: given
-- a tensor that lives on the CUDA device, a function either works on it (a view, an introspection,
-- an op with a CUDA kernel) or refuses it with an error that names the device; none reads or writes
-- the memory as if it were the CPU's.  That last failure is a crash (or a silent wrong number on a
-- real GPU), so it is caught here without a GPU: al_unreadable_device_tensor makes a tensor that
-- says "cuda" and whose pages are mapped PROT_NONE, each function is called on it in a child
-- process (fork), and a child killed by a signal names a function that touched device memory.
--
-- The functions are read from the header's FFI declarations, so a function added later is tested
-- without editing this file; its arguments are made from their C types (tensors: the device tensor;
-- shapes: {2,3,4}; dims, counts, scalars: small valid values).
local check = dofile("tests/lua/check.lua")("device_rule")
local lab = require "attnlab"
local ffi = require "ffi"
local core = require "attnlab.core"
local C = core.C

ffi.cdef [[
int fork(void);
int waitpid(int pid, int *status, int options);
void _exit(int status);
]]

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

-- Functions that never take a tensor, or that are about the host by definition, are not asked.
local shape = ffi.new("int64_t[3]", { 2, 3, 4 })
local function device_tensor(dtype)
  local t = C.al_unreadable_device_tensor(3, shape, dtype or 0)
  assert(t.p ~= nil, "al_unreadable_device_tensor failed: " .. ffi.string(C.al_last_error()))
  return t
end

-- One argument from its C declaration (type and name).
local function argument(ctype, name)
  ctype = ctype:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
  if ctype == "al_ref" then
    return device_tensor(name:match("idx") or name:match("index") or name:match("target") and 2 or 0)
  elseif ctype == "const al_ref *" then
    local a = core.ref_array(2)
    a[0], a[1] = device_tensor(), device_tensor()
    return a
  elseif ctype == "al_ref *" then
    return core.ref_array(4)
  elseif ctype:match("^const int64_t %*") or ctype:match("^int64_t %*") then
    if name == "idx" then return ffi.new("int64_t[3]", { 1, 2, 3 }) end   -- an element inside {2,3,4}
    return ffi.new("int64_t[8]", { 2, 3, 4, 1, 1, 1, 1, 1 })
  elseif ctype:match("^const int %*") or ctype:match("^int %*") then
    return ffi.new("int[8]", { 0, 1, 2, 3, 4, 5, 6, 7 })
  elseif ctype:match("^const double %*") or ctype:match("^double %*") then
    return ffi.new("double[64]")
  elseif ctype:match("^const float %*") or ctype:match("^float %*") then
    return ffi.new("float[64]")
  elseif ctype:match("char %*const %*") or ctype:match("char %*%*") then
    return ffi.new("const char *[4]", { "a", "b", "c", "d" })
  elseif ctype == "char *" then
    return ffi.new("char[64]")
  elseif ctype:match("char %*") then
    if name == "metadata_json" then return nil end
    return name == "path" and (os.getenv("TMPDIR") or "/tmp") .. "/attnlab-device-rule.out" or "x"
  elseif ctype:match("^const al_[%w_]+ %*$") or ctype:match("^al_[%w_]+ %*$") then
    -- an options struct, zeroed; an opaque handle (a run log, a reader) cannot be made: NULL
    local ok, v = pcall(ffi.new, (ctype:gsub("^const ", ""):gsub(" %*$", "")) .. "[1]")
    return ok and v or nil
  elseif ctype:match("%*") then
    return nil
  elseif name == "ndim" then
    return 3
  elseif ctype == "int64_t" and name == "n" then
    return 24   -- an element count: that of {2,3,4}
  elseif name == "n" or name:match("^n_") then
    return 2
  elseif ctype == "double" or ctype == "float" then
    return 1
  else
    return 0   -- ints, int64s, enums (dims count from 0; dtype float32; device cpu)
  end
end

-- The declarations: "ret name(params);" on one line each after joining continuation lines.
local decls = core.ffi_declarations:gsub("/%*.-%*/", " "):gsub("\n", " ")
local functions = {}
for ret, name, params in decls:gmatch("([%w_ %*]-)%s*%f[%w_](al_[%w_]+)%s*%(([^()]*)%)%s*;") do
  if params:match("al_ref") then functions[#functions + 1] = { name = name, params = params } end
end
check.ok(#functions > 100, "the header declares the functions that take tensors", tostring(#functions))

local outcome = { refused = {}, worked = {}, other = {}, crashed = {} }
for _, f in ipairs(functions) do
  local args, n = {}, 0
  for p in (f.params .. ","):gmatch("([^,]*),") do
    p = p:gsub("^%s+", ""):gsub("%s+$", "")
    if p ~= "" and p ~= "void" then
      local ctype, name = p:match("^(.-)%s*([%w_]+)$")
      n = n + 1
      args[n] = argument(ctype, name)
    end
  end
  C.al_clear_error()
  local pid = ffi.C.fork()
  if pid == 0 then
    local ok, result = pcall(C[f.name], unpack(args, 1, n))
    local message = ffi.string(C.al_last_error())
    local code
    if not ok then code = 5 message = tostring(result)
    elseif message:match("cuda") or message:match("CUDA") then code = 0
    elseif message == "" or message == "unknown error" then code = 3
    else code = 4 end
    io.stdout:write(f.name, ": ", message, "\n")
    io.stdout:flush()
    ffi.C._exit(code)
  end
  local status = ffi.new("int[1]")
  ffi.C.waitpid(pid, status, 0)
  local s = status[0]
  local signal, code = bit.band(s, 0x7f), bit.band(bit.rshift(s, 8), 0xff)
  if signal ~= 0 then outcome.crashed[#outcome.crashed + 1] = f.name .. " (signal " .. signal .. ")"
  elseif code == 0 then outcome.refused[#outcome.refused + 1] = f.name
  elseif code == 3 then outcome.worked[#outcome.worked + 1] = f.name
  else outcome.other[#outcome.other + 1] = f.name .. " (exit " .. code .. ")" end
end

check.ok(#outcome.crashed == 0, "no function reads or writes a CUDA tensor's memory on the CPU",
  table.concat(outcome.crashed, ", "))
-- (The count falls as ops get CUDA kernels: such an op either refuses here for want of a device or
-- stops first at its other made-up arguments; it only guards that the harness reaches the header.)
check.ok(#outcome.refused >= #functions / 2, "the device tensor reached most functions, which refused it naming the device",
  tostring(#outcome.refused))
-- What worked on the device tensor must be metadata only: views and introspection.
print("note: " .. #outcome.refused .. " functions refuse a CUDA tensor; worked on it (metadata only): " ..
  table.concat(outcome.worked, " "))
if #outcome.other > 0 then
  print("note: stopped before the device check by their other arguments: " .. table.concat(outcome.other, " "))
end
os.exit(check.report())
