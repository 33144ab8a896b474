-- bench/conv_table.lua -- the table of `bench/run.sh conv`: 2-D convolution forward and forward +
-- backward of attnlab (bench/conv_step.lua) against PyTorch's F.conv2d (bench/torch_ref/conv_step.py)
-- in the "omp" environment (the fastest PyTorch here) and as installed, from the JSON lines bench/run.sh
-- collected, each tagged with "env".  Per shape and column: the median over rounds of each process's
-- median call.
--   ./attnlab bench/conv_table.lua file=bench/out/conv_step.jsonl
local stats = dofile("bench/stats.lua")
local median = stats.median

-- One row per shape and OpenBLAS kernel choice; the as-installed column is always the environment's
-- own.
local rows, keys, seen = {}, {}, {}
for _, r in ipairs(stats.table_lines("conv_table.lua")) do
  local key = r.shape .. " " .. r.blas
  if not seen[key] then seen[key] = true keys[#keys + 1] = { key = key, shape = r.shape, blas = r.blas } end
  rows[key] = rows[key] or {}
  local c = rows[key][r.env] or { fwd = {}, both = {}, kernel = r.blas_kernel }
  rows[key][r.env] = c
  table.insert(c.fwd, r.forward_ms)
  table.insert(c.both, r.forward_backward_ms)
  if r.forward_gflop then rows[key].gflop = r.forward_gflop end
end
local function ms(c, k) local m = c and median(c[k]) return m and string.format("%.2f", m) or "-" end
local function ratio(a, b, k)
  local x, y = a and median(a[k]), b and median(b[k])
  return (x and y) and string.format("%.2fx", y / x) or "-"
end
stats.print_header{ "shape (N x C x H x W - O x K)", "OpenBLAS kernel", "forward GFLOP", "attnlab fwd / fwd+bwd ms",
  "PyTorch omp fwd / fwd+bwd", "PyTorch as installed", "attnlab vs omp (fwd, fwd+bwd)", "vs as installed" }
for _, k in ipairs(keys) do
  local r = rows[k.key]
  local a, o, d = r.attnlab, r["torch-omp"], (rows[k.shape .. " env"] or {})["torch-default"]
  local kernel = stats.kernel_label(k.blas, a and a.kernel, o and o.kernel)
  print(string.format("| %s | %s | %.3f | %s / %s | %s / %s | %s / %s | %s, %s | %s, %s |", k.shape, kernel, r.gflop or 0,
    ms(a, "fwd"), ms(a, "both"), ms(o, "fwd"), ms(o, "both"), ms(d, "fwd"), ms(d, "both"),
    ratio(a, o, "fwd"), ratio(a, o, "both"), ratio(a, d, "fwd"), ratio(a, d, "both")))
end
print("\n(ratios: PyTorch's time / attnlab's, above 1 = attnlab faster)")
