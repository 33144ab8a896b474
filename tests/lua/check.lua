-- check.lua -- the Lua tests' few helpers (the twin of tests/c/check.h).  A test file does
--   local check = dofile("tests/lua/check.lua")("gradcheck")
--   check.ok(cond, "what")  check.near(a, b, tol, "what")  check.fails(fn, "needle", "what")
--   check.value(cond, "what")  (an ok that compares computed numbers with reference ones)
--   check.gradients(loss_fn, {name = tensor}, "what")  (float64 central differences)
--   check.skip(n, "why")  (n checks that could not run here, and why: counted and printed, never silent)
--   check.tmpdir(tag), check.read_file(path), check.write_file(path, s), check.cleanup()
--   check.study(script, dir)  (an experiment run through the program, as a user runs it)
--   os.exit(check.report())
-- and ends with one line "<name>: N passed, N failed, N skipped; N compare numbers".  The last
-- figure counts the passed checks that compared numbers (near, value, gradients): a reader of the
-- total can tell them from bookkeeping checks (a forward ran, a shape, a dtype).
return function(name)
  local check = { passed = 0, failed = 0, skipped = 0, numeric = 0 }
  local function fail(what, detail)
    check.failed = check.failed + 1
    local info = debug.getinfo(3, "Sl")
    io.stderr:write(string.format("%s:%d: %s%s\n", info.short_src, info.currentline, what or "check failed",
      detail and (" (" .. detail .. ")") or ""))
  end
  function check.ok(cond, what, detail)
    if cond then check.passed = check.passed + 1 else fail(what, detail) end
    return cond
  end
  function check.near(a, b, tol, what)
    local ok = type(a) == "number" and type(b) == "number" and math.abs(a - b) <= tol
    if ok then check.passed, check.numeric = check.passed + 1, check.numeric + 1
    else fail(what, string.format("%s vs %s, tol %g", tostring(a), tostring(b), tol)) end
    return ok
  end
  function check.value(cond, what, detail)
    if cond then check.passed, check.numeric = check.passed + 1, check.numeric + 1 else fail(what, detail) end
    return cond
  end
  function check.skip(n, why)
    check.skipped = check.skipped + n
    print(string.format("SKIP %d checks: %s", n, why))
  end
  -- fn must raise a Lua error whose message contains needle (plain text)
  function check.fails(fn, needle, what)
    local ok, err = pcall(fn)
    if not ok and tostring(err):find(needle, 1, true) then check.passed = check.passed + 1 return true end
    fail(what or ("should fail with '" .. needle .. "'"), ok and "no error" or tostring(err))
    return false
  end
  -- loss: a function returning a scalar tensor of the float64 tensors in inputs ({name = tensor},
  -- each with requires_grad).  Checks every element of each input's gradient against central
  -- differences (h = 1e-6): max |analytic - numeric| / max(1, max |numeric|) < 1e-6.
  function check.gradients(loss, inputs, label)
    local lab = require "attnlab"
    for _, x in pairs(inputs) do x:zero_grad() end
    loss():backward()
    local names = {}
    for name in pairs(inputs) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do
      local x = inputs[name]
      local g, flat = x.grad:reshape{ -1 }:totable(), x:detach():reshape{ -1 }
      local worst, scale = 0, 1
      for idx = 1, flat:numel() do
        local orig = flat:get(idx)
        flat:set(idx, orig + 1e-6); local up = lab.no_grad(function() return loss():item() end)
        flat:set(idx, orig - 1e-6); local down = lab.no_grad(function() return loss():item() end)
        flat:set(idx, orig)
        local numeric = (up - down) / 2e-6
        worst, scale = math.max(worst, math.abs(numeric - g[idx])), math.max(scale, math.abs(numeric))
      end
      check.value(worst / scale < 1e-6, string.format("%s: d loss / d %s matches central differences", label, name),
        string.format("relative error %.3g", worst / scale))
    end
  end

  -- files for tests that write run directories: check.tmpdir(tag) is a fresh, empty folder
  -- (under one os.tmpname() prefix per test file, removed by check.cleanup())
  local prefix
  function check.tmpdir(tag)
    if not prefix then prefix = os.tmpname() os.remove(prefix) end
    local d = prefix .. "-" .. tag
    os.execute("rm -rf '" .. d .. "' && mkdir -p '" .. d .. "'")
    return d
  end
  function check.cleanup() if prefix then os.execute("rm -rf '" .. prefix .. "'-*") end end
  function check.read_file(path) return (rawget(_G, "lab") or require "attnlab").read_file(path) end
  function check.write_file(path, s)
    local f = assert(io.open(path, "wb"))
    f:write(s)
    f:close()
  end

  -- An experiment script run through the program (`attnlab run script ARGS --threads 1 --out OUT`),
  -- its stdout and stderr into dir/stdout and dir/stderr:
  --   local study = check.study("experiments/induction.lua", check.tmpdir("induction"))
  --   study.refuses("seg_min=1", { "induction:", "seg_min" }, "what")  a config it must refuse:
  --       it exits non-zero and its stderr names each needle (before any training)
  --   study.run(out, "steps=400", "what")  a run that must exit 0 (checked); returns whether it did
  --   study.summary(out, { "accuracy", ... })  out/summary.json, checked to be JSON and to have each
  --       key; returns its table ({} when it is not JSON)
  function check.study(script, dir)
    local attnlab = os.getenv("ATTNLAB") or "./build/attnlab"
    local study = {}
    local function run(out, args)
      local status = os.execute(string.format("'%s' run %s %s --threads 1 --out '%s' > '%s/stdout' 2> '%s/stderr'",
        attnlab, script, args, out, dir, dir))
      return status == 0 or status == true
    end
    local function stderr() return check.read_file(dir .. "/stderr") or "" end
    function study.refuses(args, needles, what)
      local refused = not run(dir .. "/bad", args)
      local err = stderr()
      for _, needle in ipairs(needles) do refused = refused and err:find(needle, 1, true) ~= nil end
      return check.ok(refused, what, err:sub(-500))
    end
    -- runs the study into out and checks that it exited 0; notes its wall time
    function study.run(out, args, what)
      local t0 = os.time()
      local ok = run(out, args)
      print(string.format("note: %s %s took %d s", script, args, os.time() - t0))
      return check.ok(ok, what, ok and nil or stderr():sub(-2000))
    end
    function study.summary(out, keys)
      local ok, summary = pcall(require("attnlab.json").decode, check.read_file(out .. "/summary.json") or "")
      ok = ok and type(summary) == "table"
      check.ok(ok, "summary.json is JSON")
      summary = ok and summary or {}
      for _, k in ipairs(keys) do check.ok(summary[k] ~= nil, "summary.json has " .. k) end
      return summary
    end
    return study
  end

  function check.report()
    print(string.format("%s: %d passed, %d failed, %d skipped; %d compare numbers", name, check.passed, check.failed,
      check.skipped, check.numeric))
    return check.failed == 0 and 0 or 1
  end
  return check
end
