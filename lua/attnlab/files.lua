-- attnlab.files: tensors, images and text to and from files -- lab.save and lab.load
-- (safetensors, with metadata), lab.image.load and lab.image.save (PNG out; PNG, JPEG and more in,
-- through stb_image in the core), lab.read_file and lab.file_exists, and lab.write_file_atomic (a
-- temporary file, fsync, rename: how every whole file of a run directory is written).  init.lua
-- hands what this returns to lab.
local ffi = require "ffi"
local core, args = require "attnlab.core", require "attnlab.args"

local C, raise, wrap, check_status, ref_array = core.C, core.raise, core.wrap, core.check_status, core.ref_array
local typename, expect_tensor = args.typename, args.expect_tensor

local lab = {}   -- the functions this file gives lab

local json -- loaded on first use, so that `require "attnlab"` stays cheap
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
  if f == nil then raise(core.core_message("load")) end
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
  return core.read_file(path)
end
function lab.file_exists(path)
  if type(path) ~= "string" then raise("file_exists: path must be a string (got " .. type(path) .. ")") end
  return core.file_exists(path)
end

function lab.write_file_atomic(path, s)
  if type(path) ~= "string" or type(s) ~= "string" then raise("write_file_atomic: expects (path, string)") end
  check_status(C.al_write_file_atomic(path, s, #s), "write_file_atomic")
end

return lab
