-- test_icl_figures.lua -- pins the in-context regression study's figures at a short config, so that
-- a change which breaks the reproduction (a wrong scale, a wrong baseline, a broken optimiser) fails
-- `make test` even while the model still beats predicting zero (test_smoke checks only orderings).
--
-- The config: the study's defaults (4 heads, d = 5, L = 40, the paper's noise) for 2,000 steps,
-- seed 1, one thread.  The bounds are the spread over seeds 1..5 measured on 2026-12-06 with some
-- room (the full 100,000-step run and its figures are in docs/icl_regression.md):
--   test_mse / debiased_gd     1.001 .. 1.023     bound [0.99, 1.05]   (the paper: the trained
--                                                                       model matches debiased GD)
--   single_head / debiased_gd  1.641 .. 1.692     bound [1.55, 1.80]   (one head is far worse)
--   ridge                      0.112 .. 0.118     bound [0.10, 0.13]   (data baselines: these move
--   zero                       1.09 .. 1.11       bound [1.05, 1.15]    only if the data changes)
--   ov_sum_ratio               0.0005 .. 0.0096   bound < 0.05         (the zero-sum OV solution)
local check = dofile("tests/lua/check.lua")("icl_figures")
local lab = lab or require "attnlab"

local ATTNLAB = os.getenv("ATTNLAB") or "./build/attnlab"
local dir = check.tmpdir("icl")
local cmd = string.format("'%s' run experiments/icl_regression.lua steps=2000 seed=1 --threads 1 --out '%s/run' > '%s/out' 2>&1",
  ATTNLAB, dir, dir)
local t0 = lab.time()
local status = os.execute(cmd)
check.ok(status == 0 or status == true, "the 2,000-step run exits 0", (check.read_file(dir .. "/out") or ""):sub(-1500))
print(string.format("icl_figures: 2,000 steps in %.1f s", lab.time() - t0))

local text = check.read_file(dir .. "/run/summary.json")
local ok, s = pcall(lab.json.decode, text or "")
if check.ok(ok and type(s) == "table", "summary.json reads") then
  local function within(v, lo, hi, what)
    check.value(type(v) == "number" and v >= lo and v <= hi, what, string.format("%s not in [%g, %g]", tostring(v), lo, hi))
  end
  within(s.test_mse / s.debiased_gd, 0.99, 1.05, "the model's test MSE is within a few percent of debiased GD's")
  within(s.single_head / s.debiased_gd, 1.55, 1.80, "the single-head solution is 1.6-1.7x debiased GD's MSE")
  within(s.ridge, 0.10, 0.13, "ridge regression's MSE (a property of the data)")
  within(s.zero, 1.05, 1.15, "predicting zero's MSE (about 1 + the noise variance)")
  within(s.ov_sum_ratio, 0, 0.05, "the OV weights sum to about zero over the heads")
end
check.cleanup()
os.exit(check.report())
