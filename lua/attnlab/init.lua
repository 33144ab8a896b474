-- attnlab: the Lua module over the C core (libattnlab) through the LuaJIT FFI.
--
-- A tensor is a cdata pointer to the C core's opaque `al_tensor`, with a metatype that gives it
-- methods and operators; each pointer handed to Lua holds one reference, dropped by its finalizer.
-- Dimensions and indices are 1-based here (negative dimensions count from the end) and converted
-- to the core's 0-based ones at this boundary.  Every C failure becomes a Lua error carrying the
-- core's message, which names the op and the shapes at fault.
local ffi = require "ffi"

local lab = {}

---------------------------------------------------------------------------------------------------
-- Loading the C core: inside the `attnlab` program its symbols are already in the process (ffi.C);
-- from a plain `luajit`, libattnlab.so is found beside the source tree or on the library path.
---------------------------------------------------------------------------------------------------
local module_dir = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "."
local root_candidates = {}
if os.getenv("ATTNLAB_HOME") then root_candidates[#root_candidates + 1] = os.getenv("ATTNLAB_HOME") end
root_candidates[#root_candidates + 1] = module_dir .. "/../.."

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
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
lab.C = C
lab.ffi_declarations = ffi_decls
lab.root = root
lab.version = ffi.string(C.al_version())

---------------------------------------------------------------------------------------------------
-- Errors: point at the user's line, not at this module.
---------------------------------------------------------------------------------------------------
-- The position is found by walking the stack rather than by an error level, because tail calls
-- (`return wrap(...)`) remove frames and would make any fixed level wrong.  A frame is the
-- library's when its file lies in this module's folder or below (lua/attnlab/tasks/ too): every
-- file of the module is loaded through the same package.path entry, so their sources share this
-- prefix, while a user's script never does (even one in a folder that happens to be named attnlab).
local library_prefix = "@" .. module_dir .. "/"
local function raise(msg)
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
lab.raise = raise

---------------------------------------------------------------------------------------------------
-- Tensors
---------------------------------------------------------------------------------------------------
local tensor_t = ffi.typeof("al_ref")
local ref_array = ffi.typeof("al_ref[?]")
local NO_TENSOR = ffi.new("al_ref")          -- a NULL tensor, for optional arguments
local i64arr = ffi.typeof("int64_t[?]")
local Tensor = {}
lab.Tensor = Tensor

local dtypes = { float32 = 0, float64 = 1, int64 = 2, float = 0, double = 1, long = 2 }
local dtype_names = { [0] = "float32", [1] = "float64", [2] = "int64" }

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

-- The core's message for its last failure, named as the user's call.  The core names its own
-- function ("full: ...", "add_scaled_: ...", and "tensor: cannot allocate ..." for any op whose
-- output does not fit), which is not always the one the user called (lab.zeros calls al_full,
-- t:mul_ al_mul_scalar_, lab.stack al_cat): given fn, the core's name is replaced by it
-- ("zeros: cannot allocate {1000000000000} of float32 ...").
local function core_message(fn)
  local msg = ffi.string(C.al_last_error())
  if fn == nil then return msg end
  local core_fn, rest = msg:match("^([%w_%.]+): (.*)$")
  if core_fn == fn then return msg end
  return fn .. ": " .. (rest or msg)
end
lab._core_message = core_message

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
-- The same for a reference left in an output slot (an element of an al_ref array): copied out first,
-- since the slot itself is reused.
local function wrap_slot(slot, fn) return wrap(tensor_t(slot), fn) end
local function opt_tensor(x) if x == nil then return NO_TENSOR end return x end
lab._opt_tensor = opt_tensor
lab._ref_array = ref_array
lab._wrap = wrap

local function check_status(rc, fn)
  if rc < 0 then raise(core_message(fn)) end
  return rc
end

local function is_tensor(x) return ffi.istype(tensor_t, x) end
lab.is_tensor = is_tensor

-- the argument checks (lua/attnlab/args.lua), shared with the other files as lab._args
local args = require("attnlab.args")(raise, is_tensor)
lab._args = args
local typename, expect_tensor, check_int, check_number = args.typename, args.expect_tensor, args.check_int, args.check_number

local function parse_dtype(d, fn)
  if d == nil then return 0 end
  local v = dtypes[d]
  if not v then raise(string.format("%s: unknown dtype %s (use float32, float64 or int64)", fn, tostring(d))) end
  return v
end

-- A shape from a table {2, 3} or from numbers given one by one.
local function parse_shape(fn, first, ...)
  local list
  if type(first) == "table" and not is_tensor(first) then list = first
  elseif first == nil and select("#", ...) == 0 then list = {}
  else list = { first, ... } end
  local n = #list
  if n > 8 then raise(string.format("%s: %d dimensions given, at most 8 are supported", fn, n)) end
  local arr = i64arr(math.max(n, 1))
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
lab._parse_shape = parse_shape

-- 1-based (negative from the end) to the core's 0-based (negative kept).
local function cdim(d, fn, ndim)
  if type(d) ~= "number" or d ~= math.floor(d) or math.abs(d) > 8 then
    raise(string.format("%s: dimension must be an integer from -8 to 8 (got %s)", fn, tostring(d)))
  end
  if d == 0 then raise(string.format("%s: dimension 0 is not valid (dimensions are 1-based; -1 is the last)", fn)) end
  if ndim and (d > ndim or d < -ndim) then
    raise(string.format("%s: dimension %d is out of range for a %d-d tensor", fn, d, ndim))
  end
  return d > 0 and d - 1 or d
end

-- a 0-d tensor holding v (a number: the callers check it), for the function fn
local function scalar_tensor(v, dtype, fn)
  return wrap(C.al_full(0, nil, v, dtype or 0), fn)
end

-- Creation ---------------------------------------------------------------------------------------

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
  if is_tensor(data) then
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
  return wrap(C.al_from_buffer(n, arr, dt, buf), "tensor")
end

local function shape_and_dtype(fn, ...)
  local args = { ... }
  local dtype
  if type(args[#args]) == "string" then dtype = table.remove(args) end
  local n, arr = parse_shape(fn, unpack(args))
  return n, arr, parse_dtype(dtype, fn)
end

-- (lab.zeros and lab.ones call al_full, whose errors say "full: ...": wrap renames them)
function lab.zeros(...) local n, a, dt = shape_and_dtype("zeros", ...) return wrap(C.al_full(n, a, 0, dt), "zeros") end
function lab.ones(...) local n, a, dt = shape_and_dtype("ones", ...) return wrap(C.al_full(n, a, 1, dt), "ones") end
function lab.empty(...) local n, a, dt = shape_and_dtype("empty", ...) return wrap(C.al_empty(n, a, dt), "empty") end
function lab.full(shape, value, dtype)
  check_number(value, "full", "value")
  local n, a = parse_shape("full", shape)
  return wrap(C.al_full(n, a, value, parse_dtype(dtype, "full")), "full")
end
function lab.randn(...) local n, a, dt = shape_and_dtype("randn", ...) return wrap(C.al_randn(n, a, dt), "randn") end
function lab.rand(...) local n, a, dt = shape_and_dtype("rand", ...) return wrap(C.al_rand(n, a, dt), "rand") end
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
  return wrap(C.al_randint(low, high + 1, n, a), "randint")
end
function lab.arange(a, b, step, dtype)
  if type(step) == "string" then dtype, step = step, nil end
  if b == nil or type(b) == "string" then dtype = dtype or b; a, b = 0, a end
  check_number(a, "arange", "start"); check_number(b, "arange", "end")
  step = args.opt_number(step, 1, "arange", "step")
  return wrap(C.al_arange(a, b, step, parse_dtype(dtype, "arange")), "arange")
end
function lab.eye(n, dtype)
  check_int(n, "eye", "n")
  if n < 0 then raise("eye: size must be >= 0 (got " .. n .. ")") end
  return wrap(C.al_eye(n, parse_dtype(dtype, "eye")), "eye")
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

-- Introspection ----------------------------------------------------------------------------------

function Tensor.dim(t) return C.al_ndim(t) end
function Tensor.numel(t) return tonumber(C.al_numel(t)) end
function Tensor.dtype(t) return dtype_names[tonumber(C.al_dtype_of(t))] end
function Tensor.device(t) return tonumber(C.al_device_of(t)) == 0 and "cpu" or "cuda" end
function Tensor.is_contiguous(t) return C.al_is_contiguous(t) ~= 0 end
function Tensor.shape(t)
  local s = {}
  for i = 0, C.al_ndim(t) - 1 do s[i + 1] = tonumber(C.al_size(t, i)) end
  return s
end
function Tensor.size(t, d)
  if d == nil then return Tensor.shape(t) end
  return tonumber(C.al_size(t, cdim(d, "size", C.al_ndim(t))))
end
function Tensor.stride(t, d) return tonumber(C.al_stride(t, cdim(d, "stride", C.al_ndim(t)))) end
local shape_buf = ffi.new("char[160]")
function Tensor.shape_string(t) return ffi.string(C.al_shape_string(t, shape_buf, 160)) end

function Tensor.item(t)
  local v = C.al_item(t)
  if v ~= v and C.al_numel(t) ~= 1 then raise(core_message("item")) end
  return v
end

local function index_array(t, fn, ...)
  local nd = C.al_ndim(t)
  local n = select("#", ...)
  if n ~= nd then raise(string.format("%s: %d indices given for a %d-d tensor of shape %s", fn, n, nd, t:shape_string())) end
  local idx = i64arr(math.max(nd, 1))
  for i = 1, nd do
    local v = select(i, ...)
    check_int(v, fn, "index " .. i)
    local size = tonumber(C.al_size(t, i - 1))
    if v < 0 then v = v + size + 1 end
    idx[i - 1] = v - 1
  end
  return idx
end

local get_out = ffi.new("double[1]")
function Tensor.get(t, ...)
  check_status(C.al_get(t, index_array(t, "get", ...), get_out), "get")
  return get_out[0]
end
function Tensor.set(t, ...)
  local n = select("#", ...)
  local v = n > 0 and select(n, ...) or nil
  if type(v) ~= "number" then raise("set: the value (last argument) must be a number (got " .. args.show(v) .. ")") end
  local idx = index_array(t, "set", unpack({ ... }, 1, n - 1))
  check_status(C.al_set(t, idx, v), "set")
  return t
end

function Tensor.totable(t)
  local n = tonumber(C.al_numel(t))
  local buf = ffi.new("double[?]", math.max(n, 1))
  check_status(C.al_copy_to_doubles(t, buf, n), "totable")
  local shape = t:shape()
  if #shape == 0 then return buf[0] end
  if n == 0 then -- no elements, but maybe 2^40 empty rows: refuse rather than build them all
    local rows = 1
    for d = 1, #shape - 1 do
      if shape[d] == 0 then break end
      rows = rows * shape[d]
      if rows > 2 ^ 24 then raise("totable: a tensor of shape " .. t:shape_string() .. " would need more than 2^24 tables") end
    end
  end
  local pos = 0
  local function build(d)
    local out = {}
    for i = 1, shape[d] do
      if d == #shape then out[i] = buf[pos]; pos = pos + 1
      else out[i] = build(d + 1) end
    end
    return out
  end
  return build(1)
end

-- Views and copies -------------------------------------------------------------------------------

function Tensor.clone(t) return wrap(C.al_clone(t), "clone") end
function Tensor.contiguous(t) return wrap(C.al_contiguous(t), "contiguous") end
function Tensor.detach(t) return wrap(C.al_detach(t), "detach") end
function Tensor.to(t, what)
  if what == "cpu" then return t end
  if what == "cuda" then
    raise(C.al_cuda_available() ~= 0 and "to: CUDA tensors are not wired into the Lua module yet"
      or "to: this attnlab was built without CUDA (make CUDA=1) or no GPU is present")
  end
  return wrap(C.al_to_dtype(t, parse_dtype(what, "to")), "to")
end
function Tensor.float(t) return wrap(C.al_to_dtype(t, 0), "float") end
function Tensor.double(t) return wrap(C.al_to_dtype(t, 1), "double") end
function Tensor.long(t) return wrap(C.al_to_dtype(t, 2), "long") end
function Tensor.reshape(t, ...)
  local n, a = parse_shape("reshape", ...)
  return wrap(C.al_reshape(t, n, a), "reshape")
end
function Tensor.view(t, ...)
  local n, a = parse_shape("view", ...)
  return wrap(C.al_reshape(t, n, a), "view")
end
function Tensor.transpose(t, d1, d2)
  local nd = C.al_ndim(t)
  return wrap(C.al_transpose(t, cdim(d1, "transpose", nd), cdim(d2, "transpose", nd)), "transpose")
end
function Tensor.t(t)
  if C.al_ndim(t) ~= 2 then raise("t: expects a 2-d tensor (got shape " .. t:shape_string() .. "); use transpose") end
  return wrap(C.al_transpose(t, 0, 1), "t")
end
function Tensor.permute(t, ...)
  local order = type((...)) == "table" and not is_tensor((...)) and ... or { ... }
  local nd = C.al_ndim(t)
  if #order ~= nd then raise(string.format("permute: %d dimensions given for a %d-d tensor", #order, nd)) end
  local arr = ffi.new("int[?]", math.max(nd, 1))
  for i = 1, nd do arr[i - 1] = cdim(order[i], "permute", nd) end
  return wrap(C.al_permute(t, arr), "permute")
end
function Tensor.narrow(t, d, start, len)
  local nd = C.al_ndim(t)
  d = cdim(d, "narrow", nd)
  check_int(start, "narrow", "start"); check_int(len, "narrow", "length")
  return wrap(C.al_narrow(t, d, start - 1, len), "narrow")
end
function Tensor.select(t, d, index)
  local nd = C.al_ndim(t)
  check_int(index, "select", "index")
  return wrap(C.al_select(t, cdim(d, "select", nd), index - 1), "select")
end
function Tensor.unsqueeze(t, d) return wrap(C.al_unsqueeze(t, cdim(d, "unsqueeze", C.al_ndim(t) + 1)), "unsqueeze") end
function Tensor.squeeze(t, d)
  if d == nil then return wrap(C.al_squeeze(t, 127), "squeeze") end
  return wrap(C.al_squeeze(t, cdim(d, "squeeze", C.al_ndim(t))), "squeeze")
end
function Tensor.expand(t, ...)
  local n, a = parse_shape("expand", ...)
  return wrap(C.al_expand(t, n, a), "expand")
end
function Tensor.expand_as(t, other)
  local n, a = parse_shape("expand_as", expect_tensor(other, "expand_as", "other"):shape())
  return wrap(C.al_expand(t, n, a), "expand_as")
end

-- Math -----------------------------------------------------------------------------------------

for _, name in ipairs{ "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "gelu", "abs", "neg" } do
  local cname = "al_" .. name     -- looked up at each call, so that lab.profile can time it
  Tensor[name] = function(t) return wrap(C[cname](expect_tensor(t, name, "self")), name) end
end
function Tensor.pow(t, p)
  check_number(p, "pow", "exponent")
  return wrap(C.al_pow_scalar(t, p), "pow")
end
-- (a NaN bound would make every element NaN: refused; nil leaves that side open)
local any_bound = { -math.huge, math.huge }
function Tensor.clamp(t, lo, hi)
  lo = args.opt_number(lo, -math.huge, "clamp", "lo", any_bound)
  hi = args.opt_number(hi, math.huge, "clamp", "hi", any_bound)
  return wrap(C.al_clamp(t, lo, hi), "clamp")
end

local function binary(name, cfun, scalar_fun, rscalar_fun)
  return function(a, b)
    if type(a) == "number" then
      expect_tensor(b, name, "b")
      return wrap(rscalar_fun(a, b), name)
    elseif type(b) == "number" then
      expect_tensor(a, name, "a")
      return wrap(scalar_fun(a, b), name)
    end
    return wrap(cfun(expect_tensor(a, name, "a"), expect_tensor(b, name, "b")), name)
  end
end
-- (the core functions are named at each call rather than captured, so that lab.profile can time them)
Tensor.add = binary("add", function(a, b) return C.al_add(a, b) end, function(t, s) return C.al_add_scalar(t, s) end,
  function(s, t) return C.al_add_scalar(t, s) end)
Tensor.sub = binary("sub", function(a, b) return C.al_sub(a, b) end, function(t, s) return C.al_add_scalar(t, -s) end,
  function(s, t) return C.al_rsub_scalar(s, t) end)
Tensor.mul = binary("mul", function(a, b) return C.al_mul(a, b) end, function(t, s) return C.al_mul_scalar(t, s) end,
  function(s, t) return C.al_mul_scalar(t, s) end)
-- t / s divides (as t / tensor does, not multiplies by 1/s: one rounding, and int64 / number is a
-- true division in float32 like int64 / int64)
Tensor.div = binary("div", function(a, b) return C.al_div(a, b) end, function(t, s)
  local dt = tonumber(C.al_dtype_of(t))
  return C.al_div(t, scalar_tensor(s, dt == 2 and 0 or dt, "div"))
end, function(s, t) return C.al_rdiv_scalar(s, t) end)
local function scalar_as_tensor(fun, fn)
  return function(t, s) local st = scalar_tensor(s, tonumber(C.al_dtype_of(t)), fn) return fun(t, st) end
end
Tensor.maximum = binary("maximum", function(a, b) return C.al_maximum(a, b) end,
  scalar_as_tensor(function(a, b) return C.al_maximum(a, b) end, "maximum"),
  function(s, t) return C.al_maximum(t, scalar_tensor(s, tonumber(C.al_dtype_of(t)), "maximum")) end)
Tensor.minimum = binary("minimum", function(a, b) return C.al_minimum(a, b) end,
  scalar_as_tensor(function(a, b) return C.al_minimum(a, b) end, "minimum"),
  function(s, t) return C.al_minimum(t, scalar_tensor(s, tonumber(C.al_dtype_of(t)), "minimum")) end)

local compare_ops = { eq = 0, ne = 1, lt = 2, le = 3, gt = 4, ge = 5 }
for name, op in pairs(compare_ops) do
  Tensor[name] = function(a, b)
    expect_tensor(a, name, "a")
    if type(b) == "number" then return wrap(C.al_compare_scalar(a, b, op), name) end
    return wrap(C.al_compare(a, expect_tensor(b, name, "b"), op), name)
  end
end

-- Reductions -----------------------------------------------------------------------------------

local ALL = 127
local function reduce_dim(t, d, fn)
  if d == nil then return ALL end
  return cdim(d, fn, C.al_ndim(t))
end
function Tensor.sum(t, d, keepdim) return wrap(C.al_sum(t, reduce_dim(t, d, "sum"), keepdim and 1 or 0), "sum") end
function Tensor.mean(t, d, keepdim) return wrap(C.al_mean(t, reduce_dim(t, d, "mean"), keepdim and 1 or 0), "mean") end
local idx_out = ref_array(1)
local function argbest(cfun, fn)
  local function best(t, d, keepdim)
    if d == nil then return best(wrap(C.al_reshape(t, 1, i64arr(1, -1)), fn), 1) end   -- over everything: flatten first
    local v = cfun(t, cdim(d, fn, C.al_ndim(t)), keepdim and 1 or 0, idx_out)
    local values = wrap(v, fn)
    local indices = wrap_slot(idx_out[0], fn)
    return values, wrap(C.al_add_scalar(indices, 1), fn)
  end
  return best
end
Tensor.max = argbest(function(...) return C.al_max(...) end, "max")
Tensor.min = argbest(function(...) return C.al_min(...) end, "min")
function Tensor.argmax(t, d, keepdim)
  local ids
  if d == nil then ids = wrap(C.al_argmax(wrap(C.al_reshape(t, 1, i64arr(1, -1)), "argmax"), 0, 0), "argmax")
  else ids = wrap(C.al_argmax(t, cdim(d, "argmax", C.al_ndim(t)), keepdim and 1 or 0), "argmax") end
  return wrap(C.al_add_scalar(ids, 1), "argmax")
end
function Tensor.softmax(t, d) return wrap(C.al_softmax(t, cdim(d or -1, "softmax", C.al_ndim(t))), "softmax") end
function Tensor.log_softmax(t, d) return wrap(C.al_log_softmax(t, cdim(d or -1, "log_softmax", C.al_ndim(t))), "log_softmax") end
function Tensor.logsumexp(t, d, keepdim)
  return wrap(C.al_logsumexp(t, cdim(d or -1, "logsumexp", C.al_ndim(t)), keepdim and 1 or 0), "logsumexp")
end
function Tensor.cumsum(t, d) return wrap(C.al_cumsum(t, cdim(d or -1, "cumsum", C.al_ndim(t))), "cumsum") end
function Tensor.matmul(a, b)
  return wrap(C.al_matmul(expect_tensor(a, "matmul", "a"), expect_tensor(b, "matmul", "b")), "matmul")
end

-- In place (never recorded) ----------------------------------------------------------------------

function Tensor.fill_(t, v)
  check_number(v, "fill_", "value")
  check_status(C.al_fill_(t, v), "fill_")
  return t
end
function Tensor.zero_(t) check_status(C.al_fill_(t, 0), "zero_") return t end
function Tensor.copy_(t, src) check_status(C.al_copy_(t, expect_tensor(src, "copy_", "src")), "copy_") return t end
function Tensor.add_(t, src, alpha)
  if type(src) == "number" then src = scalar_tensor(src, tonumber(C.al_dtype_of(t)), "add_") end
  expect_tensor(src, "add_", "src")
  alpha = args.opt_number(alpha, 1, "add_", "alpha")
  check_status(C.al_add_scaled_(t, src, alpha), "add_")
  return t
end
function Tensor.mul_(t, s)
  check_number(s, "mul_", "factor")
  check_status(C.al_mul_scalar_(t, s), "mul_")
  return t
end

-- Autograd ---------------------------------------------------------------------------------------

function Tensor.requires_grad(t, flag)
  if flag == nil then return C.al_requires_grad(t) ~= 0 end
  check_status(C.al_set_requires_grad(t, flag and 1 or 0), "requires_grad")
  return t
end
function Tensor.is_leaf(t) return C.al_is_leaf(t) ~= 0 end
-- the name of the op that made t on the graph ("matmul", "attention_softmax_tiled", ...), or nil
function Tensor.grad_fn(t)
  local name = C.al_grad_fn_name(t)
  return name ~= nil and ffi.string(name) or nil
end
function Tensor.backward(t, grad)
  if grad ~= nil then expect_tensor(grad, "backward", "grad") end
  check_status(C.al_backward(t, opt_tensor(grad)), "backward")
end
function Tensor.zero_grad(t) check_status(C.al_zero_grad(t), "zero_grad") return t end
function Tensor.set_grad(t, g)
  if g ~= nil then expect_tensor(g, "set_grad", "grad") end
  check_status(C.al_set_grad(t, opt_tensor(g)), "set_grad")
  return t
end
local function get_grad(t)
  local g = C.al_grad(t)
  if g.p == nil then return nil end
  return ffi.gc(g, C.al_release)
end

-- Metatype ---------------------------------------------------------------------------------------

local function format_number(v, dtype)
  if dtype == "int64" then return string.format("%d", v) end
  if v == math.floor(v) and math.abs(v) < 1e9 then return string.format("%.1f", v) end
  return string.format("%.5g", v)
end

function Tensor.tostring(t)
  local shape, dtype = t:shape(), t:dtype()
  local head = string.format("tensor(%s, %s", t:shape_string(), dtype)
  if t:numel() > 1000 then return head .. ", not shown: more than 1000 elements)" end
  if math.max(0, unpack(shape)) > 1000 then return head .. ", not shown)" end
  local vals = t:totable()
  local function show(v, depth)
    if type(v) ~= "table" then return format_number(v, dtype) end
    local parts = {}
    for i = 1, #v do parts[i] = show(v[i], depth + 1) end
    local sep = depth == #shape and ", " or (",\n" .. string.rep(" ", depth))
    return "[" .. table.concat(parts, sep) .. "]"
  end
  return show(vals, 1) .. "\n" .. head .. (t:requires_grad() and ", requires_grad)" or ")")
end

local mt = {
  __index = function(t, k)
    local m = Tensor[k]
    if m ~= nil then return m end
    if k == "grad" then return get_grad(t) end
    return nil
  end,
  __add = function(a, b) return Tensor.add(a, b) end,
  __sub = function(a, b) return Tensor.sub(a, b) end,
  __mul = function(a, b) return Tensor.mul(a, b) end,
  __div = function(a, b) return Tensor.div(a, b) end,
  __unm = function(a) return wrap(C.al_neg(a), "neg") end,
  __pow = function(a, p) return Tensor.pow(a, p) end,
  __len = function(t) return C.al_ndim(t) > 0 and tonumber(C.al_size(t, 0)) or 0 end,
  __tostring = function(t) return Tensor.tostring(t) end,
}
ffi.metatype("al_ref", mt)

---------------------------------------------------------------------------------------------------
-- Functions on several tensors, losses, attention
---------------------------------------------------------------------------------------------------

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
  if type(a) == "number" then a = scalar_tensor(a, is_tensor(b) and tonumber(C.al_dtype_of(b)) or 0, "where") end
  if type(b) == "number" then b = scalar_tensor(b, tonumber(C.al_dtype_of(expect_tensor(a, "where", "a"))), "where") end
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
function lab.gather(t, d, idx)
  expect_tensor(t, "gather", "self"); expect_tensor(idx, "gather", "indices")
  if idx:dtype() ~= "int64" then raise("gather: indices must be int64 (got " .. idx:dtype() .. " of shape " .. idx:shape_string() .. ")") end
  return wrap(C.al_gather(t, cdim(d, "gather", C.al_ndim(t)), wrap(C.al_add_scalar(idx, -1), "gather")), "gather")
end
Tensor.gather = lab.gather
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
  lab[name] = lab[name] or function(t, ...) return Tensor[name](expect_tensor(t, name, "self"), ...) end
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

-- lab.attention and its primitives: lua/attnlab/attention.lua (given the helpers it shares with
-- this file)
lab.attention = require("attnlab.attention")(lab, {
  C = C, raise = raise, wrap = wrap, wrap_slot = wrap_slot, args = args, cdim = cdim, ref_array = ref_array,
})

-- the image ops (conv2d, pooling, eccentricity pooling, interpolate, grid_sample, pad):
-- lua/attnlab/vision.lua
require("attnlab.vision")(lab, {
  C = C, raise = raise, wrap = wrap, wrap_slot = wrap_slot, typename = typename, expect_tensor = expect_tensor,
  is_tensor = is_tensor, opt_tensor = opt_tensor, ref_array = ref_array,
})

---------------------------------------------------------------------------------------------------
-- Autograd scopes, parameters
---------------------------------------------------------------------------------------------------

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

---------------------------------------------------------------------------------------------------
-- Files, images, process
---------------------------------------------------------------------------------------------------

local json -- loaded lazily (lab.json)
function lab.save(path, tensors, metadata)
  if type(path) ~= "string" then raise("save: path must be a string") end
  if type(tensors) ~= "table" then raise("save: expects a table of name = tensor") end
  local names = {}
  for name, t in pairs(tensors) do
    if type(name) ~= "string" then raise("save: tensor names must be strings (got " .. typename(name) .. ")") end
    expect_tensor(t, "save", name)
    names[#names + 1] = name
  end
  table.sort(names)
  local n = #names
  local cnames = ffi.new("const char *[?]", math.max(n, 1))
  local cts = ref_array(math.max(n, 1))
  for i = 1, n do cnames[i - 1] = names[i]; cts[i - 1] = tensors[names[i]] end
  local meta
  if metadata ~= nil then
    if type(metadata) ~= "table" then raise("save: metadata must be a table (got " .. typename(metadata) .. ")") end
    json = json or require "attnlab.json"
    local strs = {}
    for k, v in pairs(metadata) do
      if type(v) ~= "string" and type(v) ~= "number" and type(v) ~= "boolean" and type(v) ~= "table" then
        raise("save: metadata value '" .. tostring(k) .. "' is a " .. typename(v) .. " (strings, numbers, booleans or tables)")
      end
      local ok, enc = true, v
      if type(v) ~= "string" then ok, enc = pcall(json.encode, v) end
      if not ok then raise("save: metadata value '" .. tostring(k) .. "' cannot be written as JSON (" .. tostring(enc) .. ")") end
      strs[tostring(k)] = enc
    end
    meta = json.encode(strs)
  end
  check_status(C.al_save_safetensors(path, n, cnames, cts, meta), "save")
end

function lab.load(path)
  if type(path) ~= "string" then raise("load: path must be a string") end
  local f = C.al_load_safetensors(path)
  if f == nil then raise(core_message("load")) end
  f = ffi.gc(f, C.al_tensor_file_close)
  local out = {}
  for i = 0, C.al_tensor_file_count(f) - 1 do
    out[ffi.string(C.al_tensor_file_name(f, i))] = wrap(C.al_tensor_file_tensor(f, i), "load")
  end
  local meta
  local raw = C.al_tensor_file_metadata(f)
  if raw ~= nil then
    json = json or require "attnlab.json"
    meta = json.decode(ffi.string(raw))
  end
  C.al_tensor_file_close(ffi.gc(f, nil))
  return out, meta
end

lab.image = {}
function lab.image.load(path)
  if type(path) ~= "string" then raise("image.load: path must be a string") end
  return wrap(C.al_image_load(path), "image.load")
end
function lab.image.save(path, t)
  if type(path) ~= "string" then raise("image.save: path must be a string") end
  check_status(C.al_image_save_png(path, expect_tensor(t, "image.save", "t")), "image.save")
end

-- a whole file's bytes, or nil when it cannot be opened (no error: callers test for presence)
function lab.read_file(path)
  if type(path) ~= "string" then raise("read_file: path must be a string (got " .. type(path) .. ")") end
  return read_file(path)
end
function lab.file_exists(path)
  if type(path) ~= "string" then raise("file_exists: path must be a string (got " .. type(path) .. ")") end
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

function lab.write_file_atomic(path, s)
  if type(path) ~= "string" or type(s) ~= "string" then raise("write_file_atomic: expects (path, string)") end
  check_status(C.al_write_file_atomic(path, s, #s), "write_file_atomic")
end

-- (the core would take n < 1 as 1: refused rather than silently changed)
function lab.set_num_threads(n)
  check_int(n, "set_num_threads", "n")
  if n < 1 then raise("set_num_threads: n must be an integer >= 1 (got " .. n .. ")") end
  C.al_set_num_threads(n)
end
function lab.num_threads() return C.al_get_num_threads() end
function lab.memory()
  return { in_use = tonumber(C.al_bytes_in_use()), peak = tonumber(C.al_bytes_peak()),
           limit = tonumber(C.al_get_memory_limit()),
           tensors = tonumber(C.al_live_tensors()), nodes = tonumber(C.al_live_nodes()) }
end
-- empties the allocator's cache and restarts lab.memory().peak from the bytes live now
function lab.reset_memory_peak() C.al_reset_peak() end
function lab.set_memory_limit(bytes)
  check_number(bytes, "set_memory_limit", "bytes", { 0, 2^62, lo_open = true })
  C.al_set_memory_limit(bytes)
end
function lab.interrupted() return C.al_interrupted() ~= 0 end
-- the signal that asked (2 SIGINT, 15 SIGTERM), or nil
function lab.interrupt_signal() local sig = C.al_interrupted() return sig ~= 0 and sig or nil end
function lab.catch_interrupts(on) C.al_catch_interrupts(on == false and 0 or 1) end

ffi.cdef [[
  struct attnlab_timespec { long tv_sec; long tv_nsec; };
  int clock_gettime(int clk, struct attnlab_timespec *ts);
]]
local ts = ffi.new("struct attnlab_timespec")
function lab.time()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

-- The reference (docs/reference.md) from a script or the prompt: help(lab.nn.Linear), help("Tensor:narrow");
-- help_text returns the entry's text instead (or nil and why).  See lua/attnlab/help.lua.
function lab.help(x) return require("attnlab.help").help(x) end
function lab.help_text(x) return require("attnlab.help").text(x) end

-- Submodules, loaded on first use so that `require "attnlab"` stays cheap.
setmetatable(lab, {
  __index = function(t, k)
    local sub = ({ nn = "attnlab.nn", optim = "attnlab.optim", run = "attnlab.run", json = "attnlab.json",
                   analysis = "attnlab.analysis", viz = "attnlab.viz", profile = "attnlab.profile",
                   dist = "attnlab.dist", plot = "attnlab.plot", sweep = "attnlab.sweep" })[k]
    if sub then
      local m = require(sub)
      rawset(t, k, m)
      return m
    end
  end,
})

return lab
