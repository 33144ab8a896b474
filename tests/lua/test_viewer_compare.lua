-- test_viewer_compare.lua -- `attnlab view --compare SWEEP_DIR`: a real sweep of four short points of
-- tests/lua/sweep_script.lua (lr=0.02,0.1 x seed=1,2; three run with `attnlab sweep --run-point`, as
-- a Slurm task would, one of them failing on purpose at step 10, and one left pending) is drawn with
-- every point that ran as a curve of its own colour, labelled by its settings; the failed point is
-- marked as failed and its curve stops at step 10; the pending point is listed as not drawn, in the
-- legend, the step bar and on stderr.  Mixed arguments, RUN_DIR naming one of the points, and bad
-- directories (neither a run nor a sweep, a sweep given as RUN_DIR, a broken sweep.json, a sweep with
-- nothing to draw) each give one clear line.  Live: a point that starts while the window is open
-- appears in it.
local check = dofile("tests/lua/check.lua")("viewer_compare")
local lab = require "attnlab"

local BUILD = os.getenv("BUILD") or "build"
local VIEWER = BUILD .. "/attnlab-view"
local ATTNLAB = os.getenv("ATTNLAB") or (BUILD .. "/attnlab")
local read_file, write_file = check.read_file, check.write_file
local tmp = check.tmpdir("scratch") .. "/"
local function sh(cmd)   -- -> exit status, stdout, stderr
  local out, err = tmp .. "out", tmp .. "err"
  local status = os.execute(cmd .. " >'" .. out .. "' 2>'" .. err .. "'")
  return math.floor(status / 256), read_file(out) or "", read_file(err) or ""   -- LuaJIT: the wait() status
end
local function view(args) return sh(string.format("'%s' --size 900x600 --scale 1 %s", VIEWER, args)) end
local function one_line(e) return select(2, e:gsub("\n", "")) == 1 end
local function near(img, x, y, rgb, tol)   -- the pixel at canvas (x, y), 0-based, within tol of rgb
  local want = { math.floor(rgb / 65536) % 256, math.floor(rgb / 256) % 256, rgb % 256 }
  for c = 1, 3 do
    if math.abs(math.floor(img:get(y + 1, x + 1, c) * 255 + 0.5) - want[c]) > tol then return false end
  end
  return true
end
-- the --print-layout lines this test reads: the plots, the runs' legend, one line per compared slot
local function layout_of(text)
  local L = { compared = {} }
  for line in text:gmatch("[^\n]+") do
    local x, y, w, h, x0, x1, name = line:match("^plot (%d+) (%d+) (%d+) (%d+) (%-?%d+) (%-?%d+) %S+ %S+ (.+)$")
    if x then L.plot = { x = tonumber(x), y = tonumber(y), w = tonumber(w), h = tonumber(h), x0 = tonumber(x0), x1 = tonumber(x1), name = name } end
    local lx, ly, lw, lh = line:match("^runs_legend (%d+) (%d+) (%d+) (%d+)$")
    if lx then L.legend = { x = tonumber(lx), y = tonumber(ly), w = tonumber(lw), h = tonumber(lh) } end
    local slot, drawn, own, colour, status, label = line:match("^compared (%d+) (%d) (%d) (%x+) (%S+) (.+)$")
    if slot then
      L.compared[#L.compared + 1] = { slot = tonumber(slot), drawn = drawn == "1", own = own == "1", colour = tonumber(colour, 16),
                                      status = status, label = label }
    end
    L.note = L.note or line:match("^compare_note (.+)$")
  end
  return L
end
-- pixels of colour rgb in rect r, and the rightmost column that has one
local function count(img, r, rgb)
  local n, right = 0, -1
  for y = r.y, r.y + r.h - 1 do
    for x = r.x, r.x + r.w - 1 do
      if near(img, x, y, rgb, 24) then n = n + 1; if x > right then right = x end end
    end
  end
  return n, right
end

-- ---- the sweep: four points, three run (one fails at step 10), one pending ----------------------------------------
local sweep_dir = check.tmpdir("sweep")
local fail_flag = tmp .. "fail"
lab.sweep.create{ script = "tests/lua/sweep_script.lua", axes = { "lr=0.02,0.1", "seed=1..2" },
                  set = { "steps=40", "fail_file=" .. fail_flag .. "-{lr}-{seed}" }, out = sweep_dir }
write_file(fail_flag .. "-0.1-2", "")   -- point 4 (lr=0.1 seed=2) fails at step 10
local manifest = lab.json.decode(read_file(sweep_dir .. "/sweep.json"))
local function run_point(i) return sh(string.format("'%s' sweep --run-point '%s' %d", ATTNLAB, sweep_dir, i)) end
for _, i in ipairs{ 1, 2, 4 } do
  local rc, _, err = run_point(i)
  check.ok(rc == (i == 4 and 1 or 0), "point " .. i .. " ran (" .. (i == 4 and "failing on purpose" or "to the end") .. ")", err:sub(-400))
end

-- ---- every point that ran, its own colour, labelled by its settings -----------------------------------------------
local shot = tmp .. "sweep.png"
local rc, out, err = view("--compare '" .. sweep_dir .. "' --layout curves --print-layout --screenshot '" .. shot .. "'")
local L = layout_of(out)
check.ok(rc == 0 and #L.compared == 4, "--compare SWEEP_DIR: one slot per point", out .. err)
local want = { { "lr=0.02 seed=1", true, "finished" }, { "lr=0.02 seed=2", true, "finished" }, { "lr=0.1 seed=1", false, "pending" },
               { "lr=0.1 seed=2", true, "failed" } }
for i, w in ipairs(want) do
  local c = L.compared[i] or {}
  check.ok(c.label == w[1] and c.drawn == w[2] and c.status == w[3],
    string.format("point %d: labelled '%s' (the settings that vary, not '%s'), %s, %s", i, w[1], manifest.points[i].dir,
      w[2] and "drawn" or "not drawn", w[3]), string.format("%s %s %s", tostring(c.label), tostring(c.drawn), tostring(c.status)))
end
check.ok(L.compared[1] and L.compared[1].own, "without RUN_DIR the first point that did not fail is the run whose maps are shown")
local colours = {}
for _, c in ipairs(L.compared) do colours[c.colour] = true end
local distinct = 0
for _ in pairs(colours) do distinct = distinct + 1 end
check.ok(distinct == 4, "each slot has its own colour", distinct)
local NOTE = "1 of 4 sweep points not drawn: 1 pending (no run directory)"
check.ok(L.note == NOTE, "the pending point is counted and said why, for --print-layout", tostring(L.note))
check.ok(one_line(err) and err:find("attnlab view: note: " .. NOTE, 1, true), "and on stderr", err)

local img = lab.image.load(shot)
local p = L.plot or { x = 0, y = 0, w = 1, h = 1, x0 = 0, x1 = 1 }
local function px_x(step) return p.x + math.floor((step - p.x0) * (p.w - 1) / (p.x1 - p.x0)) end
check.ok(p.name == "loss" and p.x0 == 1 and p.x1 == 40, "one plot, loss over steps 1 .. 40", tostring(p.name))
for i, c in ipairs(L.compared) do
  local n, right = count(img, p, c.colour)
  if c.drawn then
    check.ok(n > 60, string.format("point %d's curve is drawn in its colour %06x", i, c.colour), n)
    if c.status == "failed" then
      check.ok(right <= px_x(10) + 3, "the failed point's curve stops at its last step, 10", right .. " > " .. px_x(10))
    else
      check.ok(right >= px_x(39), string.format("point %d's curve runs to step 40", i), right)
    end
  else
    check.ok(n == 0, "the point that never ran has no curve", n)
  end
end
local legend = L.legend or { x = 0, y = 0, w = 1, h = 1 }
check.ok(legend.w > 0 and legend.y + legend.h <= p.y, "the runs' legend is above the plot", out)
local red = 0   -- the legend's red text (antialiased: reddish pixels, not one exact colour)
for y = legend.y, legend.y + legend.h - 1 do
  for x = legend.x, legend.x + legend.w - 1 do
    local r, g, b = img:get(y + 1, x + 1, 1), img:get(y + 1, x + 1, 2), img:get(y + 1, x + 1, 3)
    if r > 0.6 and g < 0.45 and b < 0.45 then red = red + 1 end
  end
end
check.ok(red > 40, "the legend marks the failed point in red (failed at step 10)", red)
for i, c in ipairs(L.compared) do
  if c.drawn then check.ok(count(img, legend, c.colour) >= 20, "the legend has point " .. i .. "'s swatch") end
end

-- ---- mixed arguments; RUN_DIR naming a point; the same run twice ------------------------------------------------------
local other = check.tmpdir("other")
local lines = {}
for s = 1, 40 do lines[#lines + 1] = string.format('{"step":%d,"loss":%.6f}', s, 3 - 0.05 * s) end
write_file(other .. "/metrics.jsonl", table.concat(lines, "\n") .. "\n")
rc, out, err = view(string.format("'%s' --compare '%s' --layout curves --print-layout --screenshot '%s'", other, sweep_dir, shot))
L = layout_of(out)
check.ok(rc == 0 and #L.compared == 5 and L.compared[1].own and L.compared[1].label:find("other", 1, true)
  and L.compared[2].label == "lr=0.02 seed=1", "RUN_DIR --compare SWEEP_DIR: this run first, then the points", out .. err)
rc, out, err = view(string.format("--compare '%s' --compare '%s' --layout curves --print-layout --screenshot '%s'", sweep_dir, other, shot))
L = layout_of(out)
check.ok(rc == 0 and #L.compared == 5 and L.compared[5].drawn and L.compared[5].label:find("other", 1, true),
  "a sweep directory and a run directory mix, in the order given", out .. err)
local point2 = sweep_dir .. "/" .. manifest.points[2].dir
rc, out, err = view(string.format("'%s' --compare '%s' --compare '%s' --layout curves --print-layout --screenshot '%s'", point2,
  sweep_dir, sweep_dir .. "/" .. manifest.points[1].dir, shot))
L = layout_of(out)
check.ok(rc == 0 and #L.compared == 4 and L.compared[2].own and not L.compared[1].own,
  "RUN_DIR may be one of the points (its maps are shown, in its own slot); a run named twice is drawn once", out .. err)

-- ---- bad directories: one line naming --compare and the path --------------------------------------------------------
local empty = check.tmpdir("empty")
rc, out, err = view("--compare '" .. empty .. "' --screenshot '" .. shot .. "'")
check.ok(rc == 1 and one_line(err) and err:find("--compare: '" .. empty .. "' is neither a run directory", 1, true)
  and err:find("nor a sweep directory", 1, true), "--compare on a directory that is neither: one line", err)
rc, out, err = view("'" .. sweep_dir .. "' --screenshot '" .. shot .. "'")
check.ok(rc == 1 and one_line(err) and err:find("is a sweep directory", 1, true) and err:find("--compare", 1, true),
  "a sweep directory given as RUN_DIR points at --compare", err)
local broken = check.tmpdir("broken")
write_file(broken .. "/sweep.json", '{"format": "attnlab-sweep-1", "points": [')
rc, out, err = view("--compare '" .. broken .. "' --screenshot '" .. shot .. "'")
check.ok(rc == 1 and one_line(err) and err:find("--compare: ", 1, true) and err:find(broken .. "/sweep.json' is not JSON", 1, true),
  "a sweep.json that is not JSON: one line naming the file", err)
write_file(broken .. "/sweep.json", '{"format": "something-else", "points": []}')
rc, out, err = view("--compare '" .. broken .. "' --screenshot '" .. shot .. "'")
check.ok(rc == 1 and one_line(err) and err:find("is not a sweep manifest", 1, true), "a manifest of another format", err)
local unrun = check.tmpdir("unrun")
lab.sweep.create{ script = "tests/lua/sweep_script.lua", axes = { "seed=1..2" }, out = unrun }
rc, out, err = view("--compare '" .. unrun .. "' --screenshot '" .. shot .. "'")
check.ok(rc == 1 and one_line(err) and err:find("--compare: nothing to draw: 2 of 2 sweep points not drawn: 2 pending", 1, true),
  "a sweep none of whose points ran: nothing to draw, said so", err)

-- ---- live: the pending point starts while the window is open, and appears -------------------------------------------
local SDL_ENV = "SDL_VIDEODRIVER=offscreen ASAN_OPTIONS=detect_leaks=0"   -- (test_viewer.lua says why)
local LIVE_CHECKS = 3
local probe_rc, _, probe_err = sh(string.format(SDL_ENV .. " '%s' --compare '%s' --size 320x240 --scale 1 --bench-frames 1",
  VIEWER, sweep_dir))
local no_driver = probe_rc ~= 0 and probe_err:find("cannot open a window", 1, true) ~= nil and
                  (probe_err:find("not available", 1, true) or probe_err:find("No available video device", 1, true)) ~= nil
if probe_rc ~= 0 and not no_driver then
  check.ok(false, "the viewer opens a window on SDL's offscreen driver", string.format("exit %d: %s", probe_rc, probe_err))
elseif no_driver then
  check.skip(LIVE_CHECKS, "the live --compare check: SDL's offscreen video driver is not available")
else
  local ev, before, after, done = tmp .. "events", tmp .. "before.png", tmp .. "after.png", tmp .. "live.rc"
  write_file(ev, string.format("wait 500\nscreenshot %s\nwait 7000\nprint_layout\nscreenshot %s\nquit\n", before, after))
  os.execute(string.format("(%s '%s' --compare '%s' --layout curves --size 900x600 --scale 1 --events '%s' >'%slive.out' 2>&1; " ..
    "echo $? >'%s') &", SDL_ENV, VIEWER, sweep_dir, ev, tmp, done))
  local t0 = lab.time()
  while not read_file(before) and lab.time() - t0 < 30 do os.execute("sleep 0.1") end
  rc = run_point(3)
  while not read_file(done) and lab.time() - t0 < 60 do os.execute("sleep 0.2") end
  local live = read_file(tmp .. "live.out") or ""
  L = layout_of(live)
  local c3 = L.compared[3] or {}
  check.ok(rc == 0 and (read_file(done) or ""):match("^0") and c3.drawn and c3.label == "lr=0.1 seed=1",
    "a point that starts while the viewer is open is drawn once it has a run directory", live)
  local green = 0x81C784
  local n_before = read_file(before) and count(lab.image.load(before), L.plot or p, green) or -1
  local n_after = read_file(after) and count(lab.image.load(after), L.plot or p, green) or -1
  check.ok(n_before == 0, "before it ran, no curve in its colour", n_before)
  check.ok(n_after > 60, "after, its curve in its colour", n_after)
end

check.cleanup()
os.exit(check.report())
