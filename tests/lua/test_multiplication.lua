-- test_multiplication.lua -- experiments/multiplication.lua (issue 10) through the program: a short
-- run of each mode (3 x 3 digits, a tiny model, a few hundred steps) in which the training loss
-- falls; summary.json with every key the study reports; the c_hat targets aligned with the
-- positions the aux loss and the probe read; resume= after an interrupted run (a run stopped at a
-- log boundary and continued from final.safetensors, and a kill -9 after a periodic checkpoint in
-- the middle of a log window and of the ICoT removal schedule) reproducing the uninterrupted run's
-- metrics; a mistyped mode refused before any run directory is made; report.md and its PNGs.
--   ./build/attnlab tests/lua/test_multiplication.lua
local check = dofile("tests/lua/check.lua")("multiplication")
local lab = lab or require "attnlab"
local json = lab.json
local mult = require "attnlab.tasks.multiplication"

local ATTNLAB = os.getenv("ATTNLAB") or "./build/attnlab"
local SCRIPT = "experiments/multiplication.lua"
local TINY = "quick=true digits=3 width=32 batch=32 test_size=100 eval_every=50 log_every=10 probe_size=200 " ..
             "attribution_size=20 icot_epoch_steps=24"
local read = check.read_file
local tmp = check.tmpdir("mult")

local function sh(cmd)   -- -> exit status, stderr text
  local err = tmp .. "/err.txt"
  local status = os.execute(cmd .. " >'" .. tmp .. "/out.txt' 2>'" .. err .. "'")
  if type(status) ~= "number" then status = status and 0 or 1 else status = math.floor(status / 256) end
  return status, read(err) or ""
end
local function attnlab_run(args, out)
  return sh(string.format("'%s' run %s %s --threads 1 --out '%s'", ATTNLAB, SCRIPT, args, out))
end
local function metrics(dir)
  local out = {}
  for line in (read(dir .. "/metrics.jsonl") or ""):gmatch("[^\n]+") do out[#out + 1] = json.decode(line) end
  return out
end
local function summary(dir)
  local ok, s = pcall(json.decode, read(dir .. "/summary.json") or "")
  return ok and type(s) == "table" and s or nil
end
local function is_number(v) return type(v) == "number" and v == v end

---------------------------------------------------------------------------------------------------
-- the positions the aux loss and the probe read: answer_pos[k] predicts c_k, c_hat_k mod 10 = c_k
---------------------------------------------------------------------------------------------------
do
  local gen = mult.generator{ digits = 3, seed = 5 }
  for _, mode in ipairs{ "sft", "icot" } do
    local b = mode == "sft" and gen:batch(16, { mode = "sft" }) or gen:batch(16, { mode = "icot", remove = 3, smoothing = 4 })
    local at = b.targets:gather(2, b.answer_pos)
    check.ok(at:eq(b.answer):float():sum():item() == b.B * 6, mode .. ": the target at answer_pos[k] is c_k")
    local inp = b.inputs:gather(2, b.answer_input_pos)
    check.ok(inp:eq(b.answer):float():sum():item() == b.B * 6, mode .. ": the input at answer_input_pos[k] is c_k")
    local ok = true
    for i = 1, b.B do
      for k = 1, 6 do
        if b.c_hat:get(i, k) % 10 ~= mult.id_digit(b.answer:get(i, k)) then ok = false end
      end
    end
    check.ok(ok, mode .. ": c_hat_k mod 10 is the answer digit at the same index k")
  end
  local b = mult.batch({ mult.problem(123, 456, 3) }, { mode = "sft" })
  local chat = mult.c_hat(123, 456, 3)
  check.ok(b.c_hat:get(1, 1) == chat[1] and b.c_hat:get(1, 6) == chat[6], "the batch's c_hat is mult.c_hat, c_hat_0 first")
end

---------------------------------------------------------------------------------------------------
-- a mistyped mode: one clear line, no run directory
---------------------------------------------------------------------------------------------------
do
  local rc, err = attnlab_run(TINY .. " mode=sfft", tmp .. "/typo")
  check.ok(rc ~= 0, "mode=sfft exits non-zero")
  check.ok(err:find("config key 'mode' must be one of 'sft', 'icot', 'aux', got 'sfft'", 1, true) ~= nil, "the error names the modes", err)
  check.ok(read(tmp .. "/typo/config.json") == nil, "no run directory is made for a mistyped mode")
  rc, err = attnlab_run(TINY .. " mode=aux aux_heads=9", tmp .. "/badheads")
  check.ok(rc ~= 0 and err:find("aux_heads", 1, true) ~= nil, "aux_heads beyond heads is refused", err)
end

---------------------------------------------------------------------------------------------------
-- lr_schedule: piecewise linear through its knots, lr before the first, the last knot's after it
---------------------------------------------------------------------------------------------------
do
  local rc, err = attnlab_run(TINY .. " steps=40 lr_schedule=10:1e-3,x", tmp .. "/badsched")
  check.ok(rc ~= 0 and err:find("lr_schedule: 'x' is not step:lr", 1, true) ~= nil, "a malformed knot is refused", err)
  rc, err = attnlab_run(TINY .. " steps=40 lr_schedule=20:1e-3,10:1e-4", tmp .. "/badorder")
  check.ok(rc ~= 0 and err:find("the steps must increase", 1, true) ~= nil, "knots out of order are refused", err)
  rc, err = attnlab_run(TINY .. " steps=40 decay_start=5 lr_schedule=10:1e-3", tmp .. "/both")
  check.ok(rc ~= 0 and err:find("give one of them", 1, true) ~= nil, "lr_schedule with decay_start is refused", err)
  rc, err = attnlab_run(TINY .. " steps=40 lr=2e-3 lr_schedule=10:1e-3,30:1e-4", tmp .. "/sched")
  check.ok(rc == 0, "a run with lr_schedule finishes", err)
  local want = { [10] = 2e-3, [20] = 5.5e-4, [30] = 1e-4, [40] = 1e-4 }
  local seen = 0
  for _, m in ipairs(metrics(tmp .. "/sched")) do
    if m.lr and want[m.step] then
      seen = seen + 1
      check.near(m.lr, want[m.step], 1e-12, "lr at step " .. m.step)
    end
  end
  check.ok(seen == 4, "metrics.jsonl has the lr at steps 10, 20, 30, 40", seen)
end

---------------------------------------------------------------------------------------------------
-- each mode: the loss falls; summary.json has every key
---------------------------------------------------------------------------------------------------
local SUMMARY_KEYS = { "mode", "digits", "steps", "exact_match", "eval_method", "test_size", "digit_accuracy", "digit_loss",
                       "probe_mae", "probe_mae_input_pos", "attribution", "wall_time_s", "train_time_s", "steps_per_s",
                       "parameters", "config" }
for _, mode in ipairs{ "sft", "aux", "icot" } do
  local dir = tmp .. "/" .. mode
  local t0 = lab.time()
  local rc, err = attnlab_run(TINY .. " steps=200 mode=" .. mode .. (mode == "sft" and "" or " report=false"), dir)
  check.ok(rc == 0, mode .. ": the run exits 0", err:sub(-1500))
  print(string.format("%s: 200 steps in %.1f s", mode, lab.time() - t0))
  local m = metrics(dir)
  local first, last
  for _, r in ipairs(m) do
    if r.loss then first = first or r; last = r end
  end
  check.ok(first and last and last.step == 200 and last.loss < first.loss - 0.3,
    mode .. ": the training loss falls", first and last and string.format("%.3f at %d -> %.3f at %d", first.loss, first.step, last.loss, last.step))
  local all_c = last ~= nil
  for k = 0, 5 do all_c = all_c and is_number(last["loss_c" .. k]) end
  check.ok(all_c and last.loss_c6 == nil, mode .. ": metrics.jsonl has loss_c0 .. loss_c5")
  check.ok(last and is_number(last.exact_match) and is_number(last.acc_c3) and is_number(last.test_loss_c3), mode .. ": the final eval is logged")
  if mode == "aux" then check.ok(last and is_number(last.aux_loss), "aux: aux_loss is logged") end
  if mode == "icot" then
    local removed = {}
    for _, r in ipairs(m) do if r.removed then removed[#removed + 1] = r.removed end end
    check.ok(removed[1] == 3 and removed[#removed] == 24, "icot: the removal count grows to the whole CoT (24 tokens at 3 x 3)",
      table.concat(removed, ","))
    local greedy = false
    for _, r in ipairs(m) do if r.exact_match_teacher_forced then greedy = true end end
    check.ok(greedy, "icot: evaluations with CoT left decode greedily (and log the teacher-forced figure)")
  end
  local s = summary(dir)
  check.ok(s ~= nil, mode .. ": summary.json is JSON")
  if s then
    local missing = {}
    for _, k in ipairs(SUMMARY_KEYS) do if s[k] == nil then missing[#missing + 1] = k end end
    check.ok(#missing == 0, mode .. ": summary.json has every key", table.concat(missing, ", "))
    local per_ok = true
    for _, key in ipairs{ "digit_accuracy", "digit_loss", "probe_mae", "probe_mae_input_pos" } do
      for k = 0, 5 do per_ok = per_ok and type(s[key]) == "table" and is_number(s[key]["c" .. k]) end
    end
    check.ok(per_ok, mode .. ": digit accuracy, digit loss and probe MAE for c0 .. c5")
    local A = s.attribution or {}
    check.ok(type(A.matrix) == "table" and #A.matrix == 6 and #A.matrix[1] == 6 and A.rows[1] == "a0" and A.rows[4] == "b0"
      and A.cols[6] == "c5", mode .. ": the attribution matrix is operand digit x answer digit (6 x 6)")
    check.ok(s.mode == mode and s.digits == 3 and s.test_size == 100 and s.config and s.config.width == 32, mode .. ": mode and config")
    check.ok(s.exact_match >= 0 and s.exact_match <= 1 and s.steps_per_s > 0 and s.wall_time_s > 0, mode .. ": exact match and times")
  end
  check.ok((read(dir .. "/records.bin") or ""):find("answer attention", 1, true) ~= nil, mode .. ": the answer attention is published for the viewer")
end

-- icot_gate: a token is removed only after an evaluation whose greedy exact match reached the gate
-- (one at a time, the optimiser reset); below it the count holds.  The quick preset's model reaches
-- 0.38 exact by step 600 with the whole CoT, so a gate of 0.05 holds it at first and then opens.
do
  local dir = tmp .. "/icot_gate"
  local rc, err = attnlab_run("quick=true mode=icot report=false viz=false eval_every=200 steps=800 icot_gate=0.05", dir)
  check.ok(rc == 0, "icot_gate: the run exits 0", err:sub(-1500))
  local evals = {}
  for _, r in ipairs(metrics(dir)) do if r.exact_match then evals[#evals + 1] = r end end
  local follows, held, opened = #evals == 4, 0, 0
  for i = 2, #evals do
    local prev, cur = evals[i - 1], evals[i]
    local want = prev.removed + (prev.exact_match >= 0.05 and 1 or 0)
    follows = follows and cur.removed == want
    if want > prev.removed then opened = opened + 1 else held = held + 1 end
  end
  local trace = {}
  for _, r in ipairs(evals) do trace[#trace + 1] = string.format("%d: %d removed, exact %.3f", r.step, r.removed, r.exact_match) end
  check.ok(follows and held >= 1 and opened >= 1, "icot_gate: the count grows by one after each evaluation at or above the gate, and holds below it",
    table.concat(trace, "; "))
  local s = summary(dir)
  check.ok(s and s.icot_removed == evals[#evals].removed,
    "icot_gate: summary.json's icot_removed is the count its last evaluation ran with", s and s.icot_removed)
  local rc2, err2 = attnlab_run("quick=true mode=aux icot_gate=0.5", tmp .. "/gate_aux")
  check.ok(rc2 ~= 0 and err2:find("icot_gate gates the removal of CoT tokens: it takes mode=icot", 1, true),
    "icot_gate with mode=aux is refused", err2:sub(-300))
  local rc3, err3 = attnlab_run("quick=true mode=icot icot_gate=1.5", tmp .. "/gate_big")
  check.ok(rc3 ~= 0 and err3:find("icot_gate must be 0 (the fixed schedule) or an exact-match fraction in (0, 1]", 1, true),
    "icot_gate above 1 is refused", err3:sub(-300))
end

-- report.md and its PNGs (the sft run wrote them)
do
  local dir = tmp .. "/sft"
  local report = read(dir .. "/report.md") or ""
  check.ok(report:find("Exact match on 100 held-out problems", 1, true) and report:find("loss_per_position.png", 1, true)
    and report:find("attribution.png", 1, true) and report:find("exact_match.png", 1, true), "report.md names its numbers and plots")
  for _, png in ipairs{ "loss_per_position.png", "exact_match.png", "attribution.png" } do
    local ok, img = pcall(lab.image.load, dir .. "/" .. png)
    check.ok(ok and img:size(1) > 100 and img:size(2) > 100, "report PNG " .. png .. " reads back as an image")
  end
end

---------------------------------------------------------------------------------------------------
-- resume: stop at step 30, continue to 60 from final.safetensors = 60 steps uninterrupted (aux:
-- the regression heads are in the checkpoint)
---------------------------------------------------------------------------------------------------
local function same_metrics(a, b)
  local x, y = read(a .. "/metrics.jsonl"), read(b .. "/metrics.jsonl")
  return x ~= nil and x == y
end
local function same_summary(a, b)
  local x, y = summary(a), summary(b)
  if not (x and y) then return false end
  for _, k in ipairs{ "exact_match", "digit_accuracy", "digit_loss", "probe_mae", "attribution", "steps" } do
    if json.encode(x[k]) ~= json.encode(y[k]) then return false, k end
  end
  return true
end
do
  local args = TINY .. " mode=aux eval_every=30 report=false"
  local ref, part = tmp .. "/aux_ref", tmp .. "/aux_part"
  local rc1 = attnlab_run(args .. " steps=60", ref)
  local rc2 = attnlab_run(args .. " steps=30", part)
  local rc3, err = sh(string.format("'%s' run %s resume='%s/final.safetensors' steps=60 --threads 1", ATTNLAB, SCRIPT, part))
  check.ok(rc1 == 0 and rc2 == 0 and rc3 == 0, "aux: 60 steps; 30 steps then resume= to 60", err:sub(-800))
  check.ok(same_metrics(ref, part), "aux: the resumed run's metrics.jsonl equals the uninterrupted one's")
  local ok, key = same_summary(ref, part)
  check.ok(ok, "aux: the resumed run's summary numbers equal the uninterrupted one's", key)
end
-- the gate's count is in the checkpoint: the gated run above, stopped at 600 and resumed to 800,
-- logs what the uninterrupted one logged (its gate opened at step 600's evaluation)
do
  local part = tmp .. "/icot_gate_part"
  local rc = attnlab_run("quick=true mode=icot report=false viz=false eval_every=200 steps=600 icot_gate=0.05", part)
  local rc2, err = sh(string.format("'%s' run %s resume='%s/final.safetensors' steps=800 --threads 1", ATTNLAB, SCRIPT, part))
  check.ok(rc == 0 and rc2 == 0 and same_metrics(tmp .. "/icot_gate", part),
    "icot_gate: a run stopped and resumed logs the uninterrupted one's metrics (the count resumes with it)", err:sub(-800))
end

---------------------------------------------------------------------------------------------------
-- lr_hold_at / lr_hold_until: the schedule's clock stops at lr_hold_at until an evaluation (at or
-- after it) finds every digit at lr_hold_until, then runs on from there; the release is checkpointed
---------------------------------------------------------------------------------------------------
do
  local args = TINY .. " mode=aux report=false viz=false lr=2e-3 lr_schedule=50:2e-3,110:1e-4 lr_hold_at=60"
  local function sched(c) return c <= 50 and 2e-3 or c >= 110 and 1e-4 or 2e-3 + (1e-4 - 2e-3) * (c - 50) / 60 end
  -- held for good: no tiny model reaches accuracy 1 on every digit
  local rc, err = attnlab_run(args .. " steps=200 lr_hold_until=1", tmp .. "/held")
  check.ok(rc == 0, "lr_hold: a run held to its end finishes", err:sub(-800))
  local held, lines = true, 0
  for _, m in ipairs(metrics(tmp .. "/held")) do
    if m.lr and m.step > 60 then held, lines = held and math.abs(m.lr - sched(60)) < 1e-12, lines + 1 end
  end
  local s = summary(tmp .. "/held")
  check.ok(held and lines == 14 and s and s.lr_released_at == 0,   -- the lr lines of steps 70, 80, ..., 200
    "lr_hold: never released, the lr stays at its value at lr_hold_at", string.format("%d lines, released at %s", lines, s and s.lr_released_at))
  -- released by the first evaluation at or after step 60 (step 100; step 50's is before the hold):
  -- steps 61..100 at the clock's 60, then step 100 + d at the clock's 60 + d
  rc, err = attnlab_run(args .. " steps=200 lr_hold_until=0.01", tmp .. "/released")
  check.ok(rc == 0, "lr_hold: a released run finishes", err:sub(-800))
  local want = { [50] = sched(50), [70] = sched(60), [100] = sched(60), [110] = sched(70), [140] = sched(100), [150] = sched(110),
                 [160] = 1e-4, [200] = 1e-4 }
  local seen, released = 0, nil
  for _, m in ipairs(metrics(tmp .. "/released")) do
    if m.lr and want[m.step] then
      seen = seen + 1
      check.near(m.lr, want[m.step], 1e-12, "lr_hold: lr at step " .. m.step)
    end
    if m.step == 100 then released = m.lr_released_at end
  end
  s = summary(tmp .. "/released")
  check.ok(seen == 8 and released == 100 and s and s.lr_released_at == 100,
    "lr_hold: released at step 100's evaluation, in metrics.jsonl and summary.json", released)
  -- stopped after the release and resumed: the same metrics as the uninterrupted run
  local part = tmp .. "/released_part"
  rc = attnlab_run(args .. " steps=150 lr_hold_until=0.01", part)   -- an evaluation step, as in the reference
  local rc2, err2 = sh(string.format("'%s' run %s resume='%s/final.safetensors' steps=200 --threads 1", ATTNLAB, SCRIPT, part))
  check.ok(rc == 0 and rc2 == 0 and same_metrics(tmp .. "/released", part),
    "lr_hold: a run stopped after the release and resumed logs the uninterrupted one's metrics", err2:sub(-800))
  for i, bad in ipairs{ { "lr_hold_at=60", "go together" }, { "lr_hold_until=0.5", "go together" },
                        { "lr_hold_at=60 lr_hold_until=1.5", "lr_hold_until must be a digit accuracy" },
                        { "lr_hold_at=-5 lr_hold_until=0.5", "lr_hold_at must be a step" },
                        { "lr_hold_at=300 lr_hold_until=0.5", "must lie between the end of the warmup (0) and steps (200)" } } do
    local rc3, err3 = attnlab_run(TINY .. " steps=200 lr_schedule=50:1e-3 " .. bad[1], tmp .. "/hold_bad" .. i)
    check.ok(rc3 ~= 0 and err3:find(bad[2], 1, true) ~= nil, "lr_hold: " .. bad[1] .. " is refused", err3:sub(-300))
  end
  local rc4, err4 = attnlab_run(TINY .. " steps=200 lr_hold_at=60 lr_hold_until=0.5", tmp .. "/hold_const")
  check.ok(rc4 ~= 0 and err4:find("holds a schedule that is not there", 1, true) ~= nil, "lr_hold without a schedule is refused", err4:sub(-300))
end

---------------------------------------------------------------------------------------------------
-- kill -9 after a periodic checkpoint (every 0.12 s), in the middle of a log window and of the
-- ICoT schedule (optimiser resets, removal smoothing); resume= reproduces the uninterrupted run
---------------------------------------------------------------------------------------------------
do
  local args = TINY .. " mode=icot steps=1200 icot_epoch_steps=240 log_every=7 eval_every=400 report=false"
  local ref, k9 = tmp .. "/icot_ref", tmp .. "/icot_k9"
  local rc = attnlab_run(args, ref)
  check.ok(rc == 0, "icot: the uninterrupted reference run")
  os.execute(string.format("'%s' run %s %s checkpoint_every=0.002 --threads 1 --out '%s' >'%s/k9.out' 2>&1 & echo $! >'%s/k9.pid'",
    ATTNLAB, SCRIPT, args, k9, tmp, tmp))
  local pid = tonumber((read(tmp .. "/k9.pid") or ""):match("%d+"))
  local t0 = lab.time()
  while lab.time() - t0 < 30 and not read(k9 .. "/checkpoint.safetensors") do os.execute("sleep 0.05") end
  os.execute("sleep 0.3")
  local killed = pid and os.execute("kill -9 " .. pid .. " 2>/dev/null")
  while pid and lab.time() - t0 < 40 and (os.execute("kill -0 " .. pid .. " 2>/dev/null") == 0) do os.execute("sleep 0.05") end
  local status = read(k9 .. "/status.json") or ""
  check.ok(killed and status:find('"status": "running"', 1, true) and not read(k9 .. "/summary.json"),
    "icot: killed in the middle of the run", status)
  local _, meta = lab.load(k9 .. "/checkpoint.safetensors")
  local at = tonumber(meta.step)
  print(string.format("icot: killed after the checkpoint of step %d", at or -1))
  check.ok(at and at > 0 and at < 1200, "icot: the periodic checkpoint is from the middle of the run", at)
  local rc2, err = sh(string.format("'%s' run %s resume='%s/checkpoint.safetensors' --threads 1", ATTNLAB, SCRIPT, k9))
  check.ok(rc2 == 0, "icot: resume after kill -9", err:sub(-800))
  check.ok(same_metrics(ref, k9), "icot: metrics.jsonl after kill -9 and resume equals the uninterrupted one's")
  local ok, key = same_summary(ref, k9)
  check.ok(ok, "icot: summary numbers after kill -9 and resume equal the uninterrupted one's", key)
end

---------------------------------------------------------------------------------------------------
-- experiments/multiplication_compare.lua: the modes as child runs, one table beside the paper's
---------------------------------------------------------------------------------------------------
do
  local dir = tmp .. "/compare"
  local rc, err = sh(string.format("'%s' run experiments/multiplication_compare.lua quick=true steps=60 test_size=50 modes=sft,aux " ..
    "extra='width=32 batch=32 probe_size=200 attribution_size=20 eval_every=30 log_every=10' --threads 1 --out '%s'", ATTNLAB, dir))
  check.ok(rc == 0, "compare: runs and exits 0", err:sub(-1500))
  local t = read(dir .. "/table.md") or ""
  check.ok(t:find("| sft | ", 1, true) and t:find("| aux | ", 1, true) and not t:find("| icot | ", 1, true), "compare: one row per mode asked for", t)
  check.ok(t:find("99%", 1, true) and t:find("< 1%", 1, true) and t:find("28-113", 1, true), "compare: the paper's numbers beside ours")
  local s = summary(dir)
  check.ok(s and #s.runs == 2 and s.runs[1].mode == "sft" and is_number(s.runs[2].exact_match), "compare: summary.json lists the runs")
  local a = summary(dir .. "/aux")
  check.ok(a and a.config.width == 32 and a.config.steps == 60 and a.config.seed == 1, "compare: the children get the shared config and extra")
  local ok, img = pcall(lab.image.load, dir .. "/loss_per_position.png")
  check.ok(ok and img:size(2) == 2 * 720, "compare: the loss curves side by side")
  rc, err = sh(string.format("'%s' run experiments/multiplication_compare.lua modes=sft,sfx --out '%s'", ATTNLAB, tmp .. "/compare_bad"))
  check.ok(rc ~= 0 and err:find("sfx", 1, true), "compare: a mistyped mode is refused", err)
end

check.cleanup()
check.report()
