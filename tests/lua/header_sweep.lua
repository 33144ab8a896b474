-- header_sweep.lua -- calls every function of the C core's public header that takes a tensor, each
-- in a child process (fork), with a given tensor for every tensor argument, and sorts the outcomes.
-- test_device_rule.lua (a tensor that says "cuda" over PROT_NONE pages) and
-- test_bfloat16_rule.lua (the same in bfloat16, on the emulated CUDA backend) are built on it.
--
-- The functions are read from the header's FFI declarations, so a function added later is swept
-- without editing a test; their other arguments are made from their C types (shapes: {2,3,4};
-- dims, counts, scalars: small valid values).
--   local sweep = dofile("tests/lua/header_sweep.lua")
--   local outcome = sweep(make_tensor, function(message) return message:match("cuda") ~= nil end)
-- make_tensor(dtype) returns the tensor to pass (dtype 2 for index-like arguments); the predicate
-- says whether an error message is the refusal the test wants.  outcome.functions lists what was
-- swept; outcome.refused, .worked (no error), .other (another error: "name (exit code)") and
-- .crashed ("name (signal n)", or stopped by the CUDA emulation) the names by what happened.
local ffi = require "ffi"
local core = require "attnlab.core"
local C = core.C

ffi.cdef [[
int fork(void);
int waitpid(int pid, int *status, int options);
void _exit(int status);
]]

-- The exit status of a child whose kernel the CUDA emulation stopped on an invalid memory access
-- (tests/cuda_emulation/blocks.cpp): on the emulated backend, the crash of a real read.
local EMULATION_STOPPED = 70

return function(make_tensor, is_refusal)
  -- One argument from its C declaration (type and name).
  local function argument(ctype, name)
    ctype = ctype:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
    if ctype == "al_ref" then
      return make_tensor(name:match("idx") or name:match("index") or name:match("target") and 2 or nil)
    elseif ctype == "const al_ref *" then
      local a = core.ref_array(2)
      a[0], a[1] = make_tensor(), make_tensor()
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
      return name == "path" and (os.getenv("TMPDIR") or "/tmp") .. "/attnlab-header-sweep.out" or "x"
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
  for _, name, params in decls:gmatch("([%w_ %*]-)%s*%f[%w_](al_[%w_]+)%s*%(([^()]*)%)%s*;") do
    if params:match("al_ref") then functions[#functions + 1] = { name = name, params = params } end
  end

  local outcome = { functions = functions, refused = {}, worked = {}, other = {}, crashed = {} }
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
      elseif is_refusal(message) then code = 0
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
    elseif code == EMULATION_STOPPED then outcome.crashed[#outcome.crashed + 1] = f.name .. " (the CUDA emulation stopped it)"
    elseif code == 0 then outcome.refused[#outcome.refused + 1] = f.name
    elseif code == 3 then outcome.worked[#outcome.worked + 1] = f.name
    else outcome.other[#outcome.other + 1] = f.name .. " (exit " .. code .. ")" end
  end
  return outcome
end
