-- attnlab.viz: what a script shows in the viewer, in a line or two, and the commands it sends back.
--
--   lab.viz.attention("L1", map [, {layer=, head=, tokens=, batch=, q=, k=}])  map (N, M), (H, N, M) or (B, H, N, M);
--                                                                   q, k: the vectors behind it, (N, d) / (M, d) laid out alike
--   lab.viz.matrix("KQ head 1", w [, {layer=, head=}])                 a 1-d or 2-d weight (diverging colours)
--   lab.viz.scalar("loss", v)                                           a point of a curve
--   lab.viz.reference("loss", "ridge", v)                               a horizontal line on that curve
--   lab.viz.image("scene", img [, {points=, heat=}])                   (H, W[, C]) in [0, 1]; points (K, 2) x,y pixels; heat (h, w)
--   lab.viz.tokens("L1", {"the", "cat"} | {queries = {...}, keys = {...}})
--   for _, cmd in ipairs(lab.viz.poll()) do ... end                     what the viewer asked for
--
-- Every call goes to RUN_DIR/records.bin (core/runlog.c has the format), so `attnlab view RUN_DIR`
-- replays what a live window showed.  lab.run.start opens the stream; without a run every call is
-- a no-op returning false.  Publishing is rate limited per name (default: at most every 0.25 s of
-- wall time, or opts.every = n steps), and a value may be a function, called only when the record
-- is due, so that a script can publish every step without computing a map every step.
local lab = require "attnlab"
local core, args = require "attnlab.core", require "attnlab.args"
local ffi = require "ffi"
local C = core.C

local viz = {}
local DEFAULT_INTERVAL = 0.25   -- seconds between two records of one name
local state = { interval = DEFAULT_INTERVAL, last_time = {}, last_step = {}, tokens = {}, step = 0, cmd_offset = 0 }

local KIND = { attention = C.AL_RECORD_ATTENTION, matrix = C.AL_RECORD_MATRIX, scalar = C.AL_RECORD_SCALAR,
               image = C.AL_RECORD_IMAGE, tokens = C.AL_RECORD_TOKENS, points = C.AL_RECORD_POINTS,
               heat = C.AL_RECORD_HEAT, reference = C.AL_RECORD_REFERENCE, query = C.AL_RECORD_QUERY,
               key = C.AL_RECORD_KEY }
viz.KIND = KIND

local function fail(fn, msg) core.raise("viz." .. fn .. ": " .. msg) end
-- the core's failure, named as the viz function the user called
local function check_status(rc, fn) core.check_status(rc, "viz." .. fn) end

local function check_name(fn, name)
  if type(name) ~= "string" or #name == 0 or #name > 255 then
    fail(fn, "name must be a string of 1..255 bytes (got " .. (type(name) == "string" and #name .. " bytes" or type(name)) .. ")")
  end
  if name:find("\0", 1, true) then fail(fn, "name must not contain NUL") end
end

-- the rate options every publishing call takes (see viz.due), and each call's own
local rate_options = { "force", "every", "interval" }
local call_options = {
  open = { "interval", "every" },
  attention = { "batch", "layer", "head", "tokens", "q", "k" },
  matrix = { "layer", "head" },
  scalar = {},
  image = { "points", "heat" },
}
for fn, list in pairs(call_options) do
  if fn ~= "open" then for _, k in ipairs(rate_options) do list[#list + 1] = k end end
end
-- opts: nil or a table whose keys fn takes (an unknown key is an error naming the valid ones)
local function check_opts(fn, opts)
  if opts ~= nil and (type(opts) ~= "table" or core.is_tensor(opts)) then fail(fn, "opts must be a table (got " .. args.typename(opts) .. ")") end
  if opts and call_options[fn] then args.check_options(opts, "viz." .. fn, call_options[fn]) end
  return opts or {}
end
-- a rate: interval in seconds (a finite number >= 0), every in steps (an integer >= 1)
local function check_rate(fn, interval, every)
  if interval ~= nil then args.check_number(interval, "viz." .. fn, "interval", { 0, finite = true }) end
  if every ~= nil and (type(every) ~= "number" or every < 1 or every ~= math.floor(every) or every >= 2^53) then
    fail(fn, "every must be a positive integer number of steps (got " .. args.show(every) .. ")")
  end
end

---------------------------------------------------------------------------------------------------
-- the stream
---------------------------------------------------------------------------------------------------

-- opts: interval (seconds between records of one name, default 0.25; 0 = every call), every
-- (steps instead).
function viz.open(dir, opts)
  if type(dir) ~= "string" or dir == "" then fail("open", "expects a run directory") end
  opts = check_opts("open", opts)
  viz.close()
  check_rate("open", opts.interval, opts.every)
  local log = C.al_runlog_open(dir)
  if log == nil then core.raise(core.core_message("viz.open")) end
  state.log = ffi.gc(log, C.al_runlog_close)
  state.dir = dir
  state.commands_path = dir .. "/commands"
  -- commands written before this run started (a resumed run's old ones) are not replayed
  state.cmd_offset = math.max(0, tonumber(C.al_file_size(state.commands_path)))
  state.last_time, state.last_step, state.tokens = {}, {}, {}
  state.interval, state.every = DEFAULT_INTERVAL, nil
  if opts.interval ~= nil then viz.set_rate{ interval = opts.interval } end
  if opts.every ~= nil then viz.set_rate{ every = opts.every } end
  return viz
end

function viz.close()
  if state.log then C.al_runlog_close(ffi.gc(state.log, nil)) end
  state.log, state.dir = nil, nil
end

function viz.enabled() return state.log ~= nil end
function viz.dir() return state.dir end
function viz.count() return state.log and tonumber(C.al_runlog_count(state.log)) or 0 end

-- The step stamped on the next records (lab.run's step loop sets it).
function viz.set_step(step)
  args.check_int(step, "viz.set_step", "step")
  state.step = step
end

-- {interval = seconds} or {every = steps}: the default rate for every name.
function viz.set_rate(r)
  if type(r) ~= "table" or core.is_tensor(r) then fail("set_rate", "expects {interval = seconds} or {every = steps}") end
  args.check_options(r, "viz.set_rate", { "interval", "every" })
  check_rate("set_rate", r.interval, r.every)
  if r.interval ~= nil then state.interval, state.every = r.interval, nil end
  if r.every ~= nil then state.every = r.every end
end

-- Whether a record named `name` is due now (and, when it is, counts it as published).
-- (fn: the viz function the user called, for the errors)
local function is_due(fn, name, opts)
  if opts ~= nil and (type(opts) ~= "table" or core.is_tensor(opts)) then fail(fn, "opts must be a table (got " .. args.typename(opts) .. ")") end
  opts = opts or {}
  check_rate(fn, opts.interval, opts.every)
  if not state.log then return false end
  if opts.force then return true end
  local every = opts.every or state.every
  if every then
    local last = state.last_step[name]
    if last and state.step - last < every and state.step >= last then return false end
    state.last_step[name] = state.step
    return true
  end
  local t, last = lab.time(), state.last_time[name]
  if last and t - last < (opts.interval or state.interval) then return false end
  state.last_time[name] = t
  return true
end
function viz.due(name, opts) return is_due("due", name, opts) end

-- the value, calling it when it is a function (computed only when due)
local function value_of(v)
  if type(v) == "function" then v = v() end
  return v
end

local function as_tensor(fn, v, what)
  if core.is_tensor(v) then return v end
  if type(v) == "table" then return lab.tensor(v) end
  if type(v) == "number" then return lab.tensor({ v }) end
  fail(fn, what .. " must be a tensor or a table of numbers (got " .. type(v) .. ")")
end

local function write(fn, kind, name, t, layer, head)
  check_status(C.al_runlog_write(state.log, kind, name, state.step, layer or 0, head or 0, t), fn)
end

-- The start every tensor-valued call shares: argument checks, the rate limit (by rate_key), and
-- the value as a tensor (computed only when due).  Returns the tensor and the options, or nil.
local function due_tensor(fn, name, value, opts, what, rate_key)
  check_name(fn, name)
  opts = check_opts(fn, opts)
  if not is_due(fn, rate_key and rate_key(opts) or name, opts) then return nil, opts end
  return as_tensor(fn, value_of(value), what), opts
end

-- one float32 (a scalar or a reference line)
local function write_number(fn, kind, name, v)
  local shape = ffi.new("int64_t[1]", 1)
  check_status(C.al_runlog_write_floats(state.log, kind, name, state.step, 0, 0, 0, shape, ffi.new("float[1]", v)), fn)
end

-- a layer, head or batch index: an integer from 1 (the records keep 32 bits)
local function check_index(fn, v, what)
  if v == nil then return 0 end
  if type(v) ~= "number" or v < 1 or v ~= math.floor(v) or v >= 2^31 then fail(fn, what .. " must be a positive integer (got " .. args.show(v) .. ")") end
  return v
end

---------------------------------------------------------------------------------------------------
-- what a script publishes
---------------------------------------------------------------------------------------------------

-- tokens: a list (both axes) or {queries = list, keys = list}; written again only when they change
function viz.tokens(name, list)
  check_name("tokens", name)
  if not state.log then return false end
  if type(list) ~= "table" then fail("tokens", "expects a list of strings or {queries=, keys=}") end
  local function strings(l, what)
    if type(l) ~= "table" then fail("tokens", what .. " must be a list of strings") end
    local out = {}
    for i, s in ipairs(l) do
      if type(s) ~= "string" and type(s) ~= "number" then fail("tokens", what .. " " .. i .. " is a " .. type(s) .. ", not a string") end
      out[i] = tostring(s):gsub("[\n\r]", " ")
    end
    return out
  end
  local text, ndim, shape
  if list.queries or list.keys then
    local q, k = strings(list.queries or {}, "queries"), strings(list.keys or {}, "keys")
    text, ndim, shape = table.concat(q, "\n") .. "\n" .. table.concat(k, "\n"), 2, ffi.new("int64_t[2]", #q, #k)
  else
    local l = strings(list, "token")
    text, ndim, shape = table.concat(l, "\n"), 1, ffi.new("int64_t[1]", #l)
  end
  if state.tokens[name] == text then return false end
  check_status(C.al_runlog_write_text(state.log, KIND.tokens, name, state.step, ndim, shape, text, #text), "tokens")
  state.tokens[name] = text
  return true
end

-- map (N, M): one head; (H, N, M): heads 1..H; (B, H, N, M): batch element opts.batch (default 1).
function viz.attention(name, map, opts)
  local t
  t, opts = due_tensor("attention", name, map, opts, "map")
  if not t then return false end
  local nd = t:dim()
  local b = check_index("attention", opts.batch or 1, "opts.batch")
  if nd == 4 then
    if b > t:shape()[1] then fail("attention", "opts.batch " .. b .. " is beyond the batch of " .. t:shape()[1]) end
    t, nd = t:narrow(1, b, 1):squeeze(1), 3
  end
  if nd ~= 2 and nd ~= 3 then
    fail("attention", "map must be (N, M), (H, N, M) or (B, H, N, M) (got shape " .. t:shape_string() .. ")")
  end
  local layer = check_index("attention", opts.layer or 1, "opts.layer")
  -- the query and key vectors (the neuron view): laid out as the map, with a last dimension d
  local vectors = {}
  for _, which in ipairs{ "q", "k" } do
    local v = opts[which] ~= nil and as_tensor("attention", value_of(opts[which]), "opts." .. which) or nil
    if v then
      if v:dim() == 4 then
        if b > v:size(1) then fail("attention", "opts.batch " .. b .. " is beyond the batch of opts." .. which .. " " .. v:shape_string()) end
        v = v:narrow(1, b, 1):squeeze(1)
      end
      local s, ms = v:shape(), t:shape()
      local rows = which == "q" and ms[nd - 1] or ms[nd]
      if v:dim() ~= nd or s[nd - 1] ~= rows or (nd == 3 and s[1] ~= ms[1]) then
        fail("attention", string.format("opts.%s must be laid out as the map with %d %s and a last dimension d (got shape %s for a map of %s)",
          which, rows, which == "q" and "queries" or "keys", v:shape_string(), t:shape_string()))
      end
      vectors[#vectors + 1] = { kind = which == "q" and KIND.query or KIND.key, t = v:detach() }
    end
  end
  if opts.tokens then viz.tokens(name, opts.tokens) end
  t = t:detach()
  local heads = nd == 2 and 1 or t:shape()[1]
  local head_of = nd == 2 and check_index("attention", opts.head or 1, "opts.head") or nil
  for h = 1, heads do
    local function pick(x) return nd == 2 and x or x:narrow(1, h, 1):squeeze(1) end
    write("attention", KIND.attention, name, pick(t), layer, head_of or h)
    for _, v in ipairs(vectors) do write("attention", v.kind, name, pick(v.t), layer, head_of or h) end
  end
  return true
end

function viz.matrix(name, w, opts)
  local t
  -- one rate per (name, layer, head): the heads of one name are published by separate calls
  t, opts = due_tensor("matrix", name, w, opts, "w", function(o)
    return string.format("%s\0%s\0%s", name, tostring(o.layer), tostring(o.head))
  end)
  if not t then return false end
  if t:dim() < 1 or t:dim() > 2 then fail("matrix", "w must be 1-d or 2-d (got shape " .. t:shape_string() .. ")") end
  write("matrix", KIND.matrix, name, t:detach(), check_index("matrix", opts.layer, "opts.layer"), check_index("matrix", opts.head, "opts.head"))
  return true
end

function viz.scalar(name, v, opts)
  check_name("scalar", name)
  opts = check_opts("scalar", opts)
  if not is_due("scalar", name, opts) then return false end
  v = value_of(v)
  if core.is_tensor(v) then
    if v:numel() ~= 1 then fail("scalar", "value must be a number or a one-element tensor (got shape " .. v:shape_string() .. ")") end
    v = v:item()
  end
  if type(v) ~= "number" then fail("scalar", "value must be a number (got " .. args.typename(v) .. ")") end
  write_number("scalar", KIND.scalar, name, v)
  return true
end

-- A horizontal line labelled `label` on the curve `curve` (e.g. a baseline's loss); written once
-- per distinct value.
function viz.reference(curve, label, v)
  check_name("reference", curve)
  check_name("reference", label)
  if type(v) ~= "number" then fail("reference", "value must be a number (got " .. args.typename(v) .. ")") end
  if not state.log then return false end
  local name = curve .. ":" .. label
  check_name("reference", name)
  write_number("reference", KIND.reference, name, v)
  return true
end

-- img (H, W) or (H, W, C) in [0, 1] (lab.image.load's format); opts.points (K, 2) pixel x, y (a
-- scanpath, drawn joined in order); opts.heat (h, w) attention laid over the image, stretched.
function viz.image(name, img, opts)
  local t
  t, opts = due_tensor("image", name, img, opts, "img")
  if not t then return false end
  local nd = t:dim()
  if nd ~= 2 and nd ~= 3 then fail("image", "img must be (H, W) or (H, W, C) (got shape " .. t:shape_string() .. ")") end
  if nd == 3 and (t:shape()[3] < 1 or t:shape()[3] > 4) then fail("image", "img must have 1 to 4 channels (got shape " .. t:shape_string() .. ")") end
  local points = opts.points and as_tensor("image", value_of(opts.points), "opts.points")
  if points and (points:dim() ~= 2 or points:shape()[2] ~= 2) then
    fail("image", "opts.points must be (K, 2) x, y pairs (got shape " .. points:shape_string() .. ")")
  end
  local heat = opts.heat and as_tensor("image", value_of(opts.heat), "opts.heat")
  if heat and heat:dim() ~= 2 then fail("image", "opts.heat must be 2-d (got shape " .. heat:shape_string() .. ")") end
  write("image", KIND.image, name, t:detach())
  if points then write("image", KIND.points, name, points:detach()) end
  if heat then write("image", KIND.heat, name, heat:detach()) end
  return true
end

---------------------------------------------------------------------------------------------------
-- commands from the viewer: RUN_DIR/commands, one text line each, appended by the viewer
-- (docs/run-directory.md has the grammar; a scale is a finite number)
---------------------------------------------------------------------------------------------------

-- "pause" | "resume" | "step" | "ablate L H" | "scale L H S" | "restore L H" | "restore"
function viz.parse_command(line)
  local words = {}
  for w in line:gmatch("%S+") do words[#words + 1] = w end
  local op = words[1]
  local cmd = { op = op, text = line }
  local n = { tonumber(words[2]), tonumber(words[3]), tonumber(words[4]) }
  local function int(x) return x and x >= 1 and x == math.floor(x) end
  if op == "pause" or op == "resume" or op == "step" then
    if #words == 1 then return cmd end
  elseif op == "ablate" and #words == 3 and int(n[1]) and int(n[2]) then
    cmd.layer, cmd.head, cmd.scale = n[1], n[2], 0
    return cmd
  elseif op == "scale" and #words == 4 and int(n[1]) and int(n[2]) and n[3] and n[3] == n[3] and math.abs(n[3]) < math.huge then
    cmd.layer, cmd.head, cmd.scale = n[1], n[2], n[3]
    return cmd
  elseif op == "restore" and (#words == 1 or (#words == 3 and int(n[1]) and int(n[2]))) then
    cmd.layer, cmd.head, cmd.scale = n[1], n[2], 1
    return cmd
  end
  return { op = "invalid", text = line }
end

-- The commands appended since the last poll, parsed; {} when there are none.  One stat() per call
-- when nothing is new, so a training loop can poll every step.
function viz.poll()
  if not state.log then return {} end
  local size = tonumber(C.al_file_size(state.commands_path))
  if size <= state.cmd_offset then
    if size >= 0 and size < state.cmd_offset then state.cmd_offset = size end -- replaced by a shorter file
    return {}
  end
  local f = io.open(state.commands_path, "rb")
  if not f then return {} end
  f:seek("set", state.cmd_offset)
  local text = f:read(size - state.cmd_offset) or ""
  f:close()
  local complete = text:match("^(.*\n)") -- a line still being written waits for the next poll
  if not complete then return {} end
  state.cmd_offset = state.cmd_offset + #complete
  local out = {}
  for line in complete:gmatch("([^\n]*)\n") do
    line = line:gsub("^%s+", ""):gsub("%s+$", "")
    if line ~= "" then out[#out + 1] = viz.parse_command(line) end
  end
  return out
end

-- Appends one command line (what the viewer does; for tests and for scripts driving a run).
function viz.send(dir, line)
  if type(dir) ~= "string" or type(line) ~= "string" or line:find("\n", 1, true) then
    fail("send", "expects (run_dir, one line of text)")
  end
  local f, err = io.open(dir .. "/commands", "ab")
  if not f then fail("send", "cannot open '" .. dir .. "/commands': " .. tostring(err)) end
  f:write(line, "\n")
  f:close()
end

-- Records of a run directory, read back: a list of {kind=, name=, step=, layer=, head=, shape=,
-- values= (floats) | text=}.  Raises a clear error on a garbled file; a truncated tail is left out.
function viz.read(dir)
  if type(dir) ~= "string" then fail("read", "expects a run directory") end
  local r = C.al_runlog_reader_open(dir .. "/records.bin")
  if r == nil then core.raise(core.core_message("viz.read")) end
  r = ffi.gc(r, C.al_runlog_reader_close)
  local info = ffi.new("al_record_info")
  local out = {}
  while true do
    local rc = C.al_runlog_next(r, info)
    check_status(rc, "read")
    if rc == 0 then break end
    local rec = { kind = info.kind, name = ffi.string(info.name), step = tonumber(info.step), layer = info.layer,
                  head = info.head, shape = {}, time = info.time }
    for i = 0, info.ndim - 1 do rec.shape[i + 1] = tonumber(info.shape[i]) end
    local n = tonumber(info.payload_bytes)
    local buf = ffi.new("uint8_t[?]", math.max(n, 1))
    check_status(C.al_runlog_read_payload(r, info, buf, n), "read")
    if info.dtype == C.AL_RECORD_TEXT then
      rec.text = ffi.string(buf, n)
    else
      local f = ffi.cast("float *", buf)
      rec.values = {}
      for i = 0, n / 4 - 1 do rec.values[i + 1] = f[i] end
    end
    out[#out + 1] = rec
  end
  return out
end

return viz
