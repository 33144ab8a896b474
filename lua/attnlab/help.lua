-- attnlab.help: lab.help(x) and lab.help_text(x), the entries of docs/reference.md from a script, the
-- prompt (`help(lab.nn.Linear)`) or the command line (`attnlab help nn.Linear`).
--
-- The reference is plain markdown.  Each entry is a level-3 heading naming what it documents in
-- backticks, one or several names ("### `lab.zeros`, `lab.ones`"), followed by its text up to the
-- next heading; a level-2 heading may name a table in backticks too ("## `lab.nn`: modules"), and
-- its entry is the section's opening text followed by the list of the names in it.
--
-- A name is looked up without regard to case, with or without "lab." or "attnlab." in front, with
-- ":" or "." before a method ("Tensor.narrow" finds "Tensor:narrow"), and by its last part when that
-- is unique ("TransformerBlock", "narrow").  help(value) finds the value's name by walking the public
-- tables (public_tables below, which tests/lua/test_reference.lua walks too).
local lab = require "attnlab"
local core = require "attnlab.core"

local M = {}

---------------------------------------------------------------------------------------------------
-- the public tables: {name prefix, table}, the prefix ending in "." (functions and fields) or ":"
-- (methods of an object)
---------------------------------------------------------------------------------------------------

-- An nn class (nn.class): a table whose metatable makes it callable, with a name.
local function is_class(v)
  local mt = type(v) == "table" and getmetatable(v)
  return mt and type(mt.__call) == "function" and type(rawget(v, "name")) == "string" and rawget(v, "__index") == v
end
M.is_class = is_class

-- the attnlab.tasks.* modules present in the tree (one file each in lua/attnlab/tasks/)
function M.task_modules()
  local names = {}
  local dir = lab.root .. "/lua/attnlab/tasks"
  local p = io.popen('ls "' .. dir .. '" 2>/dev/null')
  if p then
    for f in p:lines() do
      local n = f:match("^([%w_]+)%.lua$")
      if n then names[#names + 1] = n end
    end
    p:close()
  end
  table.sort(names)
  return names
end

-- What a user can reach: the list of {prefix, table} whose non-underscore keys are the public names.
-- Classes of lab.nn and of the task modules bring their own methods (beyond the Module methods every
-- class has), as "ClassName:method".
function M.public_tables()
  local nn, optim = lab.nn, lab.optim
  local list = {
    { "lab.", lab }, { "Tensor:", lab.Tensor }, { "lab.image.", lab.image }, { "lab.attention.", lab.attention },
    { "lab.nn.", nn }, { "Module:", nn.Module }, { "lab.optim.", optim },
    { "lab.run.", lab.run }, { "Run:", lab.run.Run }, { "lab.viz.", lab.viz }, { "lab.analysis.", lab.analysis },
    { "lab.profile.", lab.profile }, { "Profile:", lab.profile.Profile }, { "lab.json.", lab.json },
    { "lab.dist.", lab.dist }, { "lab.plot.", lab.plot }, { "Canvas:", lab.plot.Canvas }, { "lab.sweep.", lab.sweep },
    { "lab.scanpath.", lab.scanpath },
  }
  -- an optimiser's methods: those of its class and of the class they share
  local opt = optim.SGD({ lab.zeros{ 1 }:requires_grad(true) })
  local cls = getmetatable(opt)
  list[#list + 1] = { "Optimizer:", cls }
  local base = getmetatable(cls) and getmetatable(cls).__index
  if type(base) == "table" then list[#list + 1] = { "Optimizer:", base } end
  local function add_classes(tbl)
    local keys = {}
    for k, v in pairs(tbl) do if type(k) == "string" and is_class(v) then keys[#keys + 1] = k end end
    table.sort(keys)
    for _, k in ipairs(keys) do list[#list + 1] = { rawget(tbl[k], "name") .. ":", tbl[k], class = true } end
  end
  add_classes(nn)
  for _, name in ipairs(M.task_modules()) do
    local mod = require("attnlab.tasks." .. name)
    local prefix = "attnlab.tasks." .. name .. "."
    list[#list + 1] = { prefix, mod }
    for k, v in pairs(mod) do
      if type(k) == "string" and type(v) == "table" and not is_class(v) and getmetatable(v) == nil and k:sub(1, 1) ~= "_" then
        local any_function = false
        for _, x in pairs(v) do if type(x) == "function" then any_function = true end end
        if any_function then list[#list + 1] = { prefix .. k .. ".", v } end
      end
    end
    add_classes(mod)
  end
  return list
end

-- The keys of a class that every class has (documented once, under Module and lab.nn.class).
local class_common = { name = true, init = true, forward = true, describe = true }

-- The public names of one entry of public_tables(): a sorted list of {name, value}.
function M.names_of(entry)
  local prefix, tbl = entry[1], entry[2]
  local out = {}
  for k, v in pairs(tbl) do
    if type(k) == "string" and k:sub(1, 1) ~= "_" and not (entry.class and class_common[k]) then
      out[#out + 1] = { prefix .. k, v }
    end
  end
  table.sort(out, function(a, b) return a[1] < b[1] end)
  return out
end

---------------------------------------------------------------------------------------------------
-- the reference
---------------------------------------------------------------------------------------------------

local function reference_path() return (lab.root:gsub("/lua/attnlab/%.%./%.%.$", "")) .. "/docs/reference.md" end
M.reference_path = reference_path

-- the lookup form of a name: no "lab."/"attnlab." in front, "." before a method; lower case too
-- unless exact is true
local function key_of(name, exact)
  local k = name:gsub(":", ".")
  if not exact then k = k:lower() end
  k = k:gsub("^attnlab%.", ""):gsub("^lab%.", ""):gsub("^Lab%.", "")
  return k
end

local cache
-- {entries = {{names = {...}, level = 2|3, text = "..."}...}, by_key = {key -> entry}}
local function load_reference()
  if cache then return cache end
  local f = io.open(reference_path(), "rb")
  if not f then return nil, "help: cannot read " .. reference_path() .. " (the reference ships in docs/)" end
  local text = f:read("*a")
  f:close()
  local entries, by_key, by_exact = {}, {}, {}
  local current, section
  local function finish()
    if current then current.text = table.concat(current.lines, "\n"):gsub("%s+$", "") end
  end
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    local hashes, title = line:match("^(#+)%s+(.*)$")
    if hashes and #hashes <= 3 then
      finish()
      current = { level = #hashes, title = title, names = {}, lines = { line }, children = {} }
      for name in title:gmatch("`([^`]+)`") do current.names[#current.names + 1] = name end
      if #hashes <= 2 then section = current
      elseif section then section.children[#section.children + 1] = current end
      entries[#entries + 1] = current
      for _, name in ipairs(current.names) do
        local k, e = key_of(name), key_of(name, true)
        if not by_key[k] then by_key[k] = current end
        if not by_exact[e] then by_exact[e] = current end
      end
    elseif current then
      current.lines[#current.lines + 1] = line
    end
  end
  finish()
  -- a section without a name in backticks answers to its title up to a colon, in lower case
  -- ("conventions", "autograd"), unless an entry has that name ("attention" is lab.attention)
  for _, e in ipairs(entries) do
    if e.level <= 2 and #e.names == 0 then
      local k = e.title:match("^([^:]+)"):lower():gsub("%s+$", "")
      if not by_key[k] then by_key[k] = e end
    end
  end
  cache = { entries = entries, by_key = by_key, by_exact = by_exact }
  return cache
end
M.load_reference = load_reference

-- Every name the reference documents (its exact lookup form, key_of(name, true) -> true).
function M.documented()
  local ref, err = load_reference()
  if not ref then return nil, err end
  local out = {}
  for k in pairs(ref.by_exact) do out[k] = true end
  return out
end
M.key_of = key_of

-- the value's public name, found by walking the public tables
local function name_of_value(x)
  if core.is_tensor(x) then return "Tensor" end
  for _, entry in ipairs(M.public_tables()) do
    for _, pair in ipairs(M.names_of(entry)) do
      if pair[2] == x and (type(x) == "function" or type(x) == "table") then return pair[1] end
    end
  end
  for _, entry in ipairs(M.public_tables()) do
    if entry[2] == x then return (entry[1]:gsub("[.:]$", "")) end
  end
  if type(x) == "table" then
    local mt = getmetatable(x)
    if mt and is_class(mt) then   -- a module: its class's name
      for _, entry in ipairs(M.public_tables()) do
        for _, pair in ipairs(M.names_of(entry)) do if pair[2] == mt then return pair[1] end end
      end
      return rawget(mt, "name")
    end
    if mt == lab.run.Run then return "lab.run.start" end
    if mt == lab.profile.Profile then return "lab.profile" end
    if rawget(x, "params") and rawget(x, "hyper") then return "lab.optim" end   -- an optimiser
  end
  return nil
end

-- An entry as text: a level-3 entry as written; a section, its opening text and the names in it.
local function render(entry)
  if entry.level == 3 then return entry.text end
  local out = { entry.text }
  if #entry.children > 0 then
    local names = {}
    for _, child in ipairs(entry.children) do names[#names + 1] = table.concat(child.names, ", ") end
    out[#out + 1] = "\nEntries (help(NAME) for one): " .. table.concat(names, "; ")
  end
  return table.concat(out, "\n")
end

-- The text of the entry for x (a name, or a value reachable from lab), or nil and a message.
function M.text(x)
  local ref, err = load_reference()
  if not ref then return nil, err end
  if x == nil then
    local sections = {}
    for _, e in ipairs(ref.entries) do
      if e.level == 2 then sections[#sections + 1] = "  " .. e.title:gsub("`", "") end
    end
    return "attnlab reference (" .. reference_path() .. "): help(NAME) or help(value), e.g. help(\"nn.TransformerBlock\"),\n" ..
      "help(lab.randn), help(\"Tensor:narrow\"), help(\"conventions\"); `attnlab help NAME` from the shell.  Sections:\n" .. table.concat(sections, "\n")
  end
  local name = x
  if type(x) ~= "string" then
    name = name_of_value(x)
    if not name then return nil, "help: no entry for this " .. type(x) .. " (give a name: help(\"nn.Linear\"))" end
  end
  -- the whole name, then its last part when that is unique ("Linear" is lab.nn.Linear, while
  -- "linear" is lab.linear): first as written, then without regard to case
  local function by_tail(map, k)
    local matches, seen = {}, {}
    local tail = "." .. k
    for key, entry in pairs(map) do
      if key:sub(-#tail) == tail and not seen[entry] then
        seen[entry] = true
        matches[#matches + 1] = { key = key, entry = entry }
      end
    end
    table.sort(matches, function(a, b) return a.key < b.key end)
    return matches
  end
  local several
  for _, exact in ipairs{ true, false } do
    local map, k = exact and ref.by_exact or ref.by_key, key_of(name, exact)
    if map[k] then return render(map[k]) end
    local matches = by_tail(map, k)
    if #matches == 1 then return render(matches[1].entry) end
    if #matches > 1 and not several then several = matches end
  end
  if several then
    local names = {}
    for i, m in ipairs(several) do
      names[i] = m.entry.names[1]
      for _, n in ipairs(m.entry.names) do
        if key_of(n) == m.key or key_of(n, true) == m.key then names[i] = n end
      end
    end
    return nil, "help: '" .. name .. "' names several entries: " .. table.concat(names, ", ") .. " (give one of them)"
  end
  -- near names: those containing the query
  local k, near, seen = key_of(name), {}, {}
  for key, entry in pairs(ref.by_key) do
    if key:find(k, 1, true) and not seen[entry] then seen[entry] = true near[#near + 1] = entry.names[1] end
  end
  table.sort(near)
  return nil, "help: no entry for '" .. name .. "' in docs/reference.md" ..
    (#near > 0 and " (did you mean " .. table.concat(near, ", ", 1, math.min(#near, 8)) .. "?)" or "")
end

-- Prints the entry (or why there is none); returns nothing, so that the prompt prints it once.
function M.help(x)
  local text, err = M.text(x)
  print(text or err)
end

return M
