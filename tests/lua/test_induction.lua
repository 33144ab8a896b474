-- test_induction.lua -- experiments/induction.lua through the program: a short run (a few seconds)
-- in which the training loss falls, and summary.json with every key the study reports (per-head
-- previous-token and induction scores, the ablations, the control), and the maps in records.bin.
--   ./build/attnlab tests/lua/test_induction.lua
local check = dofile("tests/lua/check.lua")("induction")
local lab = lab or require "attnlab"
local json = lab.json

local ATTNLAB = os.getenv("ATTNLAB") or "./build/attnlab"
local tmp = check.tmpdir("induction")
local out = tmp .. "/run"
local cmd = string.format("'%s' run experiments/induction.lua steps=300 control_steps=60 eval_size=64 log_every=20 " ..
  "--threads 1 --out '%s' > '%s/stdout' 2> '%s/stderr'", ATTNLAB, out, tmp, tmp)
local status = os.execute(cmd)
local ok = status == 0 or status == true
check.ok(ok, "the study runs and exits 0", ok and nil or (check.read_file(tmp .. "/stderr") or ""):sub(-2000))

local okj, s = pcall(json.decode, check.read_file(out .. "/summary.json") or "")
check.ok(okj and type(s) == "table", "summary.json is JSON")
s = okj and type(s) == "table" and s or {}
check.ok(type(s.first_loss) == "number" and type(s.final_loss) == "number" and s.final_loss < s.first_loss,
  "the training loss falls", string.format("%s -> %s", tostring(s.first_loss), tostring(s.final_loss)))
for _, k in ipairs{ "accuracy", "prev_token_score", "induction_score", "ablation_accuracy", "prev_token_head",
                    "induction_head", "control", "train_time_s", "wall_time_s" } do
  check.ok(s[k] ~= nil, "summary.json has " .. k)
end
local function per_head(t, what)
  check.ok(type(t) == "table" and #t == 2 and type(t[1]) == "table" and #t[1] == 4, what .. ": 2 layers x 4 heads")
  for l = 1, 2 do for h = 1, 4 do
    local v = t and t[l] and t[l][h]
    if not (type(v) == "number" and v >= 0 and v <= 1) then check.ok(false, what .. " in [0, 1]") return end
  end end
end
per_head(s.prev_token_score, "prev_token_score")
per_head(s.induction_score, "induction_score")
per_head(s.ablation_accuracy, "ablation_accuracy")
local c = s.control or {}
for _, k in ipairs{ "accuracy", "accuracy_on_variable_offset", "prev_token_score", "induction_score", "ablation_accuracy", "note" } do
  check.ok(c[k] ~= nil, "summary.json's control has " .. k)
end
check.ok(type(c.first_loss) == "number" and c.final_loss < c.first_loss, "the control's loss falls")

local okr, recs = pcall(lab.viz.read, out)
local names = {}
if okr and type(recs) == "table" then for _, r in ipairs(recs) do if r.name then names[r.name] = true end end end
check.ok(names["induction"] and names["control (fixed offset)"], "records.bin holds both models' maps")

check.cleanup()
os.exit(check.report())
