-- bench/cuda/attention_gpu.lua -- fused softmax attention forward+backward on the GPU, at the CUDA
-- issue's shape (B = 8, H = 16, N = 4096, d = 64, causal), in float32 and bfloat16;
-- bench/torch_ref/attention_gpu.py times PyTorch's scaled_dot_product_attention on the same shape.
-- Prints one JSON line per dtype: the median ms of `repeats` timed forward+backward passes after
-- `warmup`, TFLOP/s (4 B H N^2 d for the forward, 3.5 times that for forward+backward, halved when
-- causal) and the peak GPU memory held by tensors during the passes (PyTorch's max_memory_allocated).
--   attnlab --device cuda bench/cuda/attention_gpu.lua [B=8] [H=16] [N=4096] [d=64] [causal=1] [dtypes=float32,bfloat16]
local lab = require "attnlab"
local cfg = { B = 8, H = 16, N = 4096, d = 64, causal = 1, warmup = 3, repeats = 10, dtypes = "float32,bfloat16" }
dofile("bench/stats.lua").args("attention_gpu", cfg)
if lab.default_device() ~= "cuda" then error("attention_gpu: run it with --device cuda") end
local shape = { cfg.B, cfg.H, cfg.N, cfg.d }
local flops = 4 * cfg.B * cfg.H * cfg.N * cfg.N * cfg.d * 3.5 / (cfg.causal == 1 and 2 or 1)
for dtype in cfg.dtypes:gmatch("[^,]+") do
  -- leaves of the dtype itself (made in float32, converted, then detached), as PyTorch's are
  local function leaf() return lab.randn(shape):to(dtype):detach():requires_grad(true) end
  local q, k, v = leaf(), leaf(), leaf()
  local dout = lab.ones(shape):to(dtype)    -- the gradient of out:sum(), which bfloat16 has no sum for
  lab.synchronize()
  lab.reset_cuda_memory_peak()
  local before = lab.cuda_memory().in_use
  local times = {}
  for i = 1, cfg.warmup + cfg.repeats do
    lab.synchronize()
    local t0 = lab.time()
    local o = lab.attention(q, k, v, { causal = cfg.causal == 1 })
    o:backward(dout)
    lab.synchronize()
    if i > cfg.warmup then times[#times + 1] = (lab.time() - t0) * 1e3 end
    q:set_grad(nil); k:set_grad(nil); v:set_grad(nil)
  end
  table.sort(times)
  local ms = times[math.floor((#times + 1) / 2)]
  print(string.format('{"impl": "attnlab", "dtype": "%s", "B": %d, "H": %d, "N": %d, "d": %d, "causal": %d, "ms_fwd_bwd": %.3f, "tflops": %.2f, "peak_mb": %.1f, "peak_beyond_inputs_mb": %.1f}',
    dtype, cfg.B, cfg.H, cfg.N, cfg.d, cfg.causal, ms, flops / ms / 1e9, lab.cuda_memory().peak / 2^20,
    (lab.cuda_memory().peak - before) / 2^20))
end
