-- bench/gpt_table.lua -- the table of `bench/run.sh gpt`: the GPT training step of attnlab
-- (bench/gpt_step.lua) against PyTorch's (bench/torch_ref/gpt_step.py, manual and sdpa attention,
-- in the "omp" environment, the fastest PyTorch here, and as installed), from the JSON lines that
-- bench/run.sh collected, each tagged with "env".  Per config and column the figure is the median
-- over rounds of each process's median step; a PyTorch environment's figure is its faster
-- attention.  Memory: the peak resident set of the process minus what it held before the model was
-- built (the interpreter and libraries), so that PyTorch's 230 MB of import is not counted.
--   ./attnlab bench/gpt_table.lua file=bench/out/gpt_step.jsonl
local stats = dofile("bench/stats.lua")
local median = stats.median

-- One row per config, batch x tokens and OpenBLAS kernel choice; the as-installed column is always
-- the environment's own, so under "own" it shows the same figure as under "env".
local runs, rows, seen = {}, {}, {}
for _, r in ipairs(stats.table_lines("gpt_table.lua")) do
  local column = r.env .. (r.impl ~= "attnlab" and " " .. r.impl or "")
  local shape = string.format("%s, %dx%d", r.config, r.batch, r.T)   -- config, batch x tokens
  local key = shape .. " " .. r.blas
  if not seen[key] then
    seen[key] = true
    rows[#rows + 1] = { key = key, shape = shape, config = r.config, batch = r.batch, T = r.T, blas = r.blas }
  end
  runs[key] = runs[key] or {}
  local c = runs[key][column] or { ms = {}, mem = {}, params = r.params, kernel = r.blas_kernel }
  runs[key][column] = c
  table.insert(c.ms, r.ms_per_step_median)
  table.insert(c.mem, r.rss_peak_mb - r.rss_before_model_mb)
end
-- the faster attention of a PyTorch environment: its figure, its name, its memory, its kernel
local function best(cols, env)
  local b
  for _, impl in ipairs{ "torch-manual", "torch-sdpa" } do
    local c = cols and cols[env .. " " .. impl]
    if c and (not b or median(c.ms) < b.ms) then
      b = { ms = median(c.ms), impl = impl:sub(7), mem = median(c.mem), kernel = c.kernel }
    end
  end
  return b
end

stats.print_header{ "config (layers x width x heads), batch x tokens", "OpenBLAS kernel", "params", "attnlab ms/step",
  "attnlab, nn.Linear on OpenBLAS (ATTNLAB_SGEMM=openblas)", "PyTorch omp (fastest)",
  "PyTorch as installed", "attnlab vs omp", "vs as installed", "model GFLOP/s of attnlab",
  "peak memory beyond start, attnlab / PyTorch omp" }
for _, row in ipairs(rows) do
  local cols = runs[row.key]
  local a = cols.attnlab
  local omp, default = best(cols, "torch-omp"), best(runs[row.shape .. " env"], "torch-default")
  local L, d = row.config:match("^(%d+)x(%d+)")
  L, d = tonumber(L), tonumber(d)
  -- model FLOPs: 6 x parameters x tokens plus the attention products (causal: half of 4 T^2 d per
  -- sequence and layer forward, x3 with the backward)
  local B, T = row.batch, row.T
  local flops = 6 * a.params * B * T + 3 * L * B * 2 * T * T * d
  local am = median(a.ms)
  local on_openblas = cols["attnlab-openblas"]   -- the same build with its own product turned off
  print(string.format("| %s | %s | %d | %.1f | %s | %s | %s | %s | %s | %.0f | %.0f / %s MB |", row.shape, stats.kernel_label(row.blas, a.kernel, omp and omp.kernel),
    a.params, am, on_openblas and string.format("%.1f", median(on_openblas.ms)) or "same",
    omp and string.format("%.1f (%s)", omp.ms, omp.impl) or "-", default and string.format("%.1f (%s)", default.ms, default.impl) or "-",
    omp and string.format("%.2fx", omp.ms / am) or "-", default and string.format("%.2fx", default.ms / am) or "-",
    flops / (am * 1e-3) / 1e9, median(a.mem), omp and string.format("%.0f", omp.mem) or "-"))
end
