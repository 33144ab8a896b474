-- check.lua -- the Lua tests' few helpers (the twin of tests/c/check.h).  A test file does
--   local check = dofile("tests/lua/check.lua")("gradcheck")
--   check.ok(cond, "what")  check.near(a, b, tol, "what")  check.fails(fn, "needle", "what")
--   os.exit(check.report())
-- and ends with one line "<name>: N passed, N failed".
return function(name)
  local check = { passed = 0, failed = 0 }
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
    if ok then check.passed = check.passed + 1
    else fail(what, string.format("%s vs %s, tol %g", tostring(a), tostring(b), tol)) end
    return ok
  end
  -- fn must raise a Lua error whose message contains needle (plain text)
  function check.fails(fn, needle, what)
    local ok, err = pcall(fn)
    if not ok and tostring(err):find(needle, 1, true) then check.passed = check.passed + 1 return true end
    fail(what or ("should fail with '" .. needle .. "'"), ok and "no error" or tostring(err))
    return false
  end
  function check.report()
    print(string.format("%s: %d passed, %d failed", name, check.passed, check.failed))
    return check.failed == 0 and 0 or 1
  end
  return check
end
