-- test_viewer.lua -- the viewer renders real frames without a display and they show what the
-- records hold: known maps at known pixels, the legend and labels drawn, a replay at step N equal
-- to the record at step N, difference mode; damaged run directories give one clear line; an 8 x 8
-- grid of 128 x 128 maps draws at 30 fps or more; and, live, scripted SDL input (SDL's offscreen
-- driver) changes the frame and the running training: pause holds its steps, ablating head 2 is
-- logged by the script and moves its loss; `run --view` starts the viewer, which can close while
-- the training goes on.
-- (One file, over 500 lines, on purpose: every check reads frames of the one viewer program through
-- the helpers at its top (the headless view, the layout lines, pixels of a map's cell) and most of
-- them through one fixture run written below, so the sections share them rather than copy them.)
local check = dofile("tests/lua/check.lua")("viewer")
local lab = require "attnlab"
local viz = lab.viz

local BUILD = os.getenv("BUILD") or "build"
local VIEWER = BUILD .. "/attnlab-view"
local ATTNLAB = os.getenv("ATTNLAB") or (BUILD .. "/attnlab")
local fresh_dir, read_file, write_file = check.tmpdir, check.read_file, check.write_file
local tmp = fresh_dir("scratch") .. "/"   -- a folder for the files that are not run directories
local function sh(cmd)   -- -> exit status, stdout, stderr
  local out, err = tmp .. "out", tmp .. "err"
  local status = os.execute(cmd .. " >'" .. out .. "' 2>'" .. err .. "'")
  return math.floor(status / 256), read_file(out) or "", read_file(err) or ""   -- LuaJIT: the wait() status
end
-- Windowed sessions use SDL's offscreen driver.  Under ASan (make test SANITIZE=1) LeakSanitizer
-- is off for them only: the driver's dlopen()ed EGL libraries leave allocations at exit that are
-- not ours; the screenshot runs, which touch no SDL, keep the leak check.
local SDL_ENV = "SDL_VIDEODRIVER=offscreen ASAN_OPTIONS=detect_leaks=0"
local function view(dir, args) return sh(string.format("'%s' '%s' --size 640x480 --scale 1 %s", VIEWER, dir, args)) end
local function layout_of(text)   -- the --print-layout lines, by name
  local L = { cells = {} }
  for line in text:gmatch("[^\n]+") do
    local name, rest = line:match("^(%a+) (.*)$")
    local nums = {}
    for n in (rest or ""):gmatch("%-?%d+") do nums[#nums + 1] = tonumber(n) end
    if name == "cell" then L.cells[nums[1] .. "," .. nums[2]] = { x = nums[3], y = nums[4], w = nums[5], h = nums[6] }
    elseif name == "headbox" then L.headboxes = L.headboxes or {}; L.headboxes[nums[1]] = { x = nums[2], y = nums[3], w = nums[4], h = nums[5] }
    elseif name then L[name] = { x = nums[1], y = nums[2], w = nums[3], h = nums[4], rows = nums[5], cols = nums[6] } end
  end
  return L
end
-- the pixel at canvas (x, y), 0-based, as 0..255 integers
local function pixel(img, x, y)
  return math.floor(img:get(y + 1, x + 1, 1) * 255 + 0.5), math.floor(img:get(y + 1, x + 1, 2) * 255 + 0.5),
    math.floor(img:get(y + 1, x + 1, 3) * 255 + 0.5)
end
local function near(img, x, y, rgb, tol)
  local r, g, b = pixel(img, x, y)
  local want = { math.floor(rgb / 65536) % 256, math.floor(rgb / 256) % 256, rgb % 256 }
  return math.abs(r - want[1]) <= (tol or 3) and math.abs(g - want[2]) <= (tol or 3) and math.abs(b - want[3]) <= (tol or 3),
    string.format("(%d,%d,%d) at %d,%d, want %06x", r, g, b, x, y, rgb)
end
local YELLOW, PURPLE, MASKED = 0xFDE725, 0x440154, 0x2A2D33       -- viridis(1), viridis(0), the causal mask
local RED, BLUE, WHITE, PANEL = 0x67001F, 0x053061, 0xF7F7F7, 0x20232A
local function cell_centre(m, i, j)   -- 0-based row, column of a map drawn in rect m
  return m.x + math.floor((j + 0.5) * m.w / m.cols), m.y + math.floor((i + 0.5) * m.h / m.rows)
end
local function near_cell(img, m, i, j, rgb, tol)
  local x, y = cell_centre(m, i, j)
  return near(img, x, y, rgb, tol)
end

-- ---- a fixture run: known maps at steps 10, 20, 30, 40 -------------------------------------------
local N = 8
local run_dir = fresh_dir("fixture")
viz.open(run_dir, { interval = 0 })
local tokens = {}
for i = 1, N do tokens[i] = "tok" .. i end
local function shifted(k)   -- map[i][(i + k) % N] = 1
  local m = {}
  for i = 1, N do m[i] = {} for j = 1, N do m[i][j] = ((i - 1 + k) % N == j - 1) and 1 or 0 end end
  return lab.tensor(m)
end
local causal = {}
for i = 1, N do causal[i] = {} for j = 1, N do causal[i][j] = j <= i and 1 / i or 0 end end
causal = lab.tensor(causal)
local metrics = {}
for s = 10, 40, 10 do
  viz.set_step(s)
  local onehot = lab.stack({ lab.eye(N), lab.eye(N), lab.eye(N) }, 1)   -- q_i = e_i, k_j = e_j for every head
  viz.attention("L1", lab.stack({ lab.eye(N), causal, shifted(s / 10) }, 1), { layer = 1, tokens = tokens, q = onehot, k = onehot })
  viz.matrix("KQ", lab.tensor{ { 1, -1 }, { 0, 0.5 } }, { head = 1 })
end
viz.reference("loss", "ridge", 0.1)
viz.close()
for s = 1, 40 do metrics[#metrics + 1] = string.format('{"step":%d,"loss":%.6f}', s, 1 / s + 0.05) end
metrics[#metrics + 1] = '{"step":20,"event":"ablate","layer":1,"head":2,"scale":0,"text":"ablate layer 1 head 2"}'
metrics[#metrics + 1] = "this line is not JSON"
write_file(run_dir .. "/metrics.jsonl", table.concat(metrics, "\n") .. "\n")

-- ---- the identity map at known pixels ------------------------------------------------------------------
local shot = tmp .. "identity.png"
local rc, out, err = view(run_dir, "--layout map --head 1 --print-layout --screenshot '" .. shot .. "'")
check.ok(rc == 0, "screenshot of the map view", err)
local L = layout_of(out)
local img = lab.image.load(shot)
check.ok(img:shape()[1] == 480 and img:shape()[2] == 640 and L.canvas.x == 640, "a 640x480 frame")
check.ok(L.map and L.map.rows == N and L.map.cols == N, "the map is 8 x 8", out)
local m = L.map
local diag_ok, off_ok, detail = 0, 0, ""
for i = 0, N - 1 do
  for j = 0, N - 1 do
    local x, y = cell_centre(m, i, j)
    local ok, d = near(img, x, y, i == j and YELLOW or PURPLE)
    if ok then if i == j then diag_ok = diag_ok + 1 else off_ok = off_ok + 1 end else detail = d end
  end
end
check.ok(diag_ok == N, "identity: the 8 diagonal cells are the top colour", detail)
check.ok(off_ok == N * N - N, "identity: the 56 other cells are the bottom colour", detail)
check.ok(math.abs(m.w - m.h) <= 1, "the square map has square cells")
-- the legend: viridis top to bottom, its labels beside it
local lg = L.legend
check.ok(lg and near(img, lg.x + 3, lg.y + 2, YELLOW, 12) and near(img, lg.x + 3, lg.y + lg.h - 3, PURPLE, 12),
  "the legend runs from the top colour down to the bottom one")
local function ink(x0, y0, w, h, bg)   -- pixels that differ from the background
  local n = 0
  for y = math.max(y0, 0), math.min(y0 + h, img:shape()[1]) - 1 do for x = math.max(x0, 0), math.min(x0 + w, img:shape()[2]) - 1 do
    if not near(img, x, y, bg, 10) then n = n + 1 end
  end end
  return n
end
check.ok(lg and ink(lg.x + lg.w + 6, lg.y - 4, 30, lg.h + 8, PANEL) > 60, "the legend has labels")
check.ok(ink(m.x - 40, m.y, 36, m.h, PANEL) > 100, "query token labels left of the map")
check.ok(ink(m.x, m.y - 40, m.w, 36, PANEL) > 100, "key token labels above the map")
check.ok(ink(0, 0, 640, 20, 0x0E1014) > 200, "the top bar has its title and tabs")

-- ---- the causal triangle ------------------------------------------------------------------------------------
rc, out, err = view(run_dir, "--layout map --head 2 --print-layout --screenshot '" .. shot .. "'")
img = lab.image.load(shot)
m = layout_of(out).map
local masked, shown = 0, 0
for i = 0, N - 1 do
  for j = 0, N - 1 do
    local x, y = cell_centre(m, i, j)
    if j > i then if near(img, x, y, MASKED, 1) then masked = masked + 1 end
    elseif not near(img, x, y, MASKED, 1) and not near(img, x, y, PANEL, 1) then shown = shown + 1 end
  end
end
check.ok(masked == 28, "causal: the 28 cells above the diagonal are greyed", masked)
check.ok(shown == 36, "causal: the 36 cells on and below it are coloured", shown)
check.ok(near_cell(img, m, 0, 0, YELLOW), "causal: row 1 puts all its weight on key 1")

-- ---- replay: the frame at step N is the record at step N --------------------------------------------------
local records = viz.read(run_dir)
local function record_at(name, head, step)
  local best
  for _, r in ipairs(records) do
    if r.kind == viz.KIND.attention and r.name == name and r.head == head and r.step <= step then best = r end
  end
  return best
end
for _, step in ipairs{ 10, 25, 40 } do
  rc, out = view(run_dir, string.format("--layout map --head 3 --step %d --print-layout --screenshot '%s'", step, shot))
  img = lab.image.load(shot)
  m = layout_of(out).map
  local rec = record_at("L1", 3, step)
  local agree = 0
  for i = 0, N - 1 do
    for j = 0, N - 1 do
      if near_cell(img, m, i, j, rec.values[i * N + j + 1] == 1 and YELLOW or PURPLE) then agree = agree + 1 end
    end
  end
  check.ok(rc == 0 and agree == N * N, string.format("--step %d shows the record of step %d, cell for cell", step, rec.step), agree)
end

-- ---- difference mode: step 40 minus step 10 -----------------------------------------------------------------
rc, out = view(run_dir, "--layout map --head 3 --step 40 --diff 10 --print-layout --screenshot '" .. shot .. "'")
img = lab.image.load(shot)
m = layout_of(out).map
local a, b = record_at("L1", 3, 40), record_at("L1", 3, 10)
local diff_ok = 0
for i = 0, N - 1 do
  for j = 0, N - 1 do
    local d = a.values[i * N + j + 1] - b.values[i * N + j + 1]
    if near_cell(img, m, i, j, d > 0 and RED or d < 0 and BLUE or WHITE, 4) then diff_ok = diff_ok + 1 end
  end
end
check.ok(diff_ok == N * N, "difference: gained weight red, lost weight blue, unchanged white", diff_ok)

-- ---- the neuron view: q, k, q * k for one query ------------------------------------------------------------
rc, out, err = view(run_dir, "--layout neuron --head 1 --query 3 --print-layout --screenshot '" .. shot .. "'")
img = lab.image.load(shot)
-- "neuron X Y CELL D QUERY" reads as x, y, w = the cell size, h = d, rows = the query (0-based)
local nv = layout_of(out).neuron
check.ok(rc == 0 and nv and nv.h == N and nv.rows == 2, "the neuron view draws a table for query 3 of d = 8", out .. err)
nv = nv or { x = 0, y = 0, w = 1, h = 1 }
local cellpx = nv.w
nv.d = nv.h
local function table_cell(part, j, c)   -- part 0: k (row j = 0 is q), part 1: q * k; j, c 0-based
  local x = nv.x + (part == 1 and (nv.d + 1) * cellpx or 0) + c * cellpx + math.floor(cellpx / 2)
  return x, nv.y + j * cellpx + math.floor(cellpx / 2)
end
local function cell_is(part, j, c, rgb)
  local x, y = table_cell(part, j, c)
  return near(img, x, y, rgb, 6)
end
check.ok(cell_is(0, 0, 2, RED) and cell_is(0, 0, 3, WHITE), "the q row: q_3 = e_3")
check.ok(cell_is(0, 3, 2, RED) and cell_is(0, 3, 3, WHITE), "the k rows: k_3 = e_3")
check.ok(cell_is(1, 3, 2, RED) and cell_is(1, 3, 3, WHITE) and cell_is(1, 1, 0, WHITE), "q * k: nonzero only for key 3 in dimension 3")

-- ---- the grid, the matrices, the curves ---------------------------------------------------------------------
rc, out = view(run_dir, "--layout grid --print-layout --screenshot '" .. shot .. "'")
img = lab.image.load(shot)
local grid = layout_of(out)
local c1 = grid.cells["1,1"]
check.ok(c1 and grid.cells["1,3"] and not grid.cells["1,4"], "the grid has layer 1 with heads 1..3", out)
c1.rows, c1.cols = N, N
check.ok(near_cell(img, c1, 2, 2, YELLOW) and near_cell(img, c1, 2, 5, PURPLE), "thumbnail of head 1 is the identity")
rc, out, err = view(run_dir, "--layout matrices --print-layout --screenshot '" .. shot .. "'")
img = lab.image.load(shot)
lg = layout_of(out).legend
check.ok(rc == 0 and lg and near(img, lg.x + 3, lg.y + 2, RED, 12) and near(img, lg.x + 3, lg.y + lg.h - 3, BLUE, 12),
  "matrices: a diverging legend, red on top, blue below")
rc, out, err = view(run_dir, "--layout curves --screenshot '" .. shot .. "'")
check.ok(rc == 0 and err == "", "curves render; the malformed metrics line is skipped", err)
img = lab.image.load(shot)
local smooth = 0
for y = 60, 440 do for x = 100, 500 do if near(img, x, y, 0x4FC3F7, 40) then smooth = smooth + 1 end end end
check.ok(smooth > 100, "the loss curve is drawn", smooth)
local events = 0
for y = 60, 440 do for x = 60, 600 do if near(img, x, y, 0xFF5555, 8) then events = events + 1 end end end
check.ok(events > 50, "the ablation event is marked on the curve", events)

-- ---- replay of the head events: their fields decide, never their text ------------------------------------
-- A real run logs ablate / scale / restore events (lua/attnlab/run.lua); the viewer replays them as
-- of a step.  Then every event's text is changed (one even names other heads), the keys reordered:
-- the replay is the same, because it reads the fields.
local hdir = fresh_dir("heads")
local hrun = lab.run.start{ name = "head_events", config = { steps = 7 }, out = hdir }
local layer1, layer2 = lab.nn.MultiHeadAttention{ dim = 4, heads = 2 }, lab.nn.MultiHeadAttention{ dim = 6, heads = 3 }
hrun:track{ a = layer1, b = layer2 }
hrun:attention_layers{ layer1, layer2 }
local sends = { [2] = "ablate 2 3", [3] = "scale 1 2 0.5", [4] = "ablate 1 1", [5] = "restore 2 3", [6] = "restore" }
for step in hrun:steps(7) do
  if sends[step] then viz.send(hdir, sends[step]) end
  hrun:log(step, { loss = 1 / step })
end
hrun:finish()
local function replayed(dir, step)   -- "L,H=S" for each head the replay scaled, sorted
  local _, o = view(dir, string.format("--step %d --print-layout --screenshot '%s'", step, shot))
  local got = {}
  for l, h, sc in o:gmatch("headscale (%d+) (%d+) (%S+)") do got[#got + 1] = l .. "," .. h .. "=" .. sc end
  table.sort(got)
  return table.concat(got, " ")
end
local want_scales = { [1] = "", [2] = "2,3=0", [3] = "1,2=0.5 2,3=0", [4] = "1,1=0 1,2=0.5 2,3=0", [5] = "1,1=0 1,2=0.5", [6] = "", [7] = "" }
local before = {}
for step = 1, 7 do before[step] = replayed(hdir, step) end
local replay_ok = 0
for step = 1, 7 do if before[step] == want_scales[step] then replay_ok = replay_ok + 1 end end
check.ok(replay_ok == 7, "the viewer replays the run's ablate, scale and restore events step by step",
  table.concat(before, " | ", 1, 7))
local reworded = fresh_dir("reworded")
local lines, n_texts = {}, 0
for line in read_file(hdir .. "/metrics.jsonl"):gmatch("[^\n]+") do
  local e = lab.json.decode(line)
  if e.event then
    n_texts = n_texts + 1
    e.text = e.event == "ablate" and "ablate layer 1 head 1" or "something happened to a head (" .. n_texts .. ")"
  end
  lines[#lines + 1] = lab.json.encode(e)   -- keys sorted: "step" is no longer first
end
lines[#lines + 1] = '{"step":3,"event":"ablate layer 1 head 2"}'   -- a text-only event (the old form): no effect
lines[#lines + 1] = '{"step":3,"event":"ablate","layer":2,"text":"ablate layer 2 head 2"}'   -- no head: skipped
write_file(reworded .. "/metrics.jsonl", table.concat(lines, "\n") .. "\n")
local same = 0
for step = 1, 7 do if replayed(reworded, step) == before[step] then same = same + 1 end end
check.ok(n_texts == 5 and same == 7, "with every event's text changed, the replay ablates and scales the same heads",
  n_texts .. " texts changed, " .. same .. " of 7 steps the same")
rc, out, err = view(reworded, "--layout curves --screenshot '" .. shot .. "'")
check.ok(rc == 0 and err == "", "an event line that lacks its fields is skipped, not a failure", err)
-- ---- the y axis of a curve that never goes below 0 stops at 0 (issue 16: a loss's axis went below 0) ----
-- the plots as the viewer computed them: "plot x y w h x0 x1 lo hi name"
local function plots_of(text)
  local P = {}
  for line in text:gmatch("[^\n]+") do
    local x, y, w, h, x0, x1, lo, hi, name = line:match("^plot (%-?%d+) (%-?%d+) (%d+) (%d+) (%-?%d+) (%-?%d+) (%S+) (%S+) (.+)$")
    if name then P[name] = { x = tonumber(x), y = tonumber(y), w = tonumber(w), h = tonumber(h), lo = tonumber(lo), hi = tonumber(hi) } end
  end
  return P
end
local axes = fresh_dir("axes")
local axis_lines = {}
for s = 1, 100 do
  axis_lines[s] = string.format('{"step":%d,"loss":%.9g,"accuracy":%d,"zero":0,"signed":%.3f}', s, s ^ -1.5, s < 50 and 0 or 1, s / 100 - 0.5)
end
write_file(axes .. "/metrics.jsonl", table.concat(axis_lines, "\n") .. "\n")
rc, out, err = view(axes, "--layout curves --print-layout --screenshot '" .. shot .. "'")
local P = plots_of(out)
check.ok(rc == 0 and P.loss and P.accuracy and P.zero and P.signed, "the viewer reports the four plots it drew", out .. err)
if P.loss then
  -- the loss falls from 1 to 0.001: the 5% margin below would have put the axis at -0.05
  check.ok(P.loss.lo == 0 and math.abs(P.loss.hi - (1 + 0.05 * (1 - 0.001))) < 1e-6, "a loss's y axis runs from 0 (not below) to its top plus the margin",
    P.loss.lo .. " .. " .. P.loss.hi)
  check.ok(P.accuracy.lo == 0 and P.zero.lo == 0 and P.zero.hi > 0, "an accuracy's axis and a flat curve at 0 stop at 0 too",
    P.accuracy.lo .. " " .. P.zero.lo .. " .. " .. P.zero.hi)
  check.ok(P.signed.lo < -0.49 - 0.05 * 0.99 + 1e-9, "a curve that does go below 0 keeps its margin below its least value", P.signed.lo)
  -- and the pixels: the lowest gridline is labelled 0, so its label has ink left of the plot's bottom
  img = lab.image.load(shot)
  local label_ink = 0
  for y = P.loss.y + P.loss.h - 8, P.loss.y + P.loss.h + 6 do
    for x = P.loss.x - 30, P.loss.x - 3 do if not near(img, x, y, PANEL, 20) then label_ink = label_ink + 1 end end
  end
  check.ok(label_ink > 5, "the axis's bottom label is drawn", label_ink)
end
rc, out = view(axes, "--layout curves --log-y --print-layout --screenshot '" .. shot .. "'")
P = plots_of(out)
check.ok(P.loss and math.abs(P.loss.lo - (-3 - 0.15)) < 1e-6, "a log y axis is not clipped at 0 (log10 of 0.001 minus the margin)",
  P.loss and P.loss.lo)

-- ---- a failed run: its status and error in the run directory, and across the viewer's window -----------------
local failing = fresh_dir("failing-script") .. "/failing.lua"
write_file(failing, [[
local run = lab.run.start{ name = "failing", config = { steps = 6 } }
local attn = lab.nn.MultiHeadAttention{ dim = 8, heads = 2 }
for step in run:steps(run.config.steps) do
  run:log(step, { loss = 1 / step })
  lab.viz.attention("A", lab.eye(3), { force = true })
  if step == 4 then attn(lab.randn{ 1, 3, 6 }) end
end
run:finish()
]])
local failed = fresh_dir("failed-run")
rc, out, err = sh(string.format("'%s' run '%s' --out '%s' --force", ATTNLAB, failing, failed))
check.ok(rc == 1 and err:find("MultiHeadAttention(dim=8): input of shape {1,3,6} does not end in 8", 1, true), "the script fails at step 4", err)
local status = lab.json.decode(read_file(failed .. "/status.json") or "null") or {}
check.ok(status.status == "failed" and status.step == 4, "status.json says failed, at step 4", read_file(failed .. "/status.json"))
check.ok(type(status.error) == "string" and status.error:find("failing.lua:6: MultiHeadAttention(dim=8): input of shape {1,3,6}", 1, true),
  "status.json holds the error with the script's line", tostring(status.error))
check.ok(not read_file(failed .. "/final.safetensors") and not read_file(failed .. "/summary.json"),
  "a failed run leaves no final.safetensors or summary.json (nothing that says it finished)")
local config = lab.json.decode(read_file(failed .. "/config.json") or "null") or {}
check.ok(config.name == "failing" and config.status == nil and config.finished == nil, "config.json is the configuration only, no status")
local recorded = viz.read(failed)
check.ok(#recorded == 4 and recorded[4].step == 4, "records.bin holds the records up to the failing step, no more", #recorded)
rc, out, err = view(failed, "--print-layout --screenshot '" .. shot .. "'")
local fl = layout_of(out).failure
check.ok(rc == 0 and out:find("\nstatus failed 4\n", 1, true) and fl and fl.w == 640, "the viewer reads the failed status and draws its banner", out .. err)
check.ok(out:find("\nfailure_text " .. status.error .. "\n", 1, true), "the banner's text is status.json's error", out)
if fl then
  img = lab.image.load(shot)
  check.ok(near(img, fl.x + 2, fl.y + 2, 0x7A1F1F, 2), "the banner is the failure colour", select(2, near(img, fl.x + 2, fl.y + 2, 0x7A1F1F, 2)))
  local text_ink = 0
  for y = fl.y, fl.y + fl.h - 1 do for x = fl.x, fl.x + fl.w - 1 do if not near(img, x, y, 0x7A1F1F, 30) then text_ink = text_ink + 1 end end end
  check.ok(text_ink > 400, "the banner carries the error line in text", text_ink)
  check.ok(near(img, 20, fl.y + fl.h + 10, PANEL, 2), "the views start below the banner")
end
-- the step bar says so too, and a run that did not fail has no banner
rc, out = view(run_dir, "--print-layout --screenshot '" .. shot .. "'")
check.ok(rc == 0 and not out:find("failure", 1, true) and not out:find("\nstatus ", 1, true), "a run without status.json: no banner", out)
write_file(run_dir .. "/status.json", '{"status": "finished", "step": 40}\n')
rc, out = view(run_dir, "--print-layout --screenshot '" .. shot .. "'")
check.ok(rc == 0 and out:find("\nstatus finished 40\n", 1, true) and not out:find("failure", 1, true), "a finished run: no banner", out)
os.remove(run_dir .. "/status.json")

-- ---- an image with its attention heatmap and a scanpath -----------------------------------------------------
local imdir = fresh_dir("image")
viz.open(imdir, { interval = 0 })
viz.set_step(5)
local heat = lab.zeros{ 2, 2 }
heat:set(1, 1, 1)                                    -- all the attention on the top-left quarter
viz.image("scene", lab.full({ 40, 60, 3 }, 0.5), { heat = heat, points = { { 45, 10 }, { 50, 30 } } })
viz.close()
rc, out, err = view(imdir, "--layout images --print-layout --screenshot '" .. shot .. "'")
img = lab.image.load(shot)
local ir = layout_of(out).image
check.ok(rc == 0 and ir and math.abs(ir.w / ir.h - 1.5) < 0.02, "the image keeps its aspect ratio", out .. err)
ir = ir or { x = 0, y = 0, w = 60, h = 40, rows = 1000 }
local z = ir.rows / 1000                              -- the zoom printed as an integer x 1000
local function at(px, py) return ir.x + math.floor(px * z), ir.y + math.floor(py * z) end
local hx, hy = at(8, 8)
local cx, cy = at(25, 35)
local r1, g1, b1 = pixel(img, hx, hy)
check.ok(r1 > 150 and g1 > 150 and b1 < 110, "the heatmap tints the attended quarter towards the top colour",
  string.format("(%d,%d,%d)", r1, g1, b1))
check.ok(near(img, cx, cy, 0x808080, 2), "the unattended quarter keeps the image's grey")
local p1x, p1y = at(45, 10)
local p2x, p2y = at(50, 30)
check.ok(near(img, p1x + 4, p1y, 0xFFEB3B, 30) and near(img, p2x + 4, p2y, 0xFFEB3B, 30), "the points are drawn where they are")
local mx, my = at(47.5, 20)
check.ok(near(img, mx, my, 0xFFEB3B, 40), "and joined in order")

-- ---- two runs' curves on the same axes ----------------------------------------------------------------------------
local other = fresh_dir("other")
local lines = {}
for s = 1, 40 do lines[#lines + 1] = string.format('{"step":%d,"loss":%.6f}', s, 0.5 + 0.01 * s) end
write_file(other .. "/metrics.jsonl", table.concat(lines, "\n") .. "\n")
rc, out, err = view(run_dir, "--layout curves --compare '" .. other .. "' --screenshot '" .. shot .. "'")
img = lab.image.load(shot)
local orange = 0
for y = 60, 440 do for x = 60, 560 do if near(img, x, y, 0xFFB74D, 40) then orange = orange + 1 end end end
check.ok(rc == 0 and orange > 100, "--compare draws the second run's curve in its own colour", orange .. " " .. err)
rc, out, err = view(run_dir, "--compare '" .. tmp .. "nothere' --screenshot '" .. shot .. "'")
check.ok(rc == 1 and err:find("--compare: '", 1, true), "--compare names a missing run", err)

-- ---- damaged or missing run directories: one clear line, no crash, no half-written PNG ------------------------
local function one_line(e) return select(2, e:gsub("\n", "")) == 1 end
rc, out, err = view(tmp .. "nothere", "--screenshot '" .. shot .. "'")
check.ok(rc == 1 and one_line(err) and err:find("is not a directory", 1, true), "a missing directory", err)
local empty = fresh_dir("empty")
rc, out, err = view(empty, "--screenshot '" .. shot .. "'")
check.ok(rc == 1 and one_line(err) and err:find("is not an attnlab run directory", 1, true), "an empty directory", err)
local garbled = fresh_dir("garbled")
write_file(garbled .. "/records.bin", "PK\3\4 a zip file, not records")
rc, out, err = view(garbled, "--screenshot '" .. shot .. "'")
check.ok(rc == 1 and one_line(err) and err:find("records.bin' is garbled at byte 0", 1, true), "a garbled records.bin", err)
local good = read_file(run_dir .. "/records.bin")
local cut = fresh_dir("cut")
write_file(cut .. "/records.bin", good:sub(1, #good - 100))
os.remove(shot)
rc, out, err = view(cut, "--layout grid --screenshot '" .. shot .. "'")
check.ok(rc == 0 and read_file(shot) ~= nil, "a truncated records.bin (a run being written) still renders", err)
rc, out, err = view(run_dir, "--screenshot '" .. tmp .. "nodir/x/shot.png'")
check.ok(rc == 1 and one_line(err) and err:find("cannot create a temporary file next to '" .. tmp .. "nodir/x/shot.png'", 1, true),
  "an unwritable screenshot path is named", err)
local nan = fresh_dir("nan")
viz.open(nan, { interval = 0 })
viz.attention("A", lab.tensor{ { 0 / 0, 1 }, { 1 / 0, 0 } })
viz.matrix("W", lab.tensor{ { 0 / 0, 1 / 0 }, { -1 / 0, 1 } })
viz.reference("loss", "nan", 0 / 0)
viz.close()
-- null is how json.lua writes NaN; a bare NaN is not JSON (a malformed line, skipped)
write_file(nan .. "/metrics.jsonl", '{"step":1,"loss":null}\n{"step":2,"loss":NaN}\n{"step":3,"loss":1e400}\n{"step":4,"loss":0.5}\n')
local nan_ok = 0
for _, layout in ipairs{ "overview", "map", "heads", "matrices", "curves" } do
  if view(nan, "--layout " .. layout .. " --log-y --screenshot '" .. shot .. "'") == 0 then nan_ok = nan_ok + 1 end
end
check.ok(nan_ok == 5, "NaN and infinite values draw (as nothing or the scale's end) in every view", nan_ok)
rc, out, err = view(run_dir, "--layout sideways")
check.ok(rc == 2 and err:find("unknown layout 'sideways'", 1, true), "an unknown layout", err)
rc, out, err = view(run_dir, "--step minus")
check.ok(rc == 2 and err:find("--step needs a non-negative integer", 1, true), "a bad --step", err)
rc, out, err = sh(string.format("'%s' view '%s' --screenshot '%s' --step 20", ATTNLAB, run_dir, shot))
check.ok(rc == 0, "attnlab view RUN_DIR --screenshot --step N runs the viewer", err)

-- ---- cost: an 8 x 8 grid of 128 x 128 maps ----------------------------------------------------------------------
local big = fresh_dir("big")
viz.open(big, { interval = 0 })
viz.set_step(1)
for layer = 1, 8 do viz.attention("L" .. layer, lab.rand{ 8, 128, 128 }:softmax(3), { layer = layer }) end
viz.close()
rc, out, err = sh(string.format("'%s' '%s' --layout grid --size 1280x800 --scale 1 --bench-frames 30 --print-layout --screenshot '%s'", VIEWER, big, shot))
local ms = tonumber(out:match("frame time: ([%d.]+) ms"))
local cells = 0
for _ in out:gmatch("\ncell ") do cells = cells + 1 end
check.ok(rc == 0 and cells == 64, "the 8 x 8 grid is drawn", cells)
check.ok(ms and ms < 33, "8 x 8 grid of 128 x 128 maps: a frame in under 33 ms (30 fps)", out)
io.stderr:write(string.format("viewer: 8x8 grid of 128x128 maps, 1280x800: %s ms per frame (render)\n", tostring(ms)))

-- ---- live: scripted input against a running training --------------------------------------------------------------
-- The probe opens one window.  Only an SDL without its offscreen driver ("cannot open a window:
-- ... not available") skips the live checks, counted and with the reason in the test's output; any
-- other failure of the probe (a crash, an error of ours) fails the test.
local LIVE_CHECKS = 19
local probe_rc, _, probe_err = sh(string.format(SDL_ENV .. " '%s' '%s' --size 320x240 --scale 1 --bench-frames 1", VIEWER, run_dir))
local no_driver = probe_rc ~= 0 and probe_err:find("cannot open a window", 1, true) ~= nil and
                  (probe_err:find("not available", 1, true) or probe_err:find("No available video device", 1, true)) ~= nil
if probe_rc ~= 0 and not no_driver then
  check.ok(false, "the viewer opens a window on SDL's offscreen driver", string.format("exit %d: %s", probe_rc, probe_err))
end
if probe_rc ~= 0 then
  if no_driver then check.skip(LIVE_CHECKS, "the live viewer checks: SDL's offscreen video driver is not available (" ..
    probe_err:gsub("%s+$", "") .. ")") end
else
  local live_from = check.passed + check.failed
  -- keys: ? opens the key list, any key closes it, 4 shows the matrices
  local ev = tmp .. "keys"
  write_file(ev, "key ?\nwait 50\nscreenshot " .. tmp .. "help.png\nkey ?\nwait 50\nscreenshot " .. tmp ..
    "nohelp.png\nkey 4\nwait 50\nscreenshot " .. tmp .. "matrices.png\nkey s\nkey c\nwait 50\nquit\n")
  rc, out, err = sh(string.format(SDL_ENV .. " '%s' '%s' --layout grid --size 640x480 --scale 1 --events '%s'", VIEWER, run_dir, ev))
  local function accent(path)   -- pixels of the accent colour (the key list's frame and keys) below the top bar
    local im, n = lab.image.load(path), 0
    for y = 40, 430 do for x = 0, 639 do if near(im, x, y, 0xFFB020, 6) then n = n + 1 end end end
    return n
  end
  local with_help, without = accent(tmp .. "help.png"), accent(tmp .. "nohelp.png")
  check.ok(rc == 0 and with_help > without + 1000, "? draws the key list over the view and a key closes it",
    string.format("%d accent pixels with, %d without; %s", with_help, without, err))
  rc, out, err = view(run_dir, "--layout matrices --screenshot '" .. shot .. "'")
  local want, got = lab.image.load(shot), lab.image.load(tmp .. "matrices.png")
  check.ok(((want - got):abs():sum(3):gt(0.02)):sum():item() < 2000, "key 4 shows the matrices view (as --layout matrices draws it)")
  local saved = run_dir .. "/view-matrices-step40.png"
  check.ok(read_file(saved) ~= nil and lab.image.load(saved):shape()[2] == 640, "key s saves the view as a PNG in the run directory")
  local csv = read_file(run_dir .. "/L1-L1-H1-step40.csv") or ""
  local csv_rows, diagonal = 0, 0
  for line in csv:gmatch("[^\n]+") do
    csv_rows = csv_rows + 1
    local j = 0
    for x in line:gmatch("[^,]+") do j = j + 1 if j == csv_rows and tonumber(x) == 1 then diagonal = diagonal + 1 end end
  end
  check.ok(csv_rows == N and diagonal == N, "key c saves the chosen map (the identity) as CSV", csv:sub(1, 80))

  -- the head view: a double-click on a head's colour shows that head alone, another shows all
  rc, out = view(run_dir, "--layout heads --print-layout --screenshot '" .. shot .. "'")
  local boxes = layout_of(out).headboxes or {}
  local b3 = boxes[3] or { x = 0, y = 0, w = 2, h = 2 }
  ev = tmp .. "solo"
  local bx, by = b3.x + math.floor(b3.w / 2), b3.y + math.floor(b3.h / 2)
  write_file(ev, string.format("screenshot %sall.png\ndclick %d %d\nwait 50\nscreenshot %ssolo.png\n" ..
    "dclick %d %d\nwait 50\nscreenshot %sall2.png\nquit\n", tmp, bx, by, tmp, bx, by, tmp))
  rc, out, err = sh(string.format(SDL_ENV .. " '%s' '%s' --layout heads --size 640x480 --scale 1 --events '%s'", VIEWER, run_dir, ev))
  local function line_ink(path)   -- pixels off the panel colour below the head boxes
    local im, n = lab.image.load(path), 0
    for y = b3.y + 3 * b3.h, 420, 2 do for x = 0, 639, 2 do if not near(im, x, y, PANEL, 6) then n = n + 1 end end end
    return n
  end
  local all, solo, all2 = line_ink(tmp .. "all.png"), line_ink(tmp .. "solo.png"), line_ink(tmp .. "all2.png")
  check.ok(rc == 0 and boxes[3] and solo < 0.7 * all and math.abs(all2 - all) <= all / 100,
    "a double-click solos a head in the head view, another brings all back", string.format("%d, %d, %d; %s", all, solo, all2, err))

  local live = fresh_dir("live")
  local train_cmd = string.format("nice '%s' run experiments/icl_regression.lua heads=2 steps=1000000 batch=64 L=20 lr=0.003 " ..
    "log_every=20 test_tasks=100 --out '%s' >'%s/stdout' 2>'%s/stderr' & echo $!", ATTNLAB, live, live, live)
  local p = io.popen(train_cmd)
  local pid = p:read("*l")
  p:close()
  local function newest_step()
    local s = read_file(live .. "/metrics.jsonl") or ""
    local last = 0
    for step in s:gmatch('"step":(%d+)') do last = math.max(last, tonumber(step)) end
    return last
  end
  local t0 = lab.time()
  while newest_step() < 1500 and lab.time() - t0 < 60 do os.execute("sleep 0.2") end
  check.ok(newest_step() >= 1500, "the training runs and logs", newest_step())
  rc, out, err = view(live, "--layout grid --print-layout --screenshot '" .. shot .. "'")
  local c2 = layout_of(out).cells["1,2"]
  check.ok(rc == 0 and c2 ~= nil, "the study publishes the query's attention for each head", out .. err)
  c2 = c2 or { x = 0, y = 0, w = 2, h = 2 }
  ev = tmp .. "events"
  write_file(ev, table.concat({
    "wait 300", "screenshot " .. tmp .. "A.png",
    string.format("click %d %d", c2.x + math.floor(c2.w / 2), c2.y + math.floor(c2.h / 2)), "wait 200", "screenshot " .. tmp .. "B.png",
    "key 1", "key space", "wait_event pause 30", "wait 1500", "key n", "wait_event single_step 30", "wait 800",
    "key space", "wait_event resume 30", "wait 500",
    "key a", "wait_event ablate 30", "wait 2000", "screenshot " .. tmp .. "C.png", "quit" }, "\n") .. "\n")
  rc, out, err = sh(string.format(SDL_ENV .. " '%s' '%s' --layout grid --size 640x480 --scale 1 --events '%s'", VIEWER, live, ev))
  check.ok(rc == 0, "the scripted session runs to its end", err)
  check.ok(os.execute("kill -0 " .. pid .. " 2>/dev/null") == 0, "closing the viewer leaves the training running")
  os.execute("kill " .. pid .. " 2>/dev/null")
  local A, B, C = lab.image.load(tmp .. "A.png"), lab.image.load(tmp .. "B.png"), lab.image.load(tmp .. "C.png")
  local changed = ((A - B):abs():sum(3):gt(0.02)):sum():item()
  check.ok(changed > 640 * 480 / 10, "clicking a thumbnail changes the frame (the map enlarged)", changed)
  check.ok(near(C, c2.x + 1, c2.y + math.floor(c2.h / 2), 0xFF5555, 8), "the ablated head is outlined in the grid")
  local events_seen, pause_step, single_step, resume_step, ablate_step = {}, nil, nil, nil, nil
  local losses = {}
  for line in (read_file(live .. "/metrics.jsonl") or ""):gmatch("[^\n]+") do
    local ok, rec = pcall(lab.json.decode, line)
    local step, e = ok and rec.step, ok and rec.event
    if e then
      events_seen[#events_seen + 1] = e .. (rec.layer and string.format(" %d %d %g", rec.layer, rec.head, rec.scale) or "")
      if e == "pause" then pause_step = step elseif e == "resume" then resume_step = step
      elseif e == "single_step" then single_step = step
      elseif e == "ablate" and rec.layer == 1 and rec.head == 2 then ablate_step = step end
    end
    local loss = ok and rec.loss
    if type(loss) == "number" then losses[#losses + 1] = { step = step, loss = loss } end
  end
  check.ok(table.concat(events_seen, "|") == "pause|single_step|resume|ablate 1 2 0",
    "the script logged pause, single step, resume, ablate (layer 1, head 2, scale 0)", table.concat(events_seen, "|"))
  check.ok(pause_step and pause_step == single_step, "no step ran while paused (1.5 s)", tostring(pause_step) .. " " .. tostring(single_step))
  check.ok(single_step and resume_step == single_step + 1, "a single step ran exactly one step, then held (0.8 s)",
    tostring(single_step) .. " " .. tostring(resume_step))
  check.ok((read_file(live .. "/stderr") or ""):find("ablate layer 1 head 2", 1, true), "the script says on stderr that head 2 was ablated")
  local before, after, nb, na = 0, 0, 0, 0
  for _, r in ipairs(losses) do
    if ablate_step and r.step <= ablate_step and r.step > ablate_step - 200 then before, nb = before + r.loss, nb + 1 end
    if ablate_step and r.step > ablate_step + 20 and r.step <= ablate_step + 220 then after, na = after + r.loss, na + 1 end
  end
  before, after = before / math.max(nb, 1), after / math.max(na, 1)
  check.ok(nb >= 5 and na >= 5 and after > 1.3 * before, "ablating head 2 raises the loss",
    string.format("%.4f before, %.4f after (%d, %d windows)", before, after, nb, na))

  -- run --view: the program starts the viewer on the run directory; it may close early
  local vdir = fresh_dir("view")
  local wrapper = tmp .. "viewer.sh"
  write_file(tmp .. "quit", "wait_step 100 60\nscreenshot " .. vdir .. "/live.png\nquit\n")
  write_file(wrapper, string.format("#!/bin/sh\necho \"$@\" >'%s/viewer-args'\nexec '%s' \"$@\" --size 320x240 --scale 1 --events '%s'\n",
    vdir, VIEWER, tmp .. "quit"))
  os.execute("chmod +x '" .. wrapper .. "'")
  rc, out, err = sh(string.format("ATTNLAB_VIEWER='%s' " .. SDL_ENV .. " '%s' run experiments/icl_regression.lua steps=2000 " ..
    "batch=64 L=20 test_tasks=100 --out '%s/run' --view", wrapper, ATTNLAB, vdir))
  check.ok(rc == 0 and read_file(vdir .. "/run/summary.json") ~= nil, "a --view run trains to its end", err)
  t0 = lab.time()
  while not read_file(vdir .. "/live.png") and lab.time() - t0 < 20 do os.execute("sleep 0.2") end
  check.ok((read_file(vdir .. "/viewer-args") or ""):find(vdir .. "/run --follow", 1, true), "--view starts the viewer on the run directory")
  check.ok(read_file(vdir .. "/live.png") ~= nil, "the viewer drew the live run and closed")
  -- keeps LIVE_CHECKS (the count a skip reports) true
  check.ok(check.passed + check.failed - live_from == LIVE_CHECKS, "LIVE_CHECKS counts the live section's checks",
    tostring(check.passed + check.failed - live_from))
end

check.cleanup()
os.exit(check.report(), true)   -- true: close the Lua state, so every tensor is freed (quiet leak checks)
