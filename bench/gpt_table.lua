-- bench/gpt_table.lua -- the table of `bench/run.sh gpt`: the GPT training step of attnlab
-- (bench/gpt_step.lua) against PyTorch's (bench/torch_ref/gpt_step.py, manual and sdpa attention,
-- in the "omp" environment, the fastest PyTorch here, and as installed), from the JSON lines that
-- bench/run.sh collected, each tagged with "env".  Per config and column the figure is the median
-- over rounds of each process's median step; a PyTorch environment's figure is its faster
-- attention.  Memory: the peak resident set of the process minus what it held before the model was
-- built (the interpreter and libraries), so that PyTorch's 230 MB of import is not counted.
--   ./attnlab bench/gpt_table.lua file=bench/out/gpt_step.jsonl
local json = require "attnlab.json"
local path = (arg and arg[1] or ""):match("^file=(.+)$")
if not path then error("usage: attnlab bench/gpt_table.lua file=FILE.jsonl") end

local runs, configs, seen = {}, {}, {}
for line in io.lines(path) do
  local r = json.decode(line)
  local column = r.env .. (r.impl ~= "attnlab" and " " .. r.impl or "")
  if not seen[r.config] then seen[r.config] = true configs[#configs + 1] = r.config end
  runs[r.config] = runs[r.config] or {}
  local c = runs[r.config][column] or { ms = {}, mem = {}, params = r.params }
  runs[r.config][column] = c
  table.insert(c.ms, r.ms_per_step_median)
  table.insert(c.mem, r.rss_peak_mb - r.rss_before_model_mb)
end
local median = dofile("bench/stats.lua").median
-- the faster attention of a PyTorch environment: its figure, its name, its memory
local function best(cols, env)
  local b
  for _, impl in ipairs{ "torch-manual", "torch-sdpa" } do
    local c = cols[env .. " " .. impl]
    if c and (not b or median(c.ms) < b.ms) then b = { ms = median(c.ms), impl = impl:sub(7), mem = median(c.mem) } end
  end
  return b
end

print("| config (layers x width x heads) | params | attnlab ms/step | PyTorch omp (fastest) | PyTorch as installed | " ..
  "attnlab vs omp | vs as installed | model GFLOP/s of attnlab | peak memory beyond start, attnlab / PyTorch omp |")
print("|---|---|---|---|---|---|---|---|---|")
for _, cfg in ipairs(configs) do
  local cols = runs[cfg]
  local a = cols.attnlab
  local omp, default = best(cols, "torch-omp"), best(cols, "torch-default")
  local L, d = cfg:match("^(%d+)x(%d+)")
  L, d = tonumber(L), tonumber(d)
  -- model FLOPs: 6 x parameters x tokens plus the attention products (causal: half of 4 N^2 d per
  -- layer forward, x3 with the backward), tokens = batch 64 x T 40
  local tokens, T = 64 * 40, 40
  local flops = 6 * a.params * tokens + 3 * L * 64 * 2 * T * T * d
  local am = median(a.ms)
  print(string.format("| %s | %d | %.1f | %s | %s | %s | %s | %.0f | %.0f / %s MB |", cfg, a.params, am,
    omp and string.format("%.1f (%s)", omp.ms, omp.impl) or "-", default and string.format("%.1f (%s)", default.ms, default.impl) or "-",
    omp and string.format("%.2fx", omp.ms / am) or "-", default and string.format("%.2fx", default.ms / am) or "-",
    flops / (am * 1e-3) / 1e9, median(a.mem), omp and string.format("%.0f", omp.mem) or "-"))
end
