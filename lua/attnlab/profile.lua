-- attnlab.profile: where a training step's time goes, op by op, forward and backward.
--
--   local prof = lab.profile(function() for _ = 1, 5 do step() end end)
--   print(prof:report())           -- a table sorted by self time, like torch.profiler's key_averages()
--   prof.rows                      -- the same as a list of {name, phase, calls, seconds, self, flops}
--
-- Forward ops are timed at the FFI boundary: while fn runs, each core function that computes a
-- tensor (and the in-place ops, the optimiser steps and backward) is called through a timing
-- wrapper put into lab.C.  Backward nodes are timed inside the core (core/profile.c), one entry per
-- op name.  The products count their floating-point operations, so rows that did products show
-- GFLOP/s.  `backward` itself is a row whose self time is the walk of the graph (the total minus
-- its nodes), and `Lua and the rest` is fn's time outside every timed call: the script, the
-- modules' Lua code, the garbage collector.  Off, the profiler costs nothing: the wrappers exist
-- only while fn runs.
local lab = require "attnlab"
local core, args = require "attnlab.core", require "attnlab.args"
local ffi = require "ffi"
local C = core.C

-- The core functions worth a row: those that return a tensor (an op or a view), the in-place ops,
-- the optimiser steps and backward; not the accessors, whose cost is a few nanoseconds.
local function op_names()
  local names = {}
  for name in lab.ffi_declarations:gmatch("al_ref%s+(al_[%w_]+)%s*%(") do
    if name ~= "al_retain" then names[#names + 1] = name end
  end
  for _, name in ipairs{ "al_fill_", "al_copy_", "al_add_scaled_", "al_mul_scalar_", "al_backward",
                          "al_sgd_step", "al_adam_step", "al_clip_grad_norm" } do
    names[#names + 1] = name
  end
  return names
end

local Profile = {}
Profile.__index = Profile

-- A row per (name, phase), sorted by self time, the costliest first.
function Profile:report(limit)
  local rows, out = self.rows, {}
  if limit ~= nil and (type(limit) ~= "number" or limit < 0 or limit ~= math.floor(limit)) then
    core.raise("Profile:report: limit must be an integer >= 0 (got " .. args.show(limit) .. ")")
  end
  limit = limit or #rows
  out[1] = string.format("%-28s %-8s %7s %10s %10s %6s %9s", "op", "phase", "calls", "total ms", "self ms",
    "self %", "GFLOP/s")
  out[2] = string.rep("-", #out[1])
  for i = 1, math.min(limit, #rows) do
    local r = rows[i]
    out[#out + 1] = string.format("%-28s %-8s %7d %10.3f %10.3f %5.1f%% %9s", r.name, r.phase, r.calls,
      r.seconds * 1e3, r.self * 1e3, 100 * r.self / self.seconds,
      r.flops > 0 and string.format("%.1f", r.flops / r.self / 1e9) or "")
  end
  out[#out + 1] = out[2]
  out[#out + 1] = string.format("%-28s %-8s %7s %10.3f   (%s ms per call of fn over %d calls)", "all", "", "",
    self.seconds * 1e3, string.format("%.3f", self.seconds * 1e3 / self.calls), self.calls)
  return table.concat(out, "\n")
end

local function profile(fn, calls)
  if type(fn) ~= "function" then core.raise("profile: expects a function (got " .. type(fn) .. ")") end
  calls = calls or 1
  if type(calls) ~= "number" or calls < 1 or calls ~= math.floor(calls) then
    core.raise("profile: calls must be a positive integer (got " .. tostring(calls) .. ")")
  end
  local forward, originals = {}, {}
  for _, name in ipairs(op_names()) do
    local f = C[name]
    originals[name] = f
    local row = { name = name:sub(4), phase = name == "al_backward" and "backward" or "forward", calls = 0,
                  seconds = 0, flops = 0 }
    forward[#forward + 1] = row
    rawset(C, name, function(...)
      C.al_profile_take_flops()
      local t0 = lab.time()
      local r = f(...)
      row.seconds = row.seconds + (lab.time() - t0)
      row.calls = row.calls + 1
      row.flops = row.flops + C.al_profile_take_flops()
      return r
    end)
  end
  C.al_profile_reset()
  C.al_profile_enable(1)
  local t0 = lab.time()
  local ok, err = pcall(function() for _ = 1, calls do fn() end end)
  local seconds = lab.time() - t0
  C.al_profile_enable(0)
  for name, f in pairs(originals) do rawset(C, name, f) end
  if not ok then error(err, 0) end

  local rows, timed = {}, 0
  local backward_walk
  for _, r in ipairs(forward) do
    if r.calls > 0 then
      r.self = r.seconds
      rows[#rows + 1] = r
      timed = timed + r.seconds
      if r.name == "backward" then backward_walk = r end
    end
  end
  local name, ncalls, secs, flops = ffi.new("const char *[1]"), ffi.new("int64_t[1]"), ffi.new("double[1]"),
    ffi.new("double[1]")
  for i = 0, C.al_profile_backward_count() - 1 do
    C.al_profile_backward_entry(i, name, ncalls, secs, flops)
    rows[#rows + 1] = { name = ffi.string(name[0]), phase = "backward", calls = tonumber(ncalls[0]), seconds = secs[0],
                        self = secs[0], flops = flops[0] }
    if backward_walk then backward_walk.self = backward_walk.self - secs[0] end
  end
  if backward_walk then backward_walk.name, backward_walk.flops = "backward (graph walk)", 0 end
  rows[#rows + 1] = { name = "Lua and the rest", phase = "", calls = calls, seconds = seconds - timed,
                      self = seconds - timed, flops = 0 }
  table.sort(rows, function(a, b) return a.self > b.self end)
  return setmetatable({ rows = rows, seconds = seconds, calls = calls }, Profile)
end

-- `attnlab run --profile`: the whole script under the profiler; the table (its 40 costliest rows)
-- goes to stderr and into the directory of the run the script started, as profile.txt.
local function script(chunk, ...)
  local args, n = { ... }, select("#", ...)
  local prof = profile(function() chunk(unpack(args, 1, n)) end)
  local text = prof:report(40) .. "\n"
  io.stderr:write(text)
  local dir = package.loaded["attnlab.run"] and package.loaded["attnlab.run"].last_dir
  if dir then lab.write_file_atomic(dir .. "/profile.txt", text) end
end

return setmetatable({ Profile = Profile, script = script },
  { __call = function(_, fn, calls) return profile(fn, calls) end })
