-- fixtures.lua -- what the PyTorch-fixture tests share (test_fixtures.lua, test_vision_fixtures.lua):
--   local fx = dofile("tests/lua/fixtures.lua")(check, PATH)
--   fx.get(name), fx.has(name), fx.compare(what, got, want [, tol]), fx.all_used()
-- The file is a safetensors written by a script in tests/fixtures/ with Debian's python3-torch.
-- compare: same shape and dtype as the reference, relative error below 1e-10 (float64) or 1e-5
-- (float32); all_used: every fixture in the file was read by some case (none left stale).
return function(check, path)
  local lab = rawget(_G, "lab") or require "attnlab"
  local M = { TOL64 = 1e-10, TOL32 = 1e-5 }
  local ok, tensors, meta = pcall(lab.load, path)
  if not check.ok(ok, "load " .. path, not ok and tostring(tensors) or nil) then os.exit(check.report(), true) end
  check.ok(meta and meta.torch_version ~= nil, "fixtures: metadata names the torch version")
  M.tensors, M.meta = tensors, meta

  local used = {}
  function M.get(name)
    local t = tensors[name]
    if t == nil then error("fixture '" .. name .. "' is missing from " .. path, 2) end
    used[name] = true
    return t
  end
  function M.has(name) return tensors[name] ~= nil end

  function M.compare(what, got, want, tol)
    tol = tol or (want:dtype() == "float32" and M.TOL32 or M.TOL64)
    if not check.ok(lab.is_tensor(got), what .. ": is a tensor", type(got)) then return end
    if not check.ok(got:shape_string() == want:shape_string(), what .. ": shape",
        got:shape_string() .. " vs " .. want:shape_string()) then return end
    check.ok(got:dtype() == want:dtype(), what .. ": dtype", got:dtype() .. " vs " .. want:dtype())
    local w = want:to("float64")
    local err = (got:to("float64") - w):abs():max():item()
    local scale = w:abs():max():item()
    local rel = err / math.max(scale, 1e-30)
    check.value(rel < tol, what, string.format("rel err %.3g (max abs err %.3g, max |torch| %.3g, tol %g)", rel, err, scale, tol))
  end

  function M.all_used()
    local unused = {}
    for name in pairs(tensors) do if not used[name] then unused[#unused + 1] = name end end
    table.sort(unused)
    check.ok(#unused == 0, "every fixture is used", table.concat(unused, ", "))
  end
  return M
end
