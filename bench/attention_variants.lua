-- bench/attention_variants.lua -- every variant of the catalogue at N = 256 ... 16,384: time of the
-- forward and of forward + backward, peak memory, and the measured growth with N (the slope of
-- log time against log N over N >= 1024: 2 for quadratic cost, 1 for linear, a little over 1 for
-- N log N).  B = 1, H = 4, d = dv = 32, float32, self-attention (N = M), causal where the variant
-- has a causal form.  Each figure is the median of `repeats` calls after one warm-up call (fewer
-- at large N, see calls_for).  Peak memory is the core allocator's peak over one forward +
-- backward, the cache emptied first: the tensors the call creates (output, gradients, saved
-- state), not the inputs.
--   ./attnlab --threads 2 bench/attention_variants.lua [Ns=256,...,16384] [only=softmax,linear] [out=FILE.md]
-- Prints a markdown table (also written to `out`) and one JSON object per measurement (to stderr).
-- A setup's max_N caps the sizes where a variant's own cost (cubic, or N M d memory) or the dense
-- map would make one call take minutes.
local lab = lab or require "attnlab"
local json = require "attnlab.json"

local cfg = { Ns = "256,512,1024,2048,4096,8192,16384", only = "", out = "", H = 4, d = 32, budget = 6 }
local stats = dofile("bench/stats.lua")
stats.args("attention_variants.lua", cfg)
local list = stats.list

-- the squarest power-of-two grid {H, W} of N tokens (16 x 16 at N = 256 ... 128 x 128 at 16,384)
local function square_grid(N)
  local h = 1
  while h * h * 4 <= N do h = h * 2 end
  if N % h ~= 0 then error("attention_variants.lua: the 2-D neighborhood needs N a multiple of " .. h .. " (got " .. N .. ")") end
  return { h, N / h }
end

-- How each variant is run here, and the cost it claims (the slope to expect); opts may be a
-- function of N.  A variant of the catalogue missing from this table is listed at the end as not
-- benchmarked.
local H, d = cfg.H, cfg.d
local function randn(shape) return lab.randn(shape) end
local function unit_rows(t) return t / t:pow(2):sum(-1, true):sqrt() end
local setups = {
  { name = "softmax", opts = { causal = true }, claim = "quadratic" },
  { name = "softmax (dense kernel)", variant = "softmax", opts = { causal = true, kernel = "dense" }, claim = "quadratic", max_N = 4096 },
  { name = "softmax, non-causal", variant = "softmax", opts = {}, claim = "quadratic" },
  { name = "sliding_window (w = 256)", variant = "sliding_window", opts = { causal = true, window = 256 }, claim = "linear" },
  { name = "neighborhood (k = 255)", variant = "neighborhood", opts = { kernel_size = 255 }, claim = "linear" },
  { name = "strided_neighborhood (k = 256, s = 64)", variant = "strided_neighborhood", opts = { kernel_size = 256, stride = 64 }, claim = "linear" },
  { name = "neighborhood 2-D (square grid, k = 7 x 7)", variant = "neighborhood",
    opts = function(N) return { grid = square_grid(N), kernel_size = 7 } end, claim = "linear" },
  { name = "power (causal)", variant = "power", opts = { causal = true }, claim = "N log N" },
  { name = "dynamic_mask (top_k = 256)", variant = "dynamic_mask", claim = "N^2 selection, linear attention",
    opts = function() return { causal = true, top_k = 256, dt_proj = randn{ H * d, H } * 0.1, dt_a = lab.full({ H }, -0.5) } end },
  { name = "landmark (every 64th key)", variant = "landmark", claim = "quadratic", max_N = 4096,
    opts = function(N) local m = {} for j = 1, N do m[j] = j % 64 == 0 and 1 or 0 end return { causal = true, landmarks = lab.tensor(m) } end },
  { name = "routing (sqrt(N) clusters of sqrt(N))", variant = "routing", claim = "N^1.5",
    opts = function(N) local c = math.floor(math.sqrt(N)) return { centroids = unit_rows(randn{ H, c, d }), cluster_size = c } end },
  { name = "hyper (blocks 64, 64 samples)", variant = "hyper", opts = { block_size = 64, samples = 64 }, claim = "N log N" },
  { name = "relative (clip 16)", variant = "relative", claim = "quadratic", max_N = 4096,
    opts = function() return { causal = true, rel_key = randn{ 33, d } * 0.1, rel_value = randn{ 33, d } * 0.1 } end },
  { name = "flashbias (rank 2)", variant = "flashbias", claim = "quadratic",
    opts = function(N) return { causal = true, bias_q = randn{ 1, H, N, 2 }, bias_k = randn{ 1, H, N, 2 } } end },
  { name = "pointer (dot scores)", variant = "pointer", opts = {}, claim = "quadratic", max_N = 4096 },
  { name = "linear (elu+1), causal", variant = "linear", opts = { causal = true }, claim = "linear" },
  { name = "linear (elu+1)", variant = "linear", opts = {}, claim = "linear" },
  { name = "flow, causal", variant = "flow", opts = { causal = true }, claim = "linear" },
  { name = "delta, causal", variant = "delta", opts = { causal = true }, claim = "linear" },
  { name = "agent (16 agents)", variant = "agent", opts = { agent_count = 16 }, claim = "linear" },
  { name = "random_feature", variant = "random_feature", opts = {}, claim = "quadratic", max_N = 4096 },
  { name = "moh (all heads on)", variant = "moh", claim = "quadratic", opts = function(N) return { causal = true, gates = lab.ones{ 1, H, N } } end },
  { name = "local_linear", variant = "local_linear", opts = { causal = true }, claim = "quadratic (N M d memory)", max_N = 512 },
  { name = "tensor (two key sets)", variant = "tensor", claim = "cubic", max_N = 256,
    opts = function(N) return { k2 = randn{ 1, H, N, d }, v2 = randn{ 1, H, N, d } } end },
  { name = "lsa", variant = "lsa", opts = { causal = true }, claim = "quadratic", max_N = 4096 },
}

local function median(t) table.sort(t) return t[math.floor((#t + 1) / 2)] end
-- fewer calls where one call is slow: about `budget` seconds per (variant, N, mode)
local function calls_for(one) return math.max(1, math.min(7, math.floor(cfg.budget / 2 / math.max(one, 1e-6)))) end

local function measure(setup, N)
  local shape = { 1, cfg.H, N, cfg.d }
  local q, k, v, dO = lab.randn(shape), lab.randn(shape), lab.randn(shape), nil
  local opts = { variant = setup.variant or setup.name }
  local own = type(setup.opts) == "function" and setup.opts(N) or setup.opts
  for key, val in pairs(own) do opts[key] = val end
  local function fwd() lab.no_grad(function() lab.attention(q, k, v, opts) end) end
  local function fwdbwd()
    q:zero_grad() k:zero_grad() v:zero_grad()
    local out = lab.attention(q, k, v, opts)
    -- the upstream gradient: random, of the output's shape (pointer's output is (B, H, N, M))
    if not dO or dO:numel() ~= out:numel() then dO = lab.randn(out:shape()) end
    out:backward(dO)
  end
  local result = {}
  for _, mode in ipairs{ "fwd", "fwdbwd" } do
    if mode == "fwdbwd" then q:requires_grad(true) k:requires_grad(true) v:requires_grad(true) end
    local f = mode == "fwd" and fwd or fwdbwd
    collectgarbage()
    lab.reset_memory_peak()
    local base = lab.memory().in_use
    local t0 = lab.time()
    f()
    local one = lab.time() - t0
    result[mode .. "_peak_MB"] = (lab.memory().peak - base) / 1048576
    local times = {}
    for i = 1, calls_for(one) do
      t0 = lab.time() f() times[i] = (lab.time() - t0) * 1e3
    end
    result[mode .. "_ms"] = median(times)
  end
  return result
end

-- least-squares slope of log(ms) against log(N) over the points with N >= 1024
local function slope(Ns, ms)
  local xs, ys = {}, {}
  for i, N in ipairs(Ns) do if N >= 1024 and ms[i] then xs[#xs + 1] = math.log(N) ys[#ys + 1] = math.log(ms[i]) end end
  if #xs < 2 then return nil end
  local mx, my = 0, 0
  for i = 1, #xs do mx, my = mx + xs[i] / #xs, my + ys[i] / #xs end
  local sxy, sxx = 0, 0
  for i = 1, #xs do sxy, sxx = sxy + (xs[i] - mx) * (ys[i] - my), sxx + (xs[i] - mx) ^ 2 end
  return sxy / sxx
end

local Ns = list(cfg.Ns)
local only = {}
for _, name in ipairs(list(cfg.only)) do only[name] = true end
local lines = {}
local function emit(s) lines[#lines + 1] = s print(s) io.stdout:flush() end
emit(string.format("B = 1, H = %d, d = dv = %d, float32, %d threads; ms per call (median), peak MiB of one forward + backward", cfg.H, cfg.d, lab.num_threads()))
emit("")
local header = "| variant | cost | "
for _, N in ipairs(Ns) do header = header .. N .. " | " end
emit(header .. "slope fwd | slope fwd+bwd |")
emit("|---|---|" .. string.rep("---|", #Ns) .. "---|---|")
local benchmarked, softmax_fb = {}, {}
for _, setup in ipairs(setups) do
  local variant = setup.variant or setup.name
  if next(only) == nil or only[variant] then
    benchmarked[variant] = true
    local fwd_ms, fb_ms, cells = {}, {}, {}
    for i, N in ipairs(Ns) do
      if N <= (setup.max_N or math.huge) then
        local r = measure(setup, N)
        fwd_ms[i], fb_ms[i] = r.fwd_ms, r.fwdbwd_ms
        cells[i] = string.format("%.3g / %.3g ms, %.3g MiB", r.fwd_ms, r.fwdbwd_ms, r.fwdbwd_peak_MB)
        io.stderr:write(json.encode{ variant = setup.name, N = N, fwd_ms = r.fwd_ms, fwdbwd_ms = r.fwdbwd_ms,
          fwd_peak_MB = r.fwd_peak_MB, fwdbwd_peak_MB = r.fwdbwd_peak_MB, threads = lab.num_threads() }, "\n")
      else
        cells[i] = "-"
      end
    end
    if setup.name == "softmax" then softmax_fb = fb_ms end
    local sf, sb = slope(Ns, fwd_ms), slope(Ns, fb_ms)
    emit(string.format("| %s | %s | %s | %s | %s |", setup.name, setup.claim, table.concat(cells, " | "),
      sf and string.format("%.2f", sf) or "-", sb and string.format("%.2f", sb) or "-"))
    if setup.claim ~= "quadratic" and #softmax_fb > 0 then
      for i, N in ipairs(Ns) do
        if N >= 4096 and fb_ms[i] and softmax_fb[i] and fb_ms[i] > softmax_fb[i] then
          io.stderr:write(string.format("NOTE: %s is slower than causal softmax at N = %d (%.1f vs %.1f ms)\n",
            setup.name, N, fb_ms[i], softmax_fb[i]))
        end
      end
    end
  end
end
local missing = {}
for _, name in ipairs(lab.attention.variants()) do if not benchmarked[name] and next(only) == nil then missing[#missing + 1] = name end end
if #missing > 0 then emit("") emit("Not in this table (no setup in bench/attention_variants.lua): " .. table.concat(missing, ", ")) end
if cfg.out ~= "" then
  local f = assert(io.open(cfg.out, "w"))
  f:write(table.concat(lines, "\n"), "\n")
  f:close()
end
