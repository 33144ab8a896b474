-- attnlab.json: the small JSON codec behind config.json, metrics.jsonl, summary.json and the
-- metadata of checkpoints.  Other tools read these files, and runs are compared by diffing them,
-- so the encoder is deterministic and the decoder is strict.
--
-- Encoding (json.encode(value [, indent])):
--   * tables whose keys are exactly 1..n (n >= 1) are arrays; every other table is an object;
--     an empty table is an object, {} (use json.empty_array for []).
--   * object keys are sorted (as strings), so equal tables always give equal text; string and
--     number keys are allowed (numbers become their JSON text); any other key type is an error.
--   * integers (|x| <= 2^53) are written without a fraction or exponent; other numbers in the
--     shortest of %.15g/%.16g/%.17g that reads back to the same double, so values round-trip
--     exactly.  NaN and +-inf have no JSON form: they become null (a diverged loss shows as null).
--   * int64/uint64 cdata become JSON integers; json.null encodes as null.
--   * strings are written byte for byte except ", \ and control characters, which are escaped;
--     bytes >= 0x80 pass through untouched (UTF-8 stays UTF-8).
--   * functions, userdata, other cdata (e.g. tensors) and cycles are errors naming the path,
--     e.g. "json.encode: cannot encode a cdata value at config.model".
--   * indent (a number of spaces or a string) pretty-prints: one member per line, arrays of plain
--     numbers/strings/booleans kept on one line.
--
-- Decoding (json.decode(text [, opts])): RFC 8259, strictly: no comments, no trailing commas, no
-- single quotes, nothing but whitespace after the value.  Errors say where: "json.decode: expected
-- ',' or '}' at line 3, column 7".  Objects and arrays become tables; numbers become Lua numbers;
-- \uXXXX escapes (with surrogate pairs) become UTF-8.  null becomes nil (so an object member that
-- is null is simply absent, and an array keeps a hole), unless opts.null gives a value to use,
-- e.g. json.decode(s, {null = json.null}).
local json = {}

json.null = setmetatable({}, { __tostring = function() return "null" end })
json.empty_array = setmetatable({}, { __tostring = function() return "[]" end })

local ffi_ok, ffi = pcall(require, "ffi")
local floor, huge, fmt = math.floor, math.huge, string.format

---------------------------------------------------------------------------------------------------
-- encode
---------------------------------------------------------------------------------------------------

local escapes = { ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f', ['\n'] = '\\n',
                  ['\r'] = '\\r', ['\t'] = '\\t' }
local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return escapes[c] or fmt("\\u%04x", c:byte())
  end) .. '"'
end

local function encode_number(x)
  if x ~= x or x == huge or x == -huge then return "null" end
  if x == floor(x) and x >= -2^53 and x <= 2^53 then
    if x == 0 and 1 / x < 0 then return "-0" end
    return fmt("%.0f", x)
  end
  for _, f in ipairs{ "%.15g", "%.16g" } do
    local s = fmt(f, x)
    if tonumber(s) == x then return s end
  end
  return fmt("%.17g", x)
end

-- "1..n with n >= 1" decides array-ness; returns n or nil.
local function array_length(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  if n == 0 then return nil end
  for i = 1, n do if t[i] == nil then return nil end end
  return n
end

local function is_scalar(v)
  local tv = type(v)
  return tv == "number" or tv == "string" or tv == "boolean" or v == json.null
end

local function path_join(path, k)
  return path == "" and tostring(k) or path .. "." .. tostring(k)
end

local encode_value
local function encode_table(t, out, path, indent, depth, seen)
  if seen[t] then error("json.encode: a cycle at " .. (path == "" and "the top" or path), 0) end
  seen[t] = true
  local nl, pad, pad_in = "", "", ""
  if indent then
    nl = "\n"
    pad, pad_in = indent:rep(depth), indent:rep(depth + 1)
  end
  local n = t == json.empty_array and 0 or array_length(t)
  if t == json.empty_array then
    out[#out + 1] = "[]"
  elseif n then
    local inline = not indent
    if indent then
      inline = true
      for i = 1, n do if not is_scalar(t[i]) then inline = false break end end
    end
    out[#out + 1] = "["
    for i = 1, n do
      if i > 1 then out[#out + 1] = inline and (indent and ", " or ",") or "," end
      if not inline then out[#out + 1] = nl .. pad_in end
      encode_value(t[i], out, path_join(path, i), indent, depth + 1, seen)
    end
    if not inline then out[#out + 1] = nl .. pad end
    out[#out + 1] = "]"
  else
    local keys, names = {}, {}
    for k in pairs(t) do
      local tk = type(k)
      local name
      if tk == "string" then name = k
      elseif tk == "number" then name = encode_number(k)
      else error("json.encode: cannot encode a " .. tk .. " key at " .. (path == "" and "the top" or path), 0) end
      if names[name] ~= nil then error("json.encode: two keys read '" .. name .. "' at " .. path, 0) end
      names[name] = k
      keys[#keys + 1] = name
    end
    table.sort(keys)
    out[#out + 1] = "{"
    for i, name in ipairs(keys) do
      if i > 1 then out[#out + 1] = "," end
      out[#out + 1] = nl .. pad_in .. encode_string(name) .. (indent and ": " or ":")
      encode_value(t[names[name]], out, path_join(path, name), indent, depth + 1, seen)
    end
    if #keys > 0 then out[#out + 1] = nl .. pad end
    out[#out + 1] = "}"
  end
  seen[t] = nil
end

encode_value = function(v, out, path, indent, depth, seen)
  local tv = type(v)
  if tv == "string" then out[#out + 1] = encode_string(v)
  elseif tv == "number" then out[#out + 1] = encode_number(v)
  elseif tv == "boolean" then out[#out + 1] = v and "true" or "false"
  elseif v == nil or v == json.null then out[#out + 1] = "null"
  elseif tv == "table" then encode_table(v, out, path, indent, depth, seen)
  elseif tv == "cdata" and ffi_ok and (ffi.istype("int64_t", v) or ffi.istype("uint64_t", v)) then
    out[#out + 1] = (tostring(v):gsub("U?LL$", ""))
  else
    error("json.encode: cannot encode a " .. tv .. " value at " .. (path == "" and "the top" or path), 0)
  end
end

function json.encode(value, indent)
  if type(indent) == "number" then indent = (" "):rep(indent) end
  local out = {}
  encode_value(value, out, "", indent, 0, {})
  return table.concat(out)
end

---------------------------------------------------------------------------------------------------
-- decode
---------------------------------------------------------------------------------------------------

local function decode_error(s, pos, what)
  local line, col = 1, 1
  for i = 1, math.min(pos - 1, #s) do
    if s:byte(i) == 10 then line, col = line + 1, 1 else col = col + 1 end
  end
  error(fmt("json.decode: %s at line %d, column %d", what, line, col), 0)
end

local function skip_ws(s, pos)
  return s:find("[^ \t\r\n]", pos) or #s + 1
end

local function utf8_char(cp)
  if cp < 0x80 then return string.char(cp) end
  if cp < 0x800 then return string.char(0xC0 + floor(cp / 64), 0x80 + cp % 64) end
  if cp < 0x10000 then
    return string.char(0xE0 + floor(cp / 4096), 0x80 + floor(cp / 64) % 64, 0x80 + cp % 64)
  end
  return string.char(0xF0 + floor(cp / 262144), 0x80 + floor(cp / 4096) % 64,
                     0x80 + floor(cp / 64) % 64, 0x80 + cp % 64)
end

local unescape = { ['"'] = '"', ['\\'] = '\\', ['/'] = '/', b = '\b', f = '\f', n = '\n',
                   r = '\r', t = '\t' }

local function decode_string(s, pos) -- s:sub(pos, pos) == '"'
  local parts, i = {}, pos + 1
  while true do
    local j = s:find('["\\%c]', i)
    if not j then decode_error(s, pos, "unterminated string") end
    parts[#parts + 1] = s:sub(i, j - 1)
    local c = s:sub(j, j)
    if c == '"' then return table.concat(parts), j + 1 end
    if c ~= "\\" then decode_error(s, j, "control character in string") end
    local e = s:sub(j + 1, j + 1)
    if unescape[e] then
      parts[#parts + 1] = unescape[e]
      i = j + 2
    elseif e == "u" then
      local hex = s:match("^%x%x%x%x", j + 2)
      if not hex then decode_error(s, j, "bad \\u escape") end
      local cp = tonumber(hex, 16)
      i = j + 6
      if cp >= 0xD800 and cp <= 0xDBFF then
        local lo = s:match("^\\u(%x%x%x%x)", i)
        lo = lo and tonumber(lo, 16)
        if not lo or lo < 0xDC00 or lo > 0xDFFF then decode_error(s, j, "unpaired surrogate") end
        cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
        i = i + 6
      elseif cp >= 0xDC00 and cp <= 0xDFFF then
        decode_error(s, j, "unpaired surrogate")
      end
      parts[#parts + 1] = utf8_char(cp)
    else
      decode_error(s, j, "bad escape")
    end
  end
end

local decode_value
local MAX_DEPTH = 512

-- The items of an array or an object, from its opening bracket at pos: item(pos) decodes one item
-- starting at pos (a non-blank) and returns the position after it; between items a ',', at the end
-- `close`.  Returns the position after `close`.
local function decode_items(s, pos, close, item)
  pos = skip_ws(s, pos + 1)
  if s:sub(pos, pos) == close then return pos + 1 end
  while true do
    pos = skip_ws(s, item(pos))
    local c = s:sub(pos, pos)
    if c == close then return pos + 1 end
    if c ~= "," then decode_error(s, pos, "expected ',' or '" .. close .. "'") end
    pos = skip_ws(s, pos + 1)
  end
end

local function decode_array(s, pos, opts, depth)
  local t, n = {}, 0
  pos = decode_items(s, pos, "]", function(at)
    local v, after = decode_value(s, at, opts, depth + 1)
    n = n + 1
    t[n] = v
    return after
  end)
  return t, pos
end

local function decode_object(s, pos, opts, depth)
  local t = {}
  pos = decode_items(s, pos, "}", function(at)
    if s:sub(at, at) ~= '"' then decode_error(s, at, "expected a string key") end
    local k, after = decode_string(s, at)
    after = skip_ws(s, after)
    if s:sub(after, after) ~= ":" then decode_error(s, after, "expected ':'") end
    local v
    v, after = decode_value(s, skip_ws(s, after + 1), opts, depth + 1)
    t[k] = v
    return after
  end)
  return t, pos
end

decode_value = function(s, pos, opts, depth)
  if depth > MAX_DEPTH then decode_error(s, pos, "nesting too deep") end
  local c = s:sub(pos, pos)
  if c == "{" then return decode_object(s, pos, opts, depth) end
  if c == "[" then return decode_array(s, pos, opts, depth) end
  if c == '"' then return decode_string(s, pos) end
  if c == "-" or c:match("%d") then
    -- JSON's grammar exactly: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
    local p = pos
    if s:sub(p, p) == "-" then p = p + 1 end
    local int = s:match("^0", p) or s:match("^[1-9]%d*", p)
    if not int then decode_error(s, pos, "bad number") end
    p = p + #int
    if s:sub(p, p) == "." then
      local frac = s:match("^%d+", p + 1)
      if not frac then decode_error(s, pos, "bad number (digits must follow '.')") end
      p = p + 1 + #frac
    end
    if s:match("^[eE]", p) then
      local exp = s:match("^[-+]?%d+", p + 1)
      if not exp then decode_error(s, pos, "bad number (bad exponent)") end
      p = p + 1 + #exp
    end
    if s:match("^[%w.]", p) then decode_error(s, pos, "bad number") end
    return tonumber(s:sub(pos, p - 1)), p
  end
  if s:sub(pos, pos + 3) == "true" then return true, pos + 4 end
  if s:sub(pos, pos + 4) == "false" then return false, pos + 5 end
  if s:sub(pos, pos + 3) == "null" then return opts.null, pos + 4 end
  if c == "" then decode_error(s, pos, "unexpected end of text") end
  decode_error(s, pos, "unexpected '" .. c .. "'")
end

function json.decode(text, opts)
  if type(text) ~= "string" then error("json.decode: expects a string, got " .. type(text), 2) end
  opts = opts or {}
  local value, pos = decode_value(text, skip_ws(text, 1), opts, 0)
  pos = skip_ws(text, pos)
  if pos <= #text then decode_error(text, pos, "unexpected text after the value") end
  return value
end

return json
