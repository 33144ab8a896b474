-- attnlab.core: the layer every file of the Lua module stands on, as lauxlib is Lua's: loading the C
-- core through the FFI, the one error shape (raise, the core's message named as the user's call),
-- taking ownership of the tensors the core returns, and the conversions at the boundary (shapes,
-- 1-based dimensions, dtypes).  Its other half is attnlab.args, the argument checks.  Every module
-- reaches both with a plain require; nothing here requires "attnlab", so init.lua can load it first.
--
-- A tensor is a cdata pointer to the C core's opaque `al_tensor` (an `al_ref`, below); each one
-- handed to Lua holds one reference, dropped by its finalizer.  Dimensions and indices are 1-based
-- in Lua (negative ones count from the end) and converted to the core's 0-based ones here.
local ffi = require "ffi"

local core = {}

---------------------------------------------------------------------------------------------------
-- Loading the C core: inside the `attnlab` program its symbols are already in the process (ffi.C);
-- from a plain `luajit`, libattnlab.so is found beside the source tree or on the library path.
---------------------------------------------------------------------------------------------------
local module_dir = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "."
local root_candidates = {}
if os.getenv("ATTNLAB_HOME") then root_candidates[#root_candidates + 1] = os.getenv("ATTNLAB_HOME") end
root_candidates[#root_candidates + 1] = module_dir .. "/../.."

-- a file's bytes, or nil when it cannot be read; and whether a file can be opened (used here to find
-- the header, by the run's and the sweep's directories, and as lab.read_file and lab.file_exists)
local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end
core.read_file = read_file
function core.file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

local header, root
for _, dir in ipairs(root_candidates) do
  header = read_file(dir .. "/core/include/attnlab.h")
  if header then root = dir break end
end
if not header then error("attnlab: cannot find core/include/attnlab.h (set ATTNLAB_HOME to the attnlab tree)") end
local ffi_decls = assert(header:match("/%* AL_FFI_BEGIN %*/(.-)/%* AL_FFI_END %*/"), "attnlab.h lacks the FFI markers")

-- Lua sees a tensor not as an `al_tensor *` but as `al_ref`, a struct holding that pointer, and the
-- declarations are rewritten to pass and return it by value (on x86-64 and arm64 a struct of one
-- pointer travels exactly as the pointer does).  The reason: for `t + 1` on a pointer to an opaque
-- struct, LuaJIT's trace compiler emits pointer arithmetic with an invalid element size instead of
-- calling __add (lj_crecord.c crec_arith_ptr lacks the interpreter's CTSIZE_INVALID check), and the
-- bogus pointer reaches the core.  Arithmetic on a struct always goes to the metamethods.
local function refs(decls)
  local F = "%f[%w_]al_tensor%f[^%w_]"
  decls = decls:gsub(F .. "%s*%*%s*const%s*%*", "const al_ref *")   -- al_tensor *const *ts
  decls = decls:gsub(F .. "%s*%*%s*%*", "al_ref *")                  -- al_tensor **out
  decls = decls:gsub("const%s+" .. F .. "%s*%*", "al_ref ")          -- const al_tensor *t
  decls = decls:gsub(F .. "%s*%*", "al_ref ")                        -- al_tensor *t, returns
  return decls:gsub("typedef struct al_ref al_ref;", "typedef struct al_tensor al_tensor;\n" ..
    "typedef struct al_ref { al_tensor *p; } al_ref;")
end
ffi_decls = refs(ffi_decls:gsub("typedef struct al_tensor al_tensor;", "typedef struct al_ref al_ref;"))
ffi.cdef(ffi_decls)

local C
-- From a plain luajit, libgomp arrives with libattnlab below, so its spin setting can still be
-- chosen here (the attnlab program does the same before it starts; see lua/main.c for why).
ffi.cdef "int setenv(const char *name, const char *value, int overwrite);"
if not os.getenv("GOMP_SPINCOUNT") and not os.getenv("OMP_WAIT_POLICY") then ffi.C.setenv("GOMP_SPINCOUNT", "1000", 0) end
if pcall(function() return ffi.C.al_version end) then
  C = ffi.C
else
  local tried = {}
  local paths = { root .. "/build/libattnlab.so", "attnlab", "libattnlab.so" }
  if os.getenv("ATTNLAB_LIB") then table.insert(paths, 1, os.getenv("ATTNLAB_LIB")) end
  for _, path in ipairs(paths) do
    local ok, lib = pcall(ffi.load, path)
    if ok then C = lib break end
    tried[#tried + 1] = path
  end
  if not C then error("attnlab: cannot load libattnlab (tried " .. table.concat(tried, ", ") .. "); run `make` first") end
end
-- Every module calls the core through this table rather than through the FFI namespace itself, so
-- that the profiler (lab.profile) can put a timing wrapper in front of any function for a while.
-- Each function is looked up in the namespace once, on first use.
local ffi_namespace = C
C = setmetatable({}, { __index = function(t, name)
  local f = ffi_namespace[name]
  rawset(t, name, f)
  return f
end })
core.C = C                          -- lab.C
core.ffi_declarations = ffi_decls   -- lab.ffi_declarations
core.root = root                    -- lab.root
core.version = ffi.string(C.al_version())

---------------------------------------------------------------------------------------------------
-- Errors: point at the user's line, not at this module.
---------------------------------------------------------------------------------------------------
-- The position is found by walking the stack rather than by an error level, because tail calls
-- (`return wrap(...)`) remove frames and would make any fixed level wrong.  A frame is the
-- library's when its file lies in this module's folder or below (lua/attnlab/tasks/ too): every
-- file of the module is loaded through the same package.path entry, so their sources share this
-- prefix, while a user's script never does (even one in a folder that happens to be named attnlab).
local library_prefix = "@" .. module_dir .. "/"
function core.raise(msg)
  local level = 2
  while true do
    local info = debug.getinfo(level, "Sl")
    if not info then break end
    if info.currentline > 0 and info.source:sub(1, #library_prefix) ~= library_prefix then
      error(info.short_src .. ":" .. info.currentline .. ": " .. msg, 0)
    end
    level = level + 1
  end
  error(msg, 0)
end
local raise = core.raise

-- The core's message for its last failure, named as the user's call.  The core names its own
-- function ("full: ...", "add_scaled_: ...", and "tensor: cannot allocate ..." for any op whose
-- output does not fit), which is not always the one the user called (lab.zeros calls al_full,
-- t:mul_ al_mul_scalar_, lab.stack al_cat): given fn, the core's name is replaced by it
-- ("zeros: cannot allocate {1000000000000} of float32 ...").
function core.core_message(fn)
  local msg = ffi.string(C.al_last_error())
  if fn == nil then return msg end
  local core_fn, rest = msg:match("^([%w_%.]+): (.*)$")
  if core_fn == fn then return msg end
  return fn .. ": " .. (rest or msg)
end
local core_message = core.core_message

-- A C status (< 0: failed): raises the core's message named as fn, else returns rc.
function core.check_status(rc, fn)
  if rc < 0 then raise(core_message(fn)) end
  return rc
end

---------------------------------------------------------------------------------------------------
-- Tensors as Lua holds them
---------------------------------------------------------------------------------------------------
local tensor_t = ffi.typeof("al_ref")
core.ref_array = ffi.typeof("al_ref[?]")     -- arrays of tensors in and out of the core
core.i64_array = ffi.typeof("int64_t[?]")
local NO_TENSOR = ffi.new("al_ref")          -- a NULL tensor, for optional arguments

local function is_tensor(x) return ffi.istype(tensor_t, x) end
core.is_tensor = is_tensor                   -- lab.is_tensor

-- an optional tensor argument: nil becomes the NULL tensor
function core.opt_tensor(x) if x == nil then return NO_TENSOR end return x end

-- Pace Lua's collector by the bytes the core hands out: Lua sees only small pointers, so without
-- this a loop would keep gigabytes of dead tensors waiting for a GC, and the core's cache would
-- run dry and fall back to fresh (page-faulting) memory.  A full collection costs time in
-- proportion to the Lua heap (75 us for the ICL study's 290 KiB heap), and collecting often keeps
-- the blocks the core recycles in the CPU caches (dead tensors go back to its cache only at a
-- collection, so the memory a loop cycles through is the pace).  The pace is therefore
-- gc_pace_heap_factor times the heap left after the last collection, within [4, 64] MiB: the ICL
-- step (about 5 MB handed out) took 0.81-0.83 ms with a collection every step against 0.94-0.96 ms
-- with one every 64 MiB, though the collection itself is in the step; a large heap keeps the old
-- 64 MiB pace, which bounds the collector's share of the time.
local gc_pace_min, gc_pace_max, gc_pace_heap_factor = 4 * 2^20, 64 * 2^20, 16
local gc_pace_bytes = gc_pace_max
local fresh_bytes = 0

-- Takes ownership of the reference a C function returned (raising its error, named as fn, when it
-- failed).
local function wrap(ref, fn)
  if ref.p == nil then raise(core_message(fn)) end
  fresh_bytes = fresh_bytes + tonumber(C.al_take_allocation_count())
  if fresh_bytes > gc_pace_bytes then
    fresh_bytes = 0
    collectgarbage("collect")
    local heap_bytes = collectgarbage("count") * 1024
    gc_pace_bytes = math.min(gc_pace_max, math.max(gc_pace_min, gc_pace_heap_factor * heap_bytes))
  end
  return ffi.gc(ref, C.al_release)
end
core.wrap = wrap
-- The same for a reference left in an output slot (an element of an al_ref array): copied out first,
-- since the slot itself is reused.
function core.wrap_slot(slot, fn) return wrap(tensor_t(slot), fn) end

-- The device new tensors are made on (0: the CPU, 1: CUDA): the CPU unless `attnlab run --device
-- cuda` or lab.set_default_device says otherwise.  Tensors are made on the CPU and moved, so a
-- seed gives the same numbers on either device.
local default_device = 0
function core.default_device() return default_device end
function core.set_default_device(id) default_device = id end
-- t (a fresh tensor of the function fn) on the default device
function core.placed(t, fn)
  if default_device == 0 then return t end
  return wrap(C.al_to_device(t, default_device), fn)
end

-- For code that fills a tensor's memory from Lua (images, stimuli, MPI buffers): a tensor of the
-- shape (a table) made on the CPU whatever the default device, and the address of a CPU tensor's
-- first element (an error naming fn for a tensor on the GPU, whose memory the host cannot touch).
function core.host_full(shape, value, fn, dtype)
  local n, arr = core.parse_shape(fn, shape)
  return wrap(C.al_full(n, arr, value, dtype or 0), fn)
end
function core.host_data(t, fn)
  local p = C.al_data(t)
  if p == nil then raise(core.core_message(fn)) end
  return p
end

-- a 0-d tensor holding v (a number: the callers check it), for the function fn, on the device of
-- the tensor `near` when given (an operand it will meet), else on the default device
function core.scalar_tensor(v, dtype, fn, near)
  local t = wrap(C.al_full(0, nil, v, dtype or 0), fn)
  local device = near ~= nil and tonumber(C.al_device_of(near)) or default_device
  if device == 0 then return t end
  return wrap(C.al_to_device(t, device), fn)
end

---------------------------------------------------------------------------------------------------
-- Conversions at the boundary: dtypes, shapes, dimensions
---------------------------------------------------------------------------------------------------
local dtypes = { float32 = 0, float64 = 1, int64 = 2, bfloat16 = 3, float = 0, double = 1, long = 2 }
core.dtype_names = { [0] = "float32", [1] = "float64", [2] = "int64", [3] = "bfloat16" }

function core.parse_dtype(d, fn)
  if d == nil then return 0 end
  local v = dtypes[d]
  if not v then raise(string.format("%s: unknown dtype %s (use float32, float64, int64, or bfloat16 on the CUDA device)", fn, tostring(d))) end
  return v
end

-- A shape from a table {2, 3} or from numbers given one by one.
function core.parse_shape(fn, first, ...)
  local list
  if type(first) == "table" and not is_tensor(first) then list = first
  elseif first == nil and select("#", ...) == 0 then list = {}
  else list = { first, ... } end
  local n = #list
  if n > 8 then raise(string.format("%s: %d dimensions given, at most 8 are supported", fn, n)) end
  local arr = core.i64_array(math.max(n, 1))
  for i = 1, n do
    local v = list[i]
    if type(v) ~= "number" or v ~= math.floor(v) then
      raise(string.format("%s: size %d of the shape must be an integer (got %s)", fn, i, tostring(v)))
    end
    if v < 0 and v ~= -1 then raise(string.format("%s: negative size %d in dimension %d", fn, v, i)) end
    if v >= 2^53 then raise(string.format("%s: size %g in dimension %d is too large", fn, v, i)) end
    arr[i - 1] = v
  end
  return n, arr
end

-- 1-based (negative from the end) to the core's 0-based (negative kept).
function core.cdim(d, fn, ndim)
  if type(d) ~= "number" or d ~= math.floor(d) or math.abs(d) > 8 then
    raise(string.format("%s: dimension must be an integer from -8 to 8 (got %s)", fn, tostring(d)))
  end
  if d == 0 then raise(string.format("%s: dimension 0 is not valid (dimensions are 1-based; -1 is the last)", fn)) end
  if ndim and (d > ndim or d < -ndim) then
    raise(string.format("%s: dimension %d is out of range for a %d-d tensor", fn, d, ndim))
  end
  return d > 0 and d - 1 or d
end

return core
