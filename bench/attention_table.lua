-- bench/attention_table.lua -- the table of `bench/run.sh attention`: attnlab's softmax attention
-- against PyTorch's (naive and sdpa, in the "omp" environment, the fastest here, and as installed),
-- from the JSON lines bench/run.sh collected (attnlab: one object per case; PyTorch: one object per
-- run of attn_kernels.py with its cases in "results"; each tagged with "setup").  Per case the
-- figure is the median over rounds of each process's median window; the ratio is the fastest
-- PyTorch (any environment, naive or sdpa) over attnlab.
--   ./attnlab bench/attention_table.lua file=bench/out/attention_kernels.jsonl
local json = require "attnlab.json"
local path = (arg and arg[1] or ""):match("^file=(.+)$")
if not path then error("usage: attnlab bench/attention_table.lua file=FILE.jsonl") end

local runs = {}   -- runs[case key][column] = list of ms_median; peaks likewise
local peaks = {}
local cases, seen = {}, {}
local function add(column, r)
  local key = string.format("%s|%s|%d", r.mode, tostring(r.causal), r.N)
  if not seen[key] then seen[key] = true cases[#cases + 1] = { key = key, mode = r.mode, causal = r.causal, N = r.N } end
  runs[key] = runs[key] or {}
  runs[key][column] = runs[key][column] or {}
  table.insert(runs[key][column], r.ms_median)
  peaks[key] = peaks[key] or {}
  peaks[key][column] = r.peak_extra_MB
end
for line in io.lines(path) do
  local obj = json.decode(line)
  if obj.results then
    for _, r in ipairs(obj.results) do if not r.error then add(obj.setup .. " " .. r.impl, r) end end
  else
    add(obj.setup, obj)
  end
end
local median = dofile("bench/stats.lua").median
table.sort(cases, function(a, b)
  if a.mode ~= b.mode then return a.mode > b.mode end
  if a.causal ~= b.causal then return not a.causal end
  return a.N < b.N
end)
local columns = { "torch-omp naive", "torch-omp sdpa", "torch-default naive", "torch-default sdpa" }
print("| mode | causal | N | attnlab ms | " .. table.concat(columns, " ms | ") .. " ms | fastest PyTorch / attnlab | as installed (best of default) / attnlab | peak MB attnlab / torch-omp naive |")
print("|---|---|---|---|" .. string.rep("---|", #columns) .. "---|---|---|")
local function fmt(x) return x and string.format("%.2f", x) or "-" end
for _, c in ipairs(cases) do
  local r = runs[c.key]
  local mine = median(r.attnlab)
  local cells, best, default_best = {}, math.huge, math.huge
  for i, col in ipairs(columns) do
    local m = median(r[col])
    cells[i] = fmt(m)
    if m then
      best = math.min(best, m)
      if col:find("default", 1, true) then default_best = math.min(default_best, m) end
    end
  end
  local p = peaks[c.key]
  print(string.format("| %s | %s | %d | %s | %s | %s | %s | %s / %s |", c.mode, c.causal and "yes" or "no", c.N, fmt(mine),
    table.concat(cells, " | "), (mine and best < math.huge) and string.format("**%.2fx**", best / mine) or "-",
    (mine and default_best < math.huge) and string.format("%.2fx", default_best / mine) or "-",
    fmt(p.attnlab), fmt(p["torch-omp naive"])))
end
