-- bench/sgemm_table.lua -- the table of `bench/run.sh sgemm`: one thread's GFLOP/s of OpenBLAS's
-- cblas_sgemm and of attnlab's own product (bench/sgemm_rates.c) on nn.Linear's shapes, per OpenBLAS
-- kernel choice; per shape and kernel the median over rounds of each round's best call.
--   ./attnlab bench/sgemm_table.lua file=bench/out/sgemm_rates.jsonl
local stats = dofile("bench/stats.lua")
local median = stats.median

local rows, seen = {}, {}
for _, r in ipairs(stats.table_lines("sgemm_table.lua")) do
  local what = r.a_trans == 1 and "dW = g^T x" or r.b_trans == 1 and "y = x W^T" or "dx = g W"
  local key = string.format("%d x %d x %d (%s)", r.m, r.n, r.k, what)
  if not seen[key] then seen[key] = { key = key, by = {} }; rows[#rows + 1] = seen[key] end
  local by = seen[key].by
  by[r.blas] = by[r.blas] or { kernel = r.blas_kernel, blas = {}, own = {} }
  table.insert(by[r.blas].blas, r.openblas_gflops)
  table.insert(by[r.blas].own, r.attnlab_gflops)
end
local kernels = {}
for _, k in ipairs{ "env", "own" } do
  for _, row in ipairs(rows) do if row.by[k] then kernels[#kernels + 1] = { choice = k, name = row.by[k].kernel }; break end end
end
local header = { "m x n x k (product)" }
for _, k in ipairs(kernels) do header[#header + 1] = "OpenBLAS " .. k.name .. (k.choice == "own" and " (its choice)" or " (as the environment sets)") end
header[#header + 1] = "attnlab's own"
header[#header + 1] = "attnlab vs " .. kernels[1].name
stats.print_header(header)
for _, row in ipairs(rows) do
  local cells, own = { row.key }, {}
  for _, k in ipairs(kernels) do
    local c = row.by[k.choice]
    cells[#cells + 1] = c and string.format("%.0f", median(c.blas)) or "-"
    if c then for _, v in ipairs(c.own) do own[#own + 1] = v end end
  end
  cells[#cells + 1] = string.format("%.0f", median(own))
  local first = row.by[kernels[1].choice]
  cells[#cells + 1] = string.format("%.2fx", median(own) / median(first.blas))
  print("| " .. table.concat(cells, " | ") .. " |")
end
