-- test_induction.lua -- experiments/induction.lua through the program: a short run (about ten
-- seconds) in which the circuit's direction already shows -- a layer-1 head turns to the previous
-- token, a layer-2 head reads the key after the first occurrence, ablating that layer-1 head loses
-- most of the accuracy, and the fixed-offset control reads its key by position and fails the shuffled
-- task -- then summary.json with every key the study reports, and the maps in records.bin.  The
-- bounds are the mechanism's direction, far from the figures of a full run (docs/induction.md).
--   ./build/attnlab tests/lua/test_induction.lua
local check = dofile("tests/lua/check.lua")("induction")
local lab = lab or require "attnlab"
local json = lab.json

local tmp = check.tmpdir("induction")
local study = check.study("experiments/induction.lua", tmp)

-- a config the study cannot run is refused, naming the study and the key, before any training
study.refuses("seg_min=1", { "induction:", "seg_min" }, "seg_min=1 is refused, naming induction and seg_min")

local out = tmp .. "/run"
study.run(out, "steps=400 control_steps=100 eval_size=128 log_every=50", "the study runs and exits 0")

local s = study.summary(out, { "accuracy", "prev_token_score", "prev_token_score_whole", "induction_score", "ablation_accuracy",
                               "prev_token_head", "induction_head", "control", "train_time_s", "wall_time_s" })
local function per_head(t, what)
  check.ok(type(t) == "table" and #t == 2 and type(t[1]) == "table" and #t[1] == 1, what .. ": 2 layers x 1 head")
  for l = 1, 2 do
    local v = t and t[l] and t[l][1]
    if not (type(v) == "number" and v >= 0 and v <= 1) then check.ok(false, what .. " in [0, 1]") return end
  end
end
for _, k in ipairs{ "prev_token_score", "prev_token_score_whole", "induction_score", "ablation_accuracy" } do per_head(s[k], k) end
check.ok(type(s.first_loss) == "number" and type(s.final_loss) == "number" and s.final_loss < s.first_loss,
  "the training loss falls", string.format("%s -> %s", tostring(s.first_loss), tostring(s.final_loss)))

-- the mechanism's direction (uniform attention puts about 0.2 on the previous key in the first half,
-- 0.07 on the key after the first occurrence)
local function num(v) return type(v) == "number" and v or 0 / 0 end
local pt, ih = s.prev_token_head or {}, s.induction_head or {}
local acc = num(s.accuracy)
check.ok(acc > 0.8, "the copied tokens are learned", string.format("accuracy %.3f", acc))
check.ok(num(pt.score) > 0.4, "a layer-1 head turns to the previous token", string.format("score %.3f", num(pt.score)))
check.ok(ih.layer == 2 and num(ih.score) > 0.5, "a layer-2 head reads the key after the first occurrence",
  string.format("layer %s, score %.3f", tostring(ih.layer), num(ih.score)))
check.ok(num(pt.ablated_accuracy) < acc / 2, "ablating the previous-token head loses most of the accuracy",
  string.format("%.3f -> %.3f", acc, num(pt.ablated_accuracy)))

local c = s.control or {}
for _, k in ipairs{ "accuracy", "accuracy_on_shuffled", "prev_token_score", "induction_score", "ablation_accuracy",
                    "positional_head", "note" } do
  check.ok(c[k] ~= nil, "summary.json's control has " .. k)
end
check.ok(type(c.first_loss) == "number" and num(c.final_loss) < c.first_loss, "the control's loss falls")
local ph = c.positional_head or {}
check.ok(num(ph.score) > 0.6 and num(c.prev_token_head and c.prev_token_head.score) < num(pt.score),
  "the control's layer-1 head reads the copied key by position, without a previous-token head",
  string.format("on the copied key %.3f, previous-token %.3f", num(ph.score), num(c.prev_token_head and c.prev_token_head.score)))
check.ok(num(c.accuracy) > 0.9 and num(c.accuracy_on_shuffled) < 0.5, "the control solves its own task and fails the shuffled one",
  string.format("%.3f, %.3f", num(c.accuracy), num(c.accuracy_on_shuffled)))

local okr, recs = pcall(lab.viz.read, out)
local names = {}
if okr and type(recs) == "table" then for _, r in ipairs(recs) do if r.name then names[r.name] = true end end end
check.ok(names["induction"] and names["control (fixed offset)"], "records.bin holds both models' maps")

check.cleanup()
os.exit(check.report())
