-- bench/attention_kernels.lua -- attnlab's side of the reference workload (c),
-- bench/torch_ref/attn_kernels.py: softmax attention on q, k, v of (B=8, H=4, N, d=32),
-- float32, forward only (no graph) and forward + backward (q, k, v require grad; O.backward(dO)),
-- causal and not.  Timed as the reference times: `warmup` calls, then `repeats` windows of k calls
-- (k chosen so that a window lasts about `window` seconds); ms per call = the window's mean; min and
-- median over windows.  Peak memory: growth of the core allocator's peak over the first call, the
-- cache emptied before it (the reference measures the growth of the process's RSS likewise).
--   ./attnlab --threads 2 bench/attention_kernels.lua [Ns=1024,2048] [kernel=auto] [window=0.5]
-- Prints one JSON object per case, in the reference's field names.
local lab = lab or require "attnlab"
local json = require "attnlab.json"

local cfg = { Ns = "256,512,1024,2048", B = 8, H = 4, d = 32, kernel = "auto", warmup = 2, repeats = 3, window = 0.5,
              modes = "fwd,fwdbwd", causals = "0,1" }
local stats = dofile("bench/stats.lua")
stats.args("attention_kernels.lua", cfg)
local list = stats.list

lab.seed(0)
for _, mode in ipairs(list(cfg.modes)) do
  for _, causal in ipairs(list(cfg.causals)) do
    for _, N in ipairs(list(cfg.Ns)) do
      local grad = mode == "fwdbwd"
      local shape = { cfg.B, cfg.H, N, cfg.d }
      local q, k, v, dO = lab.randn(shape), lab.randn(shape), lab.randn(shape), lab.randn(shape)
      if grad then q:requires_grad(true) k:requires_grad(true) v:requires_grad(true) end
      local opts = { causal = causal == 1, kernel = cfg.kernel }
      local call
      if grad then
        call = function()
          q:zero_grad() k:zero_grad() v:zero_grad()
          local o = lab.attention(q, k, v, opts)
          o:backward(dO)
        end
      else
        call = function() lab.no_grad(function() lab.attention(q, k, v, opts) end) end
      end
      collectgarbage()
      lab.reset_memory_peak()
      local base = lab.memory().in_use
      local t0 = lab.time()
      call()
      local first_ms = (lab.time() - t0) * 1e3
      local peak_extra = lab.memory().peak - base
      for _ = 1, cfg.warmup do call() end
      t0 = lab.time() call()
      local one = lab.time() - t0
      local calls = math.max(1, math.floor(cfg.window / math.max(one, 1e-6)))
      local per = {}
      for r = 1, cfg.repeats do
        t0 = lab.time()
        for _ = 1, calls do call() end
        per[r] = (lab.time() - t0) * 1e3 / calls
      end
      table.sort(per)
      local flop = cfg.B * cfg.H * 4.0 * N * N * cfg.d * (grad and 3 or 1)
      print(json.encode{
        impl = "attnlab", kernel = cfg.kernel, causal = causal == 1, mode = mode, B = cfg.B, H = cfg.H, N = N, d = cfg.d,
        threads = lab.num_threads(), ms_windows = per, ms_min = per[1], ms_median = per[math.floor((#per + 1) / 2)],
        calls_per_window = calls, first_call_ms = first_ms, gflops_at_min = flop / (per[1] / 1e3) / 1e9,
        peak_extra_MB = peak_extra / 1048576, scores_matrix_MB = cfg.B * cfg.H * N * N * 4 / 1048576,
      })
      io.stdout:flush()
    end
  end
end
