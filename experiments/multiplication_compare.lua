-- The three regimes of the multiplication study side by side: runs experiments/multiplication.lua
-- once per mode (sft, icot, aux; the same seed and config otherwise), each as a child process of
-- the attnlab program with its own run directory under this run's directory, then writes one
-- table (exact match, per-digit accuracy, probe MAE, wall time) beside the paper's numbers
-- (Bai et al. 2025, arXiv 2510.00184) into table.md and summary.json, and puts the runs'
-- per-position loss curves and attribution heatmaps side by side in two PNGs.
--
--   attnlab run experiments/multiplication_compare.lua quick=true            three quick runs
--   attnlab run experiments/multiplication_compare.lua digits=3 steps=30000 modes=sft,aux
--   attnlab run experiments/multiplication_compare.lua extra="warmup=500 aux_heads=4"
--
-- The children run one after another with this process's thread count (--threads N).
local lab = require "attnlab"
local json = lab.json
local ffi = require "ffi"

local run = lab.run.start{
  name = "multiplication_compare",
  config = {
    modes = "sft,icot,aux",
    digits = 4, steps = 30000, batch = 128, lr = 1e-3, seed = 1,
    layers = 2, heads = 4, width = 128,
    aux_weight = 10, aux_scale = 100, icot_epoch_steps = 2000,
    test_size = 1000, eval_every = 1000,
    quick = false,
    extra = "",               -- further key=value overrides given to every child
    checkpoint_every = 0,     -- nothing of this process to checkpoint (each child checkpoints itself)
  },
}
local cfg = run.config
local cli = rawget(_G, "ATTNLAB_CLI") or {}
local given = cli.overrides or {}

-- the program running this script, to run the children with
pcall(ffi.cdef, "long readlink(const char *path, char *buf, unsigned long size);")
local function program()
  local buf = ffi.new("char[4097]")
  local n = tonumber(ffi.C.readlink("/proc/self/exe", buf, 4096))
  if n and n > 0 then return ffi.string(buf, n) end
  return os.getenv("ATTNLAB") or "attnlab"
end
local PROG = program()
local SCRIPT = (lab.root and lab.root .. "/experiments/multiplication.lua") or "experiments/multiplication.lua"
do
  local f = io.open(SCRIPT, "rb")
  if f then f:close() else SCRIPT = "experiments/multiplication.lua" end
end
local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local modes = {}
for m in cfg.modes:gmatch("[^,%s]+") do
  if m ~= "sft" and m ~= "icot" and m ~= "aux" then
    error(string.format("multiplication_compare: modes must be a list of sft, icot, aux (got '%s')", m), 0)
  end
  modes[#modes + 1] = m
end

-- the children's overrides: every key of this config that the command line gave (or all of them
-- but quick's when not quick, so the children run this config), then extra
local PASS = { "digits", "steps", "batch", "lr", "seed", "layers", "heads", "width", "aux_weight", "aux_scale",
               "icot_epoch_steps", "test_size", "eval_every" }
local function child_args(mode)
  local a = { "mode=" .. mode }
  if cfg.quick then a[#a + 1] = "quick=true" end
  for _, k in ipairs(PASS) do
    if not cfg.quick or given[k] ~= nil then a[#a + 1] = k .. "=" .. tostring(cfg[k]) end
  end
  if cfg.extra ~= "" then a[#a + 1] = cfg.extra end
  return table.concat(a, " ")
end

local threads = lab.num_threads and lab.num_threads() or 1
local results = {}
for _, mode in ipairs(modes) do
  local dir = run.dir .. "/" .. mode
  local cmd = string.format("%s run %s %s --threads %d --out %s", q(PROG), q(SCRIPT), child_args(mode), threads, q(dir))
  io.stderr:write("multiplication_compare: " .. cmd .. "\n")
  local t0 = lab.time()
  local status = os.execute(cmd)
  local ok = status == 0 or status == true
  local f = io.open(dir .. "/summary.json", "rb")
  local s = f and json.decode(f:read("*a"))
  if f then f:close() end
  if not ok or not s then error("multiplication_compare: the " .. mode .. " run failed (see " .. dir .. "/status.json)", 0) end
  s.dir = dir
  s.elapsed_s = lab.time() - t0
  results[#results + 1] = s
end

local D = results[1].digits
local D2 = 2 * D
local PAPER = {
  sft = { exact = "< 1% (~81% per digit); middle digits at ln 10 loss", probe = "28-113 (c_hat_2..c_hat_6)" },
  icot = { exact = "100%", probe = "0.6-2.0 (c_hat_2..c_hat_6)" },
  aux = { exact = "99%", probe = "not reported" },
}

local L = {}
local function add(s) L[#L + 1] = s end
add(string.format("# Multiplication study: %s at %d x %d digits", table.concat(modes, ", "), D, D))
add("")
local c = results[1].config
add(string.format("Same config for every mode: %d steps, batch %d, %d layers x width %d x %d heads, lr %g, seed %d, %d held-out problems%s.",
  c.steps, c.batch, c.layers, c.width, c.heads, c.lr, c.seed, results[1].test_size, cfg.extra ~= "" and ("; extra: `" .. cfg.extra .. "`") or ""))
add("Paper: Bai et al. 2025 (2 layers x 768 x 4 heads, 4 x 4 digits, hundreds of thousands of GPU steps); its numbers are for 4 x 4.")
add("")
local hdr = { "mode", "exact match", "paper exact match" }
for k = 0, D2 - 1 do hdr[#hdr + 1] = "acc c" .. k end
hdr[#hdr + 1] = "probe MAE c_hat_2..c_hat_" .. math.min(6, D2 - 1) .. " (mean)"
hdr[#hdr + 1] = "paper probe MAE"
hdr[#hdr + 1] = "wall time"
add("| " .. table.concat(hdr, " | ") .. " |")
add("|" .. string.rep("---|", #hdr))
local rows = {}
for _, s in ipairs(results) do
  local cells = { s.mode, string.format("%.1f%%", 100 * s.exact_match), PAPER[s.mode].exact }
  for k = 0, D2 - 1 do cells[#cells + 1] = string.format("%.3f", s.digit_accuracy["c" .. k]) end
  local sum, n = 0, 0
  for k = 2, math.min(6, D2 - 1) do sum, n = sum + s.probe_mae["c" .. k], n + 1 end
  cells[#cells + 1] = string.format("%.2f", n > 0 and sum / n or 0)
  cells[#cells + 1] = PAPER[s.mode].probe
  cells[#cells + 1] = string.format("%.0f s", s.wall_time_s)
  add("| " .. table.concat(cells, " | ") .. " |")
  rows[#rows + 1] = { mode = s.mode, exact_match = s.exact_match, digit_accuracy = s.digit_accuracy, digit_loss = s.digit_loss,
                      probe_mae = s.probe_mae, wall_time_s = s.wall_time_s, steps_per_s = s.steps_per_s, dir = s.dir,
                      eval_method = s.eval_method }
end
add("")
add("Per-position held-out loss (nats; chance ln 10 = 2.303):")
add("")
local h2 = { "mode" }
for k = 0, D2 - 1 do h2[#h2 + 1] = "c" .. k end
add("| " .. table.concat(h2, " | ") .. " |")
add("|" .. string.rep("---|", #h2))
for _, s in ipairs(results) do
  local cells = { s.mode }
  for k = 0, D2 - 1 do cells[#cells + 1] = string.format("%.3f", s.digit_loss["c" .. k]) end
  add("| " .. table.concat(cells, " | ") .. " |")
end
add("")
add("Paper, final per-position loss (c0..c7, 4 x 4): SFT 5.6e-5, 1.56, 2.22, 2.30, 2.30, 4.4e-4, 3.5e-6, 0; aux all <= 1.6e-4.")
add("")

-- side-by-side PNGs: each run's per-position loss curves, then its attribution heatmap
local function side_by_side(name, out)
  local imgs = {}
  for _, s in ipairs(results) do
    local ok, img = pcall(lab.image.load, s.dir .. "/" .. name)
    if ok then imgs[#imgs + 1] = img:narrow(3, 1, 3) end
  end
  if #imgs ~= #results then return false end
  local h = imgs[1]:size(1)
  for _, img in ipairs(imgs) do if img:size(1) ~= h then return false end end
  lab.image.save(run.dir .. "/" .. out, lab.cat(imgs, 2))
  return true
end
local order = table.concat(modes, ", ")
-- each report figure of the runs, side by side: {file, caption, alt text}
for _, fig in ipairs{
  { "loss_per_position.png", "Per-position training loss, left to right " .. order .. " (colours c0 blue, c1 orange, c2 green, c3 red, c4 purple, c5 brown, c6 pink, c7 grey; dashed: ln 10):", "per-position loss" },
  { "exact_match.png", "Held-out exact match (black) and digit accuracies over training, left to right " .. order .. ":", "exact match" },
  { "attribution.png", "Logit attribution (operand digit x answer digit), left to right " .. order .. " (each scaled to its own maximum):", "attribution" },
} do
  if side_by_side(fig[1], fig[1]) then
    add(fig[2])
    add("")
    add("![" .. fig[3] .. "](" .. fig[1] .. ")")
    add("")
  end
end
for _, s in ipairs(results) do add(string.format("- %s: %s (report.md there)", s.mode, s.dir)) end
lab.write_file_atomic(run.dir .. "/table.md", table.concat(L, "\n") .. "\n")
run:summary{ digits = D, modes = modes, runs = rows, paper = PAPER }
io.stderr:write(table.concat(L, "\n", 1, 7 + #results) .. "\n")
run:finish()
