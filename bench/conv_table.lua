-- bench/conv_table.lua -- the table of `bench/run.sh conv`: 2-D convolution forward and forward +
-- backward of attnlab (bench/conv_step.lua) against PyTorch's F.conv2d (bench/torch_ref/conv_step.py)
-- in the "omp" environment (the fastest PyTorch here) and as installed, from the JSON lines bench/run.sh
-- collected, each tagged with "env".  Per shape and column: the median over rounds of each process's
-- median call.
--   ./attnlab bench/conv_table.lua file=bench/out/conv_step.jsonl
local json = require "attnlab.json"
local path = (arg and arg[1] or ""):match("^file=(.+)$")
if not path then error("usage: attnlab bench/conv_table.lua file=FILE.jsonl") end

local rows, shapes, seen = {}, {}, {}
for line in io.lines(path) do
  local r = json.decode(line)
  if not seen[r.shape] then seen[r.shape] = true shapes[#shapes + 1] = r.shape end
  rows[r.shape] = rows[r.shape] or {}
  local c = rows[r.shape][r.env] or { fwd = {}, both = {} }
  rows[r.shape][r.env] = c
  table.insert(c.fwd, r.forward_ms)
  table.insert(c.both, r.forward_backward_ms)
  if r.forward_gflop then rows[r.shape].gflop = r.forward_gflop end
end
local median = dofile("bench/stats.lua").median
local function ms(c, k) local m = c and median(c[k]) return m and string.format("%.2f", m) or "-" end
local function ratio(a, b, k)
  local x, y = a and median(a[k]), b and median(b[k])
  return (x and y) and string.format("%.2fx", y / x) or "-"
end
print("| shape (N x C x H x W - O x K) | forward GFLOP | attnlab fwd / fwd+bwd ms | PyTorch omp fwd / fwd+bwd | PyTorch as installed | " ..
  "attnlab vs omp (fwd, fwd+bwd) | vs as installed |")
print("|---|---|---|---|---|---|---|")
for _, s in ipairs(shapes) do
  local r = rows[s]
  local a, o, d = r.attnlab, r["torch-omp"], r["torch-default"]
  print(string.format("| %s | %.3f | %s / %s | %s / %s | %s / %s | %s, %s | %s, %s |", s, r.gflop or 0,
    ms(a, "fwd"), ms(a, "both"), ms(o, "fwd"), ms(o, "both"), ms(d, "fwd"), ms(d, "both"),
    ratio(a, o, "fwd"), ratio(a, o, "both"), ratio(a, d, "fwd"), ratio(a, d, "both")))
end
print("\n(ratios: PyTorch's time / attnlab's, above 1 = attnlab faster)")
