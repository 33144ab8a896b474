-- test_smoke.lua -- a short run of every experiment through the program; for the in-context
-- regression study also the run directory it leaves: config.json, metrics.jsonl, summary.json with every key the study's
-- issue names, final.safetensors.  A few hundred steps are enough for the ordering
-- ridge < debiased GD < zero (on a few thousand fresh test tasks) and for the loss to fall.
--   ./build/attnlab tests/lua/test_smoke.lua        (ATTNLAB = the program, default ./build/attnlab)
-- ATTNLAB_SMOKE_STEPS (default 400) and ATTNLAB_SMOKE_TASKS (default 2000) size the run.
local check = dofile("tests/lua/check.lua")("smoke")
local lab = lab or require "attnlab"
local json = lab.json

local ATTNLAB = os.getenv("ATTNLAB") or "./build/attnlab"
local STEPS = tonumber(os.getenv("ATTNLAB_SMOKE_STEPS") or "") or 400
local TASKS = tonumber(os.getenv("ATTNLAB_SMOKE_TASKS") or "") or 2000
local HEADS = 4

local read = check.read_file
local function exited_ok(a, b, c)       -- os.execute: 0 (Lua 5.1) or true, "exit", 0 (5.2 compat)
  if type(a) == "number" then return a == 0 end
  return a == true and (c == nil or c == 0)
end
local function is_number(v) return type(v) == "number" and v == v end

local dir = os.tmpname()
os.remove(dir)
local out = dir .. "/run"
os.execute("mkdir -p '" .. dir .. "'")

local cmd = string.format("'%s' run experiments/icl_regression.lua steps=%d test_tasks=%d heads=%d --out '%s' > '%s/stdout' 2> '%s/stderr'",
  ATTNLAB, STEPS, TASKS, HEADS, out, dir, dir)
local t0 = lab.time()
local ok = exited_ok(os.execute(cmd))
local took = lab.time() - t0
check.ok(ok, "the study runs and exits 0", ok and nil or (read(dir .. "/stderr") or ""):sub(-2000))
print(string.format("smoke: %d steps, %d test tasks: %.1f s", STEPS, TASKS, took))

---------------------------------------------------------------------------------------------------
-- config.json
---------------------------------------------------------------------------------------------------
local config_text = read(out .. "/config.json")
check.ok(config_text ~= nil, "config.json exists")
local okc, config = pcall(json.decode, config_text or "")
check.ok(okc and type(config) == "table", "config.json is JSON")
if okc and type(config) == "table" then
  local c = config.config or {}
  check.ok(c.steps == STEPS and c.test_tasks == TASKS and c.heads == HEADS, "config.json holds the overrides")
  check.ok(c.d == 5 and c.L == 40 and c.batch == 256, "config.json holds the defaults")
  check.ok(is_number(config.seed), "config.json has the seed")
  check.ok(type(config.attnlab_version) == "string", "config.json has the attnlab version")
  check.ok(type(config.device) == "string", "config.json has the device")
  check.ok(is_number(config.threads), "config.json has the thread count")
end

---------------------------------------------------------------------------------------------------
-- metrics.jsonl: one object per line, each with "step"; the loss falls
---------------------------------------------------------------------------------------------------
local metrics_text = read(out .. "/metrics.jsonl")
check.ok(metrics_text ~= nil and #metrics_text > 0, "metrics.jsonl exists and is not empty")
local records, bad = {}, 0
for line in (metrics_text or ""):gmatch("[^\n]+") do
  local okl, rec = pcall(json.decode, line)
  if okl and type(rec) == "table" and is_number(rec.step) then records[#records + 1] = rec else bad = bad + 1 end
end
check.ok(bad == 0, "every metrics line is an object with a step", bad .. " bad lines")
check.ok(#records >= 3, "several metrics lines", tostring(#records))
local increasing = true
for i = 2, #records do increasing = increasing and records[i].step > records[i - 1].step end
check.ok(increasing, "steps increase")
check.ok(#records > 0 and records[#records].step == STEPS, "the last logged step is the last step",
  #records > 0 and tostring(records[#records].step) or "none")
local first_loss, last_loss = records[1] and records[1].loss, records[#records] and records[#records].loss
check.ok(is_number(first_loss) and is_number(last_loss), "metrics have the loss")
if is_number(first_loss) and is_number(last_loss) then
  check.ok(last_loss < first_loss, "the loss decreased", string.format("%.4f -> %.4f", first_loss, last_loss))
end

---------------------------------------------------------------------------------------------------
-- summary.json: the keys of the study's issue
---------------------------------------------------------------------------------------------------
local summary_text = read(out .. "/summary.json")
check.ok(summary_text ~= nil, "summary.json exists")
local oks, s = pcall(json.decode, summary_text or "")
check.ok(oks and type(s) == "table", "summary.json is JSON")
if not (oks and type(s) == "table") then s = {} end
for _, key in ipairs{ "test_mse", "ridge", "debiased_gd", "gd", "single_head", "zero", "ov_sum_ratio" } do
  check.ok(is_number(s[key]), "summary." .. key .. " is a number", tostring(s[key]))
end
for _, key in ipairs{ "kq_omega", "kq_offdiag_ratio", "ov_mu", "ov_x_ratio" } do
  local list = s[key]
  local good = type(list) == "table" and #list == HEADS
  for h = 1, HEADS do good = good and is_number(list[h]) end
  check.ok(good, "summary." .. key .. " is a list of one number per head", type(list) == "table" and (#list .. " entries") or tostring(list))
end
local lg = s.length_generalisation
check.ok(type(lg) == "table" and #lg >= 2, "summary.length_generalisation is a list")
if type(lg) == "table" then
  local good, has_train_L = true, false
  for _, r in ipairs(lg) do
    good = good and type(r) == "table" and is_number(r.L) and is_number(r.model) and is_number(r.ridge)
    if type(r) == "table" and r.L == 40 then has_train_L = true end
  end
  check.ok(good, "every length_generalisation entry has L, model, ridge")
  check.ok(has_train_L, "length_generalisation includes the training length")
  -- ridge gets better with more examples
  if good and #lg >= 2 then
    check.ok(lg[#lg].ridge < lg[1].ridge, "ridge improves with L", lg[1].ridge .. " -> " .. lg[#lg].ridge)
  end
end
if is_number(s.ridge) and is_number(s.debiased_gd) and is_number(s.zero) then
  check.ok(s.ridge < s.debiased_gd, "ridge < debiased GD", string.format("%.4f vs %.4f", s.ridge, s.debiased_gd))
  check.ok(s.debiased_gd < s.zero, "debiased GD < zero", string.format("%.4f vs %.4f", s.debiased_gd, s.zero))
  check.ok(s.ridge > 0 and s.zero > 0.5 and s.zero < 2, "the baselines are in range (zero ~ 1 + sigma2)",
    string.format("ridge %.4f zero %.4f", s.ridge, s.zero))
end
if is_number(s.test_mse) and is_number(s.zero) then
  check.ok(s.test_mse < s.zero, "the trained model beats predicting zero", string.format("%.4f vs %.4f", s.test_mse, s.zero))
end
if is_number(s.ov_sum_ratio) then check.ok(s.ov_sum_ratio >= 0 and s.ov_sum_ratio <= 1, "ov_sum_ratio in [0, 1]") end

---------------------------------------------------------------------------------------------------
-- final.safetensors loads and holds the model
---------------------------------------------------------------------------------------------------
local okf, tensors = pcall(lab.load, out .. "/final.safetensors")
check.ok(okf and type(tensors) == "table", "final.safetensors loads", not okf and tostring(tensors) or nil)
if okf and type(tensors) == "table" then
  local n, finite = 0, true
  for _, t in pairs(tensors) do
    n = n + 1
    if t:dtype() ~= "int64" and t:numel() > 0 then
      local v = t:abs():sum():item()
      finite = finite and v == v and v < math.huge
    end
  end
  check.ok(n >= 4, "final.safetensors holds the model's tensors", tostring(n))
  check.ok(finite, "the saved weights are finite")
  -- the model's weights are there by name and fit a fresh model of the same config
  local icl = require "attnlab.tasks.icl"
  local model = icl.model{ d = 5, L = 40, heads = HEADS, attention = "softmax" }
  local sd = {}
  for _, pair in ipairs(model:named_parameters()) do
    local name = pair[1]
    sd[name] = tensors["model." .. name] or tensors[name]
  end
  local okl, err = pcall(model.load_state_dict, model, sd)
  check.ok(okl, "final.safetensors loads into a fresh model", not okl and tostring(err) or nil)
end

---------------------------------------------------------------------------------------------------
-- the other experiments: the README's first script and the sweep, each briefly, to the end
---------------------------------------------------------------------------------------------------
local function run_experiment(script, args, tag)
  local d = dir .. "/" .. tag
  local c = string.format("'%s' run %s %s --out '%s' > '%s.out' 2>&1", ATTNLAB, script, args, d, d)
  local ran = exited_ok(os.execute(c))
  check.ok(ran, script .. " runs and exits 0", ran and nil or (read(d .. ".out") or ""):sub(-2000))
  local okj, summary = pcall(json.decode, read(d .. "/summary.json") or "")
  return okj and type(summary) == "table" and summary or nil, d
end

local hello = run_experiment("experiments/hello.lua", "steps=300", "hello")
check.ok(hello and is_number(hello.final_loss) and hello.final_loss < 0.5, "hello.lua learns x1 * x2",
  hello and tostring(hello.final_loss))

local sweep, sweep_dir = run_experiment("experiments/icl_sweep.lua", "steps=200 heads=1,2 test_tasks=500 eval_lengths=20,40",
  "sweep")
check.ok(sweep and sweep.softmax_h1 and sweep.softmax_h2 and sweep.linear_h1 and sweep.linear_h2,
  "icl_sweep.lua reports every (attention, heads) pair")
if sweep and sweep.softmax_h2 then
  check.ok(is_number(sweep.softmax_h2.test_mse) and #sweep.softmax_h2.length_generalisation == 2,
    "icl_sweep.lua's results carry test MSE and the length table")
end
local table_md = read(sweep_dir .. "/table.md") or ""
check.ok(table_md:find("| softmax | 2 |", 1, true) and table_md:find("| linear | 1 |", 1, true),
  "icl_sweep.lua writes its table")
local okm, manifest = pcall(json.decode, read(sweep_dir .. "/points/sweep.json") or "")
check.ok(okm and #manifest.points == 4 and read(sweep_dir .. "/points/" .. manifest.points[4].dir .. "/summary.json")
  and (read(sweep_dir .. "/points/results.md") or ""):find("| linear | 2 | 1 |", 1, true),
  "icl_sweep.lua is a sweep: a run directory per point under points/, and the collected table")

-- every variant of the catalogue through both tasks of experiments/variants.lua, a few steps each
local variants, variants_dir = run_experiment("experiments/variants.lua",
  "steps=3 test_tasks=50 mqar_test=20 icl_eval=20 mqar_eval=8 dim=16 layers=1", "variants")
local expected = lab.attention.variants()
for name, m in pairs(lab.nn.attention_variant_modules) do if m.module_only then expected[#expected + 1] = name end end
local by_name = {}
for _, r in ipairs(variants and variants.results or {}) do by_name[r.variant] = r end
for _, name in ipairs(expected) do
  local r = by_name[name]
  check.ok(r and not r.error and (r.icl or r.skipped.icl) and (r.mqar or r.skipped.mqar),
    "variants.lua: " .. name .. " trains on both tasks or says why not", r and r.error)
end
local variants_md = read(variants_dir .. "/table.md") or ""
check.ok(variants_md:find("| softmax |", 1, true) and variants_md:find("MQAR accuracy", 1, true), "variants.lua writes its table")

os.execute("rm -rf '" .. dir .. "'")
os.exit(check.report(), true)   -- true: close the Lua state, so every tensor is freed (quiet leak checks)
