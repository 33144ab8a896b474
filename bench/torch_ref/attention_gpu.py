"""PyTorch reference for bench/cuda/attention_gpu.lua: scaled_dot_product_attention forward+backward
on the GPU at the same shape, in float32 (what attnlab runs) and bf16 (PyTorch's fastest), with the
same FLOP count (4 B H N^2 d forward, x3.5 with the backward, halved when causal) and the peak GPU
memory.  Prints one JSON line per dtype.
  python3 bench/torch_ref/attention_gpu.py [--B 8 --H 16 --N 4096 --d 64 --causal 1]
"""
import argparse
import json
import statistics

import torch
import torch.nn.functional as F


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name, default in (("B", 8), ("H", 16), ("N", 4096), ("d", 64), ("causal", 1), ("warmup", 3), ("repeats", 10)):
        p.add_argument("--" + name, type=int, default=default)
    a = p.parse_args()
    flops = 4 * a.B * a.H * a.N * a.N * a.d * 3.5 / (2 if a.causal else 1)
    for dtype in (torch.float32, torch.bfloat16):
        q, k, v = (torch.randn(a.B, a.H, a.N, a.d, device="cuda", dtype=dtype, requires_grad=True) for _ in range(3))
        torch.cuda.reset_peak_memory_stats()
        times = []
        for i in range(a.warmup + a.repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            F.scaled_dot_product_attention(q, k, v, is_causal=bool(a.causal)).sum().backward()
            end.record()
            torch.cuda.synchronize()
            if i >= a.warmup:
                times.append(start.elapsed_time(end))
            q.grad = k.grad = v.grad = None
        ms = statistics.median(times)
        print(json.dumps({"impl": "torch-sdpa", "dtype": str(dtype).replace("torch.", ""), "B": a.B, "H": a.H, "N": a.N,
                          "d": a.d, "causal": a.causal, "ms_fwd_bwd": round(ms, 3), "tflops": round(flops / ms / 1e9, 2),
                          "peak_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
